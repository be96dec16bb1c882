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

use std::path::Path;
use std::time::Instant;

use ad_backbone::BackboneKind;
use ad_core::Detector;
use ad_metrics::report::MetricsRow;
use ad_mvtec::{BatchLoader, Splits};
use ad_padim::{MapUpsample, Padim, PadimConfig};
use anomaly_detection::Error;
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

/// PaDiM (Defard et al., ICPR 2020 workshops) on an MVTec AD category, your own folders, or a
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
    /// Seed of the channel subset (and of the folder split).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = device_from_name(&args.output.device)?;
    let kind = args.model.kind()?;
    let all = args.data.open()?;
    run_categories(&all, &args.output, "padim", |splits, out| {
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
    std::fs::create_dir_all(&out).map_err(|source| Error::Io {
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
        weights: args.model.weights(),
        taps: args.model.taps.clone(),
        preprocess: args.model.preprocess(),
        n_features: args.n_features,
        seed: args.seed,
        regularization: args.regularization,
        upsample: match args.upsample {
            Upsample::Nearest => MapUpsample::Nearest,
            Upsample::Bilinear => MapUpsample::Bilinear,
        },
        blur_sigma: args.model.sigma,
        batch_size: args.model.batch_size,
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
    let visible = !args.output.quiet;

    // Fit: feature extraction with the streaming Gaussian sums (progress bar), then the
    // Cholesky factorisations.
    let t_fit = Instant::now();
    let bar = progress_bar(splits.train.len(), "features", visible);
    let fit_batches =
        BatchLoader::new(&splits.train, pre.clone(), args.model.batch_size).map(|b| {
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

    // Test, metrics, pictures.
    let title = format!("PaDiM {} ({})", splits.name, kind.name());
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
    let model_size_mb = save_model(&args.output, &out, "model.padim", |p| model.save(p))?;

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
    write_category_report(&out, &format!("mvtec_padim {}", splits.name), &row)?;
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
