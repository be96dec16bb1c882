//! The PaDiM detector: per-position Gaussians fitted on good images, Mahalanobis maps.

use std::time::Instant;

use ad_backbone::Backbone;
use ad_core::postprocess::score_maps;
use ad_core::tensor::read_f32;
use ad_core::{
    AnomalyMap, BoxError, Detector, FitSummary, ImageBatch, Prediction, Preprocessor, Threshold,
};
use burn::tensor::Device;

use crate::PadimError;
use crate::config::{CheckedConfig, PADIM_STRIDES, PadimConfig, default_n_features, default_taps};
use crate::embedding::{align_taps, channel_subset};
use crate::gaussian::{GaussianAccumulator, Gaussians};

/// What fitting produced.
#[derive(Clone, Debug)]
pub(crate) struct Fitted {
    pub(crate) gaussians: Gaussians,
    /// Grid `(h, w)` of the first tap.
    pub(crate) grid: (usize, usize),
    /// Preprocessed image size `(h, w)` the model was fitted on.
    pub(crate) image_size: (usize, usize),
    /// Training images.
    pub(crate) images: usize,
    /// The streaming sums, kept for exact updates (`keep_sums`).
    pub(crate) sums: Option<GaussianAccumulator>,
}

/// PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly
/// Detection and Localization", ICPR 2020 workshops).
///
/// ```no_run
/// use ad_core::{Detector, RgbImage};
/// use ad_padim::{Padim, PadimConfig};
/// use burn::tensor::Device;
///
/// let mut model = Padim::new(&PadimConfig::default(), &Device::default())?;
/// let good: Vec<RgbImage> = vec![/* decoded good parts */];
/// model.fit_images(&good)?;
/// # let image = RgbImage::from_fn(256, 256, |_, _| [0, 0, 0]);
/// let prediction = model.predict_image(&image)?;
/// println!("score {}", prediction.score);
/// model.save("bottle.padim")?;
/// # Ok::<(), ad_padim::PadimError>(())
/// ```
#[derive(Debug)]
pub struct Padim {
    pub(crate) config: CheckedConfig,
    pub(crate) device: Device,
    pub(crate) backbone: Backbone,
    pub(crate) preprocessor: Preprocessor,
    pub(crate) channels: Vec<usize>,
    pub(crate) fitted: Option<Fitted>,
    pub(crate) threshold: Option<Threshold>,
}

impl Padim {
    /// Validates the configuration, builds the backbone on `device` (fetching pretrained
    /// weights if needed) and draws the channel subset from the configured seed.
    pub fn new(config: &PadimConfig, device: &Device) -> Result<Self, PadimError> {
        let config = config.check()?;
        let backbone = config.backbone_config().init(device)?;
        if config.taps == default_taps(config.backbone) {
            let strides = backbone.tap_strides();
            if strides != PADIM_STRIDES {
                return Err(PadimError::InvalidConfig {
                    name: "taps",
                    reason: format!(
                        "default taps {:?} have strides {strides:?}, expected [4, 8, 16]",
                        config.taps
                    ),
                });
            }
        }
        let total: usize = backbone.tap_channels().iter().sum();
        let d = match config.n_features {
            Some(d) if d > total => {
                return Err(PadimError::InvalidConfig {
                    name: "n_features",
                    reason: format!("{d} exceeds the {total} channels of taps {:?}", config.taps),
                });
            }
            Some(d) => d,
            None => default_n_features(config.backbone).min(total),
        };
        let channels = channel_subset(total, d, config.seed);
        let preprocessor = Preprocessor::new(config.preprocess.clone())?;
        Ok(Self {
            config,
            device: device.clone(),
            backbone,
            preprocessor,
            channels,
            fitted: None,
            threshold: None,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &PadimConfig {
        self.config.as_config()
    }

    /// The preprocessing images must go through before [`Detector::predict`].
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// The feature extractor.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The device the backbone runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Kept channels: indices into the concatenated tap channels, ascending.
    pub fn channels(&self) -> &[usize] {
        &self.channels
    }

    /// The fitted Gaussians, once fitted.
    pub fn gaussians(&self) -> Option<&Gaussians> {
        self.fitted.as_ref().map(|f| &f.gaussians)
    }

    /// Feature grid `(h, w)`, once fitted.
    pub fn feature_grid(&self) -> Option<(usize, usize)> {
        self.fitted.as_ref().map(|f| f.grid)
    }

    /// Embeddings of a batch: `([positions][batch][d], (h, w))`, checked finite.
    pub fn embed(&self, batch: &ImageBatch) -> Result<(Vec<f32>, (usize, usize)), PadimError> {
        let x = batch.to_tensor(&self.device); // [b, 3, H, W]
        let (emb, grid) = align_taps(self.backbone.forward(x), &self.channels);
        let emb = read_f32(emb)?;
        if let Some(i) = emb.iter().position(|v| !v.is_finite()) {
            let d = self.channels.len();
            return Err(PadimError::NonFiniteFeature {
                image: (i / d) % batch.len().max(1),
                channel: i % d,
                value: emb[i],
            });
        }
        Ok((emb, grid))
    }

    fn check_batch(&self, batch: &ImageBatch) -> Result<(), PadimError> {
        if let Some(f) = &self.fitted
            && (batch.height(), batch.width()) != f.image_size
        {
            return Err(PadimError::BatchShape {
                got: batch.shape(),
                expected: format!("[_, 3, {}, {}]", f.image_size.0, f.image_size.1),
            });
        }
        Ok(())
    }

    /// Mahalanobis distance of every grid position: `([batch][h * w], (h, w))`.
    pub fn distance_grid(
        &self,
        batch: &ImageBatch,
    ) -> Result<(Vec<f32>, (usize, usize)), PadimError> {
        let fitted = self.fitted.as_ref().ok_or(PadimError::NotFitted)?;
        self.check_batch(batch)?;
        let (emb, grid) = self.embed(batch)?;
        if grid != fitted.grid {
            return Err(PadimError::BatchShape {
                got: batch.shape(),
                expected: format!("a feature grid of {:?}, got {grid:?}", fitted.grid),
            });
        }
        Ok((fitted.gaussians.mahalanobis(&emb, batch.len()), grid))
    }
}

impl Detector for Padim {
    type Error = PadimError;

    fn name(&self) -> &'static str {
        "padim"
    }

    fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, PadimError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let t0 = Instant::now();
        let mut extract = std::time::Duration::ZERO;
        // Sums, feature grid and image size, fixed by the first batch.
        type State = (GaussianAccumulator, (usize, usize), (usize, usize));
        let mut state: Option<State> = None;
        for batch in batches {
            let batch = batch.map_err(|e| PadimError::Input(e.into()))?;
            if batch.is_empty() {
                continue;
            }
            let size = (batch.height(), batch.width());
            let te = Instant::now();
            let (emb, grid) = self.embed(&batch)?;
            extract += te.elapsed();
            let (acc, g, s) = state.get_or_insert_with(|| {
                (
                    GaussianAccumulator::new(grid.0 * grid.1, self.channels.len()),
                    grid,
                    size,
                )
            });
            if *s != size || *g != grid {
                return Err(PadimError::BatchShape {
                    got: batch.shape(),
                    expected: format!("[_, 3, {}, {}] like the first batch", s.0, s.1),
                });
            }
            acc.add(&emb, batch.len());
            log::debug!("fit: {} images", acc.count());
        }
        let Some((acc, grid, image_size)) = state else {
            return Err(PadimError::NoTrainingImages);
        };
        let t1 = Instant::now();
        let gaussians = acc.finish(self.config.regularization)?;
        let build = t1.elapsed();
        let images = acc.count();
        log::info!(
            "PaDiM: {images} images, {} positions x {} channels, Gaussians in {:.2} s",
            acc.positions(),
            acc.dim(),
            build.as_secs_f64()
        );
        self.fitted = Some(Fitted {
            gaussians,
            grid,
            image_size,
            images,
            sums: self.config.keep_sums.then_some(acc),
        });
        Ok(FitSummary {
            images,
            features: images * grid.0 * grid.1,
            memory_rows: grid.0 * grid.1,
            extract_time: extract,
            build_time: t0.elapsed().saturating_sub(extract),
        })
    }

    /// Adds good images exactly: their embeddings join the kept streaming sums and the
    /// Gaussians are solved again, as a fit on all images in the same order would. Needs a
    /// model fitted with `keep_sums` (the default). No images: the model is left unchanged.
    fn add<I, E>(&mut self, batches: I) -> Result<FitSummary, PadimError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let t0 = Instant::now();
        let fitted = self.fitted.as_ref().ok_or(PadimError::NotFitted)?;
        let Some(sums) = fitted.sums.as_ref() else {
            return Err(PadimError::InvalidConfig {
                name: "keep_sums",
                reason: "this model was fitted (or saved) without its streaming sums: fit it \
                         again with keep_sums = true to add images"
                    .into(),
            });
        };
        let grid = fitted.grid;
        let mut acc: Option<GaussianAccumulator> = None;
        let mut extract = std::time::Duration::ZERO;
        for batch in batches {
            let batch = batch.map_err(|e| PadimError::Input(e.into()))?;
            if batch.is_empty() {
                continue;
            }
            self.check_batch(&batch)?;
            let te = Instant::now();
            let (emb, _) = self.embed(&batch)?;
            extract += te.elapsed();
            acc.get_or_insert_with(|| sums.clone())
                .add(&emb, batch.len());
        }
        let Some(acc) = acc else {
            return Ok(FitSummary::default());
        };
        let added = acc.count() - sums.count();
        let gaussians = acc.finish(self.config.regularization)?;
        let images = acc.count();
        if let Some(f) = self.fitted.as_mut() {
            f.gaussians = gaussians;
            f.images = images;
            f.sums = Some(acc);
        }
        Ok(FitSummary {
            images: added,
            features: added * grid.0 * grid.1,
            memory_rows: grid.0 * grid.1,
            extract_time: extract,
            build_time: t0.elapsed().saturating_sub(extract),
        })
    }

    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, PadimError> {
        let (dist, grid) = self.distance_grid(batch)?;
        let (h, w) = (batch.height(), batch.width());
        let maps = score_maps(
            &dist,
            grid,
            (h, w),
            self.config.upsample,
            self.config.blur_sigma,
        );
        maps.into_iter()
            .map(|m| {
                let map = AnomalyMap::new(w, h, m)?;
                let score = map.max();
                Ok(Prediction {
                    score,
                    map,
                    is_anomalous: self.threshold.as_ref().map(|t| t.is_anomalous(score)),
                })
            })
            .collect()
    }

    fn save(&self, path: &std::path::Path) -> Result<(), PadimError> {
        Padim::save(self, path)
    }

    fn threshold(&self) -> Option<&Threshold> {
        self.threshold.as_ref()
    }

    fn set_threshold(&mut self, threshold: Option<Threshold>) {
        self.threshold = threshold;
    }
}
