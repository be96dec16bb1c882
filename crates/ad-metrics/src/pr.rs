//! Precision-recall curve, F1-max and its threshold, average precision.
//!
//! The curve is scikit-learn's `precision_recall_curve` (version >= 1.1: every distinct
//! threshold is kept, precision and recall end with the point `(1, 0)` that has no threshold).
//! F1-max is anomalib's `F1Max` / `F1AdaptiveThreshold`: `f1 = 2 p r / (p + r + 1e-10)` at each
//! threshold, the maximum, and the threshold that reaches it (the lowest such threshold when
//! several tie, as `argmax` over the ascending thresholds picks the first).

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::rank::{Label, Ranking, score_of};
use crate::roc::decimate_indices;

/// The additive constant of anomalib's F1 formula (it avoids 0/0 when `p = r = 0`).
pub const F1_EPSILON: f64 = 1e-10;

/// A precision-recall curve in scikit-learn's layout: thresholds ascending, `precision` and
/// `recall` one element longer (the final `(precision 1, recall 0)` point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrCurve {
    /// Precision at each threshold, then 1.
    pub precision: Vec<f64>,
    /// Recall at each threshold, then 0.
    pub recall: Vec<f64>,
    /// Distinct score thresholds, ascending (positive when `score >= threshold`).
    pub thresholds: Vec<f32>,
}

impl PrCurve {
    /// A thinned copy for plotting: keeps the ends and every point that moves at least
    /// `1 / max_points` in precision or recall from the last kept one.
    pub fn decimated(&self, max_points: usize) -> PrCurve {
        let keep = decimate_indices(&self.recall, &self.precision, max_points);
        PrCurve {
            precision: keep.iter().map(|&i| self.precision[i]).collect(),
            recall: keep.iter().map(|&i| self.recall[i]).collect(),
            thresholds: keep
                .iter()
                .filter(|&&i| i < self.thresholds.len())
                .map(|&i| self.thresholds[i])
                .collect(),
        }
    }
}

/// The best F1 score over all thresholds and where it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct F1Max {
    /// Maximum of `2 p r / (p + r + 1e-10)`.
    pub f1: f64,
    /// Score threshold reaching it (positive when `score >= threshold`).
    pub threshold: f32,
    /// Precision at that threshold.
    pub precision: f64,
    /// Recall at that threshold.
    pub recall: f64,
}

/// scikit-learn's `precision_recall_curve`.
///
/// # Errors
/// [`SingleClass`](MetricsError::SingleClass) when there is no positive (recall is undefined;
/// scikit-learn warns and sets it to 1). Negatives may be absent.
pub fn precision_recall_curve<L: Label>(scores: &[f32], labels: &[L]) -> Result<PrCurve> {
    let r = Ranking::build("precision_recall_curve", scores, labels)?;
    require_pos(&r, "precision_recall_curve")?;
    Ok(curve_from_ranking(&r))
}

/// F1-max and its threshold (anomalib's `F1Max` and `F1AdaptiveThreshold`).
///
/// # Errors
/// As [`precision_recall_curve`]: at least one positive is needed.
///
/// ```
/// let best = ad_metrics::f1_max(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])?;
/// assert!((best.f1 - 0.8).abs() < 1e-9);
/// assert_eq!(best.threshold, 0.35);
/// # Ok::<(), ad_metrics::MetricsError>(())
/// ```
pub fn f1_max<L: Label>(scores: &[f32], labels: &[L]) -> Result<F1Max> {
    let r = Ranking::build("f1_max", scores, labels)?;
    require_pos(&r, "f1_max")?;
    Ok(f1_from_ranking(&r))
}

/// Average precision (scikit-learn's `average_precision_score`: `sum (R_n - R_{n-1}) P_n`).
///
/// # Errors
/// As [`precision_recall_curve`].
pub fn average_precision<L: Label>(scores: &[f32], labels: &[L]) -> Result<f64> {
    let r = Ranking::build("average_precision", scores, labels)?;
    require_pos(&r, "average_precision")?;
    Ok(ap_from_ranking(&r))
}

fn require_pos(r: &Ranking, what: &'static str) -> Result<()> {
    if r.n_pos() == 0 {
        return Err(MetricsError::SingleClass {
            what,
            positives: 0,
            negatives: r.n_neg(),
        });
    }
    Ok(())
}

#[inline]
fn f1_of(tp: u64, fp: u64, n_pos: f64) -> (f64, f64, f64) {
    let p = tp as f64 / (tp + fp) as f64;
    let r = tp as f64 / n_pos;
    (2.0 * p * r / (p + r + F1_EPSILON), p, r)
}

/// F1-max of a ranking with at least one positive.
///
/// Only thresholds at a positive's score can be optimal (a lower threshold without a new
/// positive only adds false positives, which strictly lowers F1), so the corners suffice.
pub(crate) fn f1_from_ranking(r: &Ranking) -> F1Max {
    let n_pos = r.n_pos() as f64;
    let mut best = F1Max {
        f1: f64::NEG_INFINITY,
        threshold: f32::INFINITY,
        precision: 0.0,
        recall: 0.0,
    };
    for c in r.corners() {
        let (f1, p, rc) = f1_of(c.tp, c.fp, n_pos);
        // `>=`: walking thresholds downwards, the last maximum is the lowest threshold, the one
        // `argmax` over ascending thresholds returns.
        if f1 >= best.f1 {
            best = F1Max {
                f1,
                threshold: score_of(c.key),
                precision: p,
                recall: rc,
            };
        }
    }
    best
}

/// Average precision of a ranking with at least one positive (recall only moves at corners).
pub(crate) fn ap_from_ranking(r: &Ranking) -> f64 {
    let n_pos = r.n_pos() as f64;
    let mut ap = 0.0;
    for c in r.corners() {
        ap += (c.tp_here as f64 / n_pos) * (c.tp as f64 / (c.tp + c.fp) as f64);
    }
    ap.max(0.0)
}

/// PR curve of a ranking with at least one positive.
pub(crate) fn curve_from_ranking(r: &Ranking) -> PrCurve {
    let n_pos = r.n_pos() as f64;
    let mut precision = Vec::new();
    let mut recall = Vec::new();
    let mut thresholds = Vec::new();
    for s in r.steps() {
        precision.push(s.tp as f64 / (s.tp + s.fp) as f64);
        recall.push(s.tp as f64 / n_pos);
        thresholds.push(score_of(s.key));
    }
    precision.reverse();
    recall.reverse();
    thresholds.reverse();
    precision.push(1.0);
    recall.push(0.0);
    PrCurve {
        precision,
        recall,
        thresholds,
    }
}

/// PR curve thinned while it is walked (see [`PrCurve::decimated`]); for millions of pixels.
/// Built from the corners: at each positive score, the point just before it (the lowest
/// precision of the previous recall) and the point at it.
pub(crate) fn decimated_from_ranking(r: &Ranking, max_points: usize) -> PrCurve {
    let n_pos = r.n_pos() as f64;
    let step = 1.0 / max_points.max(1) as f64;
    let (mut precision, mut recall, mut thresholds) =
        (Vec::<f64>::new(), Vec::<f64>::new(), Vec::new());
    let mut pending: Option<(f64, f64, f32)> = None;
    let mut add = |p: f64,
                   rc: f64,
                   t: f32,
                   precision: &mut Vec<f64>,
                   recall: &mut Vec<f64>,
                   thresholds: &mut Vec<f32>| {
        let moved = match (precision.last(), recall.last()) {
            (Some(&lp), Some(&lr)) => (p - lp).abs() >= step || (rc - lr).abs() >= step,
            _ => true,
        };
        if moved {
            if let Some((pp, pr, pt)) = pending.take() {
                precision.push(pp);
                recall.push(pr);
                thresholds.push(pt);
            }
            precision.push(p);
            recall.push(rc);
            thresholds.push(t);
        } else {
            pending = Some((p, rc, t));
        }
    };
    let mut tp_prev = 0u64;
    for c in r.corners() {
        let t = score_of(c.key);
        if tp_prev > 0 && c.fp_above > 0 {
            let p = tp_prev as f64 / (tp_prev + c.fp_above) as f64;
            add(
                p,
                tp_prev as f64 / n_pos,
                t,
                &mut precision,
                &mut recall,
                &mut thresholds,
            );
        }
        let p = c.tp as f64 / (c.tp + c.fp) as f64;
        add(
            p,
            c.tp as f64 / n_pos,
            t,
            &mut precision,
            &mut recall,
            &mut thresholds,
        );
        tp_prev = c.tp;
    }
    if let Some((p, rc, t)) = pending {
        precision.push(p);
        recall.push(rc);
        thresholds.push(t);
    }
    if let Some(&lowest) = r.neg.first() {
        // the lowest threshold: every sample positive
        let total = (r.n_pos() + r.n_neg()) as f64;
        precision.push(n_pos / total);
        recall.push(1.0);
        thresholds.push(score_of(lowest).min(thresholds.last().copied().unwrap_or(f32::INFINITY)));
    }
    precision.reverse();
    recall.reverse();
    thresholds.reverse();
    precision.push(1.0);
    recall.push(0.0);
    PrCurve {
        precision,
        recall,
        thresholds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn curve_matches_sklearn_example() {
        // sklearn docs: precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        let c =
            precision_recall_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        let expect_p = [0.5, 2.0 / 3.0, 0.5, 1.0, 1.0];
        let expect_r = [1.0, 1.0, 0.5, 0.5, 0.0];
        for (a, b) in c.precision.iter().zip(expect_p) {
            close(*a, b, 1e-12);
        }
        for (a, b) in c.recall.iter().zip(expect_r) {
            close(*a, b, 1e-12);
        }
        assert_eq!(c.thresholds, vec![0.1, 0.35, 0.4, 0.8]);
        // average_precision_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.8333...
        close(
            average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
            5.0 / 6.0,
            1e-12,
        );
    }

    #[test]
    fn f1_edge_cases() {
        // no negatives: precision 1 everywhere, best at the lowest threshold (recall 1)
        let b = f1_max(&[0.2, 0.7], &[true, true]).unwrap();
        close(b.f1, 1.0, 1e-9);
        assert_eq!(b.threshold, 0.2);
        assert!(matches!(
            f1_max(&[0.2, 0.7], &[false, false]),
            Err(MetricsError::SingleClass { .. })
        ));
        // ties: all equal scores -> one threshold
        let t = f1_max(&[0.5; 4], &[true, false, false, true]).unwrap();
        close(t.f1, 2.0 * 0.5 / 1.5, 1e-9);
    }
}
