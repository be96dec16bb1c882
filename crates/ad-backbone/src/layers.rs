//! Building blocks shared by the architectures: a convolution with its batch-norm folded in,
//! the weight sources (checkpoint or formula) and the bookkeeping of which keys were used.

use std::collections::HashSet;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

use crate::error::Result;
use crate::state_dict::StateDict;

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pad {
    /// The same number of zeros on every side (PyTorch's `padding=p`).
    Symmetric(usize),
    /// TensorFlow "SAME": the output has `ceil(input / stride)` rows and columns, and when the
    /// total padding is odd the extra zero goes to the bottom / right.
    TfSame,
}

/// Padding `(begin, end)` of one spatial dimension under TensorFlow "SAME".
pub(crate) fn tf_same_pad(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let needed = ((out.max(1) - 1) * stride + kernel).saturating_sub(input);
    (needed / 2, needed - needed / 2)
}

/// A 2-D convolution whose batch-norm (eval statistics) has been folded into its weight and
/// bias: `conv(x, w * s) + (beta - mean * s)` with `s = gamma / sqrt(var + eps)`.
#[derive(Module, Debug)]
pub struct FoldedConv {
    /// Folded weight `[out, in / groups, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// Folded bias `[out]`.
    pub bias: Param<Tensor<1>>,
    /// Stride (both directions).
    pub stride: usize,
    /// Kernel size (square).
    pub kernel: usize,
    /// Channel groups (`groups == in == out` for a depthwise convolution).
    pub groups: usize,
    /// Padding rule.
    #[module(skip)]
    pub pad: Pad,
}

impl FoldedConv {
    /// Apply the convolution.
    ///
    /// # Shapes
    /// `[B, in, H, W] -> [B, out, H', W']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let padding = match self.pad {
            Pad::Symmetric(p) => [(p, p), (p, p)],
            Pad::TfSame => [
                tf_same_pad(h, self.kernel, self.stride),
                tf_same_pad(w, self.kernel, self.stride),
            ],
        };
        let options = ConvOptions::new_with_padding([self.stride; 2], padding, [1, 1], self.groups);
        conv2d(x, self.weight.val(), Some(self.bias.val()), options)
    }

    /// Number of output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }
}

/// Description of one `conv (no bias) -> batch-norm` pair as stored in a PyTorch state dict.
#[derive(Debug, Clone)]
pub(crate) struct ConvBnSpec {
    /// Key prefix of the convolution (`layer1.0.conv1`), `.weight` is appended.
    pub conv: String,
    /// Key prefix of the batch-norm (`layer1.0.bn1`).
    pub bn: String,
    pub in_ch: usize,
    pub out_ch: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    pub pad: Pad,
    pub eps: f64,
}

impl ConvBnSpec {
    /// Shape of the convolution weight.
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![
            self.out_ch,
            self.in_ch / self.groups,
            self.kernel,
            self.kernel,
        ]
    }

    /// Every state-dict key of the pair with its shape (including `num_batches_tracked`).
    pub fn keys(&self, out: &mut Vec<(String, Vec<usize>)>) {
        out.push((format!("{}.weight", self.conv), self.weight_shape()));
        for name in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("{}.{name}", self.bn), vec![self.out_ch]));
        }
        out.push((format!("{}.num_batches_tracked", self.bn), vec![]));
    }

    /// Read the five tensors, fold the batch-norm and create the module on `device`.
    pub fn build(&self, loader: &mut Loader<'_>, device: &Device) -> Result<FoldedConv> {
        let wshape = self.weight_shape();
        let w = loader.take(&format!("{}.weight", self.conv), &wshape)?;
        let c = [self.out_ch];
        let gamma = loader.take(&format!("{}.weight", self.bn), &c)?;
        let beta = loader.take(&format!("{}.bias", self.bn), &c)?;
        let mean = loader.take(&format!("{}.running_mean", self.bn), &c)?;
        let var = loader.take(&format!("{}.running_var", self.bn), &c)?;
        loader.mark_used(&format!("{}.num_batches_tracked", self.bn));
        let (w, b) = fold_batch_norm(&w, &gamma, &beta, &mean, &var, self.eps);
        Ok(FoldedConv {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, wshape), device)),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(b, [self.out_ch]), device)),
            stride: self.stride,
            kernel: self.kernel,
            groups: self.groups,
            pad: self.pad,
        })
    }
}

/// Fold eval-mode batch-norm into the preceding bias-free convolution (computed in `f64`).
///
/// `weight` is `[out, ...]` row-major; returns the scaled weight and the new bias.
pub(crate) fn fold_batch_norm(
    weight: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let out = gamma.len();
    let per = weight.len() / out.max(1);
    let mut w = Vec::with_capacity(weight.len());
    let mut b = Vec::with_capacity(out);
    for o in 0..out {
        let s = f64::from(gamma[o]) / (f64::from(var[o]) + eps).sqrt();
        w.extend(
            weight[o * per..(o + 1) * per]
                .iter()
                .map(|&v| (f64::from(v) * s) as f32),
        );
        b.push((f64::from(beta[o]) - f64::from(mean[o]) * s) as f32);
    }
    (w, b)
}

/// A dense layer `y = x W^T + b` (the classifier of a network).
#[derive(Module, Debug)]
pub struct Dense {
    /// Transposed weight `[in, out]`.
    pub weight_t: Param<Tensor<2>>,
    /// Bias `[out]`.
    pub bias: Param<Tensor<1>>,
}

impl Dense {
    /// Read `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`.
    pub(crate) fn build(
        loader: &mut Loader<'_>,
        prefix: &str,
        in_f: usize,
        out_f: usize,
        device: &Device,
    ) -> Result<Self> {
        let w = loader.take(&format!("{prefix}.weight"), &[out_f, in_f])?;
        let b = loader.take(&format!("{prefix}.bias"), &[out_f])?;
        let w = Tensor::<2>::from_data(TensorData::new(w, [out_f, in_f]), device);
        Ok(Self {
            weight_t: Param::from_tensor(w.transpose()),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(b, [out_f]), device)),
        })
    }

    /// # Shapes
    /// `[B, in] -> [B, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight_t.val()) + self.bias.val().unsqueeze::<2>()
    }
}

/// Where the raw (unfolded) PyTorch tensors come from.
pub(crate) enum Source<'a> {
    /// A checkpoint.
    File(&'a StateDict),
    /// [`formula_tensor`] with this seed.
    Formula(u64),
}

/// Hands out tensors by PyTorch key and remembers which keys were used.
pub(crate) struct Loader<'a> {
    source: Source<'a>,
    used: HashSet<String>,
}

impl<'a> Loader<'a> {
    pub fn new(source: Source<'a>) -> Self {
        Self {
            source,
            used: HashSet::new(),
        }
    }

    /// The tensor `key`, which must have shape `shape`.
    pub fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.used.insert(key.to_string());
        match &self.source {
            Source::File(sd) => sd.read_f32(key, shape),
            Source::Formula(seed) => Ok(formula_tensor(key, shape, *seed)),
        }
    }

    /// Record `key` as consumed without reading it (for `num_batches_tracked`).
    pub fn mark_used(&mut self, key: &str) {
        self.used.insert(key.to_string());
    }

    /// Check the keys that were not consumed: each must belong to the architecture
    /// (`known`, a later stage or the classifier, which was not built) with the right shape,
    /// or be a `num_batches_tracked` counter.
    pub fn finish(&self, known: &[(String, Vec<usize>)]) -> Result<()> {
        let Source::File(sd) = &self.source else {
            return Ok(());
        };
        let known: std::collections::HashMap<&str, &Vec<usize>> =
            known.iter().map(|(k, s)| (k.as_str(), s)).collect();
        let mut unexpected = Vec::new();
        for key in sd.keys() {
            if self.used.contains(key) || key.ends_with(".num_batches_tracked") {
                continue;
            }
            let found = sd.shape(key).unwrap_or(&[]);
            match known.get(key) {
                Some(expected) if expected.as_slice() == found => {}
                Some(expected) => {
                    return Err(crate::BackboneError::ShapeMismatch {
                        path: sd.path().to_path_buf(),
                        key: key.to_string(),
                        expected: (*expected).clone(),
                        found: found.to_vec(),
                    });
                }
                None => unexpected.push(format!("{key} {found:?}")),
            }
        }
        if unexpected.is_empty() {
            Ok(())
        } else {
            Err(crate::BackboneError::UnexpectedKeys {
                path: sd.path().to_path_buf(),
                keys: unexpected,
            })
        }
    }
}

/// FNV-1a 64-bit hash of a string (the per-key stream of [`formula_tensor`]).
pub(crate) fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Element `i` of the uniform stream of `(key, seed)`, in `[-1, 1)`.
fn formula_uniform(base: u64, i: u64) -> f64 {
    let mut z = base.wrapping_add((i + 1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 11) as f64) * (1.0 / (1u64 << 53) as f64) * 2.0 - 1.0
}

/// Deterministic stand-in weights that a Python script can regenerate exactly.
///
/// With `base = fnv1a64(key) ^ seed.wrapping_mul(0x9e3779b97f4a7c15)` and, for element `i`,
/// `z = splitmix64_mix(base + (i + 1) * 0x9e3779b97f4a7c15)` (wrapping `u64` arithmetic),
/// `v = (z >> 11) / 2^53 * 2 - 1` is uniform in `[-1, 1)`, and the tensor is:
/// - conv weight (4-D `*.weight`): `v * sqrt(6 / fan_in)` (He-uniform);
/// - linear weight (2-D `*.weight`): `v * sqrt(3 / fan_in)`;
/// - batch-norm weight (1-D `*.weight`): `1 + 0.1 v`; any `*.bias`: `0.1 v`;
/// - `*.running_mean`: `0.1 v`; `*.running_var`: `1.25 + 0.25 v`; anything else: `v`.
///
/// `tools/backbone_fixtures.py` implements the same formula.
pub fn formula_tensor(key: &str, shape: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let base = fnv1a64(key) ^ seed.wrapping_mul(GOLDEN);
    let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
    let (scale, offset) = if key.ends_with(".running_var") {
        (0.25, 1.25)
    } else if key.ends_with(".running_mean") || key.ends_with(".bias") {
        (0.1, 0.0)
    } else if key.ends_with(".weight") {
        match shape.len() {
            1 => (0.1, 1.0),
            2 => ((3.0 / fan_in as f64).sqrt(), 0.0),
            _ => ((6.0 / fan_in as f64).sqrt(), 0.0),
        }
    } else {
        (1.0, 0.0)
    };
    (0..n as u64)
        .map(|i| (offset + scale * formula_uniform(base, i)) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn tf_same_padding_matches_tensorflow() {
        // stride 2, kernel 3, even input: one extra zero at the end only.
        assert_eq!(tf_same_pad(224, 3, 2), (0, 1));
        // stride 2, kernel 5, even input: 1 before, 2 after.
        assert_eq!(tf_same_pad(56, 5, 2), (1, 2));
        // odd input, stride 2, kernel 3: ceil(7/2)=4 outputs need (4-1)*2+3-7 = 2 -> (1, 1).
        assert_eq!(tf_same_pad(7, 3, 2), (1, 1));
        // stride 1 is symmetric k/2.
        assert_eq!(tf_same_pad(10, 5, 1), (2, 2));
        assert_eq!(tf_same_pad(10, 1, 1), (0, 0));
    }

    #[test]
    fn folding_reproduces_conv_then_batch_norm() {
        // 1x1 conv, 2 outputs, 1 input: y = w x, then bn.
        let w = [2.0f32, -1.0];
        let (gamma, beta, mean, var) =
            ([0.5f32, 2.0], [0.1f32, -0.3], [1.0f32, 0.5], [4.0f32, 0.25]);
        let eps = 1e-3;
        let (fw, fb) = fold_batch_norm(&w, &gamma, &beta, &mean, &var, eps);
        for x in [-1.5f32, 0.0, 3.0] {
            for o in 0..2 {
                let conv = w[o] * x;
                let bn = (conv - mean[o]) / (var[o] + eps as f32).sqrt() * gamma[o] + beta[o];
                assert!(close(fw[o] * x + fb[o], bn, 1e-6), "o={o} x={x}");
            }
        }
    }

    #[test]
    fn formula_is_deterministic_and_scaled() {
        let a = formula_tensor("layer1.0.conv1.weight", &[8, 4, 3, 3], 0);
        let b = formula_tensor("layer1.0.conv1.weight", &[8, 4, 3, 3], 0);
        let c = formula_tensor("layer1.0.conv1.weight", &[8, 4, 3, 3], 1);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let bound = (6.0f32 / 36.0).sqrt();
        assert!(a.iter().all(|v| v.abs() <= bound));
        let var = formula_tensor("bn1.running_var", &[64], 0);
        assert!(var.iter().all(|v| (1.0..1.5).contains(v)));
        // Known values, shared with tools/backbone_fixtures.py.
        let first = formula_tensor("x", &[2], 0);
        assert!(first.iter().all(|v| (-1.0..1.0).contains(v)));
    }
}
