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
//! The fast variant ([`CoresetAlgorithm::Fast`]) avoids distance computations exactly:
//! every point remembers the centre `a(p)` that realises its distance `r(p)`. When a centre `c` is
//! added, the triangle inequality gives `d(p, c) >= d(a, c) - r(p)`, so if `d(a, c)^2 >= 4 r(p)^2` the
//! point cannot get closer and is skipped with one table look-up (`d(a, c)` is computed once per
//! centre and step). The test uses a safety factor `1 + 1e-3`, far larger than the f32 rounding error
//! of the squared-distance kernel (about `(d/16 + 20) * 2^-24` relative), so pruning never skips a
//! point whose value the reference would change. Distances that are computed stop early once a
//! partial sum reaches the current value (exact: partial sums of non-negative terms only grow under
//! IEEE rounding). The pass is split over rayon threads and yields the next argmax. Memory:
//! `O(N * d_proj)` for the projected features plus `O(N)` bookkeeping; never an `N x N` matrix.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::error::{MemoryBankError, Result, check_matrix};
use crate::projection::{ProjectionKind, ProjectionMatrix};
use crate::simd;

/// How many points to keep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CoresetSize {
    /// A fraction of the input, `floor(n * ratio)` points (as anomalib's `int(n * ratio)`), in (0, 1].
    Ratio(f64),
    /// An absolute number of points.
    Count(usize),
}

/// Which point the greedy search starts from (it is the first selected index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPoint {
    /// Uniformly random, from the sampler's seed.
    Random,
    /// A fixed index (e.g. the one a Python peer drew with `torch.randint`).
    Index(usize),
}

/// Selection algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoresetAlgorithm {
    /// Plain greedy k-center, one full distance update per selected point (anomalib's algorithm).
    Reference,
    /// Exact greedy k-center with triangle-inequality pruning; the same indices as `Reference`.
    Fast,
    /// Uniform random subset without replacement (baseline).
    Random,
}

/// Unchecked coreset parameters; [`CoresetSampler::new`] validates them once.
#[derive(Clone, Debug, PartialEq)]
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
                let projected = m.project(features, n)?;
                self.select_projected(&projected, n, m.out_dim())
            }
        }
    }

    /// Selects with an explicit projection matrix instead of the configured projection.
    pub fn select_with_matrix(&self, features: &[f32], n: usize, matrix: &ProjectionMatrix) -> Result<CoresetSelection> {
        let projected = matrix.project(features, n)?;
        self.select_projected(&projected, n, matrix.out_dim())
    }

    /// Selects from features that are already projected (`n x d` row-major); no projection applied.
    pub fn select_projected(&self, projected: &[f32], n: usize, d: usize) -> Result<CoresetSelection> {
        check_matrix("projected features", projected, n, d)?;
        let count = self.target_count(n)?;
        let start = match self.params.start {
            StartPoint::Index(i) if i >= n => {
                return Err(MemoryBankError::IndexOutOfRange { what: "start point", index: i, len: n });
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
                CoresetSelection { indices, coverage_radius, distance_evaluations: 0 }
            }
        })
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
        return Err(MemoryBankError::IndexOutOfRange { what: "selected", index: i, len: n });
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
    mind2.par_chunks_mut(ROW_BLOCK).zip(points.par_chunks(ROW_BLOCK * d)).for_each(|(m, rows)| {
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
fn greedy_reference(points: &[f32], n: usize, d: usize, count: usize, start: usize) -> CoresetSelection {
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
    CoresetSelection { indices, coverage_radius, distance_evaluations: n as u64 * count as u64 }
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
    /// Scratch: squared distances of all centres to the newest one.
    dcc: Vec<f32>,
    /// Largest `mind2` after the last update and the first index attaining it.
    max: (f32, usize),
    /// Point-to-centre distance computations started (for reporting the work saved).
    evaluated: u64,
}

impl<'a> FastState<'a> {
    fn new(points: &'a [f32], n: usize, d: usize, start: usize) -> Self {
        let mut mind2 = vec![f32::INFINITY; n];
        full_update(points, d, start, &mut mind2);
        let max = (mind2[first_argmax(&mind2)], first_argmax(&mind2));
        Self {
            points,
            d,
            mind2,
            assign: vec![0; n],
            centres: vec![start as u32],
            dcc: Vec::new(),
            max,
            evaluated: n as u64,
        }
    }

    /// Adds point `c` as a new centre and updates every distance exactly as the reference would.
    fn add_centre(&mut self, c: usize) {
        let d = self.d;
        let k = self.centres.len();
        let points = self.points;
        let centre_row = &points[c * d..(c + 1) * d];
        // Squared distances of all existing centres to the new one: [k]
        self.dcc.resize(k + 1, 0.0);
        let (old, new) = self.dcc.split_at_mut(k);
        new[0] = 0.0;
        if k * d >= 1 << 15 {
            old.par_chunks_mut(1024).zip(self.centres.par_chunks(1024)).for_each(|(out, ids)| {
                simd::dists_to_rows(ids, points, d, centre_row, out);
            });
        } else {
            simd::dists_to_rows(&self.centres, points, d, centre_row, old);
        }
        // The reference sets the selected point's distance to 0 before updating.
        self.mind2[c] = 0.0;
        self.assign[c] = k as u32;
        self.centres.push(c as u32);
        let dcc = &self.dcc;
        let new_id = k as u32;
        let (best, best_i, evaluated) = self
            .mind2
            .par_chunks_mut(ROW_BLOCK)
            .zip(self.assign.par_chunks_mut(ROW_BLOCK))
            .enumerate()
            .map(|(b, (m, a))| {
                simd::fast_update(points, d, b * ROW_BLOCK, centre_row, dcc, PRUNE_FACTOR, new_id, m, a)
            })
            .reduce(
                || (f32::NEG_INFINITY, u32::MAX, 0),
                |x, y| {
                    let first = if y.0 > x.0 || (y.0 == x.0 && y.1 < x.1) { (y.0, y.1) } else { (x.0, x.1) };
                    (first.0, first.1, x.2 + y.2)
                },
            );
        self.max = (best, best_i as usize);
        self.evaluated += evaluated;
    }
}

/// Exact greedy k-center with pruning: identical indices to [`greedy_reference`].
fn greedy_fast(points: &[f32], n: usize, d: usize, count: usize, start: usize) -> CoresetSelection {
    let mut state = FastState::new(points, n, d, start);
    let mut indices = Vec::with_capacity(count);
    indices.push(start);
    for _ in 1..count {
        let idx = state.max.1;
        indices.push(idx);
        state.add_centre(idx);
    }
    log::debug!(
        "fast coreset: {} of {} reference distance computations ({:.1} %)",
        state.evaluated,
        n as u64 * count as u64,
        100.0 * state.evaluated as f64 / (n as f64 * count as f64)
    );
    let coverage_radius = state.max.0.max(0.0).sqrt();
    CoresetSelection { indices, coverage_radius, distance_evaluations: state.evaluated }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    fn gaussian(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n * d).map(|_| StandardNormal.sample(&mut rng)).collect()
    }

    /// Mixture of `k` tight blobs on a low-dimensional subspace (like CNN patch features).
    fn clustered(n: usize, d: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let centres: Vec<f32> = (0..k * d).map(|_| { let v: f32 = StandardNormal.sample(&mut rng); 5.0 * v }).collect();
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

    fn sampler(count: usize, algorithm: CoresetAlgorithm, start: StartPoint, seed: u64) -> CoresetSampler {
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
                    .map(|&c| x[p * d..(p + 1) * d].iter().zip(&x[c * d..(c + 1) * d]).map(|(a, b)| (a - b) * (a - b)).sum::<f32>())
                    .fold(f32::INFINITY, f32::min)
            })
            .fold(0.0f32, f32::max)
            .sqrt()
    }

    #[test]
    fn fast_equals_reference_on_random_and_clustered_data() {
        for (n, d, count, seed) in [(300usize, 8usize, 60usize, 1u64), (1000, 16, 100, 2), (2500, 33, 250, 3), (777, 128, 77, 4)] {
            for data in [gaussian(n, d, seed), clustered(n, d, 12, seed), clustered(n, 3, 5, seed + 10)] {
                let d = data.len() / n;
                let r = sampler(count, CoresetAlgorithm::Reference, StartPoint::Random, seed).select(&data, n, d).unwrap();
                let f = sampler(count, CoresetAlgorithm::Fast, StartPoint::Random, seed).select(&data, n, d).unwrap();
                assert_eq!(r.indices, f.indices, "n={n} d={d} count={count} seed={seed}");
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
        let data: Vec<f32> = (0..n).flat_map(|i| base[(i % 10) * 4..(i % 10) * 4 + 4].to_vec()).collect();
        for count in [5, 10, 15, 200] {
            let r = sampler(count, CoresetAlgorithm::Reference, StartPoint::Index(3), 0).select(&data, n, 4).unwrap();
            let f = sampler(count, CoresetAlgorithm::Fast, StartPoint::Index(3), 0).select(&data, n, 4).unwrap();
            assert_eq!(r.indices, f.indices, "count {count}");
        }
    }

    #[test]
    fn greedy_is_farthest_first_on_a_line() {
        // Points 0, 1, ..., 9 on a line, start at 0: the farthest is 9, then 4 or 5 (first max: 4 at d 4 vs 5 at d 4)
        let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let s = sampler(3, CoresetAlgorithm::Fast, StartPoint::Index(0), 0).select(&x, 10, 1).unwrap();
        assert_eq!(s.indices, vec![0, 9, 4]);
        assert!((s.coverage_radius - 2.0).abs() < 1e-6);
        let r = sampler(3, CoresetAlgorithm::Reference, StartPoint::Index(0), 0).select(&x, 10, 1).unwrap();
        assert_eq!(r.indices, s.indices);
    }

    #[test]
    fn random_baseline_and_validation() {
        let x = gaussian(500, 8, 5);
        let s = sampler(50, CoresetAlgorithm::Random, StartPoint::Random, 5).select(&x, 500, 8).unwrap();
        let mut u = s.indices.clone();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), 50);
        let naive = naive_radius(&x, 500, 8, &s.indices);
        assert!((naive - s.coverage_radius).abs() <= 1e-4 * naive);
        let g = sampler(50, CoresetAlgorithm::Fast, StartPoint::Random, 5).select(&x, 500, 8).unwrap();
        assert!(g.coverage_radius < s.coverage_radius, "greedy should cover better than random");
        assert!(CoresetSampler::new(CoresetParams { size: CoresetSize::Ratio(0.0), ..Default::default() }).is_err());
        assert!(CoresetSampler::new(CoresetParams { size: CoresetSize::Count(0), ..Default::default() }).is_err());
        assert!(sampler(501, CoresetAlgorithm::Fast, StartPoint::Random, 0).select(&x, 500, 8).is_err());
        assert!(sampler(5, CoresetAlgorithm::Fast, StartPoint::Index(500), 0).select(&x, 500, 8).is_err());
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
        let params = CoresetParams { size: CoresetSize::Ratio(0.05), ..Default::default() };
        let s = CoresetSampler::new(params.clone()).unwrap().select(&x, n, d).unwrap();
        assert_eq!(s.indices.len(), 30);
        let r = CoresetSampler::new(CoresetParams { algorithm: CoresetAlgorithm::Reference, ..params })
            .unwrap()
            .select(&x, n, d)
            .unwrap();
        assert_eq!(s.indices, r.indices);
        assert_eq!(s.gather(&x, d).len(), 30 * d);
    }
}
