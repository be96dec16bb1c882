//! PaDiM: "a Patch Distribution Modeling Framework for Anomaly Detection and Localization"
//! (Defard et al., ICPR 2020 workshops), on the workspace's backbone and `Detector` trait.
//!
//! The pipeline, as in the paper and in anomalib (the defaults):
//!
//! 1. **Patch embedding** ([`embedding`]): three taps of an ImageNet CNN at strides 4, 8
//!    and 16 — ResNet-18 `layer1..3` in the paper; by default EfficientNet-Lite0 `blocks.2`,
//!    `blocks.4`, `blocks.10` (24 + 40 + 112 = 176 channels), the real weights available here.
//!    Deeper maps are upsampled with nearest neighbour to the first tap's grid (64 x 64 for a
//!    256 x 256 input) and concatenated; a random subset of `d` channels, drawn from a seed
//!    stored with the model, is kept: 100 for ResNet-18, 550 for WideResNet-50-2, and
//!    [`LITE_N_FEATURES`] = 100 of 176 for Lite0. On MVTec bottle all 176 channels score a
//!    little higher (image / pixel AUROC 100.0 / 98.57 % against 99.84 / 98.25 %) at 3x the
//!    model size (246 vs 81 MiB), 2.5x the peak memory and about twice the fit and predict
//!    time (`docs/results.md`, "## PaDiM"); 100 keeps the paper's ResNet-18 budget. Pass
//!    `n_features: Some(176)` for all channels.
//! 2. **Gaussians** ([`gaussian`]): per grid position the mean and the unbiased covariance
//!    of the training embeddings plus `0.01 I`, accumulated in a streaming way in `f64`
//!    (sums and outer-product sums per position: memory `O(positions * d^2)`, independent of
//!    the number of images), factorised by Cholesky in `f64`; the inverse factor `L^-1` is
//!    kept (packed, `f32`).
//! 3. **Scoring**: the Mahalanobis distance of every position's embedding to its Gaussian;
//!    the distance grid is upsampled (bilinear, half-pixel centres) to the input size and
//!    blurred with a Gaussian of sigma 4 (`ad_core::postprocess`); image score = the
//!    maximum of the map.
//!
//! Models are saved to one versioned, checksummed file ([`Padim::save`]).
//!
//! ```no_run
//! use ad_core::Detector;
//! use ad_mvtec::{BatchLoader, MvtecCategory};
//! use ad_padim::{Padim, PadimConfig};
//! use burn::tensor::Device;
//!
//! let bottle = MvtecCategory::open("/data/mvtec_ad", "bottle")?;
//! let mut model = Padim::new(&PadimConfig::default(), &Device::default())?;
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
pub mod embedding;
mod error;
pub mod gaussian;
mod io;
mod model;

pub use ad_core::MapUpsample;
pub use config::{
    CheckedConfig, LITE_N_FEATURES, PADIM_STRIDES, PadimConfig, default_n_features, default_taps,
};
pub use error::PadimError;
pub use gaussian::{GaussianAccumulator, Gaussians};
pub use io::{FORMAT_VERSION, MAGIC};
pub use model::Padim;

#[cfg(test)]
mod tests {
    #[test]
    fn detectors_are_siblings() {
        // PaDiM shares ad-core, ad-backbone and ad-metrics with PatchCore, never PatchCore itself.
        let manifest = include_str!("../Cargo.toml");
        assert!(!manifest.contains("ad-patchcore"), "{manifest}");
    }
}
