//! VGG-16 parity with torchvision (fixtures from `tools/vgg_fixtures.py`): the same
//! deterministic weights on both sides, taps and logits compared; torchvision's key names read
//! from a real `torch.save` checkpoint.

mod common;

use ad_backbone::{Backbone, BackboneKind, Classifier};
use burn::prelude::*;
use common::{Fixtures, assert_close, fixture, to_vec};

const REL: f32 = 1e-4;

#[test]
fn vgg16_taps_and_logits_match_torchvision() {
    let fx = Fixtures::load_named("vgg16_fixtures");
    let device = Device::default();
    let taps = ["features.9", "features.16", "features.29", "features.30"];
    let bb = Backbone::random(BackboneKind::Vgg16, &taps, 0, &device).unwrap();
    assert_eq!(bb.tap_channels(), vec![128, 256, 512, 512]);
    assert_eq!(bb.tap_strides(), vec![4, 8, 16, 32]);
    let x = fx.tensor("input/40x40", &device);
    for (t, got) in taps.iter().zip(bb.forward(x.clone())) {
        assert_close(t, got, fx.get(&format!("vgg16/40x40/{t}")), REL);
    }
    let clf = Classifier::random(BackboneKind::Vgg16, 0, &device).unwrap();
    let logits = to_vec(clf.logits(x));
    let (shape, reference) = fx.get("vgg16/40x40/logits");
    assert_eq!(shape, &vec![1, 1000]);
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = logits
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= REL * scale, "logits: {worst} vs scale {scale}");
}

#[test]
fn vgg16_reads_torchvision_key_names() {
    // Every key and shape of torchvision's vgg16 state dict is the architecture's.
    let fx = Fixtures::load_named("vgg16_fixtures");
    let keys = fx.meta["state_dict"].as_object().unwrap();
    assert_eq!(keys.len(), 32);
    // A checkpoint of the first block (torch.save) loads and equals the formula weights.
    let device = Device::default();
    let path = fixture("vgg16_block1.pt");
    let loaded = Backbone::load(BackboneKind::Vgg16, &path, &["features.4"], &device).unwrap();
    let formula = Backbone::random(BackboneKind::Vgg16, &["features.4"], 0, &device).unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(
            (0..3 * 16 * 16)
                .map(|i| (i as f32 * 0.37).sin())
                .collect::<Vec<_>>(),
            [1, 3, 16, 16],
        ),
        &device,
    );
    let a = to_vec(loaded.forward(x.clone()).remove(0));
    let b = to_vec(formula.forward(x).remove(0));
    assert_eq!(a, b);
    // Asking for a deeper tap than the checkpoint holds names the missing tensor.
    let err = Backbone::load(BackboneKind::Vgg16, &path, &["features.9"], &device).unwrap_err();
    assert!(err.to_string().contains("features.5.weight"), "{err}");
    // Unknown tap names list the valid ones.
    let err = BackboneKind::Vgg16
        .tap_shape("features.28")
        .unwrap_err()
        .to_string();
    assert!(err.contains("features.29"), "{err}");
}
