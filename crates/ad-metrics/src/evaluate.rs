//! All the metrics of a category in one call, each input sorted once.

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::pr::{self, F1Max, PrCurve};
use crate::pro::{DEFAULT_FPR_LIMIT, MapDims, ProRanking};
use crate::rank::{Label, Ranking};
use crate::roc::{self, RocCurve};

/// What [`evaluate`] computes besides the scalar metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// FPR limit of AUPRO, in `(0, 1]`.
    pub fpr_limit: f64,
    /// Return ROC and PR curves (image curves in full; pixel curves thinned to about
    /// `max_curve_points` steps per axis, enough for plotting).
    pub curves: bool,
    /// Resolution of the thinned pixel curves.
    pub max_curve_points: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            fpr_limit: DEFAULT_FPR_LIMIT,
            curves: true,
            max_curve_points: 1000,
        }
    }
}

/// Per-pixel anomaly maps and ground-truth masks of a category.
#[derive(Debug, Clone, Copy)]
pub struct PixelMaps<'a, L: Label> {
    /// `dims.count` maps of `dims.height x dims.width`, one after another, row-major.
    pub maps: &'a [f32],
    /// Ground-truth masks with the same layout.
    pub masks: &'a [L],
    /// Shape of `maps` and `masks`.
    pub dims: MapDims,
}

/// Threshold-free and F1 metrics of one level (image or pixel).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LevelMetrics {
    /// Area under the ROC curve.
    pub auroc: f64,
    /// F1-max and its threshold.
    pub f1: F1Max,
    /// Average precision.
    pub average_precision: f64,
    /// Number of anomalous samples (images or pixels).
    pub positives: usize,
    /// Number of normal samples.
    pub negatives: usize,
}

/// Pixel-level metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelMetrics {
    /// AUROC, F1-max and AP over all pixels.
    pub level: LevelMetrics,
    /// AUPRO up to `fpr_limit`, normalised.
    pub aupro: f64,
    /// The FPR limit used for AUPRO.
    pub fpr_limit: f64,
    /// Number of ground-truth regions (8-connected components).
    pub regions: usize,
}

/// ROC and PR curves of one level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    /// ROC curve.
    pub roc: RocCurve,
    /// Precision-recall curve.
    pub pr: PrCurve,
}

/// Everything [`evaluate`] computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Image-level metrics.
    pub image: LevelMetrics,
    /// Pixel-level metrics, when maps were given.
    pub pixel: Option<PixelMetrics>,
    /// Image-level curves, when asked for.
    pub image_curves: Option<Curves>,
    /// Pixel-level curves (thinned), when maps were given and curves asked for.
    pub pixel_curves: Option<Curves>,
}

fn level(r: &Ranking, what: &'static str) -> Result<LevelMetrics> {
    r.require_both(what)?;
    Ok(LevelMetrics {
        auroc: roc::auc_from_ranking(r),
        f1: pr::f1_from_ranking(r),
        average_precision: pr::ap_from_ranking(r),
        positives: r.n_pos(),
        negatives: r.n_neg(),
    })
}

fn check_options(opts: &EvalOptions) -> Result<()> {
    if !(opts.fpr_limit > 0.0 && opts.fpr_limit <= 1.0) {
        return Err(MetricsError::InvalidFprLimit(opts.fpr_limit));
    }
    if opts.max_curve_points < 2 {
        return Err(MetricsError::InvalidParameter {
            name: "max_curve_points",
            value: opts.max_curve_points as f64,
            reason: "must be at least 2",
        });
    }
    Ok(())
}

/// Image-level metrics only (for data without masks).
///
/// # Errors
/// As [`roc_auc`](crate::roc_auc): both classes must be present among the images.
pub fn evaluate_images<L: Label>(
    image_scores: &[f32],
    image_labels: &[L],
    opts: &EvalOptions,
) -> Result<Evaluation> {
    check_options(opts)?;
    let r = Ranking::build("image scores", image_scores, image_labels)?;
    let image = level(&r, "image scores")?;
    let image_curves = opts.curves.then(|| Curves {
        roc: roc::curve_from_ranking(&r, false),
        pr: pr::curve_from_ranking(&r),
    });
    Ok(Evaluation {
        image,
        pixel: None,
        image_curves,
        pixel_curves: None,
    })
}

/// Image AUROC, image F1-max, pixel AUROC, pixel F1-max and AUPRO of a category.
///
/// The pixels are converted and sorted once (foreground pixels carry their region id), and
/// pixel AUROC, F1-max, AP and AUPRO are all read from that one ranking.
///
/// # Errors
/// Those of [`roc_auc`](crate::roc_auc) for the images and the pixels, and of
/// [`aupro`](crate::aupro) (masks all background: [`NoRegions`](MetricsError::NoRegions)).
///
/// ```
/// use ad_metrics::{evaluate, EvalOptions, MapDims, PixelMaps};
/// let maps = [0.9, 0.1, 0.2, 0.1, /* image 2 */ 0.1, 0.2, 0.1, 0.3];
/// let masks = [true, false, false, false, false, false, false, false];
/// let pixels = PixelMaps { maps: &maps, masks: &masks, dims: MapDims::new(2, 2, 2) };
/// let e = evaluate(&[0.9, 0.3], &[true, false], &pixels, &EvalOptions::default())?;
/// assert_eq!(e.image.auroc, 1.0);
/// assert_eq!(e.pixel.unwrap().level.auroc, 1.0);
/// assert!((e.pixel.unwrap().aupro - 1.0).abs() < 1e-12);
/// # Ok::<(), ad_metrics::MetricsError>(())
/// ```
pub fn evaluate<L: Label, M: Label>(
    image_scores: &[f32],
    image_labels: &[L],
    pixels: &PixelMaps<'_, M>,
    opts: &EvalOptions,
) -> Result<Evaluation> {
    let mut e = evaluate_images(image_scores, image_labels, opts)?;
    let pro = ProRanking::build("pixel maps", pixels.maps, pixels.masks, pixels.dims)?;
    let r = &pro.ranking;
    let lvl = level(r, "pixel maps")?;
    e.pixel = Some(PixelMetrics {
        level: lvl,
        aupro: pro.aupro(opts.fpr_limit),
        fpr_limit: opts.fpr_limit,
        regions: pro.region_sizes.len(),
    });
    if opts.curves {
        e.pixel_curves = Some(Curves {
            roc: roc::decimated_from_ranking(r, opts.max_curve_points),
            pr: pr::decimated_from_ranking(r, opts.max_curve_points),
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{aupro, f1_max, roc_auc};

    #[test]
    fn agrees_with_single_metric_functions() {
        let mut state = 7u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32) / (1u64 << 24) as f32
        };
        let dims = MapDims::new(4, 16, 16);
        let n = dims.total().unwrap();
        let masks: Vec<bool> = (0..n)
            .map(|i| (i / 256) % 2 == 1 && (i % 16) < 5 && (i / 16) % 16 > 8)
            .collect();
        let maps: Vec<f32> = masks
            .iter()
            .map(|&m| (rnd() * 8.0).round() / 8.0 + if m { 0.3 } else { 0.0 })
            .collect();
        let scores = [0.2f32, 0.9, 0.1, 0.8];
        let labels = [false, true, false, true];
        let px = PixelMaps {
            maps: &maps,
            masks: &masks,
            dims,
        };
        let e = evaluate(&scores, &labels, &px, &EvalOptions::default()).unwrap();
        let p = e.pixel.unwrap();
        assert_eq!(p.level.auroc, roc_auc(&maps, &masks).unwrap());
        assert_eq!(p.level.f1, f1_max(&maps, &masks).unwrap());
        assert_eq!(p.aupro, aupro(&maps, &masks, dims, 0.3).unwrap());
        assert_eq!(p.regions, 2);
        let c = e.pixel_curves.unwrap();
        assert_eq!(c.roc.fpr.last(), Some(&1.0));
        assert!((c.roc.auc() - p.level.auroc).abs() < 1e-2);
        assert_eq!(e.image.auroc, 1.0);
        assert!(
            evaluate(
                &scores,
                &labels,
                &px,
                &EvalOptions {
                    fpr_limit: 2.0,
                    ..Default::default()
                }
            )
            .is_err()
        );

        // every point of the thinned pixel curves lies on the exact curves
        let full_roc = crate::roc_curve(&maps, &masks, false).unwrap();
        let roc_pts: std::collections::HashSet<(u64, u64)> = full_roc
            .fpr
            .iter()
            .zip(&full_roc.tpr)
            .map(|(x, y)| (x.to_bits(), y.to_bits()))
            .collect();
        assert!(
            c.roc
                .fpr
                .iter()
                .zip(&c.roc.tpr)
                .all(|(x, y)| roc_pts.contains(&(x.to_bits(), y.to_bits())))
        );
        let full_pr = crate::precision_recall_curve(&maps, &masks).unwrap();
        let pr_pts: Vec<(f64, f64)> = full_pr
            .precision
            .iter()
            .copied()
            .zip(full_pr.recall.iter().copied())
            .collect();
        for (p, r) in c.pr.precision.iter().zip(&c.pr.recall) {
            assert!(
                pr_pts
                    .iter()
                    .any(|&(a, b)| (a - p).abs() < 1e-12 && (b - r).abs() < 1e-12),
                "({p}, {r})"
            );
        }
        assert_eq!(c.pr.recall[0], 1.0);
        assert_eq!(c.pr.precision.len(), c.pr.thresholds.len() + 1);
    }
}
