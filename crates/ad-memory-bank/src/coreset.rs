//! Greedy k-center coreset selection (PatchCore section 3.2) with a reference and a fast exact variant.
//!
//! Both greedy variants run the algorithm of anomalib's `KCenterGreedy`:
//! start from one point `s` (selected first), keep every point's distance to the selected set, and
//! repeatedly select the point with the largest such distance (first index on ties, as `torch.max`),
//! set its distance to zero and update all distances with the new centre.
//! Distances are kept **squared** (the argmax of squared distances is the argmax of distances) and are
//! always computed by the same kernel ([`crate::simd::sq_dist`]) in the same argument order, so the
//! reference and the fast variant hold bit-identical distance arrays and select identical indices.
//!
//! The fast variant ([`CoresetAlgorithm::Fast`]) does the same updates with far fewer distance
//! computations, all of them exact:
//! * every point remembers the centre `a(p)` realising its distance `r(p)`, and points are grouped by
//!   that centre (each group keeps its members and its largest `r`, with the first index attaining it,
//!   so the next argmax is a scan over groups; the members' `r` and subspace coordinates are stored
//!   in the group beside their indices, so the tests of a step stream through memory);
//! * when centre `c` is added, the triangle inequality `d(p, c) >= d(a, c) - r(p)` proves that no point
//!   with `d(a, c)^2 >= 4 r(p)^2` gets closer, and no point of a group with `d(a, c)^2 >= 4 max r^2`;
//! * `d(a, c)` is first bounded from below by the distance of the two centres' coordinates in the
//!   16-d principal subspace of the projected features (an orthonormal projection never increases a
//!   distance); the exact `d(a, c)` is computed only for groups that bound cannot rule out, and only
//!   their members are visited;
//! * a visited point's distance stops early once a partial sum reaches `r(p)^2` (partial sums of
//!   non-negative terms only grow under IEEE rounding, so this is exact);
//! * the member scans run on rayon threads; the kernels are runtime-dispatched builds of one
//!   16-lane computation (AVX-512 intrinsics, or plain Rust for AVX2 and baseline; no FMA
//!   contraction, fixed reduction order: bit-identical results).
//!
//! Every test carries a safety factor (`1 + 1e-3` on the squared bound, slack on the subspace bound)
//! far larger than the f32 rounding error of the kernels (about `(d/16 + 20) * 2^-24` relative), so a
//! point is only skipped when the reference would leave its value unchanged. How much work is saved
//! depends on the data: on real CNN patch features about 1-4 % of the reference's point-to-centre
//! distances are computed; on structureless i.i.d. Gaussian data almost all are (no speed-up).
//! Memory: `O(N * d_proj)` for the projected features plus `O(N)` bookkeeping; never `N x N`.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::error::{MemoryBankError, Result, check_matrix};
use crate::projection::{ProjectionKind, ProjectionMatrix};
use crate::simd;
use crate::subspace::Pca;

/// How many points to keep (config files: `{ ratio = 0.1 }` or `{ count = 5000 }`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoresetSize {
    /// A fraction of the input, `floor(n * ratio)` points (as anomalib's `int(n * ratio)`), in (0, 1].
    Ratio(f64),
    /// An absolute number of points.
    Count(usize),
}

/// Which point the greedy search starts from (it is the first selected index; config files:
/// `"random"` or `{ index = 17 }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPoint {
    /// Uniformly random, from the sampler's seed.
    Random,
    /// A fixed index (e.g. the one a Python peer drew with `torch.randint`).
    Index(usize),
}

/// Selection algorithm (config files and command lines: `greedy`, `greedy-reference`,
/// `random`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoresetAlgorithm {
    /// Plain greedy k-center, one full distance update per selected point (anomalib's algorithm).
    #[serde(rename = "greedy_reference", alias = "reference")]
    Reference,
    /// Exact greedy k-center with triangle-inequality pruning; the same indices as `Reference`.
    #[serde(rename = "greedy", alias = "fast")]
    Fast,
    /// Uniform random subset without replacement (baseline).
    Random,
}

impl CoresetAlgorithm {
    /// Every algorithm with its name.
    pub const ALL: [(&'static str, CoresetAlgorithm); 3] = [
        ("greedy", Self::Fast),
        ("greedy-reference", Self::Reference),
        ("random", Self::Random),
    ];
}

impl std::fmt::Display for CoresetAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(_, a)| a == self)
            .map_or("greedy", |(n, _)| n);
        f.write_str(name)
    }
}

impl std::str::FromStr for CoresetAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let norm = s.to_ascii_lowercase().replace('_', "-");
        match norm.as_str() {
            "fast" => return Ok(Self::Fast),
            "reference" => return Ok(Self::Reference),
            _ => {}
        }
        Self::ALL
            .iter()
            .find(|(n, _)| *n == norm)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                format!("unknown coreset algorithm `{s}`: use greedy, greedy-reference or random")
            })
    }
}

/// Coreset parameters (unchecked; [`CoresetSampler::new`] validates them once). The one
/// parameter type for the coreset: detector configs, config files and the command line all use
/// it. In a config file:
///
/// ```toml
/// [coreset]
/// size = { ratio = 0.1 }
/// algorithm = "greedy"
/// projection = { gaussian = { dim = 128 } }
/// seed = 0
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoresetParams {
    /// Number of points to keep.
    pub size: CoresetSize,
    /// Projection applied before the distance computations.
    pub projection: ProjectionKind,
    /// Seed for the projection matrix, the random start point and the random baseline.
    pub seed: u64,
    /// Start point of the greedy search.
    pub start: StartPoint,
    /// Algorithm.
    pub algorithm: CoresetAlgorithm,
}

impl Default for CoresetParams {
    /// 10 % of the points, official 128-d Gaussian projection, seed 0, random start, fast exact greedy.
    fn default() -> Self {
        Self {
            size: CoresetSize::Ratio(0.1),
            projection: ProjectionKind::official(),
            seed: 0,
            start: StartPoint::Random,
            algorithm: CoresetAlgorithm::Fast,
        }
    }
}

/// Result of a coreset selection.
#[derive(Clone, Debug, PartialEq)]
pub struct CoresetSelection {
    /// Selected row indices into the input, in selection order (the start point first).
    pub indices: Vec<usize>,
    /// Coverage radius: the largest Euclidean distance of any input point to its nearest selected
    /// point, measured in the space the selection used (the projected features).
    pub coverage_radius: f32,
    /// Point-to-centre distance computations started (the reference does `n * count`; the fast
    /// variant skips those the triangle inequality rules out). 0 for the random baseline.
    pub distance_evaluations: u64,
}

impl CoresetSelection {
    /// Gathers the selected rows of `features` (`n x d` row-major) into a new row-major buffer.
    pub fn gather(&self, features: &[f32], d: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.indices.len() * d);
        for &i in &self.indices {
            out.extend_from_slice(&features[i * d..(i + 1) * d]);
        }
        out
    }
}

/// A validated coreset sampler.
#[derive(Clone, Debug)]
pub struct CoresetSampler {
    params: CoresetParams,
}

impl CoresetSampler {
    /// Validates `params`.
    pub fn new(params: CoresetParams) -> Result<Self> {
        match params.size {
            CoresetSize::Ratio(r) if !(r > 0.0 && r <= 1.0) => {
                return Err(MemoryBankError::InvalidParameter {
                    name: "size.ratio",
                    value: r.to_string(),
                    reason: "must lie in (0, 1]",
                });
            }
            CoresetSize::Count(0) => {
                return Err(MemoryBankError::InvalidParameter {
                    name: "size.count",
                    value: "0".into(),
                    reason: "must be at least 1",
                });
            }
            _ => {}
        }
        params.projection.check()?;
        Ok(Self { params })
    }

    /// The validated parameters.
    pub fn params(&self) -> &CoresetParams {
        &self.params
    }

    /// Number of points selected from `n` inputs.
    pub fn target_count(&self, n: usize) -> Result<usize> {
        let count = match self.params.size {
            CoresetSize::Ratio(r) => (n as f64 * r) as usize,
            CoresetSize::Count(c) => c,
        };
        if count == 0 || count > n {
            return Err(MemoryBankError::InvalidParameter {
                name: "size",
                value: format!("{:?} of {n} points = {count}", self.params.size),
                reason: "the coreset must hold between 1 and n points",
            });
        }
        Ok(count)
    }

    /// Selects the coreset of `n` row-major features of dimension `d` (projecting them first).
    pub fn select(&self, features: &[f32], n: usize, d: usize) -> Result<CoresetSelection> {
        check_matrix("features", features, n, d)?;
        match self.params.projection.matrix(n, d, self.params.seed)? {
            None => self.select_projected(features, n, d),
            Some(m) => {
                let t = std::time::Instant::now();
                // `features` were checked just above.
                let projected = m.project_checked(features, n);
                log::debug!(
                    "coreset projection {n} x {d} -> {}: {:.3} s",
                    m.out_dim(),
                    t.elapsed().as_secs_f64()
                );
                self.select_projected(&projected, n, m.out_dim())
            }
        }
    }

    /// Selects with an explicit projection matrix instead of the configured projection.
    pub fn select_with_matrix(
        &self,
        features: &[f32],
        n: usize,
        matrix: &ProjectionMatrix,
    ) -> Result<CoresetSelection> {
        let projected = matrix.project(features, n)?;
        self.select_projected(&projected, n, matrix.out_dim())
    }

    /// Selects from features that are already projected (`n x d` row-major); no projection applied.
    pub fn select_projected(
        &self,
        projected: &[f32],
        n: usize,
        d: usize,
    ) -> Result<CoresetSelection> {
        check_matrix("projected features", projected, n, d)?;
        let count = self.target_count(n)?;
        let start = match self.params.start {
            StartPoint::Index(i) if i >= n => {
                return Err(MemoryBankError::IndexOutOfRange {
                    what: "start point",
                    index: i,
                    len: n,
                });
            }
            StartPoint::Index(i) => i,
            StartPoint::Random => start_rng(self.params.seed).random_range(0..n),
        };
        Ok(match self.params.algorithm {
            CoresetAlgorithm::Reference => greedy_reference(projected, n, d, count, start),
            CoresetAlgorithm::Fast => greedy_fast(projected, n, d, count, start),
            CoresetAlgorithm::Random => {
                let mut rng = start_rng(self.params.seed);
                let indices: Vec<usize> = rand::seq::index::sample(&mut rng, n, count).into_vec();
                let coverage_radius = coverage_radius(projected, n, d, &indices)?;
                CoresetSelection {
                    indices,
                    coverage_radius,
                    distance_evaluations: 0,
                }
            }
        })
    }
}

impl CoresetSampler {
    /// Continues a greedy k-center selection over new points: the `m` rows of `centres` (already
    /// selected, e.g. a fitted memory bank) stay selected, and `count` of the `n` rows of
    /// `candidates` are added, each the candidate farthest from everything selected so far —
    /// the next steps of the same greedy search, as if the centres had been its first picks.
    /// Both matrices (`d` columns) are projected with the sampler's projection, drawn for
    /// `m + n` samples. Nothing but the centres is needed from the earlier selection.
    ///
    /// Returns indices into `candidates` in selection order; the coverage radius is the largest
    /// distance of a candidate to the whole selection (old centres included). `count = 0`
    /// selects nothing. With [`CoresetAlgorithm::Random`] the candidates are sampled uniformly.
    pub fn extend(
        &self,
        centres: &[f32],
        m: usize,
        candidates: &[f32],
        n: usize,
        d: usize,
        count: usize,
    ) -> Result<CoresetSelection> {
        if m > 0 {
            check_matrix("centres", centres, m, d)?;
        }
        check_matrix("candidates", candidates, n, d)?;
        if count > n {
            return Err(MemoryBankError::InvalidParameter {
                name: "count",
                value: format!("{count} of {n} candidates"),
                reason: "cannot select more candidates than there are",
            });
        }
        if count == 0 {
            return Ok(CoresetSelection {
                indices: Vec::new(),
                coverage_radius: 0.0,
                distance_evaluations: 0,
            });
        }
        if m == 0 {
            // Nothing selected yet: an ordinary selection.
            let sampler = CoresetSampler::new(CoresetParams {
                size: CoresetSize::Count(count),
                ..self.params.clone()
            })?;
            return sampler.select(candidates, n, d);
        }
        let (mut points, dp) = match self.params.projection.matrix(m + n, d, self.params.seed)? {
            None => ([centres, candidates].concat(), d),
            Some(mat) => {
                let mut p = mat.project(centres, m)?;
                p.extend(mat.project(candidates, n)?);
                (p, mat.out_dim())
            }
        };
        Ok(match self.params.algorithm {
            CoresetAlgorithm::Reference => continue_reference(&points, m, n, dp, count),
            CoresetAlgorithm::Fast => continue_fast(&points, m, n, dp, count),
            CoresetAlgorithm::Random => {
                let mut rng = start_rng(self.params.seed);
                let indices: Vec<usize> = rand::seq::index::sample(&mut rng, n, count).into_vec();
                let all: Vec<usize> = (0..m).chain(indices.iter().map(|&i| m + i)).collect();
                let radius = coverage_radius(&points, m + n, dp, &all)?;
                points.clear();
                CoresetSelection {
                    indices,
                    coverage_radius: radius,
                    distance_evaluations: 0,
                }
            }
        })
    }
}

/// [`CoresetSampler::extend`] written plainly: distances of the candidates (rows `m..m + n` of
/// `points`) to the centres (rows `0..m`), then the greedy loop over the candidates.
fn continue_reference(
    points: &[f32],
    m: usize,
    n: usize,
    d: usize,
    count: usize,
) -> CoresetSelection {
    let cands = &points[m * d..];
    let mut mind2 = vec![f32::INFINITY; n];
    let update = |c: &[f32], mind2: &mut [f32]| {
        mind2
            .par_chunks_mut(ROW_BLOCK)
            .zip(cands.par_chunks(ROW_BLOCK * d))
            .for_each(|(mm, rows)| simd::min_update(rows, d, c, mm));
    };
    for c in points[..m * d].chunks_exact(d) {
        update(c, &mut mind2);
    }
    let mut indices = Vec::with_capacity(count);
    for _ in 0..count {
        let idx = first_unselected_argmax(&mind2, &indices);
        mind2[idx] = 0.0;
        indices.push(idx);
        update(&cands[idx * d..(idx + 1) * d], &mut mind2);
    }
    let coverage_radius = mind2.iter().fold(0.0f32, |a, &b| a.max(b)).sqrt();
    CoresetSelection {
        indices,
        coverage_radius,
        distance_evaluations: n as u64 * (m + count) as u64,
    }
}

/// First index of the maximum; once every distance is zero (all candidates duplicate selected
/// points) the first candidate not yet selected, so no candidate is taken twice.
fn first_unselected_argmax(mind2: &[f32], selected: &[usize]) -> usize {
    let idx = first_argmax(mind2);
    if mind2[idx] > 0.0 {
        return idx;
    }
    (0..mind2.len())
        .find(|i| !selected.contains(i))
        .unwrap_or(idx)
}

/// [`CoresetSampler::extend`] with the pruned search: the centres enter the state first.
fn continue_fast(points: &[f32], m: usize, n: usize, d: usize, count: usize) -> CoresetSelection {
    let mut state = FastState::new(points, m + n, d, 0);
    for c in 1..m {
        state.add_centre(c);
    }
    let mut indices = Vec::with_capacity(count);
    let mut taken = vec![false; n];
    for _ in 0..count {
        let mut idx = state.max.1;
        if state.max.0 <= 0.0 || idx < m {
            // Every candidate duplicates a selected point: take them in order.
            idx = m + taken.iter().position(|&t| !t).unwrap_or(0);
        }
        taken[idx - m] = true;
        indices.push(idx - m);
        state.add_centre(idx);
    }
    CoresetSelection {
        indices,
        coverage_radius: state.max.0.max(0.0).sqrt(),
        distance_evaluations: state.evaluated,
    }
}

fn start_rng(seed: u64) -> Xoshiro256PlusPlus {
    // Different stream from the projection matrix, which uses `seed` itself.
    Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15)
}

/// Largest Euclidean distance from any of the `n` points to its nearest point among `selected`.
/// Costs `O(n * |selected| * d)` with the pruned update of the fast greedy search (no `N x N` matrix).
pub fn coverage_radius(points: &[f32], n: usize, d: usize, selected: &[usize]) -> Result<f32> {
    check_matrix("points", points, n, d)?;
    if selected.is_empty() {
        return Err(MemoryBankError::Empty("selected"));
    }
    if let Some(&i) = selected.iter().find(|&&i| i >= n) {
        return Err(MemoryBankError::IndexOutOfRange {
            what: "selected",
            index: i,
            len: n,
        });
    }
    let mut state = FastState::new(points, n, d, selected[0]);
    for &c in &selected[1..] {
        state.add_centre(c);
    }
    Ok(state.max.0.max(0.0).sqrt())
}

/// Number of rows per parallel task in full updates.
const ROW_BLOCK: usize = 2048;

fn full_update(points: &[f32], d: usize, c: usize, mind2: &mut [f32]) {
    let centre = &points[c * d..(c + 1) * d];
    mind2
        .par_chunks_mut(ROW_BLOCK)
        .zip(points.par_chunks(ROW_BLOCK * d))
        .for_each(|(m, rows)| {
            simd::min_update(rows, d, centre, m);
        });
}

/// First index of the maximum (torch.max semantics for finite values).
fn first_argmax(v: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_v {
            best_v = x;
            best = i;
        }
    }
    best
}

/// anomalib's `KCenterGreedy.select_coreset_idxs` on projected features, written plainly.
fn greedy_reference(
    points: &[f32],
    n: usize,
    d: usize,
    count: usize,
    start: usize,
) -> CoresetSelection {
    let mut mind2 = vec![f32::INFINITY; n];
    let mut indices = Vec::with_capacity(count);
    indices.push(start);
    full_update(points, d, start, &mut mind2);
    for _ in 1..count {
        let idx = first_argmax(&mind2);
        mind2[idx] = 0.0;
        indices.push(idx);
        full_update(points, d, idx, &mut mind2);
    }
    let coverage_radius = mind2.iter().fold(0.0f32, |a, &b| a.max(b)).sqrt();
    CoresetSelection {
        indices,
        coverage_radius,
        distance_evaluations: n as u64 * count as u64,
    }
}

/// Safety factor of the pruning test, see the module documentation.
const PRUNE_FACTOR: f32 = 4.0 * (1.0 + 1e-3);

/// State of the pruned greedy search.
struct FastState<'a> {
    points: &'a [f32],
    d: usize,
    /// Squared distance of every point to its nearest centre.
    mind2: Vec<f32>,
    /// Centre slot realising `mind2` for every point.
    assign: Vec<u32>,
    /// Point index of each centre slot.
    centres: Vec<u32>,
    /// Scratch: squared distances of all centres to the newest one (`+inf` where not needed).
    dcc: Vec<f32>,
    /// Max of `mind2` over the points of each centre slot.
    gmax: Vec<f32>,
    /// First (smallest) point index attaining `gmax`, per centre slot.
    garg: Vec<u32>,
    /// Points of each centre slot, with their current values (member-contiguous).
    groups: Vec<Group>,
    /// `0..n`, for full passes.
    all: Vec<u32>,
    /// Largest `mind2` after the last update and the first index attaining it.
    max: (f32, usize),
    /// Point-to-centre distance computations started (for reporting the work saved).
    evaluated: u64,
    /// Members visited by the scans of tier 3, and the groups scanned (for reporting).
    visited: u64,
    scanned_groups: u64,
    /// Principal subspace used for cheap lower bounds of centre-to-centre distances.
    pca: Option<Pca>,
    /// Centres' coordinates in the principal subspace, `k x PCS` (f32).
    cproj: Vec<f32>,
    /// Per-centre error allowance of the lower bound (see [`simd::subspace_lower_bound_sq`]).
    cslack: Vec<f32>,
    /// Every point's coordinates in the principal subspace, `n x PCS` (empty without one): a
    /// lower bound of each point's distance to a new centre, tested before its row is read.
    pcoords: Vec<f32>,
    /// Per-point error allowance of `pcoords`.
    pslack: Vec<f32>,
}

/// Number of principal components used for the lower bounds.
const PCS: usize = 16;

/// The points of one centre slot of [`FastState`], each with its current squared distance and
/// subspace coordinates stored beside it, so a scan streams through memory; kept equal to the
/// state's per-point arrays.
#[derive(Default)]
struct Group {
    ids: Vec<u32>,
    mind2: Vec<f32>,
    /// `len x PCS` (empty without subspace bounds).
    coords: Vec<f32>,
    /// Empty without subspace bounds.
    slack: Vec<f32>,
}

impl Group {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn members(&self) -> simd::Members<'_> {
        simd::Members {
            ids: &self.ids,
            mind2: &self.mind2,
            coords: &self.coords,
            slack: &self.slack,
        }
    }

    /// Adds point `p` with its value `v`, copying its coordinates from the state's arrays.
    fn push(&mut self, p: u32, v: f32, pcoords: &[f32], pslack: &[f32]) {
        let pu = p as usize;
        self.ids.push(p);
        self.mind2.push(v);
        if let (Some(coords), Some(&slack)) =
            (pcoords.get(pu * PCS..(pu + 1) * PCS), pslack.get(pu))
        {
            self.coords.extend_from_slice(coords);
            self.slack.push(slack);
        }
    }

    /// Keeps the members still assigned to slot `g`, in order.
    fn retain_assigned(&mut self, assign: &[u32], g: u32) {
        let with_coords = !self.slack.is_empty();
        let mut kept = 0;
        for i in 0..self.ids.len() {
            let p = self.ids[i];
            if assign[p as usize] != g {
                continue;
            }
            if kept != i {
                self.ids[kept] = p;
                self.mind2[kept] = self.mind2[i];
                if with_coords {
                    self.coords.copy_within(i * PCS..(i + 1) * PCS, kept * PCS);
                    self.slack[kept] = self.slack[i];
                }
            }
            kept += 1;
        }
        self.ids.truncate(kept);
        self.mind2.truncate(kept);
        if with_coords {
            self.coords.truncate(kept * PCS);
            self.slack.truncate(kept);
        }
    }

    /// Largest value and the first (smallest) point index attaining it; `(-inf, u32::MAX)` when
    /// empty.
    fn max(&self) -> (f32, u32) {
        let mut best = (f32::NEG_INFINITY, u32::MAX);
        for (&p, &v) in self.ids.iter().zip(&self.mind2) {
            if v > best.0 || (v == best.0 && p < best.1) {
                best = (v, p);
            }
        }
        best
    }
}

/// Below this share of the variance in the principal subspace, per-point lower bounds prune
/// too little to pay for themselves (i.i.d. data: `PCS / d`), and are not used. A point is
/// tested only when it may be within twice its current distance of the new centre, so a bound
/// that keeps less than a quarter of the squared distance can rarely rule it out.
const POINT_BOUND_MIN_CAPTURED: f64 = 0.25;

impl<'a> FastState<'a> {
    fn new(points: &'a [f32], n: usize, d: usize, start: usize) -> Self {
        let t0 = std::time::Instant::now();
        let mut mind2 = vec![f32::INFINITY; n];
        full_update(points, d, start, &mut mind2);
        let max = (mind2[first_argmax(&mind2)], first_argmax(&mind2));
        let t1 = std::time::Instant::now();
        let pca = (d > 2 * PCS && n > 4 * PCS).then(|| Pca::fit(points, n, d, PCS, 8192));
        let t2 = std::time::Instant::now();
        let (pcoords, pslack) = match &pca {
            Some(pca) if pca.captured >= POINT_BOUND_MIN_CAPTURED => pca.project_all(points, d),
            _ => (Vec::new(), Vec::new()),
        };
        log::debug!(
            "fast coreset set-up: first pass {:.3} s, principal subspace {:.3} s, coordinates {:.3} s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            t2.elapsed().as_secs_f64()
        );
        let mut s = Self {
            points,
            d,
            mind2,
            assign: vec![0; n],
            centres: vec![start as u32],
            dcc: Vec::new(),
            gmax: vec![max.0],
            garg: vec![max.1 as u32],
            groups: Vec::new(),
            all: (0..n as u32).collect(),
            max,
            evaluated: n as u64,
            visited: 0,
            scanned_groups: 0,
            pca,
            cproj: Vec::new(),
            cslack: Vec::new(),
            pcoords,
            pslack,
        };
        s.groups.push(Group {
            ids: s.all.clone(),
            mind2: s.mind2.clone(),
            coords: s.pcoords.clone(),
            slack: s.pslack.clone(),
        });
        s.push_projection(start);
        s
    }

    fn push_projection(&mut self, c: usize) {
        // One f64 projection per step: tighter than the points' f32 allowance, so the
        // centre-to-centre bounds prune more.
        if let Some(pca) = &self.pca {
            let mut coords = [0.0f32; PCS];
            let slack = pca.project(&self.points[c * self.d..(c + 1) * self.d], &mut coords);
            self.cproj.extend_from_slice(&coords);
            self.cslack.push(slack);
        }
    }

    /// Adds point `c` as a new centre and updates every distance exactly as the reference would.
    fn add_centre(&mut self, c: usize) {
        let d = self.d;
        let k = self.centres.len();
        let points = self.points;
        let centre_row = &points[c * d..(c + 1) * d];
        // `rc2` = current distance of `c` to the set; every centre `a` has `|a - c|^2 >= rc2` (as
        // computed f32 values: `rc2` is the minimum of the same kernel's values). A group whose
        // bound satisfies `PRUNE_FACTOR * gmax <= rc2` is therefore pruned point by point anyway:
        // its centre distance is not even computed (`+inf` marks it).
        let rc2 = self.mind2[c];
        self.dcc.clear();
        self.dcc.resize(k + 1, f32::INFINITY);
        // Tier 1: a cheap lower bound from the principal subspace stands in for the distance of every
        // centre (a lower bound keeps the pruning test exact); tier 2 computes the exact distance only
        // for groups the bound cannot rule out.
        let mut candidates: Vec<u32> = Vec::new();
        if self.pca.is_some() {
            self.push_projection(c);
            let cc = &self.cproj[k * PCS..(k + 1) * PCS];
            let sc = self.cslack[k];
            let (cproj, cslack, gmax) = (&self.cproj, &self.cslack, &self.gmax);
            let lbs: Vec<f32> = (0..k)
                .into_par_iter()
                .with_min_len(2048)
                .map(|a| {
                    if PRUNE_FACTOR * gmax[a] <= rc2 {
                        f32::INFINITY
                    } else {
                        simd::subspace_lower_bound_sq(
                            &cproj[a * PCS..(a + 1) * PCS],
                            cslack[a],
                            cc,
                            sc,
                        )
                    }
                })
                .collect();
            for (a, lb) in lbs.into_iter().enumerate() {
                self.dcc[a] = lb;
                if lb < PRUNE_FACTOR * self.gmax[a] {
                    candidates.push(a as u32);
                }
            }
        } else {
            candidates
                .extend((0..k as u32).filter(|&a| PRUNE_FACTOR * self.gmax[a as usize] > rc2));
        }
        let mut cd = vec![0.0f32; candidates.len()];
        let ids: Vec<u32> = candidates
            .iter()
            .map(|&a| self.centres[a as usize])
            .collect();
        if candidates.len() * d >= 1 << 15 {
            cd.par_chunks_mut(256)
                .zip(ids.par_chunks(256))
                .for_each(|(out, ids)| {
                    simd::dists_to_rows(ids, points, d, centre_row, out);
                });
        } else {
            simd::dists_to_rows(&ids, points, d, centre_row, &mut cd);
        }
        for (&a, &v) in candidates.iter().zip(&cd) {
            self.dcc[a as usize] = v;
        }
        self.dcc[k] = 0.0;
        // Tier 3: scan the members of the groups that may hold a point closer to `c`.
        let groups: Vec<u32> = candidates
            .into_iter()
            .filter(|&a| self.dcc[a as usize] < PRUNE_FACTOR * self.gmax[a as usize])
            .collect();
        let work: usize = groups.iter().map(|&a| self.groups[a as usize].len()).sum();
        self.visited += work as u64;
        self.scanned_groups += groups.len() as u64;
        let (all_groups, dcc) = (&self.groups, &self.dcc);
        // The new centre's subspace coordinates (pushed in tier 1) against every point's.
        let bound = (!self.pcoords.is_empty()).then(|| simd::CentreBound {
            centre: &self.cproj[k * PCS..(k + 1) * PCS],
            centre_slack: self.cslack[k],
        });
        let bound = bound.as_ref();
        let (all, mind2, pcoords, pslack) = (&self.all, &self.mind2, &self.pcoords, &self.pslack);
        let scan = |acc: (Vec<(u32, f32)>, u64), a: &u32| {
            let (mut out, mut ev) = acc;
            let a = *a as usize;
            ev += simd::scan_members(
                all_groups[a].members(),
                points,
                d,
                centre_row,
                dcc[a],
                PRUNE_FACTOR,
                bound,
                &mut out,
            );
            (out, ev)
        };
        let (moved, evaluated) = if work > self.mind2.len() / 2 {
            // Little is pruned (structureless data): one sequential pass over all rows streams
            // memory better than visiting the groups' scattered members.
            (0..all.len().div_ceil(ROW_BLOCK))
                .into_par_iter()
                .fold(
                    || (Vec::new(), 0u64),
                    |(mut out, ev), block| {
                        let rows = block * ROW_BLOCK..((block + 1) * ROW_BLOCK).min(all.len());
                        let members = simd::Members {
                            ids: &all[rows.clone()],
                            mind2: &mind2[rows.clone()],
                            coords: pcoords
                                .get(rows.start * PCS..rows.end * PCS)
                                .unwrap_or_default(),
                            slack: pslack.get(rows).unwrap_or_default(),
                        };
                        let e = simd::scan_members(
                            members,
                            points,
                            d,
                            centre_row,
                            f32::NEG_INFINITY,
                            PRUNE_FACTOR,
                            bound,
                            &mut out,
                        );
                        (out, ev + e)
                    },
                )
                .reduce(
                    || (Vec::new(), 0),
                    |(mut a, x), (mut b, y)| {
                        a.append(&mut b);
                        (a, x + y)
                    },
                )
        } else if work >= PARALLEL_MIN_POINTS {
            groups.par_iter().fold(|| (Vec::new(), 0u64), scan).reduce(
                || (Vec::new(), 0),
                |(mut a, x), (mut b, y)| {
                    a.append(&mut b);
                    (a, x + y)
                },
            )
        } else {
            groups.iter().fold((Vec::new(), 0u64), scan)
        };
        self.evaluated += evaluated;
        // Apply: the new centre itself (distance 0, as the reference's scatter) and the moved points.
        let new_id = k as u32;
        let mut touched = vec![self.assign[c]];
        let mut group = Group::default();
        self.mind2[c] = 0.0;
        self.assign[c] = new_id;
        group.push(c as u32, 0.0, &self.pcoords, &self.pslack);
        for (p, v) in moved {
            let pu = p as usize;
            if pu == c {
                continue;
            }
            touched.push(self.assign[pu]);
            self.mind2[pu] = v;
            self.assign[pu] = new_id;
            group.push(p, v, &self.pcoords, &self.pslack);
        }
        self.centres.push(c as u32);
        self.groups.push(group);
        self.gmax.push(0.0);
        self.garg.push(u32::MAX);
        touched.sort_unstable();
        touched.dedup();
        for &g in touched.iter().chain(std::iter::once(&new_id)) {
            let group = &mut self.groups[g as usize];
            group.retain_assigned(&self.assign, g);
            let (v, p) = group.max();
            self.gmax[g as usize] = v.max(0.0);
            self.garg[g as usize] = p;
        }
        // Next argmax: largest group maximum, smallest index on ties (= first index of the max).
        let mut best = (f32::NEG_INFINITY, u32::MAX);
        for (&v, &p) in self.gmax.iter().zip(&self.garg) {
            if p != u32::MAX && (v > best.0 || (v == best.0 && p < best.1)) {
                best = (v, p);
            }
        }
        self.max = (best.0, best.1 as usize);
    }
}

/// Below this many member points a step's scan runs on the calling thread.
const PARALLEL_MIN_POINTS: usize = 16_384;

/// Exact greedy k-center with pruning: identical indices to [`greedy_reference`].
fn greedy_fast(points: &[f32], n: usize, d: usize, count: usize, start: usize) -> CoresetSelection {
    let t0 = std::time::Instant::now();
    let mut state = FastState::new(points, n, d, start);
    let setup = t0.elapsed();
    let mut indices = Vec::with_capacity(count);
    indices.push(start);
    for _ in 1..count {
        let idx = state.max.1;
        indices.push(idx);
        state.add_centre(idx);
    }
    log::debug!(
        "fast coreset: {} of {} reference distance computations ({:.1} %); set-up {:.3} s \
         (principal subspace: {}), {} steps {:.3} s; {} groups and {} members visited",
        state.evaluated,
        n as u64 * count as u64,
        100.0 * state.evaluated as f64 / (n as f64 * count as f64),
        setup.as_secs_f64(),
        match &state.pca {
            Some(p) if !state.pcoords.is_empty() => format!(
                "{:.0} % of the variance, point bounds on",
                100.0 * p.captured
            ),
            Some(p) => format!(
                "{:.0} % of the variance, point bounds off",
                100.0 * p.captured
            ),
            None => "none".into(),
        },
        count,
        (t0.elapsed() - setup).as_secs_f64(),
        state.scanned_groups,
        state.visited
    );
    let coverage_radius = state.max.0.max(0.0).sqrt();
    CoresetSelection {
        indices,
        coverage_radius,
        distance_evaluations: state.evaluated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    fn gaussian(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect()
    }

    /// Mixture of `k` tight blobs on a low-dimensional subspace (like CNN patch features).
    fn clustered(n: usize, d: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let centres: Vec<f32> = (0..k * d)
            .map(|_| {
                let v: f32 = StandardNormal.sample(&mut rng);
                5.0 * v
            })
            .collect();
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            let c = rng.random_range(0..k);
            for j in 0..d {
                let noise: f32 = StandardNormal.sample(&mut rng);
                out.push(centres[c * d + j] + 0.3 * noise);
            }
        }
        out
    }

    fn sampler(
        count: usize,
        algorithm: CoresetAlgorithm,
        start: StartPoint,
        seed: u64,
    ) -> CoresetSampler {
        CoresetSampler::new(CoresetParams {
            size: CoresetSize::Count(count),
            projection: ProjectionKind::Identity,
            seed,
            start,
            algorithm,
        })
        .unwrap()
    }

    fn naive_radius(x: &[f32], n: usize, d: usize, sel: &[usize]) -> f32 {
        (0..n)
            .map(|p| {
                sel.iter()
                    .map(|&c| {
                        x[p * d..(p + 1) * d]
                            .iter()
                            .zip(&x[c * d..(c + 1) * d])
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f32>()
                    })
                    .fold(f32::INFINITY, f32::min)
            })
            .fold(0.0f32, f32::max)
            .sqrt()
    }

    #[test]
    fn fast_equals_reference_on_random_and_clustered_data() {
        for (n, d, count, seed) in [
            (300usize, 8usize, 60usize, 1u64),
            (1000, 16, 100, 2),
            (2500, 33, 250, 3),
            (777, 128, 77, 4),
        ] {
            for data in [
                gaussian(n, d, seed),
                clustered(n, d, 12, seed),
                clustered(n, 3, 5, seed + 10),
            ] {
                let d = data.len() / n;
                let r = sampler(count, CoresetAlgorithm::Reference, StartPoint::Random, seed)
                    .select(&data, n, d)
                    .unwrap();
                let f = sampler(count, CoresetAlgorithm::Fast, StartPoint::Random, seed)
                    .select(&data, n, d)
                    .unwrap();
                assert_eq!(
                    r.indices, f.indices,
                    "n={n} d={d} count={count} seed={seed}"
                );
                assert_eq!(r.coverage_radius.to_bits(), f.coverage_radius.to_bits());
                let naive = naive_radius(&data, n, d, &r.indices);
                assert!((naive - r.coverage_radius).abs() <= 1e-4 * naive.max(1.0));
            }
        }
    }

    #[test]
    fn fast_equals_reference_with_duplicates_and_full_selection() {
        // Many exact duplicates: distances reach 0 and ties decide (first index wins in both).
        let n = 200;
        let base = clustered(10, 4, 3, 9);
        let data: Vec<f32> = (0..n)
            .flat_map(|i| base[(i % 10) * 4..(i % 10) * 4 + 4].to_vec())
            .collect();
        for count in [5, 10, 15, 200] {
            let r = sampler(count, CoresetAlgorithm::Reference, StartPoint::Index(3), 0)
                .select(&data, n, 4)
                .unwrap();
            let f = sampler(count, CoresetAlgorithm::Fast, StartPoint::Index(3), 0)
                .select(&data, n, 4)
                .unwrap();
            assert_eq!(r.indices, f.indices, "count {count}");
        }
    }

    #[test]
    fn extend_continues_the_greedy_search_exactly() {
        for (x, n, d) in [
            (clustered(3000, 48, 12, 5), 3000, 48),
            (gaussian(1500, 40, 6), 1500, 40),
        ] {
            for algorithm in [CoresetAlgorithm::Fast, CoresetAlgorithm::Reference] {
                let full = sampler(120, algorithm, StartPoint::Index(7), 3)
                    .select_projected(&x, n, d)
                    .unwrap();
                // The first 50 picks as centres; continuing over all points (the centres among
                // them, at distance 0) must make the remaining 70 picks.
                let centres: Vec<f32> = full.indices[..50]
                    .iter()
                    .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
                    .collect();
                let params = CoresetParams {
                    projection: ProjectionKind::Identity,
                    algorithm,
                    ..Default::default()
                };
                let ext = CoresetSampler::new(params)
                    .unwrap()
                    .extend(&centres, 50, &x, n, d, 70)
                    .unwrap();
                assert_eq!(ext.indices, full.indices[50..], "{algorithm}");
                assert_eq!(ext.coverage_radius, full.coverage_radius, "{algorithm}");
            }
        }
    }

    #[test]
    fn extend_edge_cases() {
        let (n, d) = (200, 8);
        let x = gaussian(n, d, 1);
        let s = CoresetSampler::new(CoresetParams::default()).unwrap();
        let none = s.extend(&x[..10 * d], 10, &x, n, d, 0).unwrap();
        assert!(none.indices.is_empty());
        assert!(s.extend(&x[..10 * d], 10, &x, n, d, n + 1).is_err());
        // No centres: an ordinary selection of `count` points.
        let fresh = s.extend(&[], 0, &x, n, d, 20).unwrap();
        assert_eq!(fresh.indices.len(), 20);
        // Candidates that duplicate the centres: every one taken once, none twice.
        for algorithm in [CoresetAlgorithm::Fast, CoresetAlgorithm::Reference] {
            let p = CoresetParams {
                algorithm,
                projection: ProjectionKind::Identity,
                ..Default::default()
            };
            let e = CoresetSampler::new(p)
                .unwrap()
                .extend(&x[..5 * d], 5, &x[..5 * d], 5, d, 5)
                .unwrap();
            let mut got = e.indices.clone();
            got.sort_unstable();
            assert_eq!(got, vec![0, 1, 2, 3, 4], "{algorithm}");
            assert_eq!(e.coverage_radius, 0.0);
        }
    }

    #[test]
    fn greedy_is_farthest_first_on_a_line() {
        // Points 0, 1, ..., 9 on a line, start at 0: the farthest is 9, then 4 or 5 (first max: 4 at d 4 vs 5 at d 4)
        let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let s = sampler(3, CoresetAlgorithm::Fast, StartPoint::Index(0), 0)
            .select(&x, 10, 1)
            .unwrap();
        assert_eq!(s.indices, vec![0, 9, 4]);
        assert!((s.coverage_radius - 2.0).abs() < 1e-6);
        let r = sampler(3, CoresetAlgorithm::Reference, StartPoint::Index(0), 0)
            .select(&x, 10, 1)
            .unwrap();
        assert_eq!(r.indices, s.indices);
    }

    #[test]
    fn random_baseline_and_validation() {
        let x = gaussian(500, 8, 5);
        let s = sampler(50, CoresetAlgorithm::Random, StartPoint::Random, 5)
            .select(&x, 500, 8)
            .unwrap();
        let mut u = s.indices.clone();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), 50);
        let naive = naive_radius(&x, 500, 8, &s.indices);
        assert!((naive - s.coverage_radius).abs() <= 1e-4 * naive);
        let g = sampler(50, CoresetAlgorithm::Fast, StartPoint::Random, 5)
            .select(&x, 500, 8)
            .unwrap();
        assert!(
            g.coverage_radius < s.coverage_radius,
            "greedy should cover better than random"
        );
        assert!(
            CoresetSampler::new(CoresetParams {
                size: CoresetSize::Ratio(0.0),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            CoresetSampler::new(CoresetParams {
                size: CoresetSize::Count(0),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            sampler(501, CoresetAlgorithm::Fast, StartPoint::Random, 0)
                .select(&x, 500, 8)
                .is_err()
        );
        assert!(
            sampler(5, CoresetAlgorithm::Fast, StartPoint::Index(500), 0)
                .select(&x, 500, 8)
                .is_err()
        );
        let mut bad = x.clone();
        bad[17] = f32::NAN;
        assert!(matches!(
            sampler(5, CoresetAlgorithm::Fast, StartPoint::Random, 0).select(&bad, 500, 8),
            Err(MemoryBankError::NonFinite { position: 17, .. })
        ));
    }

    #[test]
    fn projected_selection_with_default_params() {
        let (n, d) = (600, 200);
        let x = clustered(n, d, 20, 11);
        let params = CoresetParams {
            size: CoresetSize::Ratio(0.05),
            ..Default::default()
        };
        let s = CoresetSampler::new(params.clone())
            .unwrap()
            .select(&x, n, d)
            .unwrap();
        assert_eq!(s.indices.len(), 30);
        let r = CoresetSampler::new(CoresetParams {
            algorithm: CoresetAlgorithm::Reference,
            ..params
        })
        .unwrap()
        .select(&x, n, d)
        .unwrap();
        assert_eq!(s.indices, r.indices);
        assert_eq!(s.gather(&x, d).len(), 30 * d);
    }
}
