use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while opening, decoding or generating a dataset. Every variant
/// names the file or directory at fault.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// A directory the layout requires does not exist.
    #[error("directory not found: {path}")]
    MissingDir {
        /// The missing directory.
        path: PathBuf,
    },
    /// A path that must be a directory is a file (or the other way round).
    #[error("{path}: expected a {expected}")]
    WrongKind {
        /// The offending path.
        path: PathBuf,
        /// "directory" or "file".
        expected: &'static str,
    },
    /// The training set has no image.
    #[error("no training images in {path}")]
    EmptyTrainSet {
        /// The directory searched.
        path: PathBuf,
    },
    /// The test set has no image.
    #[error("no test images under {path}")]
    EmptyTestSet {
        /// The directory searched.
        path: PathBuf,
    },
    /// A ground-truth mask has no test image.
    #[error("mask {mask} has no image (expected {expected_image})")]
    OrphanMask {
        /// The mask.
        mask: PathBuf,
        /// Where its image should be.
        expected_image: PathBuf,
    },
    /// An I/O error on a file or directory.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file of zero bytes where an image should be.
    #[error("{path}: empty file (0 bytes)")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be decoded as an image (unknown format, truncated, corrupt).
    #[error("{path}: cannot decode image: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// Encoding or writing an image failed (dataset generation).
    #[error("{path}: cannot write image: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A dataset parameter is out of range.
    #[error("invalid dataset parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Preprocessing failed for a file.
    #[error("{path}: {source}")]
    Preprocess {
        /// The file.
        path: PathBuf,
        /// The preprocessing error.
        #[source]
        source: ad_core::CoreError,
    },
    /// Building a batch failed.
    #[error(transparent)]
    Core(#[from] ad_core::CoreError),
}
