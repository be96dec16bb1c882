//! A 4000 x 3000 camera image scored tile by tile within a stated memory budget.
//!
//! Good parts and one defective part are generated at 4000 x 4000 and cropped to 4000 x 3000.
//! The first run fits a tiled PatchCore (256 px tiles over the native-resolution image, the
//! streaming coreset under `--budget-mib`) and saves it; a second process loads the model and
//! scores the defective image, so that its peak memory (`VmHWM`) is the scoring's alone. It
//! prints the score, the time, whether the map's maximum falls on the defect, and the peak
//! against the budget. `--single-pass` does the same without tiling (the backbone on the whole
//! 12-megapixel image) for comparison. `tools/run_large_image.sh` runs all four steps.
//!
//! ```text
//! cargo run --release --example large_image -- fit   --model big.tiled
//! cargo run --release --example large_image -- score --model big.tiled --budget-mib 1024
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ad_core::tiling::TilingConfig;
use ad_core::{Detector, ImageBatch, Mask, RgbImage};
use anomaly_detection::patchcore::PatchcoreConfig;
use anomaly_detection::pipeline::peak_memory_mb;
use anomaly_detection::registry::{self, DetectorConfig, TiledConfig};
use clap::{Parser, ValueEnum};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Step {
    /// Fit on generated good images and save the model.
    Fit,
    /// Load the model and score one generated defective image.
    Score,
}

#[derive(Parser, Debug)]
struct Args {
    step: Step,
    /// Model file written by `fit`, read by `score`.
    #[arg(long)]
    model: PathBuf,
    /// Image width and height.
    #[arg(long, default_value_t = 4000)]
    width: usize,
    #[arg(long, default_value_t = 3000)]
    height: usize,
    /// Tile side and stride in pixels.
    #[arg(long, default_value_t = 256)]
    tile: usize,
    #[arg(long, default_value_t = 256)]
    stride: usize,
    /// Good training images.
    #[arg(long, default_value_t = 4)]
    train: usize,
    /// Memory budget: the streaming coreset's while fitting, the stated limit of scoring.
    #[arg(long, default_value_t = 1024)]
    budget_mib: usize,
    /// No tiling: the detector runs on the whole image.
    #[arg(long)]
    single_pass: bool,
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

/// A generated part cropped to `width x height` (and its mask).
fn part(
    args: &Args,
    seed: u64,
    defect: Option<&str>,
) -> Result<(RgbImage, Mask), Box<dyn std::error::Error>> {
    let side = args.width.max(args.height);
    let (img, mask) = anomaly_detection::mvtec::render_part(side, seed, defect)?;
    let (x0, y0) = ((side - args.width) / 2, (side - args.height) / 2);
    let raw = img.as_raw();
    let mut rgb = Vec::with_capacity(args.width * args.height * 3);
    for y in y0..y0 + args.height {
        rgb.extend_from_slice(&raw[(y * side + x0) * 3..(y * side + x0 + args.width) * 3]);
    }
    let m = mask.crop(x0, y0, args.width, args.height)?;
    Ok((RgbImage::new(args.width, args.height, rgb)?, m))
}

/// The defective image and its mask, next to the model file.
fn files(args: &Args) -> (PathBuf, PathBuf) {
    (
        args.model.with_extension("defective.png"),
        args.model.with_extension("defective_mask.png"),
    )
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = burn::tensor::Device::flex();
    let t0 = Instant::now();
    match args.step {
        Step::Fit => {
            let mut patchcore = PatchcoreConfig {
                fit_budget_mib: Some(args.budget_mib / 2),
                batch_size: 8,
                ..PatchcoreConfig::default()
            };
            let size = (args.height, args.width);
            let config = if args.single_pass {
                patchcore.preprocess = patchcore.preprocess.with_size(size.0, size.1);
                patchcore.batch_size = 1;
                DetectorConfig::Patchcore(patchcore)
            } else {
                let mut tiled = TiledConfig::wrap(
                    DetectorConfig::Patchcore(patchcore),
                    TilingConfig {
                        tile: (args.tile, args.tile),
                        stride: Some((args.stride, args.stride)),
                        ensemble: false,
                    },
                );
                tiled.preprocess = tiled.preprocess.with_size(size.0, size.1);
                DetectorConfig::Tiled(tiled)
            };
            config.check()?;
            let mut model = config.build(&device)?;
            let pre = model.preprocessor().clone();
            let batches = (0..args.train).map(|i| {
                let (img, _) = part(args, 0xB16 ^ i as u64, None).map_err(|e| e.to_string())?;
                pre.batch(&[img]).map_err(|e| e.to_string())
            });
            let summary = model.fit(batches)?;
            model.save(&args.model)?;
            // The part to score, written as a camera would: the scoring process only decodes it.
            let (img, mask) = part(args, 0xDEF, Some("spot"))?;
            let (png, mask_png) = files(args);
            image::RgbImage::from_raw(args.width as u32, args.height as u32, img.into_raw())
                .ok_or("image buffer")?
                .save(&png)?;
            let m: Vec<u8> = mask
                .as_slice()
                .iter()
                .map(|&b| if b { 255 } else { 0 })
                .collect();
            image::GrayImage::from_raw(args.width as u32, args.height as u32, m)
                .ok_or("mask buffer")?
                .save(&mask_png)?;
            println!(
                "fit: {} images of {}x{}, {} features -> {} rows, {:.1} s, peak {:.0} MiB, model {}",
                summary.images,
                args.width,
                args.height,
                summary.features,
                summary.memory_rows,
                t0.elapsed().as_secs_f64(),
                peak_memory_mb().unwrap_or(0.0),
                args.model.display()
            );
        }
        Step::Score => {
            let model = registry::load(&args.model, &device)?;
            let (png, mask_png) = files(args);
            let img = anomaly_detection::mvtec::decode::load_rgb(&png)?;
            let mask = anomaly_detection::mvtec::decode::load_mask(&mask_png)?;
            let load_peak = peak_memory_mb().unwrap_or(0.0);
            let t1 = Instant::now();
            let batch: ImageBatch = model.preprocessor().batch(&[img])?;
            let p = model.predict(&batch)?.pop().ok_or("no prediction")?;
            let seconds = t1.elapsed().as_secs_f64();
            let (w, _) = (p.map.width(), p.map.height());
            let (arg, _) = p
                .map
                .as_slice()
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            let on_defect = mask.as_slice()[arg];
            let peak = peak_memory_mb().unwrap_or(0.0);
            println!(
                "score: {}x{} image, {} in {:.1} s, score {:.3}, map max at ({}, {}) {} the defect \
                 ({} px), peak {:.0} MiB (after loading {:.0}), budget {} MiB: {}",
                args.width,
                args.height,
                if args.single_pass {
                    "single pass"
                } else {
                    "tiled"
                },
                seconds,
                p.score,
                arg % w,
                arg / w,
                if on_defect { "on" } else { "off" },
                mask.count(),
                peak,
                load_peak,
                args.budget_mib,
                if peak <= args.budget_mib as f64 {
                    "within"
                } else {
                    "OVER"
                }
            );
            let _ = t0;
        }
    }
    Ok(())
}
