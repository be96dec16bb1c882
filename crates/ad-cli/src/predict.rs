//! `ad predict`: score images with a saved model, one JSON line per image, streamed.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ad_core::{Detector, DynDetector, RgbImage, Threshold};
use ad_metrics::viz::{MapScale, OverlayInput, OverlayStyle, save_overlay};
use ad_mvtec::decode::{is_image_file, load_rgb};
use anomaly_detection::registry;
use serde::Serialize;

use crate::CliError;
use crate::run::CommonArgs;

/// `ad predict`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct PredictArgs {
    /// Model file written by `ad fit` (any detector, recognised by its header).
    model_file: PathBuf,
    /// Images: files, folders (their image files, sorted; hidden files skipped) or glob
    /// patterns (quote them: 'line/*/*.png').
    paths: Vec<String>,
    /// Then keep scoring image files as they appear in this folder (polling) until
    /// interrupted, or until --max-images.
    #[arg(long, value_name = "DIR")]
    watch: Option<PathBuf>,
    /// Polling interval of --watch, milliseconds.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// Stop after this many images (0 = no limit).
    #[arg(long, default_value_t = 0)]
    max_images: usize,
    /// Write each anomaly map as a 16-bit grayscale PNG `<DIR>/<folder>_<stem>.png`, at the image's own
    /// resolution (the map's grid when the model crops), the value being the normalised score
    /// (0.5 at the threshold; without a threshold, the map's own min..max).
    #[arg(long, value_name = "DIR")]
    maps: Option<PathBuf>,
    /// Write an overlay (image | heat map, blue contour where the map reaches the threshold)
    /// `<DIR>/<folder>_<stem>.png` at the image's own resolution.
    #[arg(long, value_name = "DIR")]
    overlays: Option<PathBuf>,
    /// Use this raw score threshold instead of the one stored in the model.
    #[arg(long)]
    threshold: Option<f32>,
    /// Images per forward pass [default: the model's].
    #[arg(long)]
    batch_size: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

/// One output line.
#[derive(Serialize)]
struct Line<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    normalized: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anomalous: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overlay: Option<String>,
    /// Why the image is unlike the images the model was fitted on (size, aspect ratio).
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .map(|n| n.to_string_lossy().starts_with('.'))
        .unwrap_or(false)
}

/// Image files of a folder, sorted, hidden files (including macOS `._*`) skipped.
fn folder_images(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image_file(p) && !is_hidden(p))
        .collect();
    v.sort();
    Ok(v)
}

/// Expands the arguments into files (in order) and per-argument errors.
pub(crate) fn expand(args: &[String]) -> Vec<Result<PathBuf, (String, String)>> {
    let mut out = Vec::new();
    for a in args {
        if has_glob(a) {
            match glob::glob(a) {
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths
                        .filter_map(|p| p.ok())
                        .filter(|p| p.is_file() && !is_hidden(p))
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        out.push(Err((a.clone(), "pattern matches no file".into())));
                    }
                    out.extend(found.into_iter().map(Ok));
                }
                Err(e) => out.push(Err((a.clone(), format!("bad pattern: {e}")))),
            }
            continue;
        }
        let p = PathBuf::from(a);
        if p.is_dir() {
            match folder_images(&p) {
                Ok(files) if files.is_empty() => {
                    out.push(Err((a.clone(), "folder holds no image file".into())))
                }
                Ok(files) => out.extend(files.into_iter().map(Ok)),
                Err(e) => out.push(Err((a.clone(), e))),
            }
        } else {
            out.push(Ok(p));
        }
    }
    out
}

struct Scorer<'a> {
    model: &'a dyn DynDetector,
    /// Output file names already used (maps and overlays of images with equal stems in
    /// different folders must not overwrite each other).
    names: HashSet<String>,
    /// The decision threshold: the model's, or --threshold's (the model's own keeps the
    /// record of the images it was fitted on, which `Detector::input_warning` checks).
    threshold: Option<Threshold>,
    maps: Option<PathBuf>,
    overlays: Option<PathBuf>,
    crops: bool,
    failed: usize,
    done: usize,
    /// Images scored with a warning, and the first of them.
    warned: usize,
    first_warned: Option<String>,
}

impl Scorer<'_> {
    fn emit(&mut self, line: &Line<'_>) -> Result<(), CliError> {
        let s = serde_json::to_string(line)
            .map_err(|e| CliError::Usage(format!("cannot write JSON: {e}")))?;
        let mut stdout = std::io::stdout().lock();
        if let Err(source) = writeln!(stdout, "{s}").and_then(|_| stdout.flush()) {
            if source.kind() == std::io::ErrorKind::BrokenPipe {
                // The reader went away (`ad predict ... | head`): stop quietly. On Unix the
                // default SIGPIPE action (`main_from`) ends the process before this; elsewhere
                // the write fails with this error.
                std::process::exit(141);
            }
            return Err(CliError::Io {
                path: PathBuf::from("<stdout>"),
                source,
            });
        }
        if line.error.is_some() {
            self.failed += 1;
        }
        if line.warning.is_some() {
            self.warned += 1;
            self.first_warned
                .get_or_insert_with(|| line.path.to_string());
        }
        self.done += 1;
        Ok(())
    }

    fn error(&mut self, path: &str, error: String) -> Result<(), CliError> {
        self.emit(&Line {
            path,
            score: None,
            normalized: None,
            anomalous: None,
            map: None,
            overlay: None,
            warning: None,
            error: Some(error),
        })
    }

    /// Scores a batch of files; decoding errors are reported on their line.
    fn batch(&mut self, files: &[PathBuf]) -> Result<(), CliError> {
        let decoded: Vec<(PathBuf, Result<RgbImage, String>)> = files
            .iter()
            .map(|p| (p.clone(), load_rgb(p).map_err(|e| e.to_string())))
            .collect();
        let good: Vec<&RgbImage> = decoded
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect();
        let mut predictions = if good.is_empty() {
            Vec::new()
        } else {
            let images: Vec<RgbImage> = good.iter().map(|&i| i.clone()).collect();
            let batch = self
                .model
                .dyn_preprocessor()
                .batch(&images)
                .map_err(anomaly_detection::Error::from)?;
            self.model.dyn_predict(&batch)?
        }
        .into_iter();
        for (path, image) in &decoded {
            let shown = path.display().to_string();
            let image = match image {
                Ok(i) => i,
                Err(e) => {
                    self.error(&shown, e.clone())?;
                    continue;
                }
            };
            let Some(p) = predictions.next() else {
                self.error(&shown, "the detector returned no prediction".into())?;
                continue;
            };
            match self.outputs(path, image, &p) {
                Ok((map, overlay)) => {
                    let t = self.threshold.as_ref();
                    self.emit(&Line {
                        path: &shown,
                        score: Some(p.score),
                        normalized: t.map(|t| t.normalize(p.score)),
                        anomalous: t.map(|t| t.is_anomalous(p.score)),
                        map,
                        overlay,
                        warning: self.model.input_warning(image),
                        error: None,
                    })?;
                }
                Err(e) => self.error(&shown, e)?,
            }
        }
        Ok(())
    }

    /// One stderr line for the images whose lines carry a warning (the lines say why).
    fn say_warnings(&self) {
        let fitted = self.model.threshold().and_then(|t| t.inputs.as_ref());
        if let (Some(first), Some(fitted)) = (&self.first_warned, fitted) {
            eprintln!(
                "warning: {} of {} scored images are unlike the images the model was fitted on \
                 ({fitted}; first: {first}): their scores may not hold; see each line's \"warning\"",
                self.warned,
                self.done - self.failed
            );
        }
    }

    /// Writes the requested map and overlay at the image's resolution.
    fn outputs(
        &mut self,
        path: &Path,
        image: &RgbImage,
        p: &ad_core::Prediction,
    ) -> Result<(Option<String>, Option<String>), String> {
        if self.maps.is_none() && self.overlays.is_none() {
            return Ok((None, None));
        }
        let (mw, mh) = (p.map.width(), p.map.height());
        let (w, h) = if self.crops {
            (mw, mh)
        } else {
            (image.width(), image.height())
        };
        let map = p.map.resized(w, h).map_err(|e| e.to_string())?.into_vec();
        let norm: Vec<f32> = match &self.threshold {
            Some(t) => map.iter().map(|&v| t.normalize(v)).collect(),
            None => {
                let (lo, hi) = map
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                        (a.min(v), b.max(v))
                    });
                map.iter()
                    .map(|&v| (v - lo) / (hi - lo).max(1e-12))
                    .collect()
            }
        };
        // `<folder>_<stem>`, made unique within the run.
        let part = |p: Option<&std::ffi::OsStr>| p.map(|s| s.to_string_lossy().into_owned());
        let base = match (
            part(path.parent().and_then(|p| p.file_name())),
            part(path.file_stem()),
        ) {
            (Some(dir), Some(stem)) => format!("{dir}_{stem}"),
            (None, Some(stem)) => stem,
            _ => "image".into(),
        };
        let mut stem = base.clone();
        let mut n = 1;
        while !self.names.insert(stem.clone()) {
            n += 1;
            stem = format!("{base}_{n}");
        }
        let mut written = (None, None);
        if let Some(dir) = &self.maps {
            let out = dir.join(format!("{stem}.png"));
            let pixels: Vec<u16> = norm
                .iter()
                .map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
                .collect();
            let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(
                w as u32, h as u32, pixels,
            )
            .ok_or("map buffer size")?;
            img.save_with_format(&out, image::ImageFormat::Png)
                .map_err(|e| format!("{}: {e}", out.display()))?;
            written.0 = Some(out.display().to_string());
        }
        if let Some(dir) = &self.overlays {
            let out = dir.join(format!("{stem}.png"));
            let pixels: Vec<u8> = if (w, h) == (image.width(), image.height()) {
                image.as_raw().to_vec()
            } else {
                ad_metrics::viz::resize_rgb(image.as_raw(), (image.width(), image.height()), (w, h))
                    .map_err(|e| e.to_string())?
            };
            let pred: Option<Vec<bool>> = self
                .threshold
                .as_ref()
                .map(|_| norm.iter().map(|&v| v >= 0.5).collect());
            let input = OverlayInput {
                image: &pixels,
                map: &norm,
                gt_mask: None,
                pred_mask: pred.as_deref(),
                width: w,
                height: h,
            };
            let style = OverlayStyle {
                scale: MapScale::Fixed { min: 0.0, max: 1.0 },
                ..OverlayStyle::default()
            };
            save_overlay(&out, &input, &style).map_err(|e| e.to_string())?;
            written.1 = Some(out.display().to_string());
        }
        Ok(written)
    }
}

fn create_dir(dir: &Option<PathBuf>) -> Result<(), CliError> {
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|source| CliError::Io {
            path: d.clone(),
            source,
        })?;
    }
    Ok(())
}

/// `ad predict`.
pub fn predict(args: &PredictArgs) -> Result<(), CliError> {
    if args.paths.is_empty() && args.watch.is_none() {
        return Err(CliError::Usage(
            "give images (files, folders, patterns) or --watch DIR".into(),
        ));
    }
    let device = anomaly_detection::pipeline::device_from_name(&args.common.device)?;
    let model = registry::load(&args.model_file, &device)?;
    let threshold = match args.threshold {
        Some(v) => Some(Threshold::manual(v).map_err(anomaly_detection::Error::from)?),
        None => model.threshold().cloned(),
    };
    create_dir(&args.maps)?;
    create_dir(&args.overlays)?;
    let batch_size = args.batch_size.unwrap_or(model.batch_size()).max(1);
    let mut scorer = Scorer {
        model: model.as_ref(),
        names: HashSet::new(),
        threshold,
        maps: args.maps.clone(),
        overlays: args.overlays.clone(),
        crops: model.preprocessor().config().center_crop.is_some(),
        failed: 0,
        done: 0,
        warned: 0,
        first_warned: None,
    };
    let limit = |n: usize| args.max_images > 0 && n >= args.max_images;
    let mut pending: Vec<PathBuf> = Vec::new();
    for item in expand(&args.paths) {
        if limit(scorer.done + pending.len()) {
            break;
        }
        match item {
            Ok(p) => pending.push(p),
            Err((arg, e)) => {
                scorer.batch(&std::mem::take(&mut pending))?;
                scorer.error(&arg, e)?;
            }
        }
        if pending.len() >= batch_size {
            scorer.batch(&std::mem::take(&mut pending))?;
        }
    }
    scorer.batch(&pending)?;
    if let Some(dir) = &args.watch {
        watch(&mut scorer, dir, args, batch_size)?;
    }
    scorer.say_warnings();
    match scorer.failed {
        0 => Ok(()),
        n => Err(CliError::ImagesFailed(n)),
    }
}

/// Scores files as they appear in `dir`; a file is scored once its size is stable across two
/// polls (so half-written files are not read).
fn watch(
    scorer: &mut Scorer<'_>,
    dir: &Path,
    args: &PredictArgs,
    batch_size: usize,
) -> Result<(), CliError> {
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut sizes: std::collections::HashMap<PathBuf, u64> = Default::default();
    loop {
        let files = folder_images(dir)
            .map_err(|e| CliError::Usage(format!("--watch {}: {e}", dir.display())))?;
        let mut ready = Vec::new();
        for f in files {
            if seen.contains(&f) {
                continue;
            }
            let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            if sizes.insert(f.clone(), size) == Some(size) && size > 0 {
                seen.insert(f.clone());
                sizes.remove(&f);
                ready.push(f);
            }
        }
        for chunk in ready.chunks(batch_size) {
            let room = if args.max_images > 0 {
                args.max_images.saturating_sub(scorer.done)
            } else {
                usize::MAX
            };
            scorer.batch(&chunk[..chunk.len().min(room)])?;
            if args.max_images > 0 && scorer.done >= args.max_images {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms.max(10)));
    }
}
