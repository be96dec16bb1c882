//! Exact k-nearest-neighbour search that skips most distances: principal-subspace lower bounds.
//!
//! CNN patch features have a few dominant directions. Every vector `x` is mapped to
//! `z(x) = [P (x - c), |(I - P'P)(x - c)|]`: its coordinates in the top [`COMPONENTS`] principal
//! subspace of the bank and the length of the rest ([`Pca::augment`]), so that
//! `|z(a) - z(b)| <= |a - b|` for any two vectors. A search, per tile of queries:
//! 1. finds each query's [`probe`] nearest bank rows in `z` (the fused kernel on 16-d vectors) and
//!    computes their exact values: the `k`-th smallest is an upper bound `T` of the `k`-th
//!    neighbour's squared distance;
//! 2. lists the bank rows whose `z`-distance is below `sqrt(T)` (plus rounding allowances), again
//!    with the fused kernel;
//! 3. computes the exact values of the listed rows only, with the fused kernel's arithmetic (the
//!    same fused multiply-adds over the dimensions in the same order, see [`crate::fused`]), and
//!    keeps the `k` smallest, ties to the smaller bank index.
//!
//! A skipped row provably has a larger computed value than the `k`-th kept one (the allowances
//! cover the f32 rounding of the projection, of both kernels and of the residual), so the result
//! is bit-identical to [`crate::KnnKernel::Fused`]'s. How much is skipped depends on the data:
//! on PatchCore's bottle features (15 components hold most of the variance) most rows are; on
//! structureless data nothing is, and [`Pruner::build`] declines (the caller then scans
//! everything).

// The kernels run on x86-64 only; elsewhere their types exist but are never scanned.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use crate::fused::{self, NR, QueryTile, Sink, TopK};
use crate::knn::{offer, sq_norm};
use crate::subspace::Pca;

/// Principal components of the bounds; with the residual length, 16-d vectors `z`.
pub(crate) const COMPONENTS: usize = 15;
/// Length of `z`.
const AUG: usize = COMPONENTS + 1;
/// Below this share of the bank's variance in the subspace the bounds cannot prune enough to
/// pay for the two extra passes (i.i.d. Gaussian data: `COMPONENTS / d`; PIPED's small banks,
/// 55-65 %, list a third of the bank per query; bottle's 21,401-row bank: 89.5 %, 1 %).
const MIN_CAPTURED: f64 = 0.75;
/// Smallest bank worth the set-up (a PCA and two passes per query tile).
const MIN_ROWS: usize = 2048;
/// Smallest dimension worth it (at `d <= 4 * AUG` a pass in `z` costs too much of a full one).
const MIN_DIM: usize = 4 * AUG;
/// Largest dimension served: the PCA's covariance takes `d^2` f64 per thread (2 MiB at 512);
/// wider banks (WideResNet-50's 1,536) are scanned in full.
const MAX_DIM: usize = 512;
/// Largest `k` served (the first pass probes a few more rows than `k`).
pub(crate) const MAX_K: usize = 16;
/// Queries per task.
pub(crate) const TILE_QUERIES: usize = 256;
/// Most rows listed for one query in the second pass: a tenth of the bank, at most 4,096 (16
/// KiB). An exact value from a gather costs about five times a packed lane's, so a query whose
/// bounds rule out less than ~85 % of the bank is cheaper scanned in full, which it then is (at
/// most ~20 % above a plain full scan: the two 16-d passes); a tile's lists never exceed 4 MiB.
fn max_listed(n: usize) -> usize {
    (n / 10).clamp(64, 4096)
}

/// Rows the first pass probes per query for `k` neighbours (at most [`MAX_K`] + 2, at most `n`).
pub(crate) fn probe(k: usize, n: usize) -> usize {
    (k + 2).min(n)
}

/// The bank's principal subspace and every bank row's `z`, packed for the fused kernel.
#[derive(Clone, Debug)]
pub(crate) struct Pruner {
    pca: Pca,
    /// `z` of every bank row in [`fused::pack`]'s panel layout.
    packed: Vec<f32>,
    /// `|z|^2` per panel lane (f32 sums), `+inf` on padding lanes.
    znorms: Vec<f32>,
    /// Largest error allowance of a bank row's `z`.
    slack_max: f64,
    /// Largest `|z|` of a bank row.
    z_max: f64,
    /// Largest bank row length `|m|`.
    m_max: f64,
    /// Panels per scanned block (the fused kernel's L2-sized block).
    block_panels: usize,
    /// Most rows listed per query ([`max_listed`]; smaller in tests).
    max_listed: usize,
}

/// Counts of one pruned or screened search, for the debug log (and the record of full scans).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PruneStats {
    /// Exact values computed.
    pub(crate) exact: u64,
    /// Query x bank pairs a full scan computes.
    pub(crate) pairs: u64,
    /// Queries scanned in full (too many rows listed).
    pub(crate) full_scans: u64,
}

impl Pruner {
    /// The bounds for `bank` (`n x d`, squared row norms `norms`), or `None` where they would
    /// not pay (small bank, `d` outside 64..=512, little variance in the subspace, no
    /// AVX-512F, or offsets `n * d` beyond `i32`, which the gathers of the exact pass use).
    pub(crate) fn build(bank: &[f32], n: usize, d: usize, norms: &[f32]) -> Option<Self> {
        if !fused::available()
            || n < MIN_ROWS
            || !(MIN_DIM..=MAX_DIM).contains(&d)
            || n.checked_mul(d).is_none_or(|nd| nd > i32::MAX as usize)
        {
            return None;
        }
        // Covariance from fewer rows at larger d: its cost grows with d^2.
        let max_rows = (8192 * 160 * 160 / (d * d)).clamp(2048, 8192);
        let pca = Pca::fit(bank, n, d, COMPONENTS, max_rows);
        if pca.captured < MIN_CAPTURED {
            return None;
        }
        let (mut z, mut slack) = (Vec::new(), Vec::new());
        {
            use rayon::prelude::*;
            let parts: Vec<(Vec<f32>, Vec<f32>)> = bank[..n * d]
                .par_chunks(1024 * d)
                .map(|rows| {
                    let (mut z, mut s) = (Vec::new(), Vec::new());
                    pca.augment(rows, d, &mut z, &mut s);
                    (z, s)
                })
                .collect();
            for (pz, ps) in parts {
                z.extend(pz);
                slack.extend(ps);
            }
        }
        let zn: Vec<f32> = z
            .chunks_exact(AUG)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let (mut packed, mut znorms) = (Vec::new(), Vec::new());
        fused::pack(&z, n, AUG, &zn, &mut packed, &mut znorms);
        let slack_max = slack.iter().fold(0.0f64, |a, &s| a.max(f64::from(s)));
        let z_max = zn.iter().fold(0.0f64, |a, &s| a.max(f64::from(s))).sqrt();
        let m_max = norms
            .iter()
            .fold(0.0f64, |a, &s| a.max(f64::from(s)))
            .sqrt();
        Some(Self {
            pca,
            packed,
            znorms,
            slack_max,
            z_max,
            m_max,
            block_panels: fused::block_rows(AUG) / NR,
            max_listed: max_listed(n),
        })
    }

    /// Share of the bank's variance in the subspace.
    pub(crate) fn captured(&self) -> f64 {
        self.pca.captured
    }

    /// Runs the fused kernel on `z` over the whole bank.
    fn sweep<S: Sink>(&self, tile: &mut QueryTile<'_>, sink: &mut S) {
        fused::sweep_packed(
            tile,
            sink,
            &self.packed,
            &self.znorms,
            AUG,
            self.block_panels,
        );
    }

    /// The `k` smallest values `|m|^2 - 2 q.m` (and their bank indices) of each of the `rows`
    /// queries `q` (`rows x d`) against `bank` (`n x d`, squared norms `norms`), ascending, ties
    /// to the smaller index: the fused kernel's candidates, bit for bit. `k <= MAX_K`, `k <= n`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn search_tile(
        &self,
        bank: &[f32],
        norms: &[f32],
        d: usize,
        q: &[f32],
        rows: usize,
        k: usize,
        stats: &mut PruneStats,
        full_bank: &fused::LazyPackedBank,
    ) -> (Vec<f32>, Vec<u32>) {
        let n = norms.len();
        let u = f64::from(f32::EPSILON) * 0.5;
        let (mut z, mut zslack) = (Vec::new(), Vec::new());
        self.pca.augment(&q[..rows * d], d, &mut z, &mut zslack);
        // 1. the rows nearest in z, and their exact values.
        let k1 = probe(k, n);
        let mut tile = QueryTile::new(&z, rows, AUG);
        let mut near = TopK::new(rows, k1);
        self.sweep(&mut tile, &mut near);
        let (_, probed) = near.into_candidates();
        let mut cd = vec![f32::INFINITY; rows * k];
        let mut ci = vec![u32::MAX; rows * k];
        let mut values = [0.0f32; 16];
        let mut batch: Vec<u32> = Vec::with_capacity(16);
        for r in 0..rows {
            // Every z value is finite, so all k1 <= n slots are filled; filtered all the same.
            batch.clear();
            batch.extend(
                probed[r * k1..(r + 1) * k1]
                    .iter()
                    .filter(|&&i| i != u32::MAX),
            );
            for chunk in batch.chunks(16) {
                exact_values(&q[r * d..(r + 1) * d], bank, norms, d, chunk, &mut values);
                for (&i, &v) in chunk.iter().zip(&values) {
                    offer(
                        &mut cd[r * k..(r + 1) * k],
                        &mut ci[r * k..(r + 1) * k],
                        v,
                        i,
                    );
                }
            }
        }
        stats.exact += (rows * k1) as u64;
        stats.pairs += (rows * n) as u64;
        // 2. the rows whose z-distance is below the k-th value's distance (with allowances).
        let mut bounds = Vec::with_capacity(rows);
        for r in 0..rows {
            let qr = &q[r * d..(r + 1) * d];
            let qn = sq_norm(qr);
            let q_len = f64::from(qn).sqrt() * 1.01;
            // Any row farther than t (exact squared distance) has a larger computed value
            // than the k-th: the computed `|m|^2 - 2 q.m + |q|^2` is within
            // (d + 2) u (|q| + |m|)^2 of the exact squared distance.
            let kth = f64::from(cd[r * k + k - 1]);
            let t = kth + f64::from(qn) + (d as f64 + 4.0) * u * (q_len + self.m_max).powi(2);
            let zr = &z[r * AUG..(r + 1) * AUG];
            let zq2: f64 = zr.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let zq = zq2.sqrt();
            // Kernel value in z: `|z_m|^2 - 2 z_q.z_m`, within (AUG + 2) u (|z_q| + |z_m|)^2 of
            // the exact `|z_q - z_m|^2 - |z_q|^2`.
            let e_z = (AUG as f64 + 4.0) * u * (zq + self.z_max).powi(2) * 1.01;
            let reach = t.max(0.0).sqrt() + f64::from(zslack[r]) + self.slack_max;
            let tau = reach * reach * (1.0 + 1e-9) + e_z - zq2;
            bounds.push(round_up(tau));
        }
        let mut listed = Listed {
            bounds,
            rows: vec![Vec::new(); rows],
            overflow: vec![false; rows],
            cap: self.max_listed,
        };
        self.sweep(&mut tile, &mut listed);
        // Queries the bounds could not narrow enough: the fused scan of every row.
        let full: Vec<usize> = (0..rows).filter(|&r| listed.overflow[r]).collect();
        stats.exact +=
            fused::scan_in_full(full_bank, q, &full, bank, norms, d, k, &mut cd, &mut ci);
        stats.full_scans += full.len() as u64;
        for &r in &full {
            listed.rows[r].clear();
        }
        // 3. exact values of the listed rows not probed in step 1.
        for (r, list) in listed.rows.iter().enumerate() {
            let ids = &probed[r * k1..(r + 1) * k1];
            let (cdr, cir) = (&mut cd[r * k..(r + 1) * k], &mut ci[r * k..(r + 1) * k]);
            let qr = &q[r * d..(r + 1) * d];
            for chunk in list.chunks(16) {
                batch.clear();
                batch.extend(chunk.iter().copied().filter(|i| !ids.contains(i)));
                if batch.is_empty() {
                    continue;
                }
                exact_values(qr, bank, norms, d, &batch, &mut values);
                for (&i, &v) in batch.iter().zip(&values) {
                    offer(cdr, cir, v, i);
                }
                stats.exact += batch.len() as u64;
            }
        }
        (cd, ci)
    }
}

/// The smallest f32 `>= x` (`+inf` for `x` beyond f32; NaN never occurs: inputs are finite).
fn round_up(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x { f.next_up() } else { f }
}

/// Sink of the second pass: every bank row whose value is below the query's fixed bound, up to
/// the cap per query (beyond, the query is marked for a full scan and listens no more).
struct Listed {
    bounds: Vec<f32>,
    rows: Vec<Vec<u32>>,
    overflow: Vec<bool>,
    cap: usize,
}

impl Sink for Listed {
    #[inline(always)]
    fn bound(&self, row: usize) -> f32 {
        self.bounds[row]
    }

    #[inline(always)]
    fn hits(&mut self, row: usize, _lanes: &[f32; NR], bits: u32, base: usize) {
        let list = &mut self.rows[row];
        if list.len() + bits.count_ones() as usize > self.cap {
            self.overflow[row] = true;
            // No value is below -inf: this query reports nothing more.
            self.bounds[row] = f32::NEG_INFINITY;
            return;
        }
        let mut bits = bits;
        while bits != 0 {
            let lane = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            list.push((base + lane) as u32);
        }
    }
}

/// `out[j] = |m|^2 - 2 q.m` for bank rows `m = ids[j]` (at most 16), computed exactly as the fused
/// kernel computes a lane: `acc = fma(q[p], m[p], acc)` for `p = 0..d` in order from zero, then
/// `fma(acc, -2, |m|^2)`.
///
/// # Panics
/// When more than 16 ids are given, an id is out of range, or the fused kernel is unavailable
/// (callers check all three).
pub(crate) fn exact_values(
    q: &[f32],
    bank: &[f32],
    norms: &[f32],
    d: usize,
    ids: &[u32],
    out: &mut [f32; 16],
) {
    assert!(
        ids.len() <= 16
            && ids.iter().all(|&i| (i as usize) < norms.len())
            && bank.len() >= norms.len() * d
            && q.len() >= d
            && fused::available(),
        "pruned::exact_values: bad arguments"
    );
    #[cfg(not(target_arch = "x86_64"))]
    let _ = out;
    #[cfg(target_arch = "x86_64")]
    if ids.len() <= 2 * SCALAR_ROWS {
        for (j, part) in ids.chunks(SCALAR_ROWS).enumerate() {
            let mut part_out = [0.0f32; 16];
            // SAFETY: `fused::available` checked FMA; every row `id` is inside `bank`
            // (asserted above).
            unsafe {
                avx512::exact_values_scalar(q, bank, norms, d, part, &mut part_out);
            }
            out[j * SCALAR_ROWS..j * SCALAR_ROWS + part.len()]
                .copy_from_slice(&part_out[..part.len()]);
        }
    } else {
        // SAFETY: AVX-512F is present and every gathered offset `id * d + p` (p < d) lies
        // inside `bank` (asserted above; `n * d` fits in i32, checked by the callers' builds).
        unsafe {
            avx512::exact_values(q, bank, norms, d, ids, out);
        }
    }
}

/// Up to this many rows, [`exact_values`] runs one scalar fused multiply-add chain per row
/// (contiguous loads; the chains are latency-bound, 4 cycles per dimension for up to 8 rows)
/// instead of one 16-lane gather per dimension (about 9 cycles however few lanes are live).
const SCALAR_ROWS: usize = 8;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// [`exact_values`](super::exact_values) for at most `SCALAR_ROWS` rows: row `j`'s value is
    /// `fma(q[p], m[p], acc)` for `p = 0..d` from zero, then `fma(acc, -2, |m|^2)`, the same
    /// IEEE operations in the same order as a lane of the fused kernel.
    ///
    /// # Safety
    /// FMA is available; every `id < norms.len()` and `(id + 1) * d <= bank.len()`;
    /// `q.len() >= d`; `ids.len() <= SCALAR_ROWS`.
    #[target_feature(enable = "fma")]
    pub(super) unsafe fn exact_values_scalar(
        q: &[f32],
        bank: &[f32],
        norms: &[f32],
        d: usize,
        ids: &[u32],
        out: &mut [f32; 16],
    ) {
        debug_assert!(ids.len() <= super::SCALAR_ROWS);
        // One fully unrolled body per number of rows (no per-row bound or count checks in the
        // loop over the dimensions).
        match ids.len() {
            1 => chains::<1>(q, bank, norms, d, ids, out),
            2 => chains::<2>(q, bank, norms, d, ids, out),
            3 => chains::<3>(q, bank, norms, d, ids, out),
            4 => chains::<4>(q, bank, norms, d, ids, out),
            5 => chains::<5>(q, bank, norms, d, ids, out),
            6 => chains::<6>(q, bank, norms, d, ids, out),
            7 => chains::<7>(q, bank, norms, d, ids, out),
            8 => chains::<8>(q, bank, norms, d, ids, out),
            _ => {}
        }
    }

    /// `R` fused multiply-add chains over the dimensions, one per row `ids[j]`; inlined into
    /// [`exact_values_scalar`] (whose FMA feature it then uses).
    #[inline(always)]
    fn chains<const R: usize>(
        q: &[f32],
        bank: &[f32],
        norms: &[f32],
        d: usize,
        ids: &[u32],
        out: &mut [f32; 16],
    ) {
        let rows: [&[f32]; R] = std::array::from_fn(|j| {
            let i = ids[j] as usize;
            &bank[i * d..(i + 1) * d]
        });
        let q = &q[..d];
        let mut acc = [0.0f32; R];
        for p in 0..d {
            // SAFETY: `q` and every row hold exactly d values and p < d.
            let qp = unsafe { *q.get_unchecked(p) };
            for j in 0..R {
                acc[j] = qp.mul_add(unsafe { *rows[j].get_unchecked(p) }, acc[j]);
            }
        }
        for j in 0..R {
            out[j] = acc[j].mul_add(-2.0, norms[ids[j] as usize]);
        }
    }

    /// # Safety
    /// AVX-512F; `ids.len() <= 16`; every `id * d + d - 1 < bank.len()` and fits in i32;
    /// `id < norms.len()`; `q.len() >= d`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn exact_values(
        q: &[f32],
        bank: &[f32],
        norms: &[f32],
        d: usize,
        ids: &[u32],
        out: &mut [f32; 16],
    ) {
        let mut idx = [0i32; 16];
        for (o, &i) in idx.iter_mut().zip(ids) {
            *o = i as i32;
        }
        let mask: __mmask16 = if ids.len() == 16 {
            0xffff
        } else {
            (1u16 << ids.len()) - 1
        };
        // SAFETY (whole block): masked-off lanes are never read; live lanes read `id * d + p`
        // with p < d and `norms[id]`, inside the buffers by the caller's contract.
        unsafe {
            let rows = _mm512_loadu_si512(idx.as_ptr().cast());
            let offsets = _mm512_mullo_epi32(rows, _mm512_set1_epi32(d as i32));
            let mut acc = _mm512_setzero_ps();
            let base = bank.as_ptr();
            for (p, &qp) in q[..d].iter().enumerate() {
                let m =
                    _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, offsets, base.add(p));
                acc = _mm512_fmadd_ps(_mm512_set1_ps(qp), m, acc);
            }
            let nm = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, rows, norms.as_ptr());
            let v = _mm512_fmadd_ps(acc, _mm512_set1_ps(-2.0), nm);
            _mm512_storeu_ps(out.as_mut_ptr(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::tests::low_rank;

    #[test]
    fn tile_equals_full_scan_prunes_and_caps_its_lists() {
        if !fused::available() {
            eprintln!("pruned k-NN not tested: this CPU has no AVX-512F");
            return;
        }
        let (n, d, rows) = (6000usize, 152usize, 200usize);
        let bank = low_rank(n, d, 6, 3);
        let norms: Vec<f32> = bank
            .chunks_exact(d)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let pruner = Pruner::build(&bank, n, d, &norms).expect("low-rank bank is pruned");
        assert!(pruner.captured() > 0.9, "captured {}", pruner.captured());
        let mut q = low_rank(rows, d, 6, 4);
        // Far outliers off the bank's subspace (large isotropic noise).
        let noise = crate::knn::tests::random(20, d, 11);
        for (v, e) in q[..20 * d].iter_mut().zip(&noise) {
            *v += 30.0 * e;
        }
        // One lazily packed bank for every search's full scans, as a `BruteForce` shares it.
        let packed = fused::LazyPackedBank::new();
        for k in [1usize, 9] {
            let want = fused::scan_rows(&q, rows, &bank, &norms, d, 0, n, k);
            let mut stats = PruneStats::default();
            let got = pruner.search_tile(&bank, &norms, d, &q, rows, k, &mut stats, &packed);
            assert_eq!(got, want, "k = {k}");
            // k = 1: a small share of the values computed (k = 9 lists a cluster's worth of rows
            // on this data, and its queries beyond a tenth of the bank are scanned in full).
            assert!(
                k > 1 || (stats.exact as f64) < 0.25 * (rows * n) as f64,
                "k = {k}: {} exact values for {rows} queries x {n} rows",
                stats.exact
            );
            // A small list cap: the queries that list more are scanned in full, same results.
            let mut capped = pruner.clone();
            capped.max_listed = if k == 1 { 64 } else { 1000 };
            let mut stats = PruneStats::default();
            let got = capped.search_tile(&bank, &norms, d, &q, rows, k, &mut stats, &packed);
            assert_eq!(got, want, "k = {k}, capped");
            assert!(
                stats.full_scans > 0 && stats.full_scans < rows as u64,
                "{stats:?}"
            );
        }
    }
}
