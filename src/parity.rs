//! Backend parity: the same detector on two devices (flex and wgpu, say), compared.
//!
//! Two comparisons per detector, on the test split of one category:
//! - **inference**: the model fitted on the reference device, saved, loaded on the candidate
//!   device and run there: the same weights and memory, only the backend's arithmetic differs;
//! - **end to end**: fitted on each device (backbone, memory bank / Gaussians, training of the
//!   learned heads on that device's autodiff), then run there.
//!
//! Differences are relative to the reference's range (`max |a - b| / (max a - min a)`, over
//! the image scores and over every pixel of every map), so they read the same for detectors
//! whose scores are distances, Mahalanobis distances or log-likelihoods.

use std::path::Path;
use std::time::Instant;

use ad_metrics::EvalOptions;
use ad_mvtec::Splits;
use burn::tensor::Device;
use indicatif::ProgressBar;

use crate::Error;
use crate::pipeline::{self, TestRun};
use crate::registry::{self, DetectorConfig};

/// The detectors compared by the parity check, small enough for a software Vulkan: PatchCore
/// (the search on the device wherever the device is not the CPU backend, reweighting over 3
/// neighbours), PaDiM, CFlow (trained, 2 epochs) and the score student (trained, 2 epochs,
/// its PatchCore teacher fitted on the same device), all at `size` x `size` pixels. Backbone
/// weights are the deterministic stand-in (seed 1) unless `pretrained` (EfficientNet-Lite0's
/// ImageNet weights, fetched or cached).
pub fn cases(size: usize, pretrained: bool) -> Vec<DetectorConfig> {
    use ad_backbone::Weights;
    let weights = if pretrained {
        Weights::Pretrained
    } else {
        Weights::Random { seed: 1 }
    };
    let preprocess = ad_core::PreprocessConfig::default().with_size(size, size);
    let patchcore = ad_patchcore::PatchcoreConfig {
        weights: weights.clone(),
        preprocess: preprocess.clone(),
        coreset: ad_memory_bank::CoresetParams {
            size: ad_memory_bank::CoresetSize::Ratio(0.25),
            ..Default::default()
        },
        num_neighbors: 3,
        batch_size: 4,
        ..Default::default()
    };
    let padim = ad_padim::PadimConfig {
        weights: weights.clone(),
        preprocess: preprocess.clone(),
        batch_size: 4,
        ..Default::default()
    };
    let cflow = ad_cflow::CflowConfig {
        weights: weights.clone(),
        preprocess: preprocess.clone(),
        condition_dim: 16,
        coupling_blocks: 2,
        epochs: 2,
        batch_size: 4,
        ..Default::default()
    };
    let teacher = serde_json::to_value(DetectorConfig::Patchcore(ad_patchcore::PatchcoreConfig {
        preprocess: ad_core::PreprocessConfig::default(),
        ..patchcore.clone()
    }))
    .unwrap_or_default();
    let student = ad_regress::StudentConfig {
        weights,
        preprocess,
        hidden: vec![32],
        epochs: 2,
        patch_batch: 256,
        batch_size: 4,
        teacher,
        ..Default::default()
    };
    vec![
        DetectorConfig::Patchcore(patchcore),
        DetectorConfig::Padim(padim),
        DetectorConfig::Cflow(cflow),
        DetectorConfig::Student(student),
    ]
}

/// One detector compared on two devices.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ParityRow {
    /// Detector name.
    pub model: String,
    /// Test images compared.
    pub test_images: usize,
    /// Inference: the reference-fitted model file loaded on the candidate device, max image
    /// score difference relative to the reference's score range.
    pub loaded_score_diff: f64,
    /// Inference: the same for the anomaly maps (every pixel, relative to the maps' range).
    pub loaded_map_diff: f64,
    /// End to end (fitted on each device): max image score difference, relative.
    pub fitted_score_diff: f64,
    /// End to end: max map difference, relative.
    pub fitted_map_diff: f64,
    /// Image AUROC fitted on each device: `[reference, candidate]`.
    pub image_auroc: [f64; 2],
    /// Pixel AUROC fitted on each device (when the category has masks).
    pub pixel_auroc: [Option<f64>; 2],
    /// Fit time on each device, seconds.
    pub fit_s: [f64; 2],
    /// Predict time on each device, milliseconds per image (inference of the loaded model on
    /// the candidate).
    pub predict_ms: [f64; 2],
}

/// Inference parity: the reference-fitted model file run on the candidate device gives image
/// scores and maps within this fraction of the reference's range.
pub const INFERENCE_TOLERANCE: f64 = 1e-4;

/// End-to-end parity of the detectors that train nothing (PatchCore, PaDiM), fitted on each
/// device: scores and maps within this fraction of the range (looser than inference: the
/// coreset's choices and the Gaussians' inverses feel the features' last bits), and image
/// AUROCs equal to 4 decimals. Trained heads are reported, not held to it: different
/// arithmetic takes their optimisers down different paths.
pub const FITTED_TOLERANCE: f64 = 1e-3;

impl ParityRow {
    /// Whether the row meets [`INFERENCE_TOLERANCE`] and, for PatchCore and PaDiM,
    /// [`FITTED_TOLERANCE`] with equal image AUROCs (to 4 decimals).
    pub fn passes(&self) -> bool {
        let trained = matches!(self.model.as_str(), "cflow" | "student");
        let inference = self.loaded_score_diff <= INFERENCE_TOLERANCE
            && self.loaded_map_diff <= INFERENCE_TOLERANCE;
        let fitted = trained
            || (self.fitted_score_diff <= FITTED_TOLERANCE
                && self.fitted_map_diff <= FITTED_TOLERANCE
                && (self.image_auroc[0] - self.image_auroc[1]).abs() < 5e-5);
        inference && fitted
    }
}

/// The header of [`ParityRow::table_row`]'s Markdown table.
pub fn table_header() -> String {
    "| model | images | inference: score diff | map diff | fitted: score diff | map diff | \
     image AUROC ref / cand | pixel AUROC ref / cand | fit s ref / cand | \
     predict ms/img ref / cand | verdict |\n\
     |---|---:|---:|---:|---:|---:|---|---|---|---|---|"
        .to_string()
}

impl ParityRow {
    /// One Markdown table row (columns of [`table_header`]).
    pub fn table_row(&self) -> String {
        let pixel = |p: Option<f64>| p.map_or("-".to_string(), |v| format!("{v:.4}"));
        format!(
            "| {} | {} | {:.2e} | {:.2e} | {:.2e} | {:.2e} | {:.4} / {:.4} | {} / {} | {:.2} / {:.2} | {:.1} / {:.1} | {} |",
            self.model,
            self.test_images,
            self.loaded_score_diff,
            self.loaded_map_diff,
            self.fitted_score_diff,
            self.fitted_map_diff,
            self.image_auroc[0],
            self.image_auroc[1],
            pixel(self.pixel_auroc[0]),
            pixel(self.pixel_auroc[1]),
            self.fit_s[0],
            self.fit_s[1],
            self.predict_ms[0],
            self.predict_ms[1],
            if self.passes() { "pass" } else { "FAIL" }
        )
    }
}

/// `max |a - b| / (max a - min a)` (the plain maximum difference when `a` is constant).
///
/// # Panics
/// When the lengths differ.
pub fn relative_difference(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared runs differ in length");
    let (lo, hi) = a
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let range = f64::from(hi - lo);
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max);
    if range > 0.0 { max / range } else { max }
}

/// Fits `config` on `device`: the fitted detector and the fit time in seconds.
fn fitted(
    config: &DetectorConfig,
    category: &Splits,
    device: &Device,
) -> Result<(Box<dyn ad_core::DynDetector>, f64), Error> {
    let mut model = config.build(device)?;
    let t = Instant::now();
    let batch = model.dyn_batch_size();
    pipeline::fit(
        model.as_mut(),
        &category.train,
        batch,
        &ProgressBar::hidden(),
    )?;
    Ok((model, t.elapsed().as_secs_f64()))
}

fn run(model: &dyn ad_core::DynDetector, category: &Splits) -> Result<TestRun, Error> {
    pipeline::test(
        model,
        &category.test,
        model.dyn_batch_size(),
        &ProgressBar::hidden(),
        |_, _| Ok(()),
    )
}

fn aurocs(run: &TestRun) -> Result<(f64, Option<f64>), Error> {
    let eval = run.evaluate(&EvalOptions {
        curves: false,
        ..EvalOptions::default()
    })?;
    Ok(match eval.metrics {
        Some(m) => (m.image.auroc, m.pixel.map(|p| p.level.auroc)),
        None => (f64::NAN, None),
    })
}

/// Compares `config` on `reference` and `candidate` (see the module documentation), fitted on
/// `category`'s train split and run on its test split; `workdir` receives the reference's
/// model file.
pub fn compare(
    config: &DetectorConfig,
    category: &Splits,
    reference: &Device,
    candidate: &Device,
    workdir: &Path,
) -> Result<ParityRow, Error> {
    let (model_a, fit_a) = fitted(config, category, reference)?;
    let run_a = run(model_a.as_ref(), category)?;
    let file = workdir.join(format!("parity.{}", config.name()));
    model_a.dyn_save(&file)?;
    let loaded = registry::load(&file, candidate)?;
    let run_loaded = run(loaded.as_ref(), category)?;
    let (model_b, fit_b) = fitted(config, category, candidate)?;
    let run_b = run(model_b.as_ref(), category)?;
    let (auroc_a, pixel_a) = aurocs(&run_a)?;
    let (auroc_b, pixel_b) = aurocs(&run_b)?;
    Ok(ParityRow {
        model: config.name().to_string(),
        test_images: run_a.scores.len(),
        loaded_score_diff: relative_difference(&run_a.scores, &run_loaded.scores),
        loaded_map_diff: relative_difference(&run_a.maps, &run_loaded.maps),
        fitted_score_diff: relative_difference(&run_a.scores, &run_b.scores),
        fitted_map_diff: relative_difference(&run_a.maps, &run_b.maps),
        image_auroc: [auroc_a, auroc_b],
        pixel_auroc: [pixel_a, pixel_b],
        fit_s: [fit_a, fit_b],
        predict_ms: [
            run_a.predict_ms_per_image(),
            run_loaded.predict_ms_per_image(),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, loaded: f64, fitted: f64, aurocs: [f64; 2]) -> ParityRow {
        ParityRow {
            model: model.into(),
            test_images: 4,
            loaded_score_diff: loaded,
            loaded_map_diff: loaded,
            fitted_score_diff: fitted,
            fitted_map_diff: fitted,
            image_auroc: aurocs,
            pixel_auroc: [None, None],
            fit_s: [0.0; 2],
            predict_ms: [0.0; 2],
        }
    }

    #[test]
    fn tolerances_are_held_where_stated() {
        assert!(row("patchcore", 5e-5, 5e-4, [0.9, 0.9]).passes());
        assert!(
            !row("patchcore", 2e-4, 0.0, [0.9, 0.9]).passes(),
            "inference"
        );
        assert!(!row("padim", 0.0, 2e-3, [0.9, 0.9]).passes(), "fitted");
        assert!(!row("padim", 0.0, 0.0, [0.9, 0.9001]).passes(), "AUROC");
        // Trained heads: end to end reported, inference held.
        assert!(row("cflow", 5e-5, 0.5, [0.9, 0.7]).passes());
        assert!(!row("student", 2e-4, 0.0, [0.9, 0.9]).passes());
        assert!(
            row("student", 0.0, 0.0, [0.9, 0.9])
                .table_row()
                .ends_with("| pass |")
        );
    }

    #[test]
    fn differences_are_relative_to_the_reference_range() {
        assert_eq!(relative_difference(&[0.0, 2.0], &[0.0, 2.0]), 0.0);
        assert!((relative_difference(&[1.0, 3.0], &[1.1, 3.0]) - 0.05).abs() < 1e-6);
        // A constant reference: the plain difference.
        assert!((relative_difference(&[5.0, 5.0], &[5.0, 5.5]) - 0.5).abs() < 1e-9);
    }
}
