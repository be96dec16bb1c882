//! Hyper-parameters: [`PatchcoreConfig`] (serde, with defaults) is checked once by
//! [`PatchcoreConfig::check`] and the model only ever holds a [`CheckedConfig`].

use ad_backbone::{BackboneConfig, BackboneKind, Weights};
use ad_core::{MapUpsample, PreprocessConfig};
use ad_memory_bank::{CoresetParams, CoresetSampler};
use serde::{Deserialize, Serialize};

use crate::PatchcoreError;

/// Where nearest neighbours are searched (`cpu` or `device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnnBackend {
    /// Blocked multi-threaded brute force on the host CPU (fastest on CPU).
    #[default]
    Cpu,
    /// Brute force as tensor ops on the model's Burn device (for GPUs with large banks).
    Device,
}

impl std::fmt::Display for KnnBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KnnBackend::Cpu => "cpu",
            KnnBackend::Device => "device",
        })
    }
}

impl std::str::FromStr for KnnBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(KnnBackend::Cpu),
            "device" => Ok(KnnBackend::Device),
            _ => Err(format!("unknown kNN backend `{s}`: use cpu or device")),
        }
    }
}

/// PatchCore hyper-parameters (unchecked). Defaults follow anomalib; options follow the paper.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatchcoreConfig {
    /// Feature extractor and its weights.
    pub backbone: BackboneKind,
    /// Weight source (`Pretrained` fetches EfficientNet-Lite0's pinned ImageNet weights).
    pub weights: Weights,
    /// Backbone taps; empty = the backbone's defaults (`blocks.4`, `blocks.10` for Lite0).
    pub taps: Vec<String>,
    /// Image preprocessing (resize 256x256, ImageNet normalisation by default).
    pub preprocess: PreprocessConfig,
    /// Side of the local neighbourhood averaged into each patch feature (3 in the paper).
    pub patch_size: usize,
    /// Optional reduction of the concatenated features to this many channels by adaptive
    /// average pooling (the official code uses 1024); `None` keeps all channels (anomalib).
    pub target_dim: Option<usize>,
    /// Coreset of the memory bank: size (10 % of the training patches by default; the paper
    /// uses 1-25 %), algorithm, random projection and seed. A ratio whose bank would be
    /// empty keeps one row; a count above the number of patches keeps them all.
    pub coreset: CoresetParams,
    /// Neighbours `b` of the image-score reweighting (Eq. 7); 1 = plain maximum.
    pub num_neighbors: usize,
    /// Upsampling of the patch-score grid.
    pub upsample: MapUpsample,
    /// Standard deviation of the Gaussian blur of the map, in pixels (4 in the paper);
    /// 0 disables the blur.
    pub blur_sigma: f32,
    /// Images per backbone forward pass.
    pub batch_size: usize,
    /// Nearest-neighbour search backend.
    pub knn: KnnBackend,
}

impl Default for PatchcoreConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::EfficientNetLite0,
            weights: Weights::Pretrained,
            taps: Vec::new(),
            preprocess: PreprocessConfig::default(),
            patch_size: 3,
            target_dim: None,
            coreset: CoresetParams::default(),
            num_neighbors: 9,
            upsample: MapUpsample::Nearest,
            blur_sigma: 4.0,
            batch_size: 8,
            knn: KnnBackend::Cpu,
        }
    }
}

/// A validated configuration (taps resolved); only [`PatchcoreConfig::check`] makes one.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedConfig(PatchcoreConfig);

impl std::ops::Deref for CheckedConfig {
    type Target = PatchcoreConfig;
    fn deref(&self) -> &PatchcoreConfig {
        &self.0
    }
}

impl PatchcoreConfig {
    /// Validates every parameter once and resolves default taps.
    pub fn check(&self) -> Result<CheckedConfig, PatchcoreError> {
        let bad = |name, reason: String| Err(PatchcoreError::InvalidConfig { name, reason });
        if let Err(e) = CoresetSampler::new(self.coreset.clone()) {
            return bad("coreset", e.to_string());
        }
        if self.num_neighbors == 0 {
            return bad("num_neighbors", "must be at least 1".into());
        }
        if self.patch_size == 0 || self.patch_size.is_multiple_of(2) {
            return bad(
                "patch_size",
                format!("{} must be odd and positive", self.patch_size),
            );
        }
        if !(self.blur_sigma.is_finite() && self.blur_sigma >= 0.0 && self.blur_sigma <= 64.0) {
            return bad(
                "blur_sigma",
                format!("{} is not in [0, 64]", self.blur_sigma),
            );
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.target_dim == Some(0) {
            return bad("target_dim", "must be at least 1 when set".into());
        }
        ad_core::Preprocessor::new(self.preprocess.clone()).map_err(|e| {
            PatchcoreError::InvalidConfig {
                name: "preprocess",
                reason: e.to_string(),
            }
        })?;
        let mut c = self.clone();
        if c.taps.is_empty() {
            c.taps = c.backbone.default_taps();
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
    pub fn as_config(&self) -> &PatchcoreConfig {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_resolve_taps() {
        let c = PatchcoreConfig::default().check().unwrap();
        assert_eq!(c.taps, vec!["blocks.4", "blocks.10"]);
        assert_eq!(c.num_neighbors, 9);
    }

    use ad_memory_bank::{CoresetSize, ProjectionKind};

    #[test]
    fn invalid_values_are_rejected() {
        let cases: Vec<(&str, PatchcoreConfig)> = vec![
            (
                "coreset",
                PatchcoreConfig {
                    coreset: CoresetParams {
                        size: CoresetSize::Ratio(0.0),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "coreset",
                PatchcoreConfig {
                    coreset: CoresetParams {
                        size: CoresetSize::Ratio(1.5),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "coreset",
                PatchcoreConfig {
                    coreset: CoresetParams {
                        projection: ProjectionKind::SparseJl { eps: 1.5 },
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "num_neighbors",
                PatchcoreConfig {
                    num_neighbors: 0,
                    ..Default::default()
                },
            ),
            (
                "patch_size",
                PatchcoreConfig {
                    patch_size: 2,
                    ..Default::default()
                },
            ),
            (
                "blur_sigma",
                PatchcoreConfig {
                    blur_sigma: f32::NAN,
                    ..Default::default()
                },
            ),
            (
                "batch_size",
                PatchcoreConfig {
                    batch_size: 0,
                    ..Default::default()
                },
            ),
            (
                "target_dim",
                PatchcoreConfig {
                    target_dim: Some(0),
                    ..Default::default()
                },
            ),
        ];
        for (name, cfg) in cases {
            match cfg.check() {
                Err(PatchcoreError::InvalidConfig { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = PatchcoreConfig {
            coreset: CoresetParams {
                size: CoresetSize::Ratio(0.01),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = serde_json::to_string(&c).unwrap();
        let back: PatchcoreConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(back, c);
        // Missing fields take their defaults.
        let partial: PatchcoreConfig = serde_json::from_str(r#"{"num_neighbors": 1}"#).unwrap();
        assert_eq!(partial.num_neighbors, 1);
        assert_eq!(partial.coreset.size, CoresetSize::Ratio(0.1));
        // An unknown key is an error naming it.
        let err = serde_json::from_str::<PatchcoreConfig>(r#"{"coreset_ratio": 0.1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("coreset_ratio"), "{err}");
    }
}
