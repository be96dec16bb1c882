use thiserror::Error;

/// Errors of the shared types and of preprocessing.
#[derive(Debug, Error)]
pub enum CoreError {
    /// A buffer does not have the length its dimensions require.
    #[error(
        "{what}: buffer holds {actual} values but {width}x{height}x{channels} needs {expected}"
    )]
    BufferSize {
        /// Which buffer.
        what: &'static str,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// Channels per pixel.
        channels: usize,
        /// Required length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// An image or map with a zero dimension.
    #[error("{what} has an empty dimension ({width}x{height})")]
    EmptyImage {
        /// Which image.
        what: &'static str,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
    /// A preprocessing or detector parameter is out of range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Images of one batch must share a size after preprocessing.
    #[error("batch is empty")]
    EmptyBatch,
    /// A batch index is out of range.
    #[error("index {index} out of range for a batch of {len}")]
    IndexOutOfRange {
        /// Requested index.
        index: usize,
        /// Batch length.
        len: usize,
    },
    /// The detector cannot do what was asked (e.g. adding images to a trained model).
    #[error("{model} cannot {operation}")]
    Unsupported {
        /// Detector name.
        model: &'static str,
        /// What was asked, and the way out, in words.
        operation: &'static str,
    },
    /// Reading the input images failed (the caller's error, unchanged).
    #[error("reading the input images failed")]
    Input(#[source] crate::BoxError),
    /// A model file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A model file is not what it should be.
    #[error("{path} is not a valid model file: {reason}")]
    BadModelFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// A tensor could not be read back from its device.
    #[error("reading a tensor back from the device failed: {0}")]
    TensorRead(String),
}
