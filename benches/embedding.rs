//! Locally aware patch embedding (PatchCore section 3.1: 3x3 average, deeper tap upsampled,
//! channels concatenated into rows) for a batch of 8 images' taps, on every bench device
//! (`AD_BENCH_DEVICES`, default `cpu` = flex; see `benches/common`).
//!
//!     cargo bench --bench embedding
//!     AD_BENCH_DEVICES=cpu,wgpu-cpu cargo bench --features wgpu --bench embedding
//!
//! Rows: the taps of EfficientNet-Lite0 at strides 8 + 16 (`fast`, 40 + 112 channels on a
//! 32x32 grid) and of Lite1 at strides 4 + 8 (`accurate`, 24 + 40 channels on 64x64), for
//! 256 px images. Each twice: `patch_embedding` (on flex, the host path) and
//! `patch_embedding_with_ops` (Burn's operations, the reference; the same rows bit for bit).

#![allow(missing_docs)] // criterion_group! generates an undocumented function.

#[path = "common/mod.rs"]
mod common;

use ad_backbone::{patch_embedding, patch_embedding_with_ops};
use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// (name, [(channels, side)] of the two taps)
const CASES: [(&str, [(usize, usize); 2]); 2] = [
    ("fast-lite0-s8-s16", [(40, 32), (112, 16)]),
    ("accurate-lite1-s4-s8", [(24, 64), (40, 32)]),
];
const BATCH: usize = 8;

/// Embed and wait for the result (a reduction read back to the host).
fn run(taps: &[Tensor<4>], fast: bool) -> f32 {
    let rows = if fast {
        patch_embedding(taps.to_vec(), 3, None)
    } else {
        patch_embedding_with_ops(taps.to_vec(), 3, None)
    };
    rows.sum().into_scalar::<f32>()
}

fn embedding(c: &mut Criterion) {
    let mut group = c.benchmark_group("embedding");
    group.sample_size(20);
    for (device_name, device) in common::bench_devices() {
        for (name, shapes) in CASES {
            let taps: Vec<Tensor<4>> = shapes
                .iter()
                .map(|&(ch, side)| {
                    Tensor::random(
                        [BATCH, ch, side, side],
                        burn::tensor::Distribution::Normal(0.0, 1.0),
                        &device,
                    )
                })
                .collect();
            run(&taps, true); // warm-up (allocations, shader compilation)
            group.throughput(Throughput::Elements(BATCH as u64));
            let shape = format!("{device_name}/batch{BATCH}");
            group.bench_with_input(BenchmarkId::new(name, &shape), &taps, |b, t| {
                b.iter(|| run(t, true))
            });
            group.bench_with_input(
                BenchmarkId::new(format!("{name}-ops"), &shape),
                &taps,
                |b, t| b.iter(|| run(t, false)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, embedding);
criterion_main!(benches);
