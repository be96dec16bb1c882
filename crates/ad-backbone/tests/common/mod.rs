//! Helpers shared by the integration tests: fixtures and tolerant comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use ad_backbone::Pretrained;
use burn::prelude::*;

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// The arrays written by `tools/backbone_fixtures.py`.
pub struct Fixtures {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub meta: serde_json::Value,
}

impl Fixtures {
    pub fn load() -> Self {
        Self::load_named("backbone_fixtures")
    }

    /// `<stem>.json` + `<stem>.bin`.
    pub fn load_named(stem: &str) -> Self {
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fixture(&format!("{stem}.json"))).expect("fixture manifest"),
        )
        .expect("manifest is JSON");
        let bytes = std::fs::read(fixture(&format!("{stem}.bin"))).expect("fixture data");
        let all: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut tensors = HashMap::new();
        for (name, t) in meta["tensors"].as_object().expect("tensors") {
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|v| v.as_u64().expect("dim") as usize)
                .collect();
            let offset = t["offset"].as_u64().expect("offset") as usize;
            let n: usize = shape.iter().product();
            tensors.insert(name.clone(), (shape, all[offset..offset + n].to_vec()));
        }
        Self { tensors, meta }
    }

    pub fn get(&self, name: &str) -> &(Vec<usize>, Vec<f32>) {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture {name} missing"))
    }

    pub fn tensor(&self, name: &str, device: &Device) -> Tensor<4> {
        let (shape, data) = self.get(name);
        Tensor::from_data(TensorData::new(data.clone(), shape.clone()), device)
    }
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .as_slice::<f32>()
        .expect("f32 tensor")
        .to_vec()
}

/// Every element within `rel * max|reference|` of the reference.
pub fn assert_close(name: &str, got: Tensor<4>, reference: &(Vec<usize>, Vec<f32>), rel: f32) {
    assert_eq!(got.dims().to_vec(), reference.0, "{name}: shape");
    let got = to_vec(got);
    let scale = reference.1.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&reference.1)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= rel * scale,
        "{name}: max abs diff {worst} > {rel} * {scale}"
    );
    eprintln!(
        "{name}: max abs diff {worst:.3e} (scale {scale:.3e}, rel {:.2e})",
        worst / scale
    );
}

/// The real EfficientNet-Lite0 weights, or `None` (printing SKIP) when they cannot be had.
pub fn lite0_weights() -> Option<PathBuf> {
    match Pretrained::EfficientNetLite0.ensure() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("SKIP: EfficientNet-Lite0 weights unavailable: {e}");
            None
        }
    }
}
