//! Industrial visual anomaly detection on Burn: one import for the whole pipeline.
//!
//! A camera looks at products on a line; the detector has only ever seen good parts and must
//! say which new part is defective and where. The pipeline, one crate per step:
//!
//! | step | crate |
//! |---|---|
//! | images, preprocessing, the `Detector` trait | [`core`] (`ad-core`) |
//! | datasets: MVTec AD, your own folders, a generated category | [`mvtec`] (`ad-mvtec`) |
//! | pretrained CNN feature maps | [`backbone`] (`ad-backbone`) |
//! | coreset memory bank and nearest neighbours | [`memory_bank`] (`ad-memory-bank`) |
//! | PatchCore | [`patchcore`] (`ad-patchcore`) |
//! | PaDiM | [`padim`] (`ad-padim`) |
//! | CFlow (normalizing flows, trained) | [`cflow`] (`ad-cflow`) |
//! | AUROC, F1-max, AUPRO, overlays, reports | [`metrics`] (`ad-metrics`) |
//!
//! [`registry`] names every detector (config-file schema, build by name, load any model
//! file by its header); [`pipeline`] fits, calibrates the pass/fail threshold on good
//! images and evaluates any detector; [`Error`] wraps every crate's error. The library prints
//! nothing: the `ad` tool (crate `ad-cli`) and its examples talk to the user.
//! Start with `cargo run --release --example mvtec_patchcore`.

pub mod parity;
pub mod pipeline;
pub mod registry;
pub mod selection;
pub mod supervised;

pub use ad_backbone as backbone;
pub use ad_cflow as cflow;
pub use ad_core as core;
pub use ad_memory_bank as memory_bank;
pub use ad_metrics as metrics;
pub use ad_mvtec as mvtec;
pub use ad_padim as padim;
pub use ad_patchcore as patchcore;
pub use ad_regress as regress;
pub use burn;

/// Any error of the workspace's crates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Shared types and preprocessing.
    #[error(transparent)]
    Core(#[from] ad_core::CoreError),
    /// Datasets.
    #[error(transparent)]
    Dataset(#[from] ad_mvtec::DatasetError),
    /// Backbones and weights.
    #[error(transparent)]
    Backbone(#[from] ad_backbone::BackboneError),
    /// Memory bank.
    #[error(transparent)]
    MemoryBank(#[from] ad_memory_bank::MemoryBankError),
    /// PatchCore.
    #[error(transparent)]
    Patchcore(#[from] ad_patchcore::PatchcoreError),
    /// PaDiM.
    #[error(transparent)]
    Padim(#[from] ad_padim::PadimError),
    /// CFlow.
    #[error(transparent)]
    Cflow(#[from] ad_cflow::CflowError),
    /// Learned heads (score student, supervised classifier).
    #[error(transparent)]
    Regress(#[from] ad_regress::RegressError),
    /// Metrics, pictures, reports.
    #[error(transparent)]
    Metrics(#[from] ad_metrics::MetricsError),
    /// A detector held as `Box<dyn DynDetector>`.
    #[error(transparent)]
    Detector(#[from] ad_core::DetectorError),
    /// A student's `teacher` table is not a usable detector config.
    #[error("invalid teacher: {0}")]
    InvalidTeacher(String),
    /// `model = "..."` names no registered detector.
    #[error("unknown model `{name}`: known models are {known}")]
    UnknownModel {
        /// The name given.
        name: String,
        /// The registered names.
        known: String,
    },
    /// `--preset` names no preset of the model.
    #[error("unknown preset `{preset}` for {model}: known presets are {known}")]
    UnknownPreset {
        /// The name given.
        preset: String,
        /// The model.
        model: &'static str,
        /// The presets it has.
        known: &'static str,
    },
    /// A file that no registered detector wrote.
    #[error("{path}: not a model file of this workspace (unknown magic bytes)")]
    UnknownModelFile {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A model file that is truncated, corrupt or of another format version.
    #[error("{path}: not a valid model file: {reason}")]
    BadModelFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The threshold cannot be calibrated as asked.
    #[error("threshold calibration: {0}")]
    Calibration(String),
    /// Fitting would need more memory than allowed.
    #[error(
        "fitting needs about {:.1} GiB ({detail}), above the limit of {:.1} GiB: {remedy}; \
         or raise --memory-limit",
        *estimate as f64 / (1u64 << 30) as f64,
        *limit as f64 / (1u64 << 30) as f64
    )]
    MemoryLimit {
        /// Estimated peak, bytes.
        estimate: u64,
        /// The limit, bytes.
        limit: u64,
        /// What the estimate is made of.
        detail: String,
        /// What lowers it ([`registry::DetectorConfig::memory_remedy`]).
        remedy: &'static str,
    },
    /// A device name that is unknown or not built in.
    #[error("{0}")]
    UnknownDevice(String),
    /// Files read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
