//! Exact k-NN search time: PatchCore's test patches against the memory bank, CPU.
//!
//!     cargo bench --bench knn                              # criterion, every row
//!     AD_BENCH_QUICK=1 cargo bench --bench knn             # criterion, 784 queries only, no 164,000 bank
//!     AD_BENCH_ONESHOT=1 cargo bench --bench knn           # median of a few timed runs per row, one line each
//!                                                          # (AD_BENCH_FILTER=substring, AD_BENCH_RUNS=n, AD_BENCH_ALL=1,
//!                                                          #  AD_BENCH_GEMM=1 adds the grid on the gemm kernel,
//!                                                          #  AD_BENCH_FUSED=1 on the full fused scan)
//!     python3 benches/peers/knn_peer.py                    # faiss IndexFlatL2 + torch.cdist/topk, 2 threads
//!
//! Real data instead (one-shot only): MVTec bottle's patch features (`tools/bottle_features.py` and
//! `--test`), the bank a coreset (ratio 0.1) of the train patches, written for the peer:
//!
//!     AD_BENCH_REAL=/tmp/bottle_effnet152.f32,/tmp/bottle_test_effnet152.f32 AD_BENCH_ONESHOT=1 cargo bench --bench knn
//!     python3 benches/peers/knn_peer.py --real /tmp/bottle_bank_effnet152.f32 /tmp/bottle_test_effnet152.f32
//!
//! Rows (`ROWS`): 784 queries (one 28x28 image) and 83 x 784 = 65,072 (a test set) against banks of
//! 1,640 / 16,400 / 164,000 vectors, k = 1 and 9, d = 152 and 1536, for `BruteForce`, plus `BurnKnn` on
//! every bench device (`AD_BENCH_DEVICES`, default `cpu` = flex; see `benches/common`) and `KdTree`
//! at projected (16 / 128) dimensions. Data: Gaussian (brute force cost does not depend on the
//! values). Host-side indexes are labelled `host`, `BurnKnn` rows by their device. `Brute` is
//! `BruteForce`'s default kernel (`KnnKernel::Auto`: on Gaussian data the principal-subspace
//! bounds decline, so it is the bf16-screened scan where the CPU has AVX512-BF16); `Fused` forces
//! the full fused scan.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use ad_memory_bank::{
    BruteForce, BurnKnn, CoresetParams, CoresetSampler, CoresetSize, KdTree, KnnIndex, KnnKernel,
    MemoryBank,
};
use burn::tensor::Device;
use criterion::{BenchmarkId, Criterion, Throughput};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Index {
    Brute,
    /// `BruteForce` forced onto its fused full scan (real-data rows; the grid with `AD_BENCH_FUSED=1`).
    Fused,
    /// `BruteForce` forced onto its `gemm` kernel (rows added by `AD_BENCH_GEMM=1`).
    Gemm,
    Burn,
    Kd,
}

/// (index, queries, bank, d, k)
type Row = (Index, usize, usize, usize, usize);

const fn brute_rows() -> [Row; 24] {
    let mut rows = [(Index::Brute, 0, 0, 0, 0); 24];
    let nqs = [784, 65_072];
    let banks = [1_640, 16_400, 164_000];
    let ds = [152, 1536];
    let ks = [1, 9];
    let mut i = 0;
    let mut a = 0;
    while a < 2 {
        let mut b = 0;
        while b < 3 {
            let mut c = 0;
            while c < 2 {
                let mut e = 0;
                while e < 2 {
                    rows[i] = (Index::Brute, nqs[a], banks[b], ds[c], ks[e]);
                    i += 1;
                    e += 1;
                }
                c += 1;
            }
            b += 1;
        }
        a += 1;
    }
    rows
}

/// Brute force over the full issue-4 grid.
const BRUTE: [Row; 24] = brute_rows();

/// One-shot mode skips rows above this many GFLOP (2 nq n d) unless `AD_BENCH_ALL` is set: the two
/// 65,072 x 164,000 x 1536 rows are 32.8 TFLOP each (several minutes per run for every peer).
const MAX_GFLOP: f64 = 4000.0;

/// Burn (flex) and kd-tree comparison rows.
const OTHER: &[Row] = &[
    (Index::Burn, 784, 16_400, 152, 1),
    (Index::Burn, 784, 16_400, 152, 9),
    (Index::Burn, 784, 16_400, 1536, 1),
    (Index::Burn, 784, 164_000, 1536, 1),
    (Index::Brute, 784, 16_400, 16, 1),
    (Index::Kd, 784, 16_400, 16, 1),
    (Index::Brute, 784, 16_400, 128, 1),
    (Index::Kd, 784, 16_400, 128, 1),
    (Index::Brute, 784, 164_000, 128, 9),
    (Index::Kd, 784, 164_000, 128, 9),
];

fn gaussian(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n * d)
        .map(|_| {
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

enum Built {
    Brute(BruteForce),
    Fused(BruteForce),
    Gemm(BruteForce),
    Burn(Box<BurnKnn>),
    Kd(Box<KdTree>),
}

impl Built {
    fn new(index: Index, bank: &MemoryBank, device: &Device) -> Self {
        match index {
            Index::Brute => Built::Brute(BruteForce::new(bank.clone())),
            Index::Fused => Built::Fused(BruteForce::new(bank.clone())),
            Index::Gemm => Built::Gemm(BruteForce::new(bank.clone())),
            Index::Burn => Built::Burn(Box::new(BurnKnn::on_device(bank, device))),
            Index::Kd => Built::Kd(Box::new(KdTree::build(bank).expect("kd-tree"))),
        }
    }
    fn search(&self, q: &[f32], nq: usize, k: usize) -> f32 {
        let r = match self {
            Built::Brute(i) => i.search(q, nq, k),
            Built::Fused(i) => i.search_on(q, nq, k, KnnKernel::Fused),
            Built::Gemm(i) => i.search_on(q, nq, k, KnnKernel::Gemm),
            Built::Burn(i) => i.search(q, nq, k),
            Built::Kd(i) => i.search(q, nq, k),
        }
        .expect("search");
        r.distances[0]
    }
}

/// A row on one device (`host` for the indexes that run on the host).
struct Case {
    row: Row,
    device_name: String,
    device: Device,
}

fn label(case: &Case) -> String {
    let (index, nq, n, d, k) = case.row;
    let on = &case.device_name;
    format!("{index:?}@{on}/q{nq}-n{n}-d{d}-k{k}")
}

/// Every row, `BurnKnn` rows once per bench device.
fn cases(rows: &[Row]) -> Vec<Case> {
    let devices = common::bench_devices();
    let mut out = Vec::new();
    for &row in rows {
        if row.0 == Index::Burn {
            for (name, device) in &devices {
                out.push(Case {
                    row,
                    device_name: name.clone(),
                    device: device.clone(),
                });
            }
        } else {
            out.push(Case {
                row,
                device_name: "host".into(),
                device: Device::flex(),
            });
        }
    }
    out
}

fn rows(quick: bool) -> Vec<Row> {
    let grid = |var: &str, index: Index| -> Vec<Row> {
        if std::env::var_os(var).is_some() {
            BRUTE.iter().map(|r| (index, r.1, r.2, r.3, r.4)).collect()
        } else {
            Vec::new()
        }
    };
    let gemm = grid("AD_BENCH_GEMM", Index::Gemm);
    let fused = grid("AD_BENCH_FUSED", Index::Fused);
    BRUTE
        .iter()
        .chain(&gemm)
        .chain(&fused)
        .chain(OTHER)
        .copied()
        .filter(|r| !quick || (r.1 == 784 && r.2 <= 16_400))
        .collect()
}

/// Median wall time of `runs` calls of `f` (one-shot mode).
fn median_seconds(runs: usize, f: impl Fn() -> f32) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Reads a raw little-endian f32 file of 152-d rows.
fn read_rows(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Real-data rows: `AD_BENCH_REAL=TRAIN,TEST` feature files (152-d); the bank is a coreset
/// (ratio 0.1, default parameters) of TRAIN, written to `AD_BENCH_REAL_BANK` (default
/// `/tmp/bottle_bank_effnet152.f32`) for the peer; queries are TEST's first 784 rows (one image)
/// and all of them. Default kernel (`Brute`) against the full fused scan.
fn run_real(spec: &str, runs: usize, filter: Option<&str>) {
    const D: usize = 152;
    let (train, test) = spec
        .split_once(',')
        .expect("AD_BENCH_REAL=TRAIN.f32,TEST.f32");
    let train = read_rows(train);
    let test = read_rows(test);
    let n = train.len() / D;
    let sampler = CoresetSampler::new(CoresetParams {
        size: CoresetSize::Ratio(0.1),
        ..Default::default()
    })
    .expect("coreset params");
    let selection = sampler.select(&train, n, D).expect("coreset");
    let bank = MemoryBank::from_selection(&train, n, D, &selection.indices).expect("bank");
    let bank_path = std::env::var("AD_BENCH_REAL_BANK")
        .unwrap_or_else(|_| "/tmp/bottle_bank_effnet152.f32".into());
    let bytes: Vec<u8> = bank
        .as_slice()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&bank_path, bytes).unwrap_or_else(|e| panic!("{bank_path}: {e}"));
    println!(
        "knn ours real bank {} x {D} written to {bank_path}",
        bank.len()
    );
    let all = test.len() / D;
    for index in [Index::Brute, Index::Fused] {
        let built = Built::new(index, &bank, &Device::flex());
        built.search(&test[..D], 1, 9); // warm-up (and the pruned kernel's bounds)
        for nq in [784, all] {
            for k in [1usize, 9] {
                let name = format!("{index:?}@host/real-bottle-q{nq}-n{}-d{D}-k{k}", bank.len());
                if filter.is_some_and(|f| !name.contains(f)) {
                    continue;
                }
                let t = median_seconds(runs, || built.search(&test[..nq * D], nq, k));
                println!("knn ours {name} median_s={t:.5} runs={runs}");
            }
        }
    }
}

fn main() {
    // `RUST_LOG=ad_memory_bank=debug`: how much of each search the pruned kernel computed.
    let _ = env_logger::try_init();
    let quick = std::env::var_os("AD_BENCH_QUICK").is_some();
    let cases = cases(&rows(quick));
    let filter = std::env::var("AD_BENCH_FILTER").ok();
    if std::env::var_os("AD_BENCH_ONESHOT").is_some() {
        let runs_default: usize = std::env::var("AD_BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        if let Ok(spec) = std::env::var("AD_BENCH_REAL") {
            run_real(&spec, runs_default, filter.as_deref());
            return;
        }
        for case in &cases {
            let name = label(case);
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            let (index, nq, n, d, k) = case.row;
            let gflop = 2.0 * (nq * n * d) as f64 / 1e9;
            if gflop > MAX_GFLOP && std::env::var_os("AD_BENCH_ALL").is_none() {
                println!("knn ours skipped {name} gflop={gflop:.0}");
                continue;
            }
            // One run for the heavy rows (tens of seconds each), `AD_BENCH_RUNS` (default 3) otherwise.
            let runs = if gflop > 500.0 { 1 } else { runs_default };
            let bank = MemoryBank::from_rows(gaussian(n, d, 1), d).expect("bank");
            let q = gaussian(nq, d, 2);
            let built = Built::new(index, &bank, &case.device);
            built.search(&q[..d], 1, k); // warm-up
            let t = median_seconds(runs, || built.search(&q, nq, k));
            println!("knn ours {name} median_s={t:.5} runs={runs}");
        }
        return;
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(if quick { 2 } else { 10 }));
    let mut group = c.benchmark_group("knn");
    for case in &cases {
        let (index, nq, n, d, k) = case.row;
        let bank = MemoryBank::from_rows(gaussian(n, d, 1), d).expect("bank");
        let q = gaussian(nq, d, 2);
        let built = Built::new(index, &bank, &case.device);
        group.throughput(Throughput::Elements(nq as u64));
        group.bench_with_input(BenchmarkId::new("search", label(case)), &q, |b, q| {
            b.iter(|| built.search(q, nq, k))
        });
    }
    group.finish();
    c.final_summary();
}
