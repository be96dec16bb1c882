//! Hyper-parameters: [`PatchcoreConfig`] (serde, with defaults) is checked once by
//! [`PatchcoreConfig::check`] and the model only ever holds a [`CheckedConfig`].

use ad_backbone::{BackboneConfig, BackboneKind, Weights};
use ad_core::{
    FitEstimate, MIN_GRID, MapUpsample, PreprocessConfig, forward_bytes, grid_at_stride,
};
use ad_memory_bank::{CoresetParams, CoresetSampler, CoresetSize, ProjectionKind, jl_min_dim};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::PatchcoreError;

/// Where nearest neighbours are searched (`auto`, `cpu` or `device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnnBackend {
    /// `cpu` when the model's device is the CPU backend (flex), `device` on any other (a GPU):
    /// patch features then never leave the GPU.
    #[default]
    Auto,
    /// Blocked multi-threaded brute force on the host CPU (fastest on CPU).
    Cpu,
    /// Brute force as tensor ops on the model's Burn device (for GPUs).
    Device,
}

impl KnnBackend {
    /// The backend actually used on `device`: [`KnnBackend::Auto`] resolved, the others as they
    /// are.
    pub fn resolve(self, device: &Device) -> KnnBackend {
        match self {
            KnnBackend::Auto if *device == Device::flex() => KnnBackend::Cpu,
            KnnBackend::Auto => KnnBackend::Device,
            other => other,
        }
    }
}

impl std::fmt::Display for KnnBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KnnBackend::Auto => "auto",
            KnnBackend::Cpu => "cpu",
            KnnBackend::Device => "device",
        })
    }
}

impl std::str::FromStr for KnnBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(KnnBackend::Auto),
            "cpu" => Ok(KnnBackend::Cpu),
            "device" => Ok(KnnBackend::Device),
            _ => Err(format!(
                "unknown kNN backend `{s}`: use auto, cpu or device"
            )),
        }
    }
}

/// Train-time augmentation of the memory bank: each good image also contributes the patch
/// features of its flipped / rotated copies (for parts whose good appearance is the same in
/// those orientations). Prediction is unchanged; the bank sees `copies()` times the patches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BankAugment {
    /// The images as they are (default).
    #[default]
    None,
    /// Also the horizontal, vertical and both flips (the last is the 180-degree rotation): 4x.
    Flips,
    /// All 8 symmetries of the square (flips, 90/180/270-degree rotations, transposes): 8x;
    /// needs square preprocessed images.
    Dihedral,
}

impl BankAugment {
    /// Copies of every image in the bank's input, the original included.
    pub fn copies(self) -> usize {
        match self {
            BankAugment::None => 1,
            BankAugment::Flips => 4,
            BankAugment::Dihedral => 8,
        }
    }
}

impl std::fmt::Display for BankAugment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BankAugment::None => "none",
            BankAugment::Flips => "flips",
            BankAugment::Dihedral => "dihedral",
        })
    }
}

impl std::str::FromStr for BankAugment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(BankAugment::None),
            "flips" => Ok(BankAugment::Flips),
            "dihedral" => Ok(BankAugment::Dihedral),
            _ => Err(format!(
                "unknown bank augmentation `{s}`: use none, flips or dihedral"
            )),
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
    /// Streaming coreset under a memory budget, in MiB: patch features are buffered up to this
    /// size, then reduced into the memory bank (the greedy search continued from the rows
    /// already kept, the bank growing by the coreset ratio of each chunk). `None` (default)
    /// keeps every patch feature until the end: the exact greedy coreset. Needs a coreset
    /// ratio, not a count.
    pub fit_budget_mib: Option<usize>,
    /// Train-time augmentation of the memory bank (`none` by default).
    pub augment: BankAugment,
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
            knn: KnnBackend::Auto,
            fit_budget_mib: None,
            augment: BankAugment::None,
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
        match (self.fit_budget_mib, self.coreset.size) {
            (Some(0), _) => return bad("fit_budget_mib", "must be at least 1 MiB when set".into()),
            (Some(_), CoresetSize::Count(_)) => {
                return bad(
                    "fit_budget_mib",
                    "a streaming coreset keeps a ratio of each chunk: set coreset.size = \
                     { ratio = .. } instead of a count"
                        .into(),
                );
            }
            _ => {}
        }
        let (h, w) = self.preprocess.output_size();
        if self.augment == BankAugment::Dihedral && h != w {
            return bad(
                "augment",
                format!(
                    "`dihedral` rotates by 90 degrees, which needs square images ({h}x{w} \
                     here): use `flips`, or a square resize / crop"
                ),
            );
        }
        if self.target_dim == Some(0) {
            return bad("target_dim", "must be at least 1 when set".into());
        }
        if let Err((name, reason)) =
            ad_core::postprocess::check_shared(self.blur_sigma, self.batch_size, &self.preprocess)
        {
            return bad(name, reason);
        }
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

    /// What fitting on `images` good images will need (grid, feature dimension, bank rows,
    /// peak memory), from the configuration alone.
    ///
    /// # Errors
    /// [`PatchcoreError::InvalidConfig`] when the patch grid is smaller than
    /// [`MIN_GRID`] per side or the bank would hold fewer rows than `num_neighbors`; an
    /// unknown tap as [`PatchcoreError::Backbone`].
    pub fn estimate(&self, images: usize) -> Result<FitEstimate, PatchcoreError> {
        let mut dim = 0;
        let mut stride = 1;
        for (i, tap) in self.taps.iter().enumerate() {
            let (c, s) = self.backbone.tap_shape(tap)?;
            dim += c;
            if i == 0 {
                stride = s;
            }
        }
        let dim = self.target_dim.unwrap_or(dim);
        let size = self.preprocess.output_size();
        let grid = grid_at_stride(size, stride);
        if grid.0 < MIN_GRID || grid.1 < MIN_GRID {
            return Err(PatchcoreError::InvalidConfig {
                name: "preprocess",
                reason: format!(
                    "{}x{} images give a {}x{} patch grid at tap `{}` (stride {stride}); at \
                     least {MIN_GRID}x{MIN_GRID} is needed: use an image size of at least {}",
                    size.0,
                    size.1,
                    grid.0,
                    grid.1,
                    self.taps[0],
                    MIN_GRID * stride
                ),
            });
        }
        let patches = images * self.augment.copies() * grid.0 * grid.1;
        let rows = match self.coreset.size {
            CoresetSize::Ratio(r) => (patches as f64 * r) as usize,
            CoresetSize::Count(c) => c,
        }
        .clamp(1, patches.max(1));
        if rows < self.num_neighbors {
            return Err(PatchcoreError::InvalidConfig {
                name: "coreset",
                reason: format!(
                    "the memory bank would hold {rows} rows ({images} images x {}x{} patches x \
                     the coreset size), fewer than num_neighbors = {}: raise the coreset ratio \
                     or lower num_neighbors",
                    grid.0, grid.1, self.num_neighbors
                ),
            });
        }
        let mut warnings = Vec::new();
        if rows < 1000 {
            warnings.push(format!(
                "tiny memory bank: {rows} rows from {images} images; scores of normal variation \
                 the bank has not seen will be high (more good images or a larger coreset ratio)"
            ));
        }
        let projected = match self.coreset.projection {
            ProjectionKind::Identity => dim,
            ProjectionKind::Gaussian { dim } | ProjectionKind::LinearUniform { dim } => dim,
            ProjectionKind::SparseJl { eps } => jl_min_dim(patches.max(1), eps)?,
        };
        // All patch features (or one budget's worth), their projection and per-point
        // bookkeeping, the bank, plus one forward.
        let per_row = 4 * dim as u64 + 4 * projected as u64 + 16;
        let buffered = match self.fit_budget_mib {
            None => patches as u64 * per_row,
            Some(mib) => {
                let budget_rows = crate::model::budget_rows(mib, dim, projected) as u64;
                (patches as u64).min(budget_rows) * per_row + rows as u64 * per_row
            }
        };
        let peak = buffered + forward_bytes(self.batch_size, size);
        Ok(FitEstimate {
            grid,
            feature_dim: dim,
            memory_rows: rows,
            peak_bytes: peak,
            warnings,
        })
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
    fn estimates_check_the_grid_and_the_bank() {
        let c = PatchcoreConfig::default().check().unwrap();
        let e = c.estimate(209).unwrap();
        assert_eq!((e.grid, e.feature_dim), ((32, 32), 152));
        assert_eq!(e.memory_rows, 209 * 1024 / 10);
        assert!(e.warnings.is_empty());
        // 209 x 1024 patches x (152 + 128) floats: about 0.23 GiB.
        assert!(
            e.peak_bytes > 200 << 20 && e.peak_bytes < 400 << 20,
            "{}",
            e.peak_bytes
        );
        let tiny = PatchcoreConfig {
            preprocess: PreprocessConfig::default().with_size(7, 7),
            ..Default::default()
        };
        let err = tiny.check().unwrap().estimate(10).unwrap_err().to_string();
        assert!(
            err.contains("1x1 patch grid") && err.contains("at least 32"),
            "{err}"
        );
        let small_bank = PatchcoreConfig {
            coreset: CoresetParams {
                size: CoresetSize::Count(4),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = small_bank
            .check()
            .unwrap()
            .estimate(10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("fewer than num_neighbors"), "{err}");
        let e = PatchcoreConfig::default()
            .check()
            .unwrap()
            .estimate(3)
            .unwrap();
        assert!(
            e.warnings[0].contains("tiny memory bank"),
            "{:?}",
            e.warnings
        );
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
