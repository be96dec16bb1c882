//! `ad add`: add good images to a fitted model without fitting it again.

use std::path::PathBuf;
use std::time::Instant;

use ad_core::{Detector, ImageBatch, InputSizes, RgbImage};
use ad_mvtec::decode::load_rgb;
use anomaly_detection::registry;

use crate::CliError;
use crate::run::{CommonArgs, progress_bar};

/// `ad add`.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Model file written by `ad fit` (PatchCore or PaDiM, or a tiled one of them).
    model_file: PathBuf,
    /// Good images: files, folders (their image files, sorted) or quoted glob patterns.
    #[arg(required = true)]
    paths: Vec<String>,
    /// Write the updated model here instead of replacing MODEL_FILE (the file is replaced
    /// atomically either way).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Images per forward pass [default: the model's].
    #[arg(long)]
    batch_size: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Adds the images; every one must decode (an update never skips images silently).
pub fn add(args: &AddArgs) -> Result<(), CliError> {
    let kind = registry::kind_of_file(&args.model_file)?;
    let mut files = Vec::new();
    for item in crate::predict::expand(&args.paths) {
        match item {
            Ok(p) => files.push(p),
            Err((arg, why)) => return Err(CliError::Usage(format!("{arg}: {why}"))),
        }
    }
    let device = crate::run::device(&args.common)?;
    let mut model = registry::load(&args.model_file, &device)?;
    let before = registry::inspect(&args.model_file)?;
    let batch = args.batch_size.unwrap_or(model.batch_size()).max(1);
    let pre = model.preprocessor().clone();
    let bar = progress_bar(files.len(), "adding", !args.common.quiet);
    let t0 = Instant::now();
    let mut sizes = Vec::with_capacity(files.len());
    let batches = files.chunks(batch).map(|chunk| {
        let images = chunk
            .iter()
            .map(|p| load_rgb(p).map_err(|e| format!("{}: {e}", p.display())))
            .collect::<Result<Vec<RgbImage>, String>>()?;
        sizes.extend(images.iter().map(|i| (i.width(), i.height())));
        let b: ImageBatch = pre.batch(&images).map_err(|e| e.to_string())?;
        bar.inc(chunk.len() as u64);
        Ok::<_, String>(b)
    });
    let summary = model.add(batches)?;
    bar.finish_and_clear();
    // The model now knows the new images' sizes too (what `ad predict` checks images against).
    if let Some(t) = model.threshold().cloned() {
        let added = InputSizes::from_sizes(sizes);
        let inputs = match (&t.inputs, &added) {
            (Some(known), Some(added)) => Some(known.merged(added)),
            _ => t.inputs.clone(),
        };
        model.set_threshold(Some(t.with_inputs(inputs)));
    }
    let out = args.out.as_ref().unwrap_or(&args.model_file);
    model.save(out)?;
    let after = registry::inspect(out)?;
    let rows = |h: &serde_json::Value| {
        h["bank_rows"]
            .as_u64()
            .map(|r| format!("memory bank {r} rows"))
            .or_else(|| h["images"].as_u64().map(|n| format!("{n} images")))
            .unwrap_or_default()
    };
    let (was, now) = (rows(&before.header), rows(&after.header));
    println!(
        "added {} good images ({} features) to the {} model in {:.1} s{}",
        summary.images,
        summary.features,
        kind.name,
        t0.elapsed().as_secs_f64(),
        if was.is_empty() {
            String::new()
        } else {
            format!(": {was} -> {now}")
        }
    );
    println!("model saved to {}", out.display());
    if model.threshold().is_some() {
        println!(
            "note: the pass/fail threshold is unchanged; recalibrate it (`ad fit` on all good \
             images) if the new images widen what counts as good"
        );
    }
    Ok(())
}
