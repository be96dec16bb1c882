//! Score fusion: a logistic regression on a few per-image scores (e.g. PatchCore's anomaly
//! score and the classifier's logit), and its cross-validated comparison with each score
//! alone.
//!
//! The regression standardises every input on the training rows, weights the two classes
//! equally (sklearn's `class_weight="balanced"`, since the metric is balanced accuracy) and
//! adds a small L2 penalty (`l2 = 1e-2` on the standardised weights, not the bias) so that
//! separable data gives finite weights; it is fitted by Newton's method to convergence, so the
//! result is exact and deterministic.

use serde::{Deserialize, Serialize};

use crate::RegressError;
use crate::cv::MeanStd;
use crate::folds::Fold;
use ad_metrics::ConfusionMatrix;

/// A fitted logistic regression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogisticRegression {
    mean: Vec<f64>,
    scale: Vec<f64>,
    weights: Vec<f64>,
    bias: f64,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Solves `a x = b` (small, symmetric positive definite) by Gaussian elimination with partial
/// pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, bottom) = a.split_at_mut(col + 1);
        let pivot = &top[col];
        for (r, row) in bottom.iter_mut().enumerate() {
            let f = row[col] / pivot[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot[col..]) {
                *x -= f * p;
            }
            b[col + 1 + r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

impl LogisticRegression {
    /// Fits rows `x` (all of one width) to labels `y` (`true` = defective).
    pub fn fit(x: &[Vec<f64>], y: &[bool], l2: f64) -> Result<Self, RegressError> {
        let n = x.len();
        let d = x.first().map_or(0, Vec::len);
        if n != y.len() || d == 0 || x.iter().any(|r| r.len() != d) {
            return Err(RegressError::Data(format!(
                "{n} rows of width {d} for {} labels",
                y.len()
            )));
        }
        if x.iter().flatten().any(|v| !v.is_finite()) {
            return Err(RegressError::Data("a fusion input is not finite".into()));
        }
        crate::classifier::check_two_classes(y)?;
        let pos = y.iter().filter(|&&v| v).count() as f64;
        let neg = n as f64 - pos;
        let cw = [n as f64 / (2.0 * neg), n as f64 / (2.0 * pos)];
        let mean: Vec<f64> = (0..d)
            .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64)
            .collect();
        let scale: Vec<f64> = (0..d)
            .map(|j| {
                let v = x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n as f64;
                if v > 0.0 { v.sqrt() } else { 1.0 }
            })
            .collect();
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|r| (0..d).map(|j| (r[j] - mean[j]) / scale[j]).collect())
            .collect();
        // Parameters: [w_0 .. w_{d-1}, bias].
        let mut theta = vec![0.0; d + 1];
        for _ in 0..100 {
            let mut grad = vec![0.0; d + 1];
            let mut hess = vec![vec![0.0; d + 1]; d + 1];
            for (r, &label) in z.iter().zip(y) {
                let f = r.iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>() + theta[d];
                let p = sigmoid(f);
                let w = cw[label as usize];
                let e = w * (p - label as u8 as f64);
                let h = w * p * (1.0 - p);
                for a in 0..=d {
                    let xa = if a < d { r[a] } else { 1.0 };
                    grad[a] += e * xa;
                    for b in 0..=d {
                        let xb = if b < d { r[b] } else { 1.0 };
                        hess[a][b] += h * xa * xb;
                    }
                }
            }
            for j in 0..d {
                grad[j] += l2 * n as f64 * theta[j];
                hess[j][j] += l2 * n as f64;
            }
            let step = solve(hess, grad.clone())
                .ok_or_else(|| RegressError::Data("singular fusion problem".into()))?;
            let mut change = 0.0f64;
            for (t, s) in theta.iter_mut().zip(&step) {
                *t -= s;
                change = change.max(s.abs());
            }
            if change < 1e-10 {
                break;
            }
        }
        Ok(Self {
            mean,
            scale,
            weights: theta[..d].to_vec(),
            bias: theta[d],
        })
    }

    /// The fused log-odds of a row.
    pub fn decision(&self, row: &[f64]) -> f64 {
        row.iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.weights)
            .map(|(((v, m), s), w)| w * (v - m) / s)
            .sum::<f64>()
            + self.bias
    }
}

/// One input set's cross-validated result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusionResult {
    /// The inputs, joined with " + ".
    pub inputs: String,
    /// Balanced accuracy of the decision `log-odds >= 0` on each fold's test rows.
    pub balanced_accuracy: MeanStd,
    /// AUROC of the pooled out-of-fold log-odds.
    pub auroc: f64,
    /// Confusion matrix summed over folds.
    pub confusion: ConfusionMatrix,
}

/// Cross-validates a logistic regression on every single column and on all columns together,
/// over the given `folds` (the same folds as the models that produced the columns).
pub fn compare_fusion(
    columns: &[(&str, &[f64])],
    labels: &[bool],
    folds: &[Fold],
) -> Result<Vec<FusionResult>, RegressError> {
    let mut sets: Vec<Vec<usize>> = (0..columns.len()).map(|c| vec![c]).collect();
    if columns.len() > 1 {
        sets.push((0..columns.len()).collect());
    }
    let n = labels.len();
    if columns.iter().any(|(_, c)| c.len() != n) {
        return Err(RegressError::Data(
            "fusion columns of different lengths".into(),
        ));
    }
    sets.iter()
        .map(|set| {
            let row = |i: usize| -> Vec<f64> { set.iter().map(|&c| columns[c].1[i]).collect() };
            let mut oof = vec![0.0f32; n];
            let mut bal = Vec::new();
            let mut total = ConfusionMatrix::default();
            for fold in folds {
                let x: Vec<Vec<f64>> = fold.train.iter().map(|&i| row(i)).collect();
                let y: Vec<bool> = fold.train.iter().map(|&i| labels[i]).collect();
                let lr = LogisticRegression::fit(&x, &y, 1e-2)?;
                let pred: Vec<bool> = fold
                    .test
                    .iter()
                    .map(|&i| {
                        let z = lr.decision(&row(i));
                        oof[i] = z as f32;
                        z >= 0.0
                    })
                    .collect();
                let truth: Vec<bool> = fold.test.iter().map(|&i| labels[i]).collect();
                let cm = ConfusionMatrix::from_predictions(&pred, &truth)?;
                bal.push(cm.balanced_accuracy());
                total.tp += cm.tp;
                total.fp += cm.fp;
                total.tn += cm.tn;
                total.fn_ += cm.fn_;
            }
            Ok(FusionResult {
                inputs: set
                    .iter()
                    .map(|&c| columns[c].0)
                    .collect::<Vec<_>>()
                    .join(" + "),
                balanced_accuracy: MeanStd::of(&bal).unwrap_or_default(),
                auroc: ad_metrics::roc_auc(&oof, labels)?,
                confusion: total,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folds::stratified_k_fold;

    #[test]
    fn separates_a_separable_problem_with_finite_weights() {
        let x: Vec<Vec<f64>> = (0..40).map(|i| vec![i as f64]).collect();
        let y: Vec<bool> = (0..40).map(|i| i >= 30).collect();
        let lr = LogisticRegression::fit(&x, &y, 1e-2).unwrap();
        assert!(lr.weights[0].is_finite() && lr.weights[0] > 0.0);
        let acc = x
            .iter()
            .zip(&y)
            .filter(|(r, l)| (lr.decision(r) >= 0.0) == **l)
            .count();
        assert!(acc >= 38, "{acc}");
    }

    #[test]
    fn fusion_of_two_noisy_views_beats_each() {
        // Label = a + b > 0 with a, b independent: each alone is a weak view, together exact.
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut y = Vec::new();
        for i in 0..200u64 {
            let u = ((i * 7919) % 200) as f64 / 100.0 - 1.0;
            let v = ((i * 104_729) % 197) as f64 / 98.5 - 1.0;
            a.push(u);
            b.push(v);
            y.push(u + v > 0.0);
        }
        let strata: Vec<&str> = y.iter().map(|&l| if l { "bad" } else { "good" }).collect();
        let folds = stratified_k_fold(&strata, 5, 0).unwrap();
        let r = compare_fusion(&[("a", &a), ("b", &b)], &y, &folds).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].inputs, "a + b");
        assert!(r[2].balanced_accuracy.mean > r[0].balanced_accuracy.mean + 0.1);
        assert!(r[2].balanced_accuracy.mean > r[1].balanced_accuracy.mean + 0.1);
        assert!(r[2].auroc > 0.98, "{}", r[2].auroc);
    }

    #[test]
    fn refuses_one_class() {
        let x = vec![vec![1.0], vec![2.0]];
        assert!(matches!(
            LogisticRegression::fit(&x, &[false, false], 1e-2),
            Err(RegressError::SingleClass { .. })
        ));
    }
}
