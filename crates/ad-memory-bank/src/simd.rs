//! Squared-distance kernels with run-time CPU feature dispatch.
//!
//! Every kernel is written once as plain Rust over 16 independent f32 accumulators (so LLVM vectorises
//! it) and compiled three times: baseline, AVX2 and AVX-512F. Rust never contracts `a * b + c` into a
//! fused multiply-add and never reorders float additions, so all three builds return bit-identical
//! results: the reference and the fast coreset may share them and still select the same points.

use std::sync::OnceLock;

const LANES: usize = 16;

/// Squared Euclidean distance with a fixed summation order (16 lanes, then a fixed tree, then the tail).
#[inline(always)]
fn sq_dist_generic(a: &[f32], b: &[f32]) -> f32 {
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
#[inline(always)]
fn min_update_generic(rows: &[f32], d: usize, c: &[f32], mind2: &mut [f32]) {
    for (row, m) in rows.chunks_exact(d).zip(mind2.iter_mut()) {
        let v = sq_dist_generic(row, c);
        if v < *m {
            *m = v;
        }
    }
}

/// Squared distance, abandoned early when a partial sum already reaches `bound`.
///
/// Returns `Some(v)` with `v` bit-identical to [`sq_dist_generic`] when `v < bound`, `None` otherwise.
/// Exact because every partial value is a lower bound of the final one: all addends are non-negative
/// and IEEE rounding is monotone, so the partial tree reduction of the lane accumulators can only grow.
#[inline(always)]
fn sq_dist_below_generic(a: &[f32], b: &[f32], bound: f32) -> Option<f32> {
    const CHECK: usize = 4 * LANES;
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (i, (x, y)) in ca.zip(cb).enumerate() {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
        if (i + 1) % (CHECK / LANES) == 0 && reduce(&acc) >= bound {
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

/// Rows looked ahead by the scans over scattered rows ([`scan_members_generic`],
/// [`dists_to_rows_generic`]).
const PREFETCH_AHEAD: usize = 8;

/// Members looked ahead by the subspace-bound tests of [`scan_members_generic`].
const TEST_AHEAD: usize = 16;

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

/// The fixed reduction tree of [`sq_dist_generic`].
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

/// Lower bounds of distances from a principal subspace (see the coreset's `Pca`): every
/// point's coordinates in the subspace (`k` per point) and their error allowance, and the
/// centre's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SubspaceBound<'a> {
    /// `n x k` coordinates of every point.
    pub coords: &'a [f32],
    /// Error allowance of each point's coordinates (L2).
    pub slack: &'a [f32],
    /// The centre's `k` coordinates.
    pub centre: &'a [f32],
    /// The centre's error allowance.
    pub centre_slack: f32,
}

/// A value `<=` the f32 kernel's squared distance of two points whose subspace coordinates are
/// `a` and `c` (within `slack_a` and `slack_c` of the exact projections, in L2): projecting on
/// an orthonormal subspace never lengthens a vector.
#[inline(always)]
pub(crate) fn subspace_lower_bound_sq(a: &[f32], slack_a: f32, c: &[f32], slack_c: f32) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in a.iter().zip(c) {
        let t = x - y;
        s += t * t;
    }
    // Relative error of a 16-term f32 sum < 1e-5; the kernel's own relative error < 1e-3 (as
    // for the pruning factor): shrink by both, and subtract the coordinates' slack.
    let lb = (s.sqrt() * (1.0 - 1e-5) - (slack_a + slack_c)).max(0.0);
    lb * lb * (1.0 - 2e-3)
}

/// Pruned greedy update of one group of points (`members`, row indices into `points`): a member
/// with `skip2 >= factor * mind2[p]` is skipped (triangle inequality: the new centre `c` cannot be
/// closer), and so is one whose subspace lower bound (when `bound` is given) reaches `mind2[p]`;
/// otherwise its distance to `c` is computed, abandoned early once it reaches `mind2[p]`.
/// Members strictly closer to `c` are appended to `out` with their new value. Returns the number of
/// distances started.
///
/// Two passes: the tests first (they read `mind2` and the small coordinates only), then the
/// distances of the survivors, whose rows are prefetched ahead of use.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan_members_generic(
    members: &[u32],
    points: &[f32],
    d: usize,
    c: &[f32],
    mind2: &[f32],
    skip2: f32,
    factor: f32,
    bound: Option<&SubspaceBound<'_>>,
    out: &mut Vec<(u32, f32)>,
) -> u64 {
    // Plain loops, no closures: a closure would not inherit the caller's target features.
    let Some(bound) = bound else {
        // No subspace bound: one pass (a list of survivors would only cost). A run of
        // consecutive rows (the full passes) streams without help: prefetching it only costs.
        let consecutive = match (members.first(), members.last()) {
            (Some(&a), Some(&b)) => b as usize + 1 == a as usize + members.len(),
            _ => true,
        };
        let mut evaluated = 0;
        for (i, &p) in members.iter().enumerate() {
            if !consecutive {
                prefetch_ahead(members, i, points, d);
            }
            let m = mind2[p as usize];
            if skip2 >= factor * m {
                continue;
            }
            evaluated += 1;
            let start = p as usize * d;
            if let Some(v) = sq_dist_below_generic(&points[start..start + d], c, m) {
                out.push((p, v));
            }
        }
        return evaluated;
    };
    let mut survivors: Vec<u32> = Vec::with_capacity(members.len());
    let k = bound.centre.len();
    for (i, &p) in members.iter().enumerate() {
        // The members are scattered: ask early for what the test reads (current distance and
        // subspace coordinates), as the distance pass does for rows.
        if let Some(&ahead) = members.get(i + TEST_AHEAD) {
            let a = ahead as usize;
            if let Some(coords) = bound.coords.get(a * k..(a + 1) * k) {
                prefetch_row(coords);
            }
            if let Some(m) = mind2.get(a..a + 1) {
                prefetch_row(m);
            }
        }
        let m = mind2[p as usize];
        if skip2 >= factor * m {
            continue;
        }
        let pi = p as usize;
        let lb = subspace_lower_bound_sq(
            &bound.coords[pi * k..(pi + 1) * k],
            bound.slack[pi],
            bound.centre,
            bound.centre_slack,
        );
        if lb < m {
            survivors.push(p);
        }
    }
    for (i, &p) in survivors.iter().enumerate() {
        prefetch_ahead(&survivors, i, points, d);
        let m = mind2[p as usize];
        let start = p as usize * d;
        if let Some(v) = sq_dist_below_generic(&points[start..start + d], c, m) {
            out.push((p, v));
        }
    }
    survivors.len() as u64
}

/// Squared distances of one point `c` to a list of rows (`out[i] = |data[ids[i]] - c|^2`).
#[inline(always)]
fn dists_to_rows_generic(ids: &[u32], data: &[f32], d: usize, c: &[f32], out: &mut [f32]) {
    for (i, (o, &p)) in out.iter_mut().zip(ids).enumerate() {
        prefetch_ahead(ids, i, data, d);
        let start = p as usize * d;
        *o = sq_dist_generic(&data[start..start + d], c);
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
            $generic($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,avx")]
        unsafe fn $avx2($($arg: $ty),*) -> $ret {
            $generic($($arg),*)
        }
    };
}

dispatch!(sq_dist_generic, sq_dist_avx512, sq_dist_avx2, (a: &[f32], b: &[f32]) -> f32);
dispatch!(min_update_generic, min_update_avx512, min_update_avx2,
    (rows: &[f32], d: usize, c: &[f32], mind2: &mut [f32]) -> ());
dispatch!(scan_members_generic, scan_members_avx512, scan_members_avx2,
    (members: &[u32], points: &[f32], d: usize, c: &[f32], mind2: &[f32], skip2: f32, factor: f32,
     bound: Option<&SubspaceBound<'_>>, out: &mut Vec<(u32, f32)>) -> u64);
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
        _ => sq_dist_generic(a, b),
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
        _ => min_update_generic(rows, d, c, mind2),
    }
}

/// See [`scan_members_generic`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_members(
    members: &[u32],
    points: &[f32],
    d: usize,
    c: &[f32],
    mind2: &[f32],
    skip2: f32,
    factor: f32,
    bound: Option<&SubspaceBound<'_>>,
    out: &mut Vec<(u32, f32)>,
) -> u64 {
    match level() {
        // SAFETY: the CPU supports the enabled features (checked in `level`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe {
            scan_members_avx512(members, points, d, c, mind2, skip2, factor, bound, out)
        },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe {
            scan_members_avx2(members, points, d, c, mind2, skip2, factor, bound, out)
        },
        _ => scan_members_generic(members, points, d, c, mind2, skip2, factor, bound, out),
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
        _ => dists_to_rows_generic(ids, data, d, c, out),
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
            let base = sq_dist_generic(&a, &b);
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
            assert_eq!(sq_dist(&a, &a), 0.0);
            assert_eq!(
                sq_dist_below_generic(&a, &b, f32::INFINITY).map(f32::to_bits),
                Some(base.to_bits())
            );
            assert_eq!(sq_dist_below_generic(&a, &b, base), None);
            assert_eq!(sq_dist_below_generic(&a, &b, base * 0.5), None);
        }
    }
}
