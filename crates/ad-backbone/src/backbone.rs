//! The public face of the crate: pick an architecture and named taps, load weights, get the
//! feature maps.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::efficientnet::{EfficientNet, EfficientNetSpec};
use crate::error::{BackboneError, Result};
use crate::fused::FusedLite;
use crate::layers::{Loader, Source};
use crate::pretrained::Pretrained;
use crate::resnet::{ResNet, ResNetSpec};
use crate::state_dict::StateDict;
use crate::vgg::{Vgg, VggSpec};

/// A supported architecture (config files use [`name`](Self::name): `"efficientnet-lite0"`,
/// `"wide_resnet50_2"`, ...; `-` and `_` are interchangeable).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackboneKind {
    /// EfficientNet-Lite0 (4.7 M parameters, 224 px native); the default.
    #[default]
    #[serde(rename = "efficientnet-lite0", alias = "efficientnet_lite0")]
    EfficientNetLite0,
    /// EfficientNet-Lite1 (240 px native).
    #[serde(rename = "efficientnet-lite1", alias = "efficientnet_lite1")]
    EfficientNetLite1,
    /// EfficientNet-Lite2 (260 px native).
    #[serde(rename = "efficientnet-lite2", alias = "efficientnet_lite2")]
    EfficientNetLite2,
    /// EfficientNet-Lite3 (280 px native).
    #[serde(rename = "efficientnet-lite3", alias = "efficientnet_lite3")]
    EfficientNetLite3,
    /// EfficientNet-Lite4 (300 px native).
    #[serde(rename = "efficientnet-lite4", alias = "efficientnet_lite4")]
    EfficientNetLite4,
    /// torchvision `resnet18` (PaDiM's default, layers 1-3).
    #[serde(rename = "resnet18")]
    ResNet18,
    /// torchvision `resnet34`.
    #[serde(rename = "resnet34")]
    ResNet34,
    /// torchvision `resnet50`.
    #[serde(rename = "resnet50")]
    ResNet50,
    /// torchvision `resnet101`.
    #[serde(rename = "resnet101")]
    ResNet101,
    /// torchvision `wide_resnet50_2` (PatchCore's default, layers 2-3).
    #[serde(rename = "wide_resnet50_2", alias = "wide-resnet50-2")]
    WideResNet50_2,
    /// torchvision `wide_resnet101_2`.
    #[serde(rename = "wide_resnet101_2", alias = "wide-resnet101-2")]
    WideResNet101_2,
    /// torchvision `vgg16` (no batch-norm; the supervised recipe's backbone).
    #[serde(rename = "vgg16")]
    Vgg16,
}

impl BackboneKind {
    /// Every kind.
    pub const ALL: [BackboneKind; 12] = [
        Self::EfficientNetLite0,
        Self::EfficientNetLite1,
        Self::EfficientNetLite2,
        Self::EfficientNetLite3,
        Self::EfficientNetLite4,
        Self::ResNet18,
        Self::ResNet34,
        Self::ResNet50,
        Self::ResNet101,
        Self::WideResNet50_2,
        Self::WideResNet101_2,
        Self::Vgg16,
    ];

    /// Name as used on command lines and in identities (`efficientnet-lite0`,
    /// `wide_resnet50_2`, ...; torchvision / lukemelas spelling).
    pub fn name(self) -> &'static str {
        match self {
            Self::EfficientNetLite0 => "efficientnet-lite0",
            Self::EfficientNetLite1 => "efficientnet-lite1",
            Self::EfficientNetLite2 => "efficientnet-lite2",
            Self::EfficientNetLite3 => "efficientnet-lite3",
            Self::EfficientNetLite4 => "efficientnet-lite4",
            Self::ResNet18 => "resnet18",
            Self::ResNet34 => "resnet34",
            Self::ResNet50 => "resnet50",
            Self::ResNet101 => "resnet101",
            Self::WideResNet50_2 => "wide_resnet50_2",
            Self::WideResNet101_2 => "wide_resnet101_2",
            Self::Vgg16 => "vgg16",
        }
    }

    /// Parse a [`name`](Self::name) (also accepts `_`/`-` interchangeably, any case).
    pub fn from_name(name: &str) -> Option<Self> {
        let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
        let n = norm(name);
        Self::ALL.into_iter().find(|k| norm(k.name()) == n)
    }

    /// The tap at the end of the stage whose output has stride `stride` (4, 8, 16 or 32) to
    /// the input: the last EfficientNet block at that stride, or the ResNet layer
    /// (`layer1` = 4 ... `layer4` = 32). `None` when no stage has that stride.
    pub fn tap_at_stride(self, stride: usize) -> Option<String> {
        match self.arch() {
            Arch::Eff(spec) => spec
                .block_strides
                .iter()
                .rposition(|&s| s == stride)
                .map(|i| format!("blocks.{i}")),
            Arch::Res(_) => match stride {
                4 => Some("layer1".into()),
                8 => Some("layer2".into()),
                16 => Some("layer3".into()),
                32 => Some("layer4".into()),
                _ => None,
            },
            Arch::Vgg(v) => v.tap_at_stride(stride),
        }
    }

    /// `(channels, stride)` of a tap's output, without building the network.
    pub fn tap_shape(self, tap: &str) -> Result<(usize, usize)> {
        let arch = self.arch();
        let stage = arch.parse_tap(self, tap)?;
        Ok(arch.stage_shape(stage))
    }

    /// [`tap_at_stride`](Self::tap_at_stride) for each stride, finest first; `None` if one is
    /// missing.
    pub fn taps_at_strides(self, strides: &[usize]) -> Option<Vec<String>> {
        strides.iter().map(|&s| self.tap_at_stride(s)).collect()
    }

    /// The taps PatchCore uses by default: strides 8 and 16 (blocks 4 and 10 for
    /// EfficientNet-Lite0; `layer2`, `layer3` for the ResNets, the paper's choice).
    pub fn default_taps(self) -> Vec<String> {
        self.taps_at_strides(&[8, 16]).unwrap_or_default()
    }

    /// Pinned pretrained weights that [`Pretrained::ensure`] can fetch, if any.
    pub fn pretrained(self) -> Option<Pretrained> {
        match self {
            Self::EfficientNetLite0 => Some(Pretrained::EfficientNetLite0),
            Self::EfficientNetLite1 => Some(Pretrained::EfficientNetLite1),
            Self::EfficientNetLite2 => Some(Pretrained::EfficientNetLite2),
            _ => None,
        }
    }

    fn arch(self) -> Arch {
        match self {
            Self::EfficientNetLite0 => Arch::Eff(EfficientNetSpec::lite(0)),
            Self::EfficientNetLite1 => Arch::Eff(EfficientNetSpec::lite(1)),
            Self::EfficientNetLite2 => Arch::Eff(EfficientNetSpec::lite(2)),
            Self::EfficientNetLite3 => Arch::Eff(EfficientNetSpec::lite(3)),
            Self::EfficientNetLite4 => Arch::Eff(EfficientNetSpec::lite(4)),
            Self::ResNet18 => Arch::Res(ResNetSpec::new([2, 2, 2, 2], None)),
            Self::ResNet34 => Arch::Res(ResNetSpec::new([3, 4, 6, 3], None)),
            Self::ResNet50 => Arch::Res(ResNetSpec::new([3, 4, 6, 3], Some(64))),
            Self::ResNet101 => Arch::Res(ResNetSpec::new([3, 4, 23, 3], Some(64))),
            Self::WideResNet50_2 => Arch::Res(ResNetSpec::new([3, 4, 6, 3], Some(128))),
            Self::WideResNet101_2 => Arch::Res(ResNetSpec::new([3, 4, 23, 3], Some(128))),
            Self::Vgg16 => Arch::Vgg(VggSpec),
        }
    }
}

impl fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

enum Arch {
    Eff(EfficientNetSpec),
    Res(ResNetSpec),
    Vgg(VggSpec),
}

impl Arch {
    fn num_stages(&self) -> usize {
        match self {
            Arch::Eff(s) => s.num_stages(),
            Arch::Res(_) => 5,
            Arch::Vgg(v) => v.num_stages(),
        }
    }

    /// Stage index of a tap name.
    fn parse_tap(&self, kind: BackboneKind, tap: &str) -> Result<usize> {
        let stage = match self {
            Arch::Eff(s) => match tap {
                "stem" => Some(0),
                "head" => Some(s.blocks.len() + 1),
                _ => tap
                    .strip_prefix("blocks.")
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&n| n < s.blocks.len())
                    .map(|n| n + 1),
            },
            Arch::Res(_) => match tap {
                "stem" => Some(0),
                "layer1" => Some(1),
                "layer2" => Some(2),
                "layer3" => Some(3),
                "layer4" => Some(4),
                _ => None,
            },
            Arch::Vgg(v) => v.parse_tap(tap),
        };
        stage.ok_or_else(|| BackboneError::UnknownTap {
            tap: tap.to_string(),
            kind: kind.name().to_string(),
            valid: match self {
                Arch::Eff(s) => format!(
                    "\"stem\", \"blocks.0\" ..= \"blocks.{}\", \"head\"",
                    s.blocks.len() - 1
                ),
                Arch::Res(_) => "\"stem\", \"layer1\" ..= \"layer4\"".to_string(),
                Arch::Vgg(_) => VggSpec::tap_names(),
            },
        })
    }

    fn stage_shape(&self, stage: usize) -> (usize, usize) {
        match self {
            Arch::Eff(s) => s.stage_shape(stage),
            Arch::Res(s) => s.stage_shape(stage),
            Arch::Vgg(s) => s.stage_shape(stage),
        }
    }

    fn all_keys(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            Arch::Eff(s) => s.all_keys(),
            Arch::Res(s) => s.all_keys(),
            Arch::Vgg(s) => s.all_keys(),
        }
    }

    fn build(
        &self,
        loader: &mut Loader<'_>,
        last: usize,
        classifier: bool,
        device: &Device,
    ) -> Result<Net> {
        Ok(match self {
            Arch::Eff(s) => Net::EfficientNet(s.build(loader, last, classifier, device)?),
            Arch::Res(s) => Net::ResNet(s.build(loader, last, classifier, device)?),
            Arch::Vgg(s) => Net::Vgg(s.build(loader, last, classifier, device)?),
        })
    }
}

/// The built network (truncated after the deepest tap).
#[derive(Debug)]
pub enum Net {
    /// An EfficientNet-Lite.
    EfficientNet(EfficientNet),
    /// A ResNet / WideResNet.
    ResNet(ResNet),
    /// VGG-16.
    Vgg(Vgg),
}

impl Net {
    fn forward_stages(&self, x: Tensor<4>, stages: &[usize]) -> Vec<Tensor<4>> {
        match self {
            Net::EfficientNet(n) => n.forward_stages(x, stages),
            Net::ResNet(n) => n.forward_stages(x, stages),
            Net::Vgg(n) => n.forward_stages(x, stages),
        }
    }
}

/// Where a backbone's weights come from (config files: `"pretrained"`,
/// `{ file = "wide_resnet50_2.pth" }`, `{ random = { seed = 0 } }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// A checkpoint file: PyTorch `.pth` (zip or legacy format) or safetensors, with the
    /// key names of torchvision (ResNets) or lukemelas' EfficientNet-PyTorch.
    File(PathBuf),
    /// The pinned pretrained weights of the kind (EfficientNet-Lite0..2), fetched and cached
    /// by [`Pretrained::ensure`].
    Pretrained,
    /// Deterministic stand-in weights from [`crate::formula_tensor`] (tests, timing).
    Random {
        /// Seed of the formula.
        seed: u64,
    },
}

/// Unchecked description of a backbone; [`init`](Self::init) validates and loads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackboneConfig {
    /// Architecture.
    pub kind: BackboneKind,
    /// Tap names (`"blocks.4"`, `"layer2"`, `"stem"`, ...), outputs come back in this order.
    pub taps: Vec<String>,
    /// Weight source.
    pub weights: Weights,
}

impl BackboneConfig {
    /// The kind with its [default taps](BackboneKind::default_taps) and the given weights.
    pub fn new(kind: BackboneKind, weights: Weights) -> Self {
        Self {
            kind,
            taps: kind.default_taps(),
            weights,
        }
    }

    /// Replace the taps.
    pub fn with_taps<S: AsRef<str>>(mut self, taps: &[S]) -> Self {
        self.taps = taps.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// Validate the taps, load the weights and build the network on `device`.
    pub fn init(&self, device: &Device) -> Result<Backbone> {
        match &self.weights {
            Weights::File(path) => Backbone::load(self.kind, path, &self.taps, device),
            Weights::Random { seed } => Backbone::random(self.kind, &self.taps, *seed, device),
            Weights::Pretrained => {
                let pre = self.kind.pretrained().ok_or_else(|| BackboneError::Checkpoint {
                    path: PathBuf::new(),
                    message: format!(
                        "no pinned pretrained weights for {}; pass Weights::File with torchvision's \
                         checkpoint (see the crate documentation)",
                        self.kind
                    ),
                })?;
                let path = pre.ensure()?;
                Backbone::load(self.kind, &path, &self.taps, device)
            }
        }
    }
}

/// A CNN trunk with named taps, batch-norm folded, ready for inference.
///
/// ```no_run
/// use ad_backbone::{Backbone, BackboneKind, Pretrained};
/// use burn::prelude::*;
///
/// let device = Device::default();
/// let weights = Pretrained::EfficientNetLite0.ensure()?;
/// let bb = Backbone::load(BackboneKind::EfficientNetLite0, &weights, &["blocks.4", "blocks.10"], &device)?;
/// let x = Tensor::<4>::zeros([2, 3, 256, 256], &device); // ImageNet-normalised RGB
/// let maps = bb.forward(x);
/// assert_eq!(maps[0].dims(), [2, 40, 32, 32]);
/// assert_eq!(maps[1].dims(), [2, 112, 16, 16]);
/// # Ok::<(), ad_backbone::BackboneError>(())
/// ```
#[derive(Debug)]
pub struct Backbone {
    net: Net,
    kind: BackboneKind,
    taps: Vec<String>,
    stages: Vec<usize>,
    channels: Vec<usize>,
    strides: Vec<usize>,
    identity: String,
    /// Host copy of an EfficientNet's blocks for the fused CPU path, made on first use.
    fused: OnceLock<Option<FusedLite>>,
}

impl Backbone {
    fn validate<S: AsRef<str>>(
        kind: BackboneKind,
        taps: &[S],
    ) -> Result<(Arch, Vec<String>, Vec<usize>)> {
        let arch = kind.arch();
        let names: Vec<String> = taps.iter().map(|s| s.as_ref().to_string()).collect();
        if names.is_empty() {
            return Err(BackboneError::InvalidTaps {
                taps: names,
                reason: "at least one tap is needed".into(),
            });
        }
        let stages = names
            .iter()
            .map(|t| arch.parse_tap(kind, t))
            .collect::<Result<Vec<_>>>()?;
        for (i, s) in stages.iter().enumerate() {
            if stages[..i].contains(s) {
                return Err(BackboneError::InvalidTaps {
                    taps: names.clone(),
                    reason: format!("`{}` is requested twice", names[i]),
                });
            }
        }
        Ok((arch, names, stages))
    }

    fn assemble(
        kind: BackboneKind,
        arch: &Arch,
        net: Net,
        taps: Vec<String>,
        stages: Vec<usize>,
        identity: String,
    ) -> Self {
        let (channels, strides) = stages.iter().map(|&s| arch.stage_shape(s)).unzip();
        Self {
            net,
            kind,
            taps,
            stages,
            channels,
            strides,
            identity,
            fused: OnceLock::new(),
        }
    }

    /// Build `kind` up to its deepest tap from a checkpoint.
    ///
    /// The checkpoint must hold every tensor of the stages that are built, with the shapes
    /// of the architecture; tensors of later stages and of the classifier are checked for
    /// shape but otherwise ignored, and `num_batches_tracked` counters are ignored. Anything
    /// else is an error: [`BackboneError::MissingKey`], [`BackboneError::ShapeMismatch`],
    /// [`BackboneError::UnexpectedKeys`].
    pub fn load<S: AsRef<str>>(
        kind: BackboneKind,
        weights: impl AsRef<Path>,
        taps: &[S],
        device: &Device,
    ) -> Result<Self> {
        let (arch, taps, stages) = Self::validate(kind, taps)?;
        let path = weights.as_ref();
        let sd = StateDict::open(path)?;
        let last = stages.iter().copied().max().unwrap_or(0);
        let mut loader = Loader::new(Source::File(&sd));
        let net = arch.build(&mut loader, last, false, device)?;
        loader.finish(&arch.all_keys())?;
        let identity = format!("{}:sha256={}", kind.name(), sha256_file(path)?);
        Ok(Self::assemble(kind, &arch, net, taps, stages, identity))
    }

    /// Build `kind` up to its deepest tap with deterministic stand-in weights
    /// ([`crate::formula_tensor`] with `seed`), for tests and timing.
    pub fn random<S: AsRef<str>>(
        kind: BackboneKind,
        taps: &[S],
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let (arch, taps, stages) = Self::validate(kind, taps)?;
        let last = stages.iter().copied().max().unwrap_or(0);
        let mut loader = Loader::new(Source::Formula(seed));
        let net = arch.build(&mut loader, last, false, device)?;
        let identity = format!("{}:formula-seed={seed}", kind.name());
        Ok(Self::assemble(kind, &arch, net, taps, stages, identity))
    }

    /// Feature maps of the taps, in the order they were requested. The forward pass stops
    /// after the deepest tap.
    ///
    /// # Shapes
    /// `x`: `[B, 3, H, W]`, RGB normalised with the ImageNet mean and standard deviation.
    /// Output `i`: `[B, tap_channels()[i], ceil(H / s), ceil(W / s)]` with
    /// `s = tap_strides()[i]` for EfficientNet (TensorFlow "SAME" padding), and
    /// `floor`-based sizes that equal `H / s` for `H` divisible by `s` for the ResNets.
    /// EfficientNet-Lite0 at 256x256: `blocks.4` -> `[B, 40, 32, 32]`,
    /// `blocks.10` -> `[B, 112, 16, 16]`. WideResNet-50-2: `layer2` -> `[B, 512, 32, 32]`,
    /// `layer3` -> `[B, 1024, 16, 16]`.
    ///
    /// # Panics
    /// When `x` does not have 3 channels (Burn's convolution checks the shape).
    ///
    /// # Threads
    /// On the CPU backend (flex) a batch of `B > 1` images is split into up to
    /// `rayon::current_num_threads()` chunks that run at the same time, one per thread, and
    /// the maps are concatenated again: flex parallelises single convolutions poorly on few
    /// cores, whole images well. Results are the same as [`forward_unsplit`](Self::forward_unsplit).
    ///
    /// # CPU fast path
    /// On flex an EfficientNet-Lite runs on reused host buffers with the bias, ReLU6 and skip
    /// passes fused into the convolutions (module `fused`, about 2.4x faster at 256 px): the same
    /// arithmetic in the same order, so the maps are bit-identical to
    /// [`forward_unsplit`](Self::forward_unsplit)'s. It is an inference path: an input that
    /// requires gradients takes Burn's operations.
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let on_cpu = x.device() == Device::flex();
        if on_cpu
            && !x.is_require_grad()
            && let Net::EfficientNet(net) = &self.net
            && let Some(fused) = self.fused.get_or_init(|| FusedLite::new(net))
            && let Some(maps) = fused.forward_stages(x.clone(), &self.stages)
        {
            return maps;
        }
        let batch = x.dims()[0];
        let workers = rayon::current_num_threads().min(batch);
        if workers < 2 || !on_cpu {
            return self.forward_unsplit(x);
        }
        use rayon::prelude::*;
        let parts: Vec<Vec<Tensor<4>>> = x
            .chunk(workers, 0)
            .into_par_iter()
            .map(|part| self.net.forward_stages(part, &self.stages))
            .collect();
        (0..self.stages.len())
            .map(|i| Tensor::cat(parts.iter().map(|p| p[i].clone()).collect(), 0))
            .collect()
    }

    /// [`forward`](Self::forward) on the whole batch at once through Burn's operations (each
    /// parallelised by the backend itself; no fused CPU path): the reference the fast paths
    /// are tested against.
    pub fn forward_unsplit(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        self.net.forward_stages(x, &self.stages)
    }

    /// Channels of each tap, in tap order.
    pub fn tap_channels(&self) -> Vec<usize> {
        self.channels.clone()
    }

    /// Cumulative stride (input pixels per feature-map cell) of each tap, in tap order.
    pub fn tap_strides(&self) -> Vec<usize> {
        self.strides.clone()
    }

    /// Tap names, in order.
    pub fn taps(&self) -> &[String] {
        &self.taps
    }

    /// The architecture.
    pub fn kind(&self) -> BackboneKind {
        self.kind
    }

    /// Identity of architecture and weights, e.g.
    /// `efficientnet-lite0:sha256=5793...77db` (SHA-256 of the checkpoint file) or
    /// `resnet18:formula-seed=0`. Detectors store it to refuse features from other weights.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The underlying network.
    pub fn net(&self) -> &Net {
        &self.net
    }
}

/// An ImageNet classifier (the full network with its head), for checking weights.
#[derive(Debug)]
pub struct Classifier {
    net: Net,
    kind: BackboneKind,
}

impl Classifier {
    /// Load the full network of `kind`, classifier included, from a checkpoint. Every tensor
    /// of the architecture must be present.
    pub fn load(kind: BackboneKind, weights: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let arch = kind.arch();
        let sd = StateDict::open(weights.as_ref())?;
        let mut loader = Loader::new(Source::File(&sd));
        let net = arch.build(&mut loader, arch.num_stages() - 1, true, device)?;
        loader.finish(&arch.all_keys())?;
        Ok(Self { net, kind })
    }

    /// The full network with deterministic stand-in weights ([`crate::formula_tensor`] with
    /// `seed`), for parity tests.
    pub fn random(kind: BackboneKind, seed: u64, device: &Device) -> Result<Self> {
        let arch = kind.arch();
        let mut loader = Loader::new(Source::Formula(seed));
        let net = arch.build(&mut loader, arch.num_stages() - 1, true, device)?;
        Ok(Self { net, kind })
    }

    /// The architecture.
    pub fn kind(&self) -> BackboneKind {
        self.kind
    }

    /// ImageNet logits.
    ///
    /// # Shapes
    /// `[B, 3, H, W]` (ImageNet-normalised) -> `[B, 1000]`.
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let out = match &self.net {
            Net::EfficientNet(n) => n.logits(x),
            Net::ResNet(n) => n.logits(x),
            Net::Vgg(n) => n.logits(x),
        };
        // Both networks are built with their classifier in `load`.
        match out {
            Some(t) => t,
            None => unreachable!("classifier built in Classifier::load"),
        }
    }
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|source| BackboneError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|source| BackboneError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
