//! Shared vocabulary of the anomaly-detection workspace.
//!
//! Every detector in this workspace follows the same pipeline:
//! image -> backbone features -> patch embedding -> memory (bank or Gaussians) -> anomaly
//! score and anomaly map -> metrics. This crate owns the pieces every stage agrees on:
//!
//! - [`RgbImage`]: a decoded 8-bit RGB image, and [`Mask`], a binary ground-truth mask;
//! - [`preprocess`]: resizing exactly as PIL does (bilinear with antialiasing), centre crop, brightness
//!   normalisation and ImageNet normalisation, producing an [`ImageBatch`] that becomes a Burn tensor on any
//!   [`Device`](burn::tensor::Device);
//! - [`AnomalyMap`] and [`Prediction`]: what a detector returns for one image;
//! - [`Detector`]: the trait that PatchCore and PaDiM implement — fit on good images,
//!   predict a score and a map, save, threshold — and [`DynDetector`], the same as a trait
//!   object, to pick a detector by name at run time;
//! - [`postprocess`]: from a score grid to a pixel map (upsampling, Gaussian blur), shared by
//!   every detector;
//! - [`Threshold`]: the pass/fail decision a model carries, and score normalisation;
//! - [`tensor::read_f32`]: the one device -> host read-back;
//! - [`model_file`]: the versioned, checksummed container detectors save to;
//! - [`tiling`]: any detector run tile by tile on large images ([`tiling::Tiled`]);
//! - [`ensemble`]: several detectors' maps standardised on good images and averaged
//!   ([`ensemble::Ensemble`]);
//! - [`CoreError`]: the typed errors of the above.
//!
//! ```
//! use ad_core::{Preprocessor, PreprocessConfig, RgbImage};
//!
//! let image = RgbImage::from_fn(64, 48, |x, y| [x as u8, y as u8, 128]);
//! let pre = Preprocessor::new(PreprocessConfig::default().with_size(32, 32))?;
//! let batch = pre.batch(&[image])?;
//! assert_eq!(batch.shape(), [1, 3, 32, 32]);
//! # Ok::<(), ad_core::CoreError>(())
//! ```

mod detector;
pub mod ensemble;
mod error;
mod image;
mod map;
pub mod model_file;
pub mod postprocess;
pub mod preprocess;
pub mod schedule;
pub mod tensor;
mod threshold;
pub mod tiling;

pub use detector::{
    BatchStream, BoxError, Detector, DetectorError, DynDetector, EpochCallback, EpochReport,
    FitEstimate, FitSummary, MIN_GRID, StageCallback, StageReport, forward_bytes, grid_at_stride,
};
pub use error::CoreError;
pub use image::{Mask, RgbImage};
pub use map::{AnomalyMap, Prediction};
pub use postprocess::MapUpsample;
pub use preprocess::{IMAGENET_LUMA, ImageBatch, PreprocessConfig, Preprocessor};
pub use schedule::LrSchedule;
pub use threshold::{ASPECT_TOLERANCE, InputSizes, SCALE_TOLERANCE, Threshold, ThresholdMethod};

/// The element of `all` whose `Display` name is `s` (the `FromStr` of the crates' small named
/// enums: schedules, poolings, anomaly kinds); the error names `what` and every accepted name.
pub fn parse_name<T: Copy + std::fmt::Display>(
    s: &str,
    all: &[T],
    what: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|k| k.to_string() == s)
        .ok_or_else(|| {
            let names: Vec<String> = all.iter().map(ToString::to_string).collect();
            format!("unknown {what} {s:?} (one of: {})", names.join(", "))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_parse_and_errors_list_the_choices() {
        let all = [super::LrSchedule::Constant, super::LrSchedule::Cosine];
        assert_eq!(
            super::parse_name("cosine", &all, "schedule"),
            Ok(super::LrSchedule::Cosine)
        );
        let err = super::parse_name("linear", &all, "schedule").unwrap_err();
        assert_eq!(
            err,
            r#"unknown schedule "linear" (one of: constant, cosine)"#
        );
    }
}
