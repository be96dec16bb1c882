//! One-file model format: the [`ad_core::model_file`] container with magic `ADPADIM\0`, a JSON
//! header (configuration, backbone identity, kept channels, grid, threshold) and the Gaussians
//! as payload:
//!
//! ```text
//! payload = means f32 [positions * d] ++ inverse Cholesky factors f32 [positions * d (d + 1) / 2]
//! ```
//! All integers and floats little-endian. The backbone weights are not copied into the file:
//! their identity (kind + SHA-256 of the checkpoint) is, and loading checks that the weights
//! found now are the same.

use std::path::Path;

use ad_core::Threshold;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::gaussian::{Gaussians, tri_len};
use crate::model::{Fitted, Padim};
use crate::{PadimConfig, PadimError};

/// The 8 bytes that open a PaDiM model file.
pub const MAGIC: &[u8; 8] = b"ADPADIM\0";
/// Version of the file format written by this crate (2: calibrated threshold).
pub const FORMAT_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Header {
    config: PadimConfig,
    backbone: String,
    channels: Vec<usize>,
    grid: (usize, usize),
    image_size: (usize, usize),
    images: usize,
    threshold: Option<Threshold>,
}

impl Padim {
    /// Saves the fitted model (Gaussians in f32, as held in memory: reloading gives
    /// bit-identical scores).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PadimError> {
        let path = path.as_ref();
        let fitted = self.fitted.as_ref().ok_or(PadimError::NotFitted)?;
        let header = Header {
            config: self.config.as_config().clone(),
            backbone: self.backbone.identity().to_string(),
            channels: self.channels.clone(),
            grid: fitted.grid,
            image_size: fitted.image_size,
            images: fitted.images,
            threshold: self.threshold.clone(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| PadimError::BadModelFile {
            path: path.to_path_buf(),
            reason: format!("cannot encode header: {e}"),
        })?;
        let g = &fitted.gaussians;
        let payload: Vec<u8> = g
            .means()
            .iter()
            .chain(g.inv_chol())
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let out = ad_core::model_file::encode(MAGIC, FORMAT_VERSION, &json, &payload);
        ad_core::model_file::write_atomic(path, &out).map_err(|source| PadimError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads a model saved by [`Padim::save`], rebuilding its backbone on `device` and checking
    /// that the weights are the ones it was fitted with.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self, PadimError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| PadimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |reason: String| PadimError::BadModelFile {
            path: path.to_path_buf(),
            reason,
        };
        let (header, payload) =
            ad_core::model_file::decode(&bytes, MAGIC, FORMAT_VERSION, "PaDiM").map_err(bad)?;
        let header: Header =
            serde_json::from_slice(header).map_err(|e| bad(format!("header: {e}")))?;
        let mut model = Padim::new(&header.config, device)?;
        if model.backbone.identity() != header.backbone {
            return Err(PadimError::BackboneMismatch {
                saved: header.backbone,
                found: model.backbone.identity().to_string(),
            });
        }
        let total: usize = model.backbone.tap_channels().iter().sum();
        let ch = &header.channels;
        if ch.is_empty() || ch.windows(2).any(|w| w[0] >= w[1]) || ch.iter().any(|&c| c >= total) {
            return Err(bad(format!(
                "channel list of {} entries is not ascending within 0..{total}",
                ch.len()
            )));
        }
        let (positions, d) = (header.grid.0 * header.grid.1, ch.len());
        let n_mean = positions * d;
        let n_inv = positions * tri_len(d);
        if payload.len() != 4 * (n_mean + n_inv) {
            return Err(bad(format!(
                "payload of {} bytes, a {:?} grid with {d} channels needs {}",
                payload.len(),
                header.grid,
                4 * (n_mean + n_inv)
            )));
        }
        let floats: Vec<f32> = payload
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let inv = floats[n_mean..].to_vec();
        let mut mean = floats;
        mean.truncate(n_mean);
        let gaussians =
            Gaussians::from_parts(positions, d, mean, inv).map_err(|e| bad(e.to_string()))?;
        model.channels = header.channels;
        model.threshold = header.threshold;
        model.fitted = Some(Fitted {
            gaussians,
            grid: header.grid,
            image_size: header.image_size,
            images: header.images,
        });
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use ad_backbone::Weights;
    use ad_core::{Detector, PreprocessConfig};
    use ad_mvtec::{BatchLoader, MvtecCategory, SyntheticConfig};

    use super::*;

    /// A Lite0 with stand-in weights on the small generated category (64 x 64).
    fn fitted() -> (Padim, MvtecCategory, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SyntheticConfig::small();
        cfg.ensure(dir.path()).unwrap();
        let cat = MvtecCategory::open(dir.path(), &cfg.name).unwrap();
        let config = PadimConfig {
            weights: Weights::Random { seed: 1 },
            preprocess: PreprocessConfig::default().with_size(64, 64),
            n_features: Some(24),
            batch_size: 4,
            ..Default::default()
        };
        let mut model = Padim::new(&config, &Device::default()).unwrap();
        let pre = model.preprocessor().clone();
        let summary = model
            .fit(BatchLoader::new(&cat.splits.train, pre, 4).map(|b| b.map(|b| b.images)))
            .unwrap();
        assert_eq!(summary.images, cfg.train);
        assert_eq!(model.feature_grid(), Some((16, 16)));
        (model, cat, dir)
    }

    #[test]
    fn save_load_predict_is_bit_identical_and_corruption_is_typed() {
        let (mut model, cat, dir) = fitted();
        model.set_threshold(Some(Threshold::manual(1.5).unwrap()));
        let batch = BatchLoader::new(&cat.splits.test, model.preprocessor().clone(), 16)
            .next()
            .unwrap()
            .unwrap();
        let before = model.predict(&batch.images).unwrap();
        assert!(
            before
                .iter()
                .all(|p| p.score.is_finite() && p.map.as_slice().iter().all(|v| v.is_finite()))
        );
        assert_eq!(before[0].map.width(), 64);
        // Image score = max of the map.
        assert_eq!(before[0].score, before[0].map.max());

        let path = dir.path().join("m.padim");
        model.save(&path).unwrap();
        let loaded = Padim::load(&path, &Device::default()).unwrap();
        assert_eq!(loaded.channels(), model.channels());
        assert_eq!(loaded.threshold().map(|t| t.value), Some(1.5));
        let after = loaded.predict(&batch.images).unwrap();
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a.score.to_bits(), b.score.to_bits());
            assert!(
                a.map
                    .as_slice()
                    .iter()
                    .zip(b.map.as_slice())
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
            assert_eq!(a.is_anomalous, b.is_anomalous);
        }

        let bytes = std::fs::read(&path).unwrap();
        let expect_bad = |data: &[u8], what: &str| {
            let p = dir.path().join("bad.padim");
            std::fs::write(&p, data).unwrap();
            match Padim::load(&p, &Device::default()) {
                Err(PadimError::BadModelFile { reason, .. }) => {
                    assert!(reason.contains(what), "{what}: {reason}")
                }
                other => panic!("{what}: {other:?}"),
            }
        };
        let mut flipped = bytes.clone();
        let mid = bytes.len() / 2;
        flipped[mid] ^= 0x40;
        expect_bad(&flipped, "checksum");
        expect_bad(&bytes[..bytes.len() - 100], "checksum");
        expect_bad(&bytes[..10], "too short");
        let mut magic = bytes.clone();
        magic[0] = b'X';
        expect_bad(&magic, "magic");
        let mut version = bytes.clone();
        version[8] = 9;
        expect_bad(&version, "version");
        assert!(matches!(
            Padim::load(dir.path().join("missing.padim"), &Device::default()),
            Err(PadimError::Io { .. })
        ));
    }

    #[test]
    fn unfitted_and_mismatched_inputs_are_typed_errors() {
        let config = PadimConfig {
            weights: Weights::Random { seed: 1 },
            preprocess: PreprocessConfig::default().with_size(64, 64),
            n_features: Some(500),
            ..Default::default()
        };
        assert!(matches!(
            Padim::new(&config, &Device::default()),
            Err(PadimError::InvalidConfig {
                name: "n_features",
                ..
            })
        ));
        let (model, _cat, dir) = fitted();
        let wrong = ad_core::Preprocessor::new(PreprocessConfig::default().with_size(32, 32))
            .unwrap()
            .batch(&[ad_core::RgbImage::from_fn(40, 40, |x, y| {
                [x as u8, y as u8, 0]
            })])
            .unwrap();
        assert!(matches!(
            model.predict(&wrong),
            Err(PadimError::BatchShape { .. })
        ));
        let fresh = Padim::new(
            &PadimConfig {
                n_features: Some(24),
                ..config
            },
            &Device::default(),
        )
        .unwrap();
        assert!(matches!(fresh.predict(&wrong), Err(PadimError::NotFitted)));
        assert!(matches!(
            fresh.save(dir.path().join("x")),
            Err(PadimError::NotFitted)
        ));
    }
}
