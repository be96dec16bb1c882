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
        })
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
    }
}
