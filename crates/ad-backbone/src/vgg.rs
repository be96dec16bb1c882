//! VGG-16 (Simonyan & Zisserman, ICLR 2015) in torchvision's layout and key names
//! (`vgg16`, no batch-norm): `features.{i}` for the 13 3x3 convolutions (with bias, padding
//! 1, ReLU after each) and the 5 max-pools (2x2, stride 2), `classifier.{0,3,6}` for the three
//! dense layers after a 7x7 adaptive average pool.
//!
//! Taps are named by torchvision's module index of the layer whose output is taken: the end
//! of each of the 5 blocks before its pool (`features.3`, `.8`, `.15`, `.22`, `.29`; strides
//! 1, 2, 4, 8, 16) and after it (`features.4`, `.9`, `.16`, `.23`, `.30`; strides 2 ... 32).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, max_pool2d};
use burn::tensor::ops::MaxPoolOptions;

use crate::error::Result;
use crate::layers::{Dense, FoldedConv, Loader, Pad};

const NUM_CLASSES: usize = 1000;
/// Output channels of the 13 convolutions, by block.
const BLOCKS: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512; 3],
    &[512; 3],
];

/// The architecture: block widths and torchvision indices.
#[derive(Debug, Clone)]
pub(crate) struct VggSpec;

impl VggSpec {
    /// `(index, in, out)` of every convolution, and the index of every pool.
    fn layout() -> (Vec<(usize, usize, usize)>, Vec<usize>) {
        let mut convs = Vec::new();
        let mut pools = Vec::new();
        let (mut i, mut c_in) = (0, 3);
        for block in BLOCKS {
            for &c in block {
                convs.push((i, c_in, c));
                c_in = c;
                i += 2; // conv, ReLU
            }
            pools.push(i);
            i += 1;
        }
        (convs, pools)
    }

    /// Number of stages (block ends before and after every pool).
    pub fn num_stages(&self) -> usize {
        10
    }

    /// Stage of a tap name: `2b` = end of block `b` before its pool, `2b + 1` = after it.
    pub fn parse_tap(&self, tap: &str) -> Option<usize> {
        let i: usize = tap.strip_prefix("features.")?.parse().ok()?;
        let (_, pools) = Self::layout();
        pools.iter().enumerate().find_map(|(b, &p)| {
            if i + 1 == p {
                Some(2 * b)
            } else if i == p {
                Some(2 * b + 1)
            } else {
                None
            }
        })
    }

    /// The valid tap names, for errors.
    pub fn tap_names() -> String {
        let (_, pools) = Self::layout();
        pools
            .iter()
            .flat_map(|p| {
                [
                    format!("\"features.{}\"", p - 1),
                    format!("\"features.{p}\""),
                ]
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The tap after the pool that brings the stride to `stride` (2 ... 32).
    pub fn tap_at_stride(&self, stride: usize) -> Option<String> {
        let (_, pools) = Self::layout();
        (0..5)
            .find(|b| 2usize << b == stride)
            .map(|b| format!("features.{}", pools[b]))
    }

    /// `(channels, stride)` of a stage.
    pub fn stage_shape(&self, stage: usize) -> (usize, usize) {
        let b = (stage / 2).min(4);
        let channels = *BLOCKS[b].last().unwrap_or(&512);
        let stride = if stage.is_multiple_of(2) {
            1 << b
        } else {
            2 << b
        };
        (channels, stride)
    }

    /// All state-dict keys with shapes (classifier included).
    pub fn all_keys(&self) -> Vec<(String, Vec<usize>)> {
        let (convs, _) = Self::layout();
        let mut out = Vec::new();
        for (i, c_in, c_out) in convs {
            out.push((format!("features.{i}.weight"), vec![c_out, c_in, 3, 3]));
            out.push((format!("features.{i}.bias"), vec![c_out]));
        }
        for (i, f_in, f_out) in [
            (0, 512 * 7 * 7, 4096),
            (3, 4096, 4096),
            (6, 4096, NUM_CLASSES),
        ] {
            out.push((format!("classifier.{i}.weight"), vec![f_out, f_in]));
            out.push((format!("classifier.{i}.bias"), vec![f_out]));
        }
        out
    }

    /// Build the convolutions up to stage `last_stage` (all, and the classifier, when
    /// `classifier`).
    pub fn build(
        &self,
        loader: &mut Loader<'_>,
        last_stage: usize,
        classifier: bool,
        device: &Device,
    ) -> Result<Vgg> {
        let (convs, _) = Self::layout();
        let last_block = if classifier {
            4
        } else {
            (last_stage / 2).min(4)
        };
        let mut blocks = Vec::new();
        let mut at = 0;
        for widths in BLOCKS.iter().take(last_block + 1) {
            let mut layer = Vec::new();
            for _ in 0..widths.len() {
                let (i, c_in, c_out) = convs[at];
                at += 1;
                let shape = [c_out, c_in, 3, 3];
                let w = loader.take(&format!("features.{i}.weight"), &shape)?;
                let bias = loader.take(&format!("features.{i}.bias"), &[c_out])?;
                layer.push(FoldedConv {
                    weight: Param::from_tensor(Tensor::from_data(
                        TensorData::new(w, shape),
                        device,
                    )),
                    bias: Param::from_tensor(Tensor::from_data(
                        TensorData::new(bias, [c_out]),
                        device,
                    )),
                    stride: 1,
                    kernel: 3,
                    groups: 1,
                    pad: Pad::Symmetric(1),
                });
            }
            blocks.push(VggBlock { convs: layer });
        }
        let classifier = if classifier {
            Some(vec![
                Dense::build(loader, "classifier.0", 512 * 7 * 7, 4096, device)?,
                Dense::build(loader, "classifier.3", 4096, 4096, device)?,
                Dense::build(loader, "classifier.6", 4096, NUM_CLASSES, device)?,
            ])
        } else {
            None
        };
        Ok(Vgg { blocks, classifier })
    }
}

/// One block: 3x3 convolutions with ReLU; the 2x2 max-pool follows in `forward`.
#[derive(Module, Debug)]
pub struct VggBlock {
    /// The convolutions (bias, padding 1).
    pub convs: Vec<FoldedConv>,
}

/// VGG-16, possibly truncated after some block.
#[derive(Module, Debug)]
pub struct Vgg {
    /// The blocks that were built.
    pub blocks: Vec<VggBlock>,
    /// The three dense layers of the ImageNet classifier, if built.
    pub classifier: Option<Vec<Dense>>,
}

fn pool(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new([2, 2]).with_stride([2, 2]))
}

impl Vgg {
    /// Run stages `0..=max(stages)`, returning each requested stage's output in order.
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
        let mut h = x;
        for (b, block) in self.blocks.iter().enumerate() {
            if 2 * b > last {
                break;
            }
            for c in &block.convs {
                h = relu(c.forward(h));
            }
            keep(2 * b, &h);
            if 2 * b + 1 > last {
                break;
            }
            h = pool(h);
            keep(2 * b + 1, &h);
        }
        out.into_iter().flatten().collect()
    }

    /// ImageNet logits, when built with the classifier (dropout is the identity at
    /// inference).
    ///
    /// # Shapes
    /// `[B, 3, H, W] -> [B, 1000]`.
    pub fn logits(&self, x: Tensor<4>) -> Option<Tensor<2>> {
        let dense = self.classifier.as_ref()?;
        let mut h = x;
        for block in &self.blocks {
            for c in &block.convs {
                h = relu(c.forward(h));
            }
            h = pool(h);
        }
        let [b, ..] = h.dims();
        let mut z = adaptive_avg_pool2d(h, [7, 7]).reshape([b, 512 * 7 * 7]);
        for (i, d) in dense.iter().enumerate() {
            z = d.forward(z);
            if i + 1 < dense.len() {
                z = relu(z);
            }
        }
        Some(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_torchvision() {
        // len(torchvision.models.vgg16().state_dict()) == 32.
        assert_eq!(VggSpec.all_keys().len(), 32);
        let (convs, pools) = VggSpec::layout();
        assert_eq!(pools, vec![4, 9, 16, 23, 30]);
        assert_eq!(convs[12], (28, 512, 512));
        assert_eq!(VggSpec.parse_tap("features.29"), Some(8));
        assert_eq!(VggSpec.parse_tap("features.30"), Some(9));
        assert_eq!(VggSpec.parse_tap("features.28"), None);
        assert_eq!(VggSpec.stage_shape(8), (512, 16));
        assert_eq!(VggSpec.stage_shape(9), (512, 32));
        assert_eq!(VggSpec.stage_shape(5), (256, 8));
        assert_eq!(VggSpec.tap_at_stride(8).as_deref(), Some("features.16"));
    }
}
