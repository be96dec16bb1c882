//! Receiver operating characteristic: exact AUROC and the ROC curve, as scikit-learn's
//! `roc_auc_score` and `roc_curve` compute them.
//!
//! Tied scores form one threshold, so a tie between a positive and a negative counts one half
//! (the trapezoid over the tie group), exactly like scikit-learn. The area is accumulated in
//! integers (`u128`) and divided once, so it is exact up to the final division.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rank::{Label, Ranking, score_of};

/// Points of a ROC curve, highest threshold first, as `sklearn.metrics.roc_curve` returns them.
///
/// The first point is `(0, 0)` with threshold `+inf` (scikit-learn >= 1.3 convention); the
/// last is `(1, 1)` at the lowest score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// False-positive rate at each threshold.
    pub fpr: Vec<f64>,
    /// True-positive rate at each threshold.
    pub tpr: Vec<f64>,
    /// Score threshold (a sample is positive when `score >= threshold`).
    pub thresholds: Vec<f32>,
}

impl RocCurve {
    /// Area under this curve by the trapezoid rule.
    pub fn auc(&self) -> f64 {
        trapezoid(&self.fpr, &self.tpr)
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.fpr.len()
    }

    /// `true` if the curve has no point.
    pub fn is_empty(&self) -> bool {
        self.fpr.is_empty()
    }

    /// A thinned copy for plotting: keeps the first and last point and every point that moves
    /// at least `1 / max_points` in either coordinate from the last kept one.
    pub fn decimated(&self, max_points: usize) -> RocCurve {
        let keep = decimate_indices(&self.fpr, &self.tpr, max_points);
        RocCurve {
            fpr: keep.iter().map(|&i| self.fpr[i]).collect(),
            tpr: keep.iter().map(|&i| self.tpr[i]).collect(),
            thresholds: keep.iter().map(|&i| self.thresholds[i]).collect(),
        }
    }
}

/// Exact area under the ROC curve (scikit-learn's `roc_auc_score` for binary labels).
///
/// # Errors
/// [`Empty`](crate::MetricsError::Empty), [`LengthMismatch`](crate::MetricsError::LengthMismatch),
/// [`NonFinite`](crate::MetricsError::NonFinite), and
/// [`SingleClass`](crate::MetricsError::SingleClass) when only one class is present (scikit-learn
/// raises too; there is no meaningful value).
///
/// ```
/// let auroc = ad_metrics::roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])?;
/// assert!((auroc - 0.75).abs() < 1e-12);
/// # Ok::<(), ad_metrics::MetricsError>(())
/// ```
pub fn roc_auc<L: Label>(scores: &[f32], labels: &[L]) -> Result<f64> {
    let r = Ranking::build("roc_auc", scores, labels)?;
    r.require_both("roc_auc")?;
    Ok(auc_from_ranking(&r))
}

/// The ROC curve (scikit-learn's `roc_curve`); `drop_intermediate` removes collinear points
/// exactly as scikit-learn does (the area is unchanged).
///
/// # Errors
/// As [`roc_auc`]: both classes must be present (scikit-learn would return NaN rates).
pub fn roc_curve<L: Label>(
    scores: &[f32],
    labels: &[L],
    drop_intermediate: bool,
) -> Result<RocCurve> {
    let r = Ranking::build("roc_curve", scores, labels)?;
    r.require_both("roc_curve")?;
    Ok(curve_from_ranking(&r, drop_intermediate))
}

/// AUROC of a ranking with both classes present: each positive counts the negatives below
/// it plus one half of those tied with it (the trapezoid over a tie group), in integers.
pub(crate) fn auc_from_ranking(r: &Ranking) -> f64 {
    let n_neg = r.n_neg() as u64;
    let mut twice: u128 = 0;
    for c in r.corners() {
        let below = n_neg - c.fp;
        let tied = c.fp - c.fp_above;
        twice += c.tp_here as u128 * (2 * below + tied) as u128;
    }
    twice as f64 / (2.0 * r.n_pos() as f64 * r.n_neg() as f64)
}

/// ROC curve of a ranking with both classes present, built in one streaming pass.
pub(crate) fn curve_from_ranking(r: &Ranking, drop_intermediate: bool) -> RocCurve {
    type Pt = (u32, u64, u64);
    let (p, n) = (r.n_pos() as f64, r.n_neg() as f64);
    let mut curve = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f32::INFINITY],
    };
    let mut push = |(key, tp, fp): Pt| {
        curve.fpr.push(fp as f64 / n);
        curve.tpr.push(tp as f64 / p);
        curve.thresholds.push(score_of(key));
    };
    if !drop_intermediate {
        r.steps().for_each(|s| push((s.key, s.tp, s.fp)));
        return curve;
    }
    // scikit-learn keeps the first and the last step and every step where the second
    // difference of `fps` or of `tps` is non-zero.
    let (mut a, mut b): (Option<Pt>, Option<Pt>) = (None, None);
    for s in r.steps() {
        let c = (s.key, s.tp, s.fp);
        match (a, b) {
            (_, None) => push(c),
            (None, Some(_)) => {}
            (Some(a), Some(b)) => {
                let d2 = |f: fn(&Pt) -> u64| f(&a) as i128 - 2 * f(&b) as i128 + f(&c) as i128;
                if d2(|x| x.1) != 0 || d2(|x| x.2) != 0 {
                    push(b);
                }
            }
        }
        if b.is_some() {
            a = b;
        }
        b = Some(c);
    }
    if let (Some(_), Some(last)) = (a, b) {
        push(last);
    }
    curve
}

/// ROC curve thinned while it is walked (see [`RocCurve::decimated`]); for millions of pixels.
/// Built from the corners (horizontal runs of negatives are straight), so it costs one scan.
pub(crate) fn decimated_from_ranking(r: &Ranking, max_points: usize) -> RocCurve {
    let (p, n) = (r.n_pos() as f64, r.n_neg() as f64);
    let step = 1.0 / max_points.max(1) as f64;
    let mut curve = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f32::INFINITY],
    };
    let mut pending: Option<(f64, f64, f32)> = None;
    let mut add = |x: f64, y: f64, t: f32, curve: &mut RocCurve| {
        let (lx, ly) = (
            curve.fpr[curve.fpr.len() - 1],
            curve.tpr[curve.tpr.len() - 1],
        );
        if (x - lx).abs() >= step || (y - ly).abs() >= step {
            if let Some((px, py, pt)) = pending.take() {
                // keep the corner before a long move so straight runs stay straight
                if (px - lx).abs() > 0.0 || (py - ly).abs() > 0.0 {
                    curve.fpr.push(px);
                    curve.tpr.push(py);
                    curve.thresholds.push(pt);
                }
            }
            curve.fpr.push(x);
            curve.tpr.push(y);
            curve.thresholds.push(t);
        } else {
            pending = Some((x, y, t));
        }
    };
    let mut tp_prev = 0u64;
    for c in r.corners() {
        let t = score_of(c.key);
        add(c.fp_above as f64 / n, tp_prev as f64 / p, t, &mut curve);
        add(c.fp as f64 / n, c.tp as f64 / p, t, &mut curve);
        tp_prev = c.tp;
    }
    let lowest = r.neg.first().map_or(f32::NEG_INFINITY, |&k| score_of(k));
    add(1.0, 1.0, lowest, &mut curve);
    if let Some((x, y, t)) = pending {
        curve.fpr.push(x);
        curve.tpr.push(y);
        curve.thresholds.push(t);
    }
    curve
}

/// Trapezoid rule over points sorted by `x` (`sklearn.metrics.auc`).
pub fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) * 0.5)
        .sum()
}

/// Indices kept when thinning a curve to about `max_points` steps per unit of each axis.
pub(crate) fn decimate_indices(x: &[f64], y: &[f64], max_points: usize) -> Vec<usize> {
    let n = x.len().min(y.len());
    if n <= max_points.max(2) {
        return (0..n).collect();
    }
    let step = 1.0 / max_points.max(1) as f64;
    let mut keep = vec![0];
    let mut last = 0;
    for i in 1..n - 1 {
        if (x[i] - x[last]).abs() >= step || (y[i] - y[last]).abs() >= step {
            keep.push(i);
            last = i;
        }
    }
    keep.push(n - 1);
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricsError;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn perfect_inverse_and_tied() {
        close(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]).unwrap(),
            1.0,
            1e-15,
        );
        close(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]).unwrap(),
            0.0,
            1e-15,
        );
        close(
            roc_auc(&[0.5; 6], &[false, true, false, true, true, false]).unwrap(),
            0.5,
            1e-15,
        );
        // one positive tied with one of two negatives: (1 + 0.5) / 2
        close(
            roc_auc(&[0.1, 0.5, 0.5], &[false, false, true]).unwrap(),
            0.75,
            1e-15,
        );
    }

    #[test]
    fn u8_labels_and_errors() {
        close(roc_auc(&[0.1f32, 0.9], &[0u8, 255]).unwrap(), 1.0, 1e-15);
        assert!(matches!(
            roc_auc(&[0.1, 0.2], &[true, true]),
            Err(MetricsError::SingleClass { .. })
        ));
        assert!(matches!(
            roc_auc(&[0.1, f32::INFINITY], &[true, false]),
            Err(MetricsError::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn curve_matches_sklearn_layout() {
        // sklearn.metrics.roc_curve([0,0,1,1],[0.1,0.4,0.35,0.8], drop_intermediate=False)
        let c = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true], false).unwrap();
        assert_eq!(c.thresholds, vec![f32::INFINITY, 0.8, 0.4, 0.35, 0.1]);
        assert_eq!(c.fpr, vec![0.0, 0.0, 0.5, 0.5, 1.0]);
        assert_eq!(c.tpr, vec![0.0, 0.5, 0.5, 1.0, 1.0]);
        close(c.auc(), 0.75, 1e-15);
        let d = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true], true).unwrap();
        assert_eq!(d.len(), 5);
        // collinear points are dropped and the area is unchanged
        let e = roc_curve(
            &[0.1, 0.2, 0.3, 0.4, 0.9],
            &[false, false, false, false, true],
            true,
        )
        .unwrap();
        assert_eq!(e.fpr, vec![0.0, 0.0, 1.0]);
        close(e.auc(), 1.0, 1e-15);
    }

    #[test]
    fn decimation_keeps_ends() {
        let x: Vec<f64> = (0..=1000).map(|i| i as f64 / 1000.0).collect();
        let keep = decimate_indices(&x, &x, 10);
        assert_eq!(keep.first(), Some(&0));
        assert_eq!(keep.last(), Some(&1000));
        assert!(keep.len() <= 12, "{}", keep.len());
    }
}
