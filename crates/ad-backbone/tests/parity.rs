//! Parity with PyTorch (fixtures from `tools/backbone_fixtures.py`) and a top-5 check of the
//! real EfficientNet-Lite0 on photos.

mod common;

use ad_backbone::{Backbone, BackboneKind, Classifier};
use burn::prelude::*;
use common::{Fixtures, assert_close, lite0_weights, to_vec};

const REL: f32 = 1e-4;

#[test]
fn efficientnet_lite0_matches_pytorch_with_real_weights() {
    let Some(weights) = lite0_weights() else {
        return;
    };
    let fx = Fixtures::load();
    let device = Device::default();
    let taps = ["stem", "blocks.4", "blocks.10", "head"];
    let bb = Backbone::load(BackboneKind::EfficientNetLite0, &weights, &taps, &device).unwrap();
    assert!(
        bb.identity()
            .ends_with(ad_backbone::Pretrained::EfficientNetLite0.sha256())
    );
    let out = bb.forward(fx.tensor("input/64x64", &device));
    for (t, got) in taps.iter().zip(out) {
        assert_close(
            t,
            got,
            fx.get(&format!("efficientnet-lite0/64x64/{t}")),
            REL,
        );
    }
    // Odd sizes exercise the asymmetric TF "SAME" padding; taps in reverse order.
    let bb = Backbone::load(
        BackboneKind::EfficientNetLite0,
        &weights,
        &["blocks.10", "blocks.4"],
        &device,
    )
    .unwrap();
    let out = bb.forward(fx.tensor("input/57x83", &device));
    assert_eq!(bb.tap_channels(), vec![112, 40]);
    assert_eq!(bb.tap_strides(), vec![16, 8]);
    for (t, got) in ["blocks.10", "blocks.4"].iter().zip(out) {
        assert_close(
            t,
            got,
            fx.get(&format!("efficientnet-lite0/57x83/{t}")),
            REL,
        );
    }
}

#[test]
fn efficientnet_lite0_logits_and_top5_on_photos() {
    let Some(weights) = lite0_weights() else {
        return;
    };
    let fx = Fixtures::load();
    let device = Device::default();
    let clf = Classifier::load(BackboneKind::EfficientNetLite0, &weights, &device).unwrap();
    let logits = clf.logits(fx.tensor("input/64x64", &device));
    let (shape, reference) = fx.get("efficientnet-lite0/64x64/logits");
    assert_eq!(logits.dims().to_vec(), *shape);
    let got = to_vec(logits);
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= REL * scale, "logits: {worst} vs scale {scale}");

    let mean = [0.485f32, 0.456, 0.406];
    let std = [0.229f32, 0.224, 0.225];
    for (name, expect) in fx.meta["expect"].as_object().unwrap() {
        let class = expect[0].as_u64().unwrap() as usize;
        let img = image::open(common::fixture(&format!("images/{name}")))
            .unwrap()
            .to_rgb8();
        let (w, h) = img.dimensions();
        let mut data = vec![0f32; 3 * (w * h) as usize];
        for (x, y, p) in img.enumerate_pixels() {
            for c in 0..3 {
                data[(c * h as usize + y as usize) * w as usize + x as usize] =
                    (f32::from(p[c]) / 255.0 - mean[c]) / std[c];
            }
        }
        let x = Tensor::<4>::from_data(
            TensorData::new(data, [1, 3, h as usize, w as usize]),
            &device,
        );
        let l = to_vec(clf.logits(x));
        let mut idx: Vec<usize> = (0..l.len()).collect();
        idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        let top5 = &idx[..5];
        let torch_top5: Vec<usize> = fx.meta["top5"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        eprintln!("{name}: top-5 {top5:?} (PyTorch {torch_top5:?}), expecting {expect}");
        assert!(
            top5.contains(&class),
            "{name}: {expect} not in top-5 {top5:?}"
        );
        assert_eq!(top5[0], torch_top5[0], "{name}: top-1 differs from PyTorch");
    }
}

#[test]
fn resnet18_matches_pytorch_with_formula_weights() {
    let fx = Fixtures::load();
    let device = Device::default();
    let taps = ["layer1", "layer2", "layer3"];
    let bb = Backbone::random(BackboneKind::ResNet18, &taps, 0, &device).unwrap();
    assert_eq!(bb.tap_channels(), vec![64, 128, 256]);
    assert_eq!(bb.tap_strides(), vec![4, 8, 16]);
    let out = bb.forward(fx.tensor("input/64x64", &device));
    for (t, got) in taps.iter().zip(out) {
        assert_close(t, got, fx.get(&format!("resnet18/64x64/{t}")), REL);
    }
}

#[test]
fn wide_resnet50_2_matches_pytorch_with_formula_weights() {
    let fx = Fixtures::load();
    let device = Device::default();
    let taps = ["layer2", "layer3"];
    let bb = Backbone::random(BackboneKind::WideResNet50_2, &taps, 0, &device).unwrap();
    assert_eq!(bb.tap_channels(), vec![512, 1024]);
    let out = bb.forward(fx.tensor("input/64x64", &device));
    for (t, got) in taps.iter().zip(out) {
        assert_close(t, got, fx.get(&format!("wide_resnet50_2/64x64/{t}")), REL);
    }
}

#[test]
fn efficientnet_lite1_and_lite2_load_strictly_and_see_a_bird_of_prey() {
    use ad_backbone::Pretrained;
    let device = Device::default();
    let img = image::open(common::fixture("images/eagle.jpg"))
        .unwrap()
        .to_rgb8();
    let (w, h) = img.dimensions();
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let mut data = vec![0f32; 3 * (w * h) as usize];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            data[(c * h as usize + y as usize) * w as usize + x as usize] =
                (f32::from(p[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    let x = Tensor::<4>::from_data(
        TensorData::new(data, [1, 3, h as usize, w as usize]),
        &device,
    );
    for pre in [Pretrained::EfficientNetLite1, Pretrained::EfficientNetLite2] {
        let weights = match pre.ensure() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("SKIP: {pre:?} weights unavailable: {e}");
                continue;
            }
        };
        // Every tensor of the checkpoint must match the architecture (strict load).
        let clf = Classifier::load(pre.kind(), &weights, &device).unwrap();
        let l = to_vec(clf.logits(x.clone()));
        let mut idx: Vec<usize> = (0..l.len()).collect();
        idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        eprintln!("{pre:?}: eagle top-5 {:?}", &idx[..5]);
        // 21 = kite (the bird), 22 = bald eagle.
        assert!(
            idx[..5].contains(&21) || idx[..5].contains(&22),
            "{pre:?}: {:?}",
            &idx[..5]
        );
        let taps = pre.kind().default_taps();
        let bb = Backbone::load(pre.kind(), &weights, &taps, &device).unwrap();
        assert_eq!(bb.tap_strides(), vec![8, 16]);
    }
}
