use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{CoreError, ImageBatch, Prediction, Preprocessor, RgbImage};

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

/// An unsupervised anomaly detector: fitted on good images only, it then gives every new image
/// an anomaly score and a per-pixel anomaly map.
///
/// PatchCore and PaDiM implement it, so they are interchangeable in user code.
pub trait Detector {
    /// The detector's typed error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A short name for reports ("patchcore", "padim").
    fn name(&self) -> &'static str;

    /// Learns the distribution of good parts from a stream of preprocessed batches. Batches are
    /// consumed one at a time; the caller never needs to hold the training set in memory.
    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, Self::Error>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>;

    /// Scores a batch: one [`Prediction`] per image, maps on the batch's pixel grid.
    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, Self::Error>;

    /// The preprocessing images must go through before [`Detector::predict`].
    fn preprocessor(&self) -> &Preprocessor;

    /// Images per forward pass used by [`Detector::fit_images`].
    fn batch_size(&self) -> usize {
        8
    }

    /// Fits on decoded images, preprocessed here in batches of [`Detector::batch_size`].
    fn fit_images(&mut self, images: &[RgbImage]) -> Result<FitSummary, Self::Error>
    where
        Self::Error: From<CoreError>,
    {
        let pre = self.preprocessor().clone();
        let batches: Vec<Result<ImageBatch, CoreError>> = images
            .chunks(self.batch_size().max(1))
            .map(|c| pre.batch(c))
            .collect();
        self.fit(batches)
    }

    /// Scores one decoded image.
    fn predict_image(&self, image: &RgbImage) -> Result<Prediction, Self::Error>
    where
        Self::Error: From<CoreError>,
    {
        let batch = self.preprocessor().batch(std::slice::from_ref(image))?;
        self.predict(&batch)?
            .pop()
            .ok_or_else(|| CoreError::EmptyBatch.into())
    }
}
