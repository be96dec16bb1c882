//! Backbone throughput (images/s) for the PatchCore taps, 256x256, batch 8, on every bench
//! device (`AD_BENCH_DEVICES`, default `cpu` = flex; see `benches/common`).
//!
//!     cargo bench --bench backbone
//!     AD_BENCH_DEVICES=cpu,wgpu-cpu cargo bench --features wgpu --bench backbone
//!     python3 benches/peers/backbone_peer.py     # PyTorch CPU, 2 threads, same shapes
//!
//! Rows: EfficientNet-Lite0 taps `blocks.4` + `blocks.10` (real weights when
//! `Pretrained::EfficientNetLite0.ensure()` works, formula weights otherwise: same speed) and
//! WideResNet-50-2 taps `layer2` + `layer3` (formula weights). Each twice: `forward` (batch
//! split across threads) and `forward_unsplit` (whole batch per operation).

#![allow(missing_docs)] // criterion_group! generates an undocumented function.

#[path = "common/mod.rs"]
mod common;

use ad_backbone::{Backbone, BackboneKind, Pretrained};
use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// (name, kind, taps, batch, side)
const CASES: [(&str, BackboneKind, [&str; 2], usize, usize); 2] = [
    (
        "efficientnet-lite0",
        BackboneKind::EfficientNetLite0,
        ["blocks.4", "blocks.10"],
        8,
        256,
    ),
    (
        "wide_resnet50_2",
        BackboneKind::WideResNet50_2,
        ["layer2", "layer3"],
        8,
        256,
    ),
];

fn build(kind: BackboneKind, taps: &[&str], device: &Device) -> Backbone {
    if kind == BackboneKind::EfficientNetLite0
        && let Ok(path) = Pretrained::EfficientNetLite0.ensure()
        && let Ok(bb) = Backbone::load(kind, &path, taps, device)
    {
        return bb;
    }
    Backbone::random(kind, taps, 0, device).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

/// Run the taps and wait for the result (a reduction read back to the host). `split`: one
/// chunk of the batch per thread (`forward`), else the whole batch per op (`forward_unsplit`).
fn run(bb: &Backbone, x: &Tensor<4>, split: bool) -> f32 {
    let maps = if split {
        bb.forward(x.clone())
    } else {
        bb.forward_unsplit(x.clone())
    };
    maps.into_iter().map(|t| t.sum().into_scalar::<f32>()).sum()
}

fn backbone(c: &mut Criterion) {
    let mut group = c.benchmark_group("backbone");
    group.sample_size(10);
    for (device_name, device) in common::bench_devices() {
        for (name, kind, taps, batch, side) in CASES {
            let bb = build(kind, &taps, &device);
            let x = Tensor::<4>::random(
                [batch, 3, side, side],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            run(&bb, &x, true); // warm-up (allocations, weights in cache, shader compilation)
            group.throughput(Throughput::Elements(batch as u64));
            let shape = format!("{device_name}/{batch}x3x{side}x{side}");
            group.bench_with_input(BenchmarkId::new(name, &shape), &x, |b, x| {
                b.iter(|| run(&bb, x, true))
            });
            group.bench_with_input(
                BenchmarkId::new(format!("{name}-unsplit"), &shape),
                &x,
                |b, x| b.iter(|| run(&bb, x, false)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, backbone);
criterion_main!(benches);
