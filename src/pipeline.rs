//! Fit, calibrate and evaluate any [`Detector`] on a dataset: the loop every front end (the
//! `ad` tool, the examples, integration tests) runs, written once.
//!
//! A library: it prints nothing. Progress goes to the [`ProgressBar`] the caller hands in
//! (`ProgressBar::hidden()` for none).

use std::time::{Duration, Instant};

use ad_core::{Detector, FitEstimate, FitSummary, Prediction, Threshold, ThresholdMethod};
use ad_metrics::{ConfusionMatrix, EvalOptions, Evaluation, MapDims, PixelMaps};
use ad_mvtec::{BatchLoader, DataCheck, LoadedBatch, Sample, SplitMix64, Splits};
use indicatif::ProgressBar;

use crate::Error;
use crate::registry::DetectorConfig;

/// What the pre-flight found: the dataset's headers, the fit's needs, and every warning.
#[derive(Clone, Debug)]
pub struct Preflight {
    /// Every image and mask header, read.
    pub data: DataCheck,
    /// Grid, feature dimension, rows kept and peak memory of the fit.
    pub fit: FitEstimate,
    /// Warnings of both, in words (print them once; record them in the report).
    pub warnings: Vec<String>,
}

/// Checks everything before the first image is decoded: every image and mask header of
/// `splits` (missing, empty, undecodable or oversized files are errors; non-square, tiny
/// images and masks of another size are warnings), the detector's settings for `fit_images`
/// training images (patch grid, bank size), and the estimated peak memory of fitting against
/// `memory_limit` bytes.
pub fn preflight(
    config: &DetectorConfig,
    splits: &Splits,
    fit_images: usize,
    memory_limit: u64,
) -> Result<Preflight, Error> {
    let fit = config.estimate(fit_images)?;
    if fit.peak_bytes > memory_limit {
        return Err(Error::MemoryLimit {
            estimate: fit.peak_bytes,
            limit: memory_limit,
            detail: format!(
                "{fit_images} images, {}x{} grid, {} features per position",
                fit.grid.0, fit.grid.1, fit.feature_dim
            ),
            remedy: config.memory_remedy(),
        });
    }
    let resize = config.preprocess().resize;
    let data = ad_mvtec::check_splits(splits, resize)?;
    let warnings = data.warnings.iter().chain(&fit.warnings).cloned().collect();
    Ok(Preflight {
        data,
        fit,
        warnings,
    })
}

/// A default memory limit for [`preflight`]: 80 % of the machine's memory (Linux
/// `MemTotal`), 16 GiB where that cannot be read.
pub fn default_memory_limit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    match total {
        Some(kb) => kb * 1024 / 10 * 8,
        None => 16 << 30,
    }
}

/// Fits `detector` on good images, streaming batches from disk.
pub fn fit<D: Detector + ?Sized>(
    detector: &mut D,
    train: &[Sample],
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<FitSummary, Error>
where
    Error: From<D::Error>,
{
    fit_with(detector, train, batch_size, progress, || {})
}

/// [`fit`], calling `on_features_done` once every image's features are extracted (when the
/// detector goes on to build its memory: the coreset, the Gaussians), e.g. to start a spinner.
pub fn fit_with<D: Detector + ?Sized>(
    detector: &mut D,
    train: &[Sample],
    batch_size: usize,
    progress: &ProgressBar,
    on_features_done: impl FnOnce(),
) -> Result<FitSummary, Error>
where
    Error: From<D::Error>,
{
    progress.set_length(train.len() as u64);
    let pre = detector.preprocessor().clone();
    let mut done = Some(on_features_done);
    let batches = BatchLoader::new(train, pre, batch_size).map(|b| {
        let b = b?;
        progress.inc(b.images.len() as u64);
        if progress.position() as usize >= train.len() {
            progress.finish();
            if let Some(f) = done.take() {
                f();
            }
        }
        Ok::<_, ad_mvtec::DatasetError>(b.images)
    });
    let summary = detector.fit(batches)?;
    progress.finish();
    Ok(summary)
}

/// Splits good training images into the images to fit on and `fraction` of them held out to
/// calibrate the threshold (a seeded shuffle; at least one image is kept for fitting).
///
/// # Errors
/// [`Error::Calibration`] when `fraction` is outside `[0, 1)` or leaves no image on a side
/// that needs one.
pub fn split_holdout(
    train: &[Sample],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<Sample>, Vec<Sample>), Error> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::Calibration(format!(
            "hold-out fraction {fraction} is not in [0, 1)"
        )));
    }
    let n_hold = (train.len() as f64 * fraction).round() as usize;
    if fraction > 0.0 && (n_hold == 0 || n_hold >= train.len()) {
        return Err(Error::Calibration(format!(
            "holding out {fraction} of {} good images leaves {n_hold} for calibration and {} \
             for fitting; both need at least one (use more good images or another --holdout)",
            train.len(),
            train.len().saturating_sub(n_hold)
        )));
    }
    let mut order: Vec<usize> = (0..train.len()).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let mut held = vec![false; train.len()];
    for &i in &order[..n_hold] {
        held[i] = true;
    }
    let (hold, fit): (Vec<_>, Vec<_>) = train.iter().cloned().zip(held).partition(|(_, h)| *h);
    Ok((
        fit.into_iter().map(|(s, _)| s).collect(),
        hold.into_iter().map(|(s, _)| s).collect(),
    ))
}

/// Image scores of `samples`, in order.
pub fn score<D: Detector + ?Sized>(
    detector: &D,
    samples: &[Sample],
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<Vec<f32>, Error>
where
    Error: From<D::Error>,
{
    progress.set_length(samples.len() as u64);
    let mut scores = Vec::with_capacity(samples.len());
    for batch in BatchLoader::new(samples, detector.preprocessor().clone(), batch_size) {
        let batch = batch?;
        scores.extend(detector.predict(&batch.images)?.iter().map(|p| p.score));
        progress.inc(batch.samples.len() as u64);
    }
    progress.finish();
    Ok(scores)
}

fn range(scores: &[f32]) -> (f32, f32) {
    scores
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        })
}

/// The threshold from good images only: the `quantile` of the scores of good images the model
/// was not fitted on (never the minimum score, as anomalib's F1 threshold falls back to).
/// `.with_inputs(preflight.data.train_sizes)` records the fitted images' sizes with it, so
/// that [`Detector::input_warning`] (and `ad predict`) can name images unlike them.
pub fn calibrate_good(good_scores: &[f32], quantile: f64) -> Result<Threshold, Error> {
    let value = ad_metrics::good_only_threshold(good_scores, quantile)?;
    let (min, max) = range(good_scores);
    Ok(Threshold::new(
        value,
        min,
        max,
        ThresholdMethod::GoodQuantile {
            quantile,
            images: good_scores.len(),
        },
    )?)
}

/// anomalib's F1-adaptive threshold on labelled images (both classes required). Only
/// meaningful on images that are not used to report results.
pub fn calibrate_f1(scores: &[f32], labels: &[bool]) -> Result<Threshold, Error> {
    let value = ad_metrics::f1_adaptive_threshold(scores, labels)?;
    let (min, max) = range(scores);
    let defective = labels.iter().filter(|&&l| l).count();
    Ok(Threshold::new(
        value,
        min,
        max,
        ThresholdMethod::F1Adaptive {
            good: labels.len() - defective,
            defective,
        },
    )?)
}

/// Everything a test pass produced, kept flat for the metrics.
#[derive(Clone, Debug, Default)]
pub struct TestRun {
    /// The test samples, in order.
    pub samples: Vec<Sample>,
    /// Image scores.
    pub scores: Vec<f32>,
    /// Image labels (`true` = defective).
    pub labels: Vec<bool>,
    /// Decisions at the detector's threshold, when it has one.
    pub decisions: Vec<Option<bool>>,
    /// Anomaly maps, one after another (`map_size` each).
    pub maps: Vec<f32>,
    /// Ground-truth masks, one after another (all background for good images and for defective
    /// images without a mask; see `has_mask`).
    pub masks: Vec<bool>,
    /// Whether each image has pixel ground truth (good images do; defective ones when a mask
    /// file exists).
    pub has_mask: Vec<bool>,
    /// Map height and width.
    pub map_size: (usize, usize),
    /// Time spent in `predict` (excluding decoding).
    pub predict_time: Duration,
}

/// How much of a test split has pixel ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PixelCoverage {
    /// Defective test images.
    pub defective: usize,
    /// Defective test images with a mask.
    pub defective_with_mask: usize,
    /// Images the pixel metrics are computed on (good images and masked defective ones).
    pub images: usize,
}

/// The metrics of a test run and what they cover.
#[derive(Clone, Debug)]
pub struct TestEvaluation {
    /// Image and (when masks exist) pixel metrics; `None` when the test split lacks one of the
    /// two classes (AUROC and F1 need both).
    pub metrics: Option<Evaluation>,
    /// Which images the pixel metrics cover.
    pub coverage: PixelCoverage,
    /// Decisions at the detector's threshold against the labels, when it has one.
    pub confusion: Option<ConfusionMatrix>,
}

impl TestRun {
    /// Milliseconds of `predict` per image.
    pub fn predict_ms_per_image(&self) -> f64 {
        self.predict_time.as_secs_f64() * 1e3 / self.scores.len().max(1) as f64
    }

    /// Which images have pixel ground truth.
    pub fn coverage(&self) -> PixelCoverage {
        let defective = self.labels.iter().filter(|&&l| l).count();
        let defective_with_mask = self
            .labels
            .iter()
            .zip(&self.has_mask)
            .filter(|(l, m)| **l && **m)
            .count();
        PixelCoverage {
            defective,
            defective_with_mask,
            images: self.has_mask.iter().filter(|&&m| m).count(),
        }
    }

    /// Image AUROC and F1-max on every image; pixel AUROC, F1-max and AUPRO on the images that
    /// have pixel ground truth (when at least one defective image has a mask); the confusion
    /// matrix at the detector's threshold.
    pub fn evaluate(&self, opts: &EvalOptions) -> Result<TestEvaluation, Error> {
        let coverage = self.coverage();
        let both_classes = coverage.defective > 0 && coverage.defective < self.labels.len();
        let metrics = if !both_classes {
            None
        } else if coverage.defective_with_mask > 0 {
            let (h, w) = self.map_size;
            let per = h * w;
            let (mut maps, mut masks) = (Vec::new(), Vec::new());
            for (i, &m) in self.has_mask.iter().enumerate() {
                if m {
                    maps.extend_from_slice(&self.maps[i * per..(i + 1) * per]);
                    masks.extend_from_slice(&self.masks[i * per..(i + 1) * per]);
                }
            }
            let pixels = PixelMaps {
                maps: &maps,
                masks: &masks,
                dims: MapDims::new(coverage.images, h, w),
            };
            Some(ad_metrics::evaluate(
                &self.scores,
                &self.labels,
                &pixels,
                opts,
            )?)
        } else {
            Some(ad_metrics::evaluate_images(
                &self.scores,
                &self.labels,
                opts,
            )?)
        };
        let confusion = if self.decisions.iter().all(Option::is_some) && !self.decisions.is_empty()
        {
            let predicted: Vec<bool> = self.decisions.iter().map(|d| d.unwrap_or(false)).collect();
            Some(ConfusionMatrix::from_predictions(&predicted, &self.labels)?)
        } else {
            None
        };
        Ok(TestEvaluation {
            metrics,
            coverage,
            confusion,
        })
    }
}

/// Predicts the first batch of `test` once, untimed, so that one-time costs (a GPU backend's
/// kernel compilation and autotuning, its first allocations) stay out of the predict time that
/// [`test`] measures next. Returns how many images it predicted (0 when `test` is empty).
pub fn warm_up<D: Detector + ?Sized>(
    detector: &D,
    test: &[Sample],
    batch_size: usize,
) -> Result<usize, Error>
where
    Error: From<D::Error>,
{
    let mut batches = BatchLoader::new(test, detector.preprocessor().clone(), batch_size);
    let Some(batch) = batches.next() else {
        return Ok(0);
    };
    let batch = batch?;
    detector.predict(&batch.images)?;
    Ok(batch.samples.len())
}

/// Scores every test image; `on_batch` sees each batch with its predictions (to write
/// overlays) before the maps are appended.
pub fn test<D: Detector + ?Sized>(
    detector: &D,
    test: &[Sample],
    batch_size: usize,
    progress: &ProgressBar,
    mut on_batch: impl FnMut(&LoadedBatch, &[Prediction]) -> Result<(), Error>,
) -> Result<TestRun, Error>
where
    Error: From<D::Error>,
{
    progress.set_length(test.len() as u64);
    let mut run = TestRun::default();
    for batch in BatchLoader::new(test, detector.preprocessor().clone(), batch_size) {
        let batch = batch?;
        let t = Instant::now();
        let preds = detector.predict(&batch.images)?;
        run.predict_time += t.elapsed();
        on_batch(&batch, &preds)?;
        run.map_size = (batch.images.height(), batch.images.width());
        for ((p, s), m) in preds.iter().zip(&batch.samples).zip(&batch.masks) {
            run.scores.push(p.score);
            run.labels.push(s.is_anomalous);
            run.decisions.push(p.is_anomalous);
            run.maps.extend_from_slice(p.map.as_slice());
            match m {
                Some(m) => run.masks.extend_from_slice(m.as_slice()),
                None => run
                    .masks
                    .extend(std::iter::repeat_n(false, p.map.as_slice().len())),
            }
            run.has_mask.push(m.is_some());
        }
        run.samples.extend(batch.samples.iter().cloned());
        progress.inc(batch.samples.len() as u64);
    }
    progress.finish();
    Ok(run)
}

/// Peak resident memory of this process so far, MiB (Linux `VmHWM`; `None` elsewhere).
pub fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Picks a Burn device by name: `cpu` (flex); `wgpu` (wgpu's choice of adapter, a GPU
/// first), `wgpu-cpu` (a software adapter such as Mesa's lavapipe), `wgpu-discrete[:N]`,
/// `wgpu-integrated[:N]` (when built with `--features wgpu`); `cuda[:N]` (with
/// `--features cuda`); or `default` (the first enabled backend, GPUs first).
pub fn device_from_name(name: &str) -> Result<burn::tensor::Device, Error> {
    let (base, index) = match name.split_once(':') {
        Some((b, i)) => match i.parse::<usize>() {
            Ok(i) => (b, Some(i)),
            Err(_) => return Err(unknown_device(name)),
        },
        None => (name, None),
    };
    match (base, index) {
        ("cpu" | "flex", None) => Ok(burn::tensor::Device::flex()),
        ("default", None) => Ok(burn::tensor::Device::default()),
        #[cfg(feature = "wgpu")]
        (kind @ ("wgpu" | "wgpu-cpu" | "wgpu-discrete" | "wgpu-integrated"), index) => {
            use burn::tensor::DeviceKind;
            let kind = match (kind, index) {
                ("wgpu", None) => DeviceKind::DefaultDevice,
                ("wgpu-cpu", None) => DeviceKind::Cpu,
                ("wgpu-discrete", i) => DeviceKind::DiscreteGpu(i.unwrap_or(0)),
                ("wgpu-integrated", i) => DeviceKind::IntegratedGpu(i.unwrap_or(0)),
                _ => return Err(unknown_device(name)),
            };
            Ok(burn::tensor::Device::wgpu(kind))
        }
        #[cfg(feature = "cuda")]
        ("cuda", i) => Ok(burn::tensor::Device::cuda(i.unwrap_or(0))),
        _ => Err(unknown_device(name)),
    }
}

/// Every device name [`device_from_name`] accepts in this build, for help texts.
pub fn device_names() -> &'static str {
    match (cfg!(feature = "wgpu"), cfg!(feature = "cuda")) {
        (true, true) => {
            "cpu, default, wgpu, wgpu-cpu, wgpu-discrete[:N], wgpu-integrated[:N], cuda[:N]"
        }
        (true, false) => "cpu, default, wgpu, wgpu-cpu, wgpu-discrete[:N], wgpu-integrated[:N]",
        (false, true) => "cpu, default, cuda[:N]",
        (false, false) => "cpu, default",
    }
}

fn unknown_device(name: &str) -> Error {
    Error::UnknownDevice(format!(
        "unknown or disabled device `{name}`: use {}{}{}",
        device_names(),
        if cfg!(feature = "wgpu") {
            ""
        } else {
            " (wgpu devices: build with --features wgpu)"
        },
        if cfg!(feature = "cuda") {
            ""
        } else {
            " (cuda: build with --features cuda)"
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn goods(n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample::good(PathBuf::from(format!("{i:03}.png"))))
            .collect()
    }

    #[test]
    fn device_names_are_the_ones_this_build_accepts() {
        let names = device_names();
        assert!(names.starts_with("cpu, default"), "{names}");
        assert_eq!(
            names.contains("wgpu-cpu"),
            cfg!(feature = "wgpu"),
            "{names}"
        );
        assert!(device_from_name("cpu").is_ok());
        assert_eq!(device_from_name("wgpu-cpu").is_ok(), cfg!(feature = "wgpu"));
        for bad in ["gpu", "cpu:1", "wgpu:x", "wgpu-cpu:2"] {
            let e = device_from_name(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("cpu, default"), "{e}");
        }
    }

    #[test]
    fn holdout_split_is_seeded_disjoint_and_checked() {
        let train = goods(10);
        let (fit, hold) = split_holdout(&train, 0.2, 7).unwrap();
        assert_eq!((fit.len(), hold.len()), (8, 2));
        assert!(hold.iter().all(|h| !fit.contains(h)));
        assert_eq!(split_holdout(&train, 0.2, 7).unwrap().1, hold);
        assert_eq!(split_holdout(&train, 0.0, 7).unwrap().0.len(), 10);
        assert!(split_holdout(&goods(2), 0.1, 0).is_err());
        assert!(split_holdout(&train, 1.0, 0).is_err());
    }

    #[test]
    fn good_threshold_is_a_high_quantile_with_its_range() {
        let scores: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        let t = calibrate_good(&scores, 0.99).unwrap();
        assert!((t.value - 99.01).abs() < 1e-3, "{}", t.value);
        assert_eq!((t.min, t.max), (1.0, 100.0));
        assert!(calibrate_good(&scores, 0.2).is_err());
        let f = calibrate_f1(&[0.1, 0.2, 0.9], &[false, false, true]).unwrap();
        assert_eq!(f.value, 0.9);
    }

    #[test]
    fn image_level_only_runs_give_image_metrics_and_say_pixels_are_absent() {
        let run = TestRun {
            samples: goods(4),
            scores: vec![0.1, 0.2, 0.8, 0.9],
            labels: vec![false, false, true, true],
            decisions: vec![Some(false), Some(true), Some(true), Some(true)],
            maps: vec![0.0; 16],
            masks: vec![false; 16],
            has_mask: vec![true, true, false, false],
            map_size: (2, 2),
            predict_time: Duration::ZERO,
        };
        let e = run.evaluate(&EvalOptions::default()).unwrap();
        let m = e.metrics.unwrap();
        assert_eq!(m.image.auroc, 1.0);
        assert!(m.pixel.is_none());
        assert_eq!(e.coverage.defective_with_mask, 0);
        let c = e.confusion.unwrap();
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 1, 1, 0));
    }
}
