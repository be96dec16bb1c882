//! Greedy k-center coreset selection time (PatchCore section 3.2), CPU.
//!
//!     cargo bench --bench coreset                          # criterion, every row (slow: minutes per row)
//!     AD_BENCH_QUICK=1 cargo bench --bench coreset         # criterion, quick rows only (N = 16,400)
//!     AD_BENCH_ONESHOT=1 cargo bench --bench coreset       # one timed run per row, one line each
//!                                                          # (AD_BENCH_FILTER=substring of the label)
//!     python3 benches/peers/coreset_peer.py                # anomalib KCenterGreedy + official sampler
//!
//! Data (`Data::Real`): real PatchCore features when `AD_BENCH_FEATURES` names the file written by
//! `python3 tools/bottle_features.py` (EfficientNet-Lite0 blocks 4+10, 152-d, MVTec bottle train,
//! 163,856 patches; for d = 1536 they are lifted by a fixed random 152 -> 1536 linear map, which keeps
//! their geometry); otherwise synthetic patch-like features (`patch_like`: 2,000 blobs on a 24-d latent
//! subspace, linear map to `d`, isotropic noise). `Data::Gaussian`: i.i.d. N(0, 1), the worst case
//! for pruning (no structure at all). Rows (`ROWS`): MVTec bottle's N = 164,000 patches, d = 152
//! (EfficientNet-Lite0) and 1536 (WideResNet-50-2), ratio 0.1 and 0.01, with anomalib's projection
//! (sparse JL, eps 0.9 -> 296 components) and the official one (dense, 128 components).
//! The start point is fixed (index 0) so every variant and peer does the same work.

use std::time::{Duration, Instant};

use ad_memory_bank::{
    CoresetAlgorithm, CoresetParams, CoresetSampler, CoresetSize, ProjectionKind, StartPoint,
};
use criterion::{BenchmarkId, Criterion, Throughput};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// (n, d, ratio, data, projection, algorithm)
type Row = (usize, usize, f64, Data, Proj, CoresetAlgorithm);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Data {
    Real,
    Gaussian,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proj {
    /// anomalib: sparse JL, eps = 0.9
    Sparse,
    /// official: dense, 128 components
    Dense128,
}

use CoresetAlgorithm::{Fast, Reference};
use Data::{Gaussian, Real};
use Proj::{Dense128, Sparse};

/// The full table (issue 4 shapes).
const ROWS: &[Row] = &[
    (164_000, 152, 0.01, Real, Sparse, Fast),
    (164_000, 152, 0.1, Real, Sparse, Fast),
    (164_000, 1536, 0.01, Real, Sparse, Fast),
    (164_000, 1536, 0.1, Real, Sparse, Fast),
    (164_000, 1536, 0.01, Real, Dense128, Fast),
    (164_000, 1536, 0.1, Real, Dense128, Fast),
    (164_000, 1536, 0.01, Gaussian, Sparse, Fast),
    (164_000, 1536, 0.01, Real, Sparse, Reference),
];

/// Quick rows (AD_BENCH_QUICK=1): a tenth of the patches.
const QUICK_ROWS: &[Row] = &[
    (16_400, 152, 0.1, Real, Sparse, Fast),
    (16_400, 152, 0.1, Real, Sparse, Reference),
    (16_400, 1536, 0.1, Real, Dense128, Fast),
];

fn normal(rng: &mut Xoshiro256PlusPlus) -> f32 {
    // Box-Muller
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Patch-like features: 2,000 blobs in a 24-d latent space, linear map to `d`, small isotropic noise.
fn patch_like(n: usize, d: usize, seed: u64) -> Vec<f32> {
    const LATENT: usize = 24;
    const BLOBS: usize = 2000;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let centres: Vec<f32> = (0..BLOBS * LATENT)
        .map(|_| 3.0 * normal(&mut rng))
        .collect();
    let basis: Vec<f32> = (0..LATENT * d)
        .map(|_| normal(&mut rng) / (LATENT as f32).sqrt())
        .collect();
    let mut out = vec![0.0f32; n * d];
    let mut z = [0.0f32; LATENT];
    for row in out.chunks_exact_mut(d) {
        let b = rng.random_range(0..BLOBS);
        for (l, zl) in z.iter_mut().enumerate() {
            *zl = centres[b * LATENT + l] + normal(&mut rng);
        }
        for (j, x) in row.iter_mut().enumerate() {
            let mut s = 0.1 * normal(&mut rng);
            for (l, zl) in z.iter().enumerate() {
                s += zl * basis[l * d + j];
            }
            *x = s;
        }
    }
    out
}

fn gaussian(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n * d).map(|_| normal(&mut rng)).collect()
}

fn sampler(row: &Row) -> CoresetSampler {
    let &(_, _, ratio, _, proj, algorithm) = row;
    CoresetSampler::new(CoresetParams {
        size: CoresetSize::Ratio(ratio),
        projection: match proj {
            Sparse => ProjectionKind::anomalib(),
            Dense128 => ProjectionKind::official(),
        },
        seed: 0,
        start: StartPoint::Index(0),
        algorithm,
    })
    .expect("valid bench parameters")
}

/// Real features from `AD_BENCH_FEATURES` (152-d rows), the first `n` rows, lifted to `d` if needed.
fn real(n: usize, d: usize) -> Option<(usize, Vec<f32>)> {
    let path = std::env::var_os("AD_BENCH_FEATURES")?;
    let bytes = std::fs::read(&path).ok()?;
    let all: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let n = n.min(all.len() / 152);
    let x = &all[..n * 152];
    if d == 152 {
        return Some((n, x.to_vec()));
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let lift: Vec<f32> = (0..152 * d)
        .map(|_| normal(&mut rng) / (152f32).sqrt())
        .collect();
    let mut out = vec![0.0f32; n * d];
    for (src, dst) in x.chunks_exact(152).zip(out.chunks_exact_mut(d)) {
        for (l, &v) in src.iter().enumerate() {
            for (o, w) in dst.iter_mut().zip(&lift[l * d..(l + 1) * d]) {
                *o += v * w;
            }
        }
    }
    Some((n, out))
}

/// The row's data and its actual row count (the real feature file holds 163,856 patches).
fn data(row: &Row) -> (usize, Vec<f32>, &'static str) {
    match row.3 {
        Real => match real(row.0, row.1) {
            Some((n, x)) => (n, x, "bottle-effnet"),
            None => (row.0, patch_like(row.0, row.1, 42), "synthetic-patch-like"),
        },
        Gaussian => (row.0, gaussian(row.0, row.1, 42), "gaussian"),
    }
}

fn label(row: &Row, n: usize, source: &str) -> String {
    let &(_, d, ratio, _, proj, algorithm) = row;
    format!("{algorithm:?}/{source}/{proj:?}/n{n}-d{d}-r{ratio}")
}

/// The label a row will have, without generating its data (so a filter skips the generation).
fn planned_label(row: &Row) -> String {
    let features = std::env::var_os("AD_BENCH_FEATURES")
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len() as usize / (4 * 152));
    match (row.3, features) {
        (Real, Some(rows)) => label(row, row.0.min(rows), "bottle-effnet"),
        (Real, None) => label(row, row.0, "synthetic-patch-like"),
        (Gaussian, _) => label(row, row.0, "gaussian"),
    }
}

fn oneshot(rows: &[Row]) {
    let filter = std::env::var("AD_BENCH_FILTER").ok();
    for row in rows {
        if filter
            .as_ref()
            .is_some_and(|f| !planned_label(row).contains(f.as_str()))
        {
            continue;
        }
        let (n, x, source) = data(row);
        let s = sampler(row);
        let t = Instant::now();
        let sel = s.select(&x, n, row.1).expect("selection");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "coreset ours {} time_s={secs:.3} selected={} radius={:.4} evaluated_frac={:.3}",
            label(row, n, source),
            sel.indices.len(),
            sel.coverage_radius,
            sel.distance_evaluations as f64 / (n as f64 * sel.indices.len() as f64)
        );
    }
}

fn main() {
    // `RUST_LOG=ad_memory_bank=debug`: the coreset's set-up and step times.
    let _ = env_logger::try_init();
    let quick = std::env::var_os("AD_BENCH_QUICK").is_some();
    let rows = if quick { QUICK_ROWS } else { ROWS };
    if std::env::var_os("AD_BENCH_ONESHOT").is_some() {
        oneshot(rows);
        return;
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(if quick { 10 } else { 60 }));
    let mut group = c.benchmark_group("coreset");
    for row in rows {
        let (n, x, source) = data(row);
        let s = sampler(row);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new("select", label(row, n, source)),
            &x,
            |b, x| b.iter(|| s.select(x, n, row.1).expect("selection")),
        );
    }
    group.finish();
    c.final_summary();
}
