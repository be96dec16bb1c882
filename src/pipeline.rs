//! Fit and evaluate any [`Detector`] on a dataset split: the loop every example and
//! integration test runs, written once.

use std::time::{Duration, Instant};

use ad_core::{Detector, FitSummary, Prediction, Preprocessor};
use ad_metrics::{EvalOptions, Evaluation, MapDims, PixelMaps};
use ad_mvtec::{BatchLoader, LoadedBatch, Sample};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Error;

/// A progress bar in the workspace's style (hidden when `visible` is false, e.g. in tests).
pub fn progress_bar(len: usize, message: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template(
        "{msg:>12} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar
}

/// Fits `detector` on the good training images, streaming batches from disk.
pub fn fit<D: Detector>(
    detector: &mut D,
    train: &[Sample],
    pre: &Preprocessor,
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<FitSummary, Error>
where
    Error: From<D::Error>,
{
    progress.set_length(train.len() as u64);
    let batches = BatchLoader::new(train, pre.clone(), batch_size).map(|b| {
        let b = b?;
        progress.inc(b.images.len() as u64);
        Ok::<_, ad_mvtec::DatasetError>(b.images)
    });
    let summary = detector.fit(batches)?;
    progress.finish();
    Ok(summary)
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
    /// Anomaly maps, one after another.
    pub maps: Vec<f32>,
    /// Ground-truth masks, one after another (empty for a defective image without a mask).
    pub masks: Vec<bool>,
    /// Whether every defective image had a mask (pixel metrics are meaningful).
    pub all_masks: bool,
    /// Map height and width.
    pub map_size: (usize, usize),
    /// Time spent in `predict` (excluding decoding).
    pub predict_time: Duration,
}

impl TestRun {
    /// Milliseconds of `predict` per image.
    pub fn predict_ms_per_image(&self) -> f64 {
        self.predict_time.as_secs_f64() * 1e3 / self.scores.len().max(1) as f64
    }

    /// Image AUROC, F1-max, pixel AUROC, AUPRO (pixel metrics when masks are complete).
    pub fn evaluate(&self, opts: &EvalOptions) -> Result<Evaluation, Error> {
        if self.all_masks && self.masks.iter().any(|&m| m) {
            let (h, w) = self.map_size;
            let pixels = PixelMaps {
                maps: &self.maps,
                masks: &self.masks,
                dims: MapDims::new(self.scores.len(), h, w),
            };
            Ok(ad_metrics::evaluate(
                &self.scores,
                &self.labels,
                &pixels,
                opts,
            )?)
        } else {
            Ok(ad_metrics::evaluate_images(
                &self.scores,
                &self.labels,
                opts,
            )?)
        }
    }
}

/// Scores every test image; `on_batch` sees each batch with its predictions (to write
/// overlays) before the maps are appended.
pub fn test<D: Detector>(
    detector: &D,
    test: &[Sample],
    pre: &Preprocessor,
    batch_size: usize,
    progress: &ProgressBar,
    mut on_batch: impl FnMut(&LoadedBatch, &[Prediction]) -> Result<(), Error>,
) -> Result<TestRun, Error>
where
    Error: From<D::Error>,
{
    progress.set_length(test.len() as u64);
    let mut run = TestRun {
        all_masks: true,
        ..Default::default()
    };
    for batch in BatchLoader::new(test, pre.clone(), batch_size) {
        let batch = batch?;
        let t = Instant::now();
        let preds = detector.predict(&batch.images)?;
        run.predict_time += t.elapsed();
        on_batch(&batch, &preds)?;
        run.map_size = (batch.images.height(), batch.images.width());
        for ((p, s), m) in preds.iter().zip(&batch.samples).zip(&batch.masks) {
            run.scores.push(p.score);
            run.labels.push(s.is_anomalous);
            run.maps.extend_from_slice(p.map.as_slice());
            match m {
                Some(m) => run.masks.extend_from_slice(m.as_slice()),
                None => {
                    run.all_masks = false;
                    run.masks
                        .extend(std::iter::repeat_n(false, p.map.as_slice().len()));
                }
            }
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

/// Picks a Burn device by name: `cpu` (flex), `wgpu`, `cuda` (when built with the matching
/// cargo feature), or `default` (the first enabled backend, GPUs first).
pub fn device_from_name(name: &str) -> Result<burn::tensor::Device, String> {
    match name {
        "cpu" | "flex" => Ok(burn::tensor::Device::flex()),
        "default" => Ok(burn::tensor::Device::default()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(burn::tensor::Device::wgpu(
            burn::tensor::DeviceKind::DefaultDevice,
        )),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(burn::tensor::Device::cuda(0)),
        other => Err(format!(
            "unknown or disabled device `{other}`: use cpu, default{}{}",
            if cfg!(feature = "wgpu") {
                ", wgpu"
            } else {
                " (wgpu: build with --features wgpu)"
            },
            if cfg!(feature = "cuda") {
                ", cuda"
            } else {
                " (cuda: build with --features cuda)"
            },
        )),
    }
}
