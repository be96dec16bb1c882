//! Datasets for visual anomaly detection.
//!
//! - [`MvtecCategory`]: one category of MVTec AD in its official layout (`train/good`,
//!   `test/<defect>`, `ground_truth/<defect>/<stem>_mask.png`), masks paired to images by stem;
//! - [`FolderConfig`] / [`FolderDataset`]: a user's own line, like anomalib's `Folder`;
//! - [`SyntheticConfig`]: a generated category in the MVTec layout, deterministic from a seed,
//!   with exact masks: the default data of the examples and of the fast tests;
//! - [`BatchLoader`]: streaming, parallel (rayon) decoding and preprocessing into
//!   [`ad_core::ImageBatch`]es, one batch in memory at a time.
//!
//! Every failure is a [`DatasetError`] naming the file at fault; no input panics.
//!
//! ```no_run
//! use ad_core::{PreprocessConfig, Preprocessor};
//! use ad_mvtec::{BatchLoader, MvtecCategory};
//!
//! let bottle = MvtecCategory::open("/data/mvtec_ad", "bottle")?;
//! let pre = Preprocessor::new(PreprocessConfig::default())?;
//! for batch in BatchLoader::new(&bottle.splits.train, pre, 8) {
//!     let batch = batch?;
//!     println!("{:?}", batch.images.shape()); // [8, 3, 256, 256]
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod check;
pub mod decode;
mod error;
mod folder;
mod loader;
mod mvtec;
mod rng;
mod sample;
pub mod synthetic;

pub use check::{
    ASPECT_TOLERANCE, DataCheck, TINY_SIDE, check_splits, check_splits_against,
    first_identical_files,
};
pub use error::DatasetError;
pub use folder::{FolderConfig, FolderDataset};
pub use loader::{BatchLoader, LoadedBatch, load_sample};
pub use mvtec::MvtecCategory;
pub use rng::SplitMix64;
pub use sample::{Sample, Splits};
pub use synthetic::{SyntheticConfig, render_part};
