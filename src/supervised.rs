//! Supervised evaluation of a category with a few labelled defects: every good image (train
//! and test) and every defective one pooled, stratified k-fold cross-validation of the
//! [`SupervisedClassifier`] (the backbone runs once per image), and optionally the
//! out-of-fold scores of an unsupervised detector (PatchCore) on the same folds and their
//! logistic-regression fusion with the classifier's logit.
//!
//! A library: it prints nothing; progress goes to the handed-in [`ProgressBar`].

use std::time::Instant;

use ad_core::{Detector, Mask};
use ad_mvtec::{BatchLoader, LoadedBatch, Sample, Splits};
use ad_regress::{
    ClassifierConfig, CvData, CvReport, FeatureMaps, FusionResult, SupervisedClassifier,
    compare_fusion, cross_validate, stratified_group_k_fold,
};
use burn::tensor::Device;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::Error;
use crate::registry::DetectorConfig;

/// Every image of a category, good (train and test) then defective, in a fixed order.
pub fn pool(splits: &Splits) -> Vec<Sample> {
    splits
        .train
        .iter()
        .chain(splits.test.iter().filter(|s| !s.is_anomalous))
        .chain(splits.test.iter().filter(|s| s.is_anomalous))
        .cloned()
        .collect()
}

/// The result of [`supervised_cv`].
#[derive(Clone, Debug, Serialize)]
pub struct SupervisedReport {
    /// Pooled images.
    pub images: usize,
    /// Of which defective.
    pub defective: usize,
    /// Stratum (defect type or "good") of every pooled image.
    pub strata: Vec<String>,
    /// Pooled images that are byte-identical copies of an earlier one; each is kept in its
    /// original's fold.
    pub copies: usize,
    /// The classifier's cross-validation.
    pub cv: CvReport,
    /// Out-of-fold image scores of the unsupervised detector, when one was given.
    pub detector_scores: Option<Vec<f32>>,
    /// Logistic regression on each score alone and on both, same folds.
    pub fusion: Vec<FusionResult>,
    /// Seconds spent running the backbone over the pooled images.
    pub feature_seconds: f64,
    /// Seconds spent fitting and scoring the unsupervised detector (all folds).
    pub detector_seconds: f64,
}

/// Stratified `folds`-fold cross-validation of the classifier `config` on `samples` (e.g.
/// [`pool`]); with `detector`, the same folds fit that detector on each fold's good training
/// images, score the fold's test images, and [`compare_fusion`] reports each score alone and
/// fused.
pub fn supervised_cv(
    config: &ClassifierConfig,
    samples: &[Sample],
    folds: usize,
    seed: u64,
    detector: Option<&DetectorConfig>,
    device: &Device,
    progress: &ProgressBar,
) -> Result<SupervisedReport, Error> {
    let mut classifier = SupervisedClassifier::new(config, device)?;
    let labels: Vec<bool> = samples.iter().map(|s| s.is_anomalous).collect();
    ad_regress::check_two_classes(&labels)?;
    let strata: Vec<String> = samples.iter().map(|s| s.defect.clone()).collect();
    // Byte-identical files (a good image stored twice) stay in one fold, so no image is
    // scored by a model trained on its copy.
    let paths: Vec<&std::path::Path> = samples.iter().map(|s| s.path.as_path()).collect();
    let copy_of = ad_mvtec::first_identical_files(&paths)?;
    let t0 = Instant::now();
    progress.set_length(samples.len() as u64);
    let mut features = FeatureMaps::default();
    let mut masks: Vec<Option<Mask>> = Vec::with_capacity(samples.len());
    let mut size = (0, 0);
    let pre = Detector::preprocessor(&classifier).clone();
    for batch in BatchLoader::new(samples, pre, config.forward_batch.max(1)) {
        let LoadedBatch {
            images, masks: m, ..
        } = batch?;
        size = (images.height(), images.width());
        features.append(classifier.features(&images)?)?;
        masks.extend(m);
        progress.inc(images.len() as u64);
    }
    progress.finish();
    let feature_seconds = t0.elapsed().as_secs_f64();
    let cv = cross_validate(
        &mut classifier,
        CvData {
            features: &features,
            labels: &labels,
            strata: &strata,
            masks: &masks,
            image_size: size,
            copy_of: Some(&copy_of),
        },
        folds,
        seed,
    )?;
    let (mut detector_scores, mut fusion, mut detector_seconds) = (None, Vec::new(), 0.0);
    if let Some(dc) = detector {
        let t1 = Instant::now();
        let split = stratified_group_k_fold(&strata, &copy_of, folds, seed)?;
        let mut oof = vec![f32::NAN; samples.len()];
        for fold in &split {
            let mut model = dc.build(device)?;
            let good: Vec<Sample> = fold
                .train
                .iter()
                .filter(|&&i| !labels[i])
                .map(|&i| samples[i].clone())
                .collect();
            let bs = model.batch_size();
            crate::pipeline::fit(model.as_mut(), &good, bs, &ProgressBar::hidden())?;
            let test: Vec<Sample> = fold.test.iter().map(|&i| samples[i].clone()).collect();
            let mut at = 0;
            for batch in BatchLoader::new(&test, model.preprocessor().clone(), bs) {
                let batch = batch?;
                for p in model.predict(&batch.images)? {
                    oof[fold.test[at]] = p.score;
                    at += 1;
                }
            }
        }
        detector_seconds = t1.elapsed().as_secs_f64();
        let d: Vec<f64> = oof.iter().map(|&v| v as f64).collect();
        let c: Vec<f64> = cv.out_of_fold_logits.iter().map(|&v| v as f64).collect();
        fusion = compare_fusion(&[(dc.name(), &d), ("classifier", &c)], &labels, &split)?;
        detector_scores = Some(oof);
    }
    Ok(SupervisedReport {
        images: samples.len(),
        defective: labels.iter().filter(|&&l| l).count(),
        strata,
        copies: copy_of.iter().enumerate().filter(|&(i, &j)| i != j).count(),
        cv,
        detector_scores,
        fusion,
        feature_seconds,
        detector_seconds,
    })
}

/// Trains the classifier on every image of `samples` (the model to deploy after
/// cross-validation), with per-epoch progress through the classifier's callback.
pub fn train_classifier(
    classifier: &mut SupervisedClassifier,
    samples: &[Sample],
) -> Result<ad_regress::TrainReport, Error> {
    let pre = Detector::preprocessor(classifier).clone();
    let bs = classifier.config().forward_batch.max(1);
    let batches = BatchLoader::new(samples, pre, bs).map(|b| {
        b.map(|b| {
            let labels = b.samples.iter().map(|s| s.is_anomalous).collect();
            (b.images, labels)
        })
    });
    Ok(classifier.fit_labelled(batches)?)
}
