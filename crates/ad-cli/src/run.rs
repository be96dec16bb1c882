//! `ad fit`, `ad test`, `ad run` and `ad info`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ad_core::{Detector, DynDetector, FitSummary, Threshold};
use ad_metrics::EvalOptions;
use ad_metrics::report::RunReport;
use ad_mvtec::Splits;
use anomaly_detection::pipeline::{self, TestRun};
use anomaly_detection::registry::{self, DetectorConfig};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::{
    describe_method, keep_pictures, metrics_row, notes, save_pictures, write_report,
};
use crate::{CliError, DataArgs, ModelArgs};

/// Device and terminal options.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Device: cpu (flex), default (first enabled backend, GPUs first); with --features wgpu:
    /// wgpu (wgpu's choice of adapter), wgpu-cpu (a software Vulkan such as Mesa's lavapipe),
    /// wgpu-discrete[:N], wgpu-integrated[:N]; with --features cuda: cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Hide progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// How the pass/fail threshold is chosen.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    /// A high quantile of the scores of good images held out from fitting (--holdout,
    /// --quantile): needs no defective image.
    Good,
    /// anomalib's F1-adaptive threshold on the dataset's labelled test split (optimistic when
    /// the same split is then used to report results).
    F1,
    /// No threshold: predictions carry scores only.
    None,
}

/// Threshold calibration options.
#[derive(clap::Args, Debug, Clone)]
pub struct CalibrationArgs {
    /// How the pass/fail threshold is chosen.
    #[arg(long, value_enum, default_value = "good")]
    pub threshold: ThresholdMode,
    /// Fraction of the good training images held out from fitting to calibrate the threshold
    /// (--threshold good).
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Quantile of the held-out good scores used as threshold, in [0.5, 1].
    #[arg(long, default_value_t = 0.99)]
    pub quantile: f64,
    /// Seed of the hold-out split.
    #[arg(long, default_value_t = 0)]
    pub holdout_seed: u64,
    /// Refuse to start a fit whose estimated peak memory exceeds this many GiB [default: 80 %
    /// of the machine's memory].
    #[arg(long, value_name = "GIB")]
    pub memory_limit: Option<f64>,
}

/// Test output options.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output directory [default: out/<model>/<category>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write at most this many overlays (defective images first); 0 = none.
    #[arg(long, default_value_t = 1000)]
    pub overlays: usize,
    /// Predict the first test batch once before timing, so that one-time costs (a GPU's kernel
    /// compilation and autotuning) stay out of predict ms/img; the report notes it.
    #[arg(long)]
    pub warm_up: bool,
}

/// `ad fit`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct FitArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    calibration: CalibrationArgs,
    #[command(flatten)]
    common: CommonArgs,
    /// Model file to write [default: out/<model>/<category>/model.<model>].
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
}

/// `ad test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Model file written by `ad fit`.
    model_file: PathBuf,
    /// A category folder in the MVTec layout (`train/`, `test/<defect>/`, optional
    /// `ground_truth/`); or give the dataset with the --data / --folder-* options.
    dataset: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    common: CommonArgs,
}

/// `ad run`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    calibration: CalibrationArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    common: CommonArgs,
    /// Do not save the fitted model.
    #[arg(long)]
    no_save: bool,
}

/// `ad info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Model file.
    model_file: PathBuf,
    /// Print the whole header as JSON.
    #[arg(long)]
    json: bool,
}

/// A progress bar in the workspace's style (hidden when `visible` is false).
pub fn progress_bar(len: usize, message: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    styled(ProgressBar::new(len as u64), message)
}

/// A [`progress_bar`] that is not drawn until its draw target is set (to stderr, where bars
/// go): for a stage that starts later.
fn progress_bar_later(len: usize, message: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    styled(
        ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::hidden()),
        message,
    )
}

/// `bar` in the workspace's style, showing `message`.
fn styled(bar: ProgressBar, message: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{msg:>12} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar
}

pub(crate) fn device(common: &CommonArgs) -> Result<Device, CliError> {
    Ok(pipeline::device_from_name(&common.device)?)
}

/// Creates `dir` and checks that a file can be written in it, before any work is spent.
pub(crate) fn ensure_writable_dir(dir: &Path) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{}: exists and is not a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let probe = dir.join(format!(".ad-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(io)?;
    std::fs::remove_file(&probe).map_err(io)
}

fn ensure_writable_file(path: &Path) -> Result<(), CliError> {
    if path.is_dir() {
        return Err(CliError::Usage(format!(
            "{}: is a directory; give the model file's path",
            path.display()
        )));
    }
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => ensure_writable_dir(p),
        _ => ensure_writable_dir(Path::new(".")),
    }
}

pub(crate) fn say_dataset(data: &crate::data::Datasets) {
    if let Some(root) = &data.generated {
        println!(
            "no dataset given: using the generated category at {} (see datasets/README.md)",
            root.display()
        );
    }
    for s in &data.splits {
        let unmasked = s.anomalous_without_mask();
        println!(
            "{}: {} train, {} test ({} defective{})",
            s.name,
            s.train.len(),
            s.test.len(),
            s.test_anomalous(),
            if unmasked > 0 {
                format!(", {unmasked} without a mask: image-level labels only")
            } else {
                String::new()
            }
        );
    }
}

/// What fitting and calibrating produced.
struct Fitted {
    model: Box<dyn DynDetector>,
    summary: FitSummary,
    seconds: f64,
    warnings: Vec<String>,
}

/// Prints warnings once, on stderr.
pub(crate) fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn fit_and_calibrate(
    config: &DetectorConfig,
    device: &Device,
    splits: &Splits,
    calibration: &CalibrationArgs,
    visible: bool,
) -> Result<Fitted, CliError> {
    let (fit_set, held) = match calibration.threshold {
        ThresholdMode::Good => {
            if calibration.holdout <= 0.0 {
                return Err(CliError::Usage(
                    "--threshold good needs good images held out: --holdout must be > 0 \
                     (or use --threshold none)"
                        .into(),
                ));
            }
            pipeline::split_holdout(&splits.train, calibration.holdout, calibration.holdout_seed)?
        }
        _ => (splits.train.clone(), Vec::new()),
    };
    if calibration.threshold == ThresholdMode::Good && !(0.5..=1.0).contains(&calibration.quantile)
    {
        return Err(CliError::Usage(format!(
            "--quantile {} is not in [0.5, 1]",
            calibration.quantile
        )));
    }
    if calibration.threshold == ThresholdMode::F1
        && (splits.test_anomalous() == 0 || splits.test_anomalous() == splits.test.len())
    {
        return Err(CliError::Usage(
            "--threshold f1 needs good and defective test images".into(),
        ));
    }
    let limit = match calibration.memory_limit {
        Some(g) if g.is_finite() && g > 0.0 => (g * (1u64 << 30) as f64) as u64,
        Some(g) => {
            return Err(CliError::Usage(format!(
                "--memory-limit {g} must be positive"
            )));
        }
        None => pipeline::default_memory_limit(),
    };
    // Every header, the settings and the memory, before any image is decoded.
    let preflight = pipeline::preflight(config, splits, fit_set.len(), limit)?;
    warn_all(&preflight.warnings);
    let mut model = config.build(device)?;
    let batch_size = model.batch_size();
    let epochs = match config {
        DetectorConfig::Cflow(c) => c.epochs,
        DetectorConfig::Student(c) => c.reported_epochs(),
        _ => 0,
    };
    // After the features: a spinner while the model is built, until a detector with a long
    // preparation (a score student's teachers) reports its stages, which get a bar; epochs get
    // their own. Each is drawn from its start on (not while the features are read).
    let spinner = if visible {
        let s = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
            .with_style(ProgressStyle::default_spinner());
        s.set_message("building the model ...");
        s
    } else {
        ProgressBar::hidden()
    };
    let stage_bar = progress_bar_later(0, "preparing", visible);
    if visible {
        let bar = stage_bar.clone();
        let building = spinner.clone();
        let mut current: Option<String> = None;
        model.set_stage_callback(Some(Box::new(move |r: &ad_core::StageReport| {
            if current.as_deref() != Some(r.stage.as_str()) {
                if current.is_none() {
                    building.finish_and_clear();
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                }
                bar.reset();
                bar.set_message(r.stage.clone());
                bar.set_length(r.total as u64);
                current = Some(r.stage.clone());
            }
            bar.set_position(r.done as u64);
            // Without a terminal the bar is hidden: each finished stage still gets a line.
            if bar.is_hidden() && r.done == r.total {
                eprintln!("{}: {}/{}", r.stage, r.done, r.total);
            }
        })));
    }
    let epoch_bar = progress_bar_later(epochs, "training", visible && epochs > 0);
    if epochs > 0 && visible {
        let bar = epoch_bar.clone();
        let preparation = stage_bar.clone();
        let building = spinner.clone();
        model.set_epoch_callback(Some(Box::new(move |r: &ad_core::EpochReport| {
            if r.epoch == 1 {
                // The preparation is over: its bar or spinner gives its line to this one.
                building.finish_and_clear();
                preparation.finish_and_clear();
                bar.reset_elapsed();
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
            let line = format!(
                "epoch {}/{}: loss {:.5} ({:.1} s)",
                r.epoch, r.epochs, r.loss, r.seconds
            );
            // Without a terminal the bar is hidden: the epoch lines still go to stderr.
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            bar.inc(1);
        })));
    }
    println!(
        "fitting {} on {} good images ({}about {} of memory, limit {})",
        config.name(),
        fit_set.len(),
        if held.is_empty() {
            String::new()
        } else {
            format!("{} held out for the threshold; ", held.len())
        },
        human_bytes(preflight.fit.peak_bytes),
        human_bytes(limit)
    );
    let t0 = Instant::now();
    let bar = progress_bar(fit_set.len(), "features", visible);
    let summary = pipeline::fit_with(model.as_mut(), &fit_set, batch_size, &bar, || {
        if visible {
            spinner.set_draw_target(ProgressDrawTarget::stderr());
            spinner.enable_steady_tick(Duration::from_millis(200));
        }
    })?;
    spinner.finish_and_clear();
    stage_bar.finish_and_clear();
    epoch_bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    // Models without a bank or per-position Gaussians (students, flows, ensembles) keep no rows.
    let kept = match summary.memory_rows {
        0 => String::new(),
        rows => format!(" -> {rows} rows kept"),
    };
    println!(
        "fit: {} images, {} features{kept} ({:.1} s features, {:.1} s building)",
        summary.images,
        summary.features,
        summary.extract_time.as_secs_f64(),
        summary.build_time.as_secs_f64()
    );
    let threshold = match calibration.threshold {
        ThresholdMode::Good => {
            let bar = progress_bar(held.len(), "threshold", visible);
            let scores = pipeline::score(model.as_ref(), &held, batch_size, &bar)?;
            Some(pipeline::calibrate_good(&scores, calibration.quantile)?)
        }
        ThresholdMode::F1 => {
            eprintln!(
                "warning: --threshold f1 chooses the threshold on the test split's labels; \
                 decisions reported on that split are optimistic"
            );
            let bar = progress_bar(splits.test.len(), "threshold", visible);
            let scores = pipeline::score(model.as_ref(), &splits.test, batch_size, &bar)?;
            let labels: Vec<bool> = splits.test.iter().map(|s| s.is_anomalous).collect();
            Some(pipeline::calibrate_f1(&scores, &labels)?)
        }
        ThresholdMode::None => None,
    }
    .map(|t| t.with_inputs(preflight.data.train_sizes.clone()));
    if let Some(t) = &threshold {
        println!("threshold {:.4} ({})", t.value, describe_method(t));
    }
    model.set_threshold(threshold);
    Ok(Fitted {
        model,
        summary,
        seconds,
        warnings: preflight.warnings,
    })
}

fn save(model: &dyn DynDetector, path: &Path) -> Result<f64, CliError> {
    model.dyn_save(path)?;
    let mb = std::fs::metadata(path)
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .unwrap_or(0.0);
    println!("model saved to {} ({mb:.1} MiB)", path.display());
    Ok(mb)
}

fn default_out(model: &str, category: &str) -> PathBuf {
    Path::new("out").join(model).join(category)
}

/// The effective config, or `None` after printing it for `--print-config`.
fn resolve_or_print(model: &ModelArgs) -> Result<Option<DetectorConfig>, CliError> {
    let config = model.resolve()?;
    if model.print_config {
        print!("{}", crate::to_toml(&config)?);
        return Ok(None);
    }
    Ok(Some(config))
}

/// `ad fit`.
pub fn fit(args: &FitArgs) -> Result<(), CliError> {
    let Some(config) = resolve_or_print(&args.model)? else {
        return Ok(());
    };
    let device = device(&args.common)?;
    let data = args.data.open()?;
    let [splits] = data.splits.as_slice() else {
        return Err(CliError::Usage(format!(
            "ad fit makes one model: {} categories were selected (use one --category)",
            data.splits.len()
        )));
    };
    let out = args.out.clone().unwrap_or_else(|| {
        default_out(config.name(), &splits.name).join(format!("model.{}", config.kind().extension))
    });
    ensure_writable_file(&out)?;
    say_dataset(&data);
    let fitted = fit_and_calibrate(
        &config,
        &device,
        splits,
        &args.calibration,
        !args.common.quiet,
    )?;
    save(fitted.model.as_ref(), &out)?;
    Ok(())
}

/// What a report carries besides the test run: fit time, extra columns, pre-flight warnings.
#[derive(Clone, Copy)]
struct ReportContext<'a> {
    fit_seconds: Option<f64>,
    extras: &'a [(&'a str, f64)],
    warnings: &'a [String],
}

/// Tests `model` on `splits`, writes pictures and the report into `out`; returns the report.
fn test_and_report(
    model: &dyn DynDetector,
    splits: &Splits,
    output: &OutputArgs,
    out: &Path,
    context: &ReportContext<'_>,
    visible: bool,
) -> Result<RunReport, CliError> {
    let ReportContext {
        fit_seconds,
        extras,
        warnings,
    } = *context;
    let warmed = if output.warm_up {
        pipeline::warm_up(model, &splits.test, model.dyn_batch_size())?
    } else {
        0
    };
    let bar = progress_bar(splits.test.len(), "testing", visible);
    let mut pictures: Vec<(String, Vec<u8>)> = Vec::new();
    let run: TestRun = pipeline::test(
        model,
        &splits.test,
        model.dyn_batch_size(),
        &bar,
        keep_pictures(&mut pictures),
    )?;
    let eval = run.evaluate(&EvalOptions::default())?;
    let title = format!("{} {}", model.dyn_name(), splits.name);
    save_pictures(out, &title, &run, &eval, &pictures, output.overlays)?;
    let threshold = model.dyn_threshold();
    let mut report = RunReport::new(format!("{} {}", model.dyn_name(), splits.name));
    report.notes = warnings.iter().map(|w| format!("warning: {w}")).collect();
    report.notes.extend(notes(&eval, threshold));
    if warmed > 0 {
        report.notes.push(format!(
            "predict ms/img timed after a warm-up batch of {warmed} images (not counted)"
        ));
    }
    if let Some(mut row) = metrics_row(
        &splits.name,
        model.dyn_name(),
        &eval,
        threshold,
        fit_seconds,
        run.predict_ms_per_image(),
    ) {
        row.peak_memory_mb = pipeline::peak_memory_mb();
        for (k, v) in extras {
            row.extras.insert((*k).to_string(), *v);
        }
        report.push(row);
    }
    write_report(out, &report)?;
    println!("pictures in {} (overlays/, roc.png, pr.png)", out.display());
    Ok(report)
}

/// `ad test`.
pub fn test(args: &TestArgs) -> Result<(), CliError> {
    let device = device(&args.common)?;
    let model = registry::load(&args.model_file, &device)?;
    let data = match &args.dataset {
        Some(dir) => crate::data::Datasets {
            splits: vec![DataArgs::open_category_dir(dir)?],
            generated: None,
        },
        None => args.data.open()?,
    };
    say_dataset(&data);
    if let Some(t) = model.threshold() {
        println!(
            "model {} ({}), threshold {:.4} ({})",
            args.model_file.display(),
            model.name(),
            t.value,
            describe_method(t)
        );
    }
    let base = args
        .output
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out").join("test").join(model.name()));
    let title = format!("ad test {}", args.model_file.display());
    for_each_category(&data.splits, &args.output, &base, title, |splits, out| {
        let fitted_on = model.threshold().and_then(|t| t.inputs.as_ref());
        let check =
            ad_mvtec::check_splits_against(splits, model.preprocessor().config().resize, fitted_on)
                .map_err(anomaly_detection::Error::from)?;
        warn_all(&check.warnings);
        test_and_report(
            model.as_ref(),
            splits,
            &args.output,
            out,
            &ReportContext {
                fit_seconds: None,
                extras: &[],
                warnings: &check.warnings,
            },
            !args.common.quiet,
        )
    })
}

/// Runs `one` for every category in its own output folder (`<base>/<category>`, or `base`
/// itself for one category with an explicit --out), checked writable first; with several
/// categories, writes and prints the combined report.
fn for_each_category(
    all_splits: &[Splits],
    output: &OutputArgs,
    base: &Path,
    title: String,
    mut one: impl FnMut(&Splits, &Path) -> Result<RunReport, CliError>,
) -> Result<(), CliError> {
    let several = all_splits.len() > 1;
    let mut all = RunReport::new(title);
    for splits in all_splits {
        let out = if several || output.out.is_none() {
            base.join(&splits.name)
        } else {
            base.to_path_buf()
        };
        ensure_writable_dir(&out)?;
        all.rows.extend(one(splits, &out)?.rows);
    }
    if several {
        write_report(base, &all)?;
    }
    Ok(())
}

/// `ad run`: fit, calibrate, save, test for every selected category.
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let Some(config) = resolve_or_print(&args.model)? else {
        return Ok(());
    };
    let device = device(&args.common)?;
    let data = args.data.open()?;
    say_dataset(&data);
    let base = args
        .output
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out").join(config.name()));
    let title = format!("{}: {} categories", config.name(), data.splits.len());
    for_each_category(&data.splits, &args.output, &base, title, |splits, out| {
        let fitted = fit_and_calibrate(
            &config,
            &device,
            splits,
            &args.calibration,
            !args.common.quiet,
        )?;
        // The model is saved before testing: a failure while testing never loses it.
        let mut extras = vec![("memory_rows", fitted.summary.memory_rows as f64)];
        if !args.no_save {
            let path = out.join(format!("model.{}", config.kind().extension));
            extras.push(("model_mb", save(fitted.model.as_ref(), &path)?));
        }
        test_and_report(
            fitted.model.as_ref(),
            splits,
            &args.output,
            out,
            &ReportContext {
                fit_seconds: Some(fitted.seconds),
                extras: &extras,
                warnings: &fitted.warnings,
            },
            !args.common.quiet,
        )
    })
}

/// `ad info`.
pub fn info(args: &InfoArgs) -> Result<(), CliError> {
    let info = registry::inspect(&args.model_file)?;
    if args.json {
        let s = serde_json::to_string_pretty(&info)
            .map_err(|e| CliError::Usage(format!("cannot print JSON: {e}")))?;
        println!("{s}");
        return Ok(());
    }
    let h = &info.header;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!("file            {}", args.model_file.display());
    println!(
        "detector        {} (format version {}, {:.2} MiB, checksum ok)",
        info.detector,
        info.format_version,
        info.file_bytes as f64 / (1024.0 * 1024.0)
    );
    let backbone = text(&h["backbone"]);
    match backbone.split_once(':') {
        _ if matches!(info.detector, "tiled" | "ensemble") => {}
        Some((kind, id)) => {
            println!("backbone        {kind}");
            println!("weights         {id}");
        }
        None => println!("backbone        {backbone}"),
    }
    // The first of these keys that the header has (detectors store them in different places).
    let first = |keys: &[&[&str]]| -> String {
        keys.iter()
            .map(|path| {
                path.iter()
                    .fold(h, |v: &serde_json::Value, k: &&str| &v[*k])
            })
            .find(|v| !v.is_null())
            .map_or("-".to_string(), &text)
    };
    if !matches!(info.detector, "tiled" | "ensemble") {
        println!(
            "taps            {}",
            first(&[&["config", "taps"], &["config", "tap"]])
        );
        println!(
            "image size      {}",
            first(&[&["image_size"], &["trained", "image_size"]])
        );
        println!(
            "feature grid    {}",
            first(&[&["grid"], &["grids"], &["trained", "grid"]])
        );
    }
    match info.detector {
        "patchcore" => println!(
            "memory bank     {} x {} (coverage radius {})",
            text(&h["bank_rows"]),
            text(&h["feature_dim"]),
            text(&h["coverage_radius"])
        ),
        "cflow" => {
            let losses: Vec<f64> = h["losses"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .unwrap_or_default();
            println!(
                "decoders        {} flows x {} coupling blocks, {} parameters, {} epochs (last loss {})",
                h["tap_channels"].as_array().map_or(0, |a| a.len()),
                text(&h["config"]["coupling_blocks"]),
                text(&h["parameters"]),
                losses.len(),
                losses.last().map_or("-".into(), |l| format!("{l:.5}"))
            );
        }
        "student" | "classifier" => {
            let losses: Vec<f64> = h["trained"]["losses"]
                .as_array()
                .or(h["report"]["losses"].as_array())
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .unwrap_or_default();
            // Models saved before the option held one head; a student's losses are its heads'
            // epochs one head after the other.
            let heads = h["config"]["heads"].as_u64().unwrap_or(1).max(1) as usize;
            let per = losses.len() / heads;
            let last: Vec<String> = if per == 0 {
                vec!["-".into()]
            } else {
                losses
                    .chunks(per)
                    .filter_map(|c| c.last().map(|l| format!("{l:.5}")))
                    .collect()
            };
            println!(
                "head            {}MLP {} ({} epochs{}, last loss {}){}",
                if heads > 1 {
                    format!("{heads} x ")
                } else {
                    String::new()
                },
                text(&h["dims"]),
                per,
                if heads > 1 { " each" } else { "" },
                last.join(" / "),
                if info.detector == "student" {
                    format!(
                        "; teacher {}, trained on {} good + {} synthetic ({}) images{}; {}; \
                         {} learning rate{}; {}-pooled targets{}{}{}{}{}{}{}",
                        text(&h["trained"]["teacher"]),
                        text(&h["trained"]["images"][0]),
                        text(&h["trained"]["images"][1]),
                        // Models saved before the kinds were configurable used cut-paste.
                        h["config"]["anomalies"].as_array().map_or_else(
                            || "cut-paste".to_string(),
                            |a| a.iter().map(text).collect::<Vec<_>>().join(", ")
                        ),
                        // Models saved before the option moved no patches.
                        match h["config"]["feature_noise"].as_f64() {
                            Some(f) if f > 0.0 => format!(
                                " and feature-space anomalies ({f} of the good patches moved, \
                                 up to {} median nearest-good-patch distances{})",
                                // Models saved before the radius was a key moved up to 4.
                                h["config"]["feature_noise_radius"].as_f64().unwrap_or(4.0),
                                match h["config"]["feature_noise_directions"].as_str() {
                                    Some(k) if k != "diagonal" => format!(", {k} directions"),
                                    _ => String::new(),
                                }
                            ),
                            _ => String::new(),
                        },
                        // Fitted prototypes are stored only when the config asked for some.
                        if h["trained"]["prototypes"]
                            .as_array()
                            .is_some_and(|a| !a.is_empty())
                        {
                            let seed = h["config"]["prototype_seed"]
                                .as_u64()
                                .map_or(String::new(), |s| format!(" (k-means seed {s})"));
                            // Models saved before the option had no skip.
                            let skip = match h["trained"]["skip"].as_f64() {
                                Some(w) if w != 0.0 => {
                                    format!(", the nearest one's distance added (slope {w:.4})")
                                }
                                _ => String::new(),
                            };
                            format!(
                                "{} prototypes{seed}{skip}",
                                text(&h["config"]["prototypes"])
                            )
                        } else {
                            "no prototypes".into()
                        },
                        // Models saved before the schedule was configurable used a constant rate.
                        h["config"]["lr_schedule"].as_str().unwrap_or("constant"),
                        // Models saved before weight averaging existed kept their last weights.
                        match h["config"]["average_epochs"].as_u64() {
                            Some(n) if n > 0 => format!(", weights averaged over {n} epochs"),
                            _ => String::new(),
                        },
                        // Models saved before the pooling was configurable used the mean.
                        h["config"]["target_pool"].as_str().unwrap_or("mean"),
                        // Models saved before the weighting existed weighted every patch alike.
                        match h["config"]["loss_weights"].as_str() {
                            Some(w) if w != "uniform" => format!(", {w} loss weights"),
                            _ => String::new(),
                        },
                        // Models saved before the option had one fold split.
                        match h["config"]["splits"].as_u64() {
                            Some(n) if n > 1 => format!(", {n} fold splits"),
                            _ => String::new(),
                        },
                        // Models saved before the option trained every head on every image.
                        if h["config"]["bootstrap"].as_bool() == Some(true) {
                            ", each head on a bootstrap sample"
                        } else {
                            ""
                        },
                        // Models saved before the option trained on raw inputs.
                        if h["config"]["standardise_inputs"].as_bool() == Some(true) {
                            ", standardised inputs"
                        } else {
                            ""
                        },
                        // Models saved before the option regressed the targets themselves.
                        match h["config"]["target_transform"].as_str() {
                            Some(t) if t != "identity" => format!(", {t} targets"),
                            _ => String::new(),
                        },
                        // Models saved before the option read the score off the map.
                        if h["config"]["image_score"].as_str() == Some("grid-max") {
                            "; image score = the grid's largest cell, before the blur"
                        } else {
                            ""
                        },
                        // Models saved before the option ran the backbone on the teacher's size.
                        match h["config"]["backbone_size"]
                            .as_array()
                            .map(|a| a.as_slice())
                        {
                            Some([hh, ww]) => format!(
                                "; backbone on the images resized to {}x{}",
                                text(hh),
                                text(ww)
                            ),
                            _ => String::new(),
                        }
                    )
                } else {
                    format!(
                        "; trained on {} good + {} defective images",
                        text(&h["report"]["good"]),
                        text(&h["report"]["defective"])
                    )
                }
            );
            if !h["stage"].is_null() {
                println!(
                    "fine-tuned      last stage {} (1x1 convolution + ReLU6, from the pretrained weights)",
                    text(&h["stage"])
                );
            }
        }
        "tiled" => println!(
            "tiles           {} per image of {} ({} px tiles, stride {}), {}",
            text(&h["tiles"]),
            text(&h["preprocess"]["resize"]),
            text(&h["tiling"]["tile"]),
            if h["tiling"]["stride"].is_null() {
                "= tile".to_string()
            } else {
                text(&h["tiling"]["stride"])
            },
            if h["tiling"]["ensemble"].as_bool() == Some(true) {
                format!("one {} per tile position", text(&h["detector"]))
            } else {
                format!("one {} for all tiles", text(&h["detector"]))
            }
        ),
        "ensemble" => {
            // Score members (counting for the image score only) and pixel members (for the
            // map only) are marked.
            let roles = h["roles"].as_array().cloned().unwrap_or_default();
            let names: Vec<String> = h["detectors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .enumerate()
                        .map(|(j, d)| match roles.get(j).and_then(|r| r.as_str()) {
                            Some("score") => format!("{} (image score only)", text(d)),
                            Some("pixel") => format!("{} (map only)", text(d)),
                            _ => text(d),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let scales: Vec<String> = h["scales"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| format!("{} +- {}", text(&s["mean"]), text(&s["std"])))
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "members         {} (maps standardised and averaged)",
                names.join(", ")
            );
            let folds = h["params"]["folds"].as_u64().unwrap_or(0);
            let measured = if folds >= 2 {
                format!("every good image, cross-fitted in {folds} folds")
            } else {
                format!(
                    "{} of the good images, held out",
                    text(&h["params"]["holdout"])
                )
            };
            println!(
                "member scales   {} (map values on {measured})",
                if scales.is_empty() {
                    "not measured (unfitted)".to_string()
                } else {
                    scales.join("; ")
                },
            );
            if let Some(o) = h["score_offsets"].as_array().filter(|o| !o.is_empty()) {
                let o: Vec<String> = o.iter().map(&text).collect();
                println!(
                    "score centres   {} (the map's maximum, then each score member's, on the \
                     measured images; the largest centred score decides)",
                    o.join(", ")
                );
            }
            if let Some(s) = h["score_spreads"].as_array().filter(|s| !s.is_empty()) {
                let s: Vec<String> = s.iter().map(&text).collect();
                println!(
                    "score spreads   {} (each centred score divided by its spread over the \
                     measured images)",
                    s.join(", ")
                );
            }
            println!("image size      {}", text(&h["preprocess"]["resize"]));
        }
        "padim" => {
            let n = h["channels"].as_array().map_or(0, |a| a.len());
            println!(
                "Gaussians       one per grid position, d = {n}, fitted on {} images",
                text(&h["images"])
            );
        }
        _ => {}
    }
    match serde_json::from_value::<Option<Threshold>>(h["threshold"].clone()) {
        Ok(Some(t)) => {
            println!(
                "threshold       {:.6} ({}; normalised over [{:.4}, {:.4}])",
                t.value,
                describe_method(&t),
                t.min,
                t.max
            );
            // Files written before the sizes were recorded have none.
            if let Some(inputs) = &t.inputs {
                println!("fitted on       {inputs} (ad predict warns on images unlike them)");
            }
        }
        _ => println!("threshold       none (predictions are not labelled)"),
    }
    let mut config = h["config"].clone();
    if let serde_json::Value::Object(m) = &mut config {
        m.insert("model".into(), info.detector.into());
    }
    if let Ok(c) = serde_json::from_value::<DetectorConfig>(config) {
        println!("config:");
        for line in crate::to_toml(&c)?.lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

/// `bytes` as MiB below 1 GiB, else GiB with one decimal.
fn human_bytes(bytes: u64) -> String {
    if bytes < 1 << 30 {
        format!("{} MiB", bytes.div_ceil(1 << 20))
    } else {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn byte_counts_read_as_mib_or_gib() {
        assert_eq!(human_bytes(1), "1 MiB");
        assert_eq!(human_bytes(300 << 20), "300 MiB");
        assert_eq!(human_bytes((1 << 30) - 1), "1024 MiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
        assert_eq!(human_bytes(3_436_000_000), "3.2 GiB");
    }
}
