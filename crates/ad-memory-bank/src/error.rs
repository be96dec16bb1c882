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
    if !all_finite(data) {
        let position = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(MemoryBankError::NonFinite { what, position });
    }
    Ok(())
}

/// Whether every value is finite: blocks in parallel, each tested as a branch-free OR over its
/// exponent bits (vectorised; a search for the position runs only once something fails).
fn all_finite(data: &[f32]) -> bool {
    const BLOCK: usize = 1 << 16;
    let block_ok = |block: &[f32]| {
        block.chunks(256).all(|chunk| {
            let mut bad = 0u32;
            for v in chunk {
                // Exponent all ones: infinity or NaN.
                bad |= u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000);
            }
            bad == 0
        })
    };
    if data.len() <= BLOCK {
        block_ok(data)
    } else {
        use rayon::prelude::*;
        data.par_chunks(BLOCK).all(block_ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_found_at_their_position() {
        for len in [1usize, 255, 256, 257, 70_000, 200_003] {
            let mut data: Vec<f32> = (0..len).map(|i| i as f32 * 1e-3 - 5.0).collect();
            assert!(check_matrix("x", &data, len, 1).is_ok());
            data[len - 1] = f32::MAX;
            assert!(check_matrix("x", &data, len, 1).is_ok());
            for (position, bad) in [
                (0, f32::NAN),
                (len / 2, f32::INFINITY),
                (len - 1, f32::NEG_INFINITY),
            ] {
                let mut x = data.clone();
                x[position] = bad;
                match check_matrix("x", &x, len, 1) {
                    Err(MemoryBankError::NonFinite { position: p, .. }) => assert_eq!(p, position),
                    other => panic!("len {len}, position {position}: {other:?}"),
                }
            }
        }
    }
}
