//! Peak memory of a PatchCore fit against the number of training images, with the exact greedy
//! coreset (every patch feature held until the end) or the streaming coreset under a budget
//! (`fit_budget_mib`). Good parts are generated in memory, batch by batch, so the images
//! themselves are never all held. Prints one markdown table row; run one process per setting,
//! as `tools/run_fit_memory.sh` does, since the peak (`VmHWM`) is the process's.
//!
//! ```text
//! cargo run --release --example fit_memory -- --images 1000 [--budget-mib 256] [--size 128]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use ad_core::{Detector, ImageBatch};
use anomaly_detection::backbone::Weights;
use anomaly_detection::memory_bank::CoresetSize;
use anomaly_detection::patchcore::{PatchCore, PatchcoreConfig};
use anomaly_detection::pipeline::peak_memory_mb;
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Good training images (generated).
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Streaming coreset budget, MiB [default: exact greedy over all patches].
    #[arg(long)]
    budget_mib: Option<usize>,
    /// Coreset ratio.
    #[arg(long, default_value_t = 0.1)]
    ratio: f64,
    /// Deterministic stand-in backbone weights instead of the pretrained ones (no download).
    #[arg(long)]
    random_weights: bool,
    /// Print the table header first.
    #[arg(long)]
    header: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = PatchcoreConfig {
        fit_budget_mib: args.budget_mib,
        ..PatchcoreConfig::default()
    };
    config.coreset.size = CoresetSize::Ratio(args.ratio);
    config.preprocess = config.preprocess.with_size(args.size, args.size);
    if args.random_weights {
        config.weights = Weights::Random { seed: 0 };
    }
    let device = burn::tensor::Device::flex();
    let mut model = PatchCore::new(&config, &device)?;
    let estimate = config.check()?.estimate(args.images)?;
    let pre = model.preprocessor().clone();
    let baseline = peak_memory_mb().unwrap_or(0.0);
    let (images, size) = (args.images, args.size);
    let batches = (0..images).step_by(8).map(move |start| {
        let parts = (start..(start + 8).min(images))
            .map(|i| {
                anomaly_detection::mvtec::render_part(size, 0xF17 ^ i as u64, None).map(|p| p.0)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<ImageBatch, Box<dyn std::error::Error + Send + Sync>>(pre.batch(&parts)?)
    });
    let t0 = Instant::now();
    let summary = model.fit(batches)?;
    let seconds = t0.elapsed().as_secs_f64();
    let peak = peak_memory_mb().unwrap_or(0.0);
    if args.header {
        println!(
            "| images | patches | coreset | bank rows | coverage radius | fit s | peak MiB | \
             estimated peak MiB | features alone MiB |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    }
    println!(
        "| {} | {} | {} | {} | {:.3} | {:.1} | {:.0} (start {:.0}) | {:.0} | {:.0} |",
        summary.images,
        summary.features,
        args.budget_mib
            .map_or("exact greedy".to_string(), |m| format!(
                "streaming, {m} MiB"
            )),
        summary.memory_rows,
        model.coverage_radius().unwrap_or(0.0),
        seconds,
        peak,
        baseline,
        estimate.peak_bytes as f64 / (1 << 20) as f64,
        (summary.features * estimate.feature_dim * 4) as f64 / (1 << 20) as f64,
    );
    Ok(())
}
