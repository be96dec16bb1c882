//! What a test run leaves on disk and on the terminal: overlays, ROC/PR plots, the report
//! (JSON + Markdown) and the printed tables.

use std::path::Path;

use ad_core::Threshold;
use ad_metrics::plot::{save_pr, save_roc};
use ad_metrics::report::{MetricsRow, RunReport};
use ad_metrics::viz::{MapScale, OverlayInput, OverlayStyle, predicted_mask, save_overlay};
use anomaly_detection::pipeline::{TestEvaluation, TestRun};

use crate::CliError;

/// Writes the pictures of a test run into `out`: `overlays/<defect>_<stem>.png` (defective
/// images first, at most `max_overlays`; one colour scale for all maps; ground-truth contour
/// where a mask exists, predicted mask at the pixel F1-max threshold), `roc.png` and `pr.png`.
pub fn save_pictures(
    out: &Path,
    title: &str,
    run: &TestRun,
    eval: &TestEvaluation,
    pictures: &[(String, Vec<u8>)],
    max_overlays: usize,
) -> Result<(), CliError> {
    let overlays = out.join("overlays");
    std::fs::create_dir_all(&overlays).map_err(|source| CliError::Io {
        path: overlays.clone(),
        source,
    })?;
    let (h, w) = run.map_size;
    let (lo, hi) = run
        .maps
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let style = OverlayStyle {
        scale: MapScale::Fixed {
            min: lo,
            max: hi.max(lo + 1e-6),
        },
        ..OverlayStyle::default()
    };
    let metrics = eval.metrics.as_ref();
    let pixel_threshold = metrics.and_then(|m| m.pixel.map(|p| p.level.f1.threshold));
    let mut order: Vec<usize> = (0..run.scores.len().min(pictures.len())).collect();
    order.sort_by_key(|&i| !run.labels[i]);
    for &i in order.iter().take(max_overlays) {
        let map = &run.maps[i * h * w..(i + 1) * h * w];
        let gt = &run.masks[i * h * w..(i + 1) * h * w];
        let pred = pixel_threshold.map(|t| predicted_mask(map, t));
        let input = OverlayInput {
            image: &pictures[i].1,
            map,
            gt_mask: (run.labels[i] && run.has_mask[i]).then_some(gt),
            pred_mask: pred.as_deref(),
            width: w,
            height: h,
        };
        save_overlay(
            &overlays.join(format!("{}.png", pictures[i].0)),
            &input,
            &style,
        )
        .map_err(anomaly_detection::Error::from)?;
    }
    if let Some(c) = metrics.and_then(|m| m.image_curves.as_ref()) {
        let mut rocs = vec![("image", &c.roc)];
        let mut prs = vec![("image", &c.pr)];
        if let Some(p) = metrics.and_then(|m| m.pixel_curves.as_ref()) {
            rocs.push(("pixel", &p.roc));
            prs.push(("pixel", &p.pr));
        }
        save_roc(&out.join("roc.png"), title, &rocs, (640, 480))
            .map_err(anomaly_detection::Error::from)?;
        save_pr(&out.join("pr.png"), title, &prs, (640, 480))
            .map_err(anomaly_detection::Error::from)?;
    }
    Ok(())
}

/// A `pipeline::test` callback that keeps each preprocessed picture (named
/// `<defect>_<stem>`) for [`save_pictures`].
pub fn keep_pictures(
    pictures: &mut Vec<(String, Vec<u8>)>,
) -> impl FnMut(&ad_mvtec::LoadedBatch, &[ad_core::Prediction]) -> Result<(), anomaly_detection::Error>
+ '_ {
    move |batch, _| {
        for (i, s) in batch.samples.iter().enumerate() {
            let image = batch.images.image(i)?;
            pictures.push((format!("{}_{}", s.defect, s.stem()), image.into_raw()));
        }
        Ok(())
    }
}

/// The row of a category's report: metrics (when both classes are present), times, the
/// decisions at the model's threshold and what the pixel metrics cover.
pub fn metrics_row(
    category: &str,
    model: &str,
    eval: &TestEvaluation,
    threshold: Option<&Threshold>,
    fit_seconds: Option<f64>,
    predict_ms: f64,
) -> Option<MetricsRow> {
    let m = eval.metrics.as_ref()?;
    let mut row = MetricsRow::from_evaluation(category, model, m, fit_seconds, predict_ms);
    if let (Some(c), Some(t)) = (&eval.confusion, threshold) {
        row.extras.insert("threshold".into(), t.value as f64);
        row.extras
            .insert("balanced_accuracy".into(), c.balanced_accuracy());
        if let Some(v) = c.tpr() {
            row.extras.insert("tpr".into(), v);
        }
        if let Some(v) = c.tnr() {
            row.extras.insert("tnr".into(), v);
        }
    }
    row.extras.insert(
        "masked_defective".into(),
        eval.coverage.defective_with_mask as f64,
    );
    Some(row)
}

/// Context lines for a report: pixel coverage and the decisions.
pub fn notes(eval: &TestEvaluation, threshold: Option<&Threshold>) -> Vec<String> {
    let mut notes = Vec::new();
    let c = eval.coverage;
    if eval.metrics.is_none() {
        notes.push(
            "the test split has one class only: AUROC and F1 need good and defective images"
                .to_string(),
        );
    } else if c.defective_with_mask == 0 {
        notes.push(format!(
            "no masks: pixel metrics absent (image metrics on all {} defective images)",
            c.defective
        ));
    } else if c.defective_with_mask < c.defective {
        notes.push(format!(
            "pixel metrics on {} images: {} of {} defective images have masks",
            c.images, c.defective_with_mask, c.defective
        ));
    }
    match (threshold, &eval.confusion) {
        (Some(t), Some(m)) => notes.push(format!(
            "decisions at threshold {:.4} ({}): TP {} FN {} TN {} FP {}, balanced accuracy {:.4}",
            t.value,
            describe_method(t),
            m.tp,
            m.fn_,
            m.tn,
            m.fp,
            m.balanced_accuracy()
        )),
        _ => notes.push("no threshold: predictions are not labelled".to_string()),
    }
    notes
}

/// How a threshold was chosen, in words.
pub fn describe_method(t: &Threshold) -> String {
    match &t.method {
        ad_core::ThresholdMethod::GoodQuantile { quantile, images } => {
            format!("quantile {quantile} of {images} held-out good images")
        }
        ad_core::ThresholdMethod::F1Adaptive { good, defective } => {
            format!("F1-adaptive on {good} good + {defective} defective labelled images")
        }
        ad_core::ThresholdMethod::Manual => "set by hand".to_string(),
        ad_core::ThresholdMethod::Classifier { good, defective } => format!(
            "the classifier's decision (probability 0.5), trained on {good} good and {defective} \
             defective images"
        ),
    }
}

/// Writes one category's report (JSON + Markdown) into `out` and prints it.
pub fn write_report(out: &Path, report: &RunReport) -> Result<(), CliError> {
    let (json, md) = report
        .write(out, "report")
        .map_err(anomaly_detection::Error::from)?;
    println!();
    println!("{}", report.to_markdown());
    println!("wrote {}, {}", json.display(), md.display());
    Ok(())
}
