use std::path::PathBuf;

use thiserror::Error;

/// Errors of PaDiM: configuration, feature extraction, the Gaussian fit, model files.
#[derive(Debug, Error)]
pub enum PadimError {
    /// A hyper-parameter is out of range (checked once, when the model is built).
    #[error("invalid PaDiM parameter `{name}`: {reason}")]
    InvalidConfig {
        /// Parameter name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `predict` or `save` before `fit`.
    #[error("the model is not fitted yet: call fit() on good images first")]
    NotFitted,
    /// `fit` received no image.
    #[error("fit() received no image")]
    NoTrainingImages,
    /// A batch does not match the model (channels, size).
    #[error("batch shape {got:?} does not match the model's {expected}")]
    BatchShape {
        /// Shape received.
        got: [usize; 4],
        /// What the model expects.
        expected: String,
    },
    /// The backbone produced a NaN or infinite feature (e.g. a non-finite input pixel).
    #[error("non-finite feature value {value} (image {image} of the batch, channel {channel})")]
    NonFiniteFeature {
        /// Image index in the batch.
        image: usize,
        /// Selected-channel index.
        channel: usize,
        /// The value.
        value: f32,
    },
    /// A regularised covariance could not be factorised even after raising the ridge.
    #[error(
        "covariance at grid position {position} is not positive definite (pivot {pivot:e} at \
         row {row}, regularisation up to {regularization:e})"
    )]
    NotPositiveDefinite {
        /// Grid position (row-major `y * w + x`).
        position: usize,
        /// Row of the failing pivot.
        row: usize,
        /// The pivot value.
        pivot: f64,
        /// The largest ridge tried.
        regularization: f64,
    },
    /// The caller's batch iterator failed (e.g. an unreadable image file).
    #[error("input batch: {0}")]
    Input(#[source] ad_core::BoxError),
    /// The backbone failed to build or load.
    #[error(transparent)]
    Backbone(#[from] ad_backbone::BackboneError),
    /// Building an output failed.
    #[error(transparent)]
    Core(#[from] ad_core::CoreError),
    /// Reading or writing a model file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A model file is not a PaDiM model, is truncated, corrupt or of another version.
    #[error("{path}: not a valid PaDiM model file: {reason}")]
    BadModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The backbone weights found at load time are not those the model was fitted with.
    #[error("backbone mismatch: model was fitted with `{saved}` but `{found}` was loaded")]
    BackboneMismatch {
        /// Identity stored in the model file.
        saved: String,
        /// Identity of the weights available now.
        found: String,
    },
}
