//! `ad parity`: the same detectors on two devices, compared (is this machine's GPU giving the
//! CPU's answers?). The comparison is `anomaly_detection::parity`; this prints its table.

use std::path::PathBuf;

use anomaly_detection::mvtec::{MvtecCategory, SyntheticConfig};
use anomaly_detection::parity::{self, FITTED_TOLERANCE, INFERENCE_TOLERANCE};
use anomaly_detection::pipeline::device_from_name;

use crate::CliError;

/// `ad parity` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ParityArgs {
    /// Candidate device (wgpu, wgpu-cpu, wgpu-discrete[:N], wgpu-integrated[:N], cuda[:N],
    /// as the build allows).
    #[arg(long, default_value = "wgpu")]
    pub device: String,
    /// Reference device.
    #[arg(long, default_value = "cpu")]
    pub reference: String,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// EfficientNet-Lite0's ImageNet weights instead of the deterministic stand-in.
    #[arg(long)]
    pub pretrained: bool,
    /// A category in the MVTec AD layout (`train/good`, `test/*`, `ground_truth/*`);
    /// default: a small generated category.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Only these detectors, comma separated (patchcore, padim, cflow, student).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Also write the rows as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `ad parity`.
pub fn parity(args: &ParityArgs) -> Result<(), CliError> {
    let known: Vec<&str> = parity::cases(args.size, false)
        .iter()
        .map(|c| c.name())
        .collect();
    if let Some(bad) = args
        .only
        .iter()
        .flatten()
        .find(|o| !known.contains(&o.as_str()))
    {
        return Err(CliError::Usage(format!(
            "--only {bad}: not a compared detector (use {})",
            known.join(", ")
        )));
    }
    let reference = device_from_name(&args.reference)?;
    let candidate = device_from_name(&args.device)?;
    let work = std::env::temp_dir().join(format!("ad-parity-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(crate::io_error(&work))?;
    let result = compare(args, &reference, &candidate, &work);
    // Best effort: the work folder only holds the generated images and model files.
    let _ = std::fs::remove_dir_all(&work);
    let failed = result?;
    if failed > 0 {
        return Err(CliError::ParityFailed(failed));
    }
    println!("all pass");
    Ok(())
}

/// Runs every selected detector and prints the table; the number of rows beyond tolerance.
fn compare(
    args: &ParityArgs,
    reference: &burn::tensor::Device,
    candidate: &burn::tensor::Device,
    work: &std::path::Path,
) -> Result<usize, CliError> {
    let category = match &args.dataset {
        Some(dir) => crate::DataArgs::open_category_dir(dir)?,
        None => {
            let cfg = SyntheticConfig::small();
            cfg.generate(work).map_err(anomaly_detection::Error::from)?;
            MvtecCategory::open(work, &cfg.name)
                .map_err(anomaly_detection::Error::from)?
                .splits
        }
    };
    println!(
        "backend parity: reference {} vs candidate {}, {} ({} train, {} test images, {} px)",
        args.reference,
        args.device,
        category.name,
        category.train.len(),
        category.test.len(),
        args.size
    );
    println!(
        "tolerances: inference (the reference-fitted model loaded on the candidate) <= \
         {INFERENCE_TOLERANCE:e} of the score/map range; fitted on each device <= \
         {FITTED_TOLERANCE:e} and equal image AUROC (PatchCore, PaDiM); trained heads reported"
    );
    println!("{}", parity::table_header());
    let mut rows = Vec::new();
    for config in parity::cases(args.size, args.pretrained) {
        if let Some(only) = &args.only
            && !only.iter().any(|o| o == config.name())
        {
            continue;
        }
        let row = parity::compare(&config, &category, reference, candidate, work)?;
        println!("{}", row.table_row());
        rows.push(row);
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| CliError::Usage(format!("cannot serialise the rows: {e}")))?;
        std::fs::write(path, text).map_err(crate::io_error(path))?;
    }
    Ok(rows.iter().filter(|r| !r.passes()).count())
}
