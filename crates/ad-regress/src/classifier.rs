//! A supervised defect classifier by transfer learning: a frozen ImageNet backbone, global
//! average pooling and a 2-way dense layer trained with class-weighted cross-entropy; its class
//! activation map (CAM, Zhou et al., CVPR 2016) localises the defect.
//!
//! The defaults follow the recipe this replaces (VGG16 there, EfficientNet-Lite0 here):
//! class weights 1 (good) and 3 (defective), Adam at 1e-4, batches of 10, at most 10 epochs
//! with an early stop once the training accuracy reaches 0.98, seed 42.

use std::time::Instant;

use ad_backbone::{Backbone, BackboneConfig, BackboneKind, Net, Weights};
use ad_core::postprocess::upsample;
use ad_core::tensor::read_f32;
use ad_core::{
    AnomalyMap, BoxError, Detector, EpochCallback, EpochReport, FitSummary, ImageBatch,
    MapUpsample, Prediction, PreprocessConfig, Preprocessor, Threshold, ThresholdMethod,
};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::RegressError;
use crate::features::FeatureMaps;
use crate::head::{Mlp, scalar};

/// The tap a classifier pools by default: the deepest feature map (`head`, 1280 channels at
/// stride 32, for EfficientNet-Lite; `layer4` for the ResNets; `features.29` for VGG16).
pub fn default_classifier_tap(kind: BackboneKind) -> String {
    if kind.name().starts_with("efficientnet") {
        "head".to_string()
    } else {
        kind.tap_at_stride(32)
            .or_else(|| kind.tap_at_stride(16))
            .unwrap_or_else(|| "stem".to_string())
    }
}

/// Hyper-parameters of [`SupervisedClassifier`] (unchecked).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Feature extractor (frozen).
    pub backbone: BackboneKind,
    /// Weight source of the backbone.
    pub weights: Weights,
    /// The tap that is pooled; empty = [`default_classifier_tap`].
    pub tap: String,
    /// Image preprocessing.
    pub preprocess: PreprocessConfig,
    /// Cross-entropy weight of the good and of the defective class (`[1, 3]`).
    pub class_weights: [f32; 2],
    /// Adam learning rate (1e-4).
    pub learning_rate: f64,
    /// Images per optimiser step (10).
    pub batch_size: usize,
    /// Most passes over the training images (10).
    pub max_epochs: usize,
    /// Training stops after the epoch whose training accuracy reaches this (0.98); 1.0 runs
    /// every epoch.
    pub target_accuracy: f64,
    /// Seed of the head's initialisation and of the shuffling (42).
    pub seed: u64,
    /// CAM localisation: pixels whose min-max normalised CAM reaches this are the defect (0.7).
    pub cam_threshold: f32,
    /// Images per backbone forward pass.
    pub forward_batch: usize,
    /// Also trains the backbone's last stage (EfficientNet-Lite's 1x1 head convolution to
    /// 1280 channels, batch-norm folded, then ReLU6), starting from its pretrained weights,
    /// together with the dense layer; the frozen features are then taken one stage earlier
    /// (the last MBConv block). EfficientNet-Lite with the default `head` tap only. Off by
    /// default (the recipe's frozen backbone).
    pub fine_tune_last_stage: bool,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::EfficientNetLite0,
            weights: Weights::Pretrained,
            tap: String::new(),
            preprocess: PreprocessConfig::default(),
            class_weights: [1.0, 3.0],
            learning_rate: 1e-4,
            batch_size: 10,
            max_epochs: 10,
            target_accuracy: 0.98,
            seed: 42,
            cam_threshold: 0.7,
            forward_batch: 8,
            fine_tune_last_stage: false,
        }
    }
}

/// A validated [`ClassifierConfig`] (tap resolved); only [`ClassifierConfig::check`] makes one.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedClassifierConfig(ClassifierConfig);

impl std::ops::Deref for CheckedClassifierConfig {
    type Target = ClassifierConfig;
    fn deref(&self) -> &ClassifierConfig {
        &self.0
    }
}

impl ClassifierConfig {
    /// Validates every parameter once and resolves the default tap.
    pub fn check(&self) -> Result<CheckedClassifierConfig, RegressError> {
        let bad = |name, reason: String| Err(RegressError::InvalidConfig { name, reason });
        if !self.class_weights.iter().all(|w| w.is_finite() && *w > 0.0) {
            return bad(
                "class_weights",
                format!("{:?} must be finite and positive", self.class_weights),
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate < 1.0)
        {
            return bad(
                "learning_rate",
                format!("{} is not in (0, 1)", self.learning_rate),
            );
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.max_epochs == 0 {
            return bad("max_epochs", "must be at least 1".into());
        }
        if !(self.target_accuracy > 0.0 && self.target_accuracy <= 1.0) {
            return bad(
                "target_accuracy",
                format!("{} is not in (0, 1]", self.target_accuracy),
            );
        }
        if !(self.cam_threshold >= 0.0 && self.cam_threshold <= 1.0) {
            return bad(
                "cam_threshold",
                format!("{} is not in [0, 1]", self.cam_threshold),
            );
        }
        if let Err((name, reason)) =
            ad_core::postprocess::check_shared(0.0, self.forward_batch, &self.preprocess)
        {
            return bad(name, reason);
        }
        let mut c = self.clone();
        if c.tap.is_empty() {
            c.tap = default_classifier_tap(c.backbone);
        }
        c.backbone.tap_shape(&c.tap)?;
        if c.fine_tune_last_stage
            && !(c.backbone.name().starts_with("efficientnet") && c.tap == "head")
        {
            return bad(
                "fine_tune_last_stage",
                format!(
                    "only EfficientNet-Lite with the `head` tap has a last stage to fine-tune \
                     (got {} with tap `{}`)",
                    c.backbone, c.tap
                ),
            );
        }
        Ok(CheckedClassifierConfig(c))
    }
}

impl CheckedClassifierConfig {
    /// The backbone description. When fine-tuning, the frozen features come from the last
    /// MBConv block (the first tap) and `head` is built too, for its pretrained weights.
    pub fn backbone_config(&self) -> BackboneConfig {
        let config = BackboneConfig::new(self.backbone, self.weights.clone());
        match self.stage_input_tap() {
            Some(input) => config.with_taps(&[input.as_str(), self.tap.as_str()]),
            None => config.with_taps(&[&self.tap]),
        }
    }

    /// The tap feeding the fine-tuned last stage (`None` with a frozen backbone).
    fn stage_input_tap(&self) -> Option<String> {
        if self.fine_tune_last_stage {
            self.backbone.tap_at_stride(32)
        } else {
            None
        }
    }

    /// The unchecked form (for serialisation).
    pub fn as_config(&self) -> &ClassifierConfig {
        &self.0
    }
}

/// How training went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Good training images.
    pub good: usize,
    /// Defective training images.
    pub defective: usize,
    /// Epochs run (fewer than `max_epochs` after an early stop).
    pub epochs: usize,
    /// Mean weighted cross-entropy of every epoch.
    pub losses: Vec<f64>,
    /// Training accuracy after the last epoch.
    pub train_accuracy: f64,
    /// Wall time of training, seconds.
    pub seconds: f64,
}

/// The classifier's view of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassScore {
    /// `logit(defective) - logit(good)`: the log-odds of a defect.
    pub logit: f32,
    /// Probability of a defect (softmax), `sigmoid(logit)`.
    pub probability: f32,
    /// Class activation map of the defective class against the good one on the tap's grid:
    /// its mean is `logit`.
    pub cam: Vec<f32>,
    /// The grid `(h, w)` of `cam`.
    pub grid: (usize, usize),
}

/// The transfer-learning classifier: frozen backbone, global average pooling, 2-way dense
/// layer, CAM.
pub struct SupervisedClassifier {
    pub(crate) config: CheckedClassifierConfig,
    pub(crate) device: Device,
    pub(crate) backbone: Backbone,
    pub(crate) preprocessor: Preprocessor,
    pub(crate) head: Option<Mlp>,
    /// The fine-tuned last stage (a per-pixel dense layer before ReLU6), when configured.
    pub(crate) stage: Option<Mlp>,
    pub(crate) report: Option<TrainReport>,
    pub(crate) image_size: Option<(usize, usize)>,
    pub(crate) threshold: Option<Threshold>,
    on_epoch: Option<EpochCallback>,
}

impl std::fmt::Debug for SupervisedClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisedClassifier")
            .field("config", &self.config)
            .field("backbone", &self.backbone.identity())
            .field("report", &self.report)
            .finish()
    }
}

/// Checks that both classes are present; returns `(good, defective)` counts.
pub fn check_two_classes(labels: &[bool]) -> Result<(usize, usize), RegressError> {
    let defective = labels.iter().filter(|&&l| l).count();
    let good = labels.len() - defective;
    match (good, defective) {
        (0, 0) => Err(RegressError::NoTrainingImages),
        (_, 0) => Err(RegressError::SingleClass {
            present: "good",
            missing: "defective",
        }),
        (0, _) => Err(RegressError::SingleClass {
            present: "defective",
            missing: "good",
        }),
        counts => Ok(counts),
    }
}

impl SupervisedClassifier {
    /// Validates the configuration and builds the backbone on `device` (fetching pretrained
    /// weights if needed).
    pub fn new(config: &ClassifierConfig, device: &Device) -> Result<Self, RegressError> {
        let config = config.check()?;
        let backbone = config.backbone_config().init(device)?;
        let preprocessor = Preprocessor::new(config.preprocess.clone())?;
        Ok(Self {
            config,
            device: device.clone(),
            backbone,
            preprocessor,
            head: None,
            stage: None,
            report: None,
            image_size: None,
            threshold: None,
            on_epoch: None,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &ClassifierConfig {
        self.config.as_config()
    }

    /// The frozen backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The fine-tuned last stage as a per-pixel dense layer `[in, out]` (ReLU6 follows), when
    /// the model was trained with `fine_tune_last_stage`.
    pub fn last_stage(&self) -> Option<&Mlp> {
        self.stage.as_ref()
    }

    /// The backbone's pretrained last stage (EfficientNet-Lite's 1x1 head convolution, folded
    /// batch-norm) as a per-pixel dense layer on `device`: the start of fine-tuning.
    fn pretrained_stage(&self, device: &Device) -> Result<Mlp, RegressError> {
        let conv = match self.backbone.net() {
            Net::EfficientNet(net) => net.head.as_ref(),
            _ => None,
        }
        .ok_or_else(|| {
            RegressError::Data("the backbone was built without a last stage to fine-tune".into())
        })?;
        let [out, inp, kh, kw] = conv.weight.dims();
        if (kh, kw) != (1, 1) {
            return Err(RegressError::Data(format!(
                "the last stage is a {kh}x{kw} convolution, not 1x1"
            )));
        }
        // Convolution weight [out, in, 1, 1] -> dense weight [in, out].
        let w = read_f32(conv.weight.val())?;
        let mut flat = vec![0.0f32; inp * out];
        for o in 0..out {
            for i in 0..inp {
                flat[i * out + o] = w[o * inp + i];
            }
        }
        flat.extend(read_f32(conv.bias.val())?);
        Mlp::from_flat(&[inp, out], &flat, device)
            .ok_or_else(|| RegressError::Data(format!("a {inp} -> {out} stage could not be built")))
    }

    /// How the last training went.
    pub fn report(&self) -> Option<&TrainReport> {
        self.report.as_ref()
    }

    /// The frozen backbone's maps of a batch (what the head and the CAM are computed from).
    pub fn features(&self, batch: &ImageBatch) -> Result<FeatureMaps, RegressError> {
        let mut out = FeatureMaps::default();
        for chunk in batch.chunks(self.config.forward_batch) {
            out.append(FeatureMaps::extract(&self.backbone, &chunk, &self.device)?)?;
        }
        Ok(out)
    }

    /// Trains a fresh head on precomputed `features` with `labels` (`true` = defective):
    /// class-weighted cross-entropy, Adam, seeded shuffling, early stop at the target training
    /// accuracy. Refuses a single class ([`RegressError::SingleClass`]).
    ///
    /// `image_size` is the preprocessed size the features came from (maps are drawn at it).
    pub fn fit_features(
        &mut self,
        features: &FeatureMaps,
        labels: &[bool],
        image_size: (usize, usize),
    ) -> Result<TrainReport, RegressError> {
        if features.len() != labels.len() {
            return Err(RegressError::Data(format!(
                "{} feature maps for {} labels",
                features.len(),
                labels.len()
            )));
        }
        let (good, defective) = check_two_classes(labels)?;
        let t0 = Instant::now();
        let n = labels.len();
        let ad = self.device.clone().autodiff();
        // Without a stage the head sees pooled features (one row per image); with one, every
        // pixel's features go through the stage before the pooling.
        let stage = if self.config.fine_tune_last_stage {
            Some(self.pretrained_stage(&ad)?)
        } else {
            None
        };
        let (inputs, per_image) = match stage {
            Some(_) => (features.pixel_rows(), features.grid().0 * features.grid().1),
            None => (features.pooled(), 1),
        };
        let c = features.channels();
        let width = stage.as_ref().map_or(c, |s| s.dims()[1]);
        let mut head = Trainable {
            stage,
            dense: Mlp::new(&[width, 2], self.config.seed, &ad),
        };
        let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.config.seed ^ 0x00C1_A55F);
        let mut order: Vec<usize> = (0..n).collect();
        let w = self.config.class_weights;
        let mut losses = Vec::new();
        let mut accuracy = 0.0;
        let mut callback = self.on_epoch.take();
        for epoch in 1..=self.config.max_epochs {
            let te = Instant::now();
            order.shuffle(&mut rng);
            let mut total = 0.0;
            let mut weight_sum = 0.0;
            for idx in order.chunks(self.config.batch_size) {
                let m = idx.len();
                let per = per_image * c;
                let mut x = Vec::with_capacity(m * per);
                let mut target = vec![0.0f32; m * 2];
                let mut batch_weight = 0.0f32;
                for (r, &i) in idx.iter().enumerate() {
                    x.extend_from_slice(&inputs[i * per..(i + 1) * per]);
                    let class = labels[i] as usize;
                    target[r * 2 + class] = w[class];
                    batch_weight += w[class];
                }
                let xt = Tensor::<2>::from_data(TensorData::new(x, [m * per_image, c]), &ad);
                let tt = Tensor::<2>::from_data(TensorData::new(target, [m, 2]), &ad);
                // PyTorch's weighted mean: sum_i w_yi * -log p_yi / sum_i w_yi.
                let loss = (log_softmax(head.forward(xt, m), 1) * tt)
                    .sum()
                    .neg()
                    .div_scalar(batch_weight);
                let value = scalar(loss.clone().inner())?;
                if !value.is_finite() {
                    self.on_epoch = callback;
                    return Err(RegressError::Diverged { loss: value, epoch });
                }
                total += value * batch_weight as f64;
                weight_sum += batch_weight as f64;
                let grads = GradientsParams::from_grads(loss.backward(), &head);
                head = optim.step(self.config.learning_rate, head, grads);
            }
            let loss = total / weight_sum.max(1e-12);
            losses.push(loss);
            let valid = head.valid();
            let logits = logits_of(&valid, &inputs, per_image, c, &self.device)?;
            let correct = logits
                .iter()
                .zip(labels)
                .filter(|(z, l)| (**z >= 0.0) == **l)
                .count();
            accuracy = correct as f64 / n as f64;
            log::info!("classifier epoch {epoch}: loss {loss:.5}, train accuracy {accuracy:.4}");
            if let Some(cb) = callback.as_mut() {
                cb(&EpochReport {
                    epoch,
                    epochs: self.config.max_epochs,
                    loss,
                    seconds: te.elapsed().as_secs_f64(),
                });
            }
            if accuracy >= self.config.target_accuracy {
                break;
            }
        }
        self.on_epoch = callback;
        let head = head.valid();
        let train_logits = logits_of(&head, &inputs, per_image, c, &self.device)?;
        let (lo, hi) = train_logits
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        self.threshold = Some(Threshold::new(
            0.0,
            lo.min(0.0),
            hi.max(0.0),
            ThresholdMethod::Classifier { good, defective },
        )?);
        self.head = Some(head.dense);
        self.stage = head.stage;
        self.image_size = Some(image_size);
        let report = TrainReport {
            good,
            defective,
            epochs: losses.len(),
            losses,
            train_accuracy: accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        };
        self.report = Some(report.clone());
        Ok(report)
    }

    /// Trains on labelled batches (`true` = defective): the backbone runs once per image,
    /// then [`SupervisedClassifier::fit_features`].
    pub fn fit_labelled<I, E>(&mut self, batches: I) -> Result<TrainReport, RegressError>
    where
        I: IntoIterator<Item = Result<(ImageBatch, Vec<bool>), E>>,
        E: Into<BoxError>,
    {
        let mut features = FeatureMaps::default();
        let mut labels = Vec::new();
        let mut size = None;
        for item in batches {
            let (batch, l) = item.map_err(|e| RegressError::Input(e.into()))?;
            if batch.len() != l.len() {
                return Err(RegressError::Data(format!(
                    "a batch of {} images came with {} labels",
                    batch.len(),
                    l.len()
                )));
            }
            let s = (batch.height(), batch.width());
            if *size.get_or_insert(s) != s {
                return Err(RegressError::BatchShape {
                    got: batch.shape(),
                    expected: format!("[_, 3, {}, {}] like the first batch", s.0, s.1),
                });
            }
            features.append(self.features(&batch)?)?;
            labels.extend(l);
        }
        let size = size.ok_or(RegressError::NoTrainingImages)?;
        self.fit_features(&features, &labels, size)
    }

    /// Logit, probability and CAM of every image of `features` (the backbone's features; a
    /// fine-tuned last stage is applied first).
    pub fn score_features(&self, features: &FeatureMaps) -> Result<Vec<ClassScore>, RegressError> {
        let head = self.head.as_ref().ok_or(RegressError::NotFitted)?;
        let staged;
        let features = match &self.stage {
            Some(stage) => {
                staged = apply_stage(stage, features, &self.device)?;
                &staged
            }
            None => features,
        };
        let c = features.channels();
        let dims = head.dims();
        if dims.first() != Some(&c) {
            return Err(RegressError::Data(format!(
                "features of {c} channels for a head of {dims:?}"
            )));
        }
        // The dense layer's weights: difference of the two classes, per channel.
        let flat = head.to_flat()?;
        let (w, b) = flat.split_at(c * 2);
        let dw: Vec<f32> = (0..c).map(|k| w[k * 2 + 1] - w[k * 2]).collect();
        let db = b[1] - b[0];
        let (gh, gw) = features.grid();
        let plane = gh * gw;
        Ok((0..features.len())
            .map(|i| {
                let maps = features.image(i);
                let mut cam = vec![db; plane];
                for (k, &wk) in dw.iter().enumerate() {
                    for (a, v) in cam.iter_mut().zip(&maps[k * plane..(k + 1) * plane]) {
                        *a += wk * v;
                    }
                }
                let logit = cam.iter().sum::<f32>() / plane.max(1) as f32;
                ClassScore {
                    logit,
                    probability: 1.0 / (1.0 + (-logit).exp()),
                    cam,
                    grid: (gh, gw),
                }
            })
            .collect())
    }

    /// The CAM of a score at `size`, bilinearly upsampled (values in logit units).
    pub fn cam_map(score: &ClassScore, size: (usize, usize)) -> Result<AnomalyMap, RegressError> {
        let up = upsample(&score.cam, score.grid, size, MapUpsample::Bilinear);
        Ok(AnomalyMap::new(size.1, size.0, up)?)
    }

    /// The recipe's localisation: pixels whose CAM, min-max normalised over the image, reaches
    /// `cam_threshold`.
    pub fn cam_region(&self, map: &AnomalyMap) -> Vec<bool> {
        let v = map.as_slice();
        let (lo, hi) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let range = (hi - lo).max(1e-12);
        v.iter()
            .map(|&x| (x - lo) / range >= self.config.cam_threshold)
            .collect()
    }
}

/// What [`SupervisedClassifier::fit_features`] trains: the optional last stage of the
/// backbone and the 2-way dense layer.
#[derive(Module, Debug)]
struct Trainable {
    /// The last stage as a per-pixel dense layer (ReLU6 after it), when fine-tuning.
    stage: Option<Mlp>,
    /// The 2-way dense layer on the pooled features.
    dense: Mlp,
}

/// Images per chunk when the stage or the head run over many images outside training.
const EVAL_CHUNK: usize = 32;

impl Trainable {
    /// Class logits of `images` images.
    ///
    /// # Shapes
    /// - `x`: `[images * pixels, c]`: pixel rows with a stage, pooled features (one row per
    ///   image) without
    /// - returns `[images, 2]`
    fn forward(&self, x: Tensor<2>, images: usize) -> Tensor<2> {
        let pooled = match &self.stage {
            None => x,
            Some(stage) => {
                let y = stage.forward(x).clamp(0.0, 6.0);
                let [rows, c] = y.dims();
                y.reshape([images, rows / images.max(1), c])
                    .mean_dim(1)
                    .reshape([images, c])
            }
        };
        self.dense.forward(pooled)
    }
}

/// `logit(defective) - logit(good)` of every image of `inputs` (`per_image` rows of `c`
/// values each), in chunks of [`EVAL_CHUNK`] images.
fn logits_of(
    model: &Trainable,
    inputs: &[f32],
    per_image: usize,
    c: usize,
    device: &Device,
) -> Result<Vec<f32>, RegressError> {
    let per = (per_image * c).max(1);
    let mut out = Vec::with_capacity(inputs.len() / per);
    for chunk in inputs.chunks(EVAL_CHUNK * per) {
        let m = chunk.len() / per;
        let x = Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [m * per_image, c]), device);
        let z = read_f32(model.forward(x, m))?;
        out.extend(z.chunks(2).map(|p| p[1] - p[0]));
    }
    Ok(out)
}

/// The fine-tuned stage over every pixel of `features`: the maps the CAM is read from.
fn apply_stage(
    stage: &Mlp,
    features: &FeatureMaps,
    device: &Device,
) -> Result<FeatureMaps, RegressError> {
    let (c, grid) = (features.channels(), features.grid());
    let per = grid.0 * grid.1 * c;
    let width = stage.dims().last().copied().unwrap_or(0);
    let rows = features.pixel_rows();
    let mut out = Vec::with_capacity(features.len() * grid.0 * grid.1 * width);
    for chunk in rows.chunks((EVAL_CHUNK * per).max(1)) {
        let x = Tensor::<2>::from_data(
            TensorData::new(chunk.to_vec(), [chunk.len() / c, c]),
            device,
        );
        out.extend(read_f32(stage.forward(x).clamp(0.0, 6.0))?);
    }
    FeatureMaps::from_pixel_rows(&out, features.len(), width, grid)
}

impl Detector for SupervisedClassifier {
    type Error = RegressError;

    fn name(&self) -> &'static str {
        "classifier"
    }

    fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    // Images per backbone pass; `config.batch_size` is the training batch of pooled features.
    #[allow(clippy::misnamed_getters)]
    fn batch_size(&self) -> usize {
        self.config.forward_batch
    }

    fn set_epoch_callback(&mut self, callback: Option<EpochCallback>) {
        self.on_epoch = callback;
    }

    /// A detector's `fit` sees good images only: a classifier cannot learn from them, and says
    /// so ([`RegressError::SingleClass`]) instead of answering "good" for everything. Train it
    /// with [`SupervisedClassifier::fit_labelled`].
    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, RegressError>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let mut any = false;
        for b in batches {
            b.map_err(|e| RegressError::Input(e.into()))?;
            any = true;
        }
        if !any {
            return Err(RegressError::NoTrainingImages);
        }
        Err(RegressError::SingleClass {
            present: "good",
            missing: "defective",
        })
    }

    /// Score = the defect log-odds; map = the CAM at the batch's pixel grid.
    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, RegressError> {
        let size = self.image_size.ok_or(RegressError::NotFitted)?;
        if (batch.height(), batch.width()) != size {
            return Err(RegressError::BatchShape {
                got: batch.shape(),
                expected: format!("[_, 3, {}, {}]", size.0, size.1),
            });
        }
        let features = self.features(batch)?;
        self.score_features(&features)?
            .iter()
            .map(|s| {
                Ok(Prediction {
                    score: s.logit,
                    map: Self::cam_map(s, size)?,
                    is_anomalous: self.threshold.as_ref().map(|t| t.is_anomalous(s.logit)),
                })
            })
            .collect()
    }

    fn save(&self, path: &std::path::Path) -> Result<(), RegressError> {
        SupervisedClassifier::save(self, path)
    }

    fn threshold(&self) -> Option<&Threshold> {
        self.threshold.as_ref()
    }

    fn set_threshold(&mut self, threshold: Option<Threshold>) {
        self.threshold = threshold;
    }
}
