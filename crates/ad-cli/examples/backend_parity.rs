//! Backend parity: PatchCore, PaDiM, CFlow and the score student fitted and run on a reference
//! device (flex) and on a candidate device (a wgpu adapter), with the differences and the
//! verdict against the stated tolerances (`anomaly_detection::parity`).
//!
//! ```text
//! cargo run --release --features wgpu --example backend_parity -- --device wgpu-cpu
//! ```
//! `wgpu-cpu` is a software Vulkan (Mesa's lavapipe: `apt-get install mesa-vulkan-drivers`);
//! `wgpu` takes wgpu's choice of adapter (a GPU first). `tools/gpu-check.sh` runs this.
//! Exit status 1 when a tolerance is exceeded.

use std::path::PathBuf;
use std::process::ExitCode;

use anomaly_detection::mvtec::{MvtecCategory, SyntheticConfig};
use anomaly_detection::parity::{self, FITTED_TOLERANCE, INFERENCE_TOLERANCE};
use anomaly_detection::pipeline::device_from_name;
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Candidate device (cpu, wgpu, wgpu-cpu, wgpu-discrete[:N], ...).
    #[arg(long, default_value = "wgpu-cpu")]
    device: String,
    /// Reference device.
    #[arg(long, default_value = "cpu")]
    reference: String,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// EfficientNet-Lite0's ImageNet weights instead of the deterministic stand-in.
    #[arg(long)]
    pretrained: bool,
    /// A category in the MVTec AD layout (`train/good`, `test/*`, `ground_truth/*`);
    /// default: the small generated category.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Only these detectors, comma separated (patchcore, padim, cflow, student).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Also write the rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let reference = device_from_name(&args.reference)?;
    let candidate = device_from_name(&args.device)?;
    let tmp = tempfile::tempdir()?;
    let category = match &args.dataset {
        Some(dir) => {
            let name = dir
                .file_name()
                .ok_or("--dataset needs a category directory")?
                .to_string_lossy()
                .into_owned();
            MvtecCategory::open(dir.parent().unwrap_or(dir), &name)?
        }
        None => {
            let cfg = SyntheticConfig::small();
            cfg.generate(tmp.path())?;
            MvtecCategory::open(tmp.path(), &cfg.name)?
        }
    };
    println!(
        "backend parity: reference {} vs candidate {}, {} ({} train, {} test images, {} px)",
        args.reference,
        args.device,
        category.splits.name,
        category.splits.train.len(),
        category.splits.test.len(),
        args.size
    );
    println!(
        "tolerances: inference (reference-fitted model loaded on the candidate) <= {INFERENCE_TOLERANCE:e} \
         of the score/map range; fitted on each device <= {FITTED_TOLERANCE:e} and equal image AUROC \
         (PatchCore, PaDiM); trained heads reported"
    );
    println!("{}", parity::table_header());
    let mut rows = Vec::new();
    let mut all_pass = true;
    for config in parity::cases(args.size, args.pretrained) {
        if let Some(only) = &args.only
            && !only.iter().any(|o| o == config.name())
        {
            continue;
        }
        let row = parity::compare(&config, &category, &reference, &candidate, tmp.path())?;
        all_pass &= row.passes();
        println!("{}", row.table_row());
        rows.push(row);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
    }
    println!("{}", if all_pass { "all pass" } else { "FAILED" });
    Ok(all_pass)
}
