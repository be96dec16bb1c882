//! `ad`: the command-line tool of the anomaly-detection workspace.
//!
//! ```text
//! ad fit     --data ROOT --category bottle --out bottle.patchcore   # fit + threshold from good images
//! ad predict bottle.patchcore part1.png line/today/ 'cam*/*.png'   # one JSON line per image
//! ad test    bottle.patchcore ROOT/bottle --out out/bottle          # metrics, decisions, pictures, report
//! ad info    bottle.patchcore                                       # what the model file holds
//! ad add     bottle.patchcore new_good/                             # more good images, no refit
//! ad run     --model padim                                          # fit + test in one go (the examples)
//! ad parity  --device wgpu                                          # this GPU vs the CPU, compared
//! ```
//!
//! Models are described by a config file (TOML or YAML, `--config`) in the schema
//! `--print-config` writes, overridden by flags. Clap, printing and progress bars live here;
//! everything else is the library (`anomaly_detection`).

mod add;
mod config;
mod data;
mod parity;
mod predict;
mod report;
mod run;
mod supervised;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use config::{ModelArgs, read_config_file, to_toml};
pub use data::DataArgs;

/// Errors of the command-line tool.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The library failed.
    #[error(transparent)]
    Lib(#[from] anomaly_detection::Error),
    /// A config file is unreadable or invalid.
    #[error("config file {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the key).
        message: String,
    },
    /// Flags that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Some images could not be processed (the others were).
    #[error("{0} image(s) could not be processed")]
    ImagesFailed(usize),
    /// `ad parity`: detectors beyond the stated tolerances.
    #[error("{0} detector(s) differ between the devices beyond the tolerances")]
    ParityFailed(usize),
}

/// `map_err` helper: an I/O error on `path` as [`CliError::Io`].
pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl From<anomaly_detection::regress::RegressError> for CliError {
    fn from(e: anomaly_detection::regress::RegressError) -> Self {
        CliError::Lib(e.into())
    }
}

impl From<ad_core::DetectorError> for CliError {
    fn from(e: ad_core::DetectorError) -> Self {
        CliError::Lib(e.into())
    }
}

/// Industrial visual anomaly detection: fit on good parts, score new ones.
#[derive(Parser, Debug)]
#[command(name = "ad", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fit a detector on good images, calibrate its pass/fail threshold on good images held out
    /// from fitting, and save the model.
    Fit(run::FitArgs),
    /// Score images with a saved model: one JSON line per image (path, score, normalised score,
    /// label, and a warning when its size or aspect ratio is unlike the images the model was
    /// fitted on); exit status 1 when an image could not be processed, 2 on other errors.
    Predict(predict::PredictArgs),
    /// Evaluate a saved model on a labelled dataset: metrics, decisions at its threshold,
    /// overlays, ROC/PR plots, report.json/.md.
    Test(run::TestArgs),
    /// Describe a model file: detector, backbone and checkpoint SHA-256, config, threshold,
    /// memory size, format version (reads the header only).
    Info(run::InfoArgs),
    /// Add good images to a fitted model without fitting it again (PatchCore: the coreset
    /// continues over the new patches; PaDiM: exact update of its sums).
    Add(add::AddArgs),
    /// Fit, calibrate, save and test in one go, on one or several categories (what the
    /// examples run).
    Run(run::RunArgs),
    /// Supervised classifier (needs labelled defects): stratified k-fold cross-validation on a
    /// category's pooled good and defective images, CAM overlays, optional fusion with
    /// PatchCore, and the final model trained on everything (--save).
    Supervised(supervised::SupervisedArgs),
    /// Fit and run PatchCore, PaDiM, CFlow and the score student on a reference device (the
    /// CPU) and on another device (a GPU through wgpu), and compare scores, maps and AUROCs
    /// against stated tolerances; exit status 1 when one is exceeded.
    Parity(parity::ParityArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Fit(a) => run::fit(&a),
        Command::Predict(a) => predict::predict(&a),
        Command::Test(a) => run::test(&a),
        Command::Info(a) => run::info(&a),
        Command::Add(a) => add::add(&a),
        Command::Run(a) => run::run(&a),
        Command::Supervised(a) => supervised::supervised(&a),
        Command::Parity(a) => parity::parity(&a),
    }
}

/// Prints an error with its causes and maps it to the exit status (1: some images failed,
/// 2: anything else).
pub fn report_error(e: &CliError) -> ExitCode {
    eprintln!("error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
    match e {
        CliError::ImagesFailed(_) | CliError::ParityFailed(_) => ExitCode::from(1),
        _ => ExitCode::from(2),
    }
}

/// Rust starts a program with SIGPIPE ignored, so printing to a pipe whose reader has gone
/// (`ad predict ... | head`) fails, and `println!` panics. A command-line tool should end
/// quietly there, as `cat` does: restore the default action (the process ends on that
/// signal).
#[cfg(unix)]
fn restore_default_sigpipe() {
    // SAFETY: called once at the start of `main`, before any thread is started; `signal` with
    // the default action has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}

/// `main` of `ad`: parses `args` (the program name first) and runs.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    restore_default_sigpipe();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report_error(&e),
    }
}

/// `main` of the examples: `ad run --model <model>` followed by the example's own arguments.
pub fn example_main(model: &str) -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = vec!["ad".into(), "run".into()];
    let user: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if !user
        .iter()
        .any(|a| a == "--model" || a.to_string_lossy().starts_with("--model="))
    {
        args.push("--model".into());
        args.push(model.into());
    }
    args.extend(user);
    main_from(args)
}
