//! PatchCore: "Towards Total Recall in Industrial Anomaly Detection" (Roth et al., CVPR 2022).
//!
//! The pipeline, as in the paper and in anomalib (the defaults), with the paper's options:
//!
//! 1. **Locally aware patch features** ([`embedding`]): mid-level taps of an ImageNet CNN
//!    (EfficientNet-Lite0 `blocks.4` + `blocks.10` by default, WideResNet-50-2 `layer2` +
//!    `layer3` with torchvision's weights), each averaged over a 3x3 neighbourhood
//!    (`AvgPool2d(3, 1, 1)`), the deeper one upsampled bilinearly to the first grid,
//!    concatenated; optional adaptive-average reduction to a target dimension (the official
//!    code's 1024), off by default (anomalib).
//! 2. **Coreset memory bank**: all training patches, reduced by the greedy k-center coreset
//!    (ratio 0.1 by default) of `ad-memory-bank`, on a 128-d random projection (the official
//!    code; anomalib's sparse Johnson-Lindenstrauss projection is an option). Fitting streams
//!    batches: only patch features are kept, never full-size maps.
//! 3. **Scoring**: patch score = Euclidean distance to the nearest memory sample; image score
//!    = Eq. 7 reweighting of the largest patch score with the `num_neighbors` (9) nearest
//!    memory samples of its neighbour, in anomalib's form `(1 - softmax(d)[0]) * s*`;
//!    `num_neighbors = 1` gives the plain maximum (the official code).
//! 4. **Anomaly map** ([`ad_core::postprocess`]): the patch-score grid upsampled to the input size
//!    (nearest, anomalib; bilinear, the official code) and blurred with a Gaussian of sigma 4
//!    (kernel `2 * int(4 * sigma + 0.5) + 1`, reflect padding).
//!
//! Models are saved to one versioned, checksummed file ([`PatchCore::save`]).
//!
//! ```no_run
//! use ad_core::Detector;
//! use ad_mvtec::{BatchLoader, MvtecCategory};
//! use ad_patchcore::{PatchCore, PatchcoreConfig};
//! use burn::tensor::Device;
//!
//! let bottle = MvtecCategory::open("/data/mvtec_ad", "bottle")?;
//! let mut model = PatchCore::new(&PatchcoreConfig::default(), &Device::default())?;
//! let pre = model.preprocessor().clone();
//! model.fit(BatchLoader::new(&bottle.splits.train, pre.clone(), 8).map(|b| b.map(|b| b.images)))?;
//! for batch in BatchLoader::new(&bottle.splits.test, pre, 8) {
//!     for p in model.predict(&batch?.images)? {
//!         println!("{:.3}", p.score);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
/// Locally aware patch features, shared with the other detectors (in `ad-backbone`).
pub use ad_backbone::embedding;
mod error;
mod io;
mod model;

pub use ad_core::MapUpsample;
pub use config::{BankAugment, CheckedConfig, KnnBackend, PatchcoreConfig};
pub use error::PatchcoreError;
pub use io::{FORMAT_VERSION, MAGIC};
pub use model::{Embedding, PatchCore, PatchScores, reweight};
