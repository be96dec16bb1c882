//! Preprocessing parity with PIL + torchvision: fixtures from `tools/preprocess_fixtures.py`.

use std::path::Path;

use ad_core::preprocess::resize_bilinear;
use ad_core::{PreprocessConfig, Preprocessor};
use ad_mvtec::decode::load_rgb;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

#[test]
fn resize_is_bit_identical_to_pil() {
    let src = load_rgb(&fixtures().join("resize_src.png")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("resize_cases.json")).unwrap(),
    )
    .unwrap();
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let (w, h) = (
            case["width"].as_u64().unwrap() as usize,
            case["height"].as_u64().unwrap() as usize,
        );
        let expected = std::fs::read(fixtures().join(case["file"].as_str().unwrap())).unwrap();
        let got = resize_bilinear(&src, w, h).unwrap();
        let diff = got
            .as_raw()
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(diff, 0, "{w}x{h}: {diff} bytes differ from PIL");
    }
}

#[test]
fn normalisation_matches_torchvision() {
    let src = load_rgb(&fixtures().join("resize_src.png")).unwrap();
    let pre = Preprocessor::new(PreprocessConfig::default().with_size(32, 32)).unwrap();
    let got = pre.apply(&src).unwrap();
    let bytes = std::fs::read(fixtures().join("normalized_32x32.f32")).unwrap();
    let expected: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(got.len(), expected.len());
    for (i, (a, b)) in got.iter().zip(&expected).enumerate() {
        assert!((a - b).abs() < 1e-6, "value {i}: {a} vs {b}");
    }
}
