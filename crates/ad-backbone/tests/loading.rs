//! Checkpoint containers (legacy / zip `.pth`, safetensors), key mapping, typed errors and
//! tap handling.

mod common;

use std::path::Path;

use ad_backbone::{
    Backbone, BackboneConfig, BackboneError, BackboneKind, Net, StateDict, Weights, formula_tensor,
};
use burn::prelude::*;
use common::{fixture, to_vec};

fn input(h: usize, w: usize, device: &Device) -> Tensor<4> {
    let data: Vec<f32> = (0..3 * h * w).map(|i| ((i as f32) * 0.37).sin()).collect();
    Tensor::from_data(TensorData::new(data, [1, 3, h, w]), device)
}

fn assert_same(a: Tensor<4>, b: Tensor<4>, tol: f32) {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (to_vec(a), to_vec(b));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= tol, "max diff {worst}");
}

/// ResNet-18 keys of the stem and layer1, with shapes.
fn resnet18_keys(layer1: bool) -> Vec<(String, Vec<usize>)> {
    let mut keys = vec![("conv1.weight".to_string(), vec![64, 3, 7, 7])];
    let bn = |p: &str, keys: &mut Vec<(String, Vec<usize>)>| {
        for n in ["weight", "bias", "running_mean", "running_var"] {
            keys.push((format!("{p}.{n}"), vec![64]));
        }
        keys.push((format!("{p}.num_batches_tracked"), vec![]));
    };
    bn("bn1", &mut keys);
    if layer1 {
        for b in 0..2 {
            for c in 1..=2 {
                keys.push((format!("layer1.{b}.conv{c}.weight"), vec![64, 64, 3, 3]));
                bn(&format!("layer1.{b}.bn{c}"), &mut keys);
            }
        }
    }
    keys
}

/// Write `keys` with formula values (seed 0) as safetensors.
fn write_safetensors(path: &Path, keys: &[(String, Vec<usize>)]) {
    use safetensors::{Dtype, tensor::TensorView};
    let buffers: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = keys
        .iter()
        .map(|(k, s)| {
            if k.ends_with("num_batches_tracked") {
                (
                    k.clone(),
                    s.clone(),
                    0i64.to_le_bytes().to_vec(),
                    Dtype::I64,
                )
            } else {
                let v = formula_tensor(k, s, 0);
                let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                (k.clone(), s.clone(), bytes, Dtype::F32)
            }
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(k, s, b, d)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn legacy_and_zip_pth_read_the_same_tensors() {
    let legacy = StateDict::open(fixture("resnet_stem_legacy.pt")).unwrap();
    let zip = StateDict::open(fixture("resnet_stem_zip.pt")).unwrap();
    assert_eq!(legacy.len(), 6);
    assert_eq!(
        legacy.keys().collect::<Vec<_>>(),
        zip.keys().collect::<Vec<_>>()
    );
    for (key, shape) in resnet18_keys(false) {
        if key.ends_with("num_batches_tracked") {
            continue;
        }
        let expected = formula_tensor(&key, &shape, 0);
        assert_eq!(legacy.read_f32(&key, &shape).unwrap(), expected, "{key}");
        assert_eq!(zip.read_f32(&key, &shape).unwrap(), expected, "{key}");
    }
}

#[test]
fn stem_checkpoints_load_and_match_formula_weights() {
    let device = Device::default();
    let reference = Backbone::random(BackboneKind::ResNet18, &["stem"], 0, &device).unwrap();
    let expected = reference.forward(input(32, 40, &device)).remove(0);
    for file in ["resnet_stem_legacy.pt", "resnet_stem_zip.pt"] {
        let bb = Backbone::load(BackboneKind::ResNet18, fixture(file), &["stem"], &device).unwrap();
        assert!(
            bb.identity().starts_with("resnet18:sha256="),
            "{}",
            bb.identity()
        );
        assert_eq!(bb.identity().len(), "resnet18:sha256=".len() + 64);
        assert_same(
            bb.forward(input(32, 40, &device)).remove(0),
            expected.clone(),
            1e-6,
        );
    }
    // The stem alone does not hold layer1: asking for it is a missing-key error.
    let err = Backbone::load(
        BackboneKind::ResNet18,
        fixture("resnet_stem_zip.pt"),
        &["layer1"],
        &device,
    )
    .unwrap_err();
    assert!(
        matches!(&err, BackboneError::MissingKey { key, expected, .. }
            if key == "layer1.0.conv1.weight" && expected == &vec![64, 64, 3, 3]),
        "{err}"
    );
}

#[test]
fn element_types_are_converted_to_f32() {
    let sd = StateDict::open(fixture("dtypes_zip.pt")).unwrap();
    let v = formula_tensor("mixed.weight", &[4, 5], 0);
    assert_eq!(sd.read_f32("f32", &[4, 5]).unwrap(), v);
    assert_eq!(sd.read_f32("f64", &[4, 5]).unwrap(), v);
    for (key, tol) in [("f16", 1e-3f32), ("bf16", 8e-3)] {
        let got = sd.read_f32(key, &[4, 5]).unwrap();
        for (a, b) in got.iter().zip(&v) {
            assert!((a - b).abs() <= tol * b.abs().max(0.1), "{key}: {a} vs {b}");
        }
    }
    // A transposed view sharing the f32 storage is gathered in row-major order.
    let t = sd.read_f32("strided", &[5, 4]).unwrap();
    for r in 0..5 {
        for c in 0..4 {
            assert_eq!(t[r * 4 + c], v[c * 5 + r]);
        }
    }
    let err = sd.read_f32("i64", &[3]).unwrap_err();
    assert!(
        matches!(err, BackboneError::UnsupportedDtype { .. }),
        "{err}"
    );
}

#[test]
fn safetensors_checkpoint_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    write_safetensors(&path, &resnet18_keys(true));
    let device = Device::default();
    let bb = Backbone::load(BackboneKind::ResNet18, &path, &["layer1", "stem"], &device).unwrap();
    let reference =
        Backbone::random(BackboneKind::ResNet18, &["layer1", "stem"], 0, &device).unwrap();
    let (a, b) = (
        bb.forward(input(32, 32, &device)),
        reference.forward(input(32, 32, &device)),
    );
    assert_eq!(a[0].dims(), [1, 64, 8, 8]);
    for (x, y) in a.into_iter().zip(b) {
        assert_same(x, y, 1e-5);
    }
}

#[test]
fn bad_checkpoints_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::default();
    let load = |keys: &[(String, Vec<usize>)], name: &str| {
        let path = dir.path().join(name);
        write_safetensors(&path, keys);
        Backbone::load(BackboneKind::ResNet18, &path, &["layer1"], &device)
    };
    let good = resnet18_keys(true);

    let missing: Vec<_> = good
        .iter()
        .filter(|(k, _)| k != "bn1.running_var")
        .cloned()
        .collect();
    let err = load(&missing, "missing.safetensors").unwrap_err();
    assert!(
        matches!(&err, BackboneError::MissingKey { key, .. } if key == "bn1.running_var"),
        "{err}"
    );
    assert!(err.to_string().contains("bn1.running_var"));

    let mut wrong = good.clone();
    wrong[0].1 = vec![64, 3, 3, 3];
    let err = load(&wrong, "shape.safetensors").unwrap_err();
    assert!(
        matches!(&err, BackboneError::ShapeMismatch { key, expected, found, .. }
            if key == "conv1.weight" && expected == &vec![64, 3, 7, 7] && found == &vec![64, 3, 3, 3]),
        "{err}"
    );
    assert!(err.to_string().contains("[64, 3, 7, 7]") && err.to_string().contains("[64, 3, 3, 3]"));

    let mut extra = good.clone();
    extra.push(("extra.weight".into(), vec![3]));
    let err = load(&extra, "extra.safetensors").unwrap_err();
    assert!(
        matches!(&err, BackboneError::UnexpectedKeys { keys, .. } if keys.len() == 1 && keys[0].starts_with("extra.weight")),
        "{err}"
    );

    // Tensors of stages that are not built are checked for shape, then ignored.
    let mut later = good.clone();
    later.push(("layer4.1.conv2.weight".into(), vec![512, 512, 3, 3]));
    later.push(("fc.bias".into(), vec![1000]));
    load(&later, "later.safetensors").unwrap();
    later.push(("layer4.1.bn2.weight".into(), vec![7]));
    let err = load(&later, "later_bad.safetensors").unwrap_err();
    assert!(
        matches!(&err, BackboneError::ShapeMismatch { key, expected, .. }
            if key == "layer4.1.bn2.weight" && expected == &vec![512]),
        "{err}"
    );

    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"this is not a checkpoint at all").unwrap();
    let err = Backbone::load(BackboneKind::ResNet18, &junk, &["stem"], &device).unwrap_err();
    assert!(matches!(err, BackboneError::Checkpoint { .. }), "{err}");
    let err = Backbone::load(
        BackboneKind::ResNet18,
        dir.path().join("absent.pth"),
        &["stem"],
        &device,
    )
    .unwrap_err();
    assert!(matches!(err, BackboneError::Io { .. }), "{err}");
}

#[test]
fn taps_are_validated() {
    let device = Device::default();
    let kind = BackboneKind::EfficientNetLite0;
    let err = Backbone::random(kind, &["blocks.16"], 0, &device).unwrap_err();
    assert!(matches!(err, BackboneError::UnknownTap { .. }), "{err}");
    assert!(err.to_string().contains("blocks.15"));
    let err = Backbone::random(kind, &["layer2"], 0, &device).unwrap_err();
    assert!(matches!(err, BackboneError::UnknownTap { .. }), "{err}");
    let err = Backbone::random(kind, &["blocks.4", "blocks.4"], 0, &device).unwrap_err();
    assert!(matches!(err, BackboneError::InvalidTaps { .. }), "{err}");
    let none: [&str; 0] = [];
    let err = Backbone::random(kind, &none, 0, &device).unwrap_err();
    assert!(matches!(err, BackboneError::InvalidTaps { .. }), "{err}");
    let err = Backbone::random(BackboneKind::ResNet18, &["blocks.4"], 0, &device).unwrap_err();
    assert!(matches!(err, BackboneError::UnknownTap { .. }), "{err}");
}

#[test]
fn efficientnet_lite0_tap_shapes_at_256() {
    let device = Device::default();
    let cfg = BackboneConfig::new(BackboneKind::EfficientNetLite0, Weights::Random { seed: 3 });
    assert_eq!(cfg.taps, vec!["blocks.4", "blocks.10"]);
    let bb = cfg.init(&device).unwrap();
    assert_eq!(bb.tap_channels(), vec![40, 112]);
    assert_eq!(bb.tap_strides(), vec![8, 16]);
    assert_eq!(bb.identity(), "efficientnet-lite0:formula-seed=3");
    let out = bb.forward(Tensor::zeros([2, 3, 256, 256], &device));
    assert_eq!(out[0].dims(), [2, 40, 32, 32]);
    assert_eq!(out[1].dims(), [2, 112, 16, 16]);
    // The forward pass stops after the deepest tap: blocks 0..=10 only, no head.
    let Net::EfficientNet(net) = bb.net() else {
        panic!("EfficientNet expected")
    };
    assert_eq!(net.blocks.len(), 11);
    assert!(net.head.is_none());
}

#[test]
fn resnet_stops_after_the_deepest_tap() {
    let device = Device::default();
    let bb = Backbone::random(BackboneKind::WideResNet50_2, &["layer1"], 0, &device).unwrap();
    let Net::ResNet(net) = bb.net() else {
        panic!("ResNet expected")
    };
    assert_eq!(net.layers.len(), 1);
    assert_eq!(bb.tap_channels(), vec![256]);
    let out = bb.forward(Tensor::zeros([1, 3, 64, 64], &device));
    assert_eq!(out[0].dims(), [1, 256, 16, 16]);
}

#[test]
fn kinds_parse_and_list_default_taps() {
    for kind in BackboneKind::ALL {
        assert_eq!(BackboneKind::from_name(kind.name()), Some(kind));
        assert_eq!(kind.default_taps().len(), 2);
    }
    assert_eq!(
        BackboneKind::from_name("WIDE-RESNET50-2"),
        Some(BackboneKind::WideResNet50_2)
    );
    assert_eq!(BackboneKind::from_name("VGG16"), Some(BackboneKind::Vgg16));
    assert_eq!(BackboneKind::from_name("vgg19"), None);
    // Lite1 has 21 blocks: its last stride-8 and stride-16 blocks are 6 and 14.
    assert_eq!(
        BackboneKind::EfficientNetLite1.default_taps(),
        vec!["blocks.6", "blocks.14"]
    );
}

#[test]
fn taps_by_stride_match_the_built_networks() {
    let device = Device::default();
    assert_eq!(
        BackboneKind::ResNet18.taps_at_strides(&[4, 8, 16, 32]),
        Some(vec![
            "layer1".into(),
            "layer2".into(),
            "layer3".into(),
            "layer4".into()
        ])
    );
    assert_eq!(BackboneKind::ResNet18.tap_at_stride(2), None);
    for kind in [
        BackboneKind::EfficientNetLite0,
        BackboneKind::EfficientNetLite2,
    ] {
        let taps = kind.taps_at_strides(&[4, 8, 16, 32]).unwrap();
        let bb = Backbone::random(kind, &taps, 0, &device).unwrap();
        assert_eq!(bb.tap_strides(), vec![4, 8, 16, 32], "{kind}");
        // Each is the last block at its stride: the next block is deeper.
        for (t, s) in taps.iter().zip([4usize, 8, 16, 32]) {
            let n: usize = t.strip_prefix("blocks.").unwrap().parse().unwrap();
            let next = format!("blocks.{}", n + 1);
            if let Ok(b) = Backbone::random(kind, &[next.as_str()], 0, &device) {
                assert!(b.tap_strides()[0] > s, "{kind} {next}");
            }
        }
    }
    // Config files spell kinds as on the command line.
    let k: BackboneKind = serde_json::from_str("\"wide-resnet50-2\"").unwrap();
    assert_eq!(k, BackboneKind::WideResNet50_2);
    assert_eq!(
        serde_json::to_string(&BackboneKind::EfficientNetLite0).unwrap(),
        "\"efficientnet-lite0\""
    );
}

#[test]
fn split_batch_forward_equals_whole_batch_forward() {
    let device = Device::default();
    let bb = Backbone::random(BackboneKind::ResNet18, &["layer2", "stem"], 1, &device).unwrap();
    let data: Vec<f32> = (0..3 * 3 * 48 * 40)
        .map(|i| ((i as f32) * 0.11).cos())
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(data, [3, 3, 48, 40]), &device);
    let (a, b) = (bb.forward(x.clone()), bb.forward_unsplit(x));
    assert_eq!(a[0].dims(), [3, 128, 6, 5]);
    for (p, q) in a.into_iter().zip(b) {
        assert_same(p, q, 1e-5);
    }
}
