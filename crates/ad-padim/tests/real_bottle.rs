//! PaDiM on the real MVTec AD `bottle` category with the pretrained EfficientNet-Lite0.
//!
//! Skipped (with a printed reason) when `../shared/datasets/mvtec_ad/bottle` (relative to the
//! workspace root) is absent or the pretrained weights cannot be obtained.
//! Published PaDiM (ResNet-18): bottle image AUROC 0.99+, pixel 0.98.

use std::path::PathBuf;

use ad_core::Detector;
use ad_metrics::{EvalOptions, MapDims, PixelMaps};
use ad_mvtec::{BatchLoader, MvtecCategory};
use ad_padim::{Padim, PadimConfig};
use burn::tensor::Device;

#[test]
fn bottle_reaches_published_level() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/mvtec_ad");
    if !root.join("bottle").is_dir() {
        println!("SKIPPED: {} not found", root.join("bottle").display());
        return;
    }
    if let Err(e) = ad_backbone::Pretrained::EfficientNetLite0.ensure() {
        println!("SKIPPED: pretrained EfficientNet-Lite0 weights unavailable: {e}");
        return;
    }
    let bottle = MvtecCategory::open(&root, "bottle").unwrap();
    let mut model = Padim::new(&PadimConfig::default(), &Device::default()).unwrap();
    let pre = model.preprocessor().clone();
    let summary = model
        .fit(BatchLoader::new(&bottle.splits.train, pre.clone(), 8).map(|b| b.map(|b| b.images)))
        .unwrap();
    assert_eq!(summary.images, bottle.splits.train.len());
    let (mut scores, mut labels, mut maps, mut masks) = (vec![], vec![], vec![], vec![]);
    let mut size = (0, 0);
    for batch in BatchLoader::new(&bottle.splits.test, pre, 8) {
        let batch = batch.unwrap();
        size = (batch.images.height(), batch.images.width());
        for ((p, s), m) in model
            .predict(&batch.images)
            .unwrap()
            .iter()
            .zip(&batch.samples)
            .zip(&batch.masks)
        {
            scores.push(p.score);
            labels.push(s.is_anomalous);
            maps.extend_from_slice(p.map.as_slice());
            masks.extend_from_slice(m.as_ref().expect("bottle has every mask").as_slice());
        }
    }
    let pixels = PixelMaps {
        maps: &maps,
        masks: &masks,
        dims: MapDims::new(scores.len(), size.0, size.1),
    };
    let eval = ad_metrics::evaluate(&scores, &labels, &pixels, &EvalOptions::default()).unwrap();
    let pixel = eval.pixel.unwrap();
    println!(
        "PaDiM bottle (Lite0, d = {}): image AUROC {:.4}, pixel AUROC {:.4}, AUPRO {:.4}",
        model.channels().len(),
        eval.image.auroc,
        pixel.level.auroc,
        pixel.aupro
    );
    assert!(eval.image.auroc >= 0.97, "image AUROC {}", eval.image.auroc);
    assert!(
        pixel.level.auroc >= 0.95,
        "pixel AUROC {}",
        pixel.level.auroc
    );
}
