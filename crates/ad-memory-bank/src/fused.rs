//! Fused exact k-NN scan for x86-64 CPUs with AVX-512F: distances and the top-k selection in one
//! pass, no distance matrix.
//!
//! The bank is re-laid out ("packed") into panels of [`NR`] = 32 rows stored dimension-major
//! (`panel[p][lane]`), once per bank where it fits ([`PackedBank`]) or block by block, and
//! consumed in blocks that fit the L2 cache, so that one step of the
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
//!
//! The same schedule runs on pairs of bf16 values ([`Bf16Pair`], `vdpbf16ps`: two products per
//! f32 lane and instruction, twice the arithmetic of an f32 FMA on CPUs with AVX512-BF16): the
//! screening pass of [`crate::screened`], whose approximate values are never returned.

// The kernels run on x86-64 only; elsewhere their types exist but are never scanned.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use crate::knn::insert;

/// Queries per register tile.
pub(crate) const MR: usize = 8;
/// Bank rows per packed panel (two 16-lane vectors).
pub(crate) const NR: usize = 32;
/// Queries per task: a tile's chunk of dimensions (at most 640 KiB) plus its partial sums stay
/// in the L2 cache while it sweeps the bank's blocks.
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
        *AVX512.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs the fused kernel on bf16 pairs (AVX-512F and AVX512-BF16); checked once.
pub(crate) fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static BF16: OnceLock<bool> = OnceLock::new();
        *BF16.get_or_init(|| available() && std::arch::is_x86_feature_detected!("avx512bf16"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Two bf16 values of consecutive dimensions in one 32-bit lane (the lower half holds the even
/// dimension), as `vdpbf16ps` reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct Bf16Pair(pub(crate) u32);

/// What the fused kernel multiplies: `f32` values (one dimension per lane) or [`Bf16Pair`]s (two).
pub(crate) trait Lane: Copy + Default + Send + Sync + 'static {
    /// Whether this CPU runs the kernel on this type.
    fn available() -> bool;

    /// [`scan_block`] for this type.
    ///
    /// # Safety
    /// [`Lane::available`] is true; `packed` holds `panels * tile.d * NR` values and `norms`
    /// `panels * NR`; `tile` was built by [`QueryTile::new`].
    unsafe fn scan<S: Sink>(
        tile: &mut QueryTile<'_, Self>,
        sink: &mut S,
        packed: &[Self],
        norms: &[f32],
        panels: usize,
        first: usize,
    );
}

/// [`Lane`] for a type whose blocks the x86-64 entry point `$scan` scans.
macro_rules! impl_lane {
    ($elem:ty, $available:path, $scan:ident) => {
        impl Lane for $elem {
            fn available() -> bool {
                $available()
            }

            unsafe fn scan<S: Sink>(
                tile: &mut QueryTile<'_, Self>,
                sink: &mut S,
                packed: &[Self],
                norms: &[f32],
                panels: usize,
                first: usize,
            ) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: forwarded from the caller's contract.
                unsafe {
                    avx512::$scan(tile, sink, packed, norms, panels, first);
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = (tile, sink, packed, norms, panels, first);
                    unreachable!("the fused kernel is only available on x86-64");
                }
            }
        }
    };
}

impl_lane!(f32, available, scan_block_f32);
impl_lane!(Bf16Pair, bf16_available, scan_block_bf16);

/// Bank rows per packed block for `d` values of `bytes` bytes per row: a multiple of [`NR`], at
/// least one panel.
pub(crate) fn block_rows_of(d: usize, bytes: usize) -> usize {
    (BLOCK_BYTES / (bytes * d.max(1)) / NR).max(1) * NR
}

/// Bank rows per packed block for dimension `d` (f32): a multiple of [`NR`], at least one panel.
pub(crate) fn block_rows(d: usize) -> usize {
    block_rows_of(d, 4)
}

/// Packs bank rows `rows` (`len x d` values, row-major) into `ceil(len / NR)` panels of `d x NR`
/// values (`out[panel][p][lane]`); lanes past `len` are zero. `norms_in` are the rows' squared
/// norms; `norms_out` receives them per panel lane, `+inf` on padding lanes (never a candidate).
pub(crate) fn pack<E: Lane>(
    rows: &[E],
    len: usize,
    d: usize,
    norms_in: &[f32],
    out: &mut Vec<E>,
    norms_out: &mut Vec<f32>,
) {
    let panels = len.div_ceil(NR);
    out.clear();
    out.resize(panels * d * NR, E::default());
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

/// What a scan does with the values `||m||^2 - 2 q.m` of one query against one panel of bank
/// rows: the kernel compares all [`NR`] of them against [`Sink::bound`] with one vector compare and
/// calls [`Sink::hits`] only when some are strictly below it.
pub(crate) trait Sink {
    /// Values of query `row` at or above this are of no interest.
    fn bound(&self, row: usize) -> f32;
    /// `lanes[l]` is the value of bank row `base + l`; bit `l` of `bits` is set where
    /// `lanes[l] < bound(row)` at the time of the compare.
    fn hits(&mut self, row: usize, lanes: &[f32; NR], bits: u32, base: usize);
}

/// The `k` smallest values per query, ascending, ties to the smaller bank index (rows are
/// visited in increasing order and only a strictly smaller value displaces a candidate).
pub(crate) struct TopK {
    k: usize,
    /// Candidate values `||m||^2 - 2 q.m`, `rows x k`, ascending per row.
    cd: Vec<f32>,
    /// Candidate bank indices, `rows x k`.
    ci: Vec<u32>,
}

impl TopK {
    /// Empty candidate lists for `rows` queries (`k > 0`).
    pub(crate) fn new(rows: usize, k: usize) -> Self {
        Self {
            k,
            cd: vec![f32::INFINITY; rows * k],
            ci: vec![u32::MAX; rows * k],
        }
    }

    /// The candidate lists: values and bank indices, `rows x k` each.
    pub(crate) fn into_candidates(self) -> (Vec<f32>, Vec<u32>) {
        (self.cd, self.ci)
    }
}

impl Sink for TopK {
    #[inline(always)]
    fn bound(&self, row: usize) -> f32 {
        self.cd[row * self.k + self.k - 1]
    }

    #[inline(always)]
    fn hits(&mut self, row: usize, lanes: &[f32; NR], bits: u32, base: usize) {
        let k = self.k;
        let ds = &mut self.cd[row * k..(row + 1) * k];
        let is = &mut self.ci[row * k..(row + 1) * k];
        let mut worst = ds[k - 1];
        let mut bits = bits;
        while bits != 0 {
            let lane = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let v = lanes[lane];
            if v < worst {
                insert(ds, is, v, (base + lane) as u32);
                worst = ds[k - 1];
            }
        }
    }
}

/// The `k` smallest values `|m|^2 - 2 q.m` of each of the `rows` queries `q` (`rows x d`) over bank
/// rows `[m0, m1)` of `bank` (squared norms `norms`), with their indices: the rows are packed block
/// by block and every block is swept by the whole query tile (the scan of banks too large for a
/// [`PackedBank`] copy; the tests' reference for it).
///
/// # Panics
/// When [`available`] is false (callers check it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_rows(
    q: &[f32],
    rows: usize,
    bank: &[f32],
    norms: &[f32],
    d: usize,
    m0: usize,
    m1: usize,
    k: usize,
) -> (Vec<f32>, Vec<u32>) {
    let mut tile = QueryTile::new(q, rows, d);
    let mut top = TopK::new(rows, k);
    let (mut packed, mut block_norms) = (Vec::new(), Vec::new());
    let step = block_rows(d);
    let mut start = m0;
    while start < m1 {
        let end = (start + step).min(m1);
        pack(
            &bank[start * d..end * d],
            end - start,
            d,
            &norms[start..end],
            &mut packed,
            &mut block_norms,
        );
        scan_block(&mut tile, &mut top, &packed, &block_norms, start);
        start = end;
    }
    top.into_candidates()
}

/// Scans a bank packed once by [`pack`] (`packed`, `norms`; `d` lane values per row) for every
/// query of `tile`, block by block (`block_panels` panels per L2-sized block).
pub(crate) fn sweep_packed<S: Sink, E: Lane>(
    tile: &mut QueryTile<'_, E>,
    sink: &mut S,
    packed: &[E],
    norms: &[f32],
    d: usize,
    block_panels: usize,
) {
    let panels = norms.len() / NR;
    let mut p0 = 0;
    while p0 < panels {
        let p1 = (p0 + block_panels.max(1)).min(panels);
        scan_block(
            tile,
            sink,
            &packed[p0 * d * NR..p1 * d * NR],
            &norms[p0 * NR..p1 * NR],
            p0 * NR,
        );
        p0 = p1;
    }
}

/// The whole bank packed once in [`pack`]'s layout, for every full scan of a bank (the fused
/// kernel's searches, the pruned and screened kernels' overflowing queries): packing it again
/// per tile of queries took 7 % of the accurate preset's search samples in perf.
#[derive(Clone, Debug)]
pub(crate) struct PackedBank {
    data: Vec<f32>,
    norms: Vec<f32>,
    d: usize,
    block_panels: usize,
}

/// Largest bank (f32 bytes) given a [`PackedBank`] copy: PatchCore's coreset banks (2-17 MiB)
/// are; a WideResNet bank without a coreset (164,000 x 1,536: 960 MiB) is packed block by block
/// per tile of queries instead, so that a search's memory stays bounded.
pub(crate) const MAX_PACKED_BYTES: usize = 64 << 20;

impl PackedBank {
    /// Whether an `n x d` bank gets a packed copy (at most [`MAX_PACKED_BYTES`]).
    pub(crate) fn fits(n: usize, d: usize) -> bool {
        n.saturating_mul(d).saturating_mul(4) <= MAX_PACKED_BYTES
    }

    /// Packs `bank` (`norms.len() x d`, squared row norms `norms`).
    pub(crate) fn new(bank: &[f32], norms: &[f32], d: usize) -> Self {
        let (mut data, mut packed_norms) = (Vec::new(), Vec::new());
        pack(bank, norms.len(), d, norms, &mut data, &mut packed_norms);
        Self {
            data,
            norms: packed_norms,
            d,
            block_panels: block_rows(d) / NR,
        }
    }

    /// The bank packed in `lazy`, packing it there first if no search has yet.
    pub(crate) fn get_or_pack<'a>(
        lazy: &'a LazyPackedBank,
        bank: &[f32],
        norms: &[f32],
        d: usize,
    ) -> &'a Self {
        lazy.get_or_init(|| {
            let packed = Self::new(bank, norms, d);
            log::debug!(
                "k-NN: {} x {d} bank packed for full scans, {:.1} MiB",
                norms.len(),
                (4 * (packed.data.len() + packed.norms.len())) as f64 / (1 << 20) as f64
            );
            packed
        })
    }

    /// Panels of [`NR`] rows.
    pub(crate) fn panels(&self) -> usize {
        self.norms.len() / NR
    }

    /// The `k` smallest values `|m|^2 - 2 q.m` (and bank indices) of each of the `rows` queries
    /// `q` (`rows x d`) over the bank rows of panels `[p0, p1)`, ascending, ties to the smaller
    /// index: [`scan_rows`]'s candidates over those rows, bit for bit.
    pub(crate) fn scan_panels(
        &self,
        q: &[f32],
        rows: usize,
        k: usize,
        (p0, p1): (usize, usize),
    ) -> (Vec<f32>, Vec<u32>) {
        let d = self.d;
        let mut tile = QueryTile::new(q, rows, d);
        let mut top = TopK::new(rows, k);
        let mut a = p0;
        while a < p1 {
            let b = (a + self.block_panels.max(1)).min(p1);
            scan_block(
                &mut tile,
                &mut top,
                &self.data[a * d * NR..b * d * NR],
                &self.norms[a * NR..b * NR],
                a * NR,
            );
            a = b;
        }
        top.into_candidates()
    }
}

/// The bank packed on the first full scan a search needs, shared by the tiles of every later
/// search (`None` until then: a search that scans nothing in full packs nothing).
pub(crate) type LazyPackedBank = std::sync::OnceLock<PackedBank>;

/// The fused scan of every bank row for the queries `which` of `q` (`d` values each), their
/// candidate lists written into rows `which` of `cd` / `ci` (`k` per query): on the bank packed
/// once in `lazy` where it [`PackedBank::fits`], else packed block by block ([`scan_rows`]);
/// the same values either way. Returns the number of values computed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_in_full(
    lazy: &LazyPackedBank,
    q: &[f32],
    which: &[usize],
    bank: &[f32],
    norms: &[f32],
    d: usize,
    k: usize,
    cd: &mut [f32],
    ci: &mut [u32],
) -> u64 {
    let n = norms.len();
    if which.is_empty() {
        return 0;
    }
    let qs: Vec<f32> = which
        .iter()
        .flat_map(|&r| q[r * d..(r + 1) * d].iter().copied())
        .collect();
    let (fd, fi) = if PackedBank::fits(n, d) {
        let packed = PackedBank::get_or_pack(lazy, bank, norms, d);
        packed.scan_panels(&qs, which.len(), k, (0, packed.panels()))
    } else {
        scan_rows(&qs, which.len(), bank, norms, d, 0, n, k)
    };
    for (j, &r) in which.iter().enumerate() {
        cd[r * k..(r + 1) * k].copy_from_slice(&fd[j * k..(j + 1) * k]);
        ci[r * k..(r + 1) * k].copy_from_slice(&fi[j * k..(j + 1) * k]);
    }
    (which.len() * n) as u64
}

/// A tile of queries being scanned and the scratch its register tiles need, allocated once per
/// tile (not once per bank block). `d` counts [`Lane`] values (bf16 pairs: half the dimension).
pub(crate) struct QueryTile<'a, E: Lane = f32> {
    queries: &'a [E],
    rows: usize,
    d: usize,
    /// The last, partial register tile of queries, padded with zero rows (`MR x d`).
    tail: Vec<E>,
    /// Partial sums of every register tile between dimension chunks (`groups x MR x NR`;
    /// empty when one chunk covers `d`).
    partial: Vec<f32>,
}

impl<'a, E: Lane> QueryTile<'a, E> {
    /// A tile of `rows` queries (`rows x d`, row-major).
    ///
    /// # Panics
    /// When `queries` is shorter than `rows * d` (callers validate it).
    pub(crate) fn new(queries: &'a [E], rows: usize, d: usize) -> Self {
        assert!(
            queries.len() >= rows * d,
            "fused::QueryTile: queries shorter than stated"
        );
        let groups = rows.div_ceil(MR);
        let full = rows / MR * MR;
        let mut tail = vec![E::default(); MR * d];
        tail[..(rows - full) * d].copy_from_slice(&queries[full * d..rows * d]);
        let partial = if d > KC {
            vec![0.0f32; groups * MR * NR]
        } else {
            Vec::new()
        };
        Self {
            queries,
            rows,
            d,
            tail,
            partial,
        }
    }

    /// Register tile `g` of the queries: `MR` rows of `d` values.
    fn group(&self, g: usize) -> &[E] {
        let d = self.d;
        if (g + 1) * MR <= self.rows {
            &self.queries[g * MR * d..(g + 1) * MR * d]
        } else {
            &self.tail
        }
    }
}

/// Scans one packed bank block ([`pack`]'s `packed` and `norms`; its row `j` has bank index
/// `first + j`) for every query of `tile`, reporting values below the sink's bounds to `sink`
/// (whose rows are the tile's queries).
///
/// # Panics
/// When [`Lane::available`] is false (callers check it) or `packed` is shorter than `norms` says.
pub(crate) fn scan_block<S: Sink, E: Lane>(
    tile: &mut QueryTile<'_, E>,
    sink: &mut S,
    packed: &[E],
    norms: &[f32],
    first: usize,
) {
    let panels = norms.len() / NR;
    assert!(
        E::available() && norms.len().is_multiple_of(NR) && packed.len() >= panels * tile.d * NR,
        "fused::scan_block: unsupported CPU or buffer too small"
    );
    // SAFETY: the CPU runs the kernel (asserted above); the tile's buffers are sized by
    // `QueryTile::new` and the block's by the assert above, which bounds every access the
    // kernel makes (see `avx512::scan_block_f32`).
    unsafe {
        E::scan(tile, sink, packed, norms, panels, first);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Bf16Pair, KC, MR, NR, QueryTile, Sink};

    /// One entry point per lane type, same body: the register-tile product `$dots` is inlined
    /// into a function compiled with `$features`.
    macro_rules! scan_block_fn {
        ($name:ident, $elem:ty, $features:literal, $dots:ident) => {
            /// # Safety
            /// The CPU has the target features; `packed` holds `panels * d * NR` values, `norms`
            /// `panels * NR`; `tile` was built by `QueryTile::new`.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name<S: Sink>(
                tile: &mut QueryTile<'_, $elem>,
                sink: &mut S,
                packed: &[$elem],
                norms: &[f32],
                panels: usize,
                first: usize,
            ) {
                let (rows, d) = (tile.rows, tile.d);
                let groups = rows.div_ceil(MR);
                // Equal chunks (152 = one chunk, 1536 = ten of 154), so no short tail chunk pays the
                // partial sums' round trip for a few dimensions.
                let chunk = d.div_ceil(d.div_ceil(KC).max(1));
                let mut lanes = [0.0f32; NR];
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
                            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
                            let saved = g * MR * NR..(g + 1) * MR * NR;
                            if c0 > 0 {
                                let src = &tile.partial[saved.clone()];
                                for (r, pair) in acc.iter_mut().enumerate() {
                                    // SAFETY: `src` holds MR x NR values; row r's two halves.
                                    unsafe {
                                        pair[0] = _mm512_loadu_ps(src[r * NR..].as_ptr());
                                        pair[1] = _mm512_loadu_ps(src[r * NR + 16..].as_ptr());
                                    }
                                }
                            }
                            let q = tile.group(g);
                            // SAFETY: `q` holds MR rows of d values and `b` d x NR values; the chunk
                            // [c0, c1) lies inside d.
                            acc = unsafe { $dots(q.as_ptr(), b.as_ptr(), d, c0, c1, acc) };
                            if c1 < d {
                                let dst = &mut tile.partial[saved];
                                for (r, pair) in acc.iter().enumerate() {
                                    // SAFETY: `dst` holds MR x NR values; row r's two halves.
                                    unsafe {
                                        _mm512_storeu_ps(dst[r * NR..].as_mut_ptr(), pair[0]);
                                        _mm512_storeu_ps(dst[r * NR + 16..].as_mut_ptr(), pair[1]);
                                    }
                                }
                                continue;
                            }
                            let live = (rows - g * MR).min(MR);
                            for (r, pair) in acc.iter().enumerate().take(live) {
                                let row = g * MR + r;
                                let v0 = _mm512_fmadd_ps(pair[0], minus_two, n0);
                                let v1 = _mm512_fmadd_ps(pair[1], minus_two, n1);
                                let w = _mm512_set1_ps(sink.bound(row));
                                let hit = (_mm512_cmp_ps_mask::<_CMP_LT_OQ>(v1, w) as u32) << 16
                                    | _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v0, w) as u32;
                                if hit == 0 {
                                    continue;
                                }
                                // SAFETY: `lanes` holds NR = 32 values: two 16-lane stores.
                                unsafe {
                                    _mm512_storeu_ps(lanes.as_mut_ptr(), v0);
                                    _mm512_storeu_ps(lanes[16..].as_mut_ptr(), v1);
                                }
                                sink.hits(row, &lanes, hit, first + panel * NR);
                            }
                        }
                        c0 = c1;
                    }
                }
            }
        };
    }

    scan_block_fn!(scan_block_f32, f32, "avx512f", dots);
    scan_block_fn!(scan_block_bf16, Bf16Pair, "avx512f,avx512bf16", dots_bf16);

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
    /// [`dots`] on bf16 pairs: `acc[r][h]` lane `l` += the two products of query `r`'s pair `p`
    /// and bank row `16 h + l`'s pair `p`, for `p` in `[c0, c1)` (`vdpbf16ps`: exact products,
    /// f32 sums, denormal inputs and results flushed to zero).
    ///
    /// # Safety
    /// AVX-512F and AVX512-BF16; `q` points at `MR` rows of `d` pairs, `b` at `d x NR` pairs,
    /// `c0 <= c1 <= d`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn dots_bf16(
        q: *const Bf16Pair,
        b: *const Bf16Pair,
        d: usize,
        c0: usize,
        c1: usize,
        mut acc: [[__m512; 2]; MR],
    ) -> [[__m512; 2]; MR] {
        let (q, b) = (q.cast::<i32>(), b.cast::<i32>());
        for p in c0..c1 {
            // SAFETY: p < d, so b + p * NR + 31 and q + r * d + p (r < MR) are inside the
            // caller's buffers; `__m512bh` is 32 bf16 values, the bits of one `__m512i`.
            unsafe {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR).cast()));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16).cast()));
                for (r, pair) in acc.iter_mut().enumerate() {
                    let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(*q.add(r * d + p)));
                    pair[0] = _mm512_dpbf16_ps(pair[0], a, b0);
                    pair[1] = _mm512_dpbf16_ps(pair[1], a, b1);
                }
            }
        }
        acc
    }
}
