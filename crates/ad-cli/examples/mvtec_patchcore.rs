//! PatchCore on an MVTec-style category: fit, threshold from good images, test, metrics,
//! pictures, report. The same as `ad run --model patchcore`.
//!
//! ```text
//! cargo run --release --example mvtec_patchcore                     # generated category
//! cargo run --release --example mvtec_patchcore -- --data ../shared/datasets/mvtec_ad --category bottle
//! cargo run --release --example mvtec_patchcore -- --folder-normal good/ --folder-abnormal bad/ --folder-mask masks/
//! cargo run --release --example mvtec_patchcore -- --help
//! ```
//!
//! Prints progress bars for feature extraction, the coreset, the threshold and testing, then a
//! table of image AUROC, pixel AUROC, image F1-max, pixel F1-max, AUPRO, fit seconds, predict
//! ms per image and the pass/fail decisions at the threshold calibrated on held-out good
//! images, and writes heat-map overlays, ROC and PR curves, the report (JSON + Markdown) and
//! the fitted model under `--out` (default `out/patchcore/<category>`).

fn main() -> std::process::ExitCode {
    ad_cli::example_main("patchcore")
}
