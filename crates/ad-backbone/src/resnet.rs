//! ResNet-18/34/50/101 and WideResNet-50-2/101-2 (He et al.; Zagoruyko & Komodakis) in
//! torchvision's layout and key names (`conv1`, `bn1`, `layer{1..4}.{i}.conv{1..3}`,
//! `layer{k}.0.downsample.{0,1}`, `fc`). Bottlenecks carry the stride on the 3x3
//! convolution ("ResNet v1.5"), as torchvision does; batch-norm eps is 1e-5.

use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

use crate::error::Result;
use crate::layers::{ConvBnSpec, Dense, FoldedConv, Loader, Pad};

const BN_EPS: f64 = 1e-5;
const NUM_CLASSES: usize = 1000;

/// A residual block as stored in the checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct BlockSpec {
    pub convs: Vec<ConvBnSpec>,
    pub downsample: Option<ConvBnSpec>,
}

/// The whole network as stored in the checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct ResNetSpec {
    pub stem: ConvBnSpec,
    pub layers: Vec<Vec<BlockSpec>>,
    pub out_channels: Vec<usize>,
}

fn spec(
    conv: String,
    bn: String,
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
) -> ConvBnSpec {
    ConvBnSpec {
        conv,
        bn,
        in_ch,
        out_ch,
        kernel,
        stride,
        groups: 1,
        pad: Pad::Symmetric(kernel / 2),
        eps: BN_EPS,
    }
}

impl ResNetSpec {
    /// `depths` blocks per layer; `bottleneck_width` is `None` for basic blocks, else the
    /// bottleneck width per 64 planes (64 for ResNet, 128 for WideResNet-x-2).
    pub fn new(depths: [usize; 4], bottleneck_width: Option<usize>) -> Self {
        let stem = spec("conv1".into(), "bn1".into(), 3, 64, 7, 2);
        let expansion = if bottleneck_width.is_some() { 4 } else { 1 };
        let mut in_ch = 64;
        let mut layers = Vec::new();
        let mut out_channels = Vec::new();
        for (li, &depth) in depths.iter().enumerate() {
            let planes = 64 << li;
            let out_ch = planes * expansion;
            let mut blocks = Vec::new();
            for bi in 0..depth {
                let stride = if li > 0 && bi == 0 { 2 } else { 1 };
                let p = |n: &str| format!("layer{}.{bi}.{n}", li + 1);
                let convs = match bottleneck_width {
                    Some(bw) => {
                        let width = planes * bw / 64;
                        vec![
                            spec(p("conv1"), p("bn1"), in_ch, width, 1, 1),
                            spec(p("conv2"), p("bn2"), width, width, 3, stride),
                            spec(p("conv3"), p("bn3"), width, out_ch, 1, 1),
                        ]
                    }
                    None => vec![
                        spec(p("conv1"), p("bn1"), in_ch, planes, 3, stride),
                        spec(p("conv2"), p("bn2"), planes, planes, 3, 1),
                    ],
                };
                let downsample = (stride != 1 || in_ch != out_ch).then(|| {
                    spec(
                        p("downsample.0"),
                        p("downsample.1"),
                        in_ch,
                        out_ch,
                        1,
                        stride,
                    )
                });
                blocks.push(BlockSpec { convs, downsample });
                in_ch = out_ch;
            }
            layers.push(blocks);
            out_channels.push(out_ch);
        }
        Self {
            stem,
            layers,
            out_channels,
        }
    }

    /// Output channels and stride of stage `s` (0 = stem after max-pool, 1..=4 layers).
    pub fn stage_shape(&self, s: usize) -> (usize, usize) {
        match s {
            0 => (64, 4),
            s => (self.out_channels[s - 1], 4 << (s - 1)),
        }
    }

    /// All state-dict keys with shapes (including the classifier).
    pub fn all_keys(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        self.stem.keys(&mut out);
        for layer in &self.layers {
            for b in layer {
                for c in &b.convs {
                    c.keys(&mut out);
                }
                if let Some(d) = &b.downsample {
                    d.keys(&mut out);
                }
            }
        }
        let last = self.out_channels[3];
        out.push(("fc.weight".into(), vec![NUM_CLASSES, last]));
        out.push(("fc.bias".into(), vec![NUM_CLASSES]));
        out
    }

    /// Build stages `0..=last_stage` (and the classifier when `classifier`).
    pub fn build(
        &self,
        loader: &mut Loader<'_>,
        last_stage: usize,
        classifier: bool,
        device: &Device,
    ) -> Result<ResNet> {
        let stem = self.stem.build(loader, device)?;
        let n_layers = if classifier { 4 } else { last_stage.min(4) };
        let mut layers = Vec::with_capacity(n_layers);
        for layer in &self.layers[..n_layers] {
            let mut blocks = Vec::with_capacity(layer.len());
            for b in layer {
                let convs = b
                    .convs
                    .iter()
                    .map(|c| c.build(loader, device))
                    .collect::<Result<Vec<_>>>()?;
                let downsample = b
                    .downsample
                    .as_ref()
                    .map(|d| d.build(loader, device))
                    .transpose()?;
                blocks.push(ResidualBlock { convs, downsample });
            }
            layers.push(ResLayer { blocks });
        }
        let classifier = if classifier {
            Some(Dense::build(
                loader,
                "fc",
                self.out_channels[3],
                NUM_CLASSES,
                device,
            )?)
        } else {
            None
        };
        Ok(ResNet {
            stem,
            layers,
            classifier,
        })
    }
}

/// Basic block (two 3x3) or bottleneck (1x1, 3x3, 1x1), batch-norm folded.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    /// The convolutions of the residual branch, ReLU between them.
    pub convs: Vec<FoldedConv>,
    /// Projection of the shortcut when the shape changes.
    pub downsample: Option<FoldedConv>,
}

impl ResidualBlock {
    /// # Shapes
    /// `[B, in, H, W] -> [B, out, H/s, W/s]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let n = self.convs.len();
        let mut h = x.clone();
        for (i, c) in self.convs.iter().enumerate() {
            h = c.forward(h);
            if i + 1 < n {
                h = relu(h);
            }
        }
        let shortcut = match &self.downsample {
            Some(d) => d.forward(x),
            None => x,
        };
        relu(h + shortcut)
    }
}

/// One of the four stages `layer1..layer4`.
#[derive(Module, Debug)]
pub struct ResLayer {
    /// Its residual blocks.
    pub blocks: Vec<ResidualBlock>,
}

/// ResNet trunk, possibly truncated after some layer, with batch-norm folded.
#[derive(Module, Debug)]
pub struct ResNet {
    /// `conv1` 7x7 stride 2 (+ `bn1`); ReLU and 3x3/2 max-pool follow in `forward`.
    pub stem: FoldedConv,
    /// The layers that were built.
    pub layers: Vec<ResLayer>,
    /// ImageNet classifier, if built.
    pub classifier: Option<Dense>,
}

impl ResNet {
    fn stem_forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = relu(self.stem.forward(x));
        max_pool2d(
            h,
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        )
    }

    /// Run stages `0..=max(stages)` and return each requested stage's output in order
    /// (0 = stem after max-pool, 1..=4 = `layer1..layer4`).
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
        // [B, 64, H/4, W/4]
        let mut h = self.stem_forward(x);
        keep(0, &h);
        for (i, layer) in self.layers.iter().enumerate() {
            if i + 1 > last {
                break;
            }
            for b in &layer.blocks {
                h = b.forward(h);
            }
            keep(i + 1, &h);
        }
        out.into_iter().flatten().collect()
    }

    /// ImageNet logits, when the network was built with its classifier.
    ///
    /// # Shapes
    /// `[B, 3, H, W] -> [B, 1000]`.
    pub fn logits(&self, x: Tensor<4>) -> Option<Tensor<2>> {
        let classifier = self.classifier.as_ref()?;
        let mut h = self.stem_forward(x);
        for layer in &self.layers {
            for b in &layer.blocks {
                h = b.forward(h);
            }
        }
        let [b, c, _, _] = h.dims();
        Some(classifier.forward(h.mean_dim(3).mean_dim(2).reshape([b, c])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_counts_match_torchvision() {
        // len(torchvision.models.X().state_dict()), num_batches_tracked included.
        for (depths, bw, n) in [
            ([2, 2, 2, 2], None, 122),
            ([3, 4, 6, 3], None, 218),
            ([3, 4, 6, 3], Some(64), 320),
            ([3, 4, 23, 3], Some(64), 626),
            ([3, 4, 6, 3], Some(128), 320),
        ] {
            assert_eq!(
                ResNetSpec::new(depths, bw).all_keys().len(),
                n,
                "{depths:?}"
            );
        }
        let wide = ResNetSpec::new([3, 4, 6, 3], Some(128));
        assert_eq!(
            wide.layers[1][0].convs[1].weight_shape(),
            vec![256, 256, 3, 3]
        );
        assert_eq!(wide.stage_shape(2), (512, 8));
        assert_eq!(wide.stage_shape(3), (1024, 16));
    }
}
