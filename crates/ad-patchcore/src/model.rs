//! The PatchCore detector: fit a coreset memory bank on good images, score new ones.

use std::time::Instant;

use ad_backbone::Backbone;
use ad_core::postprocess::score_maps;
use ad_core::tensor::{read_f32, read_i64};
use ad_core::{
    AnomalyMap, BoxError, Detector, FitSummary, ImageBatch, Prediction, Preprocessor, Threshold,
};
use ad_memory_bank::{
    BruteForce, BurnKnn, CoresetParams, CoresetSampler, CoresetSize, KnnIndex, KnnResult,
    MemoryBank, MemoryBankError, ProjectionKind,
};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::PatchcoreError;
use crate::config::{BankAugment, CheckedConfig, KnnBackend, PatchcoreConfig};
use ad_backbone::patch_embedding;

/// Patch features of a batch: `[batch * h * w, d]` rows, the grid `(h, w)` and `d`.
pub type Embedding = (Vec<f32>, (usize, usize), usize);

/// Nearest-neighbour index over the memory bank, on the host or on the model's device.
#[derive(Debug)]
pub(crate) enum Index {
    Cpu(Box<BruteForce>),
    Device(Box<BurnKnn>),
}

impl Index {
    pub(crate) fn build(bank: &MemoryBank, backend: KnnBackend, device: &Device) -> Self {
        match backend.resolve(device) {
            KnnBackend::Device => Index::Device(Box::new(BurnKnn::on_device(bank, device))),
            _ => {
                let index = BruteForce::new(bank.clone());
                // The pruned search's bounds at fit / load time, not in the first prediction.
                index.prepare();
                Index::Cpu(Box::new(index))
            }
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
    /// Patch features the bank was selected from (fit and every add; 0 when unknown, in
    /// files written before it was recorded).
    pub(crate) patches_seen: usize,
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
        let (emb, grid) = self.embed_on_device(batch);
        let [_, d] = emb.dims();
        Ok((read_f32(emb)?, grid, d))
    }

    /// The bank's input for a batch of good images: the patch features of the images and of
    /// their copies under [`PatchcoreConfig::augment`](crate::PatchcoreConfig::augment),
    /// concatenated (`[copies * batch * h * w, d]` rows), the grid and `d`.
    fn embed_for_bank(&self, batch: &ImageBatch) -> Result<Embedding, PatchcoreError> {
        let copies = self.config.augment.copies();
        if copies == 1 {
            return self.embed(batch);
        }
        let x = batch.to_tensor(&self.device); // [b, 3, H, W]
        let mut all = Vec::new();
        let (mut grid, mut d) = ((0, 0), 0);
        for i in 0..copies {
            // i = 0..3: identity, horizontal, vertical, both flips; 4..7: the same after a
            // transpose (the rotations by 90 / 270 degrees and the two transposes).
            let mut t = if i >= 4 {
                x.clone().swap_dims(2, 3)
            } else {
                x.clone()
            };
            t = match i % 4 {
                1 => t.flip([3]),
                2 => t.flip([2]),
                3 => t.flip([2, 3]),
                _ => t,
            };
            let (emb, g) = self.embed_tensor(t);
            let [_, dim] = emb.dims();
            all.extend(read_f32(emb)?);
            (grid, d) = (g, dim);
        }
        Ok((all, grid, d))
    }

    /// Patch features left on the model's device, and the patch grid `(h, w)`.
    ///
    /// # Shapes
    /// `[batch * h * w, d]`, rows in `(image, y, x)` order.
    fn embed_on_device(&self, batch: &ImageBatch) -> (Tensor<2>, (usize, usize)) {
        self.embed_tensor(batch.to_tensor(&self.device))
    }

    /// [`embed_on_device`](Self::embed_on_device) of an image tensor `[b, 3, H, W]`.
    fn embed_tensor(&self, x: Tensor<4>) -> (Tensor<2>, (usize, usize)) {
        let taps = self.backbone.forward(x);
        let grid = {
            let [_, _, h, w] = taps[0].dims();
            (h, w)
        };
        let emb = patch_embedding(taps, self.config.patch_size, self.config.target_dim);
        (emb, grid)
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
    ///
    /// With the search on the model's device ([`KnnBackend::Device`], the `auto` choice on a
    /// GPU) the patch features never leave the device: what comes back is one distance per
    /// patch, plus for each image the features of its most anomalous patch and that patch's
    /// nearest memory index (for the reweighting).
    pub fn patch_scores(&self, batch: &ImageBatch) -> Result<PatchScores, PatchcoreError> {
        let fitted = self.fitted.as_ref().ok_or(PatchcoreError::NotFitted)?;
        self.check_batch(batch)?;
        let t0 = Instant::now();
        let (emb, grid) = self.embed_on_device(batch);
        let [n, d] = emb.dims();
        let per = grid.0 * grid.1;
        let b = batch.len();
        let k = self.config.num_neighbors.min(fitted.bank.len());
        // Distance of every patch to its nearest memory sample; m^test,* per image; and, for the
        // reweighting, m^test,*'s features and the index of its nearest memory sample m*.
        let (scores, star, star_rows, star_nn) = match &fitted.index {
            Index::Cpu(index) => {
                let rows = read_f32(emb)?;
                let nn = index.search(&rows, n, 1)?;
                let star = most_anomalous(&nn.distances, b, per);
                let star_rows = star
                    .iter()
                    .flat_map(|&p| rows[p * d..(p + 1) * d].iter().copied())
                    .collect();
                let star_nn = star.iter().map(|&p| nn.indices[p]).collect();
                (nn.distances, star, star_rows, star_nn)
            }
            Index::Device(index) => {
                let (dist, ids) = index.search_tensor(emb.clone(), 1)?;
                let scores = read_f32(dist)?;
                if let Some(p) = scores.iter().position(|v| !v.is_finite()) {
                    return Err(MemoryBankError::NonFinite {
                        what: "queries",
                        position: p * d,
                    }
                    .into());
                }
                let star = most_anomalous(&scores, b, per);
                let (star_rows, star_nn) = if k > 1 {
                    let at = Tensor::<1, Int>::from_data(
                        TensorData::new(star.iter().map(|&p| p as i64).collect(), [b]),
                        &self.device,
                    );
                    let nn = read_i64(ids.reshape([n]).select(0, at.clone()))?;
                    (
                        read_f32(emb.select(0, at))?,
                        nn.into_iter().map(|i| i as u32).collect(),
                    )
                } else {
                    (Vec::new(), Vec::new())
                };
                (scores, star, star_rows, star_nn)
            }
        };
        log::debug!(
            "predict {b} images: features + 1-NN of {} patches in a {}-row bank {:.1} ms",
            b * per,
            fitted.bank.len(),
            t0.elapsed().as_secs_f64() * 1e3
        );
        let image_scores = if k <= 1 {
            star.iter().map(|&p| scores[p]).collect()
        } else {
            // N_b(m*): the b nearest memory samples of m*, the nearest memory sample of m^test,*.
            let m_star: Vec<f32> = star_nn
                .iter()
                .flat_map(|&m| fitted.bank.row(m as usize).iter().copied())
                .collect();
            let support = fitted.index.search(&m_star, b, k)?;
            star.iter()
                .enumerate()
                .map(|(i, &p)| {
                    let q = &star_rows[i * d..(i + 1) * d];
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

/// m^test,* of each image: the index (into all `b * per` patches) of its patch farthest from
/// the memory bank, the first one on ties.
fn most_anomalous(scores: &[f32], b: usize, per: usize) -> Vec<usize> {
    (0..b)
        .map(|i| {
            let s = &scores[i * per..(i + 1) * per];
            let mut best = 0;
            for (j, &v) in s.iter().enumerate() {
                if v > s[best] {
                    best = j;
                }
            }
            i * per + best
        })
        .collect()
}

/// Bytes per buffered patch feature in the coreset's working set: the feature, its
/// projection and per-point bookkeeping.
fn bytes_per_row(d: usize, projected: usize) -> usize {
    4 * d + 4 * projected + 16
}

/// Patch features a fit buffers under a budget of `mib` MiB (at least one image's worth is
/// always allowed by the caller pushing whole batches).
pub(crate) fn budget_rows(mib: usize, d: usize, projected: usize) -> usize {
    (mib << 20) / bytes_per_row(d, projected).max(1)
}

/// A bank to continue from (adding images).
struct Start {
    bank: Vec<f32>,
    seen: usize,
    radius: f32,
}

/// What a [`BankBuilder`] produced.
struct BuiltBank {
    bank: MemoryBank,
    seen: usize,
    radius: f32,
}

/// Collects patch features and reduces them into the memory bank: one greedy coreset over all
/// of them (the default), or, under `fit_budget_mib`, chunk by chunk with the greedy search
/// continued from the rows already kept. The bank's size always follows the total:
/// `floor(patches * ratio)` rows, however the patches were chunked.
struct BankBuilder {
    params: CoresetParams,
    d: usize,
    /// Rows kept so far (row-major, `d` columns).
    bank: Vec<f32>,
    /// Patch features not yet reduced.
    buffer: Vec<f32>,
    /// Buffer size (rows) that triggers a reduction; `usize::MAX` without a budget.
    budget_rows: usize,
    /// Patch features absorbed (earlier fits included when adding).
    seen: usize,
    /// Rows per patch when adding to a bank fitted with a count: `(bank rows, patches)`.
    fitted_rate: Option<(usize, usize)>,
    /// Coverage radius so far (a bound after continued selections).
    radius: f32,
    /// Time spent selecting.
    build_time: std::time::Duration,
    /// Patch features pushed into this builder.
    pushed: usize,
}

impl BankBuilder {
    fn new(config: &CheckedConfig, d: usize, start: Option<Start>) -> Self {
        let projected = match config.coreset.projection {
            ProjectionKind::Gaussian { dim } | ProjectionKind::LinearUniform { dim } => dim,
            ProjectionKind::Identity | ProjectionKind::SparseJl { .. } => d,
        };
        let budget_rows = config
            .fit_budget_mib
            .map_or(usize::MAX, |mib| budget_rows(mib, d, projected).max(1));
        let (bank, seen, radius) =
            start.map_or((Vec::new(), 0, 0.0), |s| (s.bank, s.seen, s.radius));
        let fitted_rate = match config.coreset.size {
            CoresetSize::Count(_) if seen > 0 => Some((bank.len() / d.max(1), seen)),
            _ => None,
        };
        Self {
            params: config.coreset.clone(),
            d,
            bank,
            buffer: Vec::new(),
            budget_rows,
            seen,
            fitted_rate,
            radius,
            build_time: std::time::Duration::ZERO,
            pushed: 0,
        }
    }

    fn rows(&self) -> usize {
        self.bank.len() / self.d
    }

    fn push(&mut self, rows: &[f32]) -> Result<(), PatchcoreError> {
        let limit = self.budget_rows.saturating_mul(self.d);
        if self.budget_rows != usize::MAX {
            // Reduce before the buffer would outgrow the budget (a growing Vec doubles its
            // allocation), and allocate the budget once.
            if !self.buffer.is_empty() && self.buffer.len() + rows.len() > limit {
                self.reduce()?;
            }
            if self.buffer.capacity() < limit {
                self.buffer
                    .reserve_exact(limit.max(rows.len()) - self.buffer.len());
            }
        }
        self.buffer.extend_from_slice(rows);
        self.pushed += rows.len() / self.d;
        if self.buffer.len() >= limit {
            self.reduce()?;
        }
        Ok(())
    }

    /// Rows to keep from the `n` buffered patches.
    fn keep(&self, n: usize) -> usize {
        let m = self.rows();
        if let Some((rows, patches)) = self.fitted_rate {
            return (n * rows / patches.max(1)).min(n);
        }
        match self.params.size {
            CoresetSize::Ratio(r) => {
                let total = ((self.seen + n) as f64 * r) as usize;
                let keep = total.saturating_sub(m).min(n);
                if m == 0 { keep.max(1) } else { keep }
            }
            CoresetSize::Count(c) => c.saturating_sub(m).clamp(1, n),
        }
    }

    /// Reduces the buffer into the bank.
    fn reduce(&mut self) -> Result<(), PatchcoreError> {
        let (d, n) = (self.d, self.buffer.len() / self.d);
        if n == 0 {
            return Ok(());
        }
        let t = Instant::now();
        let m = self.rows();
        let keep = self.keep(n);
        if keep == n {
            self.bank.append(&mut self.buffer);
        } else if keep > 0 {
            let sampler = CoresetSampler::new(CoresetParams {
                size: CoresetSize::Count(keep),
                ..self.params.clone()
            })?;
            let selection = if m == 0 {
                sampler.select(&self.buffer, n, d)?
            } else {
                sampler.extend(&self.bank, m, &self.buffer, n, d, keep)?
            };
            self.radius = self.radius.max(selection.coverage_radius);
            self.bank.extend(selection.gather(&self.buffer, d));
            log::debug!(
                "coreset chunk: kept {keep} of {n} patches, bank {} rows",
                self.rows()
            );
        }
        self.seen += n;
        self.buffer.clear();
        self.build_time += t.elapsed();
        Ok(())
    }

    fn finish(
        mut self,
        t0: Instant,
        images: usize,
    ) -> Result<(BuiltBank, FitSummary), PatchcoreError> {
        self.reduce()?;
        let summary = FitSummary {
            images,
            features: self.pushed,
            memory_rows: self.rows(),
            extract_time: t0.elapsed().saturating_sub(self.build_time),
            build_time: self.build_time,
        };
        let bank = MemoryBank::from_rows(self.bank, self.d)?;
        Ok((
            BuiltBank {
                bank,
                seen: self.seen,
                radius: self.radius,
            },
            summary,
        ))
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
        let mut builder: Option<BankBuilder> = None;
        let mut shape: Option<((usize, usize), (usize, usize))> = None;
        let mut images = 0;
        for batch in batches {
            let batch = batch.map_err(|e| PatchcoreError::Input(e.into()))?;
            if batch.is_empty() {
                continue;
            }
            let size = (batch.height(), batch.width());
            if let Some((_, s)) = shape
                && s != size
            {
                return Err(PatchcoreError::BatchShape {
                    got: batch.shape(),
                    expected: format!("[_, 3, {}, {}] like the first batch", s.0, s.1),
                });
            }
            if self.config.augment == BankAugment::Dihedral && size.0 != size.1 {
                return Err(PatchcoreError::InvalidConfig {
                    name: "augment",
                    reason: format!(
                        "`dihedral` needs square images; this batch is {}x{}",
                        size.0, size.1
                    ),
                });
            }
            let (rows, grid, d) = self.embed_for_bank(&batch)?;
            shape.get_or_insert((grid, size));
            builder
                .get_or_insert_with(|| BankBuilder::new(&self.config, d, None))
                .push(&rows)?;
            images += batch.len();
            log::debug!("fit: {images} images");
        }
        let (Some(builder), Some((grid, image_size))) = (builder, shape) else {
            return Err(PatchcoreError::NoTrainingImages);
        };
        let (bank, summary) = builder.finish(t0, images)?;
        log::info!(
            "memory bank: {} of {} patches ({}-d), coverage radius {:.4}",
            bank.bank.len(),
            summary.features,
            bank.bank.dim(),
            bank.radius
        );
        let index = Index::build(&bank.bank, self.config.knn, &self.device);
        self.fitted = Some(Fitted {
            bank: bank.bank,
            index,
            patches_seen: bank.seen,
            grid,
            image_size,
            coverage_radius: bank.radius,
        });
        Ok(summary)
    }

    /// Adds good images: their patches join the memory bank by the greedy k-center search
    /// continued from the bank's rows (the bank grows by the coreset ratio of the new patches;
    /// a bank fitted with a count grows by its own ratio, rows per patch seen). The images the
    /// model was fitted on are not needed. No images: the model is left unchanged.
    fn add<I, E>(&mut self, batches: I) -> Result<FitSummary, PatchcoreError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let t0 = Instant::now();
        let fitted = self.fitted.as_ref().ok_or(PatchcoreError::NotFitted)?;
        let d = fitted.bank.dim();
        let mut builder: Option<BankBuilder> = None;
        let mut images = 0;
        for batch in batches {
            let batch = batch.map_err(|e| PatchcoreError::Input(e.into()))?;
            if batch.is_empty() {
                continue;
            }
            self.check_batch(&batch)?;
            let (rows, _, _) = self.embed_for_bank(&batch)?;
            if builder.is_none() {
                let seen = fitted.patches_seen;
                if seen == 0 {
                    return Err(PatchcoreError::InvalidConfig {
                        name: "model file",
                        reason: "it does not record how many patches its bank was selected \
                                 from (written by an older build): fit it again to add images"
                            .into(),
                    });
                }
                let start = Start {
                    bank: fitted.bank.as_slice().to_vec(),
                    seen,
                    radius: fitted.coverage_radius,
                };
                builder = Some(BankBuilder::new(&self.config, d, Some(start)));
            }
            if let Some(b) = builder.as_mut() {
                b.push(&rows)?;
            }
            images += batch.len();
        }
        let Some(builder) = builder else {
            return Ok(FitSummary::default());
        };
        let (bank, summary) = builder.finish(t0, images)?;
        let index = Index::build(&bank.bank, self.config.knn, &self.device);
        if let Some(f) = self.fitted.as_mut() {
            f.bank = bank.bank;
            f.index = index;
            f.patches_seen = bank.seen;
            f.coverage_radius = bank.radius;
        }
        Ok(summary)
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
