//! The per-position multivariate Gaussians of PaDiM (section 3.2 of the paper), fitted in a
//! streaming way, and the Mahalanobis distance.
//!
//! For every grid position `p` the fit keeps, in `f64`, the sum of the embeddings and the sum
//! of their outer products (lower triangle), both taken about a per-position shift (the first
//! training embedding) so that `sum_sq - sum sum^T / n` does not cancel catastrophically.
//! Memory is `O(positions * d^2)`, independent of the number of images. At the end
//!
//! ```text
//! mu_p = shift_p + sum_p / n
//! S_p  = (sum_sq_p - sum_p sum_p^T / n) / (n - 1) + eps * I      (unbiased, as np.cov / anomalib)
//! S_p  = L_p L_p^T                                              (Cholesky, f64)
//! W_p  = L_p^-1,   so  S_p^-1 = W_p^T W_p                          (stored in f32, packed)
//! M(x) = sqrt((x - mu_p)^T S_p^-1 (x - mu_p)) = || W_p (x - mu_p) ||
//! ```
//!
//! With one training image the covariance is `eps * I`. A covariance that is singular before
//! the ridge (a constant channel, fewer images than channels) is still positive definite with
//! it; if rounding makes a pivot non-positive the ridge of that position is raised tenfold (at
//! most six times, with a warning) before giving up with [`PadimError::NotPositiveDefinite`].
//!
//! Triangles are stored packed by rows: entry `(i, j)`, `j <= i`, at `i (i + 1) / 2 + j`.

use rayon::prelude::*;

use crate::PadimError;

/// Length of a packed lower triangle of a `d x d` matrix.
pub fn tri_len(d: usize) -> usize {
    d * (d + 1) / 2
}

fn row_off(i: usize) -> usize {
    i * (i + 1) / 2
}

/// Streaming sums for the per-position Gaussians.
#[derive(Clone, Debug)]
pub struct GaussianAccumulator {
    positions: usize,
    dim: usize,
    count: usize,
    shift: Vec<f64>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl GaussianAccumulator {
    /// Empty sums for `positions` grid positions of `dim`-dimensional embeddings
    /// (`positions * dim * (dim + 1) / 2` doubles).
    pub fn new(positions: usize, dim: usize) -> Self {
        Self {
            positions,
            dim,
            count: 0,
            shift: Vec::new(),
            sum: vec![0.0; positions * dim],
            sum_sq: vec![0.0; positions * tri_len(dim)],
        }
    }

    /// Grid positions.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Embedding dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Images accumulated so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The sums as `(count, shift, sum, sum_sq)`: what a model file keeps for exact updates.
    pub fn parts(&self) -> (usize, &[f64], &[f64], &[f64]) {
        (self.count, &self.shift, &self.sum, &self.sum_sq)
    }

    /// Rebuilds sums saved from [`GaussianAccumulator::parts`], checking every length.
    pub fn from_parts(
        positions: usize,
        dim: usize,
        count: usize,
        shift: Vec<f64>,
        sum: Vec<f64>,
        sum_sq: Vec<f64>,
    ) -> Result<Self, PadimError> {
        let shift_len = if count == 0 { 0 } else { positions * dim };
        if shift.len() != shift_len
            || sum.len() != positions * dim
            || sum_sq.len() != positions * tri_len(dim)
            || shift
                .iter()
                .chain(&sum)
                .chain(&sum_sq)
                .any(|v| !v.is_finite())
        {
            return Err(PadimError::InvalidConfig {
                name: "sums",
                reason: format!(
                    "{} + {} + {} values (not all finite?) do not fit {positions} positions x \
                     {dim} dims",
                    shift.len(),
                    sum.len(),
                    sum_sq.len()
                ),
            });
        }
        Ok(Self {
            positions,
            dim,
            count,
            shift,
            sum,
            sum_sq,
        })
    }

    /// Adds a batch of embeddings laid out `[positions][batch][dim]`.
    ///
    /// # Panics
    /// When `x.len() != positions * batch * dim` (a bug of the caller, not a data error).
    pub fn add(&mut self, x: &[f32], batch: usize) {
        let (p, d) = (self.positions, self.dim);
        assert_eq!(
            x.len(),
            p * batch * d,
            "embedding buffer has the wrong length"
        );
        if batch == 0 {
            return;
        }
        if self.shift.is_empty() {
            self.shift = (0..p)
                .flat_map(|q| {
                    x[q * batch * d..q * batch * d + d]
                        .iter()
                        .map(|&v| v as f64)
                })
                .collect();
        }
        let t = tri_len(d);
        self.sum_sq
            .par_chunks_mut(t)
            .zip(self.sum.par_chunks_mut(d))
            .zip(x.par_chunks(batch * d))
            .zip(self.shift.par_chunks(d))
            .for_each_init(
                || vec![0.0f64; batch * d],
                |c, (((sq, sum), xs), shift)| {
                    for (b, cb) in c.chunks_exact_mut(d).enumerate() {
                        let xb = &xs[b * d..(b + 1) * d];
                        for ((cv, &xv), (&s, acc)) in
                            cb.iter_mut().zip(xb).zip(shift.iter().zip(sum.iter_mut()))
                        {
                            *cv = xv as f64 - s;
                            *acc += *cv;
                        }
                    }
                    for i in 0..d {
                        let row = &mut sq[row_off(i)..row_off(i) + i + 1];
                        for cb in c.chunks_exact(d) {
                            let a = cb[i];
                            for (r, &v) in row.iter_mut().zip(&cb[..=i]) {
                                *r += a * v;
                            }
                        }
                    }
                },
            );
        self.count += batch;
    }

    /// Means, regularised covariances and their inverse Cholesky factors.
    pub fn finish(&self, regularization: f64) -> Result<Gaussians, PadimError> {
        if self.count == 0 {
            return Err(PadimError::NoTrainingImages);
        }
        let (d, t) = (self.dim, tri_len(self.dim));
        let n = self.count as f64;
        let denom = if self.count > 1 { n - 1.0 } else { 1.0 };
        /// Mean and inverse factor of one position.
        type Position = (Vec<f32>, Vec<f32>);
        let results: Vec<Result<Position, PadimError>> = (0..self.positions)
            .into_par_iter()
            .map(|p| {
                let sum = &self.sum[p * d..(p + 1) * d];
                let shift = &self.shift[p * d..(p + 1) * d];
                let sq = &self.sum_sq[p * t..(p + 1) * t];
                let mean: Vec<f32> = shift
                    .iter()
                    .zip(sum)
                    .map(|(&s, &v)| (s + v / n) as f32)
                    .collect();
                let mut cov = vec![0.0f64; t];
                for i in 0..d {
                    for j in 0..=i {
                        cov[row_off(i) + j] = (sq[row_off(i) + j] - sum[i] * sum[j] / n) / denom;
                    }
                }
                let w = regularized_inverse_factor(&cov, d, regularization).map_err(
                    |(row, pivot, ridge)| PadimError::NotPositiveDefinite {
                        position: p,
                        row,
                        pivot,
                        regularization: ridge,
                    },
                )?;
                Ok((mean, w))
            })
            .collect();
        let mut mean = Vec::with_capacity(self.positions * d);
        let mut inv = Vec::with_capacity(self.positions * t);
        for r in results {
            let (m, w) = r?;
            mean.extend_from_slice(&m);
            inv.extend_from_slice(&w);
        }
        Gaussians::from_parts(self.positions, d, mean, inv)
    }
}

/// `W = L^-1` (packed, f32) for `cov + ridge * I = L L^T`, raising the ridge tenfold up to six
/// times when a pivot is not positive. Error: `(row, pivot, last ridge)`.
fn regularized_inverse_factor(
    cov: &[f64],
    d: usize,
    regularization: f64,
) -> Result<Vec<f32>, (usize, f64, f64)> {
    let mut ridge = regularization;
    let mut a = cov.to_vec();
    for attempt in 0..7 {
        a.copy_from_slice(cov);
        for i in 0..d {
            a[row_off(i) + i] += ridge;
        }
        match cholesky_packed(&mut a, d) {
            Ok(()) => return Ok(lower_inverse(&a, d).into_iter().map(|v| v as f32).collect()),
            Err((row, pivot)) => {
                if attempt == 6 {
                    return Err((row, pivot, ridge));
                }
                log::warn!(
                    "covariance not positive definite (pivot {pivot:e} at row {row}) with ridge \
                     {ridge:e}: retrying with {:e}",
                    ridge * 10.0
                );
                ridge *= 10.0;
            }
        }
    }
    Err((0, f64::NAN, ridge))
}

fn dot64(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ac, ar) = a.split_at(a.len() / 4 * 4);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(4).zip(bc.chunks_exact(4)) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// In-place Cholesky (Cholesky-Banachiewicz, by rows) of a packed symmetric positive definite
/// matrix: on success `a` holds `L` with `A = L L^T`. Error: `(row, pivot)` of the first pivot
/// that is not positive and finite.
pub fn cholesky_packed(a: &mut [f64], d: usize) -> Result<(), (usize, f64)> {
    for j in 0..d {
        let oj = row_off(j);
        let (done, rest) = a.split_at_mut(oj);
        let row = &mut rest[..=j];
        for k in 0..j {
            let ok = row_off(k);
            let lk = &done[ok..ok + k];
            let s = row[k] - dot64(&row[..k], lk);
            row[k] = s / done[ok + k];
        }
        let diag = row[j] - dot64(&row[..j], &row[..j]);
        if !(diag > 0.0 && diag.is_finite()) {
            return Err((j, diag));
        }
        row[j] = diag.sqrt();
    }
    Ok(())
}

/// Inverse of a packed lower-triangular matrix with positive diagonal, column by column
/// (forward substitution of `L w = e_j`), packed lower-triangular.
pub fn lower_inverse(l: &[f64], d: usize) -> Vec<f64> {
    let mut w = vec![0.0f64; tri_len(d)];
    let mut col = vec![0.0f64; d];
    for j in 0..d {
        col[j] = 1.0 / l[row_off(j) + j];
        w[row_off(j) + j] = col[j];
        for i in j + 1..d {
            let oi = row_off(i);
            let v = -dot64(&l[oi + j..oi + i], &col[j..i]) / l[oi + i];
            col[i] = v;
            w[oi + j] = v;
        }
    }
    w
}

/// The dot product one image's quadratic form used before [`quadratic_forms`] took eight images
/// at once (its reference in the tests).
#[cfg(test)]
fn dot32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// Images whose quadratic forms are computed together, one per vector lane.
const LANES: usize = 8;

/// `|W delta_b|^2` for the `LANES` columns `delta_b` of `delta` (`d x LANES`, dimension-major)
/// and the packed lower-triangular `W` (`d (d + 1) / 2`): every lane computes exactly what
/// [`dot32`] computes for its image (the same products, sums and order), so the result is that
/// of one image at a time, bit for bit; the lanes make it one vector operation per term.
fn quadratic_forms(w: &[f32], delta: &[[f32; LANES]]) -> [f32; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: AVX is present.
        return unsafe { quadratic_forms_avx(w, delta) };
    }
    quadratic_forms_lanes(w, delta)
}

/// [`quadratic_forms_lanes`] compiled for AVX (8-lane vectors; no FMA, so no contraction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn quadratic_forms_avx(w: &[f32], delta: &[[f32; LANES]]) -> [f32; LANES] {
    quadratic_forms_lanes(w, delta)
}

#[inline(always)]
fn quadratic_forms_lanes(w: &[f32], delta: &[[f32; LANES]]) -> [f32; LANES] {
    let add = |a: [f32; LANES], b: [f32; LANES]| std::array::from_fn(|l| a[l] + b[l]);
    let mut q = [0.0f32; LANES];
    for i in 0..delta.len() {
        let row = &w[row_off(i)..row_off(i) + i + 1];
        let dl = &delta[..=i];
        // dot32: eight partial sums over whole chunks of eight, a fixed tree, then the tail.
        let whole = row.len() / 8 * 8;
        let mut acc = [[0.0f32; LANES]; 8];
        for (wc, dc) in row[..whole]
            .chunks_exact(8)
            .zip(dl[..whole].chunks_exact(8))
        {
            for k in 0..8 {
                for l in 0..LANES {
                    acc[k][l] += wc[k] * dc[k][l];
                }
            }
        }
        let mut y = add(
            add(add(acc[0], acc[1]), add(acc[2], acc[3])),
            add(add(acc[4], acc[5]), add(acc[6], acc[7])),
        );
        for (&wv, dv) in row[whole..].iter().zip(&dl[whole..]) {
            for l in 0..LANES {
                y[l] += wv * dv[l];
            }
        }
        for l in 0..LANES {
            q[l] += y[l] * y[l];
        }
    }
    q
}

/// Fitted per-position Gaussians: means and inverse Cholesky factors (`f32`).
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussians {
    positions: usize,
    dim: usize,
    mean: Vec<f32>,
    inv_chol: Vec<f32>,
}

impl Gaussians {
    /// Wraps means `[positions * dim]` and packed factors `W = L^-1`
    /// `[positions * dim (dim + 1) / 2]`, checking lengths and finiteness.
    pub fn from_parts(
        positions: usize,
        dim: usize,
        mean: Vec<f32>,
        inv_chol: Vec<f32>,
    ) -> Result<Self, PadimError> {
        let bad = |reason: String| PadimError::InvalidConfig {
            name: "gaussians",
            reason,
        };
        if positions == 0 || dim == 0 {
            return Err(bad(format!("{positions} positions x {dim} dims is empty")));
        }
        if mean.len() != positions * dim || inv_chol.len() != positions * tri_len(dim) {
            return Err(bad(format!(
                "{} means and {} factor entries for {positions} positions x {dim} dims",
                mean.len(),
                inv_chol.len()
            )));
        }
        if let Some(i) = mean.iter().chain(&inv_chol).position(|v| !v.is_finite()) {
            return Err(bad(format!("non-finite value at flat index {i}")));
        }
        Ok(Self {
            positions,
            dim,
            mean,
            inv_chol,
        })
    }

    /// Grid positions.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Embedding dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All means, `[positions][dim]`.
    pub fn means(&self) -> &[f32] {
        &self.mean
    }

    /// All packed inverse Cholesky factors, `[positions][dim (dim + 1) / 2]`.
    pub fn inv_chol(&self) -> &[f32] {
        &self.inv_chol
    }

    /// The inverse covariance `W^T W` of one position as a dense row-major `d x d` matrix
    /// (`f64`, for inspection and tests).
    pub fn inverse_covariance(&self, position: usize) -> Vec<f64> {
        let d = self.dim;
        let w = &self.inv_chol[position * tri_len(d)..(position + 1) * tri_len(d)];
        let mut out = vec![0.0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                let mut s = 0.0;
                for k in i.max(j)..d {
                    s += w[row_off(k) + i] as f64 * w[row_off(k) + j] as f64;
                }
                out[i * d + j] = s;
            }
        }
        out
    }

    /// Mahalanobis distances of a batch of embeddings laid out `[positions][batch][dim]`;
    /// returns `[batch][positions]` (`sqrt` of the non-negative quadratic form).
    ///
    /// # Panics
    /// When `x.len() != positions * batch * dim`.
    pub fn mahalanobis(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let (p, d, t) = (self.positions, self.dim, tri_len(self.dim));
        assert_eq!(
            x.len(),
            p * batch * d,
            "embedding buffer has the wrong length"
        );
        if batch == 0 {
            return Vec::new();
        }
        let mut by_pos = vec![0.0f32; p * batch];
        by_pos
            .par_chunks_mut(batch)
            .zip(x.par_chunks(batch * d))
            .zip(self.mean.par_chunks(d).zip(self.inv_chol.par_chunks(t)))
            .for_each_init(
                || vec![[0.0f32; LANES]; d],
                |delta, ((out, xs), (mean, w))| {
                    for (o, xg) in out.chunks_mut(LANES).zip(xs.chunks(LANES * d)) {
                        // x - mu of up to LANES images, dimension-major (one lane per image).
                        for (b, xb) in xg.chunks_exact(d).enumerate() {
                            for ((dv, &xv), &m) in delta.iter_mut().zip(xb).zip(mean) {
                                dv[b] = xv - m;
                            }
                        }
                        let q = quadratic_forms(w, delta);
                        for (ov, &qv) in o.iter_mut().zip(&q) {
                            *ov = qv.max(0.0).sqrt();
                        }
                    }
                },
            );
        let mut out = vec![0.0f32; batch * p];
        for (q, row) in by_pos.chunks_exact(batch).enumerate() {
            for (b, &v) in row.iter().enumerate() {
                out[b * p + q] = v;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn eight_images_at_once_equal_one_at_a_time_bit_for_bit() {
        for d in [1usize, 7, 8, 9, 17, 100] {
            let w = values(tri_len(d), d as u64);
            let cols: Vec<Vec<f32>> = (0..LANES)
                .map(|b| values(d, 100 + b as u64).iter().map(|v| 3.0 * v).collect())
                .collect();
            let delta: Vec<[f32; LANES]> = (0..d)
                .map(|j| std::array::from_fn(|b| cols[b][j]))
                .collect();
            let got = quadratic_forms(&w, &delta);
            let plain = quadratic_forms_lanes(&w, &delta);
            for (b, col) in cols.iter().enumerate() {
                let mut q = 0.0f32;
                for i in 0..d {
                    let y = dot32(&w[row_off(i)..row_off(i) + i + 1], &col[..=i]);
                    q += y * y;
                }
                assert_eq!(got[b].to_bits(), q.to_bits(), "d = {d}, image {b}");
                assert_eq!(plain[b].to_bits(), q.to_bits(), "d = {d}, image {b}");
            }
        }
    }

    /// Direct two-pass mean and covariance of `n` samples `[n][d]`.
    fn two_pass(samples: &[Vec<f64>], d: usize) -> (Vec<f64>, Vec<f64>) {
        let n = samples.len() as f64;
        let mut mean = vec![0.0; d];
        for s in samples {
            for i in 0..d {
                mean[i] += s[i] / n;
            }
        }
        let mut cov = vec![0.0; d * d];
        for s in samples {
            for i in 0..d {
                for j in 0..d {
                    cov[i * d + j] += (s[i] - mean[i]) * (s[j] - mean[j]) / (n - 1.0);
                }
            }
        }
        (mean, cov)
    }

    /// Dense inverse by Gauss-Jordan, for checking.
    fn gauss_jordan_inverse(a: &[f64], d: usize) -> Vec<f64> {
        let mut m = a.to_vec();
        let mut inv: Vec<f64> = (0..d * d)
            .map(|k| if k / d == k % d { 1.0 } else { 0.0 })
            .collect();
        for c in 0..d {
            let piv = (c..d)
                .max_by(|&x, &y| m[x * d + c].abs().total_cmp(&m[y * d + c].abs()))
                .unwrap();
            for k in 0..d {
                m.swap(c * d + k, piv * d + k);
                inv.swap(c * d + k, piv * d + k);
            }
            let p = m[c * d + c];
            for k in 0..d {
                m[c * d + k] /= p;
                inv[c * d + k] /= p;
            }
            for r in 0..d {
                if r != c {
                    let f = m[r * d + c];
                    for k in 0..d {
                        m[r * d + k] -= f * m[c * d + k];
                        inv[r * d + k] -= f * inv[c * d + k];
                    }
                }
            }
        }
        inv
    }

    /// `n` images, `p` positions, `d` dims, fed in batches of `bs`; layout [p][b][d].
    fn fit(samples: &[Vec<f32>], p: usize, d: usize, bs: usize, reg: f64) -> Gaussians {
        let mut acc = GaussianAccumulator::new(p, d);
        for chunk in samples.chunks(bs) {
            let b = chunk.len();
            let mut x = vec![0.0f32; p * b * d];
            for (bi, img) in chunk.iter().enumerate() {
                for q in 0..p {
                    x[(q * b + bi) * d..(q * b + bi + 1) * d]
                        .copy_from_slice(&img[q * d..(q + 1) * d]);
                }
            }
            acc.add(&x, b);
        }
        assert_eq!(acc.count(), samples.len());
        acc.finish(reg).unwrap()
    }

    #[test]
    fn streaming_fit_matches_two_pass() {
        let (n, p, d) = (13, 3, 5);
        // Offset values far from zero: the shifted sums must not cancel.
        let samples: Vec<Vec<f32>> = (0..n)
            .map(|k| {
                values(p * d, k as u64 + 1)
                    .iter()
                    .map(|v| 100.0 + v)
                    .collect()
            })
            .collect();
        let g = fit(&samples, p, d, 4, 0.01);
        for q in 0..p {
            let per: Vec<Vec<f64>> = samples
                .iter()
                .map(|s| s[q * d..(q + 1) * d].iter().map(|&v| v as f64).collect())
                .collect();
            let (mean, mut cov) = two_pass(&per, d);
            for i in 0..d {
                cov[i * d + i] += 0.01;
                assert!(close(g.means()[q * d + i] as f64, mean[i], 1e-6));
            }
            let want = gauss_jordan_inverse(&cov, d);
            let got = g.inverse_covariance(q);
            for (a, b) in got.iter().zip(&want) {
                assert!(close(*a, *b, 1e-4), "{a} vs {b}");
            }
            // Mahalanobis of one sample against the direct quadratic form.
            let x = &per[0];
            let mut m2 = 0.0;
            for i in 0..d {
                for j in 0..d {
                    m2 += (x[i] - mean[i]) * want[i * d + j] * (x[j] - mean[j]);
                }
            }
            let mut buf = vec![0.0f32; p * d];
            for qq in 0..p {
                buf[qq * d..(qq + 1) * d].copy_from_slice(&samples[0][qq * d..(qq + 1) * d]);
            }
            let dist = g.mahalanobis(&buf, 1);
            assert!(
                close(dist[q] as f64, m2.sqrt(), 1e-3),
                "{} vs {}",
                dist[q],
                m2.sqrt()
            );
        }
    }

    #[test]
    fn batch_split_does_not_change_the_fit() {
        let (n, p, d) = (9, 2, 4);
        let samples: Vec<Vec<f32>> = (0..n).map(|k| values(p * d, 50 + k as u64)).collect();
        let a = fit(&samples, p, d, 1, 0.01);
        let b = fit(&samples, p, d, 9, 0.01);
        for (x, y) in a.inv_chol().iter().zip(b.inv_chol()) {
            assert!(close(*x as f64, *y as f64, 1e-5));
        }
    }

    #[test]
    fn singular_covariances_give_finite_distances() {
        // d = 6 > n = 3 images, and channel 2 constant: rank-deficient before the ridge.
        let (n, p, d) = (3, 2, 6);
        let samples: Vec<Vec<f32>> = (0..n)
            .map(|k| {
                let mut v = values(p * d, 9 + k as u64);
                v[2] = 5.0;
                v[d + 2] = 5.0;
                v
            })
            .collect();
        let g = fit(&samples, p, d, 2, 0.01);
        let probe: Vec<f32> = values(p * 2 * d, 77).iter().map(|v| v * 10.0).collect();
        let dist = g.mahalanobis(&probe, 2);
        assert!(dist.iter().all(|v| v.is_finite() && *v >= 0.0), "{dist:?}");
        // Moving along the constant channel costs 1 / sqrt(0.01) = 10 per unit.
        let mut at_mean = g.means().to_vec();
        let base = g.mahalanobis(&at_mean, 1);
        assert!(base.iter().all(|v| v.abs() < 1e-3));
        at_mean[2] += 1.0;
        let moved = g.mahalanobis(&at_mean, 1);
        assert!((moved[0] - 10.0).abs() < 1e-2, "{moved:?}");
        // A single image: covariance = ridge * I, distance = |x - mu| / 0.1.
        let one = fit(&samples[..1], p, d, 1, 0.01);
        let mut x = samples[0].clone();
        x[0] += 0.5;
        let m = one.mahalanobis(&x, 1);
        assert!((m[0] - 5.0).abs() < 1e-3 && m[1].abs() < 1e-3, "{m:?}");
    }

    #[test]
    fn a_batch_answers_as_its_images_one_by_one() {
        // 11 images: a group of eight and a partial one (lanes left over from the first).
        let (n, p, d, batch) = (5, 3, 10, 11);
        let samples: Vec<Vec<f32>> = (0..n).map(|k| values(p * d, 40 + k as u64)).collect();
        let g = fit(&samples, p, d, 2, 0.01);
        let x: Vec<f32> = values(p * batch * d, 5).iter().map(|v| 4.0 * v).collect();
        let all = g.mahalanobis(&x, batch);
        for b in 0..batch {
            let one: Vec<f32> = (0..p)
                .flat_map(|q| x[(q * batch + b) * d..(q * batch + b + 1) * d].to_vec())
                .collect();
            let want = g.mahalanobis(&one, 1);
            assert_eq!(&all[b * p..(b + 1) * p], &want[..], "image {b}");
        }
    }

    #[test]
    fn cholesky_and_inverse_are_exact_on_a_known_matrix() {
        // A = [[4, 2], [2, 3]]: L = [[2, 0], [1, sqrt 2]].
        let mut a = vec![4.0, 2.0, 3.0];
        cholesky_packed(&mut a, 2).unwrap();
        assert!(
            close(a[0], 2.0, 1e-12) && close(a[1], 1.0, 1e-12) && close(a[2], 2f64.sqrt(), 1e-12)
        );
        let w = lower_inverse(&a, 2);
        assert!(close(w[0], 0.5, 1e-12) && close(w[2], 1.0 / 2f64.sqrt(), 1e-12));
        assert!(close(w[1], -0.5 / 2f64.sqrt(), 1e-12));
        // Not positive definite: the failing pivot is reported.
        let mut b = vec![1.0, 2.0, 1.0];
        assert_eq!(cholesky_packed(&mut b, 2).unwrap_err().0, 1);
    }

    #[test]
    fn from_parts_checks_lengths_and_values() {
        assert!(Gaussians::from_parts(1, 2, vec![0.0; 2], vec![1.0; 3]).is_ok());
        assert!(Gaussians::from_parts(1, 2, vec![0.0; 2], vec![1.0; 4]).is_err());
        assert!(Gaussians::from_parts(1, 2, vec![f32::NAN, 0.0], vec![1.0; 3]).is_err());
    }
}
