use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{CoreError, ImageBatch, Prediction, Preprocessor, RgbImage, Threshold};

/// A boxed error from the caller's side of [`Detector::fit`] (e.g. a dataset that failed to
/// decode a file), carried unchanged inside the detector's own error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What fitting learnt, for logs and reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// Good images seen.
    pub images: usize,
    /// Feature vectors extracted (patches for PatchCore, positions x images for PaDiM).
    pub features: usize,
    /// Size of what the model keeps (memory-bank rows for PatchCore, positions for PaDiM).
    pub memory_rows: usize,
    /// Wall time of feature extraction.
    pub extract_time: Duration,
    /// Wall time of everything after feature extraction (coreset, Gaussian fit).
    pub build_time: Duration,
}

/// What a learned detector reports after each training epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Epoch just finished (1-based).
    pub epoch: usize,
    /// Epochs in all.
    pub epochs: usize,
    /// Mean training loss of the epoch.
    pub loss: f64,
    /// Wall time of the epoch, seconds.
    pub seconds: f64,
}

/// Called after every training epoch (progress bars, logs); the library itself prints nothing.
pub type EpochCallback = Box<dyn FnMut(&EpochReport) + Send>;

/// Progress of the work a fit does between reading its images and its first epoch (a score
/// student's teachers fitting and scoring the folds), reported after each step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// What is being done, in words (`fold 1/2: teacher scoring`).
    pub stage: String,
    /// Items of the stage done.
    pub done: usize,
    /// Items in the stage.
    pub total: usize,
}

/// Called as a fit's preparation advances (progress bars, logs); the library prints nothing.
pub type StageCallback = Box<dyn FnMut(&StageReport) + Send>;

/// Smallest feature grid (per side) a detector accepts: below it, maps and scores are
/// meaningless (a 256 px image at stride 8 gives 32).
pub const MIN_GRID: usize = 4;

/// What fitting will need, estimated from a configuration and the number of training images
/// before any image is read (the pre-flight of `ad fit`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FitEstimate {
    /// Feature grid `(h, w)` of the first tap.
    pub grid: (usize, usize),
    /// Feature dimension.
    pub feature_dim: usize,
    /// Rows the model will keep (memory-bank rows, Gaussian positions).
    pub memory_rows: usize,
    /// Estimated peak memory of fitting, bytes.
    pub peak_bytes: u64,
    /// Degenerate but legal settings, in words.
    pub warnings: Vec<String>,
}

/// Estimated bytes of one backbone forward pass on a batch (input, activations and im2col
/// buffers of the early, full-resolution layers: about 100 bytes per input pixel and image,
/// measured order of magnitude for EfficientNet-Lite and ResNets on flex).
pub fn forward_bytes(batch: usize, (h, w): (usize, usize)) -> u64 {
    (batch as u64) * (h as u64) * (w as u64) * 100
}

/// The feature grid of an image of `size` at `stride` (TF SAME padding rounds up).
pub fn grid_at_stride(size: (usize, usize), stride: usize) -> (usize, usize) {
    (
        size.0.div_ceil(stride.max(1)),
        size.1.div_ceil(stride.max(1)),
    )
}

/// An unsupervised anomaly detector: fitted on good images only, it then gives every new image
/// an anomaly score and a per-pixel anomaly map, and says pass or fail from a threshold.
///
/// The whole life cycle: [`fit`](Detector::fit), [`predict`](Detector::predict),
/// [`save`](Detector::save) (each detector also has a `load` constructor), and the decision
/// [`threshold`](Detector::threshold). PatchCore and PaDiM implement it, so they are
/// interchangeable in user code; [`DynDetector`] holds any of them at run time.
pub trait Detector {
    /// The detector's typed error.
    type Error: std::error::Error + Send + Sync + From<CoreError> + 'static;

    /// A short name for reports ("patchcore", "padim").
    fn name(&self) -> &'static str;

    /// Learns the distribution of good parts from a stream of preprocessed batches. Batches are
    /// consumed one at a time; the caller never needs to hold the training set in memory.
    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, Self::Error>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>;

    /// Adds good images to a fitted model without fitting it again and without the images it
    /// was fitted on (PatchCore continues its greedy coreset over the new patches, PaDiM updates
    /// its streaming sums exactly). An empty stream leaves the model unchanged. Detectors that
    /// cannot (trained ones) return [`CoreError::Unsupported`].
    fn add<I, E>(&mut self, batches: I) -> Result<FitSummary, Self::Error>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        drop(batches);
        Err(CoreError::Unsupported {
            model: self.name(),
            operation: "add images to a fitted model: fit it again on all good images",
        }
        .into())
    }

    /// Scores a batch: one [`Prediction`] per image, maps on the batch's pixel grid, labelled
    /// when a threshold is set.
    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, Self::Error>;

    /// The preprocessing images must go through before [`Detector::predict`].
    fn preprocessor(&self) -> &Preprocessor;

    /// Writes the fitted model, threshold included, to one versioned, checksummed file
    /// (atomically: a crash never leaves a truncated file under `path`).
    fn save(&self, path: &Path) -> Result<(), Self::Error>;

    /// The decision threshold, once calibrated or set.
    fn threshold(&self) -> Option<&Threshold>;

    /// Sets (or clears) the decision threshold; it is saved with the model.
    fn set_threshold(&mut self, threshold: Option<Threshold>);

    /// Why `image` is unlike the good images the model was fitted on (its aspect ratio or
    /// resolution, [`InputSizes::check`](crate::InputSizes::check)), when the threshold
    /// records them: the image is still scored, but its score may not hold. `None` when it is
    /// like them or nothing is recorded.
    fn input_warning(&self, image: &RgbImage) -> Option<String> {
        self.threshold()?
            .inputs
            .as_ref()?
            .check(image.width(), image.height())
    }

    /// Images per forward pass used by [`Detector::fit_images`].
    fn batch_size(&self) -> usize {
        8
    }

    /// Sets the callback a trained detector calls after every epoch of `fit` (detectors fitted
    /// in one pass, PatchCore and PaDiM, have no epochs and ignore it).
    fn set_epoch_callback(&mut self, callback: Option<EpochCallback>) {
        drop(callback);
    }

    /// Sets the callback a detector with a long preparation calls as it advances (a score
    /// student: its teachers' folds; the others have none and ignore it).
    fn set_stage_callback(&mut self, callback: Option<StageCallback>) {
        drop(callback);
    }

    /// Fits on decoded images, preprocessed here in batches of [`Detector::batch_size`].
    fn fit_images(&mut self, images: &[RgbImage]) -> Result<FitSummary, Self::Error> {
        let pre = self.preprocessor().clone();
        let batches: Vec<Result<ImageBatch, CoreError>> = images
            .chunks(self.batch_size().max(1))
            .map(|c| pre.batch(c))
            .collect();
        self.fit(batches)
    }

    /// [`Detector::add`] on decoded images, preprocessed here in batches of
    /// [`Detector::batch_size`].
    fn add_images(&mut self, images: &[RgbImage]) -> Result<FitSummary, Self::Error> {
        let pre = self.preprocessor().clone();
        let batches: Vec<Result<ImageBatch, CoreError>> = images
            .chunks(self.batch_size().max(1))
            .map(|c| pre.batch(c))
            .collect();
        self.add(batches)
    }

    /// Scores one decoded image; the map comes back at the image's own resolution, so it lies
    /// over the original picture (on the model's grid when the preprocessing crops, since the
    /// map then covers the crop only; [`Detector::predict`] keeps the grid).
    fn predict_image(&self, image: &RgbImage) -> Result<Prediction, Self::Error> {
        let batch = self.preprocessor().batch(std::slice::from_ref(image))?;
        let mut p = self.predict(&batch)?.pop().ok_or(CoreError::EmptyBatch)?;
        if self.preprocessor().config().center_crop.is_none() {
            p.map = p.map.resized(image.width(), image.height())?;
        }
        Ok(p)
    }
}

/// The error of a detector held as [`DynDetector`]: the detector's own typed error, boxed
/// (`downcast_ref` recovers it, e.g. `err.0.downcast_ref::<PatchcoreError>()`).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DetectorError(pub BoxError);

/// A stream of preprocessed batches, as a trait object.
pub type BatchStream<'a> = dyn Iterator<Item = Result<ImageBatch, BoxError>> + 'a;

/// Object-safe form of [`Detector`], implemented for every detector: what lets a program pick
/// PatchCore, PaDiM or a later model by name at run time (`Box<dyn DynDetector>`). `dyn DynDetector`
/// implements [`Detector`] again, so generic code (taking `D: Detector + ?Sized`) takes either.
pub trait DynDetector {
    /// [`Detector::name`].
    fn dyn_name(&self) -> &'static str;
    /// [`Detector::fit`] on a boxed stream.
    fn dyn_fit(&mut self, batches: &mut BatchStream<'_>) -> Result<FitSummary, DetectorError>;
    /// [`Detector::add`] on a boxed stream.
    fn dyn_add(&mut self, batches: &mut BatchStream<'_>) -> Result<FitSummary, DetectorError>;
    /// [`Detector::predict`].
    fn dyn_predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, DetectorError>;
    /// [`Detector::preprocessor`].
    fn dyn_preprocessor(&self) -> &Preprocessor;
    /// [`Detector::save`].
    fn dyn_save(&self, path: &Path) -> Result<(), DetectorError>;
    /// [`Detector::threshold`].
    fn dyn_threshold(&self) -> Option<&Threshold>;
    /// [`Detector::set_threshold`].
    fn dyn_set_threshold(&mut self, threshold: Option<Threshold>);
    /// [`Detector::batch_size`].
    fn dyn_batch_size(&self) -> usize;
    /// [`Detector::set_epoch_callback`].
    fn dyn_set_epoch_callback(&mut self, callback: Option<EpochCallback>);
    /// [`Detector::set_stage_callback`].
    fn dyn_set_stage_callback(&mut self, callback: Option<StageCallback>);
}

impl<D: Detector> DynDetector for D {
    fn dyn_name(&self) -> &'static str {
        self.name()
    }
    fn dyn_fit(&mut self, batches: &mut BatchStream<'_>) -> Result<FitSummary, DetectorError> {
        self.fit(batches).map_err(|e| DetectorError(Box::new(e)))
    }
    fn dyn_add(&mut self, batches: &mut BatchStream<'_>) -> Result<FitSummary, DetectorError> {
        self.add(batches).map_err(|e| DetectorError(Box::new(e)))
    }
    fn dyn_predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, DetectorError> {
        self.predict(batch).map_err(|e| DetectorError(Box::new(e)))
    }
    fn dyn_preprocessor(&self) -> &Preprocessor {
        self.preprocessor()
    }
    fn dyn_save(&self, path: &Path) -> Result<(), DetectorError> {
        self.save(path).map_err(|e| DetectorError(Box::new(e)))
    }
    fn dyn_threshold(&self) -> Option<&Threshold> {
        self.threshold()
    }
    fn dyn_set_threshold(&mut self, threshold: Option<Threshold>) {
        self.set_threshold(threshold)
    }
    fn dyn_batch_size(&self) -> usize {
        self.batch_size()
    }
    fn dyn_set_epoch_callback(&mut self, callback: Option<EpochCallback>) {
        self.set_epoch_callback(callback)
    }
    fn dyn_set_stage_callback(&mut self, callback: Option<StageCallback>) {
        self.set_stage_callback(callback)
    }
}

impl Detector for dyn DynDetector + '_ {
    type Error = DetectorError;

    fn name(&self) -> &'static str {
        self.dyn_name()
    }
    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, DetectorError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let mut stream = batches.into_iter().map(|b| b.map_err(Into::into));
        self.dyn_fit(&mut stream)
    }
    fn add<I, E>(&mut self, batches: I) -> Result<FitSummary, DetectorError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let mut stream = batches.into_iter().map(|b| b.map_err(Into::into));
        self.dyn_add(&mut stream)
    }
    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, DetectorError> {
        self.dyn_predict(batch)
    }
    fn preprocessor(&self) -> &Preprocessor {
        self.dyn_preprocessor()
    }
    fn save(&self, path: &Path) -> Result<(), DetectorError> {
        self.dyn_save(path)
    }
    fn threshold(&self) -> Option<&Threshold> {
        self.dyn_threshold()
    }
    fn set_threshold(&mut self, threshold: Option<Threshold>) {
        self.dyn_set_threshold(threshold)
    }
    fn batch_size(&self) -> usize {
        self.dyn_batch_size()
    }
    fn set_epoch_callback(&mut self, callback: Option<EpochCallback>) {
        self.dyn_set_epoch_callback(callback)
    }
    fn set_stage_callback(&mut self, callback: Option<StageCallback>) {
        self.dyn_set_stage_callback(callback)
    }
}

impl From<CoreError> for DetectorError {
    fn from(e: CoreError) -> Self {
        DetectorError(Box::new(e))
    }
}
