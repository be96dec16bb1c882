//! Exact k-nearest-neighbour search over a [`MemoryBank`].
//!
//! All indexes return **Euclidean** distances (not squared; faiss' `IndexFlatL2` returns squared ones),
//! sorted ascending per query, ties broken by the smaller bank index.

use rayon::prelude::*;

use crate::bank::MemoryBank;
use crate::error::{MemoryBankError, Result, check_matrix};
use crate::fused;
use crate::matmul::gemm_abt;
use crate::pruned::{self, PruneStats, Pruner};
use crate::screened::{self, Screen};

/// `k` nearest neighbours of `nq` queries: row-major `nq x k` arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct KnnResult {
    /// Euclidean distances, `nq x k`, ascending within each row.
    pub distances: Vec<f32>,
    /// Bank row indices, `nq x k`.
    pub indices: Vec<u32>,
    /// Neighbours per query.
    pub k: usize,
}

impl KnnResult {
    /// Distances of query `q`.
    pub fn row_distances(&self, q: usize) -> &[f32] {
        &self.distances[q * self.k..(q + 1) * self.k]
    }

    /// Indices of query `q`.
    pub fn row_indices(&self, q: usize) -> &[u32] {
        &self.indices[q * self.k..(q + 1) * self.k]
    }
}

/// An exact nearest-neighbour index built from a memory bank.
pub trait KnnIndex: Sized {
    /// Builds the index (copies what it needs from `bank`).
    fn build(bank: &MemoryBank) -> Result<Self>;
    /// The `k` nearest bank vectors of each of the `nq` row-major `queries` (dimension [`KnnIndex::dim`]).
    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult>;
    /// Number of bank vectors.
    fn len(&self) -> usize;
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// Whether the index holds no vectors (never true for a built index).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub(crate) fn check_search(
    queries: &[f32],
    nq: usize,
    dim: usize,
    k: usize,
    len: usize,
) -> Result<()> {
    check_matrix("queries", queries, nq, dim)?;
    if k == 0 || k > len {
        return Err(MemoryBankError::InvalidK { k, len });
    }
    Ok(())
}

/// Sorted candidate list of one query: inserts keep ascending `(value, index)` order.
#[inline]
pub(crate) fn insert(ds: &mut [f32], is: &mut [u32], v: f32, idx: u32) {
    let k = ds.len();
    let mut pos = k - 1;
    while pos > 0 && (ds[pos - 1] > v || (ds[pos - 1] == v && is[pos - 1] > idx)) {
        ds[pos] = ds[pos - 1];
        is[pos] = is[pos - 1];
        pos -= 1;
    }
    ds[pos] = v;
    is[pos] = idx;
}

/// Inserts `(v, i)` into a sorted candidate list if it beats the last entry (smaller value, or
/// equal value and smaller index): merging candidate lists found in any order.
#[inline]
pub(crate) fn offer(ds: &mut [f32], is: &mut [u32], v: f32, i: u32) {
    let k = ds.len();
    if v < ds[k - 1] || (v == ds[k - 1] && i < is[k - 1]) {
        insert(ds, is, v, i);
    }
}

/// `||q||^2` as every search path sums it (sequentially, f32).
#[inline]
pub(crate) fn sq_norm(q: &[f32]) -> f32 {
    q.iter().map(|v| v * v).sum()
}

/// The Euclidean distance from a candidate value `||m||^2 - 2 q.m` and `||q||^2` (clamped at 0).
#[inline]
fn distance(value: f32, q_sq_norm: f32) -> f32 {
    (value + q_sq_norm).max(0.0).sqrt()
}

/// Exact brute-force search: `||q||^2 - 2 q.m + ||m||^2`, multi-threaded.
///
/// On x86-64 CPUs with AVX-512F the distances and the top-k selection run in one fused kernel
/// (8 queries x 32 bank rows per register tile, scanned in L2-sized blocks of a copy of the bank
/// packed once on the first search, or per tile of queries for banks over 64 MiB; see the
/// `fused` module); elsewhere a blocked `gemm` writes a
/// `BLOCK_Q x BLOCK_M` distance block that is then scanned. Work is split into tasks of one query
/// tile x a slice of the bank, so the scratch per thread is bounded (the `k` candidates per
/// query, or a 512 KiB distance block) whatever the bank and query sizes. The two paths differ
/// only by the rounding of the dot products. Squared distances are clamped at 0 before the
/// square root. Memory: the bank, its packed copy (x86-64 with AVX-512F, banks up to 64 MiB)
/// and the kernels' own data (see [`KnnKernel`]).
#[derive(Clone, Debug)]
pub struct BruteForce {
    bank: MemoryBank,
    norms: Vec<f32>,
    /// Principal-subspace bounds of [`KnnKernel::Pruned`], built on its first search (`None`
    /// inside where they would not pay).
    pruner: std::sync::OnceLock<Option<Pruner>>,
    /// How the bounds have done so far on this bank's queries.
    record: PruneRecord,
    /// The bf16 copy of [`KnnKernel::Screened`], built on its first search (`None` inside
    /// where the CPU cannot run it).
    screen: std::sync::OnceLock<Option<Screen>>,
    /// How the bf16 screen has done so far on this bank's queries.
    screen_record: PruneRecord,
    /// The bank packed once in the fused kernel's panels, on the first search that scans
    /// rows in full (the fused kernel's, and the queries the pruned and screened kernels scan
    /// in full): a second copy of the bank, in f32, for banks up to 64 MiB.
    full_bank: fused::LazyPackedBank,
    /// What [`KnnKernel::Auto`] measured of each kernel on this bank.
    trials: KernelTrials,
}

/// Queries the pruned (or screened) kernel has served and how many of them it had to scan in
/// full: once more than a quarter did (the bounds list too much of this bank: PIPED's 3,276-row
/// banks, 30-45 %; bottle's 21,401 rows, 0-3.4 %), the kernel stops trying and the next one
/// runs (same results; saves the passes that did not pay).
#[derive(Debug, Default)]
struct PruneRecord {
    queries: std::sync::atomic::AtomicU64,
    full_scans: std::sync::atomic::AtomicU64,
}

/// Queries observed before [`PruneRecord`] may give up on a bank.
const PRUNE_TRIAL_QUERIES: u64 = 4096;

impl PruneRecord {
    fn worth_trying(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let q = self.queries.load(Relaxed);
        q < PRUNE_TRIAL_QUERIES || 4 * self.full_scans.load(Relaxed) < q
    }

    fn add(&self, queries: u64, full_scans: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.queries.fetch_add(queries, Relaxed);
        self.full_scans.fetch_add(full_scans, Relaxed);
    }
}

impl Clone for PruneRecord {
    fn clone(&self) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        Self {
            queries: AtomicU64::new(self.queries.load(Relaxed)),
            full_scans: AtomicU64::new(self.full_scans.load(Relaxed)),
        }
    }
}

/// The kernels [`KnnKernel::Auto`] chooses between (all give the same results, bit for bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trialled {
    Pruned,
    Screened,
    Fused,
}

const TRIALLED: [Trialled; 3] = [Trialled::Pruned, Trialled::Screened, Trialled::Fused];

/// Queries each serving kernel is timed on before [`KnnKernel::Auto`] settles on the fastest.
const TRIAL_QUERIES: u64 = 4096;
/// Searches with fewer queries are not timed (fixed costs would dominate their time per pair).
const MIN_TIMED_QUERIES: usize = 512;

/// [`KnnKernel::Auto`]'s measurements on one bank: per kernel, the queries, query x row pairs
/// and time of the searches it served. Whether skipping rows pays depends on the data and the
/// CPU (on an Ice Lake Xeon, PIPED's 64-d stride-4 features: the full fused scan 1.6-1.9x
/// faster than the pruned one; bottle's 152-d features: the pruned one 1.3-1.5x faster; see
/// docs/performance.md), so each kernel that can serve
/// runs searches of at least [`TRIAL_QUERIES`] queries first (pruned, then screened, then fused)
/// and the one with the least time per pair serves from then on.
#[derive(Debug, Default)]
struct KernelTrials {
    /// `[queries, pairs, nanoseconds]` per kernel, in [`TRIALLED`] order; whether the choice
    /// was logged.
    state: std::sync::Mutex<([[u64; 3]; 3], bool)>,
}

impl Clone for KernelTrials {
    fn clone(&self) -> Self {
        let state = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self {
            state: std::sync::Mutex::new(state),
        }
    }
}

impl KernelTrials {
    /// The kernel for the next search among those `serving` (in [`TRIALLED`] order; the fused
    /// one always serves): the first not yet timed on [`TRIAL_QUERIES`] queries, else the
    /// fastest per pair.
    fn pick(&self, serving: [bool; 3]) -> Trialled {
        let (t, _) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::choose(&t, serving)
    }

    fn choose(t: &[[u64; 3]; 3], serving: [bool; 3]) -> Trialled {
        let live = || (0..3).filter(|&i| serving[i]);
        if let Some(i) = live().find(|&i| t[i][0] < TRIAL_QUERIES) {
            return TRIALLED[i];
        }
        let per_pair = |i: usize| t[i][2] as f64 / t[i][1].max(1) as f64;
        live()
            .min_by(|&a, &b| per_pair(a).total_cmp(&per_pair(b)))
            .map_or(Trialled::Fused, |i| TRIALLED[i])
    }

    /// Adds a search of `nq` queries against the `n x d` bank on `kernel` that took `elapsed`;
    /// logs the choice once every serving kernel has been timed.
    fn record(
        &self,
        kernel: Trialled,
        nq: usize,
        elapsed: std::time::Duration,
        serving: [bool; 3],
        (n, d): (usize, usize),
    ) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (t, logged) = &mut *guard;
        let Some(i) = TRIALLED.iter().position(|&x| x == kernel) else {
            return;
        };
        t[i][0] += nq as u64;
        t[i][1] += (nq * n) as u64;
        t[i][2] += elapsed.as_nanos().min(u128::from(u64::MAX)) as u64;
        let done = (0..3).all(|j| !serving[j] || t[j][0] >= TRIAL_QUERIES);
        if done && !*logged {
            *logged = true;
            let times: Vec<String> = (0..3)
                .filter(|&j| serving[j])
                .map(|j| {
                    format!(
                        "{:?} {:.3} ns/pair",
                        TRIALLED[j],
                        t[j][2] as f64 / t[j][1].max(1) as f64
                    )
                })
                .collect();
            log::debug!(
                "k-NN on a {n} x {d} bank: {} -> {:?} serves",
                times.join(", "),
                Self::choose(t, serving)
            );
        }
    }
}

/// Queries per block.
pub const BLOCK_Q: usize = 128;
/// Bank rows per block.
pub const BLOCK_M: usize = 1024;

impl BruteForce {
    /// Builds the index, taking ownership of the bank (no copy).
    pub fn new(bank: MemoryBank) -> Self {
        let d = bank.dim();
        let norms = bank
            .as_slice()
            .par_chunks(d)
            .map(|r| r.iter().map(|v| v * v).sum::<f32>())
            .collect();
        Self {
            bank,
            norms,
            pruner: std::sync::OnceLock::new(),
            record: PruneRecord::default(),
            screen: std::sync::OnceLock::new(),
            screen_record: PruneRecord::default(),
            full_bank: fused::LazyPackedBank::new(),
            trials: KernelTrials::default(),
        }
    }

    /// The bf16 screen's copy of the bank, built once; `None` where the CPU cannot run it.
    fn screen(&self) -> Option<&Screen> {
        self.screen
            .get_or_init(|| {
                let (n, d) = (self.bank.len(), self.bank.dim());
                let screen = Screen::build(self.bank.as_slice(), n, d, &self.norms);
                if let Some(s) = &screen {
                    log::debug!(
                        "bf16-screened k-NN: {n} x {d} bank, {:.1} MiB copy",
                        s.bytes() as f64 / (1 << 20) as f64
                    );
                }
                screen
            })
            .as_ref()
    }

    /// The pruned search's bounds, built once (a PCA of the bank and every row's 16-d
    /// coordinates); `None` where they would not pay.
    fn pruner(&self) -> Option<&Pruner> {
        self.pruner
            .get_or_init(|| {
                let (n, d) = (self.bank.len(), self.bank.dim());
                let pruner = Pruner::build(self.bank.as_slice(), n, d, &self.norms);
                if let Some(p) = &pruner {
                    log::debug!(
                        "pruned k-NN: {n} x {d} bank, {:.1} % of its variance in {} components",
                        100.0 * p.captured(),
                        pruned::COMPONENTS
                    );
                }
                pruner
            })
            .as_ref()
    }

    /// Builds what [`KnnKernel::Auto`] may use now rather than on the first search (the
    /// pruned kernel's bounds: a PCA of the bank and every row's 16-d coordinates; the bf16
    /// screen's copy of the bank where the CPU runs it: tens of milliseconds for PatchCore's
    /// banks), so that no search's latency includes them. Idempotent.
    pub fn prepare(&self) {
        self.pruner();
        self.screen();
    }

    /// Whether [`KnnKernel::Screened`] runs on this bank and CPU (false: it runs the fused scan).
    pub fn screens(&self) -> bool {
        self.screen().is_some()
    }

    /// Whether [`KnnKernel::Pruned`] prunes on this bank (false: it runs the fused scan).
    pub fn prunes(&self) -> bool {
        self.pruner().is_some()
    }

    /// [`KnnKernel::Pruned`]'s search: tiles of queries in parallel, each bounded then checked.
    fn search_pruned(&self, pruner: &Pruner, queries: &[f32], nq: usize, k: usize) -> KnnResult {
        self.search_tiles(
            queries,
            nq,
            k,
            pruned::TILE_QUERIES,
            (&self.record, "pruned"),
            |q, rows, stats| {
                let d = self.bank.dim();
                pruner.search_tile(
                    self.bank.as_slice(),
                    &self.norms,
                    d,
                    q,
                    rows,
                    k,
                    stats,
                    &self.full_bank,
                )
            },
        )
    }

    /// [`KnnKernel::Screened`]'s search: tiles of queries in parallel, each screened in bf16
    /// then checked exactly.
    fn search_screened(&self, screen: &Screen, queries: &[f32], nq: usize, k: usize) -> KnnResult {
        // Tiles of equal size, a multiple of the thread count (one image's 784 patches on two
        // threads: four tiles of 196, not three of 256 and one of 16).
        let threads = rayon::current_num_threads().max(1);
        let tasks = nq.div_ceil(threads * screened::TILE_QUERIES) * threads;
        let tile = nq.div_ceil(tasks).max(fused::MR);
        self.search_tiles(
            queries,
            nq,
            k,
            tile,
            (&self.screen_record, "bf16-screened"),
            |q, rows, stats| {
                let d = self.bank.dim();
                screen.search_tile(
                    self.bank.as_slice(),
                    &self.norms,
                    d,
                    q,
                    rows,
                    k,
                    stats,
                    &self.full_bank,
                )
            },
        )
    }

    /// Runs `search_tile(queries of the tile, rows, stats)` on tiles of `tile` queries in
    /// parallel, adds the full scans to `record` and logs what was computed (`what` names the
    /// kernel).
    fn search_tiles(
        &self,
        queries: &[f32],
        nq: usize,
        k: usize,
        tile: usize,
        (record, what): (&PruneRecord, &str),
        search_tile: impl Fn(&[f32], usize, &mut PruneStats) -> (Vec<f32>, Vec<u32>) + Sync,
    ) -> KnnResult {
        let d = self.bank.dim();
        let parts: Vec<(Vec<f32>, Vec<u32>, PruneStats)> = (0..nq.div_ceil(tile))
            .into_par_iter()
            .map(|t| {
                let (q0, q1) = (t * tile, ((t + 1) * tile).min(nq));
                let mut stats = PruneStats::default();
                let (cd, ci) = search_tile(&queries[q0 * d..q1 * d], q1 - q0, &mut stats);
                (cd, ci, stats)
            })
            .collect();
        let (exact, pairs, full) = parts
            .iter()
            .fold((0u64, 0u64, 0u64), |(e, p, f), (_, _, s)| {
                (e + s.exact, p + s.pairs, f + s.full_scans)
            });
        record.add(nq as u64, full);
        log::debug!(
            "{what} k-NN: {nq} queries, k = {k}: {exact} exact values ({:.3} % of a full scan; \
             {full} queries scanned in full)",
            100.0 * exact as f64 / pairs.max(1) as f64
        );
        tiles_to_result(queries, d, k, parts.into_iter().map(|(cd, ci, _)| (cd, ci)))
    }

    /// The indexed bank.
    pub fn bank(&self) -> &MemoryBank {
        &self.bank
    }

    /// Scans bank rows `[m0, m1)` for queries `q` (`rows x d`); returns candidates of `||m||^2 - 2 q.m`.
    fn scan(&self, q: &[f32], rows: usize, m0: usize, m1: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
        let d = self.bank.dim();
        let mut cd = vec![f32::INFINITY; rows * k];
        let mut ci = vec![u32::MAX; rows * k];
        let mut g = vec![0.0f32; rows * BLOCK_M.min(m1 - m0)];
        let mut start = m0;
        while start < m1 {
            let end = (start + BLOCK_M).min(m1);
            let bm = end - start;
            let g = &mut g[..rows * bm];
            gemm_abt(
                g,
                q,
                &self.bank.as_slice()[start * d..end * d],
                rows,
                bm,
                d,
                -2.0,
            );
            let norms = &self.norms[start..end];
            for r in 0..rows {
                let grow = &mut g[r * bm..(r + 1) * bm];
                let ds = &mut cd[r * k..(r + 1) * k];
                let is = &mut ci[r * k..(r + 1) * k];
                let mut worst = ds[k - 1];
                let mut j0 = 0;
                for (gc, nc) in grow.chunks_mut(16).zip(norms.chunks(16)) {
                    let mut lo = f32::INFINITY;
                    for (x, n) in gc.iter_mut().zip(nc) {
                        *x += n;
                        lo = lo.min(*x);
                    }
                    if lo < worst {
                        for (o, &v) in gc.iter().enumerate() {
                            if v < worst {
                                insert(ds, is, v, (start + j0 + o) as u32);
                                worst = ds[k - 1];
                            }
                        }
                    }
                    j0 += gc.len();
                }
            }
            start = end;
        }
        (cd, ci)
    }

    /// [`KnnIndex::search`] on a chosen kernel (benchmarks and tests compare them;
    /// [`KnnKernel::Pruned`] falls back to the fused scan where its bounds do not pay or
    /// `k > 16`, [`KnnKernel::Screened`] where the CPU has no AVX512-BF16 or `k > 64`,
    /// [`KnnKernel::Auto`] times the kernels that serve and keeps the fastest, and
    /// [`KnnKernel::Fused`] falls back to `gemm` on CPUs without AVX-512F).
    pub fn search_on(
        &self,
        queries: &[f32],
        nq: usize,
        k: usize,
        kernel: KnnKernel,
    ) -> Result<KnnResult> {
        let (n, d) = (self.bank.len(), self.bank.dim());
        check_search(queries, nq, d, k, n)?;
        let auto = kernel == KnnKernel::Auto;
        let pruner = if (auto || kernel == KnnKernel::Pruned)
            && k <= pruned::MAX_K
            && self.record.worth_trying()
        {
            self.pruner()
        } else {
            None
        };
        let screen = if (auto || kernel == KnnKernel::Screened)
            && k <= screened::MAX_K
            && self.screen_record.worth_trying()
        {
            self.screen()
        } else {
            None
        };
        if auto {
            // The kernels give the same results: the one measured fastest on this bank serves.
            let serving = [pruner.is_some(), screen.is_some(), true];
            let timed = nq >= MIN_TIMED_QUERIES;
            let choice = self.trials.pick(serving);
            let t0 = std::time::Instant::now();
            let result = match (choice, pruner, screen) {
                (Trialled::Pruned, Some(p), _) => self.search_pruned(p, queries, nq, k),
                (Trialled::Screened, _, Some(s)) => self.search_screened(s, queries, nq, k),
                _ => self.search_full(queries, nq, k, true),
            };
            if timed {
                self.trials
                    .record(choice, nq, t0.elapsed(), serving, (n, d));
            }
            return Ok(result);
        }
        if let Some(pruner) = pruner {
            return Ok(self.search_pruned(pruner, queries, nq, k));
        }
        if let Some(screen) = screen {
            return Ok(self.search_screened(screen, queries, nq, k));
        }
        Ok(self.search_full(
            queries,
            nq,
            k,
            kernel != KnnKernel::Gemm && fused::available(),
        ))
    }

    /// Every query against every bank row: the fused kernel (`fused`) or the `gemm` path.
    fn search_full(&self, queries: &[f32], nq: usize, k: usize, fused: bool) -> KnnResult {
        let (n, d) = (self.bank.len(), self.bank.dim());
        let fused = fused && fused::available();
        // Query tile and bank granularity of one task: the fused kernel scans the bank packed
        // once (on its first search), in L2-sized blocks, so its tiles are large; only a slice
        // of <= 160 dimensions of the tile is hot at a time (see the `fused` module), whatever `d`.
        let packed = (fused && fused::PackedBank::fits(n, d)).then(|| {
            fused::PackedBank::get_or_pack(&self.full_bank, self.bank.as_slice(), &self.norms, d)
        });
        let (tile, grain) = if fused {
            (fused::TILE_QUERIES, fused::block_rows(d))
        } else {
            (BLOCK_Q, BLOCK_M)
        };
        let nqb = nq.div_ceil(tile);
        let threads = rayon::current_num_threads().max(1);
        let splits = if nqb >= threads {
            1
        } else {
            threads.div_ceil(nqb).min(n.div_ceil(grain)).max(1)
        };
        let parts: Vec<(Vec<f32>, Vec<u32>)> = (0..nqb * splits)
            .into_par_iter()
            .map(|t| {
                let (qb, s) = (t / splits, t % splits);
                let (q0, q1) = (qb * tile, ((qb + 1) * tile).min(nq));
                let q = &queries[q0 * d..q1 * d];
                if let Some(packed) = packed {
                    let panels = packed.panels();
                    let range = (panels * s / splits, panels * (s + 1) / splits);
                    packed.scan_panels(q, q1 - q0, k, range)
                } else {
                    let (m0, m1) = (n * s / splits, n * (s + 1) / splits);
                    if fused {
                        let bank = self.bank.as_slice();
                        fused::scan_rows(q, q1 - q0, bank, &self.norms, d, m0, m1, k)
                    } else {
                        self.scan(q, q1 - q0, m0, m1, k)
                    }
                }
            })
            .collect();
        let mut distances = vec![0.0f32; nq * k];
        let mut indices = vec![0u32; nq * k];
        distances
            .par_chunks_mut(k)
            .zip(indices.par_chunks_mut(k))
            .enumerate()
            .for_each(|(q, (dq, iq))| {
                let (qb, r) = (q / tile, q % tile);
                let qn = sq_norm(&queries[q * d..(q + 1) * d]);
                let mut ds = vec![f32::INFINITY; k];
                let mut is = vec![u32::MAX; k];
                for s in 0..splits {
                    let (cd, ci) = &parts[qb * splits + s];
                    for j in 0..k {
                        offer(&mut ds, &mut is, cd[r * k + j], ci[r * k + j]);
                    }
                }
                for j in 0..k {
                    dq[j] = distance(ds[j], qn);
                    iq[j] = is[j];
                }
            });
        KnnResult {
            distances,
            indices,
            k,
        }
    }

    /// Whether [`KnnKernel::Fused`] runs on this CPU (x86-64 with AVX-512F).
    pub fn fused_available() -> bool {
        fused::available()
    }
}

/// The distance kernel of [`BruteForce`]. Every kernel returns the same neighbours and
/// distances as [`KnnKernel::Fused`], bit for bit ([`KnnKernel::Gemm`]: up to float rounding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnnKernel {
    /// The fastest on this bank, measured (the default): every kernel that can serve it
    /// ([`KnnKernel::Pruned`] where its bounds are built and pay, [`KnnKernel::Screened`] where
    /// the CPU runs it, [`KnnKernel::Fused`]) is timed on the first searches of at least 4,096
    /// queries, in that order, then the one with the least time per query x row pair serves.
    /// The results are the same whichever serves.
    Auto,
    /// [`KnnKernel::Fused`] on the rows that lower bounds from the bank's 15-d principal
    /// subspace cannot rule out. Where the bounds would not pay or are not built (less than
    /// 75 % of the variance in the subspace, fewer than 2,048 rows, `d` outside 64..=512,
    /// `k > 16`, no AVX-512F, or once more than a quarter of the first 4,096 or more queries
    /// needed a full scan anyway), the fused scan of every row.
    Pruned,
    /// Every row screened in bf16 (the fused schedule on `vdpbf16ps`, twice the arithmetic per
    /// instruction), then exact f32 values for the rows whose screened value is within a
    /// rigorous rounding allowance of the `k`-th: for wide features where nothing can be
    /// pruned (WideResNet-50's 1,536-d). Needs AVX512-BF16, `k <= 64` and at least 256 rows of
    /// at least 32 dimensions (else the fused scan); a query keeping more than a tenth of the
    /// bank is scanned in full, and after a quarter of the first 4,096 or more queries did,
    /// the bank is always scanned in full. Holds a bf16 copy of the bank (half its memory).
    Screened,
    /// Distances and top-k in one AVX-512 pass, no distance matrix (`gemm` where AVX-512F is
    /// missing).
    Fused,
    /// Blocked `gemm` into a distance block, then a top-k scan (any CPU).
    Gemm,
}

impl KnnIndex for BruteForce {
    fn build(bank: &MemoryBank) -> Result<Self> {
        Ok(Self::new(bank.clone()))
    }

    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult> {
        self.search_on(queries, nq, k, KnnKernel::Auto)
    }

    fn len(&self) -> usize {
        self.bank.len()
    }

    fn dim(&self) -> usize {
        self.bank.dim()
    }
}

/// Euclidean distances from the candidate lists of consecutive query tiles (`rows x k` values
/// `||m||^2 - 2 q.m` and indices per tile, in query order).
fn tiles_to_result(
    queries: &[f32],
    d: usize,
    k: usize,
    tiles: impl Iterator<Item = (Vec<f32>, Vec<u32>)>,
) -> KnnResult {
    let nq = queries.len() / d.max(1);
    let mut distances = Vec::with_capacity(nq * k);
    let mut indices = Vec::with_capacity(nq * k);
    let mut q = 0;
    for (cd, ci) in tiles {
        for (ds, is) in cd.chunks_exact(k).zip(ci.chunks_exact(k)) {
            let qn = sq_norm(&queries[q * d..(q + 1) * d]);
            distances.extend(ds.iter().map(|&v| distance(v, qn)));
            indices.extend_from_slice(is);
            q += 1;
        }
    }
    KnnResult {
        distances,
        indices,
        k,
    }
}

/// The obvious double loop (f64 accumulation), for tests and as a specification.
pub fn naive_search(bank: &MemoryBank, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult> {
    let d = bank.dim();
    check_search(queries, nq, d, k, bank.len())?;
    let mut distances = Vec::with_capacity(nq * k);
    let mut indices = Vec::with_capacity(nq * k);
    for q in queries.chunks_exact(d) {
        let mut all: Vec<(f64, u32)> = (0..bank.len())
            .map(|i| {
                (
                    bank.row(i)
                        .iter()
                        .zip(q)
                        .map(|(a, b)| ((a - b) as f64).powi(2))
                        .sum::<f64>(),
                    i as u32,
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(v, i) in &all[..k] {
            distances.push(v.sqrt() as f32);
            indices.push(i);
        }
    }
    Ok(KnnResult {
        distances,
        indices,
        k,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand_distr::{Distribution, StandardNormal};

    pub(crate) fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect()
    }

    /// Asserts equal results up to float tolerance; indices may differ only where distances tie.
    pub(crate) fn assert_close(got: &KnnResult, want: &KnnResult, rel: f32) {
        assert_eq!(got.k, want.k);
        assert_eq!(got.distances.len(), want.distances.len());
        for (j, (g, w)) in got.distances.iter().zip(&want.distances).enumerate() {
            assert!(
                (g - w).abs() <= rel * w.max(1.0),
                "distance {j}: got {g}, want {w}"
            );
            if got.indices[j] != want.indices[j] {
                let q = j / want.k;
                let row = want.row_distances(q);
                let tied = row
                    .iter()
                    .filter(|&&x| (x - w).abs() <= rel * w.max(1.0))
                    .count()
                    > 1
                    || (j % want.k == want.k - 1);
                assert!(
                    tied,
                    "index {j}: got {}, want {} (no tie)",
                    got.indices[j], want.indices[j]
                );
            }
        }
    }

    #[test]
    fn brute_force_matches_naive() {
        for (n, d, nq) in [
            (1usize, 3usize, 2usize),
            (37, 5, 11),
            (1500, 152, 131),
            (2100, 33, 300),
            (3000, 7, 1),
            // Several query tiles of the fused kernel (1,024 queries at d = 40) and bank blocks.
            (5003, 40, 1100),
            // d = 1536: two panels per fused block, 160-query tiles.
            (301, 1536, 170),
        ] {
            let bank = MemoryBank::from_rows(random(n, d, n as u64), d).unwrap();
            let q = random(nq, d, 99);
            let idx = BruteForce::build(&bank).unwrap();
            for k in [1usize, 9] {
                if k > n {
                    assert!(matches!(
                        idx.search(&q, nq, k),
                        Err(MemoryBankError::InvalidK { .. })
                    ));
                    continue;
                }
                let want = naive_search(&bank, &q, nq, k).unwrap();
                for kernel in [
                    KnnKernel::Gemm,
                    KnnKernel::Fused,
                    KnnKernel::Screened,
                    KnnKernel::Auto,
                ] {
                    let got = idx.search_on(&q, nq, k, kernel).unwrap();
                    assert_close(&got, &want, 1e-4);
                }
            }
        }
    }

    #[test]
    fn fused_kernel_runs_here_or_says_why_not() {
        // The fused path is only exercised on AVX-512 machines; say so instead of passing silently.
        if !crate::fused::available() {
            eprintln!("fused k-NN kernel not tested: this CPU has no AVX-512F (gemm path only)");
        }
        // Duplicate bank rows: equal distances, the smaller index must win on both paths.
        let d = 24;
        let mut rows = random(70, d, 5);
        let dup = rows[3 * d..4 * d].to_vec();
        rows[40 * d..41 * d].copy_from_slice(&dup);
        rows[65 * d..66 * d].copy_from_slice(&dup);
        let bank = MemoryBank::from_rows(rows, d).unwrap();
        let idx = BruteForce::new(bank);
        for kernel in [KnnKernel::Gemm, KnnKernel::Fused] {
            let r = idx.search_on(&dup, 1, 3, kernel).unwrap();
            assert_eq!(r.row_indices(0), &[3, 40, 65], "{kernel:?}");
        }
    }

    /// Low-rank data like CNN patch features: `n` points near a `rank`-d subspace of R^d
    /// (non-negative offset, small isotropic noise), clustered along it.
    pub(crate) fn low_rank(n: usize, d: usize, rank: usize, seed: u64) -> Vec<f32> {
        let basis = random(rank, d, seed ^ 0xb0b);
        let centres = random(32, rank, seed ^ 0xc0c);
        let coef = random(n, rank, seed);
        let noise = random(n, d, seed ^ 0x5eed);
        let mut out = vec![0.0f32; n * d];
        for i in 0..n {
            let c = &centres[(i % 32) * rank..(i % 32 + 1) * rank];
            for (r, b) in basis.chunks_exact(d).enumerate() {
                let a = 3.0 * c[r] + 0.7 * coef[i * rank + r];
                for (o, &bv) in out[i * d..(i + 1) * d].iter_mut().zip(b) {
                    *o += a * bv;
                }
            }
            for (o, &e) in out[i * d..(i + 1) * d]
                .iter_mut()
                .zip(&noise[i * d..(i + 1) * d])
            {
                *o = (*o + 0.05 * e + 4.0).max(0.0);
            }
        }
        out
    }

    #[test]
    fn screened_equals_fused_through_the_index() {
        if !crate::fused::bf16_available() {
            eprintln!("bf16-screened k-NN not tested: this CPU has no AVX512-BF16");
            return;
        }
        // Two query tiles and a short one; a wide bank (several dimension chunks, odd d).
        for (n, d, nq) in [(3000usize, 1535usize, 530usize), (5000, 152, 37)] {
            let bank = MemoryBank::from_rows(random(n, d, 3), d).unwrap();
            let q = random(nq, d, 4);
            let idx = BruteForce::new(bank);
            idx.prepare();
            assert!(idx.screens(), "n = {n}, d = {d}");
            for k in [1usize, 9, 64] {
                let want = idx.search_on(&q, nq, k, KnnKernel::Fused).unwrap();
                for kernel in [KnnKernel::Screened, KnnKernel::Auto] {
                    let got = idx.search_on(&q, nq, k, kernel).unwrap();
                    assert_eq!(got, want, "n = {n}, d = {d}, k = {k}, {kernel:?}");
                }
            }
        }
    }

    #[test]
    fn pruned_equals_fused_bit_for_bit() {
        if !crate::fused::available() {
            eprintln!("pruned k-NN not tested: this CPU has no AVX-512F (it runs the gemm scan)");
            return;
        }
        for (n, d, nq) in [(4000usize, 152usize, 700usize), (2500, 400, 300)] {
            let mut rows = low_rank(n, d, 6, n as u64);
            // Exact duplicates: equal values, the smaller index must win.
            let dup = rows[5 * d..6 * d].to_vec();
            rows[3000 * d / 2..(3000 / 2 + 1) * d].copy_from_slice(&dup);
            rows[(n - 1) * d..n * d].copy_from_slice(&dup);
            let bank = MemoryBank::from_rows(rows, d).unwrap();
            let idx = BruteForce::new(bank.clone());
            assert!(idx.prunes(), "low-rank bank n = {n}, d = {d} not pruned");
            // Queries: fresh points of the same distribution, bank rows themselves, and far
            // outliers (anomalies: large distances, little pruning).
            let mut q = low_rank(nq, d, 6, n as u64);
            q[..d].copy_from_slice(&dup);
            q[d..2 * d].copy_from_slice(bank.row(77));
            for v in &mut q[2 * d..3 * d] {
                *v += 25.0;
            }
            for k in [1usize, 3, 9, 16] {
                let want = idx.search_on(&q, nq, k, KnnKernel::Fused).unwrap();
                let got = idx.search_on(&q, nq, k, KnnKernel::Pruned).unwrap();
                assert_eq!(got, want, "n = {n}, d = {d}, k = {k}");
            }
            let r = idx.search(&q, nq, 3).unwrap();
            assert_eq!(r.row_indices(0), &[5, 1500, n as u32 - 1]);
            assert_eq!(r.row_indices(1)[0], 77);
        }
    }

    #[test]
    fn prune_record_gives_up_once_a_quarter_needs_full_scans() {
        let r = PruneRecord::default();
        assert!(r.worth_trying());
        r.add(4000, 4000);
        assert!(
            r.worth_trying(),
            "fewer than 4,096 queries seen: keep trying"
        );
        r.add(96, 0);
        assert!(!r.worth_trying(), "4,000 of 4,096 scanned in full");
        let r = PruneRecord::default();
        r.add(8192, 276);
        assert!(r.worth_trying(), "bottle's worst batch: 3.4 % full scans");
        r.add(8192, 4000);
        assert!(!r.worth_trying(), "4,276 of 16,384");
        assert!(!r.clone().worth_trying(), "clones keep the record");
    }

    #[test]
    fn the_bank_packed_once_scans_as_packing_per_tile_did() {
        if !crate::fused::available() {
            eprintln!("packed-bank scan not tested: this CPU has no AVX-512F (gemm path only)");
            return;
        }
        // 2,001 rows: a partial last panel; 5 queries: one tile, the bank split between threads;
        // 2,100 queries: three tiles.
        let (n, d) = (2001usize, 40usize);
        let bank = MemoryBank::from_rows(random(n, d, 12), d).unwrap();
        let idx = BruteForce::new(bank.clone());
        for nq in [5usize, 2100] {
            let q = random(nq, d, 13);
            for k in [1usize, 4] {
                let got = idx.search_on(&q, nq, k, KnnKernel::Fused).unwrap();
                let (cd, ci) =
                    crate::fused::scan_rows(&q, nq, bank.as_slice(), &idx.norms, d, 0, n, k);
                for r in 0..nq {
                    let qn = sq_norm(&q[r * d..(r + 1) * d]);
                    for j in 0..k {
                        let want = distance(cd[r * k + j], qn);
                        assert_eq!(got.row_indices(r)[j], ci[r * k + j], "nq {nq}, k {k}");
                        assert_eq!(
                            got.distances[r * k + j].to_bits(),
                            want.to_bits(),
                            "nq {nq}, k {k}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn auto_times_every_serving_kernel_then_keeps_the_fastest() {
        let ms = std::time::Duration::from_millis;
        let all = [true, true, true];
        let t = KernelTrials::default();
        assert_eq!(
            t.pick(all),
            Trialled::Pruned,
            "untimed: the pruned kernel first"
        );
        t.record(Trialled::Pruned, 4096, ms(40), all, (1000, 64));
        assert_eq!(t.pick(all), Trialled::Screened);
        assert_eq!(
            t.pick([true, false, true]),
            Trialled::Fused,
            "no bf16: fused next"
        );
        t.record(Trialled::Screened, 2048, ms(10), all, (1000, 64));
        assert_eq!(
            t.pick(all),
            Trialled::Screened,
            "2,048 queries: not yet timed enough"
        );
        t.record(Trialled::Screened, 2048, ms(30), all, (1000, 64));
        t.record(Trialled::Fused, 8192, ms(50), all, (1000, 64));
        // Per pair: pruned 40/4096, screened 40/4096, fused 50/8192 (the fastest).
        assert_eq!(t.pick(all), Trialled::Fused);
        // A kernel that stopped serving (its record gave up) is no longer a choice.
        t.record(Trialled::Fused, 4096, ms(400), all, (1000, 64));
        assert_eq!(t.pick(all), Trialled::Pruned, "ties: the earlier kernel");
        assert_eq!(t.pick([false, false, true]), Trialled::Fused);
        assert_eq!(
            t.clone().pick(all),
            Trialled::Pruned,
            "clones keep the times"
        );
    }

    #[test]
    fn auto_gives_the_fused_results_whichever_kernel_serves() {
        if !crate::fused::available() {
            eprintln!("auto k-NN trials not tested: this CPU has no AVX-512F (gemm path only)");
            return;
        }
        let (n, d, nq) = (3000usize, 152usize, 1024usize);
        let idx = BruteForce::new(MemoryBank::from_rows(low_rank(n, d, 6, 3), d).unwrap());
        assert!(idx.prunes());
        let q = low_rank(nq, d, 6, 8);
        let want = idx.search_on(&q, nq, 1, KnnKernel::Fused).unwrap();
        // Four searches time the pruned kernel, four the screened one where the CPU runs it,
        // four the fused one; then the fastest serves.
        for i in 0..16 {
            assert_eq!(idx.search(&q, nq, 1).unwrap(), want, "search {i}");
        }
        let (t, logged) = *idx.trials.state.lock().unwrap();
        assert!(logged, "every serving kernel timed: {t:?}");
        assert!(
            t[0][0] >= TRIAL_QUERIES && t[2][0] >= TRIAL_QUERIES,
            "{t:?}"
        );
        // Small searches are served but not timed.
        let before = t[0][0] + t[1][0] + t[2][0];
        assert_eq!(
            idx.search(&q[..10 * d], 10, 1).unwrap(),
            idx.search_on(&q[..10 * d], 10, 1, KnnKernel::Fused)
                .unwrap()
        );
        let (t, _) = *idx.trials.state.lock().unwrap();
        assert_eq!(t[0][0] + t[1][0] + t[2][0], before);
    }

    #[test]
    fn pruned_declines_where_bounds_cannot_pay() {
        // i.i.d. Gaussian: 15 of 152 components hold ~10 % of the variance.
        let bank = MemoryBank::from_rows(random(3000, 152, 4), 152).unwrap();
        assert!(!BruteForce::new(bank).prunes());
        // Too few rows, too few dimensions.
        let small = MemoryBank::from_rows(low_rank(1000, 152, 6, 1), 152).unwrap();
        assert!(!BruteForce::new(small).prunes());
        let narrow = MemoryBank::from_rows(low_rank(4000, 32, 6, 1), 32).unwrap();
        assert!(!BruteForce::new(narrow).prunes());
        // k > 16 on a pruned bank: the fused scan, same results.
        let bank = MemoryBank::from_rows(low_rank(3000, 152, 6, 2), 152).unwrap();
        let idx = BruteForce::new(bank);
        let q = low_rank(50, 152, 6, 9);
        assert_eq!(
            idx.search_on(&q, 50, 20, KnnKernel::Pruned).unwrap(),
            idx.search_on(&q, 50, 20, KnnKernel::Fused).unwrap()
        );
    }

    #[test]
    fn exact_match_gives_zero_and_errors_are_typed() {
        let bank = MemoryBank::from_rows(random(50, 16, 1), 16).unwrap();
        let idx = BruteForce::new(bank.clone());
        let q = bank.row(17).to_vec();
        let r = idx.search(&q, 1, 3).unwrap();
        assert_eq!(r.row_indices(0)[0], 17);
        assert!(
            r.distances[0] < 2e-3,
            "clamped self distance {}",
            r.distances[0]
        );
        assert!(matches!(
            idx.search(&q, 2, 1),
            Err(MemoryBankError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            idx.search(&q, 1, 0),
            Err(MemoryBankError::InvalidK { k: 0, .. })
        ));
        assert!(matches!(
            idx.search(&[f32::NAN; 16], 1, 1),
            Err(MemoryBankError::NonFinite { .. })
        ));
    }
}
