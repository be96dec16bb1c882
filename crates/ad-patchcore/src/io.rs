//! One-file model format: the [`ad_core::model_file`] container with magic `ADPATCHC`, a JSON
//! header (configuration, backbone identity, grid, threshold) and the memory bank as payload. The backbone weights are not copied into the file: their
//! identity (kind + SHA-256 of the checkpoint) is, and loading checks that the weights found
//! now are the same.

use std::path::Path;

use ad_core::Threshold;
use ad_memory_bank::{MemoryBank, Storage};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::model::{Fitted, Index, PatchCore};
use crate::{PatchcoreConfig, PatchcoreError};

/// The 8 bytes that open a PatchCore model file.
pub const MAGIC: &[u8; 8] = b"ADPATCHC";
/// Version of the file format written by this crate (2: coreset parameters as one
/// `ad_memory_bank::CoresetParams`, calibrated threshold, bank rows in the header).
pub const FORMAT_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Header {
    config: PatchcoreConfig,
    backbone: String,
    grid: (usize, usize),
    image_size: (usize, usize),
    feature_dim: usize,
    bank_rows: usize,
    threshold: Option<Threshold>,
    coverage_radius: f32,
    /// Patch features the bank was selected from (0: not recorded by older builds).
    #[serde(default)]
    patches_seen: usize,
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
            bank_rows: fitted.bank.len(),
            threshold: self.threshold.clone(),
            coverage_radius: fitted.coverage_radius,
            patches_seen: fitted.patches_seen,
        };
        let json = serde_json::to_vec(&header).map_err(|e| PatchcoreError::BadModelFile {
            path: path.to_path_buf(),
            reason: format!("cannot encode header: {e}"),
        })?;
        let bank = fitted.bank.to_bytes(storage);
        let out = ad_core::model_file::encode(MAGIC, FORMAT_VERSION, &json, &bank);
        ad_core::model_file::write_atomic(path, &out).map_err(|source| PatchcoreError::Io {
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
        let bad = |reason: String| PatchcoreError::BadModelFile {
            path: path.to_path_buf(),
            reason,
        };
        let (header, bank) =
            ad_core::model_file::decode(&bytes, MAGIC, FORMAT_VERSION, "PatchCore").map_err(bad)?;
        let header: Header =
            serde_json::from_slice(header).map_err(|e| bad(format!("header: {e}")))?;
        let mut model = PatchCore::new(&header.config, device)?;
        if model.backbone.identity() != header.backbone {
            return Err(PatchcoreError::BackboneMismatch {
                saved: header.backbone,
                found: model.backbone.identity().to_string(),
            });
        }
        let bank = MemoryBank::from_bytes_with_dim(bank, header.feature_dim)?;
        if bank.len() != header.bank_rows {
            return Err(bad(format!(
                "header says {} bank rows, payload holds {}",
                header.bank_rows,
                bank.len()
            )));
        }
        let index = Index::build(&bank, model.config.knn, device);
        model.threshold = header.threshold;
        model.fitted = Some(Fitted {
            bank,
            index,
            patches_seen: header.patches_seen,
            grid: header.grid,
            image_size: header.image_size,
            coverage_radius: header.coverage_radius,
        });
        Ok(model)
    }
}
