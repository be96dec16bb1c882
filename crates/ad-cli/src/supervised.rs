//! `ad supervised`: the transfer-learning classifier with a few labelled defects — stratified
//! k-fold cross-validation on a category's pooled good and defective images, CAM overlays,
//! optional fusion with an unsupervised detector's scores, and the final model trained on
//! everything.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ad_core::{Detector, ImageBatch};
use ad_metrics::viz::{MapScale, OverlayInput, OverlayStyle, save_overlay};
use anomaly_detection::registry::DetectorConfig;
use anomaly_detection::regress::{ClassScore, SupervisedClassifier};
use anomaly_detection::supervised::{SupervisedReport, pool, supervised_cv, train_classifier};

use crate::CliError;
use crate::config::ModelArgs;
use crate::data::DataArgs;
use crate::run::{CommonArgs, device, ensure_writable_dir, progress_bar, say_dataset};

/// `ad supervised`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SupervisedArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    common: CommonArgs,
    /// Cross-validation folds (stratified by defect type).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Seed of the fold assignment.
    #[arg(long, default_value_t = 42)]
    cv_seed: u64,
    /// Also fit this unsupervised detector (patchcore, padim, cflow; its defaults) on each
    /// fold's good training images and compare a logistic-regression fusion of its score and
    /// the classifier's logit with each alone.
    #[arg(long, value_name = "MODEL")]
    fusion: Option<String>,
    /// After cross-validation, train on every pooled image and save the model here (usable
    /// with `ad predict`, `ad test`, `ad info`).
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Output directory [default: out/supervised/<category>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// CAM overlays of at most this many defective images (out-of-fold CAMs); 0 = none.
    #[arg(long, default_value_t = 16)]
    overlays: usize,
}

fn markdown(name: &str, r: &SupervisedReport) -> String {
    let mut s = String::new();
    let cv = &r.cv;
    let _ = writeln!(
        s,
        "## {name}: classifier, {}-fold stratified CV ({} images, {} defective)\n",
        cv.folds.len(),
        r.images,
        r.defective
    );
    if r.copies > 0 {
        let _ = writeln!(
            s,
            "{} images are byte-identical copies of others; each is in its original's fold.\n",
            r.copies
        );
    }
    let _ = writeln!(
        s,
        "| fold | train | test | epochs | train acc. | TP | FN | TN | FP | accuracy | balanced acc. | CAM pixel AUROC |"
    );
    let _ = writeln!(s, "|{}", " --- |".repeat(12));
    for (i, f) in cv.folds.iter().enumerate() {
        let c = &f.confusion;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {:.3} | {:.3} | {} |",
            i + 1,
            f.train,
            f.test,
            f.epochs,
            f.train_accuracy,
            c.tp,
            c.fn_,
            c.tn,
            c.fp,
            f.accuracy,
            f.balanced_accuracy,
            f.cam_pixel_auroc.map_or("-".into(), |v| format!("{v:.3}"))
        );
    }
    let c = &cv.confusion;
    let _ = writeln!(
        s,
        "| all | | {} | | | {} | {} | {} | {} | {} | {} | {} |\n",
        r.images,
        c.tp,
        c.fn_,
        c.tn,
        c.fp,
        cv.accuracy,
        cv.balanced_accuracy,
        cv.cam_pixel_auroc.map_or("-".into(), |v| v.to_string())
    );
    if !r.fusion.is_empty() {
        let _ = writeln!(
            s,
            "Logistic regression on out-of-fold scores, same folds:\n\n| inputs | balanced acc. | AUROC | TP | FN | TN | FP |\n| --- | --- | --- | --- | --- | --- | --- |"
        );
        for f in &r.fusion {
            let c = &f.confusion;
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} | {} | {} | {} | {} |",
                f.inputs, f.balanced_accuracy, f.auroc, c.tp, c.fn_, c.tn, c.fp
            );
        }
        let _ = writeln!(s);
    }
    s
}

/// Out-of-fold CAM overlays of the first `max` defective images: the CAM (one colour scale for
/// all), the ground-truth contour and the recipe's CAM region (normalised CAM >= 0.7).
fn save_cams(
    classifier: &SupervisedClassifier,
    samples: &[ad_mvtec::Sample],
    report: &SupervisedReport,
    dir: &Path,
    max: usize,
) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(crate::io_error(dir))?;
    let pre = Detector::preprocessor(classifier).clone();
    let (h, w) = pre.output_size();
    let cv = &report.cv;
    let chosen: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].is_anomalous)
        .take(max)
        .collect();
    let maps: Vec<Vec<f32>> = chosen
        .iter()
        .map(|&i| {
            let score = ClassScore {
                logit: cv.out_of_fold_logits[i],
                probability: 0.0,
                cam: cv.out_of_fold_cams[i].clone(),
                grid: cv.cam_grid,
            };
            Ok(SupervisedClassifier::cam_map(&score, (h, w))?.into_vec())
        })
        .collect::<Result<_, CliError>>()?;
    let (lo, hi) = maps
        .iter()
        .flatten()
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
    for (&i, map) in chosen.iter().zip(&maps) {
        let s = &samples[i];
        let (planes, mask) =
            ad_mvtec::load_sample(s, &pre).map_err(anomaly_detection::Error::from)?;
        let c = pre.config();
        let picture = ImageBatch::from_planes(vec![planes], (h, w), c.mean, c.std)
            .and_then(|b| b.image(0))
            .map_err(anomaly_detection::Error::from)?;
        let region = classifier.cam_region(
            &ad_core::AnomalyMap::new(w, h, map.clone()).map_err(anomaly_detection::Error::from)?,
        );
        let input = OverlayInput {
            image: picture.as_raw(),
            map,
            gt_mask: mask.as_ref().map(|m| m.as_slice()),
            pred_mask: Some(&region),
            width: w,
            height: h,
        };
        save_overlay(
            &dir.join(format!("{}_{}.png", s.defect, s.stem())),
            &input,
            &style,
        )
        .map_err(anomaly_detection::Error::from)?;
    }
    Ok(())
}

/// `ad supervised`.
pub fn supervised(args: &SupervisedArgs) -> Result<(), CliError> {
    let mut model_args = args.model.clone();
    if model_args.model.is_none() && model_args.config.is_none() {
        model_args.model = Some("classifier".into());
    }
    let config = model_args.resolve()?;
    let DetectorConfig::Classifier(config) = config else {
        return Err(CliError::Usage(format!(
            "ad supervised trains the classifier, not {}: use --model classifier (the default) \
             or a config with model = \"classifier\"",
            config.name()
        )));
    };
    if model_args.print_config {
        print!(
            "{}",
            crate::to_toml(&DetectorConfig::Classifier(config.clone()))?
        );
        return Ok(());
    }
    let fusion = match &args.fusion {
        Some(name) => {
            let c = DetectorConfig::default_for(name)?;
            if matches!(
                c,
                DetectorConfig::Student(_) | DetectorConfig::Classifier(_)
            ) {
                return Err(CliError::Usage(format!(
                    "--fusion {name}: use an unsupervised detector (patchcore, padim, cflow)"
                )));
            }
            let mut c = c;
            // The detector sees the classifier's preprocessing.
            *c.preprocess_mut() = config.preprocess.clone();
            Some(c)
        }
        None => None,
    };
    if args.save.is_some() && (args.data.category.contains(',') || args.data.category == "all") {
        return Err(CliError::Usage(
            "--save writes one model: give one category".into(),
        ));
    }
    let device = device(&args.common)?;
    let data = args.data.open()?;
    say_dataset(&data);
    let visible = !args.common.quiet;
    let base = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out").join("supervised"));
    let several = data.splits.len() > 1;
    let mut summary = String::new();
    for splits in &data.splits {
        let out = if several || args.out.is_none() {
            base.join(&splits.name)
        } else {
            base.clone()
        };
        ensure_writable_dir(&out)?;
        let samples = pool(splits);
        let bar = progress_bar(samples.len(), "features", visible);
        let report = supervised_cv(
            &config,
            &samples,
            args.folds,
            args.cv_seed,
            fusion.as_ref(),
            &device,
            &bar,
        )?;
        let md = markdown(&splits.name, &report);
        println!("\n{md}");
        summary.push_str(&md);
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Usage(format!("cannot write JSON: {e}")))?;
        let jpath = out.join("supervised.json");
        std::fs::write(&jpath, json).map_err(crate::io_error(&jpath))?;
        let mpath = out.join("supervised.md");
        std::fs::write(&mpath, &md).map_err(crate::io_error(&mpath))?;
        let mut classifier = SupervisedClassifier::new(&config, &device)?;
        if args.overlays > 0 {
            save_cams(
                &classifier,
                &samples,
                &report,
                &out.join("cams"),
                args.overlays,
            )?;
        }
        println!(
            "wrote {}, {}{}",
            jpath.display(),
            mpath.display(),
            if args.overlays > 0 {
                format!(", CAM overlays in {}", out.join("cams").display())
            } else {
                String::new()
            }
        );
        if let Some(path) = &args.save {
            let epochs = progress_bar(config.max_epochs, "training", visible);
            let bar = epochs.clone();
            classifier.set_epoch_callback(Some(Box::new(move |r: &ad_core::EpochReport| {
                bar.set_message(format!("loss {:.5}", r.loss));
                bar.inc(1);
            })));
            let t = train_classifier(&mut classifier, &samples)?;
            epochs.finish_and_clear();
            // The images' sizes go with its decision boundary, as `ad fit` records them.
            let sizes = samples
                .iter()
                .map(|s| ad_mvtec::decode::read_dims(&s.path))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anomaly_detection::Error::from)?;
            if let Some(threshold) = classifier.threshold().cloned() {
                let inputs = ad_core::InputSizes::from_sizes(sizes);
                classifier.set_threshold(Some(threshold.with_inputs(inputs)));
            }
            classifier.save(path)?;
            println!(
                "trained on all {} images ({} epochs, train accuracy {:.3}); model saved to {}",
                samples.len(),
                t.epochs,
                t.train_accuracy,
                path.display()
            );
        }
    }
    if several {
        let spath = base.join("summary.md");
        std::fs::write(&spath, &summary).map_err(crate::io_error(&spath))?;
        println!("wrote {}", spath.display());
    }
    Ok(())
}
