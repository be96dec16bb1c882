//! The CFlow detector: a frozen encoder, one conditional flow per tap trained by maximum
//! likelihood on good images, anomaly maps from the per-tap likelihoods.

use std::time::Instant;

use ad_backbone::Backbone;
use ad_core::postprocess::{gaussian_blur, upsample};
use ad_core::tensor::read_f32;
use ad_core::{
    AnomalyMap, BoxError, Detector, EpochCallback, EpochReport, FitSummary, ImageBatch, Prediction,
    Preprocessor, Threshold,
};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::CflowError;
use crate::config::{CflowConfig, CheckedConfig};
use crate::encoding::positional_encoding_2d;
use crate::flow::{Flow, rng};

/// Rows per inference chunk of the decoders.
const INFER_CHUNK: usize = 8192;

/// Features of one tap for a set of images: `[images * h * w, channels]` rows in
/// `(image, y, x)` order.
#[derive(Clone, Debug)]
pub(crate) struct TapRows {
    pub(crate) rows: Vec<f32>,
    pub(crate) grid: (usize, usize),
    pub(crate) channels: usize,
}

/// What fitting produced besides the decoders.
#[derive(Clone, Debug)]
pub(crate) struct Fitted {
    /// Grid `(h, w)` of every tap.
    pub(crate) grids: Vec<(usize, usize)>,
    /// Positional condition of every tap's grid (derived from `grids`, not saved).
    pub(crate) conditions: Vec<Vec<f32>>,
    /// Largest per-dimension log-likelihood of a training fiber, per tap: the likelihoods of
    /// new fibers are normalised by it (`exp(log p - reference)`).
    pub(crate) reference: Vec<f32>,
    /// Preprocessed image size `(h, w)`.
    pub(crate) image_size: (usize, usize),
    /// Mean training loss of every epoch.
    pub(crate) losses: Vec<f64>,
}

/// CFLOW-AD (Gudovskiy et al., "CFLOW-AD: Real-Time Unsupervised Anomaly Detection with
/// Localization via Conditional Normalizing Flows", WACV 2022).
pub struct Cflow {
    pub(crate) config: CheckedConfig,
    pub(crate) device: Device,
    pub(crate) backbone: Backbone,
    pub(crate) preprocessor: Preprocessor,
    pub(crate) decoders: Vec<Flow>,
    pub(crate) fitted: Option<Fitted>,
    pub(crate) threshold: Option<Threshold>,
    on_epoch: Option<EpochCallback>,
}

impl std::fmt::Debug for Cflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cflow")
            .field("config", &self.config)
            .field("backbone", &self.backbone.identity())
            .field("fitted", &self.fitted)
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl Cflow {
    /// Validates the configuration and builds the encoder on `device` (fetching pretrained
    /// weights if needed) and freshly initialised decoders (from the seed).
    pub fn new(config: &CflowConfig, device: &Device) -> Result<Self, CflowError> {
        let config = config.check()?;
        let backbone = config.backbone_config().init(device)?;
        let preprocessor = Preprocessor::new(config.preprocess.clone())?;
        let decoders = Self::fresh_decoders(&config, &backbone, device);
        Ok(Self {
            config,
            device: device.clone(),
            backbone,
            preprocessor,
            decoders,
            fitted: None,
            threshold: None,
            on_epoch: None,
        })
    }

    fn fresh_decoders(config: &CheckedConfig, backbone: &Backbone, device: &Device) -> Vec<Flow> {
        backbone
            .tap_channels()
            .iter()
            .enumerate()
            .map(|(l, &c)| {
                Flow::new(
                    c,
                    config.condition_dim,
                    config.coupling_blocks,
                    config.clamp_alpha,
                    &mut rng(config.seed, l),
                    device,
                )
            })
            .collect()
    }

    /// The validated configuration.
    pub fn config(&self) -> &CflowConfig {
        self.config.as_config()
    }

    /// The encoder.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// Mean training loss of every epoch of the last `fit`.
    pub fn losses(&self) -> Option<&[f64]> {
        self.fitted.as_ref().map(|f| f.losses.as_slice())
    }

    /// The decoders (one flow per tap).
    pub fn decoders(&self) -> &[Flow] {
        &self.decoders
    }

    /// Encoder features of a batch, one [`TapRows`] per tap.
    pub(crate) fn encode(&self, batch: &ImageBatch) -> Result<Vec<TapRows>, CflowError> {
        let x = batch.to_tensor(&self.device);
        self.backbone
            .forward(x)
            .into_iter()
            .map(|t| {
                let [b, c, h, w] = t.dims();
                // [b, c, h, w] -> [b * h * w, c]
                let rows = t.permute([0, 2, 3, 1]).reshape([b * h * w, c]);
                Ok(TapRows {
                    rows: read_f32(rows)?,
                    grid: (h, w),
                    channels: c,
                })
            })
            .collect()
    }

    /// Trains decoder `l` for one epoch on `tap`, returning the summed loss and the number of
    /// fibers.
    #[allow(clippy::too_many_arguments)]
    fn train_epoch(
        &self,
        flow: Flow,
        optim: &mut burn::optim::ModuleOptimizer,
        tap: &TapRows,
        cond: &[f32],
        shuffle: &mut Xoshiro256PlusPlus,
        device: &Device,
        epoch: usize,
        l: usize,
    ) -> Result<(Flow, f64, usize), CflowError> {
        let (h, w) = tap.grid;
        let c = tap.channels;
        let p_dim = self.config.condition_dim;
        let n = tap.rows.len() / c;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(shuffle);
        let fb = self.config.fiber_batch;
        // As anomalib: full fiber batches, the remainder joins the last one.
        let batches = (n / fb).max(1);
        let mut flow = flow;
        // The loss summed on the device and read once per epoch: a read-back per step would make
        // every step wait for the device (GPUs) before the next one is queued.
        let mut total: Option<Tensor<1>> = None;
        for k in 0..batches {
            let idx = if k + 1 == batches {
                &order[k * fb..]
            } else {
                &order[k * fb..(k + 1) * fb]
            };
            let m = idx.len();
            let mut xv = Vec::with_capacity(m * c);
            let mut cv = Vec::with_capacity(m * p_dim);
            for &i in idx {
                xv.extend_from_slice(&tap.rows[i * c..(i + 1) * c]);
                let p = i % (h * w);
                cv.extend_from_slice(&cond[p * p_dim..(p + 1) * p_dim]);
            }
            let x = Tensor::<2>::from_data(TensorData::new(xv, [m, c]), device);
            let ct = Tensor::<2>::from_data(TensorData::new(cv, [m, p_dim]), device);
            // anomalib's loss: -log sigmoid(log p / C), averaged over the fibers.
            let loss = log_sigmoid(flow.log_prob_per_dim(x, ct)).neg().mean();
            let weighted = loss.clone().inner().mul_scalar(m as f32);
            total = Some(match total {
                Some(t) => t + weighted,
                None => weighted,
            });
            let grads = loss.backward();
            let gp = GradientsParams::from_grads(grads, &flow);
            flow = optim.step(self.config.learning_rate, flow, gp);
        }
        let total = match total {
            Some(t) => read_f32(t.unsqueeze_dim::<2>(0))?[0] as f64,
            None => 0.0,
        };
        if !total.is_finite() {
            return Err(CflowError::Diverged {
                loss: total / n.max(1) as f64,
                epoch,
                tap: l,
            });
        }
        Ok((flow, total, n))
    }
}

/// The positional conditions of every tap's grid, `[h * w, dim]` each (computed once per fit or
/// load, not per prediction).
pub(crate) fn conditions(dim: usize, grids: &[(usize, usize)]) -> Vec<Vec<f32>> {
    grids
        .iter()
        .map(|&(h, w)| positional_encoding_2d(dim, h, w))
        .collect()
}

/// Per-dimension log-likelihood of every row of `tap` under `decoder`, in chunks; `cond` is
/// the tap grid's positional condition (`[h * w, dim]`).
fn log_prob_rows(
    decoder: &Flow,
    cond: &[f32],
    tap: &TapRows,
    device: &Device,
) -> Result<Vec<f32>, CflowError> {
    let (h, w) = tap.grid;
    let cond_dim = cond.len() / (h * w).max(1);
    let c = tap.channels;
    let n = tap.rows.len() / c.max(1);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let m = INFER_CHUNK.min(n - start);
        let x = Tensor::<2>::from_data(
            TensorData::new(tap.rows[start * c..(start + m) * c].to_vec(), [m, c]),
            device,
        );
        let mut cv = Vec::with_capacity(m * cond_dim);
        for i in start..start + m {
            let p = i % (h * w);
            cv.extend_from_slice(&cond[p * cond_dim..(p + 1) * cond_dim]);
        }
        let ct = Tensor::<2>::from_data(TensorData::new(cv, [m, cond_dim]), device);
        out.extend(read_f32(decoder.log_prob_per_dim(x, ct))?);
        start += m;
    }
    Ok(out)
}

impl Detector for Cflow {
    type Error = CflowError;

    fn name(&self) -> &'static str {
        "cflow"
    }

    fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    fn set_epoch_callback(&mut self, callback: Option<EpochCallback>) {
        self.on_epoch = callback;
    }

    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, CflowError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let t0 = Instant::now();
        let mut taps: Vec<TapRows> = Vec::new();
        let mut image_size = None;
        let mut images = 0;
        for batch in batches {
            let batch = batch.map_err(|e| CflowError::Input(e.into()))?;
            if batch.is_empty() {
                continue;
            }
            let size = (batch.height(), batch.width());
            if *image_size.get_or_insert(size) != size {
                return Err(CflowError::BatchShape {
                    got: batch.shape(),
                    expected: format!("[_, 3, {}, {}] like the first batch", size.0, size.1),
                });
            }
            let enc = self.encode(&batch)?;
            if taps.is_empty() {
                taps = enc;
            } else {
                for (t, e) in taps.iter_mut().zip(enc) {
                    t.rows.extend_from_slice(&e.rows);
                }
            }
            images += batch.len();
        }
        let Some(image_size) = image_size else {
            return Err(CflowError::NoTrainingImages);
        };
        let extract_time = t0.elapsed();
        let t1 = Instant::now();

        // Training on the autodiff device, from freshly initialised decoders.
        let ad = self.device.clone().autodiff();
        let mut flows: Vec<Option<Flow>> = Self::fresh_decoders(&self.config, &self.backbone, &ad)
            .into_iter()
            .map(Some)
            .collect();
        let mut optims: Vec<_> = (0..taps.len())
            .map(|_| AdamConfig::new().with_epsilon(1e-8).init())
            .collect();
        let grids: Vec<(usize, usize)> = taps.iter().map(|t| t.grid).collect();
        let conds = conditions(self.config.condition_dim, &grids);
        let mut shuffle = Xoshiro256PlusPlus::seed_from_u64(self.config.seed ^ 0x5EED_F1B5);
        let mut losses = Vec::with_capacity(self.config.epochs);
        let mut callback = self.on_epoch.take();
        let result = (|| {
            for epoch in 1..=self.config.epochs {
                let te = Instant::now();
                let (mut sum, mut count) = (0.0, 0usize);
                for (l, tap) in taps.iter().enumerate() {
                    let flow = flows[l].take().ok_or(CflowError::NotFitted)?;
                    let (flow, s, n) = self.train_epoch(
                        flow,
                        &mut optims[l],
                        tap,
                        &conds[l],
                        &mut shuffle,
                        &ad,
                        epoch,
                        l,
                    )?;
                    flows[l] = Some(flow);
                    sum += s;
                    count += n;
                }
                let loss = sum / count.max(1) as f64;
                losses.push(loss);
                log::info!("CFlow epoch {epoch}: loss {loss:.5}");
                if let Some(cb) = callback.as_mut() {
                    cb(&EpochReport {
                        epoch,
                        epochs: self.config.epochs,
                        loss,
                        seconds: te.elapsed().as_secs_f64(),
                    });
                }
            }
            Ok::<_, CflowError>(())
        })();
        self.on_epoch = callback;
        result?;
        self.decoders = flows.into_iter().flatten().map(|f| f.valid()).collect();

        // The reference likelihood of every tap: the best-explained training fiber.
        let mut reference = Vec::with_capacity(taps.len());
        for (l, tap) in taps.iter().enumerate() {
            let lp = log_prob_rows(&self.decoders[l], &conds[l], tap, &self.device)?;
            reference.push(lp.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        }
        let features: usize = taps.iter().map(|t| t.rows.len() / t.channels).sum();
        self.fitted = Some(Fitted {
            grids,
            conditions: conds,
            reference,
            image_size,
            losses,
        });
        Ok(FitSummary {
            images,
            features,
            memory_rows: features,
            extract_time,
            build_time: t1.elapsed(),
        })
    }

    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, CflowError> {
        let fitted = self.fitted.as_ref().ok_or(CflowError::NotFitted)?;
        let (h, w) = (batch.height(), batch.width());
        if (h, w) != fitted.image_size {
            return Err(CflowError::BatchShape {
                got: batch.shape(),
                expected: format!("[_, 3, {}, {}]", fitted.image_size.0, fitted.image_size.1),
            });
        }
        let t0 = Instant::now();
        let taps = self.encode(batch)?;
        let t_encode = t0.elapsed();
        if let Some((l, t)) = taps
            .iter()
            .enumerate()
            .find(|(l, t)| fitted.grids.get(*l) != Some(&t.grid))
        {
            return Err(CflowError::BatchShape {
                got: batch.shape(),
                expected: format!(
                    "a {:?} grid at tap {l} like the fitted model, got {:?}",
                    fitted.grids.get(l),
                    t.grid
                ),
            });
        }
        // The taps' decoders run concurrently (each is small-matrix work that leaves cores idle).
        let (decoders, device) = (&self.decoders, &self.device);
        let probs: Vec<Vec<f32>> = taps
            .par_iter()
            .enumerate()
            .map(|(l, t)| {
                let r = fitted.reference[l];
                Ok(
                    log_prob_rows(&decoders[l], &fitted.conditions[l], t, device)?
                        .into_iter()
                        .map(|v| (v - r).exp())
                        .collect(),
                )
            })
            .collect::<Result<_, CflowError>>()?;
        let t_flows = t0.elapsed() - t_encode;
        let n_taps = taps.len() as f32;
        let (mode, sigma) = (self.config.upsample, self.config.blur_sigma);
        let threshold = self.threshold.as_ref();
        let maps: Vec<Result<Prediction, CflowError>> = (0..batch.len())
            .into_par_iter()
            .map(|i| {
                // Sum of the per-tap likelihood maps, inverted: n_taps - sum(exp(log p - ref)).
                let mut total = vec![0.0f32; h * w];
                for (t, p) in taps.iter().zip(&probs) {
                    let per = t.grid.0 * t.grid.1;
                    let up = upsample(&p[i * per..(i + 1) * per], t.grid, (h, w), mode);
                    for (a, v) in total.iter_mut().zip(up) {
                        *a += v;
                    }
                }
                let inverted: Vec<f32> = total.into_iter().map(|v| n_taps - v).collect();
                let map = AnomalyMap::new(w, h, gaussian_blur(&inverted, (h, w), sigma))?;
                let score = map.max();
                Ok(Prediction {
                    score,
                    map,
                    is_anomalous: threshold.map(|t| t.is_anomalous(score)),
                })
            })
            .collect();
        log::debug!(
            "predict {} images: encoder {:.1} ms, decoders {:.1} ms, maps {:.1} ms",
            batch.len(),
            t_encode.as_secs_f64() * 1e3,
            t_flows.as_secs_f64() * 1e3,
            (t0.elapsed() - t_encode - t_flows).as_secs_f64() * 1e3
        );
        maps.into_iter().collect()
    }

    fn save(&self, path: &std::path::Path) -> Result<(), CflowError> {
        Cflow::save(self, path)
    }

    fn threshold(&self) -> Option<&Threshold> {
        self.threshold.as_ref()
    }

    fn set_threshold(&mut self, threshold: Option<Threshold>) {
        self.threshold = threshold;
    }
}
