//! Property tests of the metrics on hostile inputs: NaN and infinite scores, empty sets, one
//! class, any lengths. Every call returns a value or a typed error, never a panic or a NaN.

use ad_metrics::{
    ConfusionMatrix, EvalOptions, MapDims, MetricsError, PixelMaps, aupro, evaluate,
    evaluate_images, f1_max, quantile, roc_auc,
};
use proptest::prelude::*;

fn score() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -1e3f32..1e3,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(0.0f32),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn image_metrics_are_values_or_typed_errors(
        scores in proptest::collection::vec(score(), 0..40),
        labels in proptest::collection::vec(any::<bool>(), 0..40),
    ) {
        let any_bad = scores.iter().any(|s| !s.is_finite());
        for r in [roc_auc(&scores, &labels), f1_max(&scores, &labels).map(|f| f.f1)] {
            match r {
                Ok(v) => {
                    prop_assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{v}");
                    prop_assert!(!any_bad, "a non-finite score was accepted");
                    prop_assert_eq!(scores.len(), labels.len());
                }
                Err(MetricsError::NonFinite { .. }) => prop_assert!(any_bad),
                Err(_) => {}
            }
        }
        if let Ok(e) = evaluate_images(&scores, &labels, &EvalOptions::default()) {
            prop_assert!(e.image.auroc.is_finite());
        }
        if let Ok(t) = quantile(&scores, 0.99) {
            prop_assert!(t.is_finite());
        }
        if scores.len() == labels.len() && !any_bad && !scores.is_empty() {
            let c = ConfusionMatrix::at_threshold(&scores, &labels, 0.0).unwrap();
            prop_assert!(c.balanced_accuracy().is_finite());
        }
    }

    #[test]
    fn pixel_metrics_are_values_or_typed_errors(
        n in 0usize..4,
        h in 1usize..6,
        w in 1usize..6,
        seed in proptest::collection::vec(score(), 150),
        mask_bits in proptest::collection::vec(any::<bool>(), 150),
        image_labels in proptest::collection::vec(any::<bool>(), 4),
    ) {
        let len = n * h * w;
        let maps = &seed[..len];
        let masks = &mask_bits[..len];
        let dims = MapDims::new(n, h, w);
        let any_bad = maps.iter().any(|s| !s.is_finite());
        match aupro(maps, masks, dims, 0.3) {
            Ok(v) => prop_assert!(v.is_finite() && !any_bad),
            Err(MetricsError::NonFinite { .. }) => prop_assert!(any_bad),
            Err(_) => {}
        }
        let scores: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let pixels = PixelMaps { maps, masks, dims };
        if let Ok(e) = evaluate(&scores, &image_labels[..n], &pixels, &EvalOptions::default()) {
            prop_assert!(!any_bad);
            if let Some(p) = e.pixel {
                prop_assert!(p.aupro.is_finite() && p.level.auroc.is_finite());
            }
        }
    }
}
