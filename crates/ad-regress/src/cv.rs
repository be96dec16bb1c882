//! Stratified k-fold cross-validation of the [`SupervisedClassifier`]: a fresh head per fold
//! on the frozen features (the backbone runs once per image), accuracy, balanced accuracy,
//! confusion matrix and CAM pixel AUROC per fold, mean ± standard deviation over folds, and
//! every image's out-of-fold logit (for fusion with other scores).

use ad_core::Mask;
use ad_metrics::ConfusionMatrix;
use serde::{Deserialize, Serialize};

use crate::RegressError;
use crate::classifier::SupervisedClassifier;
use crate::features::FeatureMaps;
use crate::folds::{stratified_group_k_fold, stratified_k_fold};

/// Mean and sample standard deviation of a quantity over folds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
}

impl MeanStd {
    /// Of `values` (`None` when empty).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Some(Self {
            mean,
            std: var.sqrt(),
        })
    }
}

impl std::fmt::Display for MeanStd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} ± {:.3}", self.mean, self.std)
    }
}

/// One fold's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
    /// Epochs run.
    pub epochs: usize,
    /// Training accuracy at the end.
    pub train_accuracy: f64,
    /// Test decisions at probability 0.5.
    pub confusion: ConfusionMatrix,
    /// Test accuracy.
    pub accuracy: f64,
    /// Test balanced accuracy (mean of the two recalls).
    pub balanced_accuracy: f64,
    /// Pixel AUROC of the CAM on the test images that have a mask (good images count as all
    /// normal); `None` when no test image has one.
    pub cam_pixel_auroc: Option<f64>,
    /// Training seconds.
    pub seconds: f64,
}

/// The cross-validation report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvReport {
    /// Per fold.
    pub folds: Vec<FoldResult>,
    /// Test accuracy over folds.
    pub accuracy: MeanStd,
    /// Test balanced accuracy over folds.
    pub balanced_accuracy: MeanStd,
    /// CAM pixel AUROC over the folds that have one.
    pub cam_pixel_auroc: Option<MeanStd>,
    /// Confusion matrix summed over folds (every image once).
    pub confusion: ConfusionMatrix,
    /// Every image's logit from the fold that held it out.
    pub out_of_fold_logits: Vec<f32>,
    /// Fold of every image (index into `folds`).
    pub fold_of: Vec<usize>,
    /// Every image's class activation map from the fold that held it out, on the tap's grid
    /// ([`CvReport::cam_grid`]), for overlays.
    #[serde(skip)]
    pub out_of_fold_cams: Vec<Vec<f32>>,
    /// Grid `(h, w)` of the CAMs.
    pub cam_grid: (usize, usize),
}

/// What one cross-validation runs on: the frozen features of every image, its label
/// (`true` = defective), its stratum (defect type or "good") and its mask at the preprocessed
/// size (`None` for images without one; good images: an empty mask).
#[derive(Clone, Copy, Debug)]
pub struct CvData<'a> {
    /// Frozen features.
    pub features: &'a FeatureMaps,
    /// Labels.
    pub labels: &'a [bool],
    /// Strata.
    pub strata: &'a [String],
    /// Masks at `image_size`.
    pub masks: &'a [Option<Mask>],
    /// Preprocessed image size `(h, w)`.
    pub image_size: (usize, usize),
    /// For each image, the index of the first identical one (itself for an original; see
    /// [`stratified_group_k_fold`]): copies are kept in one fold. `None`: all distinct.
    pub copy_of: Option<&'a [usize]>,
}

/// Stratified `k`-fold cross-validation of `model`'s configuration on `data` (the model's
/// head is retrained per fold and left as the last fold's).
pub fn cross_validate(
    model: &mut SupervisedClassifier,
    data: CvData<'_>,
    k: usize,
    seed: u64,
) -> Result<CvReport, RegressError> {
    let n = data.labels.len();
    if data.features.len() != n || data.strata.len() != n || data.masks.len() != n {
        return Err(RegressError::Data(format!(
            "{} features, {} labels, {} strata, {} masks",
            data.features.len(),
            n,
            data.strata.len(),
            data.masks.len()
        )));
    }
    let folds = match data.copy_of {
        Some(copy_of) => stratified_group_k_fold(data.strata, copy_of, k, seed)?,
        None => stratified_k_fold(data.strata, k, seed)?,
    };
    let mut results = Vec::with_capacity(k);
    let mut oof = vec![f32::NAN; n];
    let mut fold_of = vec![0; n];
    let mut cams = vec![Vec::new(); n];
    let mut total = ConfusionMatrix::default();
    for (f, fold) in folds.iter().enumerate() {
        let train_labels: Vec<bool> = fold.train.iter().map(|&i| data.labels[i]).collect();
        let report = model.fit_features(
            &data.features.select(&fold.train)?,
            &train_labels,
            data.image_size,
        )?;
        let scores = model.score_features(&data.features.select(&fold.test)?)?;
        let test_labels: Vec<bool> = fold.test.iter().map(|&i| data.labels[i]).collect();
        let predicted: Vec<bool> = scores.iter().map(|s| s.logit >= 0.0).collect();
        let confusion = ConfusionMatrix::from_predictions(&predicted, &test_labels)?;
        total.tp += confusion.tp;
        total.fp += confusion.fp;
        total.tn += confusion.tn;
        total.fn_ += confusion.fn_;
        let (mut pixels, mut truth) = (Vec::new(), Vec::new());
        for (s, &i) in scores.iter().zip(&fold.test) {
            oof[i] = s.logit;
            fold_of[i] = f;
            cams[i] = s.cam.clone();
            if let Some(mask) = &data.masks[i] {
                let map = SupervisedClassifier::cam_map(s, data.image_size)?;
                if mask.width() != map.width() || mask.height() != map.height() {
                    return Err(RegressError::Data(format!(
                        "mask {}x{} for a {}x{} map",
                        mask.width(),
                        mask.height(),
                        map.width(),
                        map.height()
                    )));
                }
                pixels.extend_from_slice(map.as_slice());
                truth.extend_from_slice(mask.as_slice());
            }
        }
        let cam_pixel_auroc = if truth.iter().any(|&t| t) && truth.iter().any(|&t| !t) {
            Some(ad_metrics::roc_auc(&pixels, &truth)?)
        } else {
            None
        };
        results.push(FoldResult {
            train: fold.train.len(),
            test: fold.test.len(),
            epochs: report.epochs,
            train_accuracy: report.train_accuracy,
            accuracy: confusion.accuracy(),
            balanced_accuracy: confusion.balanced_accuracy(),
            confusion,
            cam_pixel_auroc,
            seconds: report.seconds,
        });
    }
    let col = |g: fn(&FoldResult) -> Option<f64>| -> Vec<f64> {
        results.iter().filter_map(g).collect::<Vec<f64>>()
    };
    Ok(CvReport {
        accuracy: MeanStd::of(&col(|r| Some(r.accuracy))).unwrap_or_default(),
        balanced_accuracy: MeanStd::of(&col(|r| Some(r.balanced_accuracy))).unwrap_or_default(),
        cam_pixel_auroc: MeanStd::of(&col(|r| r.cam_pixel_auroc)),
        confusion: total,
        folds: results,
        out_of_fold_logits: oof,
        fold_of,
        out_of_fold_cams: cams,
        cam_grid: data.features.grid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_is_the_sample_form() {
        let m = MeanStd::of(&[1.0, 2.0, 3.0]).unwrap();
        assert!((m.mean - 2.0).abs() < 1e-12);
        assert!((m.std - 1.0).abs() < 1e-12);
        assert_eq!(MeanStd::of(&[5.0]).unwrap().std, 0.0);
        assert!(MeanStd::of(&[]).is_none());
    }
}
