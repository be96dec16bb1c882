//! Fused exact k-NN scan for x86-64 CPUs with AVX-512F: distances and the top-k selection in one
//! pass, no distance matrix.
//!
//! The bank is consumed in blocks that fit the L2 cache; each block is re-laid out ("packed") into
//! panels of [`NR`] = 32 rows stored dimension-major (`panel[p][lane]`), so that one step of the
//! micro-kernel loads 32 bank values with two vector loads and multiplies them by one broadcast
//! coordinate of each of [`MR`] = 8 queries: a register tile of 8 x 32 dot products (16 zmm
//! accumulators). Panels are swept in equal chunks of at most [`KC`] dimensions (20 KiB,
//! L1-resident) by every register tile of the query tile; only for `d > KC` do the partial sums
//! leave the registers
//! between chunks. The tile's epilogue turns dot products
//! into `||m||^2 - 2 q.m`, compares all 32 against each query's current k-th candidate with one
//! vector compare, and only on a hit walks the lanes to insert into the sorted candidate list.
//!
//! Same formula and the same selection rule as [`crate::BruteForce`]'s `gemm` path (strictly
//! smaller value wins, bank rows visited in increasing order, ties to the smaller index); the dot
//! products are summed in a different order, so distances differ from it by float rounding only.
//! Each 8 x 32 accumulation is sequential over the dimension with fused multiply-adds, so results do
//! not depend on the number of threads or the block sizes.

/// Queries per register tile.
pub(crate) const MR: usize = 8;
/// Bank rows per packed panel (two 16-lane vectors).
pub(crate) const NR: usize = 32;
/// Queries per task: the bank is packed once per query tile, and a tile's chunk of dimensions
/// (at most 640 KiB) plus its partial sums stay in the L2 cache.
pub(crate) const TILE_QUERIES: usize = 1024;
/// Most dimensions per chunk: one panel's chunk (`KC x NR` f32, 20 KiB) stays in the L1 cache while
/// every register tile of the query tile passes over it.
const KC: usize = 160;
/// Target bytes of one packed bank block (kept in the L2 cache while every query tile sweeps it).
const BLOCK_BYTES: usize = 384 * 1024;

/// Whether this CPU runs the fused kernel (x86-64 with AVX-512F); checked once.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static AVX512: OnceLock<bool> = OnceLock::new();
        *AVX512.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Bank rows per packed block for dimension `d`: a multiple of [`NR`], at least one panel.
pub(crate) fn block_rows(d: usize) -> usize {
    (BLOCK_BYTES / (4 * d.max(1)) / NR).max(1) * NR
}

/// Packs bank rows `rows` (`len x d`, row-major) into `ceil(len / NR)` panels of `d x NR` values
/// (`out[panel][p][lane]`); lanes past `len` are zero. `norms_in` are the rows' squared norms;
/// `norms_out` receives them per panel lane, `+inf` on padding lanes (never a candidate).
pub(crate) fn pack(
    rows: &[f32],
    len: usize,
    d: usize,
    norms_in: &[f32],
    out: &mut Vec<f32>,
    norms_out: &mut Vec<f32>,
) {
    let panels = len.div_ceil(NR);
    out.clear();
    out.resize(panels * d * NR, 0.0);
    norms_out.clear();
    norms_out.resize(panels * NR, f32::INFINITY);
    for (j, (row, &n)) in rows.chunks_exact(d).take(len).zip(norms_in).enumerate() {
        let (panel, lane) = (j / NR, j % NR);
        let base = panel * d * NR + lane;
        for (p, &v) in row.iter().enumerate() {
            out[base + p * NR] = v;
        }
        norms_out[j] = n;
    }
}

/// Scans packed bank rows for a tile of queries and updates their sorted candidate lists.
///
/// `queries` holds `rows` rows of `d` values,
/// `packed`/`norms` come from [`pack`] (`panels` panels), bank row `j` of the block has index
/// `first + j`. `cd`/`ci` are `rows x k` candidate lists (ascending `||m||^2 - 2 q.m`).
///
/// # Panics
/// When [`available`] is false (callers check it) or a buffer is shorter than stated.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_block(
    queries: &[f32],
    rows: usize,
    d: usize,
    packed: &[f32],
    norms: &[f32],
    panels: usize,
    first: usize,
    k: usize,
    cd: &mut [f32],
    ci: &mut [u32],
) {
    assert!(
        available()
            && queries.len() >= rows * d
            && packed.len() >= panels * d * NR
            && norms.len() >= panels * NR
            && cd.len() >= rows * k
            && ci.len() >= rows * k
            && k > 0,
        "fused::scan_block: unsupported CPU or buffer too small"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present (asserted above) and the buffer lengths asserted above bound
    // every access the kernel makes (see `avx512::scan_block`).
    unsafe {
        avx512::scan_block(queries, rows, d, packed, norms, panels, first, k, cd, ci);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{KC, MR, NR};
    use crate::knn::insert;

    /// # Safety
    /// The CPU supports AVX-512F; `queries` holds `rows * d` values, `packed`
    /// `panels * d * NR`, `norms` `panels * NR`, `cd`/`ci` `rows * k`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn scan_block(
        queries: &[f32],
        rows: usize,
        d: usize,
        packed: &[f32],
        norms: &[f32],
        panels: usize,
        first: usize,
        k: usize,
        cd: &mut [f32],
        ci: &mut [u32],
    ) {
        let groups = rows.div_ceil(MR);
        // Partial sums of every register tile between dimension chunks (only when d > KC).
        // Equal chunks (152 = one chunk, 1536 = ten of 154), so no short tail chunk pays the
        // partial sums' round trip for a few dimensions.
        let chunk = d.div_ceil(d.div_ceil(KC).max(1));
        let mut partial = if d > KC {
            vec![[[_mm512_setzero_ps(); 2]; MR]; groups]
        } else {
            Vec::new()
        };
        // The last, partial register tile of queries, padded with zero rows.
        let mut tail = vec![0.0f32; MR * d];
        let full = rows / MR * MR;
        tail[..(rows - full) * d].copy_from_slice(&queries[full * d..rows * d]);
        let mut tile = [0.0f32; NR];
        let minus_two = _mm512_set1_ps(-2.0);
        for panel in 0..panels {
            let b = &packed[panel * d * NR..(panel + 1) * d * NR];
            let nrm = &norms[panel * NR..panel * NR + NR];
            // SAFETY: `nrm` holds NR = 32 values: two 16-lane loads.
            let (n0, n1) = unsafe {
                (
                    _mm512_loadu_ps(nrm.as_ptr()),
                    _mm512_loadu_ps(nrm[16..].as_ptr()),
                )
            };
            let mut c0 = 0;
            while c0 < d {
                let c1 = (c0 + chunk).min(d);
                for g in 0..groups {
                    let q = if (g + 1) * MR <= rows {
                        &queries[g * MR * d..(g + 1) * MR * d]
                    } else {
                        &tail[..]
                    };
                    let start = if c0 == 0 {
                        [[_mm512_setzero_ps(); 2]; MR]
                    } else {
                        partial[g]
                    };
                    // SAFETY: `q` holds MR rows of d values and `b` d x NR values; the chunk
                    // [c0, c1) lies inside d.
                    let acc = unsafe { dots(q.as_ptr(), b.as_ptr(), d, c0, c1, start) };
                    if c1 < d {
                        partial[g] = acc;
                        continue;
                    }
                    let live = (rows - g * MR).min(MR);
                    for (r, pair) in acc.iter().enumerate().take(live) {
                        let row = g * MR + r;
                        let ds = &mut cd[row * k..(row + 1) * k];
                        let is = &mut ci[row * k..(row + 1) * k];
                        let mut worst = ds[k - 1];
                        let v0 = _mm512_fmadd_ps(pair[0], minus_two, n0);
                        let v1 = _mm512_fmadd_ps(pair[1], minus_two, n1);
                        let w = _mm512_set1_ps(worst);
                        let hit = (_mm512_cmp_ps_mask::<_CMP_LT_OQ>(v1, w) as u32) << 16
                            | _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v0, w) as u32;
                        if hit == 0 {
                            continue;
                        }
                        // SAFETY: `tile` holds NR = 32 values: two 16-lane stores.
                        unsafe {
                            _mm512_storeu_ps(tile.as_mut_ptr(), v0);
                            _mm512_storeu_ps(tile[16..].as_mut_ptr(), v1);
                        }
                        let mut bits = hit;
                        while bits != 0 {
                            let lane = bits.trailing_zeros() as usize;
                            bits &= bits - 1;
                            let v = tile[lane];
                            if v < worst {
                                insert(ds, is, v, (first + panel * NR + lane) as u32);
                                worst = ds[k - 1];
                            }
                        }
                    }
                }
                c0 = c1;
            }
        }
    }

    /// The 8 x 32 register tile: `acc[r][h]` lane `l` += `sum_{p in [c0, c1)} q[r][p] * b[p][16 h + l]`,
    /// accumulated sequentially over `p` with fused multiply-adds (so splitting the dimension into
    /// chunks does not change the result).
    ///
    /// # Safety
    /// AVX-512F; `q` points at `MR` rows of `d` values (row stride `d`), `b` at `d x NR` values,
    /// `c0 <= c1 <= d`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn dots(
        q: *const f32,
        b: *const f32,
        d: usize,
        c0: usize,
        c1: usize,
        mut acc: [[__m512; 2]; MR],
    ) -> [[__m512; 2]; MR] {
        for p in c0..c1 {
            // SAFETY: p < d, so b + p * NR + 31 and q + r * d + p (r < MR) are inside the
            // caller's buffers.
            unsafe {
                let b0 = _mm512_loadu_ps(b.add(p * NR));
                let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
                for (r, pair) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*q.add(r * d + p));
                    pair[0] = _mm512_fmadd_ps(a, b0, pair[0]);
                    pair[1] = _mm512_fmadd_ps(a, b1, pair[1]);
                }
            }
        }
        acc
    }
}
