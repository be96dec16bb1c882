//! PaDiM on an MVTec-style category: fit, threshold from good images, test, metrics, pictures,
//! report. The same as `ad run --model padim`.
//!
//! ```text
//! cargo run --release --example mvtec_padim                     # generated category
//! cargo run --release --example mvtec_padim -- --data ../shared/datasets/mvtec_ad --category bottle
//! cargo run --release --example mvtec_padim -- --folder-normal good/ --folder-abnormal bad/ --folder-mask masks/
//! cargo run --release --example mvtec_padim -- --help
//! ```
//!
//! Prints progress bars for feature extraction (with the streaming Gaussian fit), the
//! threshold and testing, then the metrics table with the pass/fail decisions, and writes
//! overlays, ROC and PR curves, the report and the fitted model under `--out` (default
//! `out/padim/<category>`).

fn main() -> std::process::ExitCode {
    ad_cli::example_main("padim")
}
