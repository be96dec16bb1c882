//! Every detector of the workspace, by name: the one place a new detector is registered.
//!
//! [`DetectorConfig`] is the schema of a model's config file (`model = "patchcore"` plus that
//! detector's parameters), [`DetectorConfig::build`] makes a fresh detector, [`load`] opens any
//! model file by the magic bytes that start it, and [`inspect`] reads a model file's header
//! without building anything (no backbone weights needed).
//!
//! A new detector crate adds one variant to [`DetectorConfig`] and one entry to [`MODELS`].

use std::path::Path;

use ad_backbone::BackboneKind;
use ad_cflow::{Cflow, CflowConfig};
use ad_core::ensemble::{Ensemble, EnsembleParams, MemberRole};
use ad_core::tiling::{Tiled, TilingConfig};
use ad_core::{DetectorError, DynDetector};
use ad_padim::{Padim, PadimConfig};
use ad_patchcore::{PatchCore, PatchcoreConfig};
use ad_regress::{ClassifierConfig, ScoreStudent, StudentConfig, SupervisedClassifier};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The advice of [`Error::MemoryLimit`] for detectors without a lever of their own.
const GENERIC_MEMORY_REMEDY: &str = "lower --image-size or --batch-size, or fit fewer images";

/// A detector and its parameters, tagged by `model` (the schema of config files).
///
/// ```toml
/// model = "patchcore"
/// backbone = "efficientnet-lite0"
/// num_neighbors = 9
/// [coreset]
/// size = { ratio = 0.1 }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum DetectorConfig {
    /// PatchCore (Roth et al., CVPR 2022).
    Patchcore(PatchcoreConfig),
    /// PaDiM (Defard et al., ICPR 2020 workshops).
    Padim(PadimConfig),
    /// CFLOW-AD (Gudovskiy et al., WACV 2022).
    Cflow(CflowConfig),
    /// A per-patch MLP regressing a teacher's anomaly maps (`teacher`: another detector's
    /// config, PatchCore by default; it sees the student's preprocessing).
    Student(StudentConfig),
    /// A supervised defect classifier with CAM maps: it needs labelled defects
    /// (`ad supervised`); fitting it on good images alone is refused.
    Classifier(ClassifierConfig),
    /// Any of the above run tile by tile on large images ([`ad_core::tiling`]).
    Tiled(TiledConfig),
    /// Several of the above on the same images, their maps standardised on held-out good
    /// images and averaged ([`ad_core::ensemble`]).
    Ensemble(EnsembleConfig),
}

/// Several detectors on the same images ([`ad_core::ensemble::Ensemble`]): every member is
/// measured on `holdout` of the good images (fitted on the rest), then fitted on all of them;
/// a prediction averages the members' maps, each standardised by its mean and standard
/// deviation on the held-out images. The members see the ensemble's `preprocess`; a member
/// that sets its own `resize` (and nothing else: same mean and std, no crop) sees the
/// ensemble's images resized to it, and its map is resized back (a multi-resolution ensemble).
///
/// ```toml
/// model = "ensemble"
/// [calibration]
/// holdout = 0.25
/// seed = 7
/// # folds = 4                # cross-fitting: every good image measured, fold by fold
/// # score_spread = "maxima"  # score candidates divided by their maxima's spread
/// [[members]]
/// model = "patchcore"
/// [[members]]
/// model = "padim"
/// [[members]]              # the same images at half resolution, for context
/// model = "patchcore"
/// preprocess = { resize = [128, 128] }
/// [[score_members]]        # counts for the image score only
/// model = "patchcore"
/// backbone = "efficientnet-lite1"
/// preprocess = { resize = [128, 128] }
/// # [[pixel_members]]      # counts for the map only (localisation)
/// # model = "padim"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    /// How the members' scales are measured (the held-out fraction and its seed, or
    /// cross-fitting in folds) and what score candidates are divided by.
    #[serde(default)]
    pub calibration: EnsembleParams,
    /// Preprocessing of every member.
    #[serde(default)]
    pub preprocess: ad_core::PreprocessConfig,
    /// The members whose standardised maps are averaged (at least one; PatchCore, PaDiM, CFlow
    /// or a student).
    pub members: Vec<DetectorConfig>,
    /// Members that count for the image score only ([`MemberRole::Score`]): their image scores,
    /// standardised on the held-out images, compete with the averaged map's standardised
    /// maximum, and the largest decides. For context models whose maps are too coarse to
    /// outline a defect (e.g. a PatchCore at half resolution). With `members`, at least two in
    /// all; none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub score_members: Vec<DetectorConfig>,
    /// Members that count for the map only ([`MemberRole::Pixel`]): their standardised maps
    /// are averaged into the returned map with the map members', but the image score is the
    /// map and score members' alone. For a model that outlines defects well but ranks images
    /// worse (e.g. PaDiM beside a PatchCore). None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pixel_members: Vec<DetectorConfig>,
}

impl Default for EnsembleConfig {
    /// The selection protocol's choice since 2026-12-03 (validation split with faint veins,
    /// three validation seeds; docs/results.md "Faint veins", "Seeds"; within its 4x rule):
    /// the `accurate` PatchCore (EfficientNet-Lite0, strides 4 and 8) for the map and the
    /// image score, an EfficientNet-Lite1 PatchCore (its default taps) at 128 px for the image
    /// score only (the context of much of the part per patch: veins), and PaDiM
    /// (EfficientNet-Lite0, its defaults) for the map only (localisation); since 2026-12-05
    /// every image brought to ImageNet's mean luma first (`[preprocess] brightness`, which
    /// every member sees; docs/results.md "Brightness normalisation").
    fn default() -> Self {
        let mut map = PatchcoreConfig::default();
        ACCURATE(&mut map);
        let mut context = PatchcoreConfig {
            backbone: BackboneKind::EfficientNetLite1,
            ..PatchcoreConfig::default()
        };
        context.preprocess = context.preprocess.clone().with_size(128, 128);
        let mut ensemble = Self {
            score_members: vec![DetectorConfig::Patchcore(context)],
            pixel_members: vec![DetectorConfig::Padim(PadimConfig::default())],
            ..Self::of(vec![DetectorConfig::Patchcore(map)])
        };
        ensemble.preprocess.brightness = PRESET_BRIGHTNESS;
        ensemble
    }
}

impl EnsembleConfig {
    /// An ensemble of `members` with the default hold-out; the first member's preprocessing
    /// becomes the ensemble's.
    pub fn of(members: Vec<DetectorConfig>) -> Self {
        let preprocess = members
            .first()
            .map(|m| m.preprocess().clone())
            .unwrap_or_default();
        Self {
            calibration: EnsembleParams::default(),
            preprocess,
            members,
            score_members: Vec::new(),
            pixel_members: Vec::new(),
        }
    }

    /// The members' configs with the ensemble's preprocessing (a member that sets only its own
    /// `resize` keeps it: it works at that resolution), the map members first, then the score
    /// members, then the pixel members, each with its role; a member that sets another normalisation or a crop, or
    /// that cannot be a member (a classifier, a tiled model, an ensemble), is refused.
    pub fn members(&self) -> Result<Vec<(DetectorConfig, MemberRole)>, Error> {
        let bad = |reason: String| {
            Error::Core(ad_core::CoreError::InvalidParameter {
                name: "ensemble",
                reason,
            })
        };
        if self.members.is_empty() {
            return Err(bad("needs at least one map member ([[members]])".into()));
        }
        let all = self.members.len() + self.score_members.len() + self.pixel_members.len();
        if all < 2 {
            return Err(bad(format!("needs at least 2 members, got {all}")));
        }
        self.members
            .iter()
            .map(|m| (m, MemberRole::Map))
            .chain(self.score_members.iter().map(|m| (m, MemberRole::Score)))
            .chain(self.pixel_members.iter().map(|m| (m, MemberRole::Pixel)))
            .enumerate()
            .map(|(j, (m, role))| {
                if matches!(
                    m,
                    DetectorConfig::Classifier(_)
                        | DetectorConfig::Tiled(_)
                        | DetectorConfig::Ensemble(_)
                ) {
                    return Err(bad(format!(
                        "member {j}: a {} cannot be an ensemble member (use patchcore, padim, \
                         cflow or student)",
                        m.name()
                    )));
                }
                let own = m.preprocess();
                let default = ad_core::PreprocessConfig::default();
                let mut m = m.clone();
                if *own == default || *own == self.preprocess {
                    *m.preprocess_mut() = self.preprocess.clone();
                } else if own.mean != self.preprocess.mean
                    || own.std != self.preprocess.std
                    || own
                        .brightness
                        .is_some_and(|b| Some(b) != self.preprocess.brightness)
                    || own.center_crop.is_some()
                {
                    return Err(bad(format!(
                        "member {j} sets its own preprocess {own:?}; a member may set only its \
                         resize (it then sees the ensemble's images at that size): set the \
                         normalisation, brightness and crop in the ensemble's [preprocess]"
                    )));
                } else {
                    // A member that sets only its resize sees the ensemble's brightness.
                    m.preprocess_mut().brightness = self.preprocess.brightness;
                }
                Ok((m, role))
            })
            .collect()
    }
}

/// A detector run tile by tile: the whole image is preprocessed by `preprocess` (e.g. resized
/// to 1024 x 1024), cut into `tiling.tile` tiles, and `detector` runs on every tile (its own
/// preprocessing is derived: resize to the tile size, no crop, the same normalisation).
///
/// ```toml
/// model = "tiled"
/// [tiling]
/// tile = [256, 256]
/// stride = [224, 224]
/// [preprocess]
/// resize = [1024, 1024]
/// [detector]
/// model = "patchcore"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiledConfig {
    /// Tile size, stride and whether each position has its own model.
    #[serde(default)]
    pub tiling: TilingConfig,
    /// Preprocessing of the whole image, before it is cut into tiles.
    #[serde(default = "tiled_preprocess")]
    pub preprocess: ad_core::PreprocessConfig,
    /// The detector run on every tile.
    pub detector: Box<DetectorConfig>,
}

fn tiled_preprocess() -> ad_core::PreprocessConfig {
    ad_core::PreprocessConfig::default().with_size(512, 512)
}

impl Default for TiledConfig {
    /// 512 px images in four 256 px tiles, one PatchCore for all of them.
    fn default() -> Self {
        Self {
            tiling: TilingConfig::default(),
            preprocess: tiled_preprocess(),
            detector: Box::new(DetectorConfig::Patchcore(PatchcoreConfig::default())),
        }
    }
}

impl TiledConfig {
    /// Wraps `detector` for tiling, keeping its preprocessing for the whole image (its own
    /// becomes the tile's, derived by [`TiledConfig::member`]).
    pub fn wrap(detector: DetectorConfig, tiling: TilingConfig) -> Self {
        let preprocess = detector.preprocess().clone();
        let mut detector = detector;
        *detector.preprocess_mut() = ad_core::PreprocessConfig::default();
        Self {
            tiling,
            preprocess,
            detector: Box::new(detector),
        }
    }

    /// The tile detector's config, with the preprocessing the tiles need: resize to the
    /// tile size (a no-op), no crop, the whole image's normalisation. A tile detector that sets
    /// another preprocessing itself, or that is tiled again, is refused.
    pub fn member(&self) -> Result<DetectorConfig, Error> {
        let bad = |reason: String| {
            Error::Core(ad_core::CoreError::InvalidParameter {
                name: "tiling",
                reason,
            })
        };
        if matches!(*self.detector, DetectorConfig::Tiled(_)) {
            return Err(bad("a tiled detector cannot be tiled again".into()));
        }
        let derived = ad_core::PreprocessConfig {
            resize: self.tiling.tile,
            center_crop: None,
            mean: self.preprocess.mean,
            std: self.preprocess.std,
            brightness: self.preprocess.brightness,
        };
        let own = self.detector.preprocess();
        if *own != ad_core::PreprocessConfig::default() && *own != derived {
            return Err(bad(format!(
                "the tile detector sets its own preprocess {own:?}; set [preprocess] on the \
                 tiled model (the whole image) and the tile size in [tiling]"
            )));
        }
        let mut member = (*self.detector).clone();
        *member.preprocess_mut() = derived;
        Ok(member)
    }

    /// Tiles per image.
    pub fn tiles(&self) -> Result<usize, Error> {
        Ok(self.tiling.layout(self.preprocess.output_size())?.len())
    }
}

/// One registered detector: its name, model-file magic, format version and file extension.
#[derive(Clone, Copy, Debug)]
pub struct ModelKind {
    /// Name used by `model = "..."` and `--model`.
    pub name: &'static str,
    /// The 8 bytes its model files start with.
    pub magic: &'static [u8; 8],
    /// The file format version this build reads and writes.
    pub format_version: u32,
    /// Conventional file extension.
    pub extension: &'static str,
    /// One line for `--help`.
    pub summary: &'static str,
}

/// Every registered detector.
pub const MODELS: [ModelKind; 7] = [
    ModelKind {
        name: "patchcore",
        magic: ad_patchcore::MAGIC,
        format_version: ad_patchcore::FORMAT_VERSION,
        extension: "patchcore",
        summary: "PatchCore: coreset memory bank of patch features, nearest-neighbour scores",
    },
    ModelKind {
        name: "padim",
        magic: ad_padim::MAGIC,
        format_version: ad_padim::FORMAT_VERSION,
        extension: "padim",
        summary: "PaDiM: per-position Gaussians, Mahalanobis distance",
    },
    ModelKind {
        name: "cflow",
        magic: ad_cflow::MAGIC,
        format_version: ad_cflow::FORMAT_VERSION,
        extension: "cflow",
        summary: "CFLOW-AD: conditional normalizing flows trained on patch features",
    },
    ModelKind {
        name: "student",
        magic: ad_regress::STUDENT_MAGIC,
        format_version: ad_regress::FORMAT_VERSION,
        extension: "student",
        summary: "Score student: an MLP per patch regressing a teacher's (PatchCore's) maps, no memory bank",
    },
    ModelKind {
        name: "classifier",
        magic: ad_regress::CLASSIFIER_MAGIC,
        format_version: ad_regress::FORMAT_VERSION,
        extension: "classifier",
        summary: "Supervised classifier with CAM maps (needs labelled defects: `ad supervised`)",
    },
    ModelKind {
        name: "tiled",
        magic: ad_core::tiling::MAGIC,
        format_version: ad_core::tiling::FORMAT_VERSION,
        extension: "tiled",
        summary: "Any detector run tile by tile on large images (overlapping tiles, maps stitched)",
    },
    ModelKind {
        name: "ensemble",
        magic: ad_core::ensemble::MAGIC,
        format_version: ad_core::ensemble::FORMAT_VERSION,
        extension: "ensemble",
        summary: "Several detectors, maps standardised on held-out good images and averaged",
    },
];

/// The registered detector called `name` (case-insensitive).
pub fn model_kind(name: &str) -> Result<ModelKind, Error> {
    MODELS
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
        })
}

impl DetectorConfig {
    /// The default parameters of the detector called `name` (`ad`'s defaults): the library's
    /// ([`Self::library_default`]), with every image brought to ImageNet's mean luma
    /// ([`ad_core::IMAGENET_LUMA`]) for PatchCore, PaDiM, CFlow, the student and the tiled
    /// model (on the whole image, before it is cut into tiles). The selection protocol chose
    /// that for each of the three detectors on 2026-12-05 (over three validation seeds,
    /// PatchCore +0.038, PaDiM +0.032, CFlow +0.043, each more than nine standard errors) and
    /// for the tiled model (+0.0052, 2.0 standard errors: the narrowest pass); the student,
    /// whose teacher takes its preprocessing, was measured with it within a point of its
    /// teacher on bottle and the 12 PIPED classes (docs/results.md, "Brightness
    /// normalisation"). The ensemble sets its own level on its [`EnsembleConfig::default`];
    /// the classifier keeps the library's.
    pub fn default_for(name: &str) -> Result<Self, Error> {
        let mut c = Self::library_default(name)?;
        if matches!(
            c,
            Self::Patchcore(_)
                | Self::Padim(_)
                | Self::Cflow(_)
                | Self::Student(_)
                | Self::Tiled(_)
        ) {
            c.preprocess_mut().brightness = PRESET_BRIGHTNESS;
        }
        Ok(c)
    }

    /// The library's default parameters of the detector called `name` (each crate's
    /// `Default`: the references' preprocessing, which the PyTorch parity tests compare with).
    pub fn library_default(name: &str) -> Result<Self, Error> {
        Ok(match model_kind(name)?.name {
            "patchcore" => Self::Patchcore(PatchcoreConfig::default()),
            "padim" => Self::Padim(PadimConfig::default()),
            "student" => Self::Student(StudentConfig::default()),
            "classifier" => Self::Classifier(ClassifierConfig::default()),
            "tiled" => Self::Tiled(TiledConfig::default()),
            "ensemble" => Self::Ensemble(EnsembleConfig::default()),
            _ => Self::Cflow(CflowConfig::default()),
        })
    }

    /// A named preset of the detector called `model`: `fast` (the defaults) or `accurate`,
    /// the choices of the validation protocol of `examples/select_preset.rs` (docs/results.md
    /// "Presets"): for PatchCore the best single PatchCore (EfficientNet-Lite0, strides 4 and
    /// 8); for an ensemble (whose only preset it is) the protocol's best candidate, that
    /// PatchCore with a 128-px Lite1 PatchCore for the image score and PaDiM for the map (the
    /// ensemble's defaults; about 3.5x the fast preset's predict time);
    /// for a student, a Lite1 PatchCore at strides 4 and 8 (the accurate preset until
    /// 2026-12-03; its map unblurred) as the teacher and the student on its backbone and taps,
    /// with twelve synthetic copies per good image (measured on the test splits, not chosen
    /// by the protocol: docs/results.md "Score student").
    pub fn preset(model: &str, preset: &str) -> Result<Self, Error> {
        let base = Self::default_for(model)?;
        match (preset.to_ascii_lowercase().as_str(), base) {
            ("accurate", Self::Patchcore(mut c)) => {
                ACCURATE(&mut c);
                Ok(Self::Patchcore(c))
            }
            ("accurate", Self::Ensemble(c)) => Ok(Self::Ensemble(c)),
            ("accurate", Self::Student(mut c)) => {
                // The Lite1 PatchCore at strides 4 and 8 (the accurate preset it was measured
                // with) as the teacher, the student on its backbone and taps (written as what
                // differs from the defaults, as a user's config would).
                let mut teacher = PatchcoreConfig::default();
                LITE1_STRIDES_4_8(&mut teacher);
                c.backbone = teacher.backbone;
                c.taps = teacher.taps.clone();
                // Brightness normalisation as the fast student (from its defaults): measured
                // with it, student and teacher, within the point of the teacher on bottle and
                // every PIPED class (docs/results.md, "The accurate student with brightness").
                // Four copies of each kind of synthetic anomaly: the stride-4 student's defect
                // scores are what the copies teach (docs/results.md, "More synthetic copies").
                c.synthetic_per_image = 12;
                // The teacher's maps unblurred: the student regresses its patch scores, whose
                // maximum ranks images as the teacher's own score does (a blurred map's maximum
                // ranks small defects lower; docs/results.md, "Unblurred targets").
                c.teacher = serde_json::json!({
                    "model": "patchcore",
                    "backbone": teacher.backbone,
                    "taps": teacher.taps,
                    "blur_sigma": 0.0,
                });
                Ok(Self::Student(c))
            }
            ("fast", base) if !matches!(base, Self::Ensemble(_)) => Ok(base),
            (p, base) => Err(Error::UnknownPreset {
                preset: p.to_string(),
                model: base.name(),
                known: match base {
                    Self::Patchcore(_) | Self::Student(_) => "fast, accurate",
                    Self::Ensemble(_) => "accurate",
                    _ => "fast",
                },
            }),
        }
    }

    /// The detector's name (`"patchcore"`, `"padim"`).
    pub fn name(&self) -> &'static str {
        self.kind().name
    }

    /// The registry entry of this detector.
    pub fn kind(&self) -> ModelKind {
        match self {
            Self::Patchcore(_) => MODELS[0],
            Self::Padim(_) => MODELS[1],
            Self::Cflow(_) => MODELS[2],
            Self::Student(_) => MODELS[3],
            Self::Classifier(_) => MODELS[4],
            Self::Tiled(_) => MODELS[5],
            Self::Ensemble(_) => MODELS[6],
        }
    }

    /// Validates every parameter (nothing is loaded or read).
    pub fn check(&self) -> Result<(), Error> {
        match self {
            Self::Patchcore(c) => c.check().map(drop)?,
            Self::Padim(c) => c.check().map(drop)?,
            Self::Cflow(c) => c.check().map(drop)?,
            Self::Student(c) => {
                c.check()?;
                teacher_config(c)?.check()?;
            }
            Self::Classifier(c) => c.check().map(drop)?,
            Self::Tiled(c) => {
                ad_core::Preprocessor::new(c.preprocess.clone())?;
                c.tiles()?;
                c.member()?.check()?;
            }
            Self::Ensemble(c) => {
                c.calibration.check()?;
                ad_core::Preprocessor::new(c.preprocess.clone())?;
                for (m, _) in c.members()? {
                    m.check()?;
                }
            }
        }
        Ok(())
    }

    /// What fitting on `images` good images will need, and whether the settings make sense
    /// (patch grid, bank size, image count), from the configuration alone.
    pub fn estimate(&self, images: usize) -> Result<ad_core::FitEstimate, Error> {
        Ok(match self {
            Self::Patchcore(c) => c.check()?.estimate(images)?,
            Self::Padim(c) => c.check()?.estimate(images)?,
            Self::Cflow(c) => c.check()?.estimate(images)?,
            Self::Student(c) => {
                // The student's own data, or the last fold's teacher fitting on all but one
                // fold while the other folds' rows are held, whichever is larger.
                let folds = c.folds.max(2);
                let teacher_images = images - images / folds;
                let mut own = c.check()?.estimate(images)?;
                let teacher = teacher_config(c)?.estimate(teacher_images)?;
                let held = own.peak_bytes / folds as u64 * (folds as u64 - 1);
                own.peak_bytes = own.peak_bytes.max(held + teacher.peak_bytes);
                own.warnings.extend(
                    teacher
                        .warnings
                        .into_iter()
                        .map(|w| format!("teacher: {w}")),
                );
                own
            }
            Self::Classifier(c) => {
                c.check()?;
                return Err(classifier_needs_labels());
            }
            Self::Tiled(c) => {
                let tiles = c.tiles()?;
                let member = c.member()?;
                let (h, w) = c.preprocess.output_size();
                if c.tiling.ensemble {
                    // Each member sees one tile per image; all crops are kept while fitting.
                    let mut e = member.estimate(images)?;
                    e.memory_rows *= tiles;
                    e.peak_bytes += (images * 3 * h * w * 4) as u64;
                    e
                } else {
                    member.estimate(images * tiles)?
                }
            }
            Self::Ensemble(c) => {
                // Members are fitted one after another (twice: on the rest of the hold-out,
                // then on all images); the preprocessed images are kept for the second pass.
                let mut total = ad_core::FitEstimate::default();
                let (h, w) = c.preprocess.output_size();
                for (j, (m, _)) in c.members()?.iter().enumerate() {
                    let e = m.estimate(images)?;
                    if j == 0 {
                        total.grid = e.grid;
                    }
                    total.feature_dim += e.feature_dim;
                    total.memory_rows += e.memory_rows;
                    total.peak_bytes = total.peak_bytes.max(e.peak_bytes);
                    total
                        .warnings
                        .extend(e.warnings.into_iter().map(|w| format!("member {j}: {w}")));
                }
                total.peak_bytes += (images * 3 * h * w * 4) as u64;
                total
            }
        })
    }

    /// What lowers this detector's fitting memory, in the `ad` tool's flags (the advice of
    /// [`Error::MemoryLimit`]): the student holds every synthetic copy's patches for training,
    /// so its copies come first.
    pub fn memory_remedy(&self) -> &'static str {
        match self {
            Self::Student(_) => "lower --synthetic-per-image or --image-size, or fit fewer images",
            Self::Tiled(c) => c.detector.memory_remedy(),
            // The peak is the largest member's: a student member's lever comes first.
            Self::Ensemble(c) => c
                .members
                .iter()
                .chain(&c.score_members)
                .chain(&c.pixel_members)
                .map(Self::memory_remedy)
                .find(|r| *r != GENERIC_MEMORY_REMEDY)
                .unwrap_or(GENERIC_MEMORY_REMEDY),
            _ => GENERIC_MEMORY_REMEDY,
        }
    }

    /// The preprocessing configuration (its output size is the map grid of `ad test`).
    pub fn preprocess(&self) -> &ad_core::PreprocessConfig {
        match self {
            Self::Patchcore(c) => &c.preprocess,
            Self::Padim(c) => &c.preprocess,
            Self::Cflow(c) => &c.preprocess,
            Self::Student(c) => &c.preprocess,
            Self::Classifier(c) => &c.preprocess,
            Self::Tiled(c) => &c.preprocess,
            Self::Ensemble(c) => &c.preprocess,
        }
    }

    /// The preprocessing configuration, to change it.
    pub fn preprocess_mut(&mut self) -> &mut ad_core::PreprocessConfig {
        match self {
            Self::Patchcore(c) => &mut c.preprocess,
            Self::Padim(c) => &mut c.preprocess,
            Self::Cflow(c) => &mut c.preprocess,
            Self::Student(c) => &mut c.preprocess,
            Self::Classifier(c) => &mut c.preprocess,
            Self::Tiled(c) => &mut c.preprocess,
            Self::Ensemble(c) => &mut c.preprocess,
        }
    }

    /// Builds an unfitted detector on `device` (loading the backbone weights).
    pub fn build(&self, device: &Device) -> Result<Box<dyn DynDetector>, Error> {
        Ok(match self {
            Self::Patchcore(c) => Box::new(PatchCore::new(c, device)?),
            Self::Padim(c) => Box::new(Padim::new(c, device)?),
            Self::Cflow(c) => Box::new(Cflow::new(c, device)?),
            Self::Student(c) => {
                let teacher = teacher_config(c)?;
                teacher.check()?;
                let on = device.clone();
                let factory: ad_regress::TeacherFactory =
                    Box::new(move || teacher.build(&on).map_err(Into::into));
                Box::new(ScoreStudent::new(c, Some(factory), device)?)
            }
            Self::Classifier(c) => Box::new(SupervisedClassifier::new(c, device)?),
            Self::Tiled(c) => {
                let member = c.member()?;
                let tiled =
                    Tiled::<dyn DynDetector>::new(c.tiling.clone(), c.preprocess.clone(), || {
                        member.build(device).map_err(|e| DetectorError(Box::new(e)))
                    })?;
                Box::new(tiled)
            }
            Self::Ensemble(c) => {
                let (configs, roles): (Vec<_>, Vec<_>) = c.members()?.into_iter().unzip();
                let members = configs
                    .iter()
                    .map(|m| m.build(device).map_err(|e| DetectorError(Box::new(e))))
                    .collect::<Result<Vec<_>, _>>()?;
                Box::new(Ensemble::<dyn DynDetector>::with_roles(
                    c.calibration.clone(),
                    c.preprocess.clone(),
                    members,
                    roles,
                )?)
            }
        })
    }
}

/// What the `accurate` PatchCore preset changes from the defaults: the taps at strides 4 and 8
/// of the default EfficientNet-Lite0 (64 x 64 patches per 256 px image instead of 32 x 32),
/// the choice of `cargo run --release --example select_preset` (largest mean of validation
/// image AUROC and AUPRO over bottle and the 12 PIPED classes, within 4x the fast preset's
/// predict time), above Lite1 with the same taps by more than two standard errors of their
/// paired difference over three validation seeds (2026-12-03; docs/results.md "Seeds").
const ACCURATE: fn(&mut PatchcoreConfig) = |c| {
    c.taps = c.backbone.taps_at_strides(&[4, 8]).unwrap_or_default();
};

/// The brightness normalisation of `ad`'s presets (PatchCore's two, PaDiM's and CFlow's
/// defaults, both students, the ensemble's default): every image at ImageNet's mean luma, the
/// selection protocol's choice on 2026-12-05 (docs/results.md, "Brightness normalisation").
const PRESET_BRIGHTNESS: Option<f32> = Some(ad_core::IMAGENET_LUMA);

/// The `accurate` PatchCore preset until 2026-12-03: the EfficientNet-Lite1 weights and its
/// taps at strides 4 and 8 (the choice on the validation splits without faint veins). Still
/// the accurate student's teacher, which was measured with it.
const LITE1_STRIDES_4_8: fn(&mut PatchcoreConfig) = |c| {
    c.backbone = BackboneKind::EfficientNetLite1;
    c.taps = c.backbone.taps_at_strides(&[4, 8]).unwrap_or_default();
};

/// The error of fitting a classifier without labels.
fn classifier_needs_labels() -> Error {
    Error::Regress(ad_regress::RegressError::SingleClass {
        present: "good",
        missing: "defective",
    })
}

/// The teacher of a student: its `teacher` table as a detector config, with the student's
/// preprocessing (a teacher that sets another one is refused: both must see the same pixels).
pub fn teacher_config(student: &StudentConfig) -> Result<DetectorConfig, Error> {
    let mut teacher: DetectorConfig = serde_json::from_value(student.teacher.clone())
        .map_err(|e| Error::InvalidTeacher(format!("{e}")))?;
    if matches!(
        teacher,
        DetectorConfig::Student(_) | DetectorConfig::Classifier(_) | DetectorConfig::Tiled(_)
    ) {
        return Err(Error::InvalidTeacher(format!(
            "a {} cannot be a teacher: use patchcore, padim or cflow",
            teacher.name()
        )));
    }
    let own = teacher.preprocess().clone();
    if own != ad_core::PreprocessConfig::default() && own != student.preprocess {
        return Err(Error::InvalidTeacher(format!(
            "its preprocess {own:?} differs from the student's {:?}; set it on the student only",
            student.preprocess
        )));
    }
    *teacher.preprocess_mut() = student.preprocess.clone();
    Ok(teacher)
}

/// The registry entry of a model file, from its first 8 bytes.
pub fn kind_of_file(path: &Path) -> Result<ModelKind, Error> {
    let magic = ad_core::model_file::read_magic(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    MODELS
        .iter()
        .find(|m| m.magic == &magic)
        .copied()
        .ok_or_else(|| Error::UnknownModelFile {
            path: path.to_path_buf(),
        })
}

/// Loads any model file (the detector is chosen by the file's magic bytes), rebuilding its
/// backbone on `device`.
pub fn load(path: &Path, device: &Device) -> Result<Box<dyn DynDetector>, Error> {
    Ok(match kind_of_file(path)?.name {
        "patchcore" => Box::new(PatchCore::load(path, device)?),
        "padim" => Box::new(Padim::load(path, device)?),
        "student" => Box::new(ScoreStudent::load(path, device)?),
        "classifier" => Box::new(SupervisedClassifier::load(path, device)?),
        "tiled" => Box::new(Tiled::<dyn DynDetector>::load_with(path, |member| {
            load(member, device).map_err(|e| DetectorError(Box::new(e)))
        })?),
        "ensemble" => Box::new(Ensemble::<dyn DynDetector>::load_with(path, |member| {
            load(member, device).map_err(|e| DetectorError(Box::new(e)))
        })?),
        _ => Box::new(Cflow::load(path, device)?),
    })
}

/// What a model file holds, read from its header alone.
#[derive(Clone, Debug, Serialize)]
pub struct ModelFileInfo {
    /// Registry entry (detector name, format).
    pub detector: &'static str,
    /// Format version of the file.
    pub format_version: u32,
    /// File size in bytes.
    pub file_bytes: u64,
    /// The header: configuration, backbone identity, grid, threshold, memory sizes.
    pub header: serde_json::Value,
}

/// Reads and checks (magic, version, checksum) a model file's header without building the
/// detector.
pub fn inspect(path: &Path) -> Result<ModelFileInfo, Error> {
    let kind = kind_of_file(path)?;
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| Error::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };
    let (header, _) =
        ad_core::model_file::decode(&bytes, kind.magic, kind.format_version, kind.name)
            .map_err(bad)?;
    let header: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| bad(format!("header: {e}")))?;
    Ok(ModelFileInfo {
        detector: kind.name,
        format_version: kind.format_version,
        file_bytes: bytes.len() as u64,
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_unknown_names_list_the_known() {
        assert_eq!(model_kind("PatchCore").unwrap().name, "patchcore");
        let err = model_kind("cflowz").unwrap_err().to_string();
        assert!(
            err.contains("patchcore, padim, cflow, student, classifier, tiled, ensemble"),
            "{err}"
        );
        for m in MODELS {
            assert_eq!(DetectorConfig::default_for(m.name).unwrap().name(), m.name);
        }
    }

    #[test]
    fn a_students_estimate_holds_the_other_folds_rows_beside_its_last_teacher() {
        // Without copies the student's own rows are small, so the last fold's teacher, fitting
        // while the first fold's rows are held, sets the peak.
        let Ok(DetectorConfig::Student(mut c)) = DetectorConfig::preset("student", "accurate")
        else {
            panic!("the accurate student preset")
        };
        c.synthetic_per_image = 0;
        let own = c.check().unwrap().estimate(32).unwrap().peak_bytes;
        let teacher = teacher_config(&c).unwrap().estimate(16).unwrap().peak_bytes;
        let both = DetectorConfig::Student(c).estimate(32).unwrap().peak_bytes;
        assert!(own / 2 + teacher > own.max(teacher), "{own} {teacher}");
        assert_eq!(both, own / 2 + teacher);
    }

    #[test]
    fn memory_advice_names_the_students_copies() {
        let student = DetectorConfig::default_for("student").unwrap();
        assert!(student.memory_remedy().contains("--synthetic-per-image"));
        let tiled = DetectorConfig::Tiled(TiledConfig::wrap(student, TilingConfig::default()));
        assert!(tiled.memory_remedy().contains("--synthetic-per-image"));
        let patchcore = DetectorConfig::default_for("patchcore").unwrap();
        assert!(!patchcore.memory_remedy().contains("--synthetic-per-image"));
        let ensemble = |m| DetectorConfig::Ensemble(EnsembleConfig::of(m));
        let plain = ensemble(vec![patchcore.clone(), patchcore.clone()]);
        assert!(!plain.memory_remedy().contains("--synthetic-per-image"));
        let with_student = ensemble(vec![
            patchcore,
            DetectorConfig::default_for("student").unwrap(),
        ]);
        assert!(
            with_student
                .memory_remedy()
                .contains("--synthetic-per-image")
        );
        let err = Error::MemoryLimit {
            estimate: 10 << 30,
            limit: 1 << 30,
            detail: "209 images".into(),
            remedy: DetectorConfig::default_for("student")
                .unwrap()
                .memory_remedy(),
        }
        .to_string();
        assert!(
            err.contains(
                "10.0 GiB (209 images), above the limit of 1.0 GiB: lower --synthetic-per-image"
            ),
            "{err}"
        );
        assert!(err.ends_with("or raise --memory-limit"), "{err}");
    }

    #[test]
    fn presets_are_named_and_unknown_ones_list_the_known() {
        assert_eq!(
            DetectorConfig::preset("patchcore", "fast").unwrap(),
            DetectorConfig::default_for("patchcore").unwrap()
        );
        // `ad`'s PatchCore (both presets), PaDiM, CFlow, student and tiled model normalise
        // brightness (the protocol's choice) and differ from the library's defaults in nothing
        // else; the library's defaults keep the references' preprocessing.
        for name in ["patchcore", "padim", "cflow", "student", "tiled"] {
            let mut ad = DetectorConfig::default_for(name).unwrap();
            let library = DetectorConfig::library_default(name).unwrap();
            assert_eq!(
                ad.preprocess().brightness,
                Some(ad_core::IMAGENET_LUMA),
                "{name}"
            );
            assert_eq!(library.preprocess().brightness, None, "{name}");
            ad.preprocess_mut().brightness = None;
            assert_eq!(ad, library, "{name}");
        }
        assert_eq!(
            DetectorConfig::default_for("classifier").unwrap(),
            DetectorConfig::library_default("classifier").unwrap()
        );
        // The tiled model levels the whole image; its tiles are not levelled again.
        match DetectorConfig::default_for("tiled").unwrap() {
            DetectorConfig::Tiled(t) => assert_eq!(t.detector.preprocess().brightness, None),
            other => panic!("not tiled: {other:?}"),
        }
        match DetectorConfig::preset("patchcore", "Accurate").unwrap() {
            DetectorConfig::Patchcore(c) => {
                assert_eq!(c.preprocess.brightness, Some(ad_core::IMAGENET_LUMA));
                assert_eq!(c.backbone, BackboneKind::EfficientNetLite0);
                assert_eq!(
                    Some(c.taps.clone()),
                    BackboneKind::EfficientNetLite0.taps_at_strides(&[4, 8])
                );
                assert_eq!(c.taps.len(), 2);
                c.check().unwrap();
            }
            other => panic!("{other:?}"),
        }
        let err = DetectorConfig::preset("padim", "accurate")
            .unwrap_err()
            .to_string();
        assert!(err.contains("known presets are fast"), "{err}");
        // The ensemble's one preset is its default: the accurate PatchCore for the map, a
        // 128-px Lite1 PatchCore for the image score, PaDiM for the map only.
        let e = DetectorConfig::preset("ensemble", "accurate").unwrap();
        assert_eq!(e, DetectorConfig::default_for("ensemble").unwrap());
        let DetectorConfig::Ensemble(c) = &e else {
            panic!("{e:?}")
        };
        // The accurate PatchCore as the map member; brightness is set on the ensemble, and
        // every member sees it.
        let mut fine = PatchcoreConfig::default();
        ACCURATE(&mut fine);
        assert_eq!(c.members, vec![DetectorConfig::Patchcore(fine)]);
        assert_eq!(c.preprocess.brightness, Some(ad_core::IMAGENET_LUMA));
        for (m, role) in c.members().unwrap() {
            assert_eq!(
                m.preprocess().brightness,
                Some(ad_core::IMAGENET_LUMA),
                "{role:?}"
            );
        }
        let [DetectorConfig::Patchcore(context)] = c.score_members.as_slice() else {
            panic!("{c:?}")
        };
        assert_eq!(context.backbone, BackboneKind::EfficientNetLite1);
        assert!(context.taps.is_empty());
        assert_eq!(context.preprocess.resize, (128, 128));
        assert_eq!(
            c.pixel_members,
            vec![DetectorConfig::Padim(PadimConfig::default())]
        );
        let roles: Vec<MemberRole> = c.members().unwrap().into_iter().map(|m| m.1).collect();
        assert_eq!(
            roles,
            [MemberRole::Map, MemberRole::Score, MemberRole::Pixel]
        );
        e.check().unwrap();
        let err = DetectorConfig::preset("ensemble", "fast")
            .unwrap_err()
            .to_string();
        assert!(err.contains("known presets are accurate"), "{err}");
        // The accurate student: the Lite1 PatchCore at strides 4 and 8 as its teacher (its map
        // unblurred), on its backbone and taps.
        let s = DetectorConfig::preset("student", "accurate").unwrap();
        let DetectorConfig::Student(c) = &s else {
            panic!("{s:?}")
        };
        let mut accurate = PatchcoreConfig::default();
        LITE1_STRIDES_4_8(&mut accurate);
        assert_eq!(accurate.backbone, BackboneKind::EfficientNetLite1);
        assert_eq!(
            Some(accurate.taps.clone()),
            BackboneKind::EfficientNetLite1.taps_at_strides(&[4, 8])
        );
        accurate.blur_sigma = 0.0;
        // Student and teacher see every image at ImageNet's mean luma.
        assert_eq!(c.preprocess.brightness, PRESET_BRIGHTNESS);
        accurate.preprocess.brightness = PRESET_BRIGHTNESS;
        assert_eq!((c.backbone, &c.taps), (accurate.backbone, &accurate.taps));
        assert_eq!(c.synthetic_per_image, 12);
        assert_eq!(
            teacher_config(c).unwrap(),
            DetectorConfig::Patchcore(accurate)
        );
        s.check().unwrap();
    }

    #[test]
    fn config_is_tagged_by_model_and_refuses_unknown_keys() {
        let c: DetectorConfig =
            serde_json::from_str(r#"{"model": "padim", "n_features": 50}"#).unwrap();
        match &c {
            DetectorConfig::Padim(p) => assert_eq!(p.n_features, Some(50)),
            other => panic!("{other:?}"),
        }
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<DetectorConfig>(&json).unwrap(), c);
        let err = serde_json::from_str::<DetectorConfig>(r#"{"model": "padim", "nfeatures": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nfeatures"), "{err}");
    }
}
