//! An ensemble through the registry on the small generated category (64 px images, stand-in
//! weights, no download): the map is the mean of the members' maps standardised by their
//! scales on held-out good images (or cross-fitted ones), the score its largest value, and
//! save -> load returns the same predictions; bad member lists are refused before anything is
//! built.

use ad_core::ensemble::{Ensemble, MemberRole};
use ad_core::{BoxError, Detector, DynDetector, ImageBatch, Prediction};
use ad_mvtec::{BatchLoader, MvtecCategory, SyntheticConfig};
use anomaly_detection::registry::{self, DetectorConfig};
use burn::tensor::Device;
use std::path::PathBuf;

fn config(members: &str) -> DetectorConfig {
    let json = format!(
        r#"{{"model": "ensemble", "preprocess": {{"resize": [64, 64]}}, "members": [{members}]}}"#
    );
    serde_json::from_str(&json).unwrap()
}

const PATCHCORE: &str = r#"{"model": "patchcore", "weights": {"random": {"seed": 2}},
    "num_neighbors": 3, "batch_size": 4, "coreset": {"size": {"ratio": 0.25}}}"#;
const PADIM: &str = r#"{"model": "padim", "weights": {"random": {"seed": 2}}, "n_features": 16}"#;

fn batches(model: &dyn DynDetector, samples: &[ad_mvtec::Sample]) -> Vec<ImageBatch> {
    BatchLoader::new(samples, model.dyn_preprocessor().clone(), 4)
        .map(|b| b.unwrap().images)
        .collect()
}

/// The small generated category in a fresh temporary directory.
fn small_category() -> (tempfile::TempDir, MvtecCategory) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig::small();
    cfg.generate(dir.path()).unwrap();
    let cat = MvtecCategory::open(dir.path(), &cfg.name).unwrap();
    (dir, cat)
}

/// What [`fit_save_load`] returns: the directory holding the category and the model file (keep
/// it alive), the test split batched at the ensemble's preprocessing, the fitted model's
/// predictions of its first batch, the model file, and that file opened as an ensemble.
type Fitted = (
    tempfile::TempDir,
    Vec<ImageBatch>,
    Vec<Prediction>,
    PathBuf,
    Ensemble<dyn DynDetector>,
);

/// Fits `config` on the small generated category, predicts the first test batch, saves the
/// model and opens it again (its members through the registry).
fn fit_save_load(config: &DetectorConfig, device: &Device) -> Fitted {
    let (dir, cat) = small_category();
    config.check().unwrap();
    let mut model = config.build(device).unwrap();
    let train = batches(model.as_ref(), &cat.splits.train);
    let summary = model
        .fit(train.iter().cloned().map(Ok::<_, BoxError>))
        .unwrap();
    let test = batches(model.as_ref(), &cat.splits.test);
    let got = model.predict(&test[0]).unwrap();
    let path = dir.path().join("m.ensemble");
    model.save(&path).unwrap();
    let ensemble = Ensemble::<dyn DynDetector>::load_with(&path, |p| {
        registry::load(p, device).map_err(|e| ad_core::DetectorError(Box::new(e)))
    })
    .unwrap();
    assert_eq!(summary.images, cat.splits.train.len());
    (dir, test, got, path, ensemble)
}

#[test]
fn ensemble_averages_standardised_member_maps_and_saves_identically() {
    let device = Device::default();
    let (_dir, test, got, path, ensemble) =
        fit_save_load(&config(&format!("{PATCHCORE}, {PADIM}")), &device);
    assert_eq!(ensemble.members().len(), 2);
    assert_eq!(ensemble.members()[0].name(), "patchcore");
    assert_eq!(ensemble.members()[1].name(), "padim");
    // The members were fitted on every good image after their scales were measured.
    let per_member: Vec<_> = ensemble
        .members()
        .iter()
        .map(|m| m.predict(&test[0]).unwrap())
        .collect();
    for (i, p) in got.iter().enumerate() {
        let mut best = f32::NEG_INFINITY;
        for (x, &v) in p.map.as_slice().iter().enumerate() {
            let want: f32 = per_member
                .iter()
                .zip(ensemble.scales())
                .map(|(preds, s)| (preds[i].map.as_slice()[x] - s.mean) / s.std)
                .sum::<f32>()
                / 2.0;
            assert!(
                (v - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{v} vs {want}"
            );
            best = best.max(v);
        }
        assert_eq!(p.score, best);
    }
    for s in ensemble.scales() {
        assert!(s.std > 0.0 && s.mean.is_finite(), "{s:?}");
    }
    // Loaded through the registry: the same predictions.
    let back = registry::load(&path, &device).unwrap();
    assert_eq!(back.predict(&test[0]).unwrap(), got);
}

#[test]
fn a_member_at_half_resolution_answers_at_the_ensembles_resolution() {
    let device = Device::default();
    let half = PATCHCORE.replacen('{', r#"{"preprocess": {"resize": [32, 32]},"#, 1);
    let (_dir, test, got, _, ensemble) =
        fit_save_load(&config(&format!("{PADIM}, {half}")), &device);
    assert_eq!(ensemble.preprocessor().output_size(), (64, 64));
    assert!(
        got.iter()
            .all(|p| (p.map.width(), p.map.height()) == (64, 64))
    );
    // The half-resolution member kept its size and sees the images shrunk to it.
    assert_eq!(ensemble.members()[1].preprocessor().output_size(), (32, 32));
    let own = ensemble.members()[1]
        .predict(&test[0].resized((32, 32)).unwrap())
        .unwrap();
    assert!(
        own.iter()
            .all(|p| (p.map.width(), p.map.height()) == (32, 32))
    );
    assert_eq!(ensemble.predict(&test[0]).unwrap(), got);
}

#[test]
fn a_score_member_counts_for_the_image_score_only() {
    let device = Device::default();
    let half = PATCHCORE.replacen('{', r#"{"preprocess": {"resize": [32, 32]},"#, 1);
    let json = format!(
        r#"{{"model": "ensemble", "preprocess": {{"resize": [64, 64]}}, "members": [{PADIM}], "score_members": [{half}]}}"#
    );
    let config: DetectorConfig = serde_json::from_str(&json).unwrap();
    let (_dir, test, got, path, ensemble) = fit_save_load(&config, &device);
    assert_eq!(ensemble.roles(), [MemberRole::Map, MemberRole::Score]);
    assert_eq!(ensemble.score_offsets().len(), 2);
    assert!(
        ensemble.score_spreads().is_empty(),
        "the hold-out divides by the map spreads"
    );
    check_padim_map_and_half_resolution_score(&ensemble, &test[0], &got);
    let back = registry::load(&path, &device).unwrap();
    assert_eq!(back.predict(&test[0]).unwrap(), got);
    // No map member: refused before anything is built.
    let json = format!(
        r#"{{"model": "ensemble", "members": [], "score_members": [{PATCHCORE}, {PADIM}]}}"#
    );
    let none: DetectorConfig = serde_json::from_str(&json).unwrap();
    assert!(none.check().unwrap_err().to_string().contains("map member"));
}

#[test]
fn cross_fitted_calibration_divides_the_candidates_by_their_spreads() {
    let device = Device::default();
    let half = PATCHCORE.replacen('{', r#"{"preprocess": {"resize": [32, 32]},"#, 1);
    let json = format!(
        r#"{{"model": "ensemble", "preprocess": {{"resize": [64, 64]}},
            "calibration": {{"folds": 3, "score_spread": "maxima"}},
            "members": [{PADIM}], "score_members": [{half}]}}"#
    );
    let config: DetectorConfig = serde_json::from_str(&json).unwrap();
    let (_dir, test, got, path, ensemble) = fit_save_load(&config, &device);
    let (o, sp) = (ensemble.score_offsets(), ensemble.score_spreads());
    assert_eq!((o.len(), sp.len()), (2, 2));
    assert!(sp.iter().all(|&s| s > 0.0 && s.is_finite()), "{sp:?}");
    check_padim_map_and_half_resolution_score(&ensemble, &test[0], &got);
    let back = registry::load(&path, &device).unwrap();
    assert_eq!(back.predict(&test[0]).unwrap(), got);
}

#[test]
fn a_pixel_member_counts_for_the_map_only() {
    let device = Device::default();
    let json = format!(
        r#"{{"model": "ensemble", "preprocess": {{"resize": [64, 64]}}, "members": [{PATCHCORE}], "pixel_members": [{PADIM}]}}"#
    );
    let config: DetectorConfig = serde_json::from_str(&json).unwrap();
    let (_dir, test, got, path, ensemble) = fit_save_load(&config, &device);
    assert_eq!(ensemble.roles(), [MemberRole::Map, MemberRole::Pixel]);
    let (pc, pad) = (ensemble.scales()[0], ensemble.scales()[1]);
    let patchcore = ensemble.members()[0].predict(&test[0]).unwrap();
    let padim = ensemble.members()[1].predict(&test[0]).unwrap();
    let mut differs = false;
    for (i, p) in got.iter().enumerate() {
        // The map: the two standardised maps averaged.
        let members = patchcore[i]
            .map
            .as_slice()
            .iter()
            .zip(padim[i].map.as_slice());
        for (&v, (&u, &w)) in p.map.as_slice().iter().zip(members) {
            let want = 0.5 * ((u - pc.mean) / pc.std + (w - pad.mean) / pad.std);
            assert!(
                (v - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{v} vs {want}"
            );
        }
        // The score: the PatchCore's standardised map's maximum alone.
        let top = patchcore[i].map.max();
        assert!(
            (p.score - (top - pc.mean) / pc.std).abs() <= 1e-4 * p.score.abs().max(1.0),
            "{} vs {top}",
            p.score
        );
        differs |= p.score != p.map.max();
    }
    assert!(differs, "PaDiM never moved the map's maximum");
    let back = registry::load(&path, &device).unwrap();
    assert_eq!(back.predict(&test[0]).unwrap(), got);
    // Pixel members alone make no score: refused before anything is built.
    let json = format!(
        r#"{{"model": "ensemble", "members": [], "pixel_members": [{PATCHCORE}, {PADIM}]}}"#
    );
    let none: DetectorConfig = serde_json::from_str(&json).unwrap();
    assert!(none.check().unwrap_err().to_string().contains("map member"));
}

/// Checks `got`, the predictions of `batch` by `ensemble` (PaDiM's map, a PatchCore at 32 px
/// for the score): the map is PaDiM's alone (standardised, shifted by its centre and divided
/// by its spread, 1 without measured spreads), the score the larger of its maximum and the
/// half-resolution PatchCore's centred, divided image score.
fn check_padim_map_and_half_resolution_score(
    ensemble: &Ensemble<dyn DynDetector>,
    batch: &ImageBatch,
    got: &[Prediction],
) {
    let o = ensemble.score_offsets();
    let spread = |k: usize| ensemble.score_spreads().get(k).copied().unwrap_or(1.0);
    let (pad, pc) = (ensemble.scales()[0], ensemble.scales()[1]);
    let padim = ensemble.members()[0].predict(batch).unwrap();
    let patchcore = ensemble.members()[1]
        .predict(&batch.resized((32, 32)).unwrap())
        .unwrap();
    for (i, p) in got.iter().enumerate() {
        assert_eq!((p.map.width(), p.map.height()), (64, 64));
        for (&v, &u) in p.map.as_slice().iter().zip(padim[i].map.as_slice()) {
            let want = ((u - pad.mean) / pad.std - o[0]) / spread(0);
            assert!(
                (v - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{v} vs {want}"
            );
        }
        let other = ((patchcore[i].score - pc.mean) / pc.std - o[1]) / spread(1);
        assert_eq!(p.score, p.map.max().max(other));
    }
}

#[test]
fn bad_member_lists_are_refused() {
    let one = config(PATCHCORE);
    assert!(one.check().unwrap_err().to_string().contains("at least 2"));
    let classifier = config(&format!(r#"{PATCHCORE}, {{"model": "classifier"}}"#));
    assert!(
        classifier
            .check()
            .unwrap_err()
            .to_string()
            .contains("cannot be an ensemble member")
    );
    let own = config(&format!(
        r#"{PATCHCORE}, {{"model": "padim", "preprocess": {{"resize": [32, 32], "center_crop": [24, 24]}}}}"#
    ));
    assert!(
        own.check()
            .unwrap_err()
            .to_string()
            .contains("own preprocess")
    );
    let bad_holdout: DetectorConfig = serde_json::from_str(&format!(
        r#"{{"model": "ensemble", "calibration": {{"holdout": 1.5}}, "members": [{PATCHCORE}, {PADIM}]}}"#
    ))
    .unwrap();
    assert!(bad_holdout.check().is_err());
    let one_fold: DetectorConfig = serde_json::from_str(&format!(
        r#"{{"model": "ensemble", "calibration": {{"folds": 1}}, "members": [{PATCHCORE}, {PADIM}]}}"#
    ))
    .unwrap();
    assert!(one_fold.check().unwrap_err().to_string().contains("fold"));
    let unknown = serde_json::from_str::<DetectorConfig>(&format!(
        r#"{{"model": "ensemble", "calibration": {{"score_spread": "max"}}, "members": [{PATCHCORE}, {PADIM}]}}"#
    ));
    assert!(unknown.is_err());
}
