//! The device axis of the benches (candle's `BenchDevice` habit): the same bench runs on every
//! device named in `AD_BENCH_DEVICES` (comma separated, as `--device` takes them: `cpu`,
//! `wgpu`, `wgpu-cpu`, ...); default `cpu`, plus `wgpu` in a `--features wgpu` build.

use anomaly_detection::pipeline::device_from_name;
use burn::tensor::Device;

/// `(name, device)` of every device to bench on.
///
/// # Panics
/// On a device name this build does not know (a bench's input error).
pub fn bench_devices() -> Vec<(String, Device)> {
    let names = std::env::var("AD_BENCH_DEVICES").unwrap_or_else(|_| {
        if cfg!(feature = "wgpu") {
            "cpu,wgpu".into()
        } else {
            "cpu".into()
        }
    });
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            let device = device_from_name(n).unwrap_or_else(|e| panic!("AD_BENCH_DEVICES: {e}"));
            (n.to_string(), device)
        })
        .collect()
}
