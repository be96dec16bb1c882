//! Pixel AUROC and AUPRO on a test set's worth of anomaly maps: 83 maps of 256 x 256
//! (5,439,488 pixels, MVTec bottle-sized), CPU.
//!
//!     cargo bench --bench metrics                    # criterion
//!     AD_BENCH_ONESHOT=1 cargo bench --bench metrics # median and min of 7 timed runs, one line each
//!     python3 benches/peers/metrics_peer.py          # scikit-learn roc_auc_score + MVTec AU-PRO script
//!
//! Data (identical in the peer): splitmix64 hashes of the pixel index give uniform noise; 2 maps
//! in 3 hold an elliptic defect (its mask) that adds a second noise term, so the classes overlap
//! and AUROC is about 0.85. Both programs print the metric values once, so the numbers can be
//! compared as well as the times.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ad_metrics::{EvalOptions, MapDims, PixelMaps, aupro, evaluate, roc_auc};
use criterion::{BenchmarkId, Criterion, Throughput};

/// (maps, height, width)
const SHAPE: (usize, usize, usize) = (83, 256, 256);

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn uniform(x: u64) -> f32 {
    (splitmix(x) >> 40) as f32 / (1u64 << 24) as f32
}

/// Maps, masks, image scores, image labels.
fn data() -> (Vec<f32>, Vec<bool>, Vec<f32>, Vec<bool>) {
    let (n, h, w) = SHAPE;
    let hw = h * w;
    let mut maps = vec![0f32; n * hw];
    let mut masks = vec![false; n * hw];
    for i in 0..n {
        let defect = i % 3 != 0;
        let (cy, cx) = (64 + (i * 37) % 128, 64 + (i * 53) % 128);
        let (ry, rx) = (10 + (i % 5) * 6, 12 + (i % 7) * 5);
        for r in 0..h {
            for c in 0..w {
                let j = i * hw + r * w + c;
                let dy = (r as f64 - cy as f64) / ry as f64;
                let dx = (c as f64 - cx as f64) / rx as f64;
                let m = defect && dy * dy + dx * dx <= 1.0;
                masks[j] = m;
                maps[j] = 0.7 * uniform(j as u64)
                    + if m {
                        0.35 * uniform(j as u64 + (1 << 40))
                    } else {
                        0.0
                    };
            }
        }
    }
    let scores = maps
        .chunks(hw)
        .map(|m| m.iter().copied().fold(f32::MIN, f32::max))
        .collect();
    let labels = (0..n).map(|i| i % 3 != 0).collect();
    (maps, masks, scores, labels)
}

fn bench(c: &mut Criterion) {
    let (n, h, w) = SHAPE;
    let dims = MapDims::new(n, h, w);
    let (maps, masks, scores, labels) = data();
    let px = PixelMaps {
        maps: &maps,
        masks: &masks,
        dims,
    };
    let e = evaluate(&scores, &labels, &px, &EvalOptions::default()).expect("evaluate");
    let p = e.pixel.expect("pixel metrics");
    println!(
        "values: pixel_auroc={:.10} aupro@0.3={:.10} pixel_f1_max={:.10} regions={}",
        p.level.auroc, p.aupro, p.level.f1.f1, p.regions
    );

    let id = format!("{n}x{h}x{w}");
    if std::env::var_os("AD_BENCH_ONESHOT").is_some() {
        let time = |name: &str, f: &mut dyn FnMut()| {
            f(); // warm-up
            let mut ms: Vec<f64> = (0..7)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            println!("{name} {id}: median {:.1} ms, min {:.1} ms", ms[3], ms[0]);
        };
        time("pixel_auroc", &mut || {
            black_box(roc_auc(&maps, &masks).expect("auroc"));
        });
        time("aupro_0.3", &mut || {
            black_box(aupro(&maps, &masks, dims, 0.3).expect("aupro"));
        });
        time("evaluate_all", &mut || {
            black_box(evaluate(&scores, &labels, &px, &EvalOptions::default()).expect("evaluate"));
        });
        return;
    }
    let mut g = c.benchmark_group("metrics");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Elements((n * h * w) as u64));
    g.bench_function(BenchmarkId::new("pixel_auroc", &id), |b| {
        b.iter(|| black_box(roc_auc(black_box(&maps), black_box(&masks)).expect("auroc")))
    });
    g.bench_function(BenchmarkId::new("aupro_0.3", &id), |b| {
        b.iter(|| black_box(aupro(black_box(&maps), black_box(&masks), dims, 0.3).expect("aupro")))
    });
    g.bench_function(BenchmarkId::new("evaluate_all", &id), |b| {
        let opts = EvalOptions::default();
        b.iter(|| black_box(evaluate(black_box(&scores), &labels, &px, &opts).expect("evaluate")))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
