use std::path::PathBuf;

use thiserror::Error;

/// Errors of the learned heads: configuration, data, training, files.
#[derive(Debug, Error)]
pub enum RegressError {
    /// A hyper-parameter is out of range (checked once, when the model is built).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidConfig {
        /// Parameter name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A classifier was asked to learn from one class only: it would answer that class for
    /// everything (the pitfall of training on normal data only).
    #[error(
        "cannot train a classifier on {present} images only: no {missing} image was given. \
         Either label some {missing} images (e.g. the test/<defect> folders, pooled and split \
         by cross-validation), or train a ScoreStudent, which makes synthetic anomalies \
         (cut-paste, thin curves, spots) and learns a detector's scores from good images alone"
    )]
    SingleClass {
        /// The class that is present.
        present: &'static str,
        /// The class that is missing.
        missing: &'static str,
    },
    /// Labels, strata, features or images do not line up.
    #[error("inconsistent data: {0}")]
    Data(String),
    /// `predict` or `save` before `fit`.
    #[error("the model is not fitted yet")]
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
    /// The teacher of a [`ScoreStudent`](crate::ScoreStudent) failed to build, fit or score.
    #[error("teacher: {0}")]
    Teacher(#[source] ad_core::BoxError),
    /// The backbone failed to build or load.
    #[error(transparent)]
    Backbone(#[from] ad_backbone::BackboneError),
    /// Training diverged (a non-finite loss).
    #[error("training diverged: loss {loss} at epoch {epoch} (lower learning_rate)")]
    Diverged {
        /// The loss.
        loss: f64,
        /// Epoch (1-based).
        epoch: usize,
    },
    /// Building an output failed.
    #[error(transparent)]
    Core(#[from] ad_core::CoreError),
    /// A metric could not be computed.
    #[error(transparent)]
    Metrics(#[from] ad_metrics::MetricsError),
    /// Reading or writing a model file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A model file is not of this kind, is truncated, corrupt or of another version.
    #[error("{path}: not a valid {kind} model file: {reason}")]
    BadModelFile {
        /// The file.
        path: PathBuf,
        /// The model kind expected.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The backbone weights found at load time are not those the model was trained with.
    #[error("backbone mismatch: model was trained with `{saved}` but `{found}` was loaded")]
    BackboneMismatch {
        /// Identity stored in the model file.
        saved: String,
        /// Identity of the weights available now.
        found: String,
    },
}
