//! Compares every metric with the values stored by `tools/metrics_fixtures.py` (scikit-learn,
//! anomalib's F1 formula and a re-implementation of the MVTec AD AU-PRO script).

use std::path::PathBuf;

use ad_metrics::{
    EvalOptions, MapDims, PixelMaps, aupro, average_precision, evaluate, f1_max,
    precision_recall_curve, pro_curve, roc_auc, roc_curve,
};
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases() -> Vec<Value> {
    let text =
        std::fs::read_to_string(fixtures_dir().join("metrics_cases.json")).expect("fixture json");
    let v: Value = serde_json::from_str(&text).expect("valid json");
    v["cases"].as_array().expect("cases").clone()
}

// JSON numbers are parsed by serde_json without exact round-tripping, so thresholds (f32
// values printed as f64) are compared after rounding back to f32, where they are exact.

/// Reads `n` little-endian f32 then `n` u8 labels.
fn load(file: &str, n: usize) -> (Vec<f32>, Vec<u8>) {
    let bytes = std::fs::read(fixtures_dir().join(file)).expect("fixture bin");
    assert_eq!(bytes.len(), 5 * n, "{file}");
    let scores = bytes[..4 * n]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (scores, bytes[4 * n..].to_vec())
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn assert_close(name: &str, what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{name} {what}: got {got}, want {want} (tol {tol})"
    );
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::INFINITY))
        .collect()
}

#[test]
fn binary_cases_match_sklearn() {
    let mut seen = 0;
    for c in cases().iter().filter(|c| c["kind"] == "binary") {
        let name = c["name"].as_str().unwrap();
        let n = c["n"].as_u64().unwrap() as usize;
        let (s, l) = load(c["file"].as_str().unwrap(), n);
        assert_close(
            name,
            "auroc",
            roc_auc(&s, &l).unwrap(),
            f(&c["auroc"]),
            1e-6,
        );
        let best = f1_max(&s, &l).unwrap();
        assert_close(name, "f1", best.f1, f(&c["f1_max"]), 1e-6);
        assert_eq!(
            best.threshold,
            f(&c["f1_threshold"]) as f32,
            "{name} threshold"
        );
        assert_close(
            name,
            "ap",
            average_precision(&s, &l).unwrap(),
            f(&c["average_precision"]),
            1e-6,
        );
        if let Some(roc) = c.get("roc_drop") {
            let ours = roc_curve(&s, &l, true).unwrap();
            let (fpr, tpr, thr) = (
                floats(&roc["fpr"]),
                floats(&roc["tpr"]),
                floats(&roc["thresholds"]),
            );
            assert_eq!(ours.len(), fpr.len(), "{name} roc length");
            for i in 0..fpr.len() {
                assert_close(name, "roc fpr", ours.fpr[i], fpr[i], 1e-12);
                assert_close(name, "roc tpr", ours.tpr[i], tpr[i], 1e-12);
                assert_eq!(
                    ours.thresholds[i], thr[i] as f32,
                    "{name} roc threshold {i}"
                );
            }
            let full = roc_curve(&s, &l, false).unwrap();
            assert_eq!(full.len() as u64, c["roc_full_len"].as_u64().unwrap());
            let pr = precision_recall_curve(&s, &l).unwrap();
            let (p, r, t) = (
                floats(&c["pr"]["precision"]),
                floats(&c["pr"]["recall"]),
                floats(&c["pr"]["thresholds"]),
            );
            assert_eq!(pr.precision.len(), p.len());
            assert_eq!(pr.thresholds.len(), t.len());
            for i in 0..p.len() {
                assert_close(name, "precision", pr.precision[i], p[i], 1e-12);
                assert_close(name, "recall", pr.recall[i], r[i], 1e-12);
            }
            for (i, (ours, want)) in pr.thresholds.iter().zip(&t).enumerate() {
                assert_eq!(*ours, *want as f32, "{name} pr threshold {i}");
            }
        }
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} binary cases");
}

#[test]
fn pro_cases_match_mvtec_script() {
    let mut seen = 0;
    for c in cases().iter().filter(|c| c["kind"] == "pro") {
        let name = c["name"].as_str().unwrap();
        let d: Vec<usize> = c["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let dims = MapDims::new(d[0], d[1], d[2]);
        let (maps, masks) = load(c["file"].as_str().unwrap(), dims.total().unwrap());
        for (limit, want) in c["aupro"].as_object().unwrap() {
            let limit: f64 = limit.parse().unwrap();
            assert_close(
                name,
                &format!("aupro@{limit}"),
                aupro(&maps, &masks, dims, limit).unwrap(),
                f(want),
                1e-4,
            );
        }
        let curve = pro_curve(&maps, &masks, dims).unwrap();
        assert_eq!(
            curve.fpr.len() as u64,
            c["pro_curve_len"].as_u64().unwrap(),
            "{name} curve length"
        );
        assert_close(
            name,
            "area",
            curve.normalized_area(0.3).unwrap(),
            f(&c["aupro"]["0.3"]),
            1e-4,
        );

        // the one-call evaluation agrees too
        let image_scores: Vec<f32> = maps
            .chunks(dims.pixels_per_map())
            .map(|m| m.iter().copied().fold(f32::MIN, f32::max))
            .collect();
        let image_labels: Vec<bool> = masks
            .chunks(dims.pixels_per_map())
            .map(|m| m.iter().any(|&x| x != 0))
            .collect();
        let px = PixelMaps {
            maps: &maps,
            masks: &masks,
            dims,
        };
        let e = evaluate(&image_scores, &image_labels, &px, &EvalOptions::default()).unwrap();
        let p = e.pixel.unwrap();
        assert_close(
            name,
            "pixel auroc",
            p.level.auroc,
            f(&c["pixel_auroc"]),
            1e-6,
        );
        assert_close(name, "pixel f1", p.level.f1.f1, f(&c["pixel_f1_max"]), 1e-6);
        assert_eq!(
            p.level.f1.threshold,
            f(&c["pixel_f1_threshold"]) as f32,
            "{name} pixel threshold"
        );
        assert_close(name, "evaluate aupro", p.aupro, f(&c["aupro"]["0.3"]), 1e-4);
        assert_eq!(
            p.regions as u64,
            c["regions"].as_u64().unwrap(),
            "{name} regions"
        );
        seen += 1;
    }
    assert!(seen >= 3, "only {seen} pro cases");
}
