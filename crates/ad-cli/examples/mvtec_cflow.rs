//! CFlow (conditional normalizing flows, trained with Burn autodiff) on an MVTec-style
//! category: train, threshold from good images, test, metrics, pictures, report. The same as
//! `ad run --model cflow`.
//!
//! ```text
//! cargo run --release --example mvtec_cflow                                  # generated category
//! cargo run --release --example mvtec_cflow -- --data ../shared/datasets/mvtec_ad --category bottle --epochs 10
//! cargo run --release --example mvtec_cflow -- --help
//! ```
//!
//! Prints the loss of every epoch, then the metrics table with the pass/fail decisions, and
//! writes overlays, ROC and PR curves, the report and the model under `--out` (default
//! `out/cflow/<category>`).

fn main() -> std::process::ExitCode {
    ad_cli::example_main("cflow")
}
