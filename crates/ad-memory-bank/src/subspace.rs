//! The principal subspace of a set of feature vectors, for exact lower bounds of distances.
//!
//! Projecting on an orthonormal subspace never lengthens a vector, so the distance between two
//! points' coordinates bounds their distance from below; on CNN patch features a few dominant
//! directions hold most of the variance and the bound is tight. Used by the coreset's pruned
//! greedy search and by [`crate::BruteForce`]'s pruned nearest-neighbour search.

use rayon::prelude::*;

use crate::matmul::gemm_abt;

/// An orthonormal basis (f64) of the top principal subspace of the projected features and their mean.
///
/// For any orthonormal `P`, `|P(a - c)| <= |a - c|`: the distance between two points' `k`-d
/// coordinates is a lower bound of their true distance, tight when the features have a few dominant
/// directions (as CNN patch features do). The coordinates are computed in f64 and stored in f32; the
/// bound subtracts a slack covering the f32 rounding of the stored coordinates and of the f32 distance
/// kernel, so it never exceeds the kernel's computed value.
#[derive(Clone, Debug)]
pub(crate) struct Pca {
    /// Number of components `k`.
    k: usize,
    mean: Vec<f64>,
    /// `k x d`, orthonormal rows.
    basis: Vec<f64>,
    /// `basis` rounded to f32, for the f32 matrix products.
    basis_f32: Vec<f32>,
    /// The mean rounded to f32: the fixed centre [`Pca::augment`] measures from.
    centre: Vec<f32>,
    /// Share of the sample's variance in the subspace (`sum b' C b / trace C`).
    pub(crate) captured: f64,
}

impl Pca {
    /// The top-`k` principal subspace of `points` (`n x d`) from (up to) `max_rows` evenly
    /// spaced rows, by subspace iteration (deterministic).
    pub(crate) fn fit(points: &[f32], n: usize, d: usize, k: usize, max_rows: usize) -> Self {
        let step = n.div_ceil(max_rows.max(1)).max(1);
        let rows: Vec<usize> = (0..n).step_by(step).collect();
        let mut mean = vec![0.0f64; d];
        for &r in &rows {
            for (m, &v) in mean.iter_mut().zip(&points[r * d..(r + 1) * d]) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows.len() as f64);
        // The sample covariance (unnormalised) as one f32 product of the centred sample with
        // itself, two halves of its rows in parallel. Its precision only affects how good the
        // subspace is, never the rigour of the bounds: any orthonormal basis gives valid ones.
        let m = rows.len();
        let mut xt = vec![0.0f32; d * m];
        for (ri, &r) in rows.iter().enumerate() {
            for (j, (&v, mu)) in points[r * d..(r + 1) * d].iter().zip(&mean).enumerate() {
                xt[j * m + ri] = (f64::from(v) - mu) as f32;
            }
        }
        let mut cov32 = vec![0.0f32; d * d];
        let half = d.div_ceil(2).max(1);
        cov32
            .par_chunks_mut(half * d)
            .zip(xt.par_chunks(half * m))
            .for_each(|(dst, lhs)| gemm_abt(dst, lhs, &xt, lhs.len() / m, d, m, 1.0));
        let cov: Vec<f64> = cov32.iter().map(|&c| f64::from(c)).collect();
        // Subspace iteration: basis <- orth(C basis), starting from a fixed pseudo-random basis;
        // the products in f32, the orthonormalisation in f64.
        let mut basis: Vec<f64> = (0..k * d)
            .map(|i| (i as f64 * 0.618_033_988_75).fract() - 0.5)
            .collect();
        orthonormalise(&mut basis, k, d);
        let mut b32 = vec![0.0f32; k * d];
        let mut next = vec![0.0f32; k * d];
        for _ in 0..30 {
            b32.iter_mut().zip(&basis).for_each(|(o, &b)| *o = b as f32);
            // `C` is symmetric: `basis C^T = basis C`, one row of `C basis^T` per basis vector.
            gemm_abt(&mut next, &b32, &cov32, k, d, d, 1.0);
            basis
                .iter_mut()
                .zip(&next)
                .for_each(|(o, &v)| *o = f64::from(v));
            orthonormalise(&mut basis, k, d);
        }
        let trace: f64 = (0..d).map(|i| cov[i * d + i]).sum();
        let captured = if trace > 0.0 {
            (0..k)
                .map(|p| {
                    let b = &basis[p * d..(p + 1) * d];
                    (0..d)
                        .map(|i| {
                            let ci: f64 = cov[i * d..(i + 1) * d]
                                .iter()
                                .zip(b)
                                .map(|(c, x)| c * x)
                                .sum();
                            b[i] * ci
                        })
                        .sum::<f64>()
                })
                .sum::<f64>()
                / trace
        } else {
            0.0
        };
        Self {
            k,
            basis_f32: basis.iter().map(|&b| b as f32).collect(),
            centre: mean.iter().map(|&m| m as f32).collect(),
            mean,
            basis,
            captured,
        }
    }

    /// Coordinates of `row` (f32) and the slack of the stored f32 values.
    pub(crate) fn project(&self, row: &[f32], out: &mut [f32]) -> f32 {
        let d = self.mean.len();
        let mut l1 = 0.0f64;
        for (p, o) in out.iter_mut().enumerate() {
            let v: f64 = self.basis[p * d..(p + 1) * d]
                .iter()
                .zip(row)
                .zip(&self.mean)
                .map(|((b, &x), m)| b * (x as f64 - m))
                .sum();
            *o = v as f32;
            l1 += v.abs();
        }
        // f32 storage rounds each coordinate by at most |v| 2^-24; be generous.
        (l1 * 1e-6) as f32
    }

    /// Coordinates of every row of `points` (`n x k`) and their error allowance, by an f32
    /// matrix product per block of rows (in parallel).
    ///
    /// The allowance is rigorous: a length-`d` f32 dot product with any summation order (FMA or
    /// not) is within `d u |x| |b|` of the exact one (`u = 2^-24`, Cauchy-Schwarz), `|b| = 1`,
    /// and rounding `b` to f32 adds `u |x|`; over `k` coordinates the L2 error is at most
    /// `sqrt(k) (d + 1) u |x|`. The mean's coordinates are subtracted in f64, and the result
    /// stored in f32 (the `1e-6 l1` term of [`Pca::project`]).
    pub(crate) fn project_all(&self, points: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
        const BLOCK: usize = 1024;
        let k = self.k;
        let n = points.len() / d;
        let basis = &self.basis_f32;
        let offset: Vec<f64> = (0..k)
            .map(|p| {
                self.basis[p * d..(p + 1) * d]
                    .iter()
                    .zip(&self.mean)
                    .map(|(b, m)| b * m)
                    .sum()
            })
            .collect();
        let factor = (k as f32).sqrt() * (d as f32 + 1.0) * f32::EPSILON * 0.5 * 1.01;
        let mut coords = vec![0.0f32; n * k];
        let mut slack = vec![0.0f32; n];
        coords
            .par_chunks_mut(k * BLOCK)
            .zip(slack.par_chunks_mut(BLOCK))
            .zip(points.par_chunks(d * BLOCK))
            .for_each(|((c, s), rows)| {
                let m = s.len();
                gemm_abt(c, rows, basis, m, k, d, 1.0);
                for ((c, s), row) in c.chunks_mut(k).zip(s).zip(rows.chunks(d)) {
                    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt() * 1.01;
                    let mut l1 = 0.0f64;
                    for (v, o) in c.iter_mut().zip(&offset) {
                        let centred = f64::from(*v) - o;
                        *v = centred as f32;
                        l1 += centred.abs();
                    }
                    *s = factor * norm + (l1 * 1e-6) as f32;
                }
            });
        (coords, slack)
    }
}

impl Pca {
    /// Augmented coordinates `z(x) = [P (x - c), |(I - P'P)(x - c)|]` of every row of `points`
    /// (`n x d`) into `out` (`n x (k + 1)`), and an L2 error allowance of each into `slack`;
    /// `c` is the mean rounded to f32. Sequential (callers parallelise over blocks of rows).
    ///
    /// For any fixed centre `c` and orthonormal `P`, `|z(a) - z(b)| <= |a - b|`: the first `k`
    /// coordinates differ by `P (a - b)` and the last by at most `|(I - P'P)(a - b)|`, two
    /// orthogonal parts of `a - b`.
    ///
    /// The allowance is rigorous: the centred row `x - c` is rounded to f32 (L2 error
    /// `u |x - c|`, `u = 2^-24`); its `k` coordinates come from one f32 matrix product with the
    /// f32-rounded basis (each within `(d + 2) u |x - c|` of the exact one, as in
    /// [`Pca::project_all`]: L2 `sigma = sqrt(k) (d + 2) u |x - c|`); the residual
    /// `r = sqrt(t^2 - |y|^2)` is evaluated in f64 from the squared length `t^2` of the rounded
    /// centred row and the f32 coordinates `y`, so `|r'^2 - r^2| <= e2 = sigma (2 |y| + sigma)
    /// + 3 u t^2` and `|r' - r| <= min(sqrt(e2), e2 / r')`. The allowance is the sum.
    pub(crate) fn augment(
        &self,
        points: &[f32],
        d: usize,
        out: &mut Vec<f32>,
        slack: &mut Vec<f32>,
    ) {
        let k = self.k;
        let n = points.len() / d;
        let (basis, centre) = (&self.basis_f32, &self.centre);
        let mut centred: Vec<f32> = points[..n * d]
            .chunks_exact(d)
            .flat_map(|row| row.iter().zip(centre).map(|(x, c)| x - c))
            .collect();
        let mut coords = vec![0.0f32; n * k];
        gemm_abt(&mut coords, &centred, basis, n, k, d, 1.0);
        let u = f64::from(f32::EPSILON) * 0.5;
        let factor = (k as f64).sqrt() * (d as f64 + 2.0) * u * 1.01;
        out.clear();
        out.reserve(n * (k + 1));
        slack.clear();
        slack.reserve(n);
        for (row, y) in centred.chunks_exact_mut(d).zip(coords.chunks_exact(k)) {
            let t2: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let y2: f64 = y.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let sigma = factor * t2.sqrt();
            let r2 = (t2 - y2).max(0.0);
            let r = r2.sqrt();
            let e2 = sigma * (2.0 * y2.sqrt() + sigma) + 3.0 * u * t2;
            let er = if r > 0.0 {
                e2.sqrt().min(e2 / r)
            } else {
                e2.sqrt()
            };
            out.extend_from_slice(y);
            out.push(r as f32);
            // The residual's own f32 rounding: at most u r.
            slack.push(((sigma + er + u * r) * 1.01) as f32);
        }
    }
}

/// Gram-Schmidt (twice) on the `k` rows of `basis` (`k x d`).
fn orthonormalise(basis: &mut [f64], k: usize, d: usize) {
    for _ in 0..2 {
        for p in 0..k {
            for q in 0..p {
                let dot: f64 = (0..d).map(|i| basis[p * d + i] * basis[q * d + i]).sum();
                for i in 0..d {
                    basis[p * d + i] -= dot * basis[q * d + i];
                }
            }
            let norm = (0..d)
                .map(|i| basis[p * d + i] * basis[p * d + i])
                .sum::<f64>()
                .sqrt()
                .max(1e-300);
            for i in 0..d {
                basis[p * d + i] /= norm;
            }
        }
    }
}
