//! The typed errors of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while computing metrics, thresholds, pictures or reports.
///
/// Each variant names the input (`what`: "image scores", "pixel maps", ...) and the value at
/// fault, so that a message read in a log says where to look.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// No values were given.
    #[error("{what}: empty input")]
    Empty {
        /// Which input was empty.
        what: &'static str,
    },
    /// Two inputs that must have the same length do not.
    #[error("{what}: length mismatch, {expected} expected but {got} given")]
    LengthMismatch {
        /// Which input has the wrong length.
        what: &'static str,
        /// The length implied by the other inputs.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// Only one class is present, so the metric is undefined.
    #[error(
        "{what}: only one class present ({positives} anomalous, {negatives} normal); \
         the metric needs both normal and anomalous samples"
    )]
    SingleClass {
        /// Which input holds one class only.
        what: &'static str,
        /// Number of anomalous (positive) samples.
        positives: usize,
        /// Number of normal (negative) samples.
        negatives: usize,
    },
    /// A score is NaN or infinite.
    #[error("{what}: non-finite score {value} at index {index}")]
    NonFinite {
        /// Which input holds the value.
        what: &'static str,
        /// Flat index of the value.
        index: usize,
        /// The value itself.
        value: f32,
    },
    /// AUPRO needs at least one ground-truth region.
    #[error("AUPRO: all {pixels} mask pixels are background, there is no ground-truth region")]
    NoRegions {
        /// Number of mask pixels inspected.
        pixels: usize,
    },
    /// AUPRO needs at least one background pixel to define a false-positive rate.
    #[error("AUPRO: all {pixels} mask pixels are foreground, the false-positive rate is undefined")]
    NoBackground {
        /// Number of mask pixels inspected.
        pixels: usize,
    },
    /// The false-positive-rate limit of AUPRO is outside `(0, 1]`.
    #[error("invalid false-positive-rate limit {0}: must be in (0, 1]")]
    InvalidFprLimit(f64),
    /// A quantile is outside `[0, 1]` or not finite.
    #[error("invalid quantile {0}: must be in [0, 1]")]
    InvalidQuantile(f64),
    /// A parameter is not finite or out of its range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What is expected.
        reason: &'static str,
    },
    /// Min-max normalisation with `max <= min`.
    #[error("degenerate normalisation range: min {min} must be below max {max}")]
    DegenerateRange {
        /// The minimum.
        min: f32,
        /// The maximum.
        max: f32,
    },
    /// A picture has a zero or inconsistent size.
    #[error("{what}: invalid size {width}x{height}")]
    InvalidSize {
        /// Which picture or map.
        what: &'static str,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
    /// Reading or writing a file failed.
    #[error("i/o error at {path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Encoding a PNG failed.
    #[error("cannot write image {path}: {source}")]
    Image {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: image::ImageError,
    },
    /// Serialising or parsing JSON failed.
    #[error("JSON error at {path}: {source}")]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// Drawing a plot failed.
    #[error("plotting {what} failed: {message}")]
    Plot {
        /// Which plot.
        what: &'static str,
        /// The plotting backend's message.
        message: String,
    },
}

/// Short alias used throughout the crate.
pub type Result<T> = std::result::Result<T, MetricsError>;
