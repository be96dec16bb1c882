//! Training of the learned heads on small generated data with stand-in backbone weights:
//! the loss falls, a seed fixes the weights, save/load is exact, one class is refused.
//! (Real data: `tests/regress_real_data.rs` at the workspace root.)

use ad_backbone::{BackboneKind, Weights};
use ad_core::{
    AnomalyMap, BoxError, Detector, DynDetector, FitSummary, ImageBatch, Prediction,
    PreprocessConfig, Preprocessor, Threshold,
};
use ad_regress::{
    ClassifierConfig, CvData, RegressError, ScoreStudent, StudentConfig, SupervisedClassifier,
    TeacherFactory, cross_validate,
};
use burn::tensor::Device;
use std::sync::{Arc, Mutex};

/// A toy teacher: the per-pixel distance (over channels) to the mean training image.
struct MeanTeacher {
    pre: Preprocessor,
    mean: Vec<f32>,
    threshold: Option<Threshold>,
}

#[derive(Debug, thiserror::Error)]
#[error("toy teacher: {0}")]
struct ToyError(String);

impl From<ad_core::CoreError> for ToyError {
    fn from(e: ad_core::CoreError) -> Self {
        ToyError(e.to_string())
    }
}

impl Detector for MeanTeacher {
    type Error = ToyError;
    fn name(&self) -> &'static str {
        "mean"
    }
    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, ToyError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let mut n = 0;
        for b in batches {
            let b = b.map_err(|e| ToyError(e.into().to_string()))?;
            let per = 3 * b.height() * b.width();
            if self.mean.is_empty() {
                self.mean = vec![0.0; per];
            }
            for img in b.as_slice().chunks(per) {
                for (m, v) in self.mean.iter_mut().zip(img) {
                    *m += v;
                }
                n += 1;
            }
        }
        for m in &mut self.mean {
            *m /= n as f32;
        }
        Ok(FitSummary {
            images: n,
            ..Default::default()
        })
    }
    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, ToyError> {
        let (h, w) = (batch.height(), batch.width());
        let plane = h * w;
        batch
            .as_slice()
            .chunks(3 * plane)
            .map(|img| {
                let map: Vec<f32> = (0..plane)
                    .map(|p| {
                        (0..3)
                            .map(|c| (img[c * plane + p] - self.mean[c * plane + p]).powi(2))
                            .sum::<f32>()
                            .sqrt()
                    })
                    .collect();
                let map = AnomalyMap::new(w, h, map)?;
                Ok(Prediction {
                    score: map.max(),
                    map,
                    is_anomalous: None,
                })
            })
            .collect()
    }
    fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }
    fn save(&self, _: &std::path::Path) -> Result<(), ToyError> {
        Err(ToyError("not saved".into()))
    }
    fn threshold(&self) -> Option<&Threshold> {
        self.threshold.as_ref()
    }
    fn set_threshold(&mut self, t: Option<Threshold>) {
        self.threshold = t;
    }
}

fn pre() -> PreprocessConfig {
    PreprocessConfig::default().with_size(64, 64)
}

fn factory() -> TeacherFactory {
    Box::new(|| {
        Ok(Box::new(MeanTeacher {
            pre: Preprocessor::new(pre())?,
            mean: Vec::new(),
            threshold: None,
        }) as Box<dyn DynDetector>)
    })
}

/// Smooth generated images: a disc whose brightness and position vary with `i`.
fn images(n: usize, seed: u64) -> Vec<ad_core::RgbImage> {
    (0..n)
        .map(|i| {
            let k = (i as u64).wrapping_mul(2654435761).wrapping_add(seed) % 97;
            let (cx, cy) = (28.0 + (k % 7) as f32, 30.0 + (k % 5) as f32);
            ad_core::RgbImage::from_fn(64, 64, |x, y| {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                let v = if d < 18.0 { 170 + (k % 20) as u8 } else { 60 };
                [v, v.saturating_sub(20), v / 2 + (x % 4) as u8 * 3]
            })
        })
        .collect()
}

fn student_config(seed: u64) -> StudentConfig {
    StudentConfig {
        weights: Weights::Random { seed: 0 },
        preprocess: pre(),
        hidden: vec![32],
        epochs: 6,
        patch_batch: 256,
        seed,
        // The rows and stages asserted below are those of the images alone; the moved
        // patches have their own assertions.
        feature_noise: 0.0,
        ..Default::default()
    }
}

#[test]
fn student_learns_the_teacher_and_is_seeded_and_saved_exactly() {
    let device = Device::default();
    let good = images(12, 1);
    let mut a = ScoreStudent::new(&student_config(3), Some(factory()), &device).unwrap();
    let summary = a.fit_images(&good).unwrap();
    // 12 good images + 36 synthetic copies (cut-paste, thin curve, spots), an 8x8 grid each.
    assert_eq!(summary.features, 48 * 64);
    let losses = a.losses().unwrap().to_vec();
    assert_eq!(losses.len(), 6);
    assert!(
        losses[5] < 0.8 * losses[0],
        "the loss must fall: {losses:?}"
    );
    // Same seed -> identical weights and scores (also while reporting its stages); another
    // seed -> different.
    let mut b = ScoreStudent::new(&student_config(3), Some(factory()), &device).unwrap();
    let stages = record_stages(&mut b);
    b.fit_images(&good).unwrap();
    // Each fold: its teacher fits on the other six images, then scores its six good images and
    // their 18 copies, a batch of eight at a time.
    let s = |t: &str| t.to_string();
    let mut expected = Vec::new();
    for f in ["fold 1/2", "fold 2/2"] {
        expected.push((s(&format!("{f}: teacher fitting")), 0, 6));
        expected.push((s(&format!("{f}: teacher fitting")), 6, 6));
        for done in [8, 16, 24] {
            expected.push((s(&format!("{f}: teacher scoring")), done, 24));
        }
    }
    assert_eq!(*stages.lock().unwrap(), expected);
    let probe = images(3, 99);
    let pa: Vec<f32> = probe
        .iter()
        .map(|i| a.predict_image(i).unwrap().score)
        .collect();
    let pb: Vec<f32> = probe
        .iter()
        .map(|i| b.predict_image(i).unwrap().score)
        .collect();
    assert_eq!(pa, pb);
    let mut c = ScoreStudent::new(&student_config(4), Some(factory()), &device).unwrap();
    c.fit_images(&good).unwrap();
    let pc: Vec<f32> = probe
        .iter()
        .map(|i| c.predict_image(i).unwrap().score)
        .collect();
    assert_ne!(pa, pc);
    // Save / load: bit-identical maps; the loaded model predicts without a teacher.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.student");
    a.save(&path).unwrap();
    let loaded = ScoreStudent::load(&path, &device).unwrap();
    for img in &probe {
        assert_eq!(
            a.predict_image(img).unwrap().map,
            loaded.predict_image(img).unwrap().map
        );
    }
    let fitted = |config: StudentConfig| {
        let mut s = ScoreStudent::new(&config, Some(factory()), &device).unwrap();
        s.fit_images(&good).unwrap();
        s
    };
    // Without prototypes the head sees the patch feature alone, and still learns.
    let plain = fitted(StudentConfig {
        prototypes: 0,
        ..student_config(3)
    });
    assert_loss_falls(&plain);
    let pp: Vec<f32> = probe
        .iter()
        .map(|i| plain.predict_image(i).unwrap().score)
        .collect();
    assert_ne!(pa, pp, "the prototypes' distances change the head");
    // The prototypes' own seed: the student's seed by default, another one other prototypes.
    let same = fitted(StudentConfig {
        prototype_seed: Some(3),
        ..student_config(3)
    });
    assert_eq!(flat_of(&same), flat_of(&a));
    let other = fitted(StudentConfig {
        prototype_seed: Some(4),
        ..student_config(3)
    });
    assert_ne!(flat_of(&other), flat_of(&a));
    // The nearest prototype's distance as a skip: the loss (on what it leaves) falls, the head
    // differs, and the slope, kept in the model file, is added alike after loading.
    let skip = fitted(StudentConfig {
        nearest_skip: true,
        ..student_config(3)
    });
    assert_loss_falls(&skip);
    assert!(skip.skip_slope() > 0.0, "{}", skip.skip_slope());
    assert_eq!(a.skip_slope(), 0.0);
    assert_ne!(flat_of(&skip), flat_of(&a));
    reloaded_exactly(&skip, &dir.path().join("skip.student"), &probe[0]);
    // Feature-space anomalies: half of each fold's good rows (three of its six images' worth
    // of 8x8 cells) moved and added to the training rows; the loss falls, the head differs,
    // and the same seed moves the same rows.
    // The stage is reported after the teachers', one step per fold.
    let noisy = || {
        let (s, summary, stages, _) = fit_recorded(
            StudentConfig {
                feature_noise: 0.5,
                ..student_config(3)
            },
            &good,
        );
        let moving: Vec<_> = stages
            .iter()
            .skip_while(|(stage, ..)| stage != "feature-space anomalies")
            .map(|(_, done, total)| (*done, *total))
            .collect();
        assert_eq!(moving, [(0, 2), (1, 2), (2, 2)], "{stages:?}");
        (s, summary)
    };
    let (moved, moved_summary) = noisy();
    assert_eq!(moved_summary.features, (48 + 2 * 3) * 64);
    assert_loss_falls(&moved);
    assert_ne!(flat_of(&moved), flat_of(&a));
    assert_eq!(flat_of(&noisy().0), flat_of(&moved));
    // The cosine schedule: the loss falls too, and the same seed trains another head.
    let cosine = fitted(StudentConfig {
        lr_schedule: ad_core::LrSchedule::Cosine,
        ..student_config(3)
    });
    assert_loss_falls(&cosine);
    assert_ne!(cosine.losses().unwrap()[5], losses[5]);
    // Rare targets weighted up: the weighted loss falls too, and the head differs.
    let weighted = fitted(StudentConfig {
        loss_weights: ad_regress::LossWeights::SqrtInverse,
        ..student_config(3)
    });
    assert_loss_falls(&weighted);
    assert_ne!(flat_of(&weighted), flat_of(&a));
    // Standardised inputs: the loss falls too, the head (the standardisation folded into its
    // first layer) differs, and it is saved and loaded as any head.
    let standardised = fitted(StudentConfig {
        standardise_inputs: true,
        ..student_config(3)
    });
    assert_loss_falls(&standardised);
    assert_ne!(flat_of(&standardised), flat_of(&a));
    reloaded_exactly(&standardised, &dir.path().join("std.student"), &probe[0]);
    // Log targets: the loss (on ln(1 + t)) falls, the head differs, and the transform, kept in
    // the model file, is inverted alike after loading.
    let log = fitted(StudentConfig {
        target_transform: ad_regress::TargetTransform::Log1p,
        ..student_config(3)
    });
    assert_loss_falls(&log);
    assert_ne!(flat_of(&log), flat_of(&a));
    let loaded_log = reloaded_exactly(&log, &dir.path().join("log.student"), &probe[0]);
    assert_eq!(
        loaded_log.config().target_transform,
        ad_regress::TargetTransform::Log1p
    );
    // Weight averaging: the head of the last two epochs' mean is exactly the mean of the head
    // after five epochs and the head after six (the first five epochs are the same steps).
    let five = fitted(StudentConfig {
        epochs: 5,
        ..student_config(3)
    });
    let averaged = fitted(StudentConfig {
        average_epochs: 2,
        ..student_config(3)
    });
    let (w5, w6, wa) = (flat_of(&five), flat_of(&a), flat_of(&averaged));
    assert_ne!(w5, w6);
    for ((p5, p6), pa) in w5.iter().zip(&w6).zip(&wa) {
        let mean = ((f64::from(*p5) + f64::from(*p6)) / 2.0) as f32;
        assert_eq!(*pa, mean, "averaged weight {pa} != ({p5} + {p6}) / 2");
    }
    assert_eq!(averaged.losses().unwrap(), losses.as_slice());
    // Three heads: the first is the one-head student's, bit for bit; the others start from
    // their own weights and shuffling, each loss falls, and the map is the heads' mean.
    let three = fitted(StudentConfig {
        heads: 3,
        ..student_config(3)
    });
    let heads = three.heads();
    assert_eq!(heads.len(), 3);
    assert_eq!(heads[0].to_flat().unwrap(), flat_of(&a));
    assert_ne!(heads[1].to_flat().unwrap(), heads[0].to_flat().unwrap());
    assert_ne!(heads[2].to_flat().unwrap(), heads[1].to_flat().unwrap());
    let all = three.losses().unwrap();
    assert_eq!(all.len(), 18);
    assert_eq!(&all[..6], losses.as_slice());
    for h in all.chunks(6) {
        assert!(h[5] < 0.8 * h[0], "each head's loss must fall: {all:?}");
    }
    // The heads' mean differs from the first head's map (the mean itself: the crate's unit
    // test `several_heads_average_their_scaled_outputs`).
    assert_ne!(
        three.predict_image(&probe[0]).unwrap().map,
        a.predict_image(&probe[0]).unwrap().map
    );
    let loaded3 = reloaded_exactly(&three, &dir.path().join("three.student"), &probe[0]);
    assert_eq!(loaded3.heads().len(), 3);
    // Bagging: each head on its own bootstrap sample of the images; the first head is no
    // longer the one-head student's, the same seed gives the same heads, and each loss falls.
    let bagged = || {
        fitted(StudentConfig {
            heads: 2,
            bootstrap: true,
            ..student_config(3)
        })
    };
    let (b1, b2) = (bagged(), bagged());
    assert_eq!(flat_of(&b1), flat_of(&b2));
    assert_ne!(b1.heads()[0].to_flat().unwrap(), flat_of(&a));
    assert_ne!(
        b1.heads()[0].to_flat().unwrap(),
        b1.heads()[1].to_flat().unwrap()
    );
    for h in b1.losses().unwrap().chunks(6) {
        assert!(
            h[5] < 0.8 * h[0],
            "each bagged head's loss must fall: {h:?}"
        );
    }
    // Two fold splits: every good image is scored by two teachers, with its own copies per
    // split, so the head trains on twice the samples; the loss falls and the head differs.
    let (two_splits, split_summary, split_stages, _) = fit_recorded(
        StudentConfig {
            splits: 2,
            ..student_config(3)
        },
        &good,
    );
    assert_eq!(split_summary.features, 2 * 48 * 64);
    assert_loss_falls(&two_splits);
    assert_ne!(flat_of(&two_splits), flat_of(&a));
    assert_eq!(split_stages.first().unwrap().0, "fold 1/4: teacher fitting");
    assert_eq!(split_stages.last().unwrap().0, "fold 4/4: teacher scoring");
    // Fitting without a teacher is a typed error, not a panic.
    let mut no_teacher = ScoreStudent::new(&student_config(3), None, &device).unwrap();
    assert!(matches!(
        no_teacher.fit_images(&good),
        Err(RegressError::Teacher(_))
    ));
}

#[test]
fn a_distilled_student_fits_its_members_first_and_counts_their_epochs() {
    let device = Device::default();
    let good = images(12, 1);
    let distilled = || {
        fit_recorded(
            StudentConfig {
                distill: 2,
                ..student_config(3)
            },
            &good,
        )
    };
    let (a, summary, stages, epochs) = distilled();
    // The student trains on its own rows (one student's worth), its members' epochs counted
    // before its own: three students of six epochs.
    assert_eq!(summary.features, 48 * 64);
    assert_eq!(epochs, (1..=18).map(|e| (e, 18)).collect::<Vec<_>>());
    // What the CLI sizes its epoch bar by.
    assert_eq!(a.config().reported_epochs(), 18);
    assert_eq!(a.losses().unwrap().len(), 6);
    assert_loss_falls(&a);
    // Each member's stages carry its number; then the student's own folds, then the
    // members' outputs on its rows.
    let names: Vec<&str> = stages.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(
        names.first(),
        Some(&"member 1/2: fold 1/2: teacher fitting")
    );
    let first_own = names
        .iter()
        .position(|n| *n == "fold 1/2: teacher fitting")
        .unwrap();
    assert!(
        names[..first_own]
            .iter()
            .any(|n| n.starts_with("member 2/2: fold 2/2"))
    );
    assert!(names[..first_own].iter().all(|n| n.starts_with("member ")));
    let targets: Vec<_> = stages
        .iter()
        .filter(|(n, ..)| n == "distillation targets")
        .map(|(_, done, total)| (*done, *total))
        .collect();
    assert_eq!(targets, [(0, 2), (1, 2), (2, 2)]);
    // Other targets than the teacher's: another head than the plain student of the same
    // seed; the same seed gives the same head; one head and one student's model file.
    let mut plain = ScoreStudent::new(&student_config(3), Some(factory()), &device).unwrap();
    plain.fit_images(&good).unwrap();
    assert_ne!(flat_of(&a), flat_of(&plain));
    assert_eq!(flat_of(&distilled().0), flat_of(&a));
    assert_eq!(a.heads().len(), 1);
    let dir = tempfile::tempdir().unwrap();
    let probe = images(1, 99);
    let loaded = reloaded_exactly(&a, &dir.path().join("d.student"), &probe[0]);
    assert_eq!(loaded.config().distill, 2);
}

/// A student of `config` fitted on `good`, with every stage report of its fit
/// (`(stage, done, total)`) and every epoch report (`(epoch, epochs)`).
#[allow(clippy::type_complexity)]
fn fit_recorded(
    config: StudentConfig,
    good: &[ad_core::RgbImage],
) -> (
    ScoreStudent,
    FitSummary,
    Vec<(String, usize, usize)>,
    Vec<(usize, usize)>,
) {
    let mut s = ScoreStudent::new(&config, Some(factory()), &Device::default()).unwrap();
    let stages = record_stages(&mut s);
    let epochs = Arc::new(Mutex::new(Vec::new()));
    let sink = epochs.clone();
    s.set_epoch_callback(Some(Box::new(move |r: &ad_core::EpochReport| {
        sink.lock().unwrap().push((r.epoch, r.epochs));
    })));
    let summary = s.fit_images(good).unwrap();
    let stages = stages.lock().unwrap().clone();
    let epochs = epochs.lock().unwrap().clone();
    (s, summary, stages, epochs)
}

/// Every stage report of the student's next fit: `(stage, done, total)`.
fn record_stages(s: &mut ScoreStudent) -> Arc<Mutex<Vec<(String, usize, usize)>>> {
    let stages = Arc::new(Mutex::new(Vec::new()));
    let sink = stages.clone();
    s.set_stage_callback(Some(Box::new(move |r: &ad_core::StageReport| {
        sink.lock()
            .unwrap()
            .push((r.stage.clone(), r.done, r.total));
    })));
    stages
}

/// The last of a fitted student's six epochs ends below 0.8 times the first one's loss.
fn assert_loss_falls(s: &ScoreStudent) {
    let losses = s.losses().unwrap();
    assert!(
        losses[5] < 0.8 * losses[0],
        "the loss must fall: {losses:?}"
    );
}

/// `s` saved to `path` and loaded again: its map of `probe` is bit-identical.
fn reloaded_exactly(
    s: &ScoreStudent,
    path: &std::path::Path,
    probe: &ad_core::RgbImage,
) -> ScoreStudent {
    s.save(path).unwrap();
    let loaded = ScoreStudent::load(path, &Device::default()).unwrap();
    assert_eq!(
        s.predict_image(probe).unwrap().map,
        loaded.predict_image(probe).unwrap().map
    );
    loaded
}

/// Every weight of a fitted student's heads, head after head.
fn flat_of(s: &ScoreStudent) -> Vec<f32> {
    s.heads()
        .iter()
        .flat_map(|h| h.to_flat().unwrap())
        .collect()
}

fn classifier_config() -> ClassifierConfig {
    ClassifierConfig {
        weights: Weights::Random { seed: 0 },
        preprocess: pre(),
        learning_rate: 1e-2,
        max_epochs: 8,
        target_accuracy: 1.0,
        ..Default::default()
    }
}

/// Good discs and discs with a dark bar (the defect), labelled.
fn labelled(n: usize) -> (Vec<ad_core::RgbImage>, Vec<bool>) {
    let mut imgs = images(n, 5);
    let mut labels = vec![false; n];
    for (i, img) in imgs.iter_mut().enumerate().filter(|(i, _)| i % 2 == 1) {
        labels[i] = true;
        let raw: Vec<u8> = img
            .as_raw()
            .chunks(3)
            .enumerate()
            .flat_map(|(p, px)| {
                let (x, y) = (p % 64, p / 64);
                if (20..44).contains(&x) && (30..36).contains(&y) {
                    [10, 10, 10]
                } else {
                    [px[0], px[1], px[2]]
                }
            })
            .collect();
        *img = ad_core::RgbImage::new(64, 64, raw).unwrap();
    }
    (imgs, labels)
}

/// Labelled images in preprocessed batches of 8.
fn labelled_batches(
    p: &Preprocessor,
    imgs: &[ad_core::RgbImage],
    labels: &[bool],
) -> Vec<Result<(ImageBatch, Vec<bool>), BoxError>> {
    imgs.chunks(8)
        .zip(labels.chunks(8))
        .map(|(i, l)| Ok((p.batch(i).unwrap(), l.to_vec())))
        .collect()
}

/// Trains `model` and checks that the loss fell and the training images are learnt.
fn trains_well(
    model: &mut SupervisedClassifier,
    batches: Vec<Result<(ImageBatch, Vec<bool>), BoxError>>,
) {
    let report = model.fit_labelled(batches).unwrap();
    assert!(
        report.losses.last().unwrap() < &report.losses[0],
        "{:?}",
        report.losses
    );
    assert!(report.train_accuracy >= 0.9, "{report:?}");
}

#[test]
fn classifier_refuses_one_class_and_learns_two() {
    let device = Device::default();
    let mut model = SupervisedClassifier::new(&classifier_config(), &device).unwrap();
    // Good images only, through the detector interface and through labels.
    let good = images(6, 2);
    let err = model.fit_images(&good).unwrap_err();
    assert!(matches!(err, RegressError::SingleClass { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("defective") && text.contains("ScoreStudent"),
        "{text}"
    );
    let p = Preprocessor::new(pre()).unwrap();
    let batch = p.batch(&good).unwrap();
    let err = model
        .fit_labelled([Ok::<_, BoxError>((batch, vec![false; 6]))])
        .unwrap_err();
    assert!(matches!(err, RegressError::SingleClass { .. }));

    let (imgs, labels) = labelled(24);
    let batches = || labelled_batches(&p, &imgs, &labels);
    trains_well(&mut model, batches());
    // Seeded: a second model trains to the same weights.
    let mut again = SupervisedClassifier::new(&classifier_config(), &device).unwrap();
    again.fit_labelled(batches()).unwrap();
    let probe = p.batch(&imgs[..4]).unwrap();
    let s1: Vec<f32> = model
        .predict(&probe)
        .unwrap()
        .iter()
        .map(|p| p.score)
        .collect();
    let s2: Vec<f32> = again
        .predict(&probe)
        .unwrap()
        .iter()
        .map(|p| p.score)
        .collect();
    assert_eq!(s1, s2);
    // The CAM's mean is the logit; maps come at the image size.
    let preds = model.predict(&probe).unwrap();
    for p in &preds {
        assert_eq!((p.map.width(), p.map.height()), (64, 64));
        assert!(p.is_anomalous.is_some());
    }
    // Save / load.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.classifier");
    model.save(&path).unwrap();
    let loaded = SupervisedClassifier::load(&path, &device).unwrap();
    let s3: Vec<f32> = loaded
        .predict(&probe)
        .unwrap()
        .iter()
        .map(|p| p.score)
        .collect();
    assert_eq!(s1, s3);

    // Cross-validation: every image scored once, out of fold.
    let features = model.features(&p.batch(&imgs).unwrap()).unwrap();
    let strata: Vec<String> = labels
        .iter()
        .map(|&l| if l { "bar".into() } else { "good".into() })
        .collect();
    let masks = vec![None; labels.len()];
    let cv = cross_validate(
        &mut model,
        CvData {
            features: &features,
            labels: &labels,
            strata: &strata,
            masks: &masks,
            image_size: (64, 64),
            copy_of: None,
        },
        4,
        42,
    )
    .unwrap();
    assert_eq!(cv.folds.len(), 4);
    assert_eq!(cv.confusion.total(), 24);
    assert!(cv.out_of_fold_logits.iter().all(|v| v.is_finite()));
    assert!(
        cv.balanced_accuracy.mean > 0.7,
        "{:?}",
        cv.balanced_accuracy
    );
}

#[test]
fn classifier_fine_tunes_the_last_stage_from_its_pretrained_weights() {
    let device = Device::default();
    // A smaller step than the frozen head's: the stage has 410k pretrained parameters.
    let config = ClassifierConfig {
        fine_tune_last_stage: true,
        learning_rate: 1e-3,
        ..classifier_config()
    };
    let mut model = SupervisedClassifier::new(&config, &device).unwrap();
    // Features come from the last MBConv block (320 channels), the stage maps them to 1280.
    assert_eq!(model.backbone().tap_channels(), vec![320, 1280]);
    let p = Preprocessor::new(pre()).unwrap();
    let (imgs, labels) = labelled(24);
    let batches = || labelled_batches(&p, &imgs, &labels);
    trains_well(&mut model, batches());
    // The stage's output is what the CAM reads: the CAM's mean is still the logit.
    let stage = model
        .last_stage()
        .expect("a fine-tuned stage")
        .to_flat()
        .unwrap();
    assert_eq!(stage.len(), 320 * 1280 + 1280);
    let probe = p.batch(&imgs[..4]).unwrap();
    let features = model.features(&probe).unwrap();
    for s in model.score_features(&features).unwrap() {
        let mean = s.cam.iter().sum::<f32>() / s.cam.len() as f32;
        assert!((mean - s.logit).abs() < 1e-4 * s.logit.abs().max(1.0));
    }
    // Save / load: the stage travels with the head; scores identical.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ft.classifier");
    model.save(&path).unwrap();
    let loaded = SupervisedClassifier::load(&path, &device).unwrap();
    assert_eq!(loaded.last_stage().unwrap().to_flat().unwrap(), stage);
    let a: Vec<f32> = model
        .predict(&probe)
        .unwrap()
        .iter()
        .map(|p| p.score)
        .collect();
    let b: Vec<f32> = loaded
        .predict(&probe)
        .unwrap()
        .iter()
        .map(|p| p.score)
        .collect();
    assert_eq!(a, b);
    // Only EfficientNet-Lite's head has a last stage to fine-tune here.
    let bad = ClassifierConfig {
        backbone: BackboneKind::ResNet18,
        ..config
    };
    assert!(matches!(
        SupervisedClassifier::new(&bad, &device),
        Err(RegressError::InvalidConfig {
            name: "fine_tune_last_stage",
            ..
        })
    ));
}
