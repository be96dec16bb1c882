//! Where the time goes in WideResNet-50-2 (`layer2` + `layer3`, batch 8, 256x256) on the
//! CPU backend, by operation kind. Not a test: run by hand with
//!
//!     cargo test --release -p ad-backbone --test profile -- --ignored --nocapture
//!
//! and compare with `python3 benches/peers/backbone_peer.py --profile`.

use std::collections::BTreeMap;
use std::time::Instant;

use ad_backbone::{Backbone, BackboneKind, FoldedConv, Net};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

fn sync(t: &Tensor<4>) {
    // A one-element read forces any pending work.
    let _ = t.clone().slice([0..1, 0..1, 0..1, 0..1]).into_data();
}

#[derive(Default)]
struct Acc(BTreeMap<String, (f64, f64)>); // kind -> (seconds, GFLOP)

impl Acc {
    fn conv(&mut self, c: &FoldedConv, x: Tensor<4>) -> Tensor<4> {
        let t = Instant::now();
        let y = c.forward(x);
        sync(&y);
        let [b, o, h, w] = y.dims();
        let [_, i, k, _] = c.weight.dims();
        let gflop = 2.0 * (b * o * h * w * i * k * k) as f64 / 1e9;
        let key = format!("conv{k}x{k}{}", if c.stride > 1 { "/2" } else { "" });
        let e = self.0.entry(key).or_default();
        e.0 += t.elapsed().as_secs_f64();
        e.1 += gflop;
        y
    }

    fn other(&mut self, key: &str, f: impl FnOnce() -> Tensor<4>) -> Tensor<4> {
        let t = Instant::now();
        let y = f();
        sync(&y);
        self.0.entry(key.to_string()).or_default().0 += t.elapsed().as_secs_f64();
        y
    }
}

#[test]
#[ignore = "timing, run by hand"]
fn profile_wide_resnet50_2() {
    let device = Device::default();
    let bb = Backbone::random(
        BackboneKind::WideResNet50_2,
        &["layer2", "layer3"],
        0,
        &device,
    )
    .unwrap();
    let Net::ResNet(net) = bb.net() else {
        unreachable!()
    };
    let x = Tensor::<4>::random(
        [8, 3, 256, 256],
        burn::tensor::Distribution::Default,
        &device,
    );
    for round in 0..2 {
        let mut acc = Acc::default();
        let total = Instant::now();
        let h = acc.conv(&net.stem, x.clone());
        let h = acc.other("relu", || relu(h));
        let mut h = acc.other("maxpool", || {
            max_pool2d(
                h,
                MaxPoolOptions::new([3, 3])
                    .with_stride([2, 2])
                    .with_padding([1, 1]),
            )
        });
        for layer in &net.layers[..3] {
            for block in &layer.blocks {
                let mut y = h.clone();
                for (i, c) in block.convs.iter().enumerate() {
                    y = acc.conv(c, y);
                    if i + 1 < block.convs.len() {
                        y = acc.other("relu", || relu(y));
                    }
                }
                let s = match &block.downsample {
                    Some(d) => acc.conv(d, h),
                    None => h,
                };
                h = acc.other("add+relu", || relu(y + s));
            }
        }
        let total = total.elapsed().as_secs_f64();
        if round == 1 {
            println!(
                "WideResNet-50-2 to layer3, 8x3x256x256, total {:.0} ms",
                total * 1e3
            );
            for (k, (s, g)) in &acc.0 {
                let rate = if *g > 0.0 {
                    format!("{:6.1} GFLOP/s", g / s)
                } else {
                    String::new()
                };
                println!(
                    "{k:10} {:7.0} ms {:5.1} %  {rate}",
                    s * 1e3,
                    100.0 * s / total
                );
            }
        }
    }
}
