//! The PatchCore detector: fit a coreset memory bank on good images, score new ones.

use std::time::Instant;

use ad_backbone::Backbone;
use ad_core::postprocess::score_maps;
use ad_core::tensor::read_f32;
use ad_core::{
    AnomalyMap, BoxError, Detector, FitSummary, ImageBatch, Prediction, Preprocessor, Threshold,
};
use ad_memory_bank::{
    BruteForce, BurnKnn, CoresetParams, CoresetSampler, CoresetSize, KnnIndex, KnnResult,
    MemoryBank,
};
use burn::tensor::Device;

use crate::PatchcoreError;
use crate::config::{CheckedConfig, KnnBackend, PatchcoreConfig};
use ad_backbone::patch_embedding;

/// Patch features of a batch: `[batch * h * w, d]` rows, the grid `(h, w)` and `d`.
pub type Embedding = (Vec<f32>, (usize, usize), usize);

/// Nearest-neighbour index over the memory bank, on the host or on the model's device.
#[derive(Debug)]
pub(crate) enum Index {
    Cpu(BruteForce),
    Device(Box<BurnKnn>),
}

impl Index {
    pub(crate) fn build(bank: &MemoryBank, backend: KnnBackend, device: &Device) -> Self {
        match backend {
            KnnBackend::Cpu => Index::Cpu(BruteForce::new(bank.clone())),
            KnnBackend::Device => Index::Device(Box::new(BurnKnn::on_device(bank, device))),
        }
    }

    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult, PatchcoreError> {
        Ok(match self {
            Index::Cpu(i) => i.search(queries, nq, k)?,
            Index::Device(i) => i.search(queries, nq, k)?,
        })
    }
}

/// What fitting produced.
#[derive(Debug)]
pub(crate) struct Fitted {
    pub(crate) bank: MemoryBank,
    pub(crate) index: Index,
    /// Patch grid `(h, w)` of the first tap.
    pub(crate) grid: (usize, usize),
    /// Preprocessed image size `(h, w)` the model was fitted on.
    pub(crate) image_size: (usize, usize),
    /// Coverage radius of the coreset in the projected space.
    pub(crate) coverage_radius: f32,
}

/// Patch-level results for one batch, before maps are built.
#[derive(Clone, Debug)]
pub struct PatchScores {
    /// `[batch, h * w]` distances of each patch to its nearest memory sample.
    pub scores: Vec<f32>,
    /// Image scores after the Eq. 7 reweighting.
    pub image_scores: Vec<f32>,
    /// Patch grid `(h, w)`.
    pub grid: (usize, usize),
}

/// PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).
///
/// ```no_run
/// use ad_core::{Detector, RgbImage};
/// use ad_patchcore::{PatchCore, PatchcoreConfig};
/// use burn::tensor::Device;
///
/// let device = Device::default();
/// let mut model = PatchCore::new(&PatchcoreConfig::default(), &device)?;
/// let good: Vec<RgbImage> = vec![/* decoded good parts */];
/// model.fit_images(&good)?;
/// # let image = RgbImage::from_fn(256, 256, |_, _| [0, 0, 0]);
/// let prediction = model.predict_image(&image)?;
/// println!("score {}", prediction.score);
/// model.save("bottle.patchcore")?;
/// # Ok::<(), ad_patchcore::PatchcoreError>(())
/// ```
#[derive(Debug)]
pub struct PatchCore {
    pub(crate) config: CheckedConfig,
    pub(crate) device: Device,
    pub(crate) backbone: Backbone,
    pub(crate) preprocessor: Preprocessor,
    pub(crate) fitted: Option<Fitted>,
    pub(crate) threshold: Option<Threshold>,
}

impl PatchCore {
    /// Validates the configuration and builds the backbone on `device` (fetching pretrained
    /// weights if needed).
    pub fn new(config: &PatchcoreConfig, device: &Device) -> Result<Self, PatchcoreError> {
        let config = config.check()?;
        let backbone = config.backbone_config().init(device)?;
        let preprocessor =
            Preprocessor::new(config.preprocess.clone()).map_err(PatchcoreError::Core)?;
        Ok(Self {
            config,
            device: device.clone(),
            backbone,
            preprocessor,
            fitted: None,
            threshold: None,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &PatchcoreConfig {
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

    /// The memory bank, once fitted.
    pub fn memory_bank(&self) -> Option<&MemoryBank> {
        self.fitted.as_ref().map(|f| &f.bank)
    }

    /// Coreset coverage radius (projected space), once fitted.
    pub fn coverage_radius(&self) -> Option<f32> {
        self.fitted.as_ref().map(|f| f.coverage_radius)
    }

    /// Patch grid `(h, w)`, once fitted.
    pub fn feature_grid(&self) -> Option<(usize, usize)> {
        self.fitted.as_ref().map(|f| f.grid)
    }

    /// Locally aware patch features of a batch: `([batch * h * w, d] rows, (h, w), d)`.
    pub fn embed(&self, batch: &ImageBatch) -> Result<Embedding, PatchcoreError> {
        let x = batch.to_tensor(&self.device); // [b, 3, H, W]
        let taps = self.backbone.forward(x);
        let grid = {
            let [_, _, h, w] = taps[0].dims();
            (h, w)
        };
        let emb = patch_embedding(taps, self.config.patch_size, self.config.target_dim);
        let [_, d] = emb.dims();
        Ok((read_f32(emb)?, grid, d))
    }

    fn check_batch(&self, batch: &ImageBatch) -> Result<(), PatchcoreError> {
        if let Some(f) = &self.fitted
            && (batch.height(), batch.width()) != f.image_size
        {
            return Err(PatchcoreError::BatchShape {
                got: batch.shape(),
                expected: format!("[_, 3, {}, {}]", f.image_size.0, f.image_size.1),
            });
        }
        Ok(())
    }

    /// Patch scores and reweighted image scores (Eq. 7) of a batch, without building maps.
    pub fn patch_scores(&self, batch: &ImageBatch) -> Result<PatchScores, PatchcoreError> {
        let fitted = self.fitted.as_ref().ok_or(PatchcoreError::NotFitted)?;
        self.check_batch(batch)?;
        let t0 = Instant::now();
        let (rows, grid, d) = self.embed(batch)?;
        let t_embed = t0.elapsed();
        let per = grid.0 * grid.1;
        let b = batch.len();
        let nn = fitted.index.search(&rows, b * per, 1)?;
        log::debug!(
            "predict {b} images: features {:.1} ms, 1-NN of {} patches in a {}-row bank {:.1} ms",
            t_embed.as_secs_f64() * 1e3,
            b * per,
            fitted.bank.len(),
            (t0.elapsed() - t_embed).as_secs_f64() * 1e3
        );
        let scores = nn.distances;
        // m^test,* per image: the patch farthest from the memory bank (first on ties).
        let mut star = Vec::with_capacity(b);
        for i in 0..b {
            let s = &scores[i * per..(i + 1) * per];
            let mut best = 0;
            for (j, &v) in s.iter().enumerate() {
                if v > s[best] {
                    best = j;
                }
            }
            star.push(i * per + best);
        }
        let k = self.config.num_neighbors.min(fitted.bank.len());
        let image_scores = if k <= 1 {
            star.iter().map(|&p| scores[p]).collect()
        } else {
            // N_b(m*): the b nearest memory samples of m*, the nearest memory sample of m^test,*.
            let m_star: Vec<f32> = star
                .iter()
                .flat_map(|&p| fitted.bank.row(nn.indices[p] as usize).iter().copied())
                .collect();
            let support = fitted.index.search(&m_star, b, k)?;
            star.iter()
                .enumerate()
                .map(|(i, &p)| {
                    let q = &rows[p * d..(p + 1) * d];
                    let dists: Vec<f32> = support
                        .row_indices(i)
                        .iter()
                        .map(|&m| {
                            let row = fitted.bank.row(m as usize);
                            q.iter()
                                .zip(row)
                                .map(|(a, b)| (a - b) * (a - b))
                                .sum::<f32>()
                                .sqrt()
                        })
                        .collect();
                    reweight(scores[p], &dists)
                })
                .collect()
        };
        Ok(PatchScores {
            scores,
            image_scores,
            grid,
        })
    }
}

/// Eq. 7 as anomalib computes it: `s = (1 - softmax(d)[0]) * s*`, where `d` are the distances of
/// `m^test,*` to `N_b(m*)` (nearest first, so `d[0]` is the distance to `m*` itself).
pub fn reweight(s_star: f32, dists: &[f32]) -> f32 {
    if dists.is_empty() {
        return s_star;
    }
    let max = dists.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = dists.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let total: f64 = exps.iter().sum();
    let w = 1.0 - exps[0] / total;
    (w * s_star as f64) as f32
}

impl Detector for PatchCore {
    type Error = PatchcoreError;

    fn name(&self) -> &'static str {
        "patchcore"
    }

    fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, PatchcoreError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let t0 = Instant::now();
        let mut features: Vec<f32> = Vec::new();
        // (patch grid, feature dim, image size), fixed by the first batch.
        type Dims = ((usize, usize), usize, (usize, usize));
        let mut dims: Option<Dims> = None;
        let mut images = 0;
        for batch in batches {
            let batch = batch.map_err(|e| PatchcoreError::Input(e.into()))?;
            let size = (batch.height(), batch.width());
            if let Some((_, _, s)) = dims
                && s != size
            {
                return Err(PatchcoreError::BatchShape {
                    got: batch.shape(),
                    expected: format!("[_, 3, {}, {}] like the first batch", s.0, s.1),
                });
            }
            let (rows, grid, d) = self.embed(&batch)?;
            dims.get_or_insert((grid, d, size));
            features.extend_from_slice(&rows);
            images += batch.len();
            log::debug!("fit: {images} images, {} patches", features.len() / d);
        }
        let Some((grid, d, image_size)) = dims else {
            return Err(PatchcoreError::NoTrainingImages);
        };
        let n = features.len() / d;
        let extract_time = t0.elapsed();
        let t1 = Instant::now();
        let count = match self.config.coreset.size {
            CoresetSize::Ratio(r) => ((n as f64 * r) as usize).clamp(1, n),
            CoresetSize::Count(c) => c.clamp(1, n),
        };
        let (bank, coverage_radius) = if count == n {
            (MemoryBank::from_rows(features, d)?, 0.0)
        } else {
            let sampler = CoresetSampler::new(CoresetParams {
                size: CoresetSize::Count(count),
                ..self.config.coreset.clone()
            })?;
            let selection = sampler.select(&features, n, d)?;
            let rows = selection.gather(&features, d);
            (MemoryBank::from_rows(rows, d)?, selection.coverage_radius)
        };
        log::info!(
            "memory bank: {} of {n} patches ({d}-d), coverage radius {coverage_radius:.4}",
            bank.len()
        );
        let index = Index::build(&bank, self.config.knn, &self.device);
        let memory_rows = bank.len();
        self.fitted = Some(Fitted {
            bank,
            index,
            grid,
            image_size,
            coverage_radius,
        });
        Ok(FitSummary {
            images,
            features: n,
            memory_rows,
            extract_time,
            build_time: t1.elapsed(),
        })
    }

    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, PatchcoreError> {
        let ps = self.patch_scores(batch)?;
        let (h, w) = (batch.height(), batch.width());
        let maps = score_maps(
            &ps.scores,
            ps.grid,
            (h, w),
            self.config.upsample,
            self.config.blur_sigma,
        );
        maps.into_iter()
            .zip(&ps.image_scores)
            .map(|(m, &score)| {
                Ok(Prediction {
                    score,
                    map: AnomalyMap::new(w, h, m)?,
                    is_anomalous: self.threshold.as_ref().map(|t| t.is_anomalous(score)),
                })
            })
            .collect()
    }

    fn save(&self, path: &std::path::Path) -> Result<(), PatchcoreError> {
        PatchCore::save(self, path)
    }

    fn threshold(&self) -> Option<&Threshold> {
        self.threshold.as_ref()
    }

    fn set_threshold(&mut self, threshold: Option<Threshold>) {
        self.threshold = threshold;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reweighting_follows_anomalib() {
        // Equal distances to all b neighbours: weight 1 - 1/b.
        let s = reweight(2.0, &[1.0, 1.0, 1.0, 1.0]);
        assert!((s - 2.0 * 0.75).abs() < 1e-6);
        // m* much closer than the other support samples: softmax puts little mass on it,
        // the weight approaches 1 (the patch is isolated, keep the score).
        let s = reweight(2.0, &[0.0, 10.0, 10.0]);
        assert!(s > 1.999);
        assert_eq!(reweight(3.0, &[]), 3.0);
    }
}
