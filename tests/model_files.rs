//! Every single-byte corruption and every truncation of a small saved model of each kind is
//! refused with a typed error (never a panic, never a silently different model); a valid file
//! of each kind loads by its header. Kinds: PatchCore, PaDiM and an ensemble of the two (whose
//! errors come through `Error::Detector`, the boxed typed error of a container model).

use std::path::Path;

use anomaly_detection::Error;
use anomaly_detection::backbone::Weights;
use anomaly_detection::core::{Detector, PreprocessConfig};
use anomaly_detection::memory_bank::{CoresetParams, CoresetSize};
use anomaly_detection::mvtec::{MvtecCategory, SyntheticConfig};
use anomaly_detection::padim::PadimConfig;
use anomaly_detection::patchcore::PatchcoreConfig;
use anomaly_detection::pipeline;
use anomaly_detection::registry::{self, DetectorConfig, EnsembleConfig};
use burn::tensor::Device;
use indicatif::ProgressBar;

fn small_models(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let cfg = SyntheticConfig::small();
    cfg.generate(dir).unwrap();
    let cat = MvtecCategory::open(dir, &cfg.name).unwrap();
    let pre = PreprocessConfig::default().with_size(32, 32);
    let base = [
        DetectorConfig::Patchcore(PatchcoreConfig {
            weights: Weights::Random { seed: 3 },
            preprocess: pre.clone(),
            coreset: CoresetParams {
                size: CoresetSize::Count(12),
                ..CoresetParams::default()
            },
            ..PatchcoreConfig::default()
        }),
        DetectorConfig::Padim(PadimConfig {
            weights: Weights::Random { seed: 3 },
            preprocess: pre,
            n_features: Some(6),
            ..PadimConfig::default()
        }),
    ];
    let ensemble = DetectorConfig::Ensemble(EnsembleConfig::of(base.to_vec()));
    let configs = [base[0].clone(), base[1].clone(), ensemble];
    configs
        .iter()
        .map(|c| {
            let mut model = c.build(&Device::default()).unwrap();
            pipeline::fit(model.as_mut(), &cat.splits.train, 4, &ProgressBar::hidden()).unwrap();
            model.set_threshold(Some(
                anomaly_detection::core::Threshold::manual(1.0).unwrap(),
            ));
            let path = dir.join(format!("m.{}", c.kind().extension));
            model.save(&path).unwrap();
            (c.name().to_string(), std::fs::read(&path).unwrap())
        })
        .collect()
}

fn load(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).unwrap();
    registry::load(path, &Device::default()).map(drop)
}

#[test]
fn every_flip_and_every_truncation_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, bytes) in small_models(tmp.path()) {
        let path = tmp.path().join(format!("probe.{name}"));
        load(&path, &bytes).unwrap_or_else(|e| panic!("{name}: the intact file fails: {e}"));
        let mut cases = 0;
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                let err = load(&path, &b).expect_err("a flipped byte loaded");
                assert!(
                    matches!(
                        err,
                        Error::UnknownModelFile { .. }
                            | Error::Patchcore(_)
                            | Error::Padim(_)
                            | Error::Detector(_)
                    ),
                    "{name} byte {i}: {err:?}"
                );
                cases += 1;
            }
        }
        for n in 0..bytes.len() {
            let err = load(&path, &bytes[..n]).expect_err("a truncated file loaded");
            assert!(
                matches!(
                    err,
                    Error::Io { .. }
                        | Error::UnknownModelFile { .. }
                        | Error::Patchcore(_)
                        | Error::Padim(_)
                        | Error::Detector(_)
                ),
                "{name} length {n}: {err:?}"
            );
            cases += 1;
        }
        println!(
            "{name}: {} bytes, {cases} corrupted files refused",
            bytes.len()
        );
    }
}
