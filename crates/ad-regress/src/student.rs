//! [`ScoreStudent`]: a small head on frozen backbone features that regresses a teacher
//! detector's anomaly map (PatchCore by default), so prediction needs no memory bank and no
//! nearest-neighbour search.
//!
//! Training data, made from good images only:
//! 1. The good images are split into `folds` parts (seeded). For each part, a fresh teacher is
//!    fitted on the other parts and scores this part: good parts get the realistic, non-zero
//!    scores a fitted teacher gives new good images (a teacher never scores its own training
//!    images honestly: their patches are in its memory bank).
//! 2. The same teacher scores `synthetic_per_image` synthetic-anomaly copies of every image of
//!    the part ([cut-paste](crate::cut_paste), [thin curves](crate::thin_curve),
//!    [spots](crate::spot) or [faint spots](crate::faint_spot), kinds taken in turn from
//!    `anomalies`), so the head also sees what defects score.
//! 3. Targets are the teacher's maps pooled over each cell of the student's feature grid (the
//!    cell's mean, or its maximum: [`TargetPool`]; a teacher whose own blur is off gives its
//!    patch scores, which rank images as the teacher does, where its blurred map's maximum
//!    ranks small defects lower), divided by a scale (the 0.99 quantile of the good images'
//!    targets) and regressed as they are or as their logarithm ([`TargetTransform`]); the head
//!    (an MLP per patch on locally aware patch features, as PatchCore's) is trained by mean
//!    squared error (every patch alike, or rare targets weighted up: [`LossWeights`]) with
//!    Adam, seeded, on raw or standardised inputs (`standardise_inputs`, folded into the first
//!    layer afterwards); its weights are the last step's or their mean over the last epochs
//!    (`average_epochs`).
//!
//! Prediction: the head's grid, transformed back and times the scale, upsampled to the image
//! (bilinear), optionally blurred; image score = max of the map, or of the grid before it is
//! upsampled and blurred ([`ImageScore`]: PatchCore's own is its largest patch score).

use std::time::Instant;

use ad_backbone::{Backbone, BackboneConfig, BackboneKind, Weights, patch_embedding};
use ad_core::postprocess::{gaussian_blur, upsample};
use ad_core::tensor::read_f32;
use ad_core::{
    AnomalyMap, BoxError, Detector, DynDetector, EpochCallback, EpochReport, FitEstimate,
    FitSummary, ImageBatch, LrSchedule, MIN_GRID, MapUpsample, Prediction, PreprocessConfig,
    Preprocessor, StageCallback, StageReport, Threshold, forward_bytes, grid_at_stride,
};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::RegressError;
use crate::feature_noise::{DEFAULT_NOISE_RADIUS, FoldRows, NoiseDirections, feature_anomalies};
use crate::head::{Mlp, scalar};
use crate::prototypes::{kmeans, with_radial};
use crate::synth::SyntheticAnomaly;

/// Builds a fresh, unfitted teacher (called once per fold).
pub type TeacherFactory = Box<dyn Fn() -> Result<Box<dyn DynDetector>, BoxError> + Send + Sync>;

/// Rows per inference chunk of the head: a chunk's activations (4,096 x 256 floats, 4 MiB)
/// stay near the cache (with the host-side patch embedding, the accurate student predicts in
/// 77-81 % of the time it took with 16,384, docs/performance.md). The values do not depend
/// on the chunking while chunks hold a few hundred rows or more (flex's `gemm` reduces each
/// output alone; test `head_outputs_do_not_depend_on_the_chunk`); a last chunk of fewer
/// rows can take other `gemm` kernels and differ in the last bit.
const INFER_CHUNK: usize = 4_096;

/// Largest accepted [`StudentConfig::prototypes`].
const MAX_PROTOTYPES: usize = 4096;

/// Largest accepted [`StudentConfig::splits`].
const MAX_SPLITS: usize = 8;

/// Largest accepted [`StudentConfig::heads`].
const MAX_HEADS: usize = 16;

/// Largest accepted [`StudentConfig::distill`].
const MAX_DISTILL: usize = 8;

/// Largest accepted [`StudentConfig::feature_noise`].
const MAX_FEATURE_NOISE: f32 = 8.0;

/// Largest accepted [`StudentConfig::feature_noise_radius`].
const MAX_NOISE_RADIUS: f32 = 64.0;

/// Good patch rows (at most) the prototypes are fitted on.
const PROTOTYPE_ROWS: usize = 16_384;

/// For every image (a plane of pixels), the index of the first image with exactly the same
/// values (bit for bit), itself when none comes before it.
fn first_identical(planes: &[Vec<f32>]) -> Vec<usize> {
    use std::hash::{DefaultHasher, Hasher};
    let mut seen: std::collections::HashMap<u64, Vec<usize>> = std::collections::HashMap::new();
    planes
        .iter()
        .enumerate()
        .map(|(i, plane)| {
            let mut h = DefaultHasher::new();
            for v in plane {
                h.write_u32(v.to_bits());
            }
            let same = seen.entry(h.finish()).or_default();
            let equal = |other: &[f32]| {
                other.len() == plane.len()
                    && other
                        .iter()
                        .zip(plane)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
            };
            match same.iter().find(|&&j| equal(&planes[j])) {
                Some(&j) => j,
                None => {
                    same.push(i);
                    i
                }
            }
        })
        .collect()
}

/// Hyper-parameters of [`ScoreStudent`] (unchecked).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudentConfig {
    /// Feature extractor (frozen).
    pub backbone: BackboneKind,
    /// Weight source of the backbone.
    pub weights: Weights,
    /// Taps, finest first; empty = the taps at strides 8 and 16 (PatchCore's).
    pub taps: Vec<String>,
    /// Image preprocessing (the teacher sees the same).
    pub preprocess: PreprocessConfig,
    /// Size `(height, width)` the backbone sees: the preprocessed images (the teacher's
    /// pixels) resized to it by [`ImageBatch::resized`] (`None`: the preprocessed size, also
    /// what model files written before the option hold). The backbone is most of a student's
    /// prediction time, so a smaller size is its speed lever: the head's grid is coarser, the
    /// targets are the teacher's map pooled over its larger cells, and the map still comes
    /// back at the image's resolution.
    pub backbone_size: Option<(usize, usize)>,
    /// Neighbourhood of the local average of each tap (3, as PatchCore).
    pub patch_size: usize,
    /// Hidden widths of the per-patch MLP (`[256, 64]`).
    pub hidden: Vec<usize>,
    /// Heads trained on the same patches, each from its own initialisation and shuffling; the
    /// map is the mean of their (scaled) outputs, a cheap ensemble whose cost at prediction
    /// is one more MLP per head on the shared features (1; also what model files written
    /// before the option hold).
    pub heads: usize,
    /// Bagging (Breiman 1996): every head trains on its own bootstrap sample of the training
    /// images (good and synthetic, drawn with replacement, as many as there are), so the heads
    /// differ in their data as well as in their initialisation (false: every head sees every
    /// image).
    pub bootstrap: bool,
    /// Ensemble distillation (Hinton et al. 2015, "born-again" students): this many member
    /// students are fitted first, each a full student of its own seed (its fold split,
    /// synthetic copies, feature-space anomalies, initialisation), and the student then
    /// regresses the mean of the members' patch scores on its own training patches instead of
    /// the teacher's. Averaging students' maps closes most of a student's per-seed error
    /// (docs/results.md, "Averaged students"); distillation asks one head to learn that mean.
    /// Fitting costs `distill + 1` students; prediction and the model file are one student's
    /// (0: the teacher's targets). With four members it lowered the fast student's
    /// PA_FVN01_TL image AUROC (-1.19 over eight seeds) and the accurate student's PA_BDP01_TL
    /// pixel AUROC (-0.66 over four; docs/results.md, "Ensemble distillation"): on its own
    /// training patches the members' mean is close to the teacher's targets averaged over
    /// fold splits, and lower on the anomalies.
    pub distill: usize,
    /// Prototypes of the good patches (k-means centres, frozen) whose distances are fed to the
    /// head beside each patch feature (64; 0: the feature alone). See the crate's `prototypes`
    /// module (k-means, radial features).
    pub prototypes: usize,
    /// Seed of the prototypes' k-means (the good rows it draws and its starting centres);
    /// `None` (the default): the student's `seed`. Fixing it while `seed` varies separates
    /// what the prototypes contribute to a student's seed spread from the rest of its data.
    pub prototype_seed: Option<u64>,
    /// Add the nearest prototype's distance, times a slope fitted to the targets by least
    /// squares before training, to the head's output; the head learns the rest (false). A
    /// patch unlike every good patch then scores high by construction, as it does for the
    /// teacher, whatever the MLP does off its training data. Needs prototypes.
    pub nearest_skip: bool,
    /// Feature-space anomalies: this fraction of every fold's good patches (in whole images'
    /// worth of rows) is copied with Gaussian noise added to the features and trained on with
    /// targets from the nearest good patch's distance, the quantity the teacher's score is
    /// made of (0.25; 0: none, as model files written before the option were trained, whose
    /// stored config has no such key; the module `feature_noise` of this crate has the
    /// construction). The synthetic images reach the directions their kinds of defect move a
    /// patch in; these reach every direction, so the head learns that a patch unlike the good
    /// ones scores high wherever it lies (docs/results.md, "Feature-space anomalies").
    pub feature_noise: f32,
    /// Largest distance a feature-space anomaly is moved, in units of the fold's median
    /// nearest-good-patch distance (4: the moved patches' distances then span the synthetic
    /// images' targets); each patch is moved by a radius drawn uniformly below it.
    pub feature_noise_radius: f32,
    /// The directions the feature-space anomalies are moved in (diagonal: Gaussian, each
    /// column scaled by its spread; see [`NoiseDirections`]).
    pub feature_noise_directions: NoiseDirections,
    /// Passes over the training patches (20).
    pub epochs: usize,
    /// Adam learning rate (1e-3): the base rate of `lr_schedule`.
    pub learning_rate: f64,
    /// How the rate moves over the run (constant; cosine annealing to zero scored level with it
    /// on the validation protocol, docs/results.md).
    pub lr_schedule: LrSchedule,
    /// Stochastic weight averaging (Izmailov et al. 2018): the head's weights are the mean of
    /// their values at the end of each of the last `average_epochs` epochs, a cheap stand-in
    /// for averaging several heads (0: the last step's weights, as before the option; averaging
    /// the last 10 of 20 epochs lowered the accurate student's image AUROC, docs/results.md).
    pub average_epochs: usize,
    /// Weights of the training patches in the squared error (uniform).
    pub loss_weights: LossWeights,
    /// Train the head on standardised inputs: every input column (feature, then distance to a
    /// prototype) shifted by its mean and divided by its standard deviation over the training
    /// patches, as the initialisation assumes; after training the standardisation is folded
    /// into the first layer, so prediction and the model file are as without it (false: raw
    /// inputs, as before the option).
    pub standardise_inputs: bool,
    /// Patches per optimiser step (2048).
    pub patch_batch: usize,
    /// Seed of the fold split, the synthetic anomalies, the initialisation and the shuffling.
    pub seed: u64,
    /// Parts the good images are split into for the teacher (2: each half scored by a teacher
    /// fitted on the other half).
    pub folds: usize,
    /// Identical good images (the same pixels after preprocessing: copies of one file) fall in
    /// the same fold of every split, so no image is scored by a teacher whose bank holds its
    /// copy, which would give its patches distances near zero as targets (PIPED's training
    /// splits have such copies). False (the default): the split ignores them. Measured on
    /// PIPED it raised the pixel AUROC of every class with copies a little and moved
    /// PA_FVN01_TL's image AUROC within its seed spread, one category-seed fewer within the
    /// point, so by the rule stated before the runs the default stays off
    /// (docs/results.md, "Copies in one fold").
    pub group_identical: bool,
    /// Splits of the good images into `folds` parts, each split shuffled with its own seed
    /// (1): with more, every good image is scored by one teacher per split and gets its own
    /// synthetic copies per split, so the head trains on the union of what that many
    /// students of different seeds would see (the fit's teacher work and training rows grow
    /// with the splits; prediction costs the same). Two splits passed a screen of the fast
    /// student on PA_FVN01_TL over eight seeds and failed its confirmation on eight fresh
    /// ones (docs/results.md, "The fast student's data").
    pub splits: usize,
    /// Synthetic anomalies made from every good image (3: one of each kind).
    pub synthetic_per_image: usize,
    /// Kinds of the synthetic anomalies, taken in turn (the `s`-th copy of the `i`-th image of
    /// a fold is of kind `(s + i) mod len`): `[cut-paste, thin-curve, spot]`
    /// ([`SyntheticAnomaly::DEFAULT`]), so the head sees the teacher's scores on large foreign
    /// patches, thin scratches and small spots.
    pub anomalies: Vec<SyntheticAnomaly>,
    /// How the teacher's map becomes one target per cell of the head's grid (mean; also what
    /// model files written before the option were trained with).
    pub target_pool: TargetPool,
    /// What the head regresses: the scaled target itself or its logarithm (identity; also
    /// what model files written before the option were trained with).
    pub target_transform: TargetTransform,
    /// Upsampling of the head's grid to the image (bilinear).
    pub upsample: MapUpsample,
    /// Gaussian blur of the map, pixels (0: the targets are the teacher's already smooth maps,
    /// and beside a teacher whose own blur is off a blur of sigma 1-4 lowered both AUROCs,
    /// docs/results.md).
    pub blur_sigma: f32,
    /// Where the image score is read: the map's maximum, or the grid's largest cell before
    /// upsampling and blur (map; also what model files written before the option used).
    pub image_score: ImageScore,
    /// Images per backbone forward pass.
    pub batch_size: usize,
    /// The teacher's configuration as the caller's registry reads it (for the facade: a
    /// tagged detector config, `{ model = "patchcore", ... }`); kept in the model file. This
    /// crate never reads it: [`ScoreStudent::new`] takes a [`TeacherFactory`].
    pub teacher: serde_json::Value,
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::EfficientNetLite0,
            weights: Weights::Pretrained,
            taps: Vec::new(),
            preprocess: PreprocessConfig::default(),
            backbone_size: None,
            patch_size: 3,
            hidden: vec![256, 64],
            heads: 1,
            bootstrap: false,
            distill: 0,
            prototypes: 64,
            prototype_seed: None,
            nearest_skip: false,
            feature_noise: 0.25,
            feature_noise_radius: DEFAULT_NOISE_RADIUS,
            feature_noise_directions: NoiseDirections::Diagonal,
            epochs: 20,
            learning_rate: 1e-3,
            lr_schedule: LrSchedule::Constant,
            average_epochs: 0,
            loss_weights: LossWeights::Uniform,
            standardise_inputs: false,
            patch_batch: 2048,
            seed: 0,
            folds: 2,
            group_identical: false,
            splits: 1,
            synthetic_per_image: 3,
            anomalies: SyntheticAnomaly::DEFAULT.to_vec(),
            target_pool: TargetPool::Mean,
            target_transform: TargetTransform::Identity,
            upsample: MapUpsample::Bilinear,
            blur_sigma: 0.0,
            image_score: ImageScore::MapMax,
            batch_size: 8,
            teacher: serde_json::json!({ "model": "patchcore" }),
        }
    }
}

/// How the teacher's anomaly map (at the image's resolution) becomes the head's targets, one
/// per cell of its feature grid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetPool {
    /// The cell's mean: the map's level over the patch.
    #[default]
    Mean,
    /// The cell's largest value: the map's peaks survive pooling, so a perfect head's image
    /// score (the largest cell, which bilinear upsampling keeps) is the teacher's.
    Max,
}

impl TargetPool {
    /// Every pooling, in CLI order.
    pub const ALL: [TargetPool; 2] = [TargetPool::Mean, TargetPool::Max];
}

impl std::fmt::Display for TargetPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TargetPool::Mean => "mean",
            TargetPool::Max => "max",
        })
    }
}

impl std::str::FromStr for TargetPool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ad_core::parse_name(s, &Self::ALL, "target pooling")
    }
}

/// What the head regresses, from a scaled target `t` (the teacher's pooled map divided by the
/// scale); prediction inverts it, so the maps stay in the teacher's units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetTransform {
    /// `t` itself: the squared error is dominated by the largest targets (the cut-paste
    /// copies' scores, tens of times the good level), not by those near the good level where
    /// the image-level decisions fall.
    #[default]
    Identity,
    /// `ln(1 + max(t, 0))`: errors count relative to the target's size, so the head spends as
    /// much on the levels near the good parts' as on the large ones. Prediction takes
    /// `exp(y) - 1` of the head's output `y` (capped at `y = 80`, below `f32` overflow).
    /// Measured on the accurate student: lower image and pixel AUROC (docs/results.md).
    Log1p,
}

/// Largest head output [`TargetTransform::Log1p`] inverts (`exp(80)` is finite in `f32`).
const LOG_OUTPUT_CAP: f32 = 80.0;

impl TargetTransform {
    /// Every transform, in CLI order.
    pub const ALL: [TargetTransform; 2] = [TargetTransform::Identity, TargetTransform::Log1p];

    /// The regressed value of a scaled target.
    pub fn forward(self, t: f32) -> f32 {
        match self {
            TargetTransform::Identity => t,
            TargetTransform::Log1p => t.max(0.0).ln_1p(),
        }
    }

    /// The scaled target of a head output (the inverse of [`TargetTransform::forward`] on
    /// its range).
    pub fn inverse(self, y: f32) -> f32 {
        match self {
            TargetTransform::Identity => y,
            TargetTransform::Log1p => y.min(LOG_OUTPUT_CAP).exp_m1(),
        }
    }
}

impl std::fmt::Display for TargetTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TargetTransform::Identity => "identity",
            TargetTransform::Log1p => "log1p",
        })
    }
}

impl std::str::FromStr for TargetTransform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ad_core::parse_name(s, &Self::ALL, "target transform")
    }
}

/// Where [`ScoreStudent`]'s image score is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageScore {
    /// The largest value of the map (after upsampling and blur).
    #[default]
    MapMax,
    /// The largest cell of the head's grid, before upsampling and blur: PatchCore's image score
    /// is its largest patch score, taken before its map is blurred, so a student of a teacher
    /// whose own blur is off (targets = its patch scores) ranks images by what the teacher
    /// ranks them by. A perfect student would gain from it (PA_FVN01_TL: 99.09 -> 99.48 image
    /// AUROC, the teacher's own), but the trained one loses (mean of four seeds 98.83 -> 98.57):
    /// the bilinear upsampling that the map's maximum sees damps the head's isolated errors
    /// more than real defects, which cover several cells (docs/results.md).
    GridMax,
}

impl ImageScore {
    /// Every reading, in CLI order.
    pub const ALL: [ImageScore; 2] = [ImageScore::MapMax, ImageScore::GridMax];
}

impl std::fmt::Display for ImageScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageScore::MapMax => "map-max",
            ImageScore::GridMax => "grid-max",
        })
    }
}

impl std::str::FromStr for ImageScore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ad_core::parse_name(s, &Self::ALL, "image score")
    }
}

/// How much each training patch counts in the squared error. The targets are imbalanced:
/// nearly every patch is a good part's (scaled target below 1), and the head learns the rare
/// high targets, the defects', least well: it pulls mild anomalies toward the good level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossWeights {
    /// Every patch counts once.
    #[default]
    Uniform,
    /// Deep imbalanced regression (Yang et al. 2021): the scaled targets' histogram (bins of
    /// [`WEIGHT_BIN`]) is smoothed by a Gaussian kernel (label distribution smoothing,
    /// sigma [`WEIGHT_SIGMA_BINS`] bins), and a patch is weighted by the inverse square root
    /// of its bin's smoothed frequency, normalised to a mean weight of 1 over the patches.
    /// Measured on the accurate student: it raised the good images' scores more than the
    /// defective ones' and lowered image and pixel AUROC (docs/results.md), so it is off.
    SqrtInverse,
}

impl LossWeights {
    /// Every weighting, in CLI order.
    pub const ALL: [LossWeights; 2] = [LossWeights::Uniform, LossWeights::SqrtInverse];
}

impl std::fmt::Display for LossWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossWeights::Uniform => "uniform",
            LossWeights::SqrtInverse => "sqrt-inverse",
        })
    }
}

impl std::str::FromStr for LossWeights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ad_core::parse_name(s, &Self::ALL, "loss weighting")
    }
}

/// Width of a target bin of [`LossWeights::SqrtInverse`], in units of the scale (the 0.99
/// quantile of the good targets).
pub const WEIGHT_BIN: f32 = 0.05;

/// Standard deviation of the smoothing kernel of [`LossWeights::SqrtInverse`], in bins.
pub const WEIGHT_SIGMA_BINS: f64 = 2.0;

/// Weight of each target bin (bin `b` holds targets in `[b, b + 1) * WEIGHT_BIN`, the last bin
/// everything above), from the scaled targets; see [`LossWeights::SqrtInverse`].
fn bin_weights(targets: &[f32]) -> Vec<f32> {
    let top = targets.iter().map(|&t| bin_of(t)).max().unwrap_or(0);
    let mut counts = vec![0f64; top + 1];
    for &t in targets {
        counts[bin_of(t)] += 1.0;
    }
    let radius = (3.0 * WEIGHT_SIGMA_BINS).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|i| (-((i * i) as f64) / (2.0 * WEIGHT_SIGMA_BINS * WEIGHT_SIGMA_BINS)).exp())
        .collect();
    let smoothed: Vec<f64> = (0..counts.len() as isize)
        .map(|b| {
            (-radius..=radius)
                .filter_map(|i| {
                    let j = b + i;
                    (0..counts.len() as isize)
                        .contains(&j)
                        .then(|| counts[j as usize] * kernel[(i + radius) as usize])
                })
                .sum()
        })
        .collect();
    // Every occupied bin has a smoothed frequency of at least its own count.
    let raw: Vec<f64> = smoothed
        .iter()
        .map(|&f| 1.0 / f.max(1e-12).sqrt())
        .collect();
    let mean = counts.iter().zip(&raw).map(|(c, w)| c * w).sum::<f64>()
        / counts.iter().sum::<f64>().max(1.0);
    raw.iter().map(|w| (w / mean) as f32).collect()
}

/// Bins of [`bin_weights`] at most (targets up to 200 times the scale have their own bin).
const MAX_WEIGHT_BINS: usize = 4096;

/// The bin of a scaled target (negative targets in the first, the largest in the last).
fn bin_of(t: f32) -> usize {
    ((t.max(0.0) / WEIGHT_BIN) as usize).min(MAX_WEIGHT_BINS - 1)
}

/// The weight of a scaled target under [`bin_weights`]' table.
fn weight_of(table: &[f32], t: f32) -> f32 {
    table.get(bin_of(t)).copied().unwrap_or(1.0)
}

/// A validated [`StudentConfig`] (taps resolved); only [`StudentConfig::check`] makes one.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedStudentConfig(StudentConfig);

impl std::ops::Deref for CheckedStudentConfig {
    type Target = StudentConfig;
    fn deref(&self) -> &StudentConfig {
        &self.0
    }
}

impl StudentConfig {
    /// Epochs a fit reports ([`EpochReport::epochs`]): every head of the student and of each
    /// distillation member trains `epochs` epochs.
    pub fn reported_epochs(&self) -> usize {
        self.epochs * self.heads * (self.distill + 1)
    }

    /// Validates every parameter once and resolves the default taps.
    pub fn check(&self) -> Result<CheckedStudentConfig, RegressError> {
        let bad = |name, reason: String| Err(RegressError::InvalidConfig { name, reason });
        if self.patch_size == 0 || self.patch_size.is_multiple_of(2) {
            return bad(
                "patch_size",
                format!("{} must be odd and positive", self.patch_size),
            );
        }
        if self.hidden.contains(&0) {
            return bad("hidden", format!("{:?} has a zero width", self.hidden));
        }
        if !(1..=MAX_SPLITS).contains(&self.splits) {
            return bad(
                "splits",
                format!("{} is not in 1..={MAX_SPLITS}", self.splits),
            );
        }
        if !(1..=MAX_HEADS).contains(&self.heads) {
            return bad("heads", format!("{} is not in 1..={MAX_HEADS}", self.heads));
        }
        if self.distill > MAX_DISTILL {
            return bad(
                "distill",
                format!("{} members exceed {MAX_DISTILL}", self.distill),
            );
        }
        if self.prototypes > MAX_PROTOTYPES {
            return bad(
                "prototypes",
                format!("{} exceeds {MAX_PROTOTYPES}", self.prototypes),
            );
        }
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if self.average_epochs > self.epochs {
            return bad(
                "average_epochs",
                format!(
                    "{} exceeds the {} epochs of training",
                    self.average_epochs, self.epochs
                ),
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate < 1.0)
        {
            return bad(
                "learning_rate",
                format!("{} is not in (0, 1)", self.learning_rate),
            );
        }
        if self.patch_batch == 0 {
            return bad("patch_batch", "must be at least 1".into());
        }
        if self.nearest_skip && self.prototypes == 0 {
            return bad(
                "nearest_skip",
                "needs prototypes (prototypes = 0 leaves no nearest prototype)".into(),
            );
        }
        if !(self.feature_noise.is_finite()
            && (0.0..=MAX_FEATURE_NOISE).contains(&self.feature_noise))
        {
            return bad(
                "feature_noise",
                format!(
                    "{} is not a fraction of the good patches in 0..={MAX_FEATURE_NOISE}",
                    self.feature_noise
                ),
            );
        }
        if !(self.feature_noise_radius.is_finite()
            && self.feature_noise_radius > 0.0
            && self.feature_noise_radius <= MAX_NOISE_RADIUS)
        {
            return bad(
                "feature_noise_radius",
                format!(
                    "{} is not a radius in (0, {MAX_NOISE_RADIUS}] median nearest-good-patch \
                     distances",
                    self.feature_noise_radius
                ),
            );
        }
        if self.synthetic_per_image > 0 && self.anomalies.is_empty() {
            return bad(
                "anomalies",
                format!(
                    "is empty but synthetic_per_image is {}: name at least one kind ({})",
                    self.synthetic_per_image,
                    SyntheticAnomaly::ALL.map(|k| k.to_string()).join(", ")
                ),
            );
        }
        if let Some(k) = self
            .anomalies
            .iter()
            .enumerate()
            .find_map(|(i, k)| self.anomalies[..i].contains(k).then_some(k))
        {
            return bad("anomalies", format!("names {k} twice"));
        }
        if self.folds < 2 {
            return bad(
                "folds",
                format!(
                    "{}: at least 2 (a teacher cannot score its own training images)",
                    self.folds
                ),
            );
        }
        if let Err((name, reason)) =
            ad_core::postprocess::check_shared(self.blur_sigma, self.batch_size, &self.preprocess)
        {
            return bad(name, reason);
        }
        if let Some((h, w)) = self.backbone_size {
            let (ph, pw) = self.preprocess.output_size();
            if h == 0 || w == 0 || h > ph || w > pw {
                return bad(
                    "backbone_size",
                    format!(
                        "{h}x{w} is not within the {ph}x{pw} preprocessed images (the student's \
                         backbone sees at most the teacher's pixels)"
                    ),
                );
            }
        }
        if !self.teacher.is_object() {
            return bad(
                "teacher",
                format!(
                    "{} is not a table such as {{ model = \"patchcore\" }}",
                    self.teacher
                ),
            );
        }
        let mut c = self.clone();
        if c.taps.is_empty() {
            c.taps = c.backbone.default_taps();
        }
        if c.taps.is_empty() {
            return bad("taps", format!("{} has no default taps", c.backbone));
        }
        for tap in &c.taps {
            c.backbone.tap_shape(tap)?;
        }
        let c = CheckedStudentConfig(c);
        let seen = c.backbone_input_size();
        let grid = c.grid()?;
        if grid.0 < MIN_GRID || grid.1 < MIN_GRID {
            return bad(
                if c.backbone_size.is_some() {
                    "backbone_size"
                } else {
                    "preprocess"
                },
                format!(
                    "{}x{} images give a {}x{} grid; at least {MIN_GRID}x{MIN_GRID} is needed",
                    seen.0, seen.1, grid.0, grid.1
                ),
            );
        }
        Ok(c)
    }
}

impl CheckedStudentConfig {
    /// The backbone description.
    pub fn backbone_config(&self) -> BackboneConfig {
        BackboneConfig::new(self.backbone, self.weights.clone()).with_taps(&self.taps)
    }

    /// The unchecked form (for serialisation).
    pub fn as_config(&self) -> &StudentConfig {
        &self.0
    }

    /// The size the backbone sees: [`StudentConfig::backbone_size`], or the preprocessed size.
    pub fn backbone_input_size(&self) -> (usize, usize) {
        self.backbone_size
            .unwrap_or_else(|| self.preprocess.output_size())
    }

    /// The head's grid: the size the backbone sees at the first tap's stride.
    fn grid(&self) -> Result<(usize, usize), RegressError> {
        let (_, stride) = self.backbone.tap_shape(&self.taps[0])?;
        Ok(grid_at_stride(self.backbone_input_size(), stride))
    }

    /// The head's input width (sum of the taps' channels).
    pub fn feature_dim(&self) -> Result<usize, RegressError> {
        let mut d = 0;
        for t in &self.taps {
            d += self.backbone.tap_shape(t)?.0;
        }
        Ok(d)
    }

    /// What fitting on `images` good images will need (the student's own training data; the
    /// teacher's fits come on top, one fold at a time).
    pub fn estimate(&self, images: usize) -> Result<FitEstimate, RegressError> {
        let size = self.preprocess.output_size();
        let seen = self.backbone_input_size();
        let grid = self.grid()?;
        let d = self.feature_dim()?;
        // Every split scores every good image and makes its own copies.
        let samples = self.splits * images * (1 + self.synthetic_per_image);
        let moved = (self.splits as f64 * images as f64 * f64::from(self.feature_noise)).ceil();
        let rows = (samples + moved as usize) * grid.0 * grid.1;
        let mut warnings = Vec::new();
        if images < self.folds {
            warnings.push(format!(
                "{images} good images for {} teacher folds: every fold needs one",
                self.folds
            ));
        }
        let cells = grid.0 * grid.1;
        let plane = (3 * size.0 * size.1) as u64 * 4;
        Ok(FitEstimate {
            grid,
            feature_dim: d,
            memory_rows: rows,
            // Every sample's features and target, and its index in the shuffled order; a
            // second copy of the good images' rows (for the prototypes and the scale); the good
            // images as planes (the synthetic copies are made and dropped a batch at a time,
            // and the distances to the prototypes are computed per training batch).
            peak_bytes: rows as u64 * ((d as u64 + 1) * 4 + 8)
                + (self.splits * images * cells) as u64 * (d as u64 + 1) * 4
                + images as u64 * plane
                + self.batch_size as u64 * plane
                + forward_bytes(self.batch_size, seen),
            warnings,
        })
    }
}

/// What fitting produced besides the head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Trained {
    /// Grid `(h, w)` of the head's output.
    pub(crate) grid: (usize, usize),
    /// Preprocessed image size `(h, w)`.
    pub(crate) image_size: (usize, usize),
    /// Targets were divided by this.
    pub(crate) scale: f32,
    /// Mean training loss of every epoch.
    pub(crate) losses: Vec<f64>,
    /// Name of the teacher.
    pub(crate) teacher: String,
    /// Good and synthetic images the head was trained on.
    pub(crate) images: (usize, usize),
    /// The prototypes (`prototypes x feature dim`, row-major; empty without).
    #[serde(default)]
    pub(crate) prototypes: Vec<f32>,
    /// Slope of the nearest prototype's distance added to every head's output (in the
    /// transformed, scaled targets' units; 0 without [`StudentConfig::nearest_skip`]).
    #[serde(default)]
    pub(crate) skip: f32,
}

/// The head's score grids of a batch ([`ScoreStudent::score_grids`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreGrids {
    /// One grid per image: `size.0 * size.1` values, row-major, in the teacher's units.
    pub grids: Vec<Vec<f32>>,
    /// `(gh, gw)`.
    pub size: (usize, usize),
}

/// A student of a detector's anomaly maps: backbone -> patch features (+ distances to the
/// prototypes) -> per-patch MLP.
pub struct ScoreStudent {
    pub(crate) config: CheckedStudentConfig,
    pub(crate) device: Device,
    pub(crate) backbone: Backbone,
    pub(crate) preprocessor: Preprocessor,
    /// The trained heads (empty before `fit` or `load`).
    pub(crate) heads: Vec<Mlp>,
    pub(crate) trained: Option<Trained>,
    pub(crate) threshold: Option<Threshold>,
    teacher: Option<TeacherFactory>,
    on_epoch: Option<EpochCallback>,
    on_stage: Option<StageCallback>,
    /// `(student, students)` of the fit under way: the distillation members come before the
    /// student itself, and the progress reports count over all of them (`(0, 1)` without).
    round: (usize, usize),
}

/// A distillation member: a fitted student's heads and what its fit produced
/// ([`StudentConfig::distill`]).
struct Member {
    heads: Vec<Mlp>,
    trained: Trained,
}

/// Seed of distillation member `m` of a student of seed `seed`: apart from every plain
/// student's seed, so the members are not the students of the neighbouring seeds.
fn member_seed(seed: u64, m: usize) -> u64 {
    (seed ^ 0xD157_1117_0000_0000).wrapping_add((m as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl std::fmt::Debug for ScoreStudent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreStudent")
            .field("config", &self.config)
            .field("backbone", &self.backbone.identity())
            .field("trained", &self.trained)
            .field("threshold", &self.threshold)
            .finish()
    }
}

/// An `(h, w)` map pooled over a `(gh, gw)` grid of cells (area mean or maximum): how a
/// teacher's map becomes [`ScoreStudent`]'s targets.
///
/// # Shapes
/// - `map`: `h * w` values, row-major
/// - returns `gh * gw` values, row-major
pub fn pool_to_grid(
    map: &[f32],
    (h, w): (usize, usize),
    (gh, gw): (usize, usize),
    pool: TargetPool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; gh * gw];
    for gy in 0..gh {
        let (y0, y1) = (gy * h / gh, ((gy + 1) * h / gh).max(gy * h / gh + 1));
        for gx in 0..gw {
            let (x0, x1) = (gx * w / gw, ((gx + 1) * w / gw).max(gx * w / gw + 1));
            let cell = (y0..y1.min(h)).flat_map(|y| map[y * w + x0..y * w + x1.min(w)].iter());
            out[gy * gw + gx] = match pool {
                TargetPool::Mean => {
                    let s: f64 = cell.map(|&v| f64::from(v)).sum();
                    (s / ((y1 - y0) * (x1 - x0)) as f64) as f32
                }
                TargetPool::Max => cell.copied().fold(f32::NEG_INFINITY, f32::max),
            };
        }
    }
    out
}

/// The `q` quantile (nearest rank, `round((n - 1) q)`: the upper median at `q = 0.5`) of
/// the finite values of `v` (0 for none).
pub(crate) fn quantile(v: &[f32], q: f64) -> f32 {
    let mut s: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f32::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

impl ScoreStudent {
    /// Validates the configuration and builds the backbone on `device`; `teacher` makes the
    /// teachers `fit` trains against (`None` for a model that will only predict, e.g. one
    /// about to be loaded).
    pub fn new(
        config: &StudentConfig,
        teacher: Option<TeacherFactory>,
        device: &Device,
    ) -> Result<Self, RegressError> {
        let config = config.check()?;
        let backbone = config.backbone_config().init(device)?;
        let preprocessor = Preprocessor::new(config.preprocess.clone())?;
        Ok(Self {
            config,
            device: device.clone(),
            backbone,
            preprocessor,
            heads: Vec::new(),
            trained: None,
            threshold: None,
            teacher,
            on_epoch: None,
            on_stage: None,
            round: (0, 1),
        })
    }

    /// Sets the factory of the teachers `fit` trains against.
    pub fn set_teacher(&mut self, teacher: Option<TeacherFactory>) {
        self.teacher = teacher;
    }

    /// The validated configuration.
    pub fn config(&self) -> &StudentConfig {
        self.config.as_config()
    }

    /// The frozen backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The trained heads, [`StudentConfig::heads`] of them (empty before `fit` or `load`).
    pub fn heads(&self) -> &[Mlp] {
        &self.heads
    }

    /// The slope of the nearest prototype's distance added to the heads' output
    /// ([`StudentConfig::nearest_skip`]; 0 without it or before `fit` or `load`).
    pub fn skip_slope(&self) -> f32 {
        self.trained.as_ref().map_or(0.0, |t| t.skip)
    }

    /// Mean training loss of every epoch of the last `fit`.
    pub fn losses(&self) -> Option<&[f64]> {
        self.trained.as_ref().map(|t| t.losses.as_slice())
    }

    /// The head's score grids of a batch in the teacher's units (transformed back and times
    /// the scale), before upsampling and blur: what [`Detector::predict`] makes its maps from.
    ///
    /// # Shapes
    /// - `batch`: `[n, 3, h, w]` at the size the student was fitted on
    /// - returns `n` grids of `gh * gw` values (row-major) and `(gh, gw)`
    ///   ([`ScoreGrids`])
    pub fn score_grids(&self, batch: &ImageBatch) -> Result<ScoreGrids, RegressError> {
        let trained = match &self.trained {
            Some(t) if !self.heads.is_empty() => t,
            _ => return Err(RegressError::NotFitted),
        };
        if (batch.height(), batch.width()) != trained.image_size {
            return Err(RegressError::BatchShape {
                got: batch.shape(),
                expected: format!("[_, 3, {}, {}]", trained.image_size.0, trained.image_size.1),
            });
        }
        let (rows, grid) = self.patch_rows(batch)?;
        if grid != trained.grid {
            return Err(RegressError::BatchShape {
                got: batch.shape(),
                expected: format!("a {:?} feature grid, got {grid:?}", trained.grid),
            });
        }
        let d = rows.len() / (batch.len() * grid.0 * grid.1).max(1);
        let out = self.head_rows(&rows, d, &trained.prototypes, trained.skip)?;
        let grids = out
            .chunks(grid.0 * grid.1)
            .map(|g| g.iter().map(|&v| v * trained.scale).collect())
            .collect();
        Ok(ScoreGrids { grids, size: grid })
    }

    /// Patch features of a batch: `[images * h * w, d]` rows, `(image, y, x)` order, and the
    /// grid.
    fn patch_rows(&self, batch: &ImageBatch) -> Result<(Vec<f32>, (usize, usize)), RegressError> {
        let mut rows = Vec::new();
        let mut grid = (0, 0);
        for chunk in batch.chunks(self.config.batch_size) {
            let chunk = match self.config.backbone_size {
                Some(size) => chunk.resized(size)?,
                None => chunk,
            };
            let taps = self.backbone.forward(chunk.to_tensor(&self.device));
            let [_, _, h, w] = taps
                .first()
                .map(|t| t.dims())
                .ok_or_else(|| RegressError::Data("the backbone has no tap".into()))?;
            grid = (h, w);
            rows.extend(read_f32(patch_embedding(
                taps,
                self.config.patch_size,
                None,
            ))?);
        }
        Ok((rows, grid))
    }

    /// The heads' output for patch rows (`d` wide), with their distances to the prototypes
    /// when there are any (`k x d`): each head's output, plus `skip` times the nearest
    /// prototype's distance, transformed back to a scaled target
    /// ([`TargetTransform::inverse`]), then the mean over the heads (unscaled).
    fn head_rows(
        &self,
        rows: &[f32],
        d: usize,
        prototypes: &[f32],
        skip: f32,
    ) -> Result<Vec<f32>, RegressError> {
        head_outputs(
            &self.heads,
            rows,
            d,
            prototypes,
            skip,
            self.config.target_transform,
            &self.device,
        )
    }

    /// A progress stage's name, after the distillation member it belongs to (if any).
    fn stage_name(&self, stage: &str) -> String {
        let (i, n) = self.round;
        if i + 1 < n {
            format!("member {}/{}: {stage}", i + 1, n - 1)
        } else {
            stage.to_string()
        }
    }
}

/// The output of `heads` for patch rows (`d` wide), with their distances to the prototypes
/// when there are any (`k x d`): each head's output, plus `skip` times the nearest prototype's
/// distance, transformed back to a scaled target ([`TargetTransform::inverse`]), then the mean
/// over the heads (unscaled).
///
/// # Shapes
/// - `rows`: `n x d`, row-major
/// - `prototypes`: `k x d`, row-major (`k` may be 0)
/// - returns `n` values
fn head_outputs(
    heads: &[Mlp],
    rows: &[f32],
    d: usize,
    prototypes: &[f32],
    skip: f32,
    transform: TargetTransform,
    device: &Device,
) -> Result<Vec<f32>, RegressError> {
    let n = rows.len() / d.max(1);
    let k = prototypes.len() / d.max(1);
    let protos = (k > 0)
        .then(|| Tensor::<2>::from_data(TensorData::new(prototypes.to_vec(), [k, d]), device));
    let inv_heads = 1.0 / heads.len().max(1) as f32;
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(INFER_CHUNK) {
        let m = INFER_CHUNK.min(n - start);
        let x = Tensor::<2>::from_data(
            TensorData::new(rows[start * d..(start + m) * d].to_vec(), [m, d]),
            device,
        );
        let x = match &protos {
            Some(p) => with_radial(x, p),
            None => x,
        };
        let added = if skip != 0.0 && protos.is_some() {
            read_f32(nearest_distance(x.clone(), d).mul_scalar(skip))?
        } else {
            vec![0.0; m]
        };
        if let [head] = heads {
            out.extend(
                read_f32(head.forward(x))?
                    .into_iter()
                    .zip(&added)
                    .map(|(v, a)| transform.inverse(v + a)),
            );
            continue;
        }
        let mut sum = vec![0.0f32; m];
        for head in heads {
            let y = read_f32(head.forward(x.clone()))?;
            for ((s, v), a) in sum.iter_mut().zip(y).zip(&added) {
                *s += transform.inverse(v + a);
            }
        }
        out.extend(sum.into_iter().map(|s| s * inv_heads));
    }
    Ok(out)
}

impl ScoreStudent {
    /// One fold's training rows, appended to `out`: a teacher fitted on the fold's `train`
    /// images scores its good images, then their synthetic anomalies, one batch at a time;
    /// each batch's patch features join the rows beside the teacher's maps pooled to the
    /// student's grid, and the batch is dropped (only the good images are held as planes).
    fn gather_fold(
        &self,
        factory: &TeacherFactory,
        part: &Fold<'_>,
        size: (usize, usize),
        out: &mut TrainingRows,
        on_stage: &mut Option<StageCallback>,
    ) -> Result<(), RegressError> {
        let (fold, train, score) = (part.index, part.train.as_slice(), part.score.as_slice());
        let folds = self.config.folds * self.config.splits;
        let mut report = |stage: &str, done, total| {
            if let Some(cb) = on_stage.as_mut() {
                cb(&StageReport {
                    stage: self.stage_name(&format!("fold {}/{folds}: {stage}", fold + 1)),
                    done,
                    total,
                });
            }
        };
        report("teacher fitting", 0, train.len());
        let pre = self.preprocessor.config();
        let batch_of = |planes: Vec<Vec<f32>>| -> Result<ImageBatch, RegressError> {
            Ok(ImageBatch::from_planes(planes, size, pre.mean, pre.std)?)
        };
        let mut teacher = factory().map_err(RegressError::Teacher)?;
        if teacher.dyn_preprocessor().config() != pre {
            return Err(RegressError::Teacher(
                format!(
                    "the teacher preprocesses images as {:?}, the student as {:?}: they must \
                     see the same pixels",
                    teacher.dyn_preprocessor().config(),
                    pre
                )
                .into(),
            ));
        }
        let bs = self.config.batch_size;
        let first_good = out.good_targets.len();
        let mut fit_batches = train
            .chunks(bs)
            .map(|c| batch_of(c.iter().map(|p| p.to_vec()).collect()).map_err(BoxError::from));
        teacher
            .dyn_fit(&mut fit_batches)
            .map_err(|e| RegressError::Teacher(e.0))?;
        report("teacher fitting", train.len(), train.len());
        // The fold's good images, then the synthetic anomalies, kinds in turn: the `s`-th copy
        // of the `i`-th image is sample `len + s * len + i` (cut-paste takes its rectangle from
        // another image of the fold).
        let len = score.len();
        let copies = if len == 0 {
            0
        } else {
            self.config.synthetic_per_image * len
        };
        let kinds = &self.config.anomalies;
        let sample = |j: usize| -> Vec<f32> {
            let mut plane = score[j % len].to_vec();
            if j >= len {
                let (s, i) = ((j - len) / len, (j - len) % len);
                let source = score[(i + 1 + s) % len];
                let seed = self.config.seed ^ ((fold as u64) << 48) ^ ((s as u64) << 32) ^ i as u64;
                kinds[(s + i) % kinds.len()].apply(&mut plane, source, size, seed);
            }
            plane
        };
        for start in (0..len + copies).step_by(bs) {
            let batch = batch_of(
                (start..(start + bs).min(len + copies))
                    .map(sample)
                    .collect(),
            )?;
            let maps = teacher
                .dyn_predict(&batch)
                .map_err(|e| RegressError::Teacher(e.0))?;
            let (rows, grid) = self.patch_rows(&batch)?;
            out.grid = grid;
            let per_image = rows.len() / batch.len().max(1);
            for (m, p) in maps.iter().enumerate() {
                let pooled = pool_to_grid(p.map.as_slice(), size, grid, self.config.target_pool);
                if start + m < len {
                    out.good_targets.extend_from_slice(&pooled);
                    out.good_rows
                        .extend_from_slice(&rows[m * per_image..(m + 1) * per_image]);
                }
                out.targets.extend(pooled);
            }
            out.rows.extend(rows);
            report(
                "teacher scoring",
                (start + bs).min(len + copies),
                len + copies,
            );
        }
        out.synthetic += copies;
        out.good_folds.push(FoldRows {
            split: fold / self.config.folds.max(1),
            start: first_good,
            len: out.good_targets.len() - first_good,
        });
        out.teacher = teacher.dyn_name().to_string();
        Ok(())
    }
}

/// The nearest prototype's distance of every radial row (`[n, d + k]`, [`with_radial`]'s
/// output, `k >= 1`).
///
/// # Shapes
/// - `x`: `[n, d + k]`
/// - returns `[n, 1]`
fn nearest_distance(x: Tensor<2>, d: usize) -> Tensor<2> {
    let [n, width] = x.dims();
    x.slice([0..n, d..width]).min_dim(1)
}

/// The nearest prototype's distance of every `d`-wide row of `rows`, in chunks.
fn nearest_distances(
    rows: &[f32],
    d: usize,
    protos: &Tensor<2>,
    device: &Device,
) -> Result<Vec<f32>, RegressError> {
    let mut out = Vec::with_capacity(rows.len() / d.max(1));
    for chunk in rows.chunks(INFER_CHUNK * d.max(1)) {
        let m = chunk.len() / d.max(1);
        let x = Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [m, d]), device);
        out.extend(read_f32(nearest_distance(with_radial(x, protos), d))?);
    }
    Ok(out)
}

/// Slope of the least-squares line of `y` on `x` (with an intercept), summed in f64; 0 when
/// `x` is constant.
fn least_squares_slope(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len()).max(1) as f64;
    let mx = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let my = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (a, b) = (f64::from(a) - mx, f64::from(b) - my);
        sxy += a * b;
        sxx += a * a;
    }
    if sxx > 0.0 { (sxy / sxx) as f32 } else { 0.0 }
}

/// Mean and inverse standard deviation of every input column of the head (the patch feature,
/// then its distances to the prototypes) over the training patches: the head trains on
/// `(x - mean) * inv_std`, and [`InputMoments::fold_into`] moves that into its first layer.
struct InputMoments {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl InputMoments {
    /// Rows per pass of the distances.
    const CHUNK: usize = 8192;

    /// The moments of the `n x d` rows `rows`, each with its distances to `protos` (when
    /// there are prototypes), summed in f64 in row order; a constant column keeps scale 1.
    fn of(
        rows: &[f32],
        d: usize,
        protos: Option<&Tensor<2>>,
        device: &Device,
    ) -> Result<Self, RegressError> {
        let mut sum: Vec<f64> = Vec::new();
        let mut squares: Vec<f64> = Vec::new();
        let mut n = 0usize;
        for chunk in rows.chunks(Self::CHUNK * d.max(1)) {
            let m = chunk.len() / d.max(1);
            let x = match protos {
                Some(p) => read_f32(with_radial(
                    Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [m, d]), device),
                    p,
                ))?,
                None => chunk.to_vec(),
            };
            let width = x.len() / m.max(1);
            sum.resize(width, 0.0);
            squares.resize(width, 0.0);
            for row in x.chunks(width.max(1)) {
                for ((s, q), &v) in sum.iter_mut().zip(&mut squares).zip(row) {
                    *s += f64::from(v);
                    *q += f64::from(v) * f64::from(v);
                }
            }
            n += m;
        }
        let count = n.max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let inv_std = squares
            .iter()
            .zip(&mean)
            .map(|(q, m)| {
                let sd = (q / count - m * m).max(0.0).sqrt();
                if sd > 1e-6 { (1.0 / sd) as f32 } else { 1.0 }
            })
            .collect();
        Ok(Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            inv_std,
        })
    }

    /// Standardises the row-major rows `x` (of this width) in place.
    fn standardise(&self, x: &mut [f32]) {
        for row in x.chunks_mut(self.mean.len().max(1)) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.inv_std) {
                *v = (*v - m) * s;
            }
        }
    }

    /// The head that gives on raw inputs what `head` gives on standardised ones: the first
    /// layer's weights `W[i][j] * inv_std[i]` and biases `b[j] - sum_i mean[i] * inv_std[i] *
    /// W[i][j]`.
    fn fold_into(&self, head: &Mlp, device: &Device) -> Result<Mlp, RegressError> {
        let dims = head.dims();
        let mut flat = head.to_flat()?;
        let (d_in, d_out) = (dims[0], dims.get(1).copied().unwrap_or(0));
        if d_in != self.mean.len() {
            return Err(RegressError::Data(format!(
                "input moments of {} columns for a head of widths {dims:?}",
                self.mean.len()
            )));
        }
        let mut shift = vec![0.0f64; d_out];
        for i in 0..d_in {
            for (j, sh) in shift.iter_mut().enumerate() {
                let w = &mut flat[i * d_out + j];
                *w *= self.inv_std[i];
                *sh += f64::from(self.mean[i]) * f64::from(*w);
            }
        }
        for (b, sh) in flat[d_in * d_out..d_in * d_out + d_out]
            .iter_mut()
            .zip(shift)
        {
            *b = (f64::from(*b) - sh) as f32;
        }
        Mlp::from_flat(&dims, &flat, device)
            .ok_or_else(|| RegressError::Data(format!("a folded head of widths {dims:?}")))
    }
}

/// One part of the cross-fitting: the good images its teacher fits on, and the good images
/// it scores.
struct Fold<'a> {
    /// 0-based, over the splits (split `r`'s part `f` is `r * folds + f`).
    index: usize,
    /// The other parts' good images.
    train: Vec<&'a [f32]>,
    /// This part's good images.
    score: Vec<&'a [f32]>,
}

/// The student's training data, gathered fold by fold.
#[derive(Default)]
struct TrainingRows {
    /// Patch features of every sample, `n x d` row-major, `(sample, y, x)` order.
    rows: Vec<f32>,
    /// The teacher's pooled map: one target per row.
    targets: Vec<f32>,
    /// The rows of the good images alone (the prototypes are fitted on them).
    good_rows: Vec<f32>,
    /// The targets of the good images alone (their quantile is the scale).
    good_targets: Vec<f32>,
    /// Where each fold's rows sit among the good rows.
    good_folds: Vec<FoldRows>,
    /// The head's grid.
    grid: (usize, usize),
    /// Synthetic anomalies made.
    synthetic: usize,
    /// The teacher's name.
    teacher: String,
}

impl Detector for ScoreStudent {
    type Error = RegressError;

    fn name(&self) -> &'static str {
        "student"
    }

    fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    fn set_epoch_callback(&mut self, callback: Option<EpochCallback>) {
        self.on_epoch = callback;
    }

    fn set_stage_callback(&mut self, callback: Option<StageCallback>) {
        self.on_stage = callback;
    }

    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, RegressError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let t0 = Instant::now();
        let factory = self.teacher.take().ok_or_else(|| {
            RegressError::Teacher(
                "no teacher: build the student with a TeacherFactory (or set_teacher) to fit it"
                    .into(),
            )
        })?;
        let result = self.fit_with(&factory, batches, t0);
        self.teacher = Some(factory);
        result
    }

    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, RegressError> {
        let ScoreGrids { grids, size: grid } = self.score_grids(batch)?;
        let (h, w) = (batch.height(), batch.width());
        grids
            .into_iter()
            .map(|g| {
                let up = upsample(&g, grid, (h, w), self.config.upsample);
                let map =
                    AnomalyMap::new(w, h, gaussian_blur(&up, (h, w), self.config.blur_sigma))?;
                let score = match self.config.image_score {
                    ImageScore::MapMax => map.max(),
                    ImageScore::GridMax => g.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                };
                Ok(Prediction {
                    score,
                    map,
                    is_anomalous: self.threshold.as_ref().map(|t| t.is_anomalous(score)),
                })
            })
            .collect()
    }

    fn save(&self, path: &std::path::Path) -> Result<(), RegressError> {
        ScoreStudent::save(self, path)
    }

    fn threshold(&self) -> Option<&Threshold> {
        self.threshold.as_ref()
    }

    fn set_threshold(&mut self, threshold: Option<Threshold>) {
        self.threshold = threshold;
    }
}

impl ScoreStudent {
    fn fit_with<I, E>(
        &mut self,
        factory: &TeacherFactory,
        batches: I,
        t0: Instant,
    ) -> Result<FitSummary, RegressError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        // 1. The good images, as planes.
        let mut planes: Vec<Vec<f32>> = Vec::new();
        let mut size = None;
        for batch in batches {
            let batch = batch.map_err(|e| RegressError::Input(e.into()))?;
            if batch.is_empty() {
                continue;
            }
            let s = (batch.height(), batch.width());
            if *size.get_or_insert(s) != s {
                return Err(RegressError::BatchShape {
                    got: batch.shape(),
                    expected: format!("[_, 3, {}, {}] like the first batch", s.0, s.1),
                });
            }
            let per = 3 * s.0 * s.1;
            planes.extend(batch.as_slice().chunks(per).map(<[f32]>::to_vec));
        }
        let size = size.ok_or(RegressError::NoTrainingImages)?;
        // The members' fits count as building the model; the features are the student's own.
        let extracted = t0.elapsed();
        let fitted = self
            .fit_members(factory, &planes, size)
            .and_then(|members| {
                let members_time = t0.elapsed() - extracted;
                let mut summary =
                    self.fit_planes(factory, &planes, size, &members, Instant::now())?;
                summary.extract_time += extracted;
                summary.build_time += members_time;
                Ok(summary)
            });
        self.round = (0, 1);
        fitted
    }

    /// The distillation members ([`StudentConfig::distill`]): students of their own seeds
    /// fitted on `planes` one after the other, on this student's backbone (none without
    /// distillation).
    fn fit_members(
        &mut self,
        factory: &TeacherFactory,
        planes: &[Vec<f32>],
        size: (usize, usize),
    ) -> Result<Vec<Member>, RegressError> {
        let count = self.config.distill;
        let own = self.config.clone();
        let mut members = Vec::with_capacity(count);
        for m in 0..count {
            let mut config = own.as_config().clone();
            config.distill = 0;
            config.seed = member_seed(own.seed, m);
            self.config = config.check()?;
            self.round = (m, count + 1);
            let fitted = self.fit_planes(factory, planes, size, &[], Instant::now());
            self.config = own.clone();
            fitted?;
            let trained = self.trained.take().ok_or(RegressError::NotFitted)?;
            members.push(Member {
                heads: std::mem::take(&mut self.heads),
                trained,
            });
        }
        self.round = (count, count + 1);
        Ok(members)
    }

    /// The distillation targets: the mean over `members` of their patch scores (in the
    /// teacher's units) on the `d`-wide training rows.
    ///
    /// # Shapes
    /// - `rows`: `n x d`, row-major
    /// - returns `n` values
    fn member_mean(
        &mut self,
        members: &[Member],
        rows: &[f32],
        d: usize,
    ) -> Result<Vec<f32>, RegressError> {
        let n = rows.len() / d.max(1);
        let mut sum = vec![0.0f64; n];
        for (i, member) in members.iter().enumerate() {
            if let Some(cb) = self.on_stage.as_mut() {
                cb(&StageReport {
                    stage: "distillation targets".into(),
                    done: i,
                    total: members.len(),
                });
            }
            let out = head_outputs(
                &member.heads,
                rows,
                d,
                &member.trained.prototypes,
                member.trained.skip,
                self.config.target_transform,
                &self.device,
            )?;
            for (s, v) in sum.iter_mut().zip(out) {
                *s += f64::from(v * member.trained.scale);
            }
        }
        if let Some(cb) = self.on_stage.as_mut() {
            cb(&StageReport {
                stage: "distillation targets".into(),
                done: members.len(),
                total: members.len(),
            });
        }
        let count = members.len().max(1) as f64;
        Ok(sum.into_iter().map(|s| (s / count) as f32).collect())
    }

    /// Fits the student on the good images `planes` (`3 x h x w` each, `size = (h, w)`):
    /// the teachers' targets, or the mean of `members`' outputs when there are members.
    fn fit_planes(
        &mut self,
        factory: &TeacherFactory,
        planes: &[Vec<f32>],
        size: (usize, usize),
        members: &[Member],
        t0: Instant,
    ) -> Result<FitSummary, RegressError> {
        let k = self.config.folds;
        if planes.len() < k {
            return Err(RegressError::Data(format!(
                "{} good images for {k} teacher folds: at least one per fold is needed",
                planes.len()
            )));
        }
        // Each image's first identical image (itself when it has no earlier copy).
        let original = if self.config.group_identical {
            first_identical(planes)
        } else {
            (0..planes.len()).collect()
        };
        let copies = original
            .iter()
            .enumerate()
            .filter(|&(i, &j)| i != j)
            .count();
        if copies > 0 {
            log::info!("{copies} good images are copies of earlier ones: each in its fold");
        }
        // The part of every image in every split; split 0 is the one-split student's.
        let parts: Vec<Vec<usize>> = (0..self.config.splits)
            .map(|r| {
                let mut order: Vec<usize> = (0..planes.len()).collect();
                order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(
                    self.config
                        .seed
                        .wrapping_add((r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                ));
                let mut p = vec![0; planes.len()];
                for (rank, &i) in order.iter().enumerate() {
                    p[i] = rank % k;
                }
                // A copy joins its original's part (originals come first in index order).
                for i in 0..p.len() {
                    p[i] = p[original[i]];
                }
                p
            })
            .collect();

        // 2. Teacher targets, fold by fold, and the student's patch features of the same images.
        let mut data = TrainingRows::default();
        let mut on_stage = self.on_stage.take();
        let gathered = (0..k * parts.len()).try_for_each(|index| {
            let (part, f) = (&parts[index / k], index % k);
            let fold = Fold {
                index,
                train: (0..planes.len())
                    .filter(|&i| part[i] != f)
                    .map(|i| planes[i].as_slice())
                    .collect(),
                score: (0..planes.len())
                    .filter(|&i| part[i] == f)
                    .map(|i| planes[i].as_slice())
                    .collect(),
            };
            self.gather_fold(factory, &fold, size, &mut data, &mut on_stage)
        });
        self.on_stage = on_stage;
        gathered?;
        let TrainingRows {
            mut rows,
            mut targets,
            good_rows,
            good_targets,
            good_folds,
            grid,
            synthetic,
            teacher: teacher_name,
        } = data;
        let extract_time = t0.elapsed();
        let t1 = Instant::now();
        let d = rows.len() / targets.len().max(1);
        let scale = quantile(&good_targets, 0.99).max(1e-6);
        let noise_stage = self.stage_name("feature-space anomalies");
        let moved = feature_anomalies(
            &good_rows,
            &good_targets,
            &good_folds,
            d,
            grid.0 * grid.1,
            self.config.feature_noise,
            self.config.feature_noise_radius,
            self.config.feature_noise_directions,
            self.config.seed,
            &mut |done, total| {
                if let Some(cb) = self.on_stage.as_mut() {
                    cb(&StageReport {
                        stage: noise_stage.clone(),
                        done,
                        total,
                    });
                }
            },
        )?;
        rows.extend(moved.rows);
        targets.extend(moved.targets);
        if !members.is_empty() {
            targets = self.member_mean(members, &rows, d)?;
        }
        let n = targets.len();
        let prototypes = if self.config.prototypes > 0 {
            kmeans(
                &good_rows,
                d,
                self.config.prototypes,
                PROTOTYPE_ROWS,
                self.config.prototype_seed.unwrap_or(self.config.seed) ^ 0xC3A7,
            )
        } else {
            Vec::new()
        };
        drop(good_rows);
        // The distances to the prototypes are computed batch by batch as the head trains, not
        // held beside the rows (they would more than double the rows' memory).
        let k_protos = prototypes.len() / d.max(1);
        let protos = (k_protos > 0).then(|| {
            Tensor::<2>::from_data(
                TensorData::new(prototypes.clone(), [k_protos, d]),
                &self.device,
            )
        });
        for t in &mut targets {
            *t /= scale;
        }
        let weights = match self.config.loss_weights {
            LossWeights::Uniform => None,
            LossWeights::SqrtInverse => Some(bin_weights(&targets)),
        };
        // The weights' bins are in units of the scale; the head regresses the transformed
        // targets.
        let transform = self.config.target_transform;
        for t in &mut targets {
            *t = transform.forward(*t);
        }
        // With the skip, the head regresses what the nearest prototype's distance (times its
        // least-squares slope, never negative) leaves of the targets.
        let skip = match (&protos, self.config.nearest_skip) {
            (Some(p), true) => {
                let nearest = nearest_distances(&rows, d, p, &self.device)?;
                let slope = least_squares_slope(&nearest, &targets).max(0.0);
                for (t, x) in targets.iter_mut().zip(&nearest) {
                    *t -= slope * x;
                }
                slope
            }
            _ => 0.0,
        };

        let moments = if self.config.standardise_inputs {
            Some(InputMoments::of(&rows, d, protos.as_ref(), &self.device)?)
        } else {
            None
        };

        // 3. The heads, one after the other, by mean squared error.
        let mut dims = vec![d + k_protos];
        dims.extend(&self.config.hidden);
        dims.push(1);
        let ad = self.device.clone().autodiff();
        let heads_n = self.config.heads;
        let epochs = self.config.epochs;
        let mut losses = Vec::with_capacity(heads_n * epochs);
        let mut callback = self.on_epoch.take();
        let total_steps = epochs * n.div_ceil(self.config.patch_batch);
        let first_averaged = epochs + 1 - self.config.average_epochs;
        // Epochs of the distillation members fitted before this one.
        let first_epoch = self.round.0 * heads_n * epochs;
        let mut heads = Vec::with_capacity(heads_n);
        let result = (|| {
            for h in 0..heads_n {
                // Head 0 keeps the seeds of a one-head student, so `heads = 1` is the model
                // trained before the option, bit for bit.
                let offset = (h as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut head = Mlp::new(
                    &dims,
                    (self.config.seed ^ 0x57D3_0000).wrapping_add(offset),
                    &ad,
                );
                let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
                let mut shuffle = Xoshiro256PlusPlus::seed_from_u64(
                    (self.config.seed ^ 0x5EED).wrapping_add(offset),
                );
                let mut idx: Vec<usize> = if self.config.bootstrap {
                    // Whole images: a sample's rows are `cells` consecutive rows.
                    let cells = (grid.0 * grid.1).max(1);
                    let samples = n / cells;
                    let mut draw = Xoshiro256PlusPlus::seed_from_u64(
                        (self.config.seed ^ 0xB007_5742).wrapping_add(offset),
                    );
                    (0..samples)
                        .flat_map(|_| {
                            let s = draw.random_range(0..samples);
                            s * cells..(s + 1) * cells
                        })
                        .collect()
                } else {
                    (0..n).collect()
                };
                let mut step = 0;
                // Running sum of the head's weights at the ends of the averaged epochs (f64,
                // so the mean does not depend on how many epochs are summed in f32).
                let mut weight_sum: Vec<f64> = Vec::new();
                for epoch in 1..=epochs {
                    let te = Instant::now();
                    idx.shuffle(&mut shuffle);
                    let mut total = 0.0;
                    for b in idx.chunks(self.config.patch_batch) {
                        let m = b.len();
                        let mut x = Vec::with_capacity(m * d);
                        let mut y = Vec::with_capacity(m);
                        for &i in b {
                            x.extend_from_slice(&rows[i * d..(i + 1) * d]);
                            y.push(targets[i]);
                        }
                        let w = weights.as_ref().map(|table| {
                            y.iter().map(|&t| weight_of(table, t)).collect::<Vec<_>>()
                        });
                        let mut x = match &protos {
                            Some(p) => read_f32(with_radial(
                                Tensor::<2>::from_data(TensorData::new(x, [m, d]), &self.device),
                                p,
                            ))?,
                            None => x,
                        };
                        if let Some(moments) = &moments {
                            moments.standardise(&mut x);
                        }
                        let xt = Tensor::<2>::from_data(TensorData::new(x, [m, d + k_protos]), &ad);
                        let yt = Tensor::<2>::from_data(TensorData::new(y, [m, 1]), &ad);
                        let diff = head.forward(xt) - yt;
                        let squared = diff.clone() * diff;
                        let loss = match w {
                            Some(w) => (squared
                                * Tensor::<2>::from_data(TensorData::new(w, [m, 1]), &ad))
                            .mean(),
                            None => squared.mean(),
                        };
                        let value = scalar(loss.clone().inner())?;
                        if !value.is_finite() {
                            return Err(RegressError::Diverged {
                                loss: value,
                                epoch: first_epoch + h * epochs + epoch,
                            });
                        }
                        total += value * m as f64;
                        let grads = GradientsParams::from_grads(loss.backward(), &head);
                        let lr = self.config.lr_schedule.rate(
                            self.config.learning_rate,
                            step,
                            total_steps,
                        );
                        step += 1;
                        head = optim.step(lr, head, grads);
                    }
                    if self.config.average_epochs > 0 && epoch >= first_averaged {
                        let w = head.valid().to_flat()?;
                        weight_sum.resize(w.len(), 0.0);
                        for (s, v) in weight_sum.iter_mut().zip(w) {
                            *s += f64::from(v);
                        }
                    }
                    let loss = total / n.max(1) as f64;
                    losses.push(loss);
                    log::info!("student head {}: epoch {epoch}: loss {loss:.5}", h + 1);
                    if let Some(cb) = callback.as_mut() {
                        cb(&EpochReport {
                            epoch: first_epoch + h * epochs + epoch,
                            // The distilling student's `reported_epochs` (a member's
                            // own config has no members).
                            epochs: self.round.1 * heads_n * epochs,
                            loss,
                            seconds: te.elapsed().as_secs_f64(),
                        });
                    }
                }
                let head = head.valid();
                let head = if weight_sum.is_empty() {
                    head
                } else {
                    let count = self.config.average_epochs as f64;
                    let mean: Vec<f32> = weight_sum.iter().map(|s| (s / count) as f32).collect();
                    Mlp::from_flat(&dims, &mean, &self.device).ok_or_else(|| {
                        RegressError::Data(format!(
                            "{} averaged weights for a head of widths {dims:?}",
                            mean.len()
                        ))
                    })?
                };
                heads.push(match &moments {
                    Some(moments) => moments.fold_into(&head, &self.device)?,
                    None => head,
                });
            }
            Ok(())
        })();
        self.on_epoch = callback;
        result?;
        self.heads = heads;
        self.trained = Some(Trained {
            grid,
            image_size: size,
            scale,
            losses,
            teacher: teacher_name,
            images: (planes.len(), synthetic),
            prototypes,
            skip,
        });
        Ok(FitSummary {
            images: planes.len(),
            features: n,
            memory_rows: 0,
            extract_time,
            build_time: t1.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_found_bit_for_bit() {
        let a = vec![0.5f32, 1.0, -2.0];
        let b = vec![0.5f32, 1.0, 2.0];
        let c = vec![0.0f32, 1.0, -2.0];
        let minus_zero = vec![-0.0f32, 1.0, -2.0];
        let planes = vec![a.clone(), b.clone(), a, c, b, minus_zero];
        assert_eq!(first_identical(&planes), vec![0, 1, 0, 3, 1, 5]);
        assert!(first_identical(&[]).is_empty());
    }

    #[test]
    fn a_folded_standardisation_gives_the_head_on_raw_inputs() {
        let device = Device::default();
        // Rows of 3 columns on very different scales, and a constant one.
        let rows: Vec<f32> = (0..40)
            .flat_map(|i| {
                let t = i as f32;
                [t * 0.01 - 0.2, 50.0 + (t * 1.7).sin() * 30.0, 7.0]
            })
            .collect();
        let moments = InputMoments::of(&rows, 3, None, &device).unwrap();
        let mut x = rows.clone();
        moments.standardise(&mut x);
        for c in 0..2 {
            let col: Vec<f64> = x.iter().skip(c).step_by(3).map(|&v| f64::from(v)).collect();
            let mean = col.iter().sum::<f64>() / 40.0;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 40.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
                "{c}: {mean} {var}"
            );
        }
        // The constant column is shifted to 0, not divided by a zero spread.
        assert!(x.iter().skip(2).step_by(3).all(|&v| v == 0.0));
        let head = Mlp::new(&[3, 5, 1], 9, &device);
        let folded = moments.fold_into(&head, &device).unwrap();
        let on = |m: &Mlp, v: &[f32]| {
            read_f32(m.forward(Tensor::<2>::from_data(
                TensorData::new(v.to_vec(), [40, 3]),
                &device,
            )))
            .unwrap()
        };
        let (want, got) = (on(&head, &x), on(&folded, &rows));
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{a} {b}");
        }
        // Not the unfolded head on raw inputs.
        assert!(
            want.iter()
                .zip(on(&head, &rows))
                .any(|(a, b)| (a - b).abs() > 1e-2)
        );
    }

    #[test]
    fn log_targets_are_regressed_and_inverted_at_prediction() {
        for t in [0.0f32, 0.3, 1.0, 4.5, 60.0] {
            let y = TargetTransform::Log1p.forward(t);
            assert!((TargetTransform::Log1p.inverse(y) - t).abs() <= 1e-5 * (1.0 + t));
            assert_eq!(TargetTransform::Identity.forward(t), t);
        }
        // Negative targets regress as 0; a runaway output stays finite.
        assert_eq!(TargetTransform::Log1p.forward(-0.5), 0.0);
        assert!(TargetTransform::Log1p.inverse(1e6).is_finite());
        // A head that answers a constant y everywhere: the map is (exp(y) - 1) * scale under
        // log targets, y * scale under the identity.
        let image = probe_image();
        for (transform, want) in [
            (TargetTransform::Identity, 0.7 * 2.5),
            (TargetTransform::Log1p, 0.7f32.exp_m1() * 2.5),
        ] {
            let config = StudentConfig {
                target_transform: transform,
                ..probe_config()
            };
            let s = with_linear_head(&config, &image, |_| 0.0, 0.7);
            let p = s.predict_image(&image).unwrap();
            assert!(
                (p.score - want).abs() < 1e-5,
                "{transform}: {} vs {want}",
                p.score
            );
        }
    }

    #[test]
    fn head_outputs_do_not_depend_on_the_chunk() {
        // 2.5 chunks of rows through the radial features and a 3-layer head, against the same
        // operations on all rows at once.
        let device = Device::default();
        let (d, k) = (24, 8);
        let n = INFER_CHUNK * 5 / 2;
        let values = |len: usize, mul: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * mul) % 101) as f32 / 101.0 - 0.3)
                .collect()
        };
        let rows = values(n * d, 37);
        let prototypes = values(k * d, 53);
        let head = Mlp::new(&[d + k, 32, 16, 1], 5, &device);
        let chunked = head_outputs(
            std::slice::from_ref(&head),
            &rows,
            d,
            &prototypes,
            0.0,
            TargetTransform::Identity,
            &device,
        )
        .unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(rows, [n, d]), &device);
        let p = Tensor::<2>::from_data(TensorData::new(prototypes, [k, d]), &device);
        let whole = read_f32(head.forward(with_radial(x, &p))).unwrap();
        assert_eq!(chunked, whole);
    }

    #[test]
    fn several_heads_average_their_scaled_outputs() {
        // Two constant heads, y = 0.7 and y = 1.9: the map is the mean of the two heads' maps,
        // each transformed back before the mean (under log targets, not exp of the mean y).
        let image = probe_image();
        for (transform, want) in [
            (TargetTransform::Identity, (0.7 + 1.9) / 2.0 * 2.5),
            (
                TargetTransform::Log1p,
                (0.7f32.exp_m1() + 1.9f32.exp_m1()) / 2.0 * 2.5,
            ),
        ] {
            let config = StudentConfig {
                target_transform: transform,
                heads: 2,
                ..probe_config()
            };
            let mut s = with_linear_head(&config, &image, |_| 0.0, 0.7);
            let second = with_linear_head(&config, &image, |_| 0.0, 1.9);
            s.heads.extend(second.heads);
            let p = s.predict_image(&image).unwrap();
            assert!(
                (p.score - want).abs() < 1e-5 * want,
                "{transform}: {} vs {want}",
                p.score
            );
            assert!(
                p.map
                    .as_slice()
                    .iter()
                    .all(|v| (v - want).abs() < 1e-5 * want)
            );
        }
    }

    #[test]
    fn distillation_targets_are_the_members_mean_in_the_teachers_units() {
        // Two members with linear heads of their own scales: the target of a row is the mean
        // of (head output) * (member's scale), under either transform.
        let image = probe_image();
        for transform in [TargetTransform::Identity, TargetTransform::Log1p] {
            let config = StudentConfig {
                target_transform: transform,
                ..probe_config()
            };
            let mut s = with_linear_head(&config, &image, |j| 0.01 * (j % 3) as f32, 0.2);
            let other = with_linear_head(&config, &image, |j| -0.004 * (j % 5) as f32, 1.1);
            let member = |t: &ScoreStudent, scale: f32| Member {
                heads: t.heads.clone(),
                trained: Trained {
                    scale,
                    ..t.trained.clone().unwrap()
                },
            };
            let members = [member(&s, 2.0), member(&other, 0.5)];
            let batch = s.preprocessor.batch(std::slice::from_ref(&image)).unwrap();
            let (rows, grid) = s.patch_rows(&batch).unwrap();
            let d = rows.len() / (grid.0 * grid.1);
            let got = s.member_mean(&members, &rows, d).unwrap();
            assert_eq!(got.len(), grid.0 * grid.1);
            let row_out = |m: &Member, r: &[f32]| {
                let flat = m.heads[0].to_flat().unwrap();
                let y: f32 = r.iter().zip(&flat).map(|(x, w)| x * w).sum::<f32>() + flat[d];
                transform.inverse(y) * m.trained.scale
            };
            for (i, g) in got.iter().enumerate() {
                let r = &rows[i * d..(i + 1) * d];
                let want = (row_out(&members[0], r) + row_out(&members[1], r)) / 2.0;
                assert!(
                    (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{transform} row {i}: {g} vs {want}"
                );
            }
        }
        // The members' seeds are apart from one another and from the plain students' seeds.
        let seeds: Vec<u64> = (0..8).map(|m| member_seed(0, m)).collect();
        assert!(seeds.iter().all(|&x| x > 1 << 32));
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 8);
        assert_ne!(member_seed(0, 0), member_seed(1, 0));
    }

    #[test]
    fn the_grid_max_is_read_before_the_blur() {
        let image = probe_image();
        let config = StudentConfig {
            blur_sigma: 4.0,
            ..probe_config()
        };
        // A head that reads its first input column: the grid varies from cell to cell.
        let map_max = with_linear_head(&config, &image, |j| f32::from(j == 0), 0.0);
        let (rows, grid) = map_max
            .patch_rows(
                &map_max
                    .preprocessor
                    .batch(std::slice::from_ref(&image))
                    .unwrap(),
            )
            .unwrap();
        let d = rows.len() / (grid.0 * grid.1);
        let top = rows
            .iter()
            .step_by(d)
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
            * 2.5;
        let p = map_max.predict_image(&image).unwrap();
        assert!(
            p.score < top - 1e-3,
            "the blur lowers the map's peak: {} vs {top}",
            p.score
        );
        assert_eq!(p.score, p.map.max());
        let config = StudentConfig {
            image_score: ImageScore::GridMax,
            ..config
        };
        let grid_max = with_linear_head(&config, &image, |j| f32::from(j == 0), 0.0);
        let q = grid_max.predict_image(&image).unwrap();
        assert!(
            (q.score - top).abs() <= 1e-5 * top.abs(),
            "{} vs {top}",
            q.score
        );
        assert_eq!(q.map, p.map, "the map is the same");
        let batch = grid_max
            .preprocessor
            .batch(std::slice::from_ref(&image))
            .unwrap();
        let ScoreGrids { grids, size: g } = grid_max.score_grids(&batch).unwrap();
        assert_eq!(grids.len(), 1);
        assert_eq!(grids[0].len(), g.0 * g.1);
        assert_eq!(
            grids[0].iter().copied().fold(f32::NEG_INFINITY, f32::max),
            q.score
        );
    }

    #[test]
    fn a_smaller_backbone_size_gives_a_coarser_grid_and_a_full_size_map() {
        let image = probe_image();
        let full = with_linear_head(&probe_config(), &image, |j| f32::from(j == 0), 0.0);
        let config = StudentConfig {
            backbone_size: Some((32, 32)),
            ..probe_config()
        };
        let half = with_linear_head(&config, &image, |j| f32::from(j == 0), 0.0);
        let batch = half
            .preprocessor
            .batch(std::slice::from_ref(&image))
            .unwrap();
        assert_eq!(
            (batch.height(), batch.width()),
            (64, 64),
            "the teacher's pixels"
        );
        let (_, grid) = half.patch_rows(&batch).unwrap();
        let (_, full_grid) = full.patch_rows(&batch).unwrap();
        assert_eq!((grid.0 * 2, grid.1 * 2), full_grid);
        // The features are those of the resized images.
        let (rows, _) = full.patch_rows(&batch.resized((32, 32)).unwrap()).unwrap();
        assert_eq!(half.patch_rows(&batch).unwrap().0, rows);
        let p = half.predict_image(&image).unwrap();
        assert_eq!((p.map.width(), p.map.height()), (64, 64));
        let estimate = config.check().unwrap().estimate(4).unwrap();
        assert_eq!(estimate.grid, grid);
        let tiny = StudentConfig {
            backbone_size: Some((8, 8)),
            ..probe_config()
        };
        assert!(matches!(
            tiny.check(),
            Err(RegressError::InvalidConfig {
                name: "backbone_size",
                ..
            })
        ));
    }

    fn probe_image() -> ad_core::RgbImage {
        ad_core::RgbImage::from_fn(64, 64, |x, y| [x as u8 * 3, y as u8 * 2, 90])
    }

    fn probe_config() -> StudentConfig {
        StudentConfig {
            weights: Weights::Random { seed: 0 },
            preprocess: PreprocessConfig::default().with_size(64, 64),
            prototypes: 0,
            ..Default::default()
        }
    }

    /// A fitted-looking student whose head is one linear layer: input column `j` weighted by
    /// `weight(j)`, plus `bias`; scale 2.5.
    fn with_linear_head(
        config: &StudentConfig,
        image: &ad_core::RgbImage,
        weight: impl Fn(usize) -> f32,
        bias: f32,
    ) -> ScoreStudent {
        let device = Device::default();
        let mut s = ScoreStudent::new(config, None, &device).unwrap();
        let batch = s.preprocessor.batch(std::slice::from_ref(image)).unwrap();
        let (rows, grid) = s.patch_rows(&batch).unwrap();
        let d = rows.len() / (grid.0 * grid.1);
        let mut flat: Vec<f32> = (0..d).map(weight).collect();
        flat.push(bias);
        s.heads = Mlp::from_flat(&[d, 1], &flat, &device)
            .into_iter()
            .collect();
        s.trained = Some(Trained {
            grid,
            image_size: (64, 64),
            scale: 2.5,
            losses: vec![],
            teacher: "none".into(),
            images: (1, 0),
            prototypes: vec![],
            skip: 0.0,
        });
        s
    }

    #[test]
    fn the_skip_is_the_nearest_prototype_and_its_least_squares_slope() {
        let x = [0.0f32, 1.0, 2.0, 3.0];
        let y = [1.0f32, 3.0, 5.0, 7.0];
        assert!((least_squares_slope(&x, &y) - 2.0).abs() < 1e-6);
        assert_eq!(least_squares_slope(&[2.0; 4], &y), 0.0);
        assert!(least_squares_slope(&x, &[7.0, 5.0, 3.0, 1.0]) < 0.0);
        let device = Device::default();
        // Rows (3, 4) and (0, 1) against prototypes (0, 0) and (3, 0): nearest 4 and 1.
        let protos = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 3.0, 0.0], [2, 2]),
            &device,
        );
        let near = nearest_distances(&[3.0, 4.0, 0.0, 1.0], 2, &protos, &device).unwrap();
        assert!(
            (near[0] - 4.0).abs() < 1e-5 && (near[1] - 1.0).abs() < 1e-5,
            "{near:?}"
        );
    }

    #[test]
    fn pooling_averages_or_takes_the_maximum_of_cells() {
        let map: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mean = TargetPool::Mean;
        assert_eq!(
            pool_to_grid(&map, (4, 4), (2, 2), mean),
            vec![2.5, 4.5, 10.5, 12.5]
        );
        assert_eq!(pool_to_grid(&map, (4, 4), (4, 4), mean), map);
        assert_eq!(
            pool_to_grid(&map, (4, 4), (2, 2), TargetPool::Max),
            vec![5.0, 7.0, 13.0, 15.0]
        );
        assert_eq!(pool_to_grid(&map, (4, 4), (4, 4), TargetPool::Max), map);
        assert_eq!("max".parse::<TargetPool>(), Ok(TargetPool::Max));
        assert!("median".parse::<TargetPool>().is_err());
    }

    #[test]
    fn rare_targets_weigh_more_by_the_inverse_square_root_of_their_frequency() {
        // One bin only: every weight is 1.
        let same = vec![0.51f32; 10];
        let table = bin_weights(&same);
        assert!(
            same.iter()
                .all(|&t| (weight_of(&table, t) - 1.0).abs() < 1e-6)
        );
        // 100 targets near 0.5 and one at 5.0, 90 bins apart (beyond the kernel): the rare one
        // weighs sqrt(100) = 10 times as much, and the mean weight over the targets is 1.
        let mut t = vec![0.51f32; 100];
        t.push(5.01);
        let table = bin_weights(&t);
        let (common, rare) = (weight_of(&table, 0.51), weight_of(&table, 5.01));
        assert!((rare / common - 10.0).abs() < 1e-4, "{common} {rare}");
        let mean: f32 = t.iter().map(|&v| weight_of(&table, v)).sum::<f32>() / t.len() as f32;
        assert!((mean - 1.0).abs() < 1e-5, "{mean}");
        // Neighbouring bins share their frequencies through the smoothing: a lone target one
        // bin above a crowded one weighs less than a lone target far from it.
        let mut near = vec![0.51f32; 100];
        near.push(0.56);
        let near_table = bin_weights(&near);
        assert!(weight_of(&near_table, 0.56) / weight_of(&near_table, 0.51) < rare / common / 2.0);
        assert_eq!("sqrt-inverse".parse(), Ok(LossWeights::SqrtInverse));
        assert!("inverse".parse::<LossWeights>().is_err());
    }

    #[test]
    fn config_checks() {
        assert!(StudentConfig::default().check().is_ok());
        for bad in [
            StudentConfig {
                backbone_size: Some((512, 512)),
                ..Default::default()
            },
            StudentConfig {
                backbone_size: Some((0, 256)),
                ..Default::default()
            },
            StudentConfig {
                folds: 1,
                ..Default::default()
            },
            StudentConfig {
                patch_size: 2,
                ..Default::default()
            },
            StudentConfig {
                heads: 0,
                ..Default::default()
            },
            StudentConfig {
                heads: 17,
                ..Default::default()
            },
            StudentConfig {
                splits: 0,
                ..Default::default()
            },
            StudentConfig {
                splits: 9,
                ..Default::default()
            },
            StudentConfig {
                nearest_skip: true,
                prototypes: 0,
                ..Default::default()
            },
            StudentConfig {
                feature_noise: -0.1,
                ..Default::default()
            },
            StudentConfig {
                feature_noise: f32::NAN,
                ..Default::default()
            },
            StudentConfig {
                feature_noise: 9.0,
                ..Default::default()
            },
            StudentConfig {
                feature_noise_radius: 0.0,
                ..Default::default()
            },
            StudentConfig {
                feature_noise_radius: f32::INFINITY,
                ..Default::default()
            },
            StudentConfig {
                feature_noise_radius: 65.0,
                ..Default::default()
            },
            StudentConfig {
                average_epochs: 21,
                ..Default::default()
            },
            StudentConfig {
                hidden: vec![8, 0],
                ..Default::default()
            },
            StudentConfig {
                teacher: serde_json::json!("patchcore"),
                ..Default::default()
            },
            StudentConfig {
                prototypes: MAX_PROTOTYPES + 1,
                ..Default::default()
            },
            StudentConfig {
                anomalies: Vec::new(),
                ..Default::default()
            },
            StudentConfig {
                anomalies: vec![SyntheticAnomaly::Spot, SyntheticAnomaly::Spot],
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        // No synthetic copies need no kinds.
        let none = StudentConfig {
            synthetic_per_image: 0,
            anomalies: Vec::new(),
            ..Default::default()
        };
        assert!(none.check().is_ok());
    }

    #[test]
    fn the_estimate_counts_the_copies_but_not_their_planes() {
        let est = |c: StudentConfig| c.check().and_then(|c| c.estimate(10)).unwrap();
        // The rows of the images alone first (feature-space anomalies off).
        let base = StudentConfig {
            feature_noise: 0.0,
            ..Default::default()
        };
        let with = est(base.clone());
        let without = est(StudentConfig {
            prototypes: 0,
            ..base.clone()
        });
        // Ten good images and three copies of each, on a 32 x 32 grid (256 px, stride 8).
        assert_eq!(with.memory_rows, 10 * 4 * 32 * 32);
        // The distances to the prototypes are made per training batch: no memory of their own.
        assert_eq!(with.memory_rows, without.memory_rows);
        assert_eq!(with.peak_bytes, without.peak_bytes);
        let nine = est(StudentConfig {
            synthetic_per_image: 9,
            ..base.clone()
        });
        assert_eq!(nine.memory_rows, 10 * 10 * 32 * 32);
        // Six more copies of ten images: their rows (features, target and index) only, not
        // their planes.
        let d = with.feature_dim as u64;
        let more = (nine.memory_rows - with.memory_rows) as u64 * ((d + 1) * 4 + 8);
        assert_eq!(nine.peak_bytes - with.peak_bytes, more);
        // Two fold splits: every good image and its copies twice, and the good rows twice.
        let two = est(StudentConfig {
            splits: 2,
            ..base.clone()
        });
        assert_eq!(two.memory_rows, 2 * with.memory_rows);
        let good = 10 * 32 * 32 * (d + 1) * 4;
        assert_eq!(
            two.peak_bytes - with.peak_bytes,
            with.memory_rows as u64 * ((d + 1) * 4 + 8) + good
        );
        // The default moves a quarter of the good images' rows: ceil(10 * 0.25) images' worth.
        assert_eq!(
            est(StudentConfig::default()).memory_rows,
            with.memory_rows + 3 * 32 * 32
        );
    }
}
