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
    /// The payload also holds the streaming sums (f64) after the Gaussians.
    #[serde(default)]
    sums: bool,
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
            sums: fitted.sums.is_some(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| PadimError::BadModelFile {
            path: path.to_path_buf(),
            reason: format!("cannot encode header: {e}"),
        })?;
        let g = &fitted.gaussians;
        let mut payload: Vec<u8> = g
            .means()
            .iter()
            .chain(g.inv_chol())
            .flat_map(|v| v.to_le_bytes())
            .collect();
        if let Some(acc) = &fitted.sums {
            let (_, shift, sum, sum_sq) = acc.parts();
            payload.extend(
                shift
                    .iter()
                    .chain(sum)
                    .chain(sum_sq)
                    .flat_map(|v| v.to_le_bytes()),
            );
        }
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
        let n_sums = if header.sums {
            positions * (2 * d + tri_len(d))
        } else {
            0
        };
        let need = 4 * (n_mean + n_inv) + 8 * n_sums;
        if payload.len() != need {
            return Err(bad(format!(
                "payload of {} bytes, a {:?} grid with {d} channels needs {need}",
                payload.len(),
                header.grid,
            )));
        }
        let (payload, sum_bytes) = payload.split_at(4 * (n_mean + n_inv));
        let sums = if header.sums {
            let v: Vec<f64> = sum_bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect();
            let (shift, rest) = v.split_at(positions * d);
            let (sum, sum_sq) = rest.split_at(positions * d);
            Some(
                crate::gaussian::GaussianAccumulator::from_parts(
                    positions,
                    d,
                    header.images,
                    shift.to_vec(),
                    sum.to_vec(),
                    sum_sq.to_vec(),
                )
                .map_err(|e| bad(e.to_string()))?,
            )
        } else {
            None
        };
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
            sums,
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
    fn adding_images_equals_the_full_fit_and_adding_none_changes_nothing() {
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
        let train = &cat.splits.train;
        let half = train.len() / 2;
        let fit = |samples: &[ad_mvtec::Sample]| {
            let mut m = Padim::new(&config, &Device::default()).unwrap();
            let pre = m.preprocessor().clone();
            m.fit(BatchLoader::new(samples, pre, 4).map(|b| b.map(|b| b.images)))
                .unwrap();
            m
        };
        let full = fit(train);
        let mut part = fit(&train[..half]);
        // Through the file: the sums travel with the model.
        let path = dir.path().join("a.padim");
        part.save(&path).unwrap();
        part = Padim::load(&path, &Device::default()).unwrap();
        let pre = part.preprocessor().clone();
        let summary = part
            .add(BatchLoader::new(&train[half..], pre.clone(), 4).map(|b| b.map(|b| b.images)))
            .unwrap();
        assert_eq!(summary.images, train.len() - half);
        let (a, b) = (full.gaussians().unwrap(), part.gaussians().unwrap());
        let close = |x: &[f32], y: &[f32]| {
            x.iter()
                .zip(y)
                .all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + p.abs().max(q.abs())))
        };
        assert!(close(a.means(), b.means()));
        assert!(close(a.inv_chol(), b.inv_chol()));

        // Adding nothing leaves the saved file byte-identical.
        let p1 = dir.path().join("b.padim");
        let p2 = dir.path().join("c.padim");
        part.save(&p1).unwrap();
        let s = part
            .add(std::iter::empty::<
                Result<ad_core::ImageBatch, ad_core::CoreError>,
            >())
            .unwrap();
        assert_eq!(s.images, 0);
        part.save(&p2).unwrap();
        assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());

        // Without the sums an update is refused, with the way out.
        let mut lean = Padim::new(
            &PadimConfig {
                keep_sums: false,
                ..config.clone()
            },
            &Device::default(),
        )
        .unwrap();
        lean.fit(BatchLoader::new(&train[..half], pre.clone(), 4).map(|b| b.map(|b| b.images)))
            .unwrap();
        let err = lean
            .add(BatchLoader::new(&train[half..], pre, 4).map(|b| b.map(|b| b.images)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("keep_sums"), "{err}");
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
