//! The data path stays on the device: every device -> host copy in library code goes through
//! `ad_core::tensor::{read_f32, read_i64}` (a scan of the sources), and those count what they
//! read, so a test can pin what PatchCore's and PaDiM's predict paths read back. With the
//! search on the device (`knn = device`, `auto` on a GPU), PatchCore reads back one distance
//! per patch and, per image, one patch's features and indices, never the patch embedding.
//! Run on flex, which takes the same code path as a GPU device, and, in a `--features wgpu`
//! build, on the wgpu device `AD_PARITY_DEVICE` (default `wgpu-cpu`, Mesa's lavapipe; see
//! `tools/gpu-check.sh`), where `auto` picks the device search by itself.

use std::path::{Path, PathBuf};

use ad_backbone::Weights;
use ad_core::tensor::read_back_stats;
use ad_core::{BoxError, Detector, ImageBatch, PreprocessConfig};
use ad_memory_bank::{CoresetParams, CoresetSize};
use ad_mvtec::{BatchLoader, MvtecCategory, SyntheticConfig};
use ad_padim::{Padim, PadimConfig};
use ad_patchcore::{KnnBackend, PatchCore, PatchcoreConfig};
use burn::tensor::Device;

/// Read-backs outside this file are what the scan forbids.
const READ_BACK_HELPER: &str = "crates/ad-core/src/tensor.rs";
/// Code that runs only on the CPU backend, whose tensors are host memory (a copy, never a
/// device transfer): the fused EfficientNet path, taken only when the device is flex.
const HOST_ONLY: [&str; 1] = ["crates/ad-backbone/src/fused.rs"];
const READ_BACKS: [&str; 6] = [
    "into_data(",
    "to_data(",
    "into_data_async(",
    "to_data_async(",
    "into_scalar(",
    "into_scalar_async(",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn library_code_reads_back_only_through_the_helper() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} sources", files.len());
    let mut found = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(root).unwrap();
        if rel == Path::new(READ_BACK_HELPER) || HOST_ONLY.iter().any(|h| rel == Path::new(h)) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests sit at the end of a file, after `#[cfg(test)]`.
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("#[cfg(test)]") {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            if READ_BACKS.iter().any(|p| code.contains(p)) {
                found.push(format!("{}:{}: {}", rel.display(), n + 1, code));
            }
        }
    }
    assert!(
        found.is_empty(),
        "device -> host copies outside {READ_BACK_HELPER}:\n{}",
        found.join("\n")
    );
}

fn category(root: &Path) -> MvtecCategory {
    let cfg = SyntheticConfig::small();
    cfg.generate(root).unwrap();
    MvtecCategory::open(root, &cfg.name).unwrap()
}

fn batches(pre: &ad_core::Preprocessor, samples: &[ad_mvtec::Sample]) -> Vec<ImageBatch> {
    BatchLoader::new(samples, pre.clone(), 4)
        .map(|b| b.unwrap().images)
        .collect()
}

/// The devices to check: flex, plus the wgpu device in a `--features wgpu` build.
fn devices() -> Vec<(String, Device)> {
    let mut out = vec![("cpu".to_string(), Device::flex())];
    if cfg!(feature = "wgpu") {
        let name = std::env::var("AD_PARITY_DEVICE").unwrap_or_else(|_| "wgpu-cpu".into());
        let device = anomaly_detection::pipeline::device_from_name(&name).unwrap();
        out.push((name, device));
    }
    out
}

fn patchcore(cat: &MvtecCategory, knn: KnnBackend, device: &Device) -> PatchCore {
    let config = PatchcoreConfig {
        weights: Weights::Random { seed: 1 },
        preprocess: PreprocessConfig::default().with_size(64, 64),
        coreset: CoresetParams {
            size: CoresetSize::Ratio(0.25),
            ..CoresetParams::default()
        },
        num_neighbors: 3,
        batch_size: 4,
        knn,
        ..PatchcoreConfig::default()
    };
    let mut model = PatchCore::new(&config, device).unwrap();
    let train = batches(model.preprocessor(), &cat.splits.train);
    model.fit(train.into_iter().map(Ok::<_, BoxError>)).unwrap();
    model
}

#[test]
fn patchcore_on_the_device_reads_back_scores_not_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = category(tmp.path());
    let on_host = patchcore(&cat, KnnBackend::Cpu, &Device::flex());
    // `auto` on flex is the host kernel.
    assert_eq!(KnnBackend::Auto.resolve(&Device::flex()), KnnBackend::Cpu);
    for (name, device) in devices() {
        let knn = if name == "cpu" {
            KnnBackend::Device
        } else {
            assert_eq!(KnnBackend::Auto.resolve(&device), KnnBackend::Device);
            KnnBackend::Auto
        };
        let on_device = patchcore(&cat, knn, &device);
        let d = on_device.memory_bank().unwrap().dim();
        let (gh, gw) = on_device.feature_grid().unwrap();
        let k = on_device.config().num_neighbors;
        for batch in batches(on_device.preprocessor(), &cat.splits.test) {
            let (b, n) = (batch.len(), batch.len() * gh * gw);
            let before = read_back_stats();
            let got = on_device.predict(&batch).unwrap();
            let read = read_back_stats() - before;
            // One distance per patch; per image the index of m^test,*'s nearest sample and
            // m^test,*'s features; the reweighting's k-NN of the b samples m* (distances and
            // indices).
            assert_eq!(
                read.values as usize,
                n + b + b * d + 2 * b * k,
                "{name}: {read:?}"
            );
            assert!((read.values as usize) * 10 < n * d);

            let before = read_back_stats();
            let host = on_host.predict(&batch).unwrap();
            let read = read_back_stats() - before;
            assert_eq!(
                read.values as usize,
                n * d,
                "the host search reads the embedding"
            );

            for (a, h) in got.iter().zip(&host) {
                let tol = 1e-4 * h.score.abs().max(1.0);
                assert!(
                    (a.score - h.score).abs() <= tol,
                    "{name}: {} vs {}",
                    a.score,
                    h.score
                );
                let worst = a
                    .map
                    .as_slice()
                    .iter()
                    .zip(h.map.as_slice())
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst <= tol, "{name}: map differs by {worst}");
            }
        }
    }
}

#[test]
fn padim_reads_back_only_the_kept_channels() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = category(tmp.path());
    let config = PadimConfig {
        weights: Weights::Random { seed: 1 },
        preprocess: PreprocessConfig::default().with_size(64, 64),
        batch_size: 4,
        ..PadimConfig::default()
    };
    for (name, device) in devices() {
        let mut model = Padim::new(&config, &device).unwrap();
        let train = batches(model.preprocessor(), &cat.splits.train);
        model.fit(train.into_iter().map(Ok::<_, BoxError>)).unwrap();
        let (gh, gw) = model.feature_grid().unwrap();
        let kept = model.channels().len();
        let all: usize = model.backbone().tap_channels().iter().sum();
        assert!(kept < all);
        for batch in batches(model.preprocessor(), &cat.splits.test) {
            let before = read_back_stats();
            model.predict(&batch).unwrap();
            let read = read_back_stats() - before;
            let want = batch.len() * gh * gw * kept;
            assert_eq!(read.values as usize, want, "{name}: {read:?}");
        }
    }
}
