//! CFLOW-AD: "Real-Time Unsupervised Anomaly Detection with Localization via Conditional
//! Normalizing Flows" (Gudovskiy et al., WACV 2022), trained with Burn's autodiff, beside
//! PatchCore and PaDiM on the workspace's backbone and `Detector` trait.
//!
//! The pipeline, as anomalib's `Cflow` (the differences are listed in `docs/architecture.md`):
//!
//! 1. **Encoder**: a frozen ImageNet CNN, taps at strides 8, 16 and 32
//!    ([`default_taps`]: `blocks.4`, `blocks.10`, `blocks.15` of EfficientNet-Lite0; anomalib's
//!    WideResNet-50 `layer2..4`).
//! 2. **Decoders** ([`flow`]): per tap, a conditional normalizing flow of 8 affine coupling
//!    blocks (soft clamping `1.9 tanh`, a 2-layer subnet, hard permutations, SOFTPLUS global
//!    affine), conditioned on a 128-channel 2-D sinusoidal [`positional_encoding_2d`].
//! 3. **Training**: maximum likelihood on fibers (a feature vector with its position) shuffled
//!    by a seeded generator, 64 per step, loss `-log sigmoid(log p / C)`, Adam at 1e-4, a
//!    configurable number of epochs, progress reported through
//!    [`ad_core::Detector::set_epoch_callback`].
//! 4. **Anomaly map**: per tap the per-dimension log-likelihood, `exp(log p - ref)` with `ref`
//!    the best training fiber's, upsampled to the image, summed over taps and inverted
//!    (`taps - sum`), blurred (sigma 4); image score = max of the map.
//!
//! ```no_run
//! use ad_core::Detector;
//! use ad_cflow::{Cflow, CflowConfig};
//! use burn::tensor::Device;
//!
//! let mut model = Cflow::new(&CflowConfig { epochs: 5, ..Default::default() }, &Device::default())?;
//! let good: Vec<ad_core::RgbImage> = vec![/* decoded good parts */];
//! model.fit_images(&good)?;
//! model.save("bottle.cflow")?;
//! # Ok::<(), ad_cflow::CflowError>(())
//! ```

mod config;
mod encoding;
mod error;
pub mod flow;
mod io;
mod model;

pub use config::{CFLOW_STRIDES, CflowConfig, CheckedConfig, default_taps};
pub use encoding::positional_encoding_2d;
pub use error::CflowError;
pub use flow::{CouplingBlock, Flow};
pub use io::{FORMAT_VERSION, MAGIC};
pub use model::Cflow;
