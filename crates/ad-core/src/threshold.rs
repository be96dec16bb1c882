//! The decision threshold a model carries: the image score from which a part is rejected, how
//! it was chosen, and the score range used to normalise scores to `[0, 1]`.
//!
//! The threshold is calibrated from **good images only** by default (a high quantile of the
//! scores of good images held out from fitting); anomalib's F1-adaptive threshold needs
//! labelled defects and is used only when the caller asks for it with such data. Computing
//! the quantile or the F1 optimum is `ad-metrics`' job; this type only stores and applies the
//! result.

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// How a [`Threshold`] was chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum ThresholdMethod {
    /// The `quantile` of the image scores of `images` good images that the model was not
    /// fitted on.
    GoodQuantile {
        /// Quantile in `[0.5, 1]`.
        quantile: f64,
        /// Held-out good images scored.
        images: usize,
    },
    /// The threshold maximising image F1 on labelled images (anomalib's `F1AdaptiveThreshold`).
    F1Adaptive {
        /// Good images among those scored.
        good: usize,
        /// Defective images among those scored.
        defective: usize,
    },
    /// Given by the user.
    Manual,
    /// A supervised classifier's own decision boundary: logit 0 (probability 0.5), learnt
    /// from `good` good and `defective` defective training images.
    Classifier {
        /// Good training images.
        good: usize,
        /// Defective training images.
        defective: usize,
    },
}

/// An image-score decision threshold with the range used to normalise scores.
///
/// Normalisation is anomalib's min-max form, `clamp((s - t) / (max - min) + 0.5, 0, 1)`: the
/// threshold maps to 0.5, so "anomalous" means "normalised score >= 0.5" whatever the
/// detector's raw scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Raw image score from which a part is anomalous (`score >= value`).
    pub value: f32,
    /// Smallest score of the calibration images.
    pub min: f32,
    /// Largest score of the calibration images.
    pub max: f32,
    /// How `value` was chosen.
    pub method: ThresholdMethod,
    /// Decoded sizes of the good images the model was fitted and calibrated on (`None`: not
    /// recorded, as in files written before the field): scores, and so this threshold, hold
    /// for images like them ([`InputSizes::check`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<InputSizes>,
}

impl Threshold {
    /// A threshold with its normalisation range; checks that the numbers are finite and
    /// `min <= max`.
    pub fn new(value: f32, min: f32, max: f32, method: ThresholdMethod) -> Result<Self, CoreError> {
        if !(value.is_finite() && min.is_finite() && max.is_finite()) || min > max {
            return Err(CoreError::InvalidParameter {
                name: "threshold",
                reason: format!("value {value}, range [{min}, {max}] must be finite and ordered"),
            });
        }
        Ok(Self {
            value,
            min,
            max,
            method,
            inputs: None,
        })
    }

    /// The same threshold, recording the sizes of the images it holds for.
    pub fn with_inputs(mut self, inputs: Option<InputSizes>) -> Self {
        self.inputs = inputs;
        self
    }

    /// A threshold given by the user, normalised over `[value / 2, value * 3 / 2]` (a
    /// symmetric range when no calibration scores are known).
    pub fn manual(value: f32) -> Result<Self, CoreError> {
        let half = (value.abs() / 2.0).max(f32::EPSILON);
        Self::new(value, value - half, value + half, ThresholdMethod::Manual)
    }

    /// `true` when `score` reaches the threshold.
    pub fn is_anomalous(&self, score: f32) -> bool {
        score >= self.value
    }

    /// The score normalised to `[0, 1]`, 0.5 at the threshold. A zero-width range (one
    /// calibration image, or all scores equal) is widened to `|value| * 1e-3` so the result
    /// stays finite.
    pub fn normalize(&self, score: f32) -> f32 {
        let range = (self.max - self.min)
            .max(self.value.abs() * 1e-3)
            .max(1e-12);
        ((score - self.value) / range + 0.5).clamp(0.0, 1.0)
    }
}

/// Relative difference of aspect ratio (width / height) beyond which two images are stretched
/// differently by one resize (2 %).
pub const ASPECT_TOLERANCE: f64 = 0.02;

/// Factor by which an image's width or height may lie outside the fitted images' range before
/// it counts as another resolution (1.25).
pub const SCALE_TOLERANCE: f64 = 1.25;

/// The range of decoded sizes of a set of images (the good images a model was fitted and
/// calibrated on). A detector resizes every image to one size, so an image of another aspect
/// ratio is stretched differently and one of another resolution is resampled differently:
/// neither looks like what the model learnt, whatever the part. On a line, a camera, lens or
/// crop that changed shows first as such a size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSizes {
    /// Images measured.
    pub images: usize,
    /// Smallest and largest width, pixels.
    pub width: (usize, usize),
    /// Smallest and largest height, pixels.
    pub height: (usize, usize),
    /// Smallest and largest aspect ratio, width / height.
    pub aspect: (f64, f64),
}

impl InputSizes {
    /// The range of `(width, height)` sizes; `None` for no size, or one with a zero side.
    pub fn from_sizes(sizes: impl IntoIterator<Item = (usize, usize)>) -> Option<Self> {
        let mut out: Option<Self> = None;
        for (w, h) in sizes {
            if w == 0 || h == 0 {
                return None;
            }
            let one = Self {
                images: 1,
                width: (w, w),
                height: (h, h),
                aspect: (w as f64 / h as f64, w as f64 / h as f64),
            };
            out = Some(match out {
                None => one,
                Some(o) => o.merged(&one),
            });
        }
        out
    }

    /// The range covering both (the images of both sets).
    pub fn merged(&self, other: &Self) -> Self {
        let span = |a: (usize, usize), b: (usize, usize)| (a.0.min(b.0), a.1.max(b.1));
        Self {
            images: self.images + other.images,
            width: span(self.width, other.width),
            height: span(self.height, other.height),
            aspect: (
                self.aspect.0.min(other.aspect.0),
                self.aspect.1.max(other.aspect.1),
            ),
        }
    }

    /// Why an image of `width x height` is unlike these images, or `None` when it is like
    /// them: its aspect ratio more than [`ASPECT_TOLERANCE`] outside their range, or a side
    /// more than [`SCALE_TOLERANCE`] times outside theirs.
    pub fn check(&self, width: usize, height: usize) -> Option<String> {
        let aspect = width as f64 / height.max(1) as f64;
        let (lo, hi) = self.aspect;
        if aspect < lo * (1.0 - ASPECT_TOLERANCE) || aspect > hi * (1.0 + ASPECT_TOLERANCE) {
            return Some(format!(
                "{width}x{height} (aspect ratio {aspect:.3}) is stretched unlike the images the \
                 model was fitted on ({self})"
            ));
        }
        let outside = |v: usize, (a, b): (usize, usize)| {
            (v as f64) < a as f64 / SCALE_TOLERANCE || (v as f64) > b as f64 * SCALE_TOLERANCE
        };
        if outside(width, self.width) || outside(height, self.height) {
            return Some(format!(
                "{width}x{height} is more than {SCALE_TOLERANCE}x off the size of the images the \
                 model was fitted on ({self}): it is resampled unlike them"
            ));
        }
        None
    }
}

impl std::fmt::Display for InputSizes {
    /// `209 images, 900x900` or `12 images, 100-120 x 90-95 px, aspect ratio 1.05-1.33`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.images;
        let noun = if n == 1 { "image" } else { "images" };
        if self.width.0 == self.width.1 && self.height.0 == self.height.1 {
            return write!(f, "{n} {noun}, {}x{}", self.width.0, self.height.0);
        }
        write!(
            f,
            "{n} {noun}, {}-{} x {}-{} px, aspect ratio {:.3}-{:.3}",
            self.width.0, self.width.1, self.height.0, self.height.1, self.aspect.0, self.aspect.1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_maps_to_one_half_and_labels() {
        let t = Threshold::new(2.0, 1.0, 3.0, ThresholdMethod::Manual).unwrap();
        assert_eq!(t.normalize(2.0), 0.5);
        assert_eq!(t.normalize(100.0), 1.0);
        assert_eq!(t.normalize(-100.0), 0.0);
        assert!(t.is_anomalous(2.0) && !t.is_anomalous(1.999));
        assert!(Threshold::new(f32::NAN, 0.0, 1.0, ThresholdMethod::Manual).is_err());
        assert!(Threshold::new(1.0, 2.0, 1.0, ThresholdMethod::Manual).is_err());
        let flat = Threshold::new(1.0, 1.0, 1.0, ThresholdMethod::Manual).unwrap();
        assert!(flat.normalize(1.5).is_finite());
        let m = Threshold::manual(4.0).unwrap();
        assert_eq!((m.min, m.max), (2.0, 6.0));
    }

    #[test]
    fn serde_names_the_method() {
        let t = Threshold::new(
            1.0,
            0.5,
            1.2,
            ThresholdMethod::GoodQuantile {
                quantile: 0.99,
                images: 42,
            },
        )
        .unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("\"method\":\"good_quantile\""), "{json}");
        let back: Threshold = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        // A file without the sizes (written before the field) reads as `None`, and a
        // threshold with them keeps them.
        assert!(!json.contains("inputs") && back.inputs.is_none());
        let sized = t.with_inputs(InputSizes::from_sizes([(900, 900)]));
        let json = serde_json::to_string(&sized).unwrap();
        assert_eq!(serde_json::from_str::<Threshold>(&json).unwrap(), sized);
    }

    #[test]
    fn input_sizes_accept_their_images_and_name_the_others() {
        assert_eq!(InputSizes::from_sizes([]), None);
        assert_eq!(InputSizes::from_sizes([(10, 0)]), None);
        let square = InputSizes::from_sizes([(900, 900); 3]).unwrap();
        assert_eq!(square.to_string(), "3 images, 900x900");
        // Same aspect, sides within 1.25x: like them.
        for (w, h) in [(900, 900), (1024, 1024), (724, 724), (905, 900)] {
            assert_eq!(square.check(w, h), None, "{w}x{h}");
        }
        let wide = square.check(1280, 720).unwrap();
        assert!(
            wide.contains("1280x720") && wide.contains("stretched"),
            "{wide}"
        );
        assert!(wide.contains("3 images, 900x900"), "{wide}");
        let large = square.check(2000, 2000).unwrap();
        assert!(large.contains("resampled"), "{large}");
        assert!(square.check(700, 700).unwrap().contains("resampled"));
        // A set of several sizes: its range, both ways.
        let mixed = InputSizes::from_sizes([(100, 90), (120, 95)]).unwrap();
        assert_eq!(mixed.images, 2);
        assert_eq!((mixed.width, mixed.height), ((100, 120), (90, 95)));
        assert!(mixed.to_string().contains("100-120 x 90-95 px"), "{mixed}");
        assert_eq!(mixed.check(110, 92), None);
        assert!(mixed.check(90, 100).is_some());
        let both = square.merged(&mixed);
        assert_eq!(
            (both.images, both.width, both.height),
            (5, (100, 900), (90, 900))
        );
        assert_eq!(both.aspect, (1.0, 120.0 / 95.0));
    }
}
