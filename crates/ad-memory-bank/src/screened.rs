//! Exact k-nearest-neighbour search screened in bf16: the fused kernel's schedule on bf16 values
//! (`vdpbf16ps`: twice the arithmetic per instruction of an f32 FMA) finds the few rows that can
//! be among a query's `k` nearest, and only those get exact f32 values.
//!
//! Where the principal-subspace bounds of [`crate::pruned`] do not pay (wide features such as
//! WideResNet-50's 1,536 dimensions, data without a few dominant directions), every row must be
//! touched, and the cost is the arithmetic. Per tile of queries:
//! 1. bank rows and queries are centred on the bank's mean `c` and rounded to bf16 (`a~`, `b~`;
//!    centring keeps the rounding error proportional to the spread of the data, not to its
//!    offset); the bf16 kernel computes `w = |a~|^2 - 2 b~.a~` for every row;
//! 2. a row is kept while `w` is below a bound derived from the query's current `k`-th smallest
//!    `w`: the bound covers the bf16 rounding of both vectors (`|b~ - a~|` differs from `|q - m|`
//!    by at most the lengths of the two rounding errors, measured per vector in f64), the f32
//!    sums of the bf16 kernel and those of the exact kernel (see [`Screen::search_tile`]);
//! 3. the kept rows get the fused kernel's exact values (same arithmetic, bit for bit, see
//!    [`crate::pruned`]) and the `k` smallest are returned, ties to the smaller bank index.
//!
//! Every row of the full fused scan's top `k` is kept (proof in [`Window::bound_of`]), so results
//! are **bit-identical to [`crate::KnnKernel::Fused`]'s**. A query that keeps more than a tenth
//! of the bank (at most 4,096 rows; near-duplicates of many rows, a bank of tied rows) is scanned
//! in full. The bf16 copy of the bank costs half the f32 bank's memory.

// The kernels run on x86-64 only; elsewhere their types exist but are never scanned.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use crate::fused::{self, Bf16Pair, NR, QueryTile, Sink};
use crate::knn::{insert, offer, sq_norm};
use crate::pruned::{PruneStats, exact_values};

/// Largest `k` served.
pub(crate) const MAX_K: usize = 64;
/// Queries per task.
pub(crate) const TILE_QUERIES: usize = 256;
/// Smallest bank worth a second copy.
const MIN_ROWS: usize = 256;
/// Smallest dimension served (the bf16 pass must be much cheaper than the exact values).
const MIN_DIM: usize = 32;

/// Most rows kept for one query: a tenth of the bank, at least 64, at most 4,096.
fn max_listed(n: usize) -> usize {
    (n / 10).clamp(64, 4096)
}

/// Unit roundoff of f32.
const U: f64 = f32::EPSILON as f64 * 0.5;

/// `x` rounded to bf16 (to nearest, ties to even); values below f32's smallest normal become 0,
/// as `vdpbf16ps` would treat them. `x` is finite.
fn to_bf16(x: f32) -> u16 {
    if x.abs() < f32::MIN_POSITIVE {
        return 0;
    }
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// The value of a bf16.
fn from_bf16(h: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(h) << 16))
}

/// Centres `x` (`d` values) on `c`, rounds to bf16 pairs into `out` (`d.div_ceil(2)` pairs) and
/// returns `(|x~|^2, |x~ - (x - c)|)` evaluated in f64 (`x~` the rounded vector; the centring
/// in f32 is part of the rounding error measured).
fn round_centred(x: &[f32], c: &[f32], out: &mut [Bf16Pair]) -> (f64, f64) {
    let (mut sq, mut err) = (0.0f64, 0.0f64);
    for (p, o) in out.iter_mut().enumerate() {
        let mut halves = [0u16; 2];
        for (h, half) in halves.iter_mut().enumerate() {
            let i = 2 * p + h;
            if i < x.len() {
                let b = to_bf16(x[i] - c[i]);
                let v = from_bf16(b);
                sq += v * v;
                let e = v - (f64::from(x[i]) - f64::from(c[i]));
                err += e * e;
                *half = b;
            }
        }
        *o = Bf16Pair(u32::from(halves[0]) | (u32::from(halves[1]) << 16));
    }
    (sq, err.sqrt() * (1.0 + 1e-9))
}

/// The bf16 copy of a bank, centred on its mean and packed for the fused kernel.
#[derive(Clone, Debug)]
pub(crate) struct Screen {
    /// The bank's mean row (f32).
    centre: Vec<f32>,
    /// Rounded centred rows in [`fused::pack`]'s panel layout, `d.div_ceil(2)` pairs per row.
    packed: Vec<Bf16Pair>,
    /// `|a~|^2` per panel lane (rounded from f64), `+inf` on padding lanes.
    norms: Vec<f32>,
    /// Largest `|a~|`.
    a_max: f64,
    /// Largest rounding error `|a~ - (m - c)|` of a bank row.
    eps_max: f64,
    /// Largest bank row length `|m|`.
    m_max: f64,
    /// Panels per scanned block (an L2-sized block).
    block_panels: usize,
    /// Most rows kept per query ([`max_listed`]; smaller in tests).
    max_listed: usize,
}

impl Screen {
    /// The bf16 copy of `bank` (`n x d`, squared row norms `norms`), or `None` where the CPU has no
    /// AVX512-BF16, the bank is small (`n < 256`, `d < 32`) or the exact pass's gather offsets
    /// `n * d` exceed `i32`.
    pub(crate) fn build(bank: &[f32], n: usize, d: usize, norms: &[f32]) -> Option<Self> {
        use rayon::prelude::*;
        if !fused::bf16_available()
            || n < MIN_ROWS
            || d < MIN_DIM
            || n.checked_mul(d).is_none_or(|nd| nd > i32::MAX as usize)
        {
            return None;
        }
        // Sums per chunk of 1,024 rows in parallel, then in chunk order (the same centre for
        // the same bank whatever the threads).
        let parts: Vec<Vec<f64>> = bank[..n * d]
            .par_chunks(1024 * d)
            .map(|rows| {
                let mut sum = vec![0.0f64; d];
                for row in rows.chunks_exact(d) {
                    for (s, &v) in sum.iter_mut().zip(row) {
                        *s += f64::from(v);
                    }
                }
                sum
            })
            .collect();
        let mut sum = vec![0.0f64; d];
        for part in &parts {
            for (s, v) in sum.iter_mut().zip(part) {
                *s += v;
            }
        }
        let centre: Vec<f32> = sum.iter().map(|s| (s / n as f64) as f32).collect();
        // Rounded straight into the panel layout (no row-major intermediate: the copy is
        // already half the bank), a panel of NR rows per task.
        let d2 = d.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut packed = vec![Bf16Pair::default(); panels * d2 * NR];
        let mut lane_norms = vec![f32::INFINITY; panels * NR];
        let (a_max, eps_max) = packed
            .par_chunks_mut(d2 * NR)
            .zip(lane_norms.par_chunks_mut(NR))
            .enumerate()
            .map(|(panel, (dst, lane_norm))| {
                let mut row = vec![Bf16Pair::default(); d2];
                let (mut a_max, mut eps_max) = (0.0f64, 0.0f64);
                for lane in 0..NR.min(n - panel * NR) {
                    let j = panel * NR + lane;
                    let (sq, err) = round_centred(&bank[j * d..(j + 1) * d], &centre, &mut row);
                    for (p, &v) in row.iter().enumerate() {
                        dst[p * NR + lane] = v;
                    }
                    lane_norm[lane] = sq as f32;
                    a_max = a_max.max(sq.sqrt());
                    eps_max = eps_max.max(err);
                }
                (a_max, eps_max)
            })
            .reduce(|| (0.0, 0.0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
        let m_max = norms
            .iter()
            .fold(0.0f64, |a, &s| a.max(f64::from(s)))
            .sqrt();
        if !(a_max.is_finite() && eps_max.is_finite() && m_max.is_finite()) {
            return None;
        }
        Some(Self {
            centre,
            packed,
            norms: lane_norms,
            a_max,
            eps_max,
            m_max,
            block_panels: fused::block_rows_of(d2, 4) / NR,
            max_listed: max_listed(n),
        })
    }

    /// Bytes held (the bf16 bank and its norms).
    pub(crate) fn bytes(&self) -> usize {
        4 * (self.packed.len() + self.norms.len() + self.centre.len())
    }

    /// Runs the bf16 kernel over the whole bank.
    fn sweep<S: Sink>(&self, tile: &mut QueryTile<'_, Bf16Pair>, sink: &mut S) {
        let d2 = self.centre.len().div_ceil(2);
        fused::sweep_packed(tile, sink, &self.packed, &self.norms, d2, self.block_panels);
    }

    /// The `k` smallest values `|m|^2 - 2 q.m` (and their bank indices) of each of the `rows`
    /// queries `q` (`rows x d`) against `bank` (`n x d`, squared norms `norms`), ascending, ties
    /// to the smaller index: the fused kernel's candidates, bit for bit. `k <= MAX_K`, `k <= n`.
    ///
    /// Error allowances (u = 2^-24): the bf16 kernel's `w` is within
    /// `e_w = (d + 4) u (|b~| + max |a~|)^2` of `|a~|^2 - 2 b~.a~` (exact products, `d` rounded
    /// f32 additions per lane, the rounded norm, the final fused multiply-add); the fused
    /// kernel's value within `e_v = (d + 4) u (|q| + max |m|)^2` of `|m|^2 - 2 q.m`; and
    /// `||b~ - a~| - |q - m|| <= delta = |b~ - (q - c)| + max |a~ - (m - c)|`.
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
        let d2 = d.div_ceil(2);
        let mut qb = vec![Bf16Pair::default(); rows * d2];
        let mut consts = Vec::with_capacity(rows);
        for (r, out) in qb.chunks_exact_mut(d2).enumerate() {
            let qr = &q[r * d..(r + 1) * d];
            let (bq2, eps) = round_centred(qr, &self.centre, out);
            let q_len = f64::from(sq_norm(qr)).sqrt() * 1.01;
            let slack = 1.01 * (d as f64 + 4.0) * U;
            consts.push(QueryConsts {
                bq2,
                delta: eps + self.eps_max,
                // Denormal products and sums flushed to zero: at most 2^-126 per operation.
                e_w: slack * (bq2.sqrt() + self.a_max).powi(2) + 2.0 * d as f64 * 1.2e-38,
                e_v: slack * (q_len + self.m_max).powi(2),
            });
        }
        let mut window = Window::new(consts, k, self.max_listed);
        let mut tile = QueryTile::new(&qb, rows, d2);
        self.sweep(&mut tile, &mut window);
        let (lists, overflow) = window.finish();
        let mut cd = vec![f32::INFINITY; rows * k];
        let mut ci = vec![u32::MAX; rows * k];
        // Queries that kept too many rows: the fused scan of every row.
        let full: Vec<usize> = (0..rows).filter(|&r| overflow[r]).collect();
        stats.exact +=
            fused::scan_in_full(full_bank, q, &full, bank, norms, d, k, &mut cd, &mut ci);
        stats.full_scans += full.len() as u64;
        // Exact values of the kept rows.
        let mut values = [0.0f32; 16];
        for (r, list) in lists.iter().enumerate() {
            let (cdr, cir) = (&mut cd[r * k..(r + 1) * k], &mut ci[r * k..(r + 1) * k]);
            let qr = &q[r * d..(r + 1) * d];
            for chunk in list.chunks(16) {
                exact_values(qr, bank, norms, d, chunk, &mut values);
                for (&i, &v) in chunk.iter().zip(&values) {
                    offer(cdr, cir, v, i);
                }
            }
            stats.exact += list.len() as u64;
        }
        stats.pairs += (rows * n) as u64;
        (cd, ci)
    }
}

/// Per-query constants of the bound (see [`Screen::search_tile`]).
#[derive(Clone, Copy, Debug)]
struct QueryConsts {
    /// `|b~|^2`.
    bq2: f64,
    /// `|b~ - (q - c)| + max |a~ - (m - c)|`.
    delta: f64,
    /// Allowance of the bf16 kernel's values.
    e_w: f64,
    /// Allowance of the fused kernel's values.
    e_v: f64,
}

/// Sink of the bf16 pass: per query, the `k` smallest `w` seen so far (values only) and every
/// row whose `w` was below the bound they imply when it was seen; lists are trimmed to the
/// current bound as they grow, and a query keeping more than `cap` rows is marked for a full
/// scan and listens no more.
struct Window {
    k: usize,
    /// `rows x k` smallest `w` so far, ascending.
    best: Vec<f32>,
    bounds: Vec<f32>,
    consts: Vec<QueryConsts>,
    lists: Vec<Vec<(f32, u32)>>,
    overflow: Vec<bool>,
    cap: usize,
}

impl Window {
    fn new(consts: Vec<QueryConsts>, k: usize, cap: usize) -> Self {
        let rows = consts.len();
        let overflow: Vec<bool> = consts
            .iter()
            .map(|c| !(c.bq2.is_finite() && c.delta.is_finite() && c.e_w.is_finite()))
            .collect();
        let bounds = overflow
            .iter()
            .map(|&o| if o { f32::NEG_INFINITY } else { f32::INFINITY })
            .collect();
        Self {
            k,
            best: vec![f32::INFINITY; rows * k],
            bounds,
            consts,
            lists: vec![Vec::new(); rows],
            overflow,
            cap,
        }
    }

    /// The bound on `w` for a query whose `k`-th smallest `w` is `wk`: every row of the fused
    /// kernel's top `k` has a smaller `w` (strictly: the kernel keeps `w < bound`).
    ///
    /// With `s = w + |b~|^2` (within `e_w` of `|b~ - a~|^2`) and `t = v + |q|^2` (`v` the fused
    /// kernel's value, within `e_v` of `|q - m|^2`): the `k` rows with the smallest `s` have
    /// `|b~ - a~| <= sqrt(s_k + e_w)`, hence `|q - m| <= R = sqrt(s_k + e_w) + delta` and
    /// `t <= R^2 + e_v`; so the fused kernel's `k`-th value has `t_k <= R^2 + e_v`, and any
    /// row of its top `k` has `|q - m|^2 <= R^2 + 2 e_v`, `|b~ - a~| <= sqrt(R^2 + 2 e_v) +
    /// delta` and `s <= (sqrt(R^2 + 2 e_v) + delta)^2 + e_w`. A larger `wk` (rows not yet seen)
    /// only loosens the bound.
    fn bound_of(wk: f32, c: &QueryConsts) -> f32 {
        if !wk.is_finite() {
            return f32::INFINITY;
        }
        let s_k = f64::from(wk) + c.bq2;
        let r = (s_k + c.e_w).max(0.0).sqrt() + c.delta;
        let t = (r * r + 2.0 * c.e_v).sqrt() + c.delta;
        let b = t * t * (1.0 + 1e-9) + c.e_w - c.bq2;
        let f = b as f32;
        // The smallest f32 above b: rows with w <= b pass the kernel's strict compare.
        if f64::from(f) <= b { f.next_up() } else { f }
    }

    /// Drops the entries of `row`'s list at or above its bound; beyond `cap` entries the query
    /// overflows.
    fn trim(&mut self, row: usize) {
        let bound = self.bounds[row];
        let list = &mut self.lists[row];
        list.retain(|&(w, _)| w < bound);
        if list.len() > self.cap {
            list.clear();
            list.shrink_to_fit();
            self.overflow[row] = true;
            // No value is below -inf: this query reports nothing more.
            self.bounds[row] = f32::NEG_INFINITY;
        }
    }

    /// The kept rows per query (ascending bank index) and the queries to scan in full.
    fn finish(mut self) -> (Vec<Vec<u32>>, Vec<bool>) {
        for row in 0..self.lists.len() {
            self.trim(row);
        }
        let lists = self
            .lists
            .into_iter()
            .map(|l| l.into_iter().map(|(_, i)| i).collect())
            .collect();
        (lists, self.overflow)
    }
}

impl Sink for Window {
    #[inline(always)]
    fn bound(&self, row: usize) -> f32 {
        self.bounds[row]
    }

    #[inline(always)]
    fn hits(&mut self, row: usize, lanes: &[f32; NR], bits: u32, base: usize) {
        let k = self.k;
        let mut bits = bits;
        while bits != 0 {
            let lane = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let w = lanes[lane];
            if w >= self.bounds[row] {
                continue;
            }
            self.lists[row].push((w, (base + lane) as u32));
            let best = &mut self.best[row * k..(row + 1) * k];
            if w < best[k - 1] {
                let mut unused = [0u32; MAX_K];
                insert(best, &mut unused[..k], w, 0);
                self.bounds[row] = Self::bound_of(best[k - 1], &self.consts[row]);
            }
        }
        if self.lists[row].len() >= 2 * self.cap {
            self.trim(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::tests::{low_rank, random};

    #[test]
    fn bf16_rounding_is_to_nearest_even_and_flushes_denormals() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(-2.0), 0xc000);
        assert_eq!(to_bf16(1e-39), 0);
        for x in [0.1f32, -3.7, 1234.5, 1e-20] {
            let r = from_bf16(to_bf16(x));
            assert!(
                (r - f64::from(x)).abs() <= f64::from(x).abs() / 256.0,
                "{x} -> {r}"
            );
        }
    }

    /// Rows and queries that sit far from the origin (a large common offset, as ReLU features
    /// do), so that centring matters.
    fn offset(mut x: Vec<f32>, by: f32) -> Vec<f32> {
        for v in &mut x {
            *v += by;
        }
        x
    }

    #[test]
    fn screened_equals_fused_bit_for_bit() {
        if !fused::bf16_available() {
            eprintln!("bf16-screened k-NN not tested: this CPU has no AVX512-BF16");
            return;
        }
        let cases = [
            (
                "gaussian d=400",
                random(3000, 400, 5),
                random(150, 400, 6),
                400,
            ),
            (
                "offset d=1536",
                offset(random(1200, 1536, 7), 3.0),
                offset(random(40, 1536, 8), 3.0),
                1536,
            ),
            (
                "low rank d=151",
                low_rank(2500, 151, 6, 9),
                low_rank(120, 151, 6, 10),
                151,
            ),
        ];
        for (name, mut bank, mut q, d) in cases {
            let n = bank.len() / d;
            // Duplicate bank rows (exact ties) and bank rows as queries (distance 0).
            let row7 = bank[7 * d..8 * d].to_vec();
            bank[100 * d..101 * d].copy_from_slice(&row7);
            q[..d].copy_from_slice(&row7);
            q[d..2 * d].copy_from_slice(&bank[42 * d..43 * d]);
            let rows = q.len() / d;
            let norms: Vec<f32> = bank.chunks_exact(d).map(sq_norm).collect();
            let screen = Screen::build(&bank, n, d, &norms).expect("screen built");
            // One lazily packed bank for every search's full scans, as a `BruteForce` shares it.
            let packed = fused::LazyPackedBank::new();
            for k in [1usize, 3, 16] {
                let want = fused::scan_rows(&q, rows, &bank, &norms, d, 0, n, k);
                let mut stats = PruneStats::default();
                let got = screen.search_tile(&bank, &norms, d, &q, rows, k, &mut stats, &packed);
                assert_eq!(got, want, "{name}, k = {k}");
                assert!(
                    (stats.exact as f64) < 0.1 * (rows * n) as f64,
                    "{name}, k = {k}: {stats:?}"
                );
                // A tiny cap: queries keeping more rows are scanned in full, same results.
                let mut capped = screen.clone();
                capped.max_listed = k + 1;
                let mut stats = PruneStats::default();
                let got = capped.search_tile(&bank, &norms, d, &q, rows, k, &mut stats, &packed);
                assert_eq!(got, want, "{name}, k = {k}, capped");
                assert!(stats.full_scans > 0, "{name}, k = {k}: {stats:?}");
            }
        }
    }

    #[test]
    fn declines_small_banks() {
        let bank = random(100, 64, 1);
        let norms: Vec<f32> = bank.chunks_exact(64).map(sq_norm).collect();
        assert!(Screen::build(&bank, 100, 64, &norms).is_none());
    }
}
