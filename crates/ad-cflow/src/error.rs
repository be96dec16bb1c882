use std::path::PathBuf;

use thiserror::Error;

/// Errors of CFlow: configuration, feature extraction, training, files.
#[derive(Debug, Error)]
pub enum CflowError {
    /// A hyper-parameter is out of range (checked once, when the model is built).
    #[error("invalid CFlow parameter `{name}`: {reason}")]
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
    /// The caller's batch iterator failed (e.g. an unreadable image file).
    #[error("input batch: {0}")]
    Input(#[source] ad_core::BoxError),
    /// The backbone failed to build or load.
    #[error(transparent)]
    Backbone(#[from] ad_backbone::BackboneError),
    /// Training diverged (a non-finite loss).
    #[error("training diverged: loss {loss} at epoch {epoch}, tap {tap} (lower learning_rate)")]
    Diverged {
        /// The loss.
        loss: f64,
        /// Epoch (1-based).
        epoch: usize,
        /// Tap index.
        tap: usize,
    },
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
    /// A model file is not a CFlow model, is truncated, corrupt or of another version.
    #[error("{path}: not a valid CFlow model file: {reason}")]
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
