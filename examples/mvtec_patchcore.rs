//! PatchCore on an MVTec-style category: fit, test, metrics, pictures, report.
//!
//! ```text
//! cargo run --release --example mvtec_patchcore                     # generated category
//! cargo run --release --example mvtec_patchcore -- --data ../shared/datasets/mvtec_ad --category bottle
//! cargo run --release --example mvtec_patchcore -- --folder-normal good/ --folder-abnormal bad/ --folder-mask masks/
//! cargo run --release --example mvtec_patchcore -- --help
//! ```
//!
//! Prints progress bars for feature extraction, coreset and testing, then a table of image
//! AUROC, pixel AUROC, image F1-max, pixel F1-max, AUPRO, fit seconds and predict ms per image,
//! and writes heat-map overlays, ROC and PR curves, the report (JSON + Markdown) and the fitted
//! model under `--out` (default `out/patchcore/<category>`).

use std::path::Path;
use std::time::{Duration, Instant};

use ad_backbone::BackboneKind;
use ad_core::Detector;
use ad_metrics::report::MetricsRow;
use ad_mvtec::Splits;
use ad_patchcore::{
    CoresetKind, CoresetProjection, KnnBackend, MapUpsample, PatchCore, PatchcoreConfig,
};
use anomaly_detection::cli::{
    DataArgs, ModelArgs, OutputArgs, run_categories, save_model, test_and_evaluate,
    write_category_report,
};
use anomaly_detection::pipeline::{device_from_name, peak_memory_mb, progress_bar};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Upsample {
    Nearest,
    Bilinear,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Coreset {
    Greedy,
    Reference,
    Random,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Knn {
    Cpu,
    Device,
}

/// PatchCore (Roth et al., CVPR 2022) on an MVTec AD category, your own folders, or a
/// generated category (the default, no download needed).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Fraction of training patches kept in the memory bank.
    #[arg(long, default_value_t = 0.1)]
    coreset_ratio: f64,
    /// Coreset algorithm.
    #[arg(long, value_enum, default_value = "greedy")]
    coreset: Coreset,
    /// Coreset random projection dimension (0 = no projection).
    #[arg(long, default_value_t = 128)]
    projection_dim: usize,
    /// Neighbours of the image-score reweighting (Eq. 7); 1 = plain max.
    #[arg(long, default_value_t = 9)]
    neighbors: usize,
    /// Reduce patch features to this many channels (adaptive average pooling).
    #[arg(long)]
    target_dim: Option<usize>,
    /// Upsampling of the patch-score grid.
    #[arg(long, value_enum, default_value = "nearest")]
    upsample: Upsample,
    /// Coreset seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Nearest-neighbour search on the host CPU or on the device.
    #[arg(long, value_enum, default_value = "cpu")]
    knn: Knn,
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = device_from_name(&args.output.device)?;
    let kind = args.model.kind()?;
    let all = args.data.open()?;
    run_categories(&all, &args.output, "patchcore", |splits, out| {
        run_category(&args, &device, kind, splits, out)
    })
}

fn run_category(
    args: &Args,
    device: &burn::tensor::Device,
    kind: BackboneKind,
    splits: &Splits,
    out: &Path,
) -> Result<MetricsRow, Box<dyn std::error::Error>> {
    let out = out.to_path_buf();
    println!(
        "{}: {} train, {} test ({} defective), device {:?}",
        splits.name,
        splits.train.len(),
        splits.test.len(),
        splits.test_anomalous(),
        device
    );

    let config = PatchcoreConfig {
        backbone: kind,
        weights: args.model.weights(),
        taps: args.model.taps.clone(),
        preprocess: args.model.preprocess(),
        target_dim: args.target_dim,
        coreset_ratio: args.coreset_ratio,
        coreset: match args.coreset {
            Coreset::Greedy => CoresetKind::Greedy,
            Coreset::Reference => CoresetKind::GreedyReference,
            Coreset::Random => CoresetKind::Random,
        },
        projection: if args.projection_dim == 0 {
            CoresetProjection::Identity
        } else {
            CoresetProjection::Gaussian {
                dim: args.projection_dim,
            }
        },
        seed: args.seed,
        num_neighbors: args.neighbors,
        upsample: match args.upsample {
            Upsample::Nearest => MapUpsample::Nearest,
            Upsample::Bilinear => MapUpsample::Bilinear,
        },
        blur_sigma: args.model.sigma,
        batch_size: args.model.batch_size,
        knn: match args.knn {
            Knn::Cpu => KnnBackend::Cpu,
            Knn::Device => KnnBackend::Device,
        },
        ..PatchcoreConfig::default()
    };
    let mut model = PatchCore::new(&config, device)?;
    println!(
        "backbone {} taps {:?} -> {} channels",
        model.backbone().identity(),
        model.backbone().taps(),
        model.backbone().tap_channels().iter().sum::<usize>()
    );
    let pre = model.preprocessor().clone();
    let visible = !args.output.quiet;

    // Fit: feature extraction (progress bar), then the coreset (spinner).
    let t_fit = Instant::now();
    let bar = progress_bar(splits.train.len(), "features", visible);
    let spinner = std::cell::RefCell::new(None);
    let fit_batches = ad_mvtec::BatchLoader::new(&splits.train, pre.clone(), args.model.batch_size)
        .map(|b| {
            let b = b?;
            bar.inc(b.images.len() as u64);
            if bar.position() as usize >= splits.train.len() {
                bar.finish();
                if visible {
                    let s = indicatif::ProgressBar::new_spinner();
                    s.set_message("coreset (greedy k-center) ...");
                    s.enable_steady_tick(Duration::from_millis(200));
                    *spinner.borrow_mut() = Some(s);
                }
            }
            Ok::<_, ad_mvtec::DatasetError>(b.images)
        });
    let summary = model.fit(fit_batches)?;
    if let Some(s) = spinner.borrow_mut().take() {
        s.finish_with_message(format!(
            "coreset: {} of {} patches in {:.1} s",
            summary.memory_rows,
            summary.features,
            summary.build_time.as_secs_f64()
        ));
    }
    let fit_seconds = t_fit.elapsed().as_secs_f64();
    println!(
        "fit: {} images, {} patches -> memory bank {} ({:.1} s features, {:.1} s coreset)",
        summary.images,
        summary.features,
        summary.memory_rows,
        summary.extract_time.as_secs_f64(),
        summary.build_time.as_secs_f64()
    );

    // Test, metrics, pictures.
    let title = format!("PatchCore {} ({})", splits.name, kind.name());
    let (test, eval) = test_and_evaluate(
        &model,
        splits,
        args.model.batch_size,
        &args.output,
        &out,
        &title,
    )?;

    // Image threshold at F1-max: labels predictions and is saved with the model.
    model.set_threshold(Some(eval.image.f1.threshold));
    let model_size_mb = save_model(&args.output, &out, "model.patchcore", |p| model.save(p))?;

    let model_name = format!("patchcore-{}-coreset{}", kind.name(), args.coreset_ratio);
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
        .insert("memory_bank".into(), summary.memory_rows as f64);
    write_category_report(&out, &format!("mvtec_patchcore {}", splits.name), &row)?;
    println!(
        "image threshold (F1-max) {:.4}; pictures in {} (overlays/, roc.png, pr.png)",
        eval.image.f1.threshold,
        out.display()
    );
    Ok(row)
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
