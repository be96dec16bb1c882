//! PatchCore end to end on the small generated category with deterministic backbone weights
//! (no download): fit, predict, save -> load bit-identity, and every failure as a typed error.

use std::path::Path;

use ad_backbone::{BackboneKind, Weights};
use ad_core::{BoxError, Detector, ImageBatch, PreprocessConfig, Threshold};
use ad_memory_bank::{CoresetAlgorithm, CoresetParams, CoresetSize, Storage};
use ad_mvtec::{BatchLoader, MvtecCategory, SyntheticConfig};
use ad_patchcore::{BankAugment, MapUpsample, PatchCore, PatchcoreConfig, PatchcoreError};
use burn::tensor::Device;

fn config(seed: u64) -> PatchcoreConfig {
    PatchcoreConfig {
        backbone: BackboneKind::EfficientNetLite0,
        weights: Weights::Random { seed },
        preprocess: PreprocessConfig::default().with_size(64, 64),
        coreset: CoresetParams {
            size: CoresetSize::Ratio(0.25),
            ..CoresetParams::default()
        },
        num_neighbors: 3,
        batch_size: 4,
        ..PatchcoreConfig::default()
    }
}

fn category(root: &Path) -> MvtecCategory {
    let cfg = SyntheticConfig::small();
    cfg.generate(root).unwrap();
    MvtecCategory::open(root, &cfg.name).unwrap()
}

fn batches(model: &PatchCore, cat: &MvtecCategory, test: bool) -> Vec<ImageBatch> {
    let samples = if test {
        &cat.splits.test
    } else {
        &cat.splits.train
    };
    BatchLoader::new(samples, model.preprocessor().clone(), 4)
        .map(|b| b.unwrap().images)
        .collect()
}

fn fitted(root: &Path, cfg: &PatchcoreConfig) -> (PatchCore, MvtecCategory) {
    let cat = category(root);
    let mut model = PatchCore::new(cfg, &Device::default()).unwrap();
    let train = batches(&model, &cat, false);
    let summary = model.fit(train.into_iter().map(Ok::<_, BoxError>)).unwrap();
    assert_eq!(summary.images, cat.splits.train.len());
    // Lite0 blocks.4 is at stride 8: 8x8 patches per 64x64 image.
    assert_eq!(summary.features, cat.splits.train.len() * 64);
    assert_eq!(
        summary.memory_rows,
        match cfg.coreset.size {
            CoresetSize::Ratio(r) => (summary.features as f64 * r) as usize,
            CoresetSize::Count(c) => c,
        }
    );
    (model, cat)
}

#[test]
fn fit_predict_and_save_load_are_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut model, cat) = fitted(tmp.path(), &config(1));
    assert_eq!(model.feature_grid(), Some((8, 8)));
    assert_eq!(model.memory_bank().unwrap().dim(), 40 + 112);
    model.set_threshold(Some(Threshold::manual(1.5).unwrap()));
    let test = batches(&model, &cat, true);
    let before: Vec<_> = test
        .iter()
        .flat_map(|b| model.predict(b).unwrap())
        .collect();
    assert_eq!(before.len(), cat.splits.test.len());
    for p in &before {
        assert_eq!((p.map.width(), p.map.height()), (64, 64));
        assert!(p.score.is_finite() && p.score >= 0.0);
        assert!(p.map.as_slice().iter().all(|v| v.is_finite() && *v >= 0.0));
        assert_eq!(p.is_anomalous, Some(p.score >= 1.5));
    }
    let path = tmp.path().join("m.patchcore");
    model.save(&path).unwrap();
    let loaded = PatchCore::load(&path, &Device::default()).unwrap();
    assert_eq!(loaded.threshold(), model.threshold());
    assert_eq!(loaded.config(), model.config());
    let after: Vec<_> = test
        .iter()
        .flat_map(|b| loaded.predict(b).unwrap())
        .collect();
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a.score.to_bits(), b.score.to_bits());
        assert!(
            a.map
                .as_slice()
                .iter()
                .zip(b.map.as_slice())
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
    }
    // Half-precision storage: half the bank bytes, nearly the same scores.
    let half = tmp.path().join("m16.patchcore");
    model.save_with(&half, Storage::F16).unwrap();
    assert!(std::fs::metadata(&half).unwrap().len() < std::fs::metadata(&path).unwrap().len());
    let loaded16 = PatchCore::load(&half, &Device::default()).unwrap();
    let p16 = loaded16.predict(&test[0]).unwrap();
    for (a, b) in before.iter().zip(&p16) {
        assert!(
            (a.score - b.score).abs() <= 1e-2 * a.score.max(1.0),
            "{} vs {}",
            a.score,
            b.score
        );
    }
}

#[test]
fn single_image_api_and_options() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PatchcoreConfig {
        num_neighbors: 1,
        upsample: MapUpsample::Bilinear,
        blur_sigma: 0.0,
        coreset: CoresetParams {
            algorithm: CoresetAlgorithm::Random,
            ..config(2).coreset
        },
        target_dim: Some(64),
        ..config(2)
    };
    let (model, cat) = fitted(tmp.path(), &cfg);
    assert_eq!(model.memory_bank().unwrap().dim(), 64);
    let image = ad_mvtec::decode::load_rgb(&cat.splits.test[0].path).unwrap();
    let p = model.predict_image(&image).unwrap();
    // The map comes back at the image's resolution.
    assert_eq!(
        (p.map.width(), p.map.height()),
        (image.width(), image.height())
    );
    // With one neighbour and no blur, the image score is exactly the largest patch score,
    // and bilinear upsampling cannot exceed the grid's maximum.
    let max = p.map.max();
    assert!(max <= p.score + 1e-5, "{max} > {}", p.score);
    let ps = model
        .patch_scores(&model.preprocessor().batch(&[image]).unwrap())
        .unwrap();
    let grid_max = ps.scores.iter().cloned().fold(0.0, f32::max);
    assert_eq!(grid_max, ps.image_scores[0]);
    assert_eq!(p.is_anomalous, None);
}

#[test]
fn training_patches_score_zero_at_full_coreset() {
    // With the whole training set as memory bank, every training patch is its own nearest
    // neighbour: patch scores are (numerically) zero.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PatchcoreConfig {
        coreset: CoresetParams {
            size: CoresetSize::Ratio(1.0),
            ..CoresetParams::default()
        },
        ..config(3)
    };
    let (model, cat) = fitted(tmp.path(), &cfg);
    let train = batches(&model, &cat, false);
    let ps = model.patch_scores(&train[0]).unwrap();
    assert!(
        ps.scores.iter().all(|&s| s < 1e-2),
        "max {}",
        ps.scores.iter().cloned().fold(0.0, f32::max)
    );
}

#[test]
fn misuse_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let model = PatchCore::new(&config(4), &Device::default()).unwrap();
    let cat = category(tmp.path());
    let test = batches(&model, &cat, true);
    assert!(matches!(
        model.predict(&test[0]),
        Err(PatchcoreError::NotFitted)
    ));
    assert!(matches!(
        model.save(tmp.path().join("x")),
        Err(PatchcoreError::NotFitted)
    ));

    let mut model = PatchCore::new(&config(4), &Device::default()).unwrap();
    let none: Vec<Result<ImageBatch, BoxError>> = Vec::new();
    assert!(matches!(
        model.fit(none),
        Err(PatchcoreError::NoTrainingImages)
    ));
    let failing = vec![Err::<ImageBatch, BoxError>("disk on fire".into())];
    match model.fit(failing) {
        Err(PatchcoreError::Input(e)) => assert!(e.to_string().contains("disk on fire")),
        other => panic!("{other:?}"),
    }
    // Batches of two sizes in one fit.
    let other_pre =
        ad_core::Preprocessor::new(PreprocessConfig::default().with_size(32, 32)).unwrap();
    let img = ad_mvtec::decode::load_rgb(&cat.splits.train[0].path).unwrap();
    let mixed = vec![
        Ok::<_, BoxError>(
            model
                .preprocessor()
                .batch(std::slice::from_ref(&img))
                .unwrap(),
        ),
        Ok(other_pre.batch(std::slice::from_ref(&img)).unwrap()),
    ];
    assert!(matches!(
        model.fit(mixed),
        Err(PatchcoreError::BatchShape { .. })
    ));
    // Predicting on another image size than the fit.
    let (fitted, _) = fitted(&tmp.path().join("b"), &config(4));
    let small = other_pre.batch(&[img]).unwrap();
    assert!(matches!(
        fitted.predict(&small),
        Err(PatchcoreError::BatchShape { .. })
    ));
}

#[test]
fn corrupt_model_files_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _) = fitted(tmp.path(), &config(5));
    let path = tmp.path().join("m.patchcore");
    model.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let dev = Device::default();
    let bad_file = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        PatchCore::load(&p, &dev).unwrap_err()
    };
    let is_bad = |e: &PatchcoreError, what: &str| match e {
        PatchcoreError::BadModelFile { reason, .. } => assert!(reason.contains(what), "{reason}"),
        other => panic!("{other:?}"),
    };
    is_bad(&bad_file("empty", &[]), "too short");
    is_bad(&bad_file("truncated", &good[..good.len() / 2]), "checksum");
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    is_bad(&bad_file("flipped", &flipped), "checksum");
    let mut magic = good.clone();
    magic[0] = b'X';
    is_bad(&bad_file("magic", &magic), "magic");
    let mut version = good.clone();
    version[8] = 99;
    is_bad(&bad_file("version", &version), "version");
    assert!(matches!(
        PatchCore::load(tmp.path().join("missing"), &dev),
        Err(PatchcoreError::Io { .. })
    ));

    // A model whose header names other backbone weights than those available now.
    let hlen = u64::from_le_bytes(good[12..20].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[20..20 + hlen]).unwrap();
    let forged = header.replace("formula-seed=5", "formula-seed=6");
    assert_ne!(forged, header);
    assert_eq!(forged.len(), header.len());
    let mut body = good[..good.len() - 4].to_vec();
    body[20..20 + hlen].copy_from_slice(forged.as_bytes());
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    match bad_file("mismatch", &body) {
        PatchcoreError::BackboneMismatch { saved, found } => {
            assert!(saved.contains("seed=6") && found.contains("seed=5"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn adding_images_continues_the_bank_and_adding_none_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(3);
    let (full, cat) = fitted(dir.path(), &cfg);
    let train = batches(&full, &cat, false);
    let half = train.len() / 2;
    let fit = |cfg: &PatchcoreConfig, b: &[ImageBatch]| {
        let mut m = PatchCore::new(cfg, &Device::default()).unwrap();
        m.fit(b.iter().cloned().map(Ok::<_, BoxError>)).unwrap();
        m
    };
    let part = fit(&cfg, &train[..half]);
    let old = part.memory_bank().unwrap().as_slice().to_vec();
    // Through the file: the count of patches seen travels with the model.
    let path = dir.path().join("a.patchcore");
    part.save(&path).unwrap();
    let mut part = PatchCore::load(&path, &Device::default()).unwrap();
    let s = part
        .add(train[half..].iter().cloned().map(Ok::<_, BoxError>))
        .unwrap();
    let n_new: usize = train[half..].iter().map(|b| b.len() * 64).sum();
    assert_eq!(s.features, n_new);
    let bank = part.memory_bank().unwrap();
    // The bank grows to floor(all patches * ratio), as a fit on everything, and keeps its rows.
    assert_eq!(bank.len(), full.memory_bank().unwrap().len());
    assert_eq!(&bank.as_slice()[..old.len()], &old[..]);
    // The new rows are new patches' features: training patches of B now score (almost) zero.
    let b_scores = part.patch_scores(&train[half]).unwrap();
    let before = PatchCore::load(&path, &Device::default())
        .unwrap()
        .patch_scores(&train[half])
        .unwrap();
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(mean(&b_scores.scores) < mean(&before.scores));

    // Adding nothing leaves the saved model byte-identical.
    let (p1, p2) = (
        dir.path().join("b.patchcore"),
        dir.path().join("c.patchcore"),
    );
    part.save(&p1).unwrap();
    let none = part
        .add(std::iter::empty::<Result<ImageBatch, BoxError>>())
        .unwrap();
    assert_eq!(none.images, 0);
    part.save(&p2).unwrap();
    assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());

    // At ratio 1 nothing is selected away: fit(A) + add(B) is fit(A + B), bit for bit.
    let all = PatchcoreConfig {
        coreset: CoresetParams {
            size: CoresetSize::Ratio(1.0),
            ..cfg.coreset.clone()
        },
        ..cfg.clone()
    };
    let whole = fit(&all, &train);
    let mut grown = fit(&all, &train[..half]);
    grown
        .add(train[half..].iter().cloned().map(Ok::<_, BoxError>))
        .unwrap();
    assert_eq!(
        whole.memory_bank().unwrap().as_slice(),
        grown.memory_bank().unwrap().as_slice()
    );
}

#[test]
fn a_fit_under_a_memory_budget_streams_its_coreset() {
    let dir = tempfile::tempdir().unwrap();
    // 128 px images: 256 patches each, so 1 MiB (about 930 features of 152 dims) makes
    // several chunks.
    let cfg = PatchcoreConfig {
        preprocess: PreprocessConfig::default().with_size(128, 128),
        ..config(4)
    };
    let cat = category(dir.path());
    let probe = PatchCore::new(&cfg, &Device::default()).unwrap();
    let train = batches(&probe, &cat, false);
    let exact = {
        let mut m = PatchCore::new(&cfg, &Device::default()).unwrap();
        m.fit(train.iter().cloned().map(Ok::<_, BoxError>)).unwrap();
        m
    };
    let streamed_cfg = PatchcoreConfig {
        fit_budget_mib: Some(1),
        ..cfg.clone()
    };
    let mut streamed = PatchCore::new(&streamed_cfg, &Device::default()).unwrap();
    let s = streamed
        .fit(train.iter().cloned().map(Ok::<_, BoxError>))
        .unwrap();
    assert!(s.features > 2000, "{} patches: one chunk only", s.features);
    assert_eq!(
        streamed.memory_bank().unwrap().len(),
        exact.memory_bank().unwrap().len()
    );
    let test = batches(&exact, &cat, true);
    let a = exact.patch_scores(&test[0]).unwrap().image_scores;
    let b = streamed.patch_scores(&test[0]).unwrap().image_scores;
    for (x, y) in a.iter().zip(&b) {
        assert!(
            y.is_finite() && (x - y).abs() <= 0.25 * x.abs().max(1e-3),
            "{x} vs {y}"
        );
    }
    // A budget needs a ratio.
    let err = PatchCore::new(
        &PatchcoreConfig {
            coreset: CoresetParams {
                size: CoresetSize::Count(100),
                ..CoresetParams::default()
            },
            ..streamed_cfg
        },
        &Device::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PatchcoreError::InvalidConfig {
                name: "fit_budget_mib",
                ..
            }
        ),
        "{err}"
    );
}

/// `batch`'s images transposed (`transpose`) and then flipped left-right (`mirror`).
fn transformed(batch: &ImageBatch, transpose: bool, mirror: bool) -> ImageBatch {
    let (h, w) = (batch.height(), batch.width());
    let per = 3 * h * w;
    let planes = batch
        .as_slice()
        .chunks(per)
        .map(|img| {
            let (oh, ow) = if transpose { (w, h) } else { (h, w) };
            let mut out = vec![0.0; per];
            for c in 0..3 {
                for y in 0..oh {
                    for x in 0..ow {
                        let sx = if mirror { ow - 1 - x } else { x };
                        let (iy, ix) = if transpose { (sx, y) } else { (y, sx) };
                        out[(c * oh + y) * ow + x] = img[(c * h + iy) * w + ix];
                    }
                }
            }
            out
        })
        .collect();
    let p = PreprocessConfig::default();
    ImageBatch::from_planes(planes, (h, w), p.mean, p.std).unwrap()
}

#[test]
fn an_augmented_bank_holds_the_flipped_and_rotated_training_patches() {
    // At full coreset, a training image's patches score (numerically) zero; a mirrored or
    // rotated copy scores zero only when the bank was augmented with that symmetry.
    let tmp = tempfile::tempdir().unwrap();
    let cat = category(tmp.path());
    let full = |augment| PatchcoreConfig {
        coreset: CoresetParams {
            size: CoresetSize::Ratio(1.0),
            ..CoresetParams::default()
        },
        augment,
        ..config(3)
    };
    let max_score = |model: &PatchCore, b: &ImageBatch| {
        let ps = model.patch_scores(b).unwrap();
        ps.scores.iter().cloned().fold(0.0, f32::max)
    };
    let mut maxima = Vec::new();
    for augment in [BankAugment::None, BankAugment::Flips, BankAugment::Dihedral] {
        let mut model = PatchCore::new(&full(augment), &Device::default()).unwrap();
        let train = batches(&model, &cat, false);
        let summary = model
            .fit(train.clone().into_iter().map(Ok::<_, BoxError>))
            .unwrap();
        assert_eq!(summary.images, cat.splits.train.len());
        assert_eq!(
            summary.features,
            cat.splits.train.len() * 64 * augment.copies(),
            "{augment}"
        );
        let mirrored = max_score(&model, &transformed(&train[0], false, true));
        let rotated = max_score(&model, &transformed(&train[0], true, true));
        maxima.push((augment, mirrored, rotated));
    }
    let [(_, m0, r0), (_, m4, r4), (_, m8, r8)] = maxima[..] else {
        unreachable!()
    };
    assert!(m0 > 1e-1 && r0 > 1e-1, "unaugmented: {m0} {r0}");
    assert!(m4 < 1e-2 && r4 > 1e-1, "flips: {m4} {r4}");
    assert!(m8 < 1e-2 && r8 < 1e-2, "dihedral: {m8} {r8}");

    // Rotations need square images: refused before any work.
    let tall = PatchcoreConfig {
        preprocess: PreprocessConfig::default().with_size(64, 96),
        augment: BankAugment::Dihedral,
        ..config(3)
    };
    match tall.check() {
        Err(PatchcoreError::InvalidConfig {
            name: "augment", ..
        }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let flips = PatchcoreConfig {
        augment: BankAugment::Flips,
        ..tall
    };
    assert!(flips.check().is_ok());
    assert_eq!("dihedral".parse::<BankAugment>(), Ok(BankAugment::Dihedral));
    assert!("mirror".parse::<BankAugment>().is_err());
}
