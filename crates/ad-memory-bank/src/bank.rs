//! The memory bank (PatchCore's `M`): `n` patch features of dimension `dim`, row-major f32,
//! with a small checksummed binary format.
//!
//! Layout (little-endian): magic `ADMB`, `u32` version (1), `u8` storage (0 = f32, 1 = f16),
//! 3 zero bytes, `u64` rows, `u64` dim, the values, then a CRC32 of everything before it.
//! f16 storage halves the file; values are rounded to the nearest f16 (relative error <= 2^-11).

use std::path::Path;

use crate::error::{MemoryBankError, Result, check_matrix};

const MAGIC: [u8; 4] = *b"ADMB";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 4 + 4 + 4 + 8 + 8;

/// Element type used when serialising a bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// 4 bytes per value, exact.
    F32,
    /// 2 bytes per value (IEEE half precision), rounded.
    F16,
}

/// `n` feature vectors of dimension `dim`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryBank {
    data: Vec<f32>,
    len: usize,
    dim: usize,
}

impl MemoryBank {
    /// Wraps `data` holding `data.len() / dim` rows; checks the shape and that all values are finite.
    pub fn from_rows(data: Vec<f32>, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(MemoryBankError::Empty("memory bank dim"));
        }
        let len = data.len() / dim;
        check_matrix("memory bank", &data, len, dim)?;
        Ok(Self { data, len, dim })
    }

    /// Builds the bank from the rows `indices` of `features` (`n x dim` row-major), e.g. a coreset.
    pub fn from_selection(
        features: &[f32],
        n: usize,
        dim: usize,
        indices: &[usize],
    ) -> Result<Self> {
        if features.len() != n * dim {
            return Err(MemoryBankError::ShapeMismatch {
                what: "features",
                len: features.len(),
                rows: n,
                cols: dim,
            });
        }
        let mut data = Vec::with_capacity(indices.len() * dim);
        for &i in indices {
            if i >= n {
                return Err(MemoryBankError::IndexOutOfRange {
                    what: "selection",
                    index: i,
                    len: n,
                });
            }
            data.extend_from_slice(&features[i * dim..(i + 1) * dim]);
        }
        Self::from_rows(data, dim)
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the bank is empty (never true for a constructed bank).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Dimension of each vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Consumes the bank, returning the row-major values.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// The bank with every value rounded to f16 and back (what an f16-stored bank holds after loading);
    /// use it to measure what f16 storage costs downstream.
    pub fn rounded_to_f16(&self) -> Self {
        let data = self
            .data
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        Self {
            data,
            len: self.len,
            dim: self.dim,
        }
    }

    /// Serialises the bank.
    pub fn to_bytes(&self, storage: Storage) -> Vec<u8> {
        let elem = match storage {
            Storage::F32 => 4,
            Storage::F16 => 2,
        };
        let mut out = Vec::with_capacity(HEADER_LEN + self.data.len() * elem + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(match storage {
            Storage::F32 => 0,
            Storage::F16 => 1,
        });
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(self.len as u64).to_le_bytes());
        out.extend_from_slice(&(self.dim as u64).to_le_bytes());
        match storage {
            Storage::F32 => self
                .data
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Storage::F16 => self
                .data
                .iter()
                .for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses bytes written by [`MemoryBank::to_bytes`], checking magic, version, sizes and checksum.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 4 {
            return Err(MemoryBankError::Truncated {
                expected: HEADER_LEN + 4,
                got: bytes.len(),
            });
        }
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(MemoryBankError::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        if bytes.len() < HEADER_LEN + 4 {
            return Err(MemoryBankError::Truncated {
                expected: HEADER_LEN + 4,
                got: bytes.len(),
            });
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let version = u32_at(4);
        if version != VERSION {
            return Err(MemoryBankError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let elem = match bytes[8] {
            0 => 4usize,
            1 => 2usize,
            other => return Err(MemoryBankError::UnknownStorage(other)),
        };
        let too_big = |what: &'static str, v: u64| MemoryBankError::InvalidParameter {
            name: what,
            value: v.to_string(),
            reason: "header value does not fit in memory",
        };
        let len64 = u64_at(12);
        let dim64 = u64_at(20);
        let len = usize::try_from(len64).map_err(|_| too_big("rows", len64))?;
        let dim = usize::try_from(dim64).map_err(|_| too_big("dim", dim64))?;
        let payload = len
            .checked_mul(dim)
            .and_then(|v| v.checked_mul(elem))
            .ok_or_else(|| too_big("rows * dim", len64.saturating_mul(dim64)))?;
        let expected = HEADER_LEN + payload + 4;
        if bytes.len() < expected {
            return Err(MemoryBankError::Truncated {
                expected,
                got: bytes.len(),
            });
        }
        if bytes.len() > expected {
            return Err(MemoryBankError::TrailingBytes {
                extra: bytes.len() - expected,
            });
        }
        let stored = u32_at(expected - 4);
        let computed = crc32fast::hash(&bytes[..expected - 4]);
        if stored != computed {
            return Err(MemoryBankError::ChecksumMismatch { stored, computed });
        }
        let body = &bytes[HEADER_LEN..expected - 4];
        let data: Vec<f32> = if elem == 4 {
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            body.chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()
        };
        check_matrix("memory bank", &data, len, dim)?;
        Ok(Self { data, len, dim })
    }

    /// Like [`MemoryBank::from_bytes`], and checks the vector dimension the caller expects.
    pub fn from_bytes_with_dim(bytes: &[u8], expected_dim: usize) -> Result<Self> {
        let bank = Self::from_bytes(bytes)?;
        if bank.dim != expected_dim {
            return Err(MemoryBankError::DimensionMismatch {
                what: "memory bank dim",
                expected: expected_dim,
                got: bank.dim,
            });
        }
        Ok(bank)
    }

    /// Writes the bank to a file.
    pub fn save(&self, path: impl AsRef<Path>, storage: Storage) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes(storage)).map_err(|source| MemoryBankError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a bank written by [`MemoryBank::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| MemoryBankError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank() -> MemoryBank {
        MemoryBank::from_rows((0..60).map(|i| (i as f32 * 0.731).sin() * 3.0).collect(), 6).unwrap()
    }

    #[test]
    fn roundtrip_f32_exact_and_f16_close() {
        let b = bank();
        assert_eq!((b.len(), b.dim()), (10, 6));
        assert_eq!(
            MemoryBank::from_bytes(&b.to_bytes(Storage::F32)).unwrap(),
            b
        );
        let bytes16 = b.to_bytes(Storage::F16);
        assert_eq!(bytes16.len(), HEADER_LEN + 60 * 2 + 4);
        let h = MemoryBank::from_bytes(&bytes16).unwrap();
        assert_eq!(h, b.rounded_to_f16());
        for (x, y) in h.as_slice().iter().zip(b.as_slice()) {
            assert!((x - y).abs() <= y.abs() * 1e-3 + 1e-6);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.admb");
        b.save(&path, Storage::F32).unwrap();
        assert_eq!(MemoryBank::load(&path).unwrap(), b);
        assert!(matches!(
            MemoryBank::load(dir.path().join("missing")),
            Err(MemoryBankError::Io { .. })
        ));
    }

    #[test]
    fn corrupt_inputs_give_typed_errors() {
        let good = bank().to_bytes(Storage::F32);
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            MemoryBank::from_bytes(&bad),
            Err(MemoryBankError::BadMagic { .. })
        ));
        let mut bad = good.clone();
        bad[4] = 9;
        assert!(matches!(
            MemoryBank::from_bytes(&bad),
            Err(MemoryBankError::UnsupportedVersion { found: 9, .. })
        ));
        let mut bad = good.clone();
        bad[8] = 7;
        assert!(matches!(
            MemoryBank::from_bytes(&bad),
            Err(MemoryBankError::UnknownStorage(7))
        ));
        assert!(matches!(
            MemoryBank::from_bytes(&good[..good.len() - 1]),
            Err(MemoryBankError::Truncated { .. })
        ));
        assert!(matches!(
            MemoryBank::from_bytes(&good[..10]),
            Err(MemoryBankError::Truncated { .. })
        ));
        let mut bad = good.clone();
        bad.push(0);
        assert!(matches!(
            MemoryBank::from_bytes(&bad),
            Err(MemoryBankError::TrailingBytes { extra: 1 })
        ));
        let mut bad = good.clone();
        bad[HEADER_LEN + 5] ^= 0x40;
        assert!(matches!(
            MemoryBank::from_bytes(&bad),
            Err(MemoryBankError::ChecksumMismatch { .. })
        ));
        // A header claiming an absurd size is rejected without allocating.
        let mut bad = good.clone();
        bad[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(MemoryBank::from_bytes(&bad).is_err());
        assert!(matches!(
            MemoryBank::from_bytes_with_dim(&good, 7),
            Err(MemoryBankError::DimensionMismatch {
                expected: 7,
                got: 6,
                ..
            })
        ));
        assert!(MemoryBank::from_bytes_with_dim(&good, 6).is_ok());
    }

    #[test]
    fn construction_checks_shape() {
        assert!(matches!(
            MemoryBank::from_rows(vec![0.0; 7], 3),
            Err(MemoryBankError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            MemoryBank::from_rows(vec![], 3),
            Err(MemoryBankError::Empty(_))
        ));
        assert!(matches!(
            MemoryBank::from_rows(vec![f32::INFINITY; 3], 3),
            Err(MemoryBankError::NonFinite { .. })
        ));
        let f: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let b = MemoryBank::from_selection(&f, 4, 3, &[2, 0]).unwrap();
        assert_eq!(b.as_slice(), &[6.0, 7.0, 8.0, 0.0, 1.0, 2.0]);
        assert!(MemoryBank::from_selection(&f, 4, 3, &[4]).is_err());
    }
}
