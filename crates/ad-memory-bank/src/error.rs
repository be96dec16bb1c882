//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `ad-memory-bank`: invalid parameters, shapes that do not match,
/// corrupt serialised banks and device read-back failures.
#[derive(Debug, thiserror::Error)]
pub enum MemoryBankError {
    /// A hyper-parameter is outside its valid range.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Offending value, formatted.
        value: String,
        /// What is expected instead.
        reason: &'static str,
    },
    /// A row-major buffer does not hold `rows x cols` values.
    #[error("`{what}` holds {len} values, expected {rows} x {cols} = {}", rows * cols)]
    ShapeMismatch {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Expected rows.
        rows: usize,
        /// Expected columns.
        cols: usize,
    },
    /// An input that must not be empty is empty (no rows or zero dimension).
    #[error("`{0}` is empty (zero rows or zero dimension)")]
    Empty(&'static str),
    /// A NaN or infinite value was found.
    #[error("`{what}` holds a non-finite value at flat position {position}")]
    NonFinite {
        /// Which buffer.
        what: &'static str,
        /// Flat (row-major) position of the first offending value.
        position: usize,
    },
    /// Two dimensions that must agree do not.
    #[error("dimension mismatch for `{what}`: expected {expected}, got {got}")]
    DimensionMismatch {
        /// What was compared.
        what: &'static str,
        /// Expected value.
        expected: usize,
        /// Actual value.
        got: usize,
    },
    /// An index refers past the end of the data.
    #[error("`{what}` index {index} is out of range for {len} rows")]
    IndexOutOfRange {
        /// Which index.
        what: &'static str,
        /// The index.
        index: usize,
        /// Number of rows.
        len: usize,
    },
    /// `k` is zero or larger than the bank.
    #[error("k = {k} is invalid for a bank of {len} vectors (need 1 <= k <= len)")]
    InvalidK {
        /// Requested neighbours.
        k: usize,
        /// Bank size.
        len: usize,
    },
    /// The serialised bank does not start with the expected magic bytes.
    #[error("not a memory bank: magic bytes {found:?}, expected {expected:?}")]
    BadMagic {
        /// Bytes found.
        found: [u8; 4],
        /// Bytes expected.
        expected: [u8; 4],
    },
    /// The serialised bank has a format version this build cannot read.
    #[error(
        "unsupported memory bank format version {found} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// Unknown storage type tag in a serialised bank.
    #[error("unknown storage tag {0} in memory bank header (0 = f32, 1 = f16)")]
    UnknownStorage(u8),
    /// The byte stream ended early.
    #[error("memory bank truncated: need {expected} bytes, got {got}")]
    Truncated {
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// Extra bytes after the checksum.
    #[error("memory bank has {extra} trailing bytes after the checksum")]
    TrailingBytes {
        /// Number of unexpected bytes.
        extra: usize,
    },
    /// The stored CRC32 does not match the content.
    #[error("memory bank checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// CRC stored in the file.
        stored: u32,
        /// CRC computed over the content.
        computed: u32,
    },
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// File at fault.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A Burn tensor could not be read back from its device.
    #[error("burn tensor read-back failed: {0}")]
    Burn(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, MemoryBankError>;

/// Checks that `data` holds `rows * cols` finite values.
pub(crate) fn check_matrix(
    what: &'static str,
    data: &[f32],
    rows: usize,
    cols: usize,
) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(MemoryBankError::Empty(what));
    }
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(MemoryBankError::ShapeMismatch {
            what,
            len: data.len(),
            rows,
            cols,
        });
    }
    if let Some(position) = data.iter().position(|v| !v.is_finite()) {
        return Err(MemoryBankError::NonFinite { what, position });
    }
    Ok(())
}
