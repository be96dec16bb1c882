//! Decoding + preprocessing throughput: every image of a category to 256x256 normalised planes.
//!
//! `cargo bench --bench loader` reads `../shared/datasets/mvtec_ad/bottle` (all 292 images)
//! when present, else the generated category. Compare with `python3 benches/peers/loader_peer.py`.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::path::Path;

use ad_core::{PreprocessConfig, Preprocessor};
use ad_mvtec::{BatchLoader, MvtecCategory, SyntheticConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn category() -> MvtecCategory {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/mvtec_ad");
    if shared.join("bottle").is_dir()
        && let Ok(c) = MvtecCategory::open(&shared, "bottle")
    {
        return c;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/generated");
    let cfg = SyntheticConfig::default();
    cfg.ensure(&root).expect("generate dataset");
    MvtecCategory::open(&root, &cfg.name).expect("open generated dataset")
}

fn bench_loader(c: &mut Criterion) {
    let cat = category();
    let samples: Vec<_> = cat
        .splits
        .train
        .iter()
        .chain(&cat.splits.test)
        .cloned()
        .collect();
    let pre = Preprocessor::new(PreprocessConfig::default()).expect("config");
    let mut group = c.benchmark_group("loader");
    group.sample_size(10);
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function(format!("{}-{}-256", cat.splits.name, samples.len()), |b| {
        b.iter(|| {
            let mut n = 0;
            for batch in BatchLoader::new(&samples, pre.clone(), 16) {
                n += batch.expect("decode").images.len();
            }
            assert_eq!(n, samples.len());
        })
    });
    group.finish();
}

criterion_group!(benches, bench_loader);
criterion_main!(benches);
