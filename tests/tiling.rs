//! Tiled detectors through the registry on the small generated category (64 px images,
//! stand-in weights, no download): stitched maps at the image's size, the image score as the
//! largest tile score, save -> load bit identity, the tiled ensemble, and adding images.

use ad_core::tiling::Tiled;
use ad_core::{BoxError, Detector, DynDetector, ImageBatch};
use ad_mvtec::{BatchLoader, MvtecCategory, SyntheticConfig};
use anomaly_detection::registry::{self, DetectorConfig};
use burn::tensor::Device;

fn config(model: &str, ensemble: bool, stride: usize) -> DetectorConfig {
    let member = match model {
        "patchcore" => {
            r#"{"model": "patchcore", "weights": {"random": {"seed": 2}}, "num_neighbors": 3,
                "batch_size": 4, "coreset": {"size": {"ratio": 0.25}}}"#
        }
        _ => r#"{"model": "padim", "weights": {"random": {"seed": 2}}, "n_features": 16}"#,
    };
    let json = format!(
        r#"{{"model": "tiled", "tiling": {{"tile": [32, 32], "stride": [{stride}, {stride}],
            "ensemble": {ensemble}}}, "preprocess": {{"resize": [64, 64]}}, "detector": {member}}}"#
    );
    serde_json::from_str(&json).unwrap()
}

fn batches(model: &dyn DynDetector, samples: &[ad_mvtec::Sample]) -> Vec<ImageBatch> {
    BatchLoader::new(samples, model.dyn_preprocessor().clone(), 4)
        .map(|b| b.unwrap().images)
        .collect()
}

fn category(root: &std::path::Path) -> MvtecCategory {
    let cfg = SyntheticConfig::small();
    cfg.generate(root).unwrap();
    MvtecCategory::open(root, &cfg.name).unwrap()
}

#[test]
fn tiled_patchcore_stitches_maps_and_saves_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let cat = category(dir.path());
    let device = Device::default();
    let config = config("patchcore", false, 24);
    config.check().unwrap();
    let mut model = config.build(&device).unwrap();
    let train = batches(model.as_ref(), &cat.splits.train);
    let summary = model
        .fit(train.iter().cloned().map(Ok::<_, BoxError>))
        .unwrap();
    // 3 x 3 tiles of 32 px (origins 0, 24, 32), 4 x 4 patches each.
    assert_eq!(summary.images, cat.splits.train.len());
    assert_eq!(summary.features, cat.splits.train.len() * 9 * 16);
    let test = batches(model.as_ref(), &cat.splits.test);
    let before = model.predict(&test[0]).unwrap();
    assert_eq!((before[0].map.width(), before[0].map.height()), (64, 64));

    // The image score is the largest tile score; the map is the mean of the tile maps.
    let path = dir.path().join("m.tiled");
    model.save(&path).unwrap();
    let tiled = Tiled::<dyn DynDetector>::load_with(&path, |p| {
        registry::load(p, &device).map_err(|e| ad_core::DetectorError(Box::new(e)))
    })
    .unwrap();
    let layout = tiled.layout().clone();
    assert_eq!(layout.len(), 9);
    let tiles = test[0].tiles(0, layout.origins(), (32, 32)).unwrap();
    let per_tile = tiled.members()[0].predict(&tiles).unwrap();
    let max = per_tile.iter().map(|p| p.score).fold(f32::MIN, f32::max);
    assert_eq!(max.to_bits(), before[0].score.to_bits());
    let maps: Vec<Vec<f32>> = per_tile.iter().map(|p| p.map.as_slice().to_vec()).collect();
    assert_eq!(layout.stitch(&maps).unwrap(), before[0].map.as_slice());

    // Through the registry: the same predictions, bit for bit.
    let loaded = registry::load(&path, &device).unwrap();
    let after = loaded.predict(&test[0]).unwrap();
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a.score.to_bits(), b.score.to_bits());
        assert_eq!(a.map.as_slice(), b.map.as_slice());
    }
    let info = registry::inspect(&path).unwrap();
    assert_eq!(info.detector, "tiled");
    assert_eq!(info.header["detector"], "patchcore");
    assert_eq!(info.header["tiles"], 9);
}

#[test]
fn tiled_ensemble_has_a_model_per_position_and_adds_images() {
    let dir = tempfile::tempdir().unwrap();
    let cat = category(dir.path());
    let device = Device::default();
    let mut model = config("padim", true, 32).build(&device).unwrap();
    let train = batches(model.as_ref(), &cat.splits.train);
    let half = train.len() / 2;
    model
        .fit(train[..half].iter().cloned().map(Ok::<_, BoxError>))
        .unwrap();
    let path = dir.path().join("e.tiled");
    model.save(&path).unwrap();
    let tiled = Tiled::<dyn DynDetector>::load_with(&path, |p| {
        registry::load(p, &device).map_err(|e| ad_core::DetectorError(Box::new(e)))
    })
    .unwrap();
    assert_eq!(tiled.members().len(), 4);
    // Adding nothing keeps the file byte-identical; adding the rest of train/good equals the
    // fit on all of it (PaDiM's update is exact), member by member.
    let mut loaded = registry::load(&path, &device).unwrap();
    loaded
        .add(std::iter::empty::<Result<ImageBatch, BoxError>>())
        .unwrap();
    let again = dir.path().join("f.tiled");
    loaded.save(&again).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );
    loaded
        .add(train[half..].iter().cloned().map(Ok::<_, BoxError>))
        .unwrap();
    let mut full = config("padim", true, 32).build(&device).unwrap();
    full.fit(train.iter().cloned().map(Ok::<_, BoxError>))
        .unwrap();
    let test = batches(full.as_ref(), &cat.splits.test);
    let (a, b) = (
        full.predict(&test[0]).unwrap(),
        loaded.predict(&test[0]).unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.score - y.score).abs() <= 1e-4 * x.score.abs(),
            "{} vs {}",
            x.score,
            y.score
        );
    }
}

#[test]
fn bad_tilings_are_refused_before_any_work() {
    let mut c = config("patchcore", false, 24);
    if let DetectorConfig::Tiled(t) = &mut c {
        t.tiling.tile = (128, 128);
    }
    let err = c.check().unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
    let nested: Result<DetectorConfig, _> = serde_json::from_str(
        r#"{"model": "tiled", "detector": {"model": "tiled", "detector": {"model": "padim"}}}"#,
    );
    let err = nested.unwrap().check().unwrap_err().to_string();
    assert!(err.contains("cannot be tiled again"), "{err}");
}
