//! Evaluation of industrial anomaly detectors: the numbers the literature reports and the
//! pictures people look at.
//!
//! A detector such as PatchCore gives every test image an anomaly score and an anomaly map.
//! This crate turns them into:
//!
//! - **image AUROC** and **pixel AUROC** ([`roc_auc`], [`roc_curve`]): exact, ties counted one
//!   half as in scikit-learn, sorted once with a radix sort (5 M pixels in tens of milliseconds);
//! - **F1-max** and the threshold reaching it ([`f1_max`], [`precision_recall_curve`]), as
//!   anomalib's `F1Max` / `F1AdaptiveThreshold`;
//! - **AUPRO** ([`aupro`], [`pro_curve`]) up to an FPR limit (default 0.3), following the MVTec AD
//!   protocol: 8-connected ground-truth regions, per-region overlap averaged at each threshold;
//! - thresholds and anomalib's min-max score normalisation ([`Normalizer`],
//!   [`good_only_threshold`] for data without defects), the [`ConfusionMatrix`] and balanced
//!   accuracy at a threshold;
//! - everything at once for one category ([`evaluate`]);
//! - heat-map overlays ([`viz`]), ROC/PR plots ([`plot`]) and JSON + Markdown reports ([`report`]).
//!
//! ```
//! use ad_metrics::{aupro, f1_max, roc_auc, MapDims};
//!
//! let scores = [0.1, 0.4, 0.35, 0.8];
//! let labels = [false, false, true, true];
//! assert!((roc_auc(&scores, &labels)? - 0.75).abs() < 1e-12);
//! assert_eq!(f1_max(&scores, &labels)?.threshold, 0.35);
//!
//! // two 2x2 anomaly maps and masks, stored one after another
//! let maps = [0.9, 0.2, 0.8, 0.1, 0.3, 0.2, 0.1, 0.0];
//! let masks = [true, false, true, false, false, false, false, false];
//! assert!((aupro(&maps, &masks, MapDims::new(2, 2, 2), 0.3)? - 1.0).abs() < 1e-12);
//! # Ok::<(), ad_metrics::MetricsError>(())
//! ```
//!
//! # Edge cases
//!
//! No function returns a silent NaN:
//!
//! | input | result |
//! | --- | --- |
//! | empty scores, or lengths that differ | [`MetricsError::Empty`], [`MetricsError::LengthMismatch`] |
//! | a NaN or infinite score | [`MetricsError::NonFinite`] with its flat index |
//! | one class only | AUROC, ROC curve: [`MetricsError::SingleClass`]; F1-max, PR curve, AP: error without positives, fine without negatives (precision 1) |
//! | all scores tied | AUROC 0.5; one PR/ROC threshold |
//! | masks all background / all foreground | AUPRO: [`MetricsError::NoRegions`] / [`MetricsError::NoBackground`] |
//! | FPR limit outside `(0, 1]` | [`MetricsError::InvalidFprLimit`] |
//! | confusion matrix with a class absent | rates of that class are `None`; balanced accuracy averages the classes present (scikit-learn) |
//! | normaliser with `min >= max` | [`MetricsError::DegenerateRange`] |
//!
//! Scores `-0.0` and `0.0` are one tie group. Labels may be `bool`, `u8` (non-zero is
//! anomalous) or `f32` (`> 0.5`), see [`Label`].

mod confusion;
mod error;
mod evaluate;
pub mod plot;
mod pr;
mod pro;
mod rank;
pub mod report;
mod roc;
mod threshold;
pub mod viz;

pub use confusion::{ConfusionMatrix, balanced_accuracy};
pub use error::{MetricsError, Result};
pub use evaluate::{
    Curves, EvalOptions, Evaluation, LevelMetrics, PixelMaps, PixelMetrics, evaluate,
    evaluate_images,
};
pub use pr::{F1_EPSILON, F1Max, PrCurve, average_precision, f1_max, precision_recall_curve};
pub use pro::{DEFAULT_FPR_LIMIT, MapDims, ProCurve, aupro, label_components, pro_curve};
pub use rank::Label;
pub use report::{MetricsRow, RunReport};
pub use roc::{RocCurve, roc_auc, roc_curve, trapezoid};
pub use threshold::{
    DEFAULT_GOOD_QUANTILE, NORMALIZED_THRESHOLD, Normalizer, PostProcessor, f1_adaptive_threshold,
    good_only_threshold, quantile,
};
