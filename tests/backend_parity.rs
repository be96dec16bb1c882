//! Backend parity on a wgpu device (built only with `--features wgpu`): PatchCore, PaDiM,
//! CFlow and the score student on the small generated category, flex against
//! `AD_PARITY_DEVICE` (default `wgpu-cpu`: Mesa's lavapipe, a Vulkan on the CPU), held to
//! `anomaly_detection::parity`'s tolerances. `tools/gpu-check.sh` installs the driver and
//! runs it.
#![cfg(feature = "wgpu")]

use anomaly_detection::mvtec::{MvtecCategory, SyntheticConfig};
use anomaly_detection::parity;
use anomaly_detection::pipeline::device_from_name;

#[test]
fn every_detector_agrees_with_flex() {
    let name = std::env::var("AD_PARITY_DEVICE").unwrap_or_else(|_| "wgpu-cpu".into());
    let candidate = device_from_name(&name).unwrap();
    let reference = device_from_name("cpu").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig::small();
    cfg.generate(tmp.path()).unwrap();
    let category = MvtecCategory::open(tmp.path(), &cfg.name).unwrap();
    let mut failed = Vec::new();
    println!("flex vs {name}, {} (64 px)", cfg.name);
    println!("{}", parity::table_header());
    for config in parity::cases(64, false) {
        let row = parity::compare(
            &config,
            &category.splits,
            &reference,
            &candidate,
            tmp.path(),
        )
        .unwrap();
        println!("{}", row.table_row());
        if !row.passes() {
            failed.push(row);
        }
    }
    assert!(failed.is_empty(), "beyond tolerance on {name}: {failed:#?}");
}
