//! Squared-distance kernels with run-time CPU feature dispatch.
//!
//! Every kernel is written once over 16 independent f32 accumulators and a fixed reduction tree, and
//! built three times: baseline and AVX2 from plain Rust (LLVM vectorises it), AVX-512F from the same
//! operations written as 512-bit intrinsics (one register holds the 16 accumulators; LLVM's own
//! vectorisation of the 16-lane loop used 2-wide registers). Rust never contracts `a * b + c`
//! into a fused multiply-add and never reorders float additions, and the intrinsics do the same
//! subtractions, products and sums in the same order, so all three builds return bit-identical
//! results: the reference and the fast coreset may share them and still select the same points.

use std::sync::OnceLock;

const LANES: usize = 16;

/// The distance kernels the scans are built on, in two implementations with the same operations in
/// the same order (bit-identical results): [`Portable`] and, on x86-64, [`Avx512`].
trait Kernels {
    /// Squared Euclidean distance with a fixed summation order (16 lanes, a fixed tree, the tail).
    ///
    /// # Safety
    /// The CPU supports the implementation's instructions.
    unsafe fn sq_dist(a: &[f32], b: &[f32]) -> f32;

    /// [`Kernels::sq_dist`] when it is below `bound`, abandoned early otherwise (see
    /// [`sq_dist_below_portable`]).
    ///
    /// # Safety
    /// As [`Kernels::sq_dist`].
    unsafe fn sq_dist_below(a: &[f32], b: &[f32], bound: f32) -> Option<f32>;

    /// See [`subspace_lower_bound_sq`].
    ///
    /// # Safety
    /// As [`Kernels::sq_dist`].
    unsafe fn lower_bound_sq(a: &[f32], slack_a: f32, c: &[f32], slack_c: f32) -> f32;
}

/// Plain Rust kernels (any CPU; vectorised by LLVM where it can).
struct Portable;

impl Kernels for Portable {
    #[inline(always)]
    unsafe fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
        sq_dist_portable(a, b)
    }

    #[inline(always)]
    unsafe fn sq_dist_below(a: &[f32], b: &[f32], bound: f32) -> Option<f32> {
        sq_dist_below_portable(a, b, bound)
    }

    #[inline(always)]
    unsafe fn lower_bound_sq(a: &[f32], slack_a: f32, c: &[f32], slack_c: f32) -> f32 {
        subspace_lower_bound_sq(a, slack_a, c, slack_c)
    }
}

/// AVX-512F intrinsics: one 512-bit register holds the 16 accumulators.
#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Kernels for Avx512 {
    #[inline(always)]
    unsafe fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { x86::sq_dist(a, b) }
    }

    #[inline(always)]
    unsafe fn sq_dist_below(a: &[f32], b: &[f32], bound: f32) -> Option<f32> {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { x86::sq_dist_below(a, b, bound) }
    }

    #[inline(always)]
    unsafe fn lower_bound_sq(a: &[f32], slack_a: f32, c: &[f32], slack_c: f32) -> f32 {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { x86::lower_bound_sq(a, slack_a, c, slack_c) }
    }
}

/// The AVX-512F kernels: [`sq_dist_portable`], [`sq_dist_below_portable`] and
/// [`subspace_lower_bound_sq`] as intrinsics, operation for operation.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::LANES;

    /// `(a - b)^2` added lane-wise to `acc` (no FMA: product rounded, then the sum).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn accumulate(acc: __m512, a: &[f32], b: &[f32], i: usize) -> __m512 {
        debug_assert!(i + LANES <= a.len() && i + LANES <= b.len());
        // SAFETY: `i + 16 <= len` for both slices (callers loop over whole chunks).
        let (x, y) = unsafe {
            (
                _mm512_loadu_ps(a.as_ptr().add(i)),
                _mm512_loadu_ps(b.as_ptr().add(i)),
            )
        };
        let t = _mm512_sub_ps(x, y);
        _mm512_add_ps(acc, _mm512_mul_ps(t, t))
    }

    /// The portable fixed tree: `h[l] = a[l] + a[l + 8]`, `q[j] = h[j] + h[j + 4]`,
    /// `(q0 + q2) + (q1 + q3)`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn reduce(acc: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(acc);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
        let h = _mm256_add_ps(lo, hi);
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let r = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(r, _mm_shuffle_ps::<1>(r, r)))
    }

    /// Sequential tail after the tree, as the portable kernel.
    #[inline(always)]
    fn tail(mut s: f32, a: &[f32], b: &[f32]) -> f32 {
        for (x, y) in a.iter().zip(b) {
            let d = x - y;
            s += d * d;
        }
        s
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let whole = n - n % LANES;
        let mut acc = _mm512_setzero_ps();
        for i in (0..whole).step_by(LANES) {
            // SAFETY: AVX-512F is enabled; `i + 16 <= whole <= n`.
            acc = unsafe { accumulate(acc, a, b, i) };
        }
        tail(reduce(acc), &a[whole..n], &b[whole..n])
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn sq_dist_below(a: &[f32], b: &[f32], bound: f32) -> Option<f32> {
        const CHECK: usize = super::CHECK_CHUNKS;
        let n = a.len().min(b.len());
        let chunks = n / LANES;
        let whole = chunks * LANES;
        let mut acc = _mm512_setzero_ps();
        for c in 0..chunks {
            // SAFETY: AVX-512F is enabled; `16 (c + 1) <= whole <= n`.
            acc = unsafe { accumulate(acc, a, b, c * LANES) };
            if (c + 1) % CHECK == 0 && reduce(acc) >= bound {
                return None;
            }
        }
        let s = tail(reduce(acc), &a[whole..n], &b[whole..n]);
        (s < bound).then_some(s)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn lower_bound_sq(a: &[f32], slack_a: f32, c: &[f32], slack_c: f32) -> f32 {
        if a.len() != LANES || c.len() != LANES {
            return super::subspace_lower_bound_sq(a, slack_a, c, slack_c);
        }
        let mut acc = _mm512_setzero_ps();
        // SAFETY: AVX-512F is enabled; both slices hold 16 values.
        acc = unsafe { accumulate(acc, a, c, 0) };
        super::finish_lower_bound(reduce(acc), slack_a, slack_c)
    }
}

/// Squared Euclidean distance with a fixed summation order (16 lanes, then a fixed tree, then the tail).
#[inline(always)]
fn sq_dist_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut s = reduce(&acc);
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// `mind2[r] = min(mind2[r], |rows[r] - c|^2)` for a contiguous block of rows.
///
/// # Safety
/// The CPU supports `K`'s instructions.
#[inline(always)]
unsafe fn min_update_generic<K: Kernels>(rows: &[f32], d: usize, c: &[f32], mind2: &mut [f32]) {
    for (row, m) in rows.chunks_exact(d).zip(mind2.iter_mut()) {
        // SAFETY: the caller of the kernel guarantees `K`'s instructions.
        let v = unsafe { K::sq_dist(row, c) };
        if v < *m {
            *m = v;
        }
    }
}

/// Squared distance, abandoned early when a partial sum already reaches `bound`.
///
/// Returns `Some(v)` with `v` bit-identical to [`sq_dist_portable`] when `v < bound`, `None`
/// otherwise. Exact because every partial value is a lower bound of the final one: all addends are
/// non-negative and IEEE rounding is monotone, so the partial tree reduction of the lane
/// accumulators can only grow. The partial sum is tested every [`CHECK_CHUNKS`] chunks.
#[inline(always)]
fn sq_dist_below_portable(a: &[f32], b: &[f32], bound: f32) -> Option<f32> {
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (i, (x, y)) in ca.zip(cb).enumerate() {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
        if (i + 1) % CHECK_CHUNKS == 0 && reduce(&acc) >= bound {
            return None;
        }
    }
    let mut s = reduce(&acc);
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        s += d * d;
    }
    (s < bound).then_some(s)
}

/// Chunks of 16 values between the early-exit tests of [`sq_dist_below_portable`].
const CHECK_CHUNKS: usize = 4;

/// Rows looked ahead by the scans over scattered rows ([`scan_members_generic`],
/// [`dists_to_rows_generic`]).
const PREFETCH_AHEAD: usize = 8;

/// Cache lines of a row asked for by [`prefetch_row`].
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PREFETCH_LINES: usize = 8;

/// Asks the CPU to start fetching `row` into the cache: the scans visit rows scattered over a
/// matrix far larger than the caches, so without it every row costs a memory round trip.
/// A hint only: results do not depend on it.
#[inline(always)]
fn prefetch_row(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // The first lines only: the hardware's stream prefetcher follows a row once started.
        for line in row.chunks(16).take(PREFETCH_LINES) {
            // SAFETY: a prefetch never faults and reads nothing; the pointer is into `row`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// [`prefetch_row`] of row `ids[i + PREFETCH_AHEAD]`, when there is one.
#[inline(always)]
fn prefetch_ahead(ids: &[u32], i: usize, data: &[f32], d: usize) {
    if let Some(&q) = ids.get(i + PREFETCH_AHEAD) {
        let start = q as usize * d;
        if let Some(row) = data.get(start..start + d) {
            prefetch_row(row);
        }
    }
}

/// The fixed reduction tree of [`sq_dist_portable`].
#[inline(always)]
fn reduce(acc: &[f32; LANES]) -> f32 {
    let mut half = [0.0f32; 8];
    for l in 0..8 {
        half[l] = acc[l] + acc[l + 8];
    }
    let q = [
        half[0] + half[4],
        half[1] + half[5],
        half[2] + half[6],
        half[3] + half[7],
    ];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// The members of one group of the pruned coreset search, stored together (member-contiguous):
/// the tests of a scan stream through these arrays instead of gathering scattered values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Members<'a> {
    /// Row indices of the members into the point matrix.
    pub ids: &'a [u32],
    /// Each member's current squared distance to the selected set (parallel to `ids`).
    pub mind2: &'a [f32],
    /// Each member's `k` coordinates in the principal subspace (`ids.len() x k`; empty without
    /// subspace bounds).
    pub coords: &'a [f32],
    /// Error allowance of each member's coordinates (L2; parallel to `ids`, empty without bounds).
    pub slack: &'a [f32],
}

/// The new centre's coordinates in the principal subspace (see the coreset's `Pca`) and their
/// error allowance: with a member's, a lower bound of their distance.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CentreBound<'a> {
    /// The centre's `k` coordinates.
    pub centre: &'a [f32],
    /// The centre's error allowance.
    pub centre_slack: f32,
}

/// A value `<=` the f32 kernel's squared distance of two points whose subspace coordinates are
/// `a` and `c` (within `slack_a` and `slack_c` of the exact projections, in L2): projecting on
/// an orthonormal subspace never lengthens a vector.
///
/// The squared length of the coordinates' difference is summed as [`sq_dist_portable`] sums (for
/// 16 coordinates: the 16 lanes and the tree): any order of a sum of up to 16 non-negative f32
/// terms is within a relative `15 * 2^-24 < 1e-5` of the exact sum, which the allowance covers.
#[inline(always)]
pub(crate) fn subspace_lower_bound_sq(a: &[f32], slack_a: f32, c: &[f32], slack_c: f32) -> f32 {
    debug_assert!(a.len() <= 16, "the allowance covers sums of up to 16 terms");
    finish_lower_bound(sq_dist_portable(a, c), slack_a, slack_c)
}

/// The lower bound from the squared length `s` of the coordinates' difference.
#[inline(always)]
fn finish_lower_bound(s: f32, slack_a: f32, slack_c: f32) -> f32 {
    // Relative error of a 16-term f32 sum < 1e-5; the kernel's own relative error < 1e-3 (as
    // for the pruning factor): shrink by both, and subtract the coordinates' slack.
    let lb = (s.sqrt() * (1.0 - 1e-5) - (slack_a + slack_c)).max(0.0);
    lb * lb * (1.0 - 2e-3)
}

/// Pruned greedy update of one group of points: a member with `skip2 >= factor * m` (`m` its
/// current squared distance) is skipped (triangle inequality: the new centre `c` cannot be
/// closer), and so is one whose subspace lower bound (when `bound` is given and the members
/// carry coordinates) reaches `m`; otherwise its distance to `c` is computed, abandoned early once
/// it reaches `m`. Members strictly closer to `c` are appended to `out` with their new value.
/// Returns the number of distances started.
///
/// Two passes: the tests first (they stream through the group's own arrays), then the distances
/// of the survivors, whose scattered rows are prefetched ahead of use.
///
/// # Safety
/// The CPU supports `K`'s instructions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn scan_members_generic<K: Kernels>(
    members: Members<'_>,
    points: &[f32],
    d: usize,
    c: &[f32],
    skip2: f32,
    factor: f32,
    bound: Option<&CentreBound<'_>>,
    out: &mut Vec<(u32, f32)>,
) -> u64 {
    // Plain loops, no closures: a closure would not inherit the caller's target features.
    let Members {
        ids,
        mind2,
        coords,
        slack,
    } = members;
    let bound = bound.filter(|_| !slack.is_empty());
    let Some(bound) = bound else {
        // No subspace bound: one pass (a list of survivors would only cost). A run of
        // consecutive rows (the full passes) streams without help: prefetching it only costs.
        let consecutive = match (ids.first(), ids.last()) {
            (Some(&a), Some(&b)) => b as usize + 1 == a as usize + ids.len(),
            _ => true,
        };
        let mut evaluated = 0;
        for (i, (&p, &m)) in ids.iter().zip(mind2).enumerate() {
            if !consecutive {
                prefetch_ahead(ids, i, points, d);
            }
            if skip2 >= factor * m {
                continue;
            }
            evaluated += 1;
            let start = p as usize * d;
            // SAFETY: the caller guarantees `K`'s instructions.
            if let Some(v) = unsafe { K::sq_dist_below(&points[start..start + d], c, m) } {
                out.push((p, v));
            }
        }
        return evaluated;
    };
    let k = bound.centre.len();
    let mut survivors: Vec<(u32, f32)> = Vec::new();
    for (((&p, &m), pc), &ps) in ids.iter().zip(mind2).zip(coords.chunks_exact(k)).zip(slack) {
        if skip2 >= factor * m {
            continue;
        }
        // SAFETY: the caller guarantees `K`'s instructions.
        if unsafe { K::lower_bound_sq(pc, ps, bound.centre, bound.centre_slack) } < m {
            survivors.push((p, m));
        }
    }
    for (i, &(p, m)) in survivors.iter().enumerate() {
        if let Some(&(q, _)) = survivors.get(i + PREFETCH_AHEAD) {
            let start = q as usize * d;
            if let Some(row) = points.get(start..start + d) {
                prefetch_row(row);
            }
        }
        let start = p as usize * d;
        // SAFETY: the caller guarantees `K`'s instructions.
        if let Some(v) = unsafe { K::sq_dist_below(&points[start..start + d], c, m) } {
            out.push((p, v));
        }
    }
    survivors.len() as u64
}

/// Squared distances of one point `c` to a list of rows (`out[i] = |data[ids[i]] - c|^2`).
///
/// # Safety
/// The CPU supports `K`'s instructions.
#[inline(always)]
unsafe fn dists_to_rows_generic<K: Kernels>(
    ids: &[u32],
    data: &[f32],
    d: usize,
    c: &[f32],
    out: &mut [f32],
) {
    for (i, (o, &p)) in out.iter_mut().zip(ids).enumerate() {
        prefetch_ahead(ids, i, data, d);
        let start = p as usize * d;
        // SAFETY: the caller guarantees `K`'s instructions.
        *o = unsafe { K::sq_dist(&data[start..start + d], c) };
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Level {
    Avx512,
    Avx2,
    Base,
}

fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Base
    })
}

macro_rules! dispatch {
    ($generic:ident, $avx512:ident, $avx2:ident, ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        #[cfg(target_arch = "x86_64")]
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx512f,avx2,avx")]
        unsafe fn $avx512($($arg: $ty),*) -> $ret {
            // SAFETY: AVX-512F is enabled here.
            unsafe { $generic::<Avx512>($($arg),*) }
        }
        #[cfg(target_arch = "x86_64")]
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,avx")]
        unsafe fn $avx2($($arg: $ty),*) -> $ret {
            // SAFETY: `Portable` needs nothing.
            unsafe { $generic::<Portable>($($arg),*) }
        }
    };
}

/// [`Kernels::sq_dist`] as a free function, for [`dispatch!`].
///
/// # Safety
/// The CPU supports `K`'s instructions.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
unsafe fn sq_dist_generic<K: Kernels>(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as required of the caller.
    unsafe { K::sq_dist(a, b) }
}

dispatch!(sq_dist_generic, sq_dist_avx512, sq_dist_avx2, (a: &[f32], b: &[f32]) -> f32);
dispatch!(min_update_generic, min_update_avx512, min_update_avx2,
    (rows: &[f32], d: usize, c: &[f32], mind2: &mut [f32]) -> ());
dispatch!(scan_members_generic, scan_members_avx512, scan_members_avx2,
    (members: Members<'_>, points: &[f32], d: usize, c: &[f32], skip2: f32, factor: f32,
     bound: Option<&CentreBound<'_>>, out: &mut Vec<(u32, f32)>) -> u64);
dispatch!(dists_to_rows_generic, dists_to_rows_avx512, dists_to_rows_avx2,
    (ids: &[u32], data: &[f32], d: usize, c: &[f32], out: &mut [f32]) -> ());

/// Squared Euclidean distance between two equal-length slices (bit-identical on every CPU level).
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    match level() {
        // SAFETY: the CPU supports the enabled features (checked in `level`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { sq_dist_avx512(a, b) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { sq_dist_avx2(a, b) },
        _ => sq_dist_portable(a, b),
    }
}

/// `mind2[r] = min(mind2[r], sq_dist(rows[r], c))` over `rows` (row-major, `d` columns).
pub(crate) fn min_update(rows: &[f32], d: usize, c: &[f32], mind2: &mut [f32]) {
    match level() {
        // SAFETY: the CPU supports the enabled features (checked in `level`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { min_update_avx512(rows, d, c, mind2) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { min_update_avx2(rows, d, c, mind2) },
        // SAFETY: `Portable` needs nothing.
        _ => unsafe { min_update_generic::<Portable>(rows, d, c, mind2) },
    }
}

/// See [`scan_members_generic`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_members(
    members: Members<'_>,
    points: &[f32],
    d: usize,
    c: &[f32],
    skip2: f32,
    factor: f32,
    bound: Option<&CentreBound<'_>>,
    out: &mut Vec<(u32, f32)>,
) -> u64 {
    match level() {
        // SAFETY: the CPU supports the enabled features (checked in `level`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe {
            scan_members_avx512(members, points, d, c, skip2, factor, bound, out)
        },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe {
            scan_members_avx2(members, points, d, c, skip2, factor, bound, out)
        },
        // SAFETY: `Portable` needs nothing.
        _ => unsafe {
            scan_members_generic::<Portable>(members, points, d, c, skip2, factor, bound, out)
        },
    }
}

/// `out[i] = sq_dist(data[ids[i]], c)`.
pub(crate) fn dists_to_rows(ids: &[u32], data: &[f32], d: usize, c: &[f32], out: &mut [f32]) {
    match level() {
        // SAFETY: the CPU supports the enabled features (checked in `level`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { dists_to_rows_avx512(ids, data, d, c, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { dists_to_rows_avx2(ids, data, d, c, out) },
        // SAFETY: `Portable` needs nothing.
        _ => unsafe { dists_to_rows_generic::<Portable>(ids, data, d, c, out) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_levels_agree_bitwise() {
        let mut s = 1u32;
        let mut next = || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for d in [1usize, 7, 16, 33, 128, 296] {
            let a: Vec<f32> = (0..d).map(|_| next()).collect();
            let b: Vec<f32> = (0..d).map(|_| next()).collect();
            let base = sq_dist_portable(&a, &b);
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum();
            assert!((base as f64 - naive).abs() <= 1e-5 * naive.max(1e-6));
            assert_eq!(sq_dist(&a, &b).to_bits(), base.to_bits(), "d = {d}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: feature checked just above.
                assert_eq!(unsafe { sq_dist_avx2(&a, &b) }.to_bits(), base.to_bits());
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: feature checked just above.
                unsafe {
                    assert_eq!(sq_dist_avx512(&a, &b).to_bits(), base.to_bits(), "d = {d}");
                    assert_eq!(
                        Avx512::sq_dist_below(&a, &b, f32::INFINITY).map(f32::to_bits),
                        Some(base.to_bits())
                    );
                    assert_eq!(Avx512::sq_dist_below(&a, &b, base), None);
                    for bound in [base * 0.5, base * 0.9, base * 1.0001] {
                        assert_eq!(
                            Avx512::sq_dist_below(&a, &b, bound),
                            sq_dist_below_portable(&a, &b, bound),
                            "d = {d}"
                        );
                    }
                    if d == 16 {
                        assert_eq!(
                            Avx512::lower_bound_sq(&a, 0.01, &b, 0.02).to_bits(),
                            subspace_lower_bound_sq(&a, 0.01, &b, 0.02).to_bits()
                        );
                    }
                }
            }
            assert_eq!(sq_dist(&a, &a), 0.0);
            assert_eq!(
                sq_dist_below_portable(&a, &b, f32::INFINITY).map(f32::to_bits),
                Some(base.to_bits())
            );
            assert_eq!(sq_dist_below_portable(&a, &b, base), None);
            assert_eq!(sq_dist_below_portable(&a, &b, base * 0.5), None);
        }
    }
}
