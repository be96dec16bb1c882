//! Hyper-parameters: [`PadimConfig`] (serde, with defaults) is checked once by
//! [`PadimConfig::check`]; the model only ever holds a [`CheckedConfig`].

use ad_backbone::{BackboneConfig, BackboneKind, Weights};
use ad_core::{
    FitEstimate, MIN_GRID, MapUpsample, PreprocessConfig, forward_bytes, grid_at_stride,
};
use serde::{Deserialize, Serialize};

use crate::PadimError;

/// Default channel-subset size for EfficientNet-Lite backbones (of 176 channels for Lite0's
/// three taps). Measured on MVTec bottle (docs/results.md, "## PaDiM"): see the crate docs.
pub const LITE_N_FEATURES: usize = 100;

/// PaDiM's taps for `kind`: the backbone's taps at strides 4, 8 and 16 (`layer1`, `layer2`,
/// `layer3` for the ResNets, the paper and anomalib; for EfficientNet-Lite0 `blocks.2`,
/// `blocks.4`, `blocks.10`, 24 + 40 + 112 = 176 channels).
pub fn default_taps(kind: BackboneKind) -> Vec<String> {
    kind.taps_at_strides(&PADIM_STRIDES).unwrap_or_default()
}

/// Output strides of PaDiM's three taps (the paper's ResNet `layer1..3`).
pub const PADIM_STRIDES: [usize; 3] = [4, 8, 16];

/// Default size `d` of the random channel subset: 100 for ResNet-18/34 and 550 for the
/// (Wide)ResNet-50/101 (the paper and anomalib), [`LITE_N_FEATURES`] for EfficientNet-Lite.
/// Clamped to the number of tap channels when the model is built.
pub fn default_n_features(kind: BackboneKind) -> usize {
    match kind {
        BackboneKind::ResNet18 | BackboneKind::ResNet34 => 100,
        BackboneKind::ResNet50
        | BackboneKind::ResNet101
        | BackboneKind::WideResNet50_2
        | BackboneKind::WideResNet101_2 => 550,
        _ => LITE_N_FEATURES,
    }
}

/// PaDiM hyper-parameters (unchecked). Defaults follow anomalib.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PadimConfig {
    /// Feature extractor.
    pub backbone: BackboneKind,
    /// Weight source (`Pretrained` fetches EfficientNet-Lite0's pinned ImageNet weights).
    pub weights: Weights,
    /// Backbone taps, finest first; empty = [`default_taps`].
    pub taps: Vec<String>,
    /// Image preprocessing (resize 256x256, ImageNet normalisation by default).
    pub preprocess: PreprocessConfig,
    /// Size `d` of the random channel subset; `None` = [`default_n_features`] (clamped to the
    /// available channels). Must not exceed the tap channels when set.
    pub n_features: Option<usize>,
    /// Seed of the channel subset (stored with the model).
    pub seed: u64,
    /// Ridge added to every covariance diagonal (0.01 in the paper).
    pub regularization: f64,
    /// Upsampling of the distance grid to the image (bilinear in anomalib's PaDiM).
    pub upsample: MapUpsample,
    /// Standard deviation of the Gaussian blur of the map, in pixels (4); 0 disables it.
    pub blur_sigma: f32,
    /// Images per backbone forward pass.
    pub batch_size: usize,
    /// Keep the streaming sums (f64) in the model, and in its file, so that good images can
    /// be added later with exactly the result of a fit on all of them (`ad add`); they make
    /// the file about three times larger. `false` keeps only the Gaussians.
    pub keep_sums: bool,
}

impl Default for PadimConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::EfficientNetLite0,
            weights: Weights::Pretrained,
            taps: Vec::new(),
            preprocess: PreprocessConfig::default(),
            n_features: None,
            seed: 0,
            regularization: 0.01,
            upsample: MapUpsample::Bilinear,
            blur_sigma: 4.0,
            batch_size: 8,
            keep_sums: true,
        }
    }
}

/// A validated configuration (taps resolved); only [`PadimConfig::check`] makes one.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedConfig(PadimConfig);

impl std::ops::Deref for CheckedConfig {
    type Target = PadimConfig;
    fn deref(&self) -> &PadimConfig {
        &self.0
    }
}

impl PadimConfig {
    /// Validates every parameter once and resolves default taps.
    pub fn check(&self) -> Result<CheckedConfig, PadimError> {
        let bad = |name, reason: String| Err(PadimError::InvalidConfig { name, reason });
        if !(self.regularization.is_finite() && self.regularization > 0.0) {
            return bad(
                "regularization",
                format!("{} must be finite and positive", self.regularization),
            );
        }
        if self.n_features == Some(0) {
            return bad("n_features", "must be at least 1 when set".into());
        }
        if let Err((name, reason)) =
            ad_core::postprocess::check_shared(self.blur_sigma, self.batch_size, &self.preprocess)
        {
            return bad(name, reason);
        }
        let mut c = self.clone();
        if c.taps.is_empty() {
            c.taps = default_taps(c.backbone);
        }
        Ok(CheckedConfig(c))
    }
}

impl CheckedConfig {
    /// The backbone description.
    pub fn backbone_config(&self) -> BackboneConfig {
        BackboneConfig::new(self.backbone, self.weights.clone()).with_taps(&self.taps)
    }

    /// The unchecked form (for serialisation).
    pub fn as_config(&self) -> &PadimConfig {
        &self.0
    }

    /// What fitting on `images` good images will need (grid, kept channels, peak memory of
    /// the streaming sums), from the configuration alone.
    ///
    /// # Errors
    /// [`PadimError::InvalidConfig`] when the grid is smaller than [`MIN_GRID`] per side or
    /// fewer than 2 images are given (a covariance needs two); an unknown tap as
    /// [`PadimError::Backbone`].
    pub fn estimate(&self, images: usize) -> Result<FitEstimate, PadimError> {
        let mut total = 0;
        let mut stride = 1;
        for (i, tap) in self.taps.iter().enumerate() {
            let (c, s) = self.backbone.tap_shape(tap)?;
            total += c;
            if i == 0 {
                stride = s;
            }
        }
        let d = self
            .n_features
            .unwrap_or_else(|| default_n_features(self.backbone).min(total));
        let size = self.preprocess.output_size();
        let grid = grid_at_stride(size, stride);
        let bad = |name, reason| Err(PadimError::InvalidConfig { name, reason });
        if grid.0 < MIN_GRID || grid.1 < MIN_GRID {
            return bad(
                "preprocess",
                format!(
                    "{}x{} images give a {}x{} grid at tap `{}` (stride {stride}); at least \
                     {MIN_GRID}x{MIN_GRID} is needed: use an image size of at least {}",
                    size.0,
                    size.1,
                    grid.0,
                    grid.1,
                    self.taps[0],
                    MIN_GRID * stride
                ),
            );
        }
        if images < 2 {
            return bad(
                "training images",
                format!("{images} good image(s): a covariance needs at least 2"),
            );
        }
        let mut warnings = Vec::new();
        if images < 10 {
            warnings.push(format!(
                "PaDiM on {images} good images: each {d}x{d} covariance has rank {} at most, \
                 the rest is the {} ridge",
                images - 1,
                self.regularization
            ));
        }
        let positions = (grid.0 * grid.1) as u64;
        let (d64, tri) = (d as u64, (d * (d + 1) / 2) as u64);
        // f64 sums and outer-product sums, the f32 means and inverse factors, one batch's
        // embeddings and one forward pass.
        let peak = positions * (d64 + tri) * 8
            + positions * (d64 + tri) * 4
            + self.batch_size as u64 * positions * total as u64 * 4
            + forward_bytes(self.batch_size, size);
        Ok(FitEstimate {
            grid,
            feature_dim: d,
            memory_rows: grid.0 * grid.1,
            peak_bytes: peak,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_taps_per_backbone() {
        assert_eq!(
            default_taps(BackboneKind::EfficientNetLite0),
            vec!["blocks.2", "blocks.4", "blocks.10"]
        );
        assert_eq!(
            default_taps(BackboneKind::ResNet18),
            vec!["layer1", "layer2", "layer3"]
        );
        assert_eq!(default_n_features(BackboneKind::ResNet18), 100);
        assert_eq!(default_n_features(BackboneKind::WideResNet50_2), 550);
        let c = PadimConfig::default().check().unwrap();
        assert_eq!(c.taps.len(), 3);
    }

    #[test]
    fn invalid_values_are_rejected() {
        let cases: Vec<(&str, PadimConfig)> = vec![
            (
                "regularization",
                PadimConfig {
                    regularization: 0.0,
                    ..Default::default()
                },
            ),
            (
                "regularization",
                PadimConfig {
                    regularization: f64::NAN,
                    ..Default::default()
                },
            ),
            (
                "n_features",
                PadimConfig {
                    n_features: Some(0),
                    ..Default::default()
                },
            ),
            (
                "blur_sigma",
                PadimConfig {
                    blur_sigma: -1.0,
                    ..Default::default()
                },
            ),
            (
                "batch_size",
                PadimConfig {
                    batch_size: 0,
                    ..Default::default()
                },
            ),
        ];
        for (name, cfg) in cases {
            match cfg.check() {
                Err(PadimError::InvalidConfig { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn estimates_check_grid_and_images() {
        let c = PadimConfig::default().check().unwrap();
        let e = c.estimate(209).unwrap();
        assert_eq!(
            (e.grid, e.feature_dim, e.memory_rows),
            ((64, 64), 100, 4096)
        );
        assert!(e.warnings.is_empty());
        assert!(c.estimate(1).is_err());
        assert!(c.estimate(5).unwrap().warnings[0].contains("rank 4"));
        let tiny = PadimConfig {
            preprocess: PreprocessConfig::default().with_size(12, 12),
            ..Default::default()
        };
        let err = tiny.check().unwrap().estimate(10).unwrap_err().to_string();
        assert!(err.contains("3x3 grid"), "{err}");
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = PadimConfig {
            n_features: Some(50),
            seed: 3,
            ..Default::default()
        };
        let s = serde_json::to_string(&c).unwrap();
        let back: PadimConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(back, c);
        let partial: PadimConfig = serde_json::from_str(r#"{"seed": 9}"#).unwrap();
        assert_eq!(partial.seed, 9);
        assert_eq!(partial.regularization, 0.01);
    }
}
