//! Hyper-parameters: [`CflowConfig`] (serde, with defaults) is checked once by
//! [`CflowConfig::check`]; the model only ever holds a [`CheckedConfig`].

use ad_backbone::{BackboneConfig, BackboneKind, Weights};
use ad_core::{
    FitEstimate, MIN_GRID, MapUpsample, PreprocessConfig, forward_bytes, grid_at_stride,
};
use serde::{Deserialize, Serialize};

use crate::CflowError;

/// Output strides of CFlow's taps (anomalib's WideResNet-50 `layer2..4`).
pub const CFLOW_STRIDES: [usize; 3] = [8, 16, 32];

/// CFlow's taps for `kind`: the taps at strides 8, 16 and 32 (`layer2..4` for the ResNets as
/// in anomalib; `blocks.4`, `blocks.10`, `blocks.15` for EfficientNet-Lite0: 40, 112 and 320
/// channels).
pub fn default_taps(kind: BackboneKind) -> Vec<String> {
    kind.taps_at_strides(&CFLOW_STRIDES).unwrap_or_default()
}

/// CFLOW-AD hyper-parameters (unchecked). Defaults follow anomalib's `Cflow`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CflowConfig {
    /// Feature extractor (the encoder; frozen).
    pub backbone: BackboneKind,
    /// Weight source of the encoder.
    pub weights: Weights,
    /// Encoder taps, one decoder each; empty = [`default_taps`].
    pub taps: Vec<String>,
    /// Image preprocessing (resize 256x256, ImageNet normalisation by default).
    pub preprocess: PreprocessConfig,
    /// Channels of the positional-encoding condition (a multiple of 4; 128).
    pub condition_dim: usize,
    /// Affine coupling blocks per decoder (8).
    pub coupling_blocks: usize,
    /// Soft clamping of the coupling scales, `alpha * tanh(s)` (1.9).
    pub clamp_alpha: f32,
    /// Fibers (feature vectors with their positions) per optimiser step (64).
    pub fiber_batch: usize,
    /// Adam learning rate (1e-4).
    pub learning_rate: f64,
    /// Passes over the training fibers.
    pub epochs: usize,
    /// Seed of the weight initialisation, the permutations and the fiber shuffling.
    pub seed: u64,
    /// Upsampling of the per-tap likelihood grids to the image (bilinear).
    pub upsample: MapUpsample,
    /// Standard deviation of the Gaussian blur of the map, in pixels (4); 0 disables it.
    pub blur_sigma: f32,
    /// Images per encoder forward pass.
    pub batch_size: usize,
}

impl Default for CflowConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::EfficientNetLite0,
            weights: Weights::Pretrained,
            taps: Vec::new(),
            preprocess: PreprocessConfig::default(),
            condition_dim: 128,
            coupling_blocks: 8,
            clamp_alpha: 1.9,
            fiber_batch: 64,
            learning_rate: 1e-4,
            epochs: 10,
            seed: 0,
            upsample: MapUpsample::Bilinear,
            blur_sigma: 4.0,
            batch_size: 8,
        }
    }
}

/// A validated configuration (taps resolved); only [`CflowConfig::check`] makes one.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedConfig(CflowConfig);

impl std::ops::Deref for CheckedConfig {
    type Target = CflowConfig;
    fn deref(&self) -> &CflowConfig {
        &self.0
    }
}

impl CflowConfig {
    /// Validates every parameter once and resolves default taps.
    pub fn check(&self) -> Result<CheckedConfig, CflowError> {
        let bad = |name, reason: String| Err(CflowError::InvalidConfig { name, reason });
        if self.condition_dim == 0 || !self.condition_dim.is_multiple_of(4) {
            return bad(
                "condition_dim",
                format!("{} must be a positive multiple of 4", self.condition_dim),
            );
        }
        if self.coupling_blocks == 0 {
            return bad("coupling_blocks", "must be at least 1".into());
        }
        if !(self.clamp_alpha.is_finite() && self.clamp_alpha > 0.0) {
            return bad(
                "clamp_alpha",
                format!("{} must be finite and positive", self.clamp_alpha),
            );
        }
        if self.fiber_batch == 0 {
            return bad("fiber_batch", "must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate < 1.0)
        {
            return bad(
                "learning_rate",
                format!("{} is not in (0, 1)", self.learning_rate),
            );
        }
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
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
        for tap in &c.taps {
            c.backbone.tap_shape(tap)?;
        }
        Ok(CheckedConfig(c))
    }
}

impl CheckedConfig {
    /// The encoder description.
    pub fn backbone_config(&self) -> BackboneConfig {
        BackboneConfig::new(self.backbone, self.weights.clone()).with_taps(&self.taps)
    }

    /// The unchecked form (for serialisation).
    pub fn as_config(&self) -> &CflowConfig {
        &self.0
    }

    /// What fitting on `images` good images will need: the first tap's grid, the widest tap,
    /// the fibers kept for training, peak memory.
    pub fn estimate(&self, images: usize) -> Result<FitEstimate, CflowError> {
        let size = self.preprocess.output_size();
        let mut fibers = 0usize;
        let mut floats = 0u64;
        let mut widest = 0;
        let mut first_grid = (0, 0);
        for (i, tap) in self.taps.iter().enumerate() {
            let (c, s) = self.backbone.tap_shape(tap)?;
            let grid = grid_at_stride(size, s);
            if grid.0 < 1 || grid.1 < 1 || (i == 0 && (grid.0 < MIN_GRID || grid.1 < MIN_GRID)) {
                return Err(CflowError::InvalidConfig {
                    name: "preprocess",
                    reason: format!(
                        "{}x{} images give a {}x{} grid at tap `{tap}` (stride {s}); at least \
                         {MIN_GRID}x{MIN_GRID} is needed: use an image size of at least {}",
                        size.0,
                        size.1,
                        grid.0,
                        grid.1,
                        MIN_GRID * s
                    ),
                });
            }
            if i == 0 {
                first_grid = grid;
            }
            widest = widest.max(c);
            fibers += images * grid.0 * grid.1;
            floats += (images * grid.0 * grid.1 * c) as u64;
        }
        let mut warnings = Vec::new();
        if fibers < self.fiber_batch {
            warnings.push(format!(
                "only {fibers} training fibers for a fiber batch of {}",
                self.fiber_batch
            ));
        }
        Ok(FitEstimate {
            grid: first_grid,
            feature_dim: widest,
            memory_rows: fibers,
            peak_bytes: floats * 4 + forward_bytes(self.batch_size, size),
            warnings,
        })
    }
}
