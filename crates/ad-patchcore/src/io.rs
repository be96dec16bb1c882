//! One-file model format: magic, format version, JSON header (configuration, backbone identity,
//! grid, threshold), the memory bank, and a CRC-32 of everything before it.
//!
//! ```text
//! b"ADPATCHC" | u32 version | u64 header length | header JSON | u64 bank length | bank | u32 crc32
//! ```
//! All integers little-endian. The backbone weights are not copied into the file: their
//! identity (kind + SHA-256 of the checkpoint) is, and loading checks that the weights found
//! now are the same.

use std::path::Path;

use ad_memory_bank::{MemoryBank, Storage};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::model::{Fitted, Index, PatchCore};
use crate::{PatchcoreConfig, PatchcoreError};

const MAGIC: &[u8; 8] = b"ADPATCHC";
/// Version of the file format written by this crate.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    config: PatchcoreConfig,
    backbone: String,
    grid: (usize, usize),
    image_size: (usize, usize),
    feature_dim: usize,
    threshold: Option<f32>,
    coverage_radius: f32,
}

impl PatchCore {
    /// Saves the fitted model (memory bank in f32: reloading gives bit-identical scores).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PatchcoreError> {
        self.save_with(path, Storage::F32)
    }

    /// Saves with the memory bank in the given precision (`F16` halves the file and the
    /// loaded bank; scores change slightly).
    pub fn save_with(
        &self,
        path: impl AsRef<Path>,
        storage: Storage,
    ) -> Result<(), PatchcoreError> {
        let path = path.as_ref();
        let fitted = self.fitted.as_ref().ok_or(PatchcoreError::NotFitted)?;
        let header = Header {
            config: self.config.as_config().clone(),
            backbone: self.backbone.identity().to_string(),
            grid: fitted.grid,
            image_size: fitted.image_size,
            feature_dim: fitted.bank.dim(),
            threshold: self.threshold,
            coverage_radius: fitted.coverage_radius,
        };
        let json = serde_json::to_vec(&header).map_err(|e| PatchcoreError::BadModelFile {
            path: path.to_path_buf(),
            reason: format!("cannot encode header: {e}"),
        })?;
        let bank = fitted.bank.to_bytes(storage);
        let mut out = Vec::with_capacity(32 + json.len() + bank.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&(bank.len() as u64).to_le_bytes());
        out.extend_from_slice(&bank);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(path, out).map_err(|source| PatchcoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads a model saved by [`PatchCore::save`], rebuilding its backbone on `device` and
    /// checking that the weights are the ones it was fitted with.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self, PatchcoreError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| PatchcoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (header, bank) = parse(&bytes).map_err(|reason| PatchcoreError::BadModelFile {
            path: path.to_path_buf(),
            reason,
        })?;
        let mut model = PatchCore::new(&header.config, device)?;
        if model.backbone.identity() != header.backbone {
            return Err(PatchcoreError::BackboneMismatch {
                saved: header.backbone,
                found: model.backbone.identity().to_string(),
            });
        }
        let bank = MemoryBank::from_bytes_with_dim(bank, header.feature_dim)?;
        let index = Index::build(&bank, model.config.knn, device);
        model.threshold = header.threshold;
        model.fitted = Some(Fitted {
            bank,
            index,
            grid: header.grid,
            image_size: header.image_size,
            coverage_radius: header.coverage_radius,
        });
        Ok(model)
    }
}

fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), String> {
    if bytes.len() < 8 + 4 + 8 + 8 + 4 {
        return Err(format!("{} bytes is too short", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err("wrong magic bytes (not a PatchCore model)".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let version = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads version {FORMAT_VERSION}"
        ));
    }
    if crc32fast::hash(body) != stored {
        return Err("checksum mismatch (file corrupt or truncated)".into());
    }
    let mut pos: usize = 12;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= body.len())
            .ok_or_else(|| "section lengths exceed the file".to_string())?;
        let s = &body[pos..end];
        pos = end;
        Ok(s)
    };
    let len_of = |b: &[u8]| -> Result<usize, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(a)).map_err(|_| "section too large".to_string())
    };
    let hlen = len_of(take(8)?)?;
    let header: Header = serde_json::from_slice(take(hlen)?).map_err(|e| format!("header: {e}"))?;
    let blen = len_of(take(8)?)?;
    let bank = take(blen)?;
    if pos != body.len() {
        return Err("trailing bytes after the memory bank".into());
    }
    Ok((header, bank))
}
