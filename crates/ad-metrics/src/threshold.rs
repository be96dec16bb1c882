//! Thresholds and score normalisation.
//!
//! - [`f1_adaptive_threshold`]: the threshold maximising F1 on labelled validation data
//!   (anomalib's `F1AdaptiveThreshold`).
//! - [`good_only_threshold`]: for the common case without defective samples, a high quantile
//!   (default [`DEFAULT_GOOD_QUANTILE`] = 0.99, linear interpolation as `numpy.quantile`) of the
//!   scores of held-out good images. With quantile 1 it is the largest normal score: every
//!   held-out good image is then classified normal.
//! - [`Normalizer`]: anomalib's min-max post-processing, `clamp((x - t) / (max - min) + 0.5, 0, 1)`,
//!   which maps the threshold `t` to 0.5, so that "anomalous" means "normalised score >= 0.5"
//!   whatever the detector's raw scale. Serialisable with serde so it travels with a model.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::pr::f1_max;
use crate::rank::{Label, checked_key};

/// Default quantile of held-out normal scores used by [`good_only_threshold`].
pub const DEFAULT_GOOD_QUANTILE: f64 = 0.99;

/// Value of a normalised score at the threshold.
pub const NORMALIZED_THRESHOLD: f32 = 0.5;

/// `numpy.quantile(scores, q)` with the default linear interpolation.
///
/// # Errors
/// [`Empty`](MetricsError::Empty), [`NonFinite`](MetricsError::NonFinite),
/// [`InvalidQuantile`](MetricsError::InvalidQuantile) unless `0 <= q <= 1`.
pub fn quantile(scores: &[f32], q: f64) -> Result<f32> {
    if !(0.0..=1.0).contains(&q) {
        return Err(MetricsError::InvalidQuantile(q));
    }
    if scores.is_empty() {
        return Err(MetricsError::Empty { what: "quantile" });
    }
    for (i, &x) in scores.iter().enumerate() {
        checked_key("quantile", i, x)?;
    }
    let mut v = scores.to_vec();
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, &mut a, rest) = v.select_nth_unstable_by(lo, f32::total_cmp);
    if frac == 0.0 || rest.is_empty() {
        return Ok(a);
    }
    let b = rest.iter().copied().fold(f32::INFINITY, f32::min);
    Ok((a as f64 + frac * (b as f64 - a as f64)) as f32)
}

/// Threshold learnt from good images only: the `quantile` of held-out normal scores
/// (use [`DEFAULT_GOOD_QUANTILE`] when unsure). The result lies between the median and the
/// maximum of the normal scores; it is never the minimum.
///
/// # Errors
/// As [`quantile`]; additionally `quantile < 0.5` is refused as
/// [`InvalidQuantile`](MetricsError::InvalidQuantile) (such a threshold would flag most normal
/// images).
pub fn good_only_threshold(normal_scores: &[f32], quantile_q: f64) -> Result<f32> {
    if !(0.5..=1.0).contains(&quantile_q) {
        return Err(MetricsError::InvalidQuantile(quantile_q));
    }
    quantile(normal_scores, quantile_q)
}

/// Threshold maximising F1 on labelled data (anomalib's `F1AdaptiveThreshold`); a sample is
/// anomalous when `score >= threshold`.
///
/// # Errors
/// As [`f1_max`](crate::f1_max): at least one anomalous sample is needed; without any, use
/// [`good_only_threshold`].
pub fn f1_adaptive_threshold<L: Label>(scores: &[f32], labels: &[L]) -> Result<f32> {
    Ok(f1_max(scores, labels)?.threshold)
}

/// anomalib's min-max normalisation with the threshold mapped to 0.5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// Raw-score threshold (maps to [`NORMALIZED_THRESHOLD`]).
    pub threshold: f32,
    /// Smallest raw score seen when fitting.
    pub min: f32,
    /// Largest raw score seen when fitting.
    pub max: f32,
}

impl Normalizer {
    /// A normaliser from known statistics.
    ///
    /// # Errors
    /// [`InvalidParameter`](MetricsError::InvalidParameter) for a non-finite value,
    /// [`DegenerateRange`](MetricsError::DegenerateRange) unless `min < max`.
    pub fn new(threshold: f32, min: f32, max: f32) -> Result<Self> {
        for (name, v) in [("threshold", threshold), ("min", min), ("max", max)] {
            if !v.is_finite() {
                return Err(MetricsError::InvalidParameter {
                    name,
                    value: v as f64,
                    reason: "must be finite",
                });
            }
        }
        if min >= max {
            return Err(MetricsError::DegenerateRange { min, max });
        }
        Ok(Self {
            threshold,
            min,
            max,
        })
    }

    /// Min and max of `scores` with a given raw threshold.
    ///
    /// # Errors
    /// [`Empty`](MetricsError::Empty), [`NonFinite`](MetricsError::NonFinite), and as [`Normalizer::new`]
    /// (all scores equal gives [`DegenerateRange`](MetricsError::DegenerateRange)).
    pub fn fit(scores: &[f32], threshold: f32) -> Result<Self> {
        if scores.is_empty() {
            return Err(MetricsError::Empty {
                what: "normalizer scores",
            });
        }
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for (i, &x) in scores.iter().enumerate() {
            checked_key("normalizer scores", i, x)?;
            lo = lo.min(x);
            hi = hi.max(x);
        }
        Self::new(threshold, lo, hi)
    }

    /// Labelled validation data: threshold from [`f1_adaptive_threshold`], min/max of `scores`.
    ///
    /// # Errors
    /// As [`f1_adaptive_threshold`] and [`Normalizer::fit`].
    pub fn fit_f1<L: Label>(scores: &[f32], labels: &[L]) -> Result<Self> {
        Self::fit(scores, f1_adaptive_threshold(scores, labels)?)
    }

    /// Good images only: threshold from [`good_only_threshold`], min/max of `normal_scores`.
    ///
    /// # Errors
    /// As [`good_only_threshold`] and [`Normalizer::fit`].
    pub fn fit_good_only(normal_scores: &[f32], quantile_q: f64) -> Result<Self> {
        Self::fit(
            normal_scores,
            good_only_threshold(normal_scores, quantile_q)?,
        )
    }

    /// Normalised score in `[0, 1]`: `clamp((x - threshold) / (max - min) + 0.5, 0, 1)`.
    #[inline]
    pub fn normalize(&self, x: f32) -> f32 {
        let v = (x as f64 - self.threshold as f64) / (self.max as f64 - self.min as f64) + 0.5;
        v.clamp(0.0, 1.0) as f32
    }

    /// Normalises every value in place.
    pub fn normalize_in_place(&self, xs: &mut [f32]) {
        xs.iter_mut().for_each(|x| *x = self.normalize(*x));
    }

    /// `true` when the raw score is anomalous (`score >= threshold`, i.e. normalised `>= 0.5`).
    pub fn is_anomalous(&self, x: f32) -> bool {
        x >= self.threshold
    }
}

/// Image- and pixel-level normalisers, as anomalib's post-processor keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostProcessor {
    /// For image scores.
    pub image: Normalizer,
    /// For anomaly-map pixels; `None` when no pixel statistics were learnt.
    pub pixel: Option<Normalizer>,
}

impl PostProcessor {
    /// Writes the statistics as JSON.
    ///
    /// # Errors
    /// [`Json`](MetricsError::Json) or [`Io`](MetricsError::Io) naming `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let s = serde_json::to_string_pretty(self).map_err(|source| MetricsError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, s).map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads statistics written by [`PostProcessor::save`], validating them.
    ///
    /// # Errors
    /// [`Io`](MetricsError::Io), [`Json`](MetricsError::Json), or as [`Normalizer::new`].
    pub fn load(path: &Path) -> Result<Self> {
        let s = std::fs::read_to_string(path).map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let p: Self = serde_json::from_str(&s).map_err(|source| MetricsError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Normalizer::new(p.image.threshold, p.image.min, p.image.max)?;
        if let Some(n) = p.pixel {
            Normalizer::new(n.threshold, n.min, n.max)?;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        let x = [3.0f32, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        // numpy.quantile(x, q) for q in (0, 0.25, 0.5, 0.9, 1)
        let expect = [(0.0, 1.0), (0.25, 1.75), (0.5, 3.5), (0.9, 6.9), (1.0, 9.0)];
        for (q, e) in expect {
            close(quantile(&x, q).unwrap() as f64, e, 1e-6);
        }
        assert!(matches!(
            quantile(&x, 1.5),
            Err(MetricsError::InvalidQuantile(_))
        ));
        assert!(matches!(
            quantile(&[], 0.5),
            Err(MetricsError::Empty { .. })
        ));
    }

    #[test]
    fn good_only_threshold_is_high() {
        let normal: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let t = good_only_threshold(&normal, DEFAULT_GOOD_QUANTILE).unwrap();
        close(t as f64, 98.01, 1e-4);
        assert_eq!(good_only_threshold(&normal, 1.0).unwrap(), 99.0);
        assert!(good_only_threshold(&normal, 0.1).is_err());
    }

    #[test]
    fn normalizer_maps_threshold_to_half() {
        let n = Normalizer::new(2.0, 0.0, 4.0).unwrap();
        close(n.normalize(2.0) as f64, 0.5, 1e-7);
        close(n.normalize(3.0) as f64, 0.75, 1e-7);
        assert_eq!(n.normalize(100.0), 1.0);
        assert_eq!(n.normalize(-100.0), 0.0);
        assert!(n.is_anomalous(2.0) && !n.is_anomalous(1.99));
        assert!(matches!(
            Normalizer::new(0.5, 1.0, 1.0),
            Err(MetricsError::DegenerateRange { .. })
        ));
        assert!(Normalizer::new(f32::NAN, 0.0, 1.0).is_err());
        let f = Normalizer::fit_f1(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert_eq!((f.threshold, f.min, f.max), (0.35, 0.1, 0.8));
    }

    #[test]
    fn post_processor_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("post.json");
        let p = PostProcessor {
            image: Normalizer::new(1.0, 0.0, 2.0).unwrap(),
            pixel: None,
        };
        p.save(&path).unwrap();
        assert_eq!(PostProcessor::load(&path).unwrap(), p);
        std::fs::write(
            &path,
            r#"{"image":{"threshold":1,"min":3,"max":2},"pixel":null}"#,
        )
        .unwrap();
        assert!(matches!(
            PostProcessor::load(&path),
            Err(MetricsError::DegenerateRange { .. })
        ));
    }
}
