//! Industrial visual anomaly detection on Burn: one import for the whole pipeline.
//!
//! A camera looks at products on a line; the detector has only ever seen good parts and must
//! say which new part is defective and where. The pipeline, one crate per step:
//!
//! | step | crate |
//! |---|---|
//! | images, preprocessing, the `Detector` trait | [`core`] (`ad-core`) |
//! | datasets: MVTec AD, your own folders, a generated category | [`mvtec`] (`ad-mvtec`) |
//! | pretrained CNN feature maps | [`backbone`] (`ad-backbone`) |
//! | coreset memory bank and nearest neighbours | [`memory_bank`] (`ad-memory-bank`) |
//! | PatchCore | [`patchcore`] (`ad-patchcore`) |
//! | AUROC, F1-max, AUPRO, overlays, reports | [`metrics`] (`ad-metrics`) |
//!
//! Start with `cargo run --release --example mvtec_patchcore`.

pub use ad_backbone as backbone;
pub use ad_core as core;
pub use ad_memory_bank as memory_bank;
pub use ad_metrics as metrics;
pub use ad_mvtec as mvtec;
pub use ad_patchcore as patchcore;
pub use burn;
