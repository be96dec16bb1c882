//! EfficientNet-Lite0..4 (Tan & Le; the "lite" variants: ReLU6, no squeeze-excitation, stem
//! and head not scaled), in the layout and key names of lukemelas' EfficientNet-PyTorch as
//! used by the `efficientnet-lite-pytorch` package.
//!
//! Stem: conv 3x3 stride 2 (32 channels) + BN + ReLU6. Then MBConv blocks (expand 1x1 ->
//! depthwise kxk -> project 1x1, each with BN, ReLU6 after the first two, identity skip when
//! stride is 1 and in == out). Head: conv 1x1 (1280) + BN + ReLU6, global average pooling and
//! a linear classifier. Every convolution pads TensorFlow-"SAME" (asymmetric when strided),
//! as the weights were trained; batch-norm eps is 1e-3.

use burn::prelude::*;
use burn::tensor::activation::relu6;

use crate::error::Result;
use crate::layers::{ConvBnSpec, Dense, FoldedConv, Loader, Pad};

/// Base (Lite0) block stages: (repeats, kernel, stride, expand, in, out).
const BASE_STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

const BN_EPS: f64 = 1e-3;
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;
/// ImageNet classes of the classifier.
pub const NUM_CLASSES: usize = 1000;

/// Width coefficient, depth coefficient and native resolution of EfficientNet-Lite`variant`
/// (TensorFlow's `efficientnet_lite_builder.py`).
pub fn lite_coefficients(variant: u8) -> (f64, f64, usize) {
    match variant {
        0 => (1.0, 1.0, 224),
        1 => (1.0, 1.1, 240),
        2 => (1.1, 1.2, 260),
        3 => (1.2, 1.4, 280),
        _ => (1.4, 1.8, 300),
    }
}

/// Channel count scaled by `width` and rounded to a multiple of 8 (never down by > 10 %).
fn round_filters(filters: usize, width: f64) -> usize {
    let f = filters as f64 * width;
    let divisor = 8.0;
    let mut new = ((f + divisor / 2.0) / divisor).floor() * divisor;
    new = new.max(divisor);
    if new < 0.9 * f {
        new += divisor;
    }
    new as usize
}

/// One MBConv block as stored in the checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct MbConvSpec {
    pub expand: Option<ConvBnSpec>,
    pub depthwise: ConvBnSpec,
    pub project: ConvBnSpec,
    pub skip: bool,
}

/// The whole network as stored in the checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct EfficientNetSpec {
    pub stem: ConvBnSpec,
    pub blocks: Vec<MbConvSpec>,
    pub head: ConvBnSpec,
    /// Cumulative stride after each block.
    pub block_strides: Vec<usize>,
}

fn conv_bn(
    conv: String,
    bn: String,
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
) -> ConvBnSpec {
    ConvBnSpec {
        conv,
        bn,
        in_ch,
        out_ch,
        kernel,
        stride,
        groups,
        pad: Pad::TfSame,
        eps: BN_EPS,
    }
}

impl EfficientNetSpec {
    /// EfficientNet-Lite`variant` (0..=4).
    pub fn lite(variant: u8) -> Self {
        let (width, depth, _) = lite_coefficients(variant);
        let stem = conv_bn(
            "_conv_stem".into(),
            "_bn0".into(),
            3,
            STEM_CHANNELS,
            3,
            2,
            1,
        );
        let mut blocks = Vec::new();
        let mut block_strides = Vec::new();
        let mut total_stride = 2;
        let last = BASE_STAGES.len() - 1;
        for (si, &(r, k, s, e, i, o)) in BASE_STAGES.iter().enumerate() {
            // Lite: the first and last stages are not repeated more, the stem width is fixed.
            let fixed = si == 0 || si == last;
            let repeats = if fixed {
                r
            } else {
                (depth * r as f64).ceil() as usize
            };
            let mut in_ch = if si == 0 {
                STEM_CHANNELS
            } else {
                round_filters(i, width)
            };
            let out_ch = round_filters(o, width);
            for rep in 0..repeats {
                let n = blocks.len();
                let stride = if rep == 0 { s } else { 1 };
                let mid = in_ch * e;
                let p = |name: &str| format!("_blocks.{n}.{name}");
                let expand =
                    (e != 1).then(|| conv_bn(p("_expand_conv"), p("_bn0"), in_ch, mid, 1, 1, 1));
                let depthwise = conv_bn(p("_depthwise_conv"), p("_bn1"), mid, mid, k, stride, mid);
                let project = conv_bn(p("_project_conv"), p("_bn2"), mid, out_ch, 1, 1, 1);
                total_stride *= stride;
                blocks.push(MbConvSpec {
                    expand,
                    depthwise,
                    project,
                    skip: stride == 1 && in_ch == out_ch,
                });
                block_strides.push(total_stride);
                in_ch = out_ch;
            }
        }
        let last_ch = blocks.last().map_or(STEM_CHANNELS, |b| b.project.out_ch);
        let head = conv_bn(
            "_conv_head".into(),
            "_bn1".into(),
            last_ch,
            HEAD_CHANNELS,
            1,
            1,
            1,
        );
        Self {
            stem,
            blocks,
            head,
            block_strides,
        }
    }

    /// Number of stages: stem, each block, head.
    pub fn num_stages(&self) -> usize {
        self.blocks.len() + 2
    }

    /// Output channels and cumulative stride of stage `s` (0 = stem, 1..=n blocks, n+1 head).
    pub fn stage_shape(&self, s: usize) -> (usize, usize) {
        let n = self.blocks.len();
        if s == 0 {
            (STEM_CHANNELS, 2)
        } else if s <= n {
            (self.blocks[s - 1].project.out_ch, self.block_strides[s - 1])
        } else {
            (
                HEAD_CHANNELS,
                self.block_strides.last().copied().unwrap_or(2),
            )
        }
    }

    /// All state-dict keys with shapes (including the classifier).
    pub fn all_keys(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        self.stem.keys(&mut out);
        for b in &self.blocks {
            if let Some(e) = &b.expand {
                e.keys(&mut out);
            }
            b.depthwise.keys(&mut out);
            b.project.keys(&mut out);
        }
        self.head.keys(&mut out);
        out.push(("_fc.weight".into(), vec![NUM_CLASSES, HEAD_CHANNELS]));
        out.push(("_fc.bias".into(), vec![NUM_CLASSES]));
        out
    }

    /// Build stages `0..=last_stage` (and the classifier when `classifier`).
    pub fn build(
        &self,
        loader: &mut Loader<'_>,
        last_stage: usize,
        classifier: bool,
        device: &Device,
    ) -> Result<EfficientNet> {
        let stem = self.stem.build(loader, device)?;
        let n_blocks = last_stage.min(self.blocks.len());
        let mut blocks = Vec::with_capacity(n_blocks);
        for b in &self.blocks[..n_blocks] {
            blocks.push(MbConv {
                expand: b
                    .expand
                    .as_ref()
                    .map(|e| e.build(loader, device))
                    .transpose()?,
                depthwise: b.depthwise.build(loader, device)?,
                project: b.project.build(loader, device)?,
                skip: b.skip,
            });
        }
        let head = if last_stage > self.blocks.len() || classifier {
            Some(self.head.build(loader, device)?)
        } else {
            None
        };
        let classifier = if classifier {
            Some(Dense::build(
                loader,
                "_fc",
                HEAD_CHANNELS,
                NUM_CLASSES,
                device,
            )?)
        } else {
            None
        };
        Ok(EfficientNet {
            stem,
            blocks,
            head,
            classifier,
        })
    }
}

/// Mobile inverted bottleneck block (no squeeze-excitation).
#[derive(Module, Debug)]
pub struct MbConv {
    /// 1x1 expansion (absent when the expansion ratio is 1).
    pub expand: Option<FoldedConv>,
    /// Depthwise kxk convolution (carries the stride).
    pub depthwise: FoldedConv,
    /// 1x1 linear projection.
    pub project: FoldedConv,
    /// Identity skip connection.
    pub skip: bool,
}

impl MbConv {
    /// # Shapes
    /// `[B, in, H, W] -> [B, out, ceil(H/s), ceil(W/s)]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = match &self.expand {
            Some(e) => relu6(e.forward(x.clone())),
            None => x.clone(),
        };
        h = relu6(self.depthwise.forward(h));
        h = self.project.forward(h);
        if self.skip { h + x } else { h }
    }
}

/// EfficientNet-Lite trunk, possibly truncated after some block, with batch-norm folded.
#[derive(Module, Debug)]
pub struct EfficientNet {
    /// Stem convolution (3x3, stride 2).
    pub stem: FoldedConv,
    /// The MBConv blocks that were built.
    pub blocks: Vec<MbConv>,
    /// Head 1x1 convolution to 1280 channels, if built.
    pub head: Option<FoldedConv>,
    /// ImageNet classifier, if built.
    pub classifier: Option<Dense>,
}

impl EfficientNet {
    /// Run stages `0..=max(stages)` and return the output of each stage in `stages`, in the
    /// order given (0 = stem, 1..=n blocks, n + 1 = head).
    pub(crate) fn forward_stages(&self, x: Tensor<4>, stages: &[usize]) -> Vec<Tensor<4>> {
        let last = stages.iter().copied().max().unwrap_or(0);
        let mut out: Vec<Option<Tensor<4>>> = vec![None; stages.len()];
        let mut keep = |s: usize, t: &Tensor<4>| {
            for (slot, &want) in out.iter_mut().zip(stages) {
                if want == s {
                    *slot = Some(t.clone());
                }
            }
        };
        // [B, 32, H/2, W/2]
        let mut h = relu6(self.stem.forward(x));
        keep(0, &h);
        for (i, block) in self.blocks.iter().enumerate() {
            if i + 1 > last {
                break;
            }
            h = block.forward(h);
            keep(i + 1, &h);
        }
        if last > self.blocks.len()
            && let Some(head) = &self.head
        {
            h = relu6(head.forward(h));
            keep(self.blocks.len() + 1, &h);
        }
        out.into_iter().flatten().collect()
    }

    /// ImageNet logits, when the network was built with its head and classifier.
    ///
    /// # Shapes
    /// `[B, 3, H, W] -> [B, 1000]`.
    pub fn logits(&self, x: Tensor<4>) -> Option<Tensor<2>> {
        let (head, classifier) = (self.head.as_ref()?, self.classifier.as_ref()?);
        let mut h = relu6(self.stem.forward(x));
        for block in &self.blocks {
            h = block.forward(h);
        }
        let h = relu6(head.forward(h));
        let [b, c, _, _] = h.dims();
        let pooled = h.mean_dim(3).mean_dim(2).reshape([b, c]);
        Some(classifier.forward(pooled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite0_layout_matches_the_checkpoint() {
        let spec = EfficientNetSpec::lite(0);
        assert_eq!(spec.blocks.len(), 16);
        // 296 tensors in efficientnet-lite0-57934424.pth.
        assert_eq!(spec.all_keys().len(), 296);
        assert_eq!(spec.stage_shape(5), (40, 8));
        assert_eq!(spec.stage_shape(11), (112, 16));
        assert_eq!(spec.stage_shape(17), (1280, 32));
        assert!(spec.blocks[0].expand.is_none());
        assert!(spec.blocks[2].skip && !spec.blocks[1].skip);
    }

    #[test]
    fn lite_scaling_matches_efficientnet_lite_pytorch() {
        // Block counts and widths printed by efficientnet_lite_pytorch.EfficientNet.from_name.
        let expect: [(u8, usize, [usize; 7]); 5] = [
            (0, 16, [16, 24, 40, 80, 112, 192, 320]),
            (1, 21, [16, 24, 40, 80, 112, 192, 320]),
            (2, 21, [16, 24, 48, 88, 120, 208, 352]),
            (3, 24, [24, 32, 48, 96, 136, 232, 384]),
            (4, 30, [24, 32, 56, 112, 160, 272, 448]),
        ];
        for (v, n, widths) in expect {
            let spec = EfficientNetSpec::lite(v);
            assert_eq!(spec.blocks.len(), n, "lite{v}");
            let mut outs: Vec<usize> = spec.blocks.iter().map(|b| b.project.out_ch).collect();
            outs.dedup();
            assert_eq!(outs, widths, "lite{v}");
            assert_eq!(spec.blocks[0].depthwise.in_ch, 32);
            assert_eq!(spec.head.out_ch, 1280);
        }
    }
}
