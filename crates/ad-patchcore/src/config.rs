//! Hyper-parameters: [`PatchcoreConfig`] (serde, with defaults) is checked once by
//! [`PatchcoreConfig::check`] and the model only ever holds a [`CheckedConfig`].

use ad_backbone::{BackboneConfig, BackboneKind, Weights};
use ad_core::PreprocessConfig;
use ad_memory_bank::ProjectionKind;
use serde::{Deserialize, Serialize};

use crate::PatchcoreError;

/// How the patch-score grid is brought to the image size before blurring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapUpsample {
    /// Nearest neighbour (`F.interpolate` default; anomalib).
    #[default]
    Nearest,
    /// Bilinear with half-pixel centres (`align_corners = False`; the official code).
    Bilinear,
}

/// Coreset algorithm (both greedy variants select identical indices).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoresetKind {
    /// Exact greedy k-center with triangle-inequality pruning.
    #[default]
    Greedy,
    /// Plain greedy k-center (anomalib's algorithm; slower, same selection).
    GreedyReference,
    /// Uniform random subsample (baseline).
    Random,
}

/// Random projection used by the coreset's distance computations (serde mirror of
/// [`ProjectionKind`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum CoresetProjection {
    /// No projection: distances in the full feature space.
    Identity,
    /// Dense Gaussian projection to `dim` components (the official code: 128).
    Gaussian {
        /// Output dimension.
        dim: usize,
    },
    /// Sparse random projection with the Johnson-Lindenstrauss dimension for distortion `eps`
    /// (anomalib: 0.9).
    SparseJl {
        /// Distortion in (0, 1).
        eps: f64,
    },
}

impl Default for CoresetProjection {
    fn default() -> Self {
        Self::Gaussian { dim: 128 }
    }
}

impl CoresetProjection {
    /// The memory-bank crate's projection.
    pub fn kind(self) -> ProjectionKind {
        match self {
            Self::Identity => ProjectionKind::Identity,
            Self::Gaussian { dim } => ProjectionKind::Gaussian { dim },
            Self::SparseJl { eps } => ProjectionKind::SparseJl { eps },
        }
    }
}

/// Where nearest neighbours are searched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KnnBackend {
    /// Blocked multi-threaded brute force on the host CPU (fastest on CPU).
    #[default]
    Cpu,
    /// Brute force as tensor ops on the model's Burn device (for GPUs with large banks).
    Device,
}

/// PatchCore hyper-parameters (unchecked). Defaults follow anomalib; options follow the paper.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    /// Fraction of training patches kept in the memory bank (0.1 default; paper 0.01-0.25).
    pub coreset_ratio: f64,
    /// Coreset algorithm.
    pub coreset: CoresetKind,
    /// Random projection used by the coreset distance computations.
    pub projection: CoresetProjection,
    /// Seed of the coreset (projection and start point).
    pub seed: u64,
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
            coreset_ratio: 0.1,
            coreset: CoresetKind::Greedy,
            projection: CoresetProjection::default(),
            seed: 0,
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
        if !(self.coreset_ratio > 0.0 && self.coreset_ratio <= 1.0) {
            return bad(
                "coreset_ratio",
                format!("{} is not in (0, 1]", self.coreset_ratio),
            );
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

    #[test]
    fn invalid_values_are_rejected() {
        let cases: Vec<(&str, PatchcoreConfig)> = vec![
            (
                "coreset_ratio",
                PatchcoreConfig {
                    coreset_ratio: 0.0,
                    ..Default::default()
                },
            ),
            (
                "coreset_ratio",
                PatchcoreConfig {
                    coreset_ratio: 1.5,
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
            coreset_ratio: 0.01,
            ..Default::default()
        };
        let s = serde_json::to_string(&c).unwrap();
        let back: PatchcoreConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(back, c);
        // Missing fields take their defaults.
        let partial: PatchcoreConfig = serde_json::from_str(r#"{"num_neighbors": 1}"#).unwrap();
        assert_eq!(partial.num_neighbors, 1);
        assert_eq!(partial.coreset_ratio, 0.1);
    }
}
