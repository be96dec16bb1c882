//! Confusion matrix and balanced accuracy at a fixed threshold.

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::rank::{Label, checked_key};

/// Counts of a binary decision (`anomalous` = positive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Anomalous samples flagged anomalous.
    pub tp: u64,
    /// Normal samples flagged anomalous.
    pub fp: u64,
    /// Normal samples flagged normal.
    pub tn: u64,
    /// Anomalous samples flagged normal.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl ConfusionMatrix {
    /// Counts with the decision `score >= threshold` (the convention of the PR curve, so the
    /// F1 at an F1-adaptive threshold equals F1-max).
    ///
    /// # Errors
    /// [`Empty`](MetricsError::Empty), [`LengthMismatch`](MetricsError::LengthMismatch),
    /// [`NonFinite`](MetricsError::NonFinite) for a score or the threshold
    /// (`index == usize::MAX` names the threshold).
    pub fn at_threshold<L: Label>(scores: &[f32], labels: &[L], threshold: f32) -> Result<Self> {
        let what = "confusion matrix";
        if scores.is_empty() {
            return Err(MetricsError::Empty { what });
        }
        if labels.len() != scores.len() {
            return Err(MetricsError::LengthMismatch {
                what,
                expected: scores.len(),
                got: labels.len(),
            });
        }
        checked_key(what, usize::MAX, threshold)?;
        let mut m = Self::default();
        for (i, (&s, &l)) in scores.iter().zip(labels).enumerate() {
            checked_key(what, i, s)?;
            m.add(s >= threshold, l.is_positive());
        }
        Ok(m)
    }

    /// Counts from hard predictions.
    ///
    /// # Errors
    /// [`Empty`](MetricsError::Empty), [`LengthMismatch`](MetricsError::LengthMismatch).
    pub fn from_predictions<L: Label>(predicted: &[bool], labels: &[L]) -> Result<Self> {
        let what = "confusion matrix";
        if predicted.is_empty() {
            return Err(MetricsError::Empty { what });
        }
        if labels.len() != predicted.len() {
            return Err(MetricsError::LengthMismatch {
                what,
                expected: predicted.len(),
                got: labels.len(),
            });
        }
        let mut m = Self::default();
        predicted
            .iter()
            .zip(labels)
            .for_each(|(&p, &l)| m.add(p, l.is_positive()));
        Ok(m)
    }

    #[inline]
    fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, false) => self.tn += 1,
            (false, true) => self.fn_ += 1,
        }
    }

    /// Total number of samples.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// Recall of the anomalous class, `None` without anomalous samples.
    pub fn tpr(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Recall of the normal class, `None` without normal samples.
    pub fn tnr(&self) -> Option<f64> {
        ratio(self.tn, self.tn + self.fp)
    }

    /// Precision, `None` when nothing is flagged anomalous.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    /// Fraction of correct decisions (0 for an empty matrix).
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total()).unwrap_or(0.0)
    }

    /// F1 score `2 tp / (2 tp + fp + fn)` (0 when there is no positive at all).
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_).unwrap_or(0.0)
    }

    /// Balanced accuracy as scikit-learn's `balanced_accuracy_score`: the mean recall of the
    /// classes present (with one class only it is that class's recall; 0 for an empty matrix).
    pub fn balanced_accuracy(&self) -> f64 {
        match (self.tpr(), self.tnr()) {
            (Some(a), Some(b)) => 0.5 * (a + b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => 0.0,
        }
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Balanced accuracy of the decision `score >= threshold`.
///
/// # Errors
/// As [`ConfusionMatrix::at_threshold`].
pub fn balanced_accuracy<L: Label>(scores: &[f32], labels: &[L], threshold: f32) -> Result<f64> {
    Ok(ConfusionMatrix::at_threshold(scores, labels, threshold)?.balanced_accuracy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let s = [0.1f32, 0.4, 0.35, 0.8, 0.9];
        let l = [false, false, true, true, false];
        let m = ConfusionMatrix::at_threshold(&s, &l, 0.4).unwrap();
        assert_eq!(
            m,
            ConfusionMatrix {
                tp: 1,
                fp: 2,
                tn: 1,
                fn_: 1
            }
        );
        // sklearn.metrics.balanced_accuracy_score([0,0,1,1,0],[0,1,0,1,1]) = (1/3 + 1/2) / 2
        assert!((m.balanced_accuracy() - (1.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
        assert!((m.f1() - 0.4).abs() < 1e-12);
        let one = ConfusionMatrix::from_predictions(&[true, false], &[true, true]).unwrap();
        assert_eq!(one.balanced_accuracy(), 0.5);
        assert_eq!(one.tnr(), None);
        assert!(ConfusionMatrix::at_threshold(&s, &l, f32::NAN).is_err());
        assert!(balanced_accuracy(&s, &l[..2], 0.5).is_err());
    }
}
