//! The trainable heads: a multilayer perceptron applied row by row (to a patch feature, a
//! 1x1 convolution; to a pooled image feature, a dense layer).

use ad_core::tensor::read_f32;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::RegressError;

/// A multilayer perceptron `dims[0] -> dims[1] -> ... -> dims[last]`, ReLU between layers,
/// none after the last.
#[derive(Module, Debug)]
pub struct Mlp {
    /// The dense layers.
    pub layers: Vec<Linear>,
}

fn linear_from(w: Vec<f32>, b: Vec<f32>, d_in: usize, d_out: usize, device: &Device) -> Linear {
    Linear {
        weight: Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(w, [d_in, d_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(b, [d_out]),
            device,
        ))),
    }
}

impl Mlp {
    /// Freshly initialised as PyTorch's `nn.Linear` (`U(-1/sqrt(fan_in), 1/sqrt(fan_in))` for
    /// weights and biases), drawn on the host from a generator seeded with `seed`, so the seed
    /// alone fixes the initial weights on every device.
    pub fn new(dims: &[usize], seed: u64, device: &Device) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let layers = dims
            .windows(2)
            .map(|p| {
                let (d_in, d_out) = (p[0], p[1]);
                let bound = 1.0 / (d_in as f32).sqrt();
                let mut draw = |n: usize| -> Vec<f32> {
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                };
                let w = draw(d_in * d_out);
                let b = draw(d_out);
                linear_from(w, b, d_in, d_out, device)
            })
            .collect();
        Self { layers }
    }

    /// Layer widths, input first.
    pub fn dims(&self) -> Vec<usize> {
        let mut d = Vec::with_capacity(self.layers.len() + 1);
        for (i, l) in self.layers.iter().enumerate() {
            let [d_in, d_out] = l.weight.dims();
            if i == 0 {
                d.push(d_in);
            }
            d.push(d_out);
        }
        d
    }

    /// # Shapes
    /// - `x`: `[n, dims[0]]`
    /// - returns `[n, dims[last]]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        self.layers.iter().enumerate().fold(x, |x, (i, l)| {
            let y = l.forward(x);
            if i < last { relu(y) } else { y }
        })
    }

    /// Every parameter in a fixed order (per layer: weight `[d_in, d_out]` row-major, bias),
    /// for the model files.
    pub fn to_flat(&self) -> Result<Vec<f32>, RegressError> {
        let mut out = Vec::new();
        for l in &self.layers {
            out.extend(read_f32(l.weight.val())?);
            let bias = l.bias.as_ref().ok_or(RegressError::NotFitted)?;
            out.extend(read_f32(bias.val())?);
        }
        Ok(out)
    }

    /// Number of parameters of an MLP with these widths.
    pub fn parameter_count(dims: &[usize]) -> usize {
        dims.windows(2).map(|p| p[0] * p[1] + p[1]).sum()
    }

    /// Rebuilds an MLP from [`Mlp::to_flat`]'s output; `None` if the length does not match.
    pub fn from_flat(dims: &[usize], flat: &[f32], device: &Device) -> Option<Self> {
        if dims.len() < 2 || flat.len() != Self::parameter_count(dims) {
            return None;
        }
        let mut at = 0;
        let layers = dims
            .windows(2)
            .map(|p| {
                let (d_in, d_out) = (p[0], p[1]);
                let w = flat[at..at + d_in * d_out].to_vec();
                at += d_in * d_out;
                let b = flat[at..at + d_out].to_vec();
                at += d_out;
                linear_from(w, b, d_in, d_out, device)
            })
            .collect();
        Some(Self { layers })
    }
}

/// Reads a one-element tensor (a loss) back to the host.
pub(crate) fn scalar(t: Tensor<1>) -> Result<f64, RegressError> {
    Ok(read_f32(t.unsqueeze_dim::<2>(0))?
        .first()
        .copied()
        .unwrap_or(f32::NAN) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_init_and_flat_round_trip() {
        let device = Device::default();
        let a = Mlp::new(&[5, 4, 2], 3, &device);
        let b = Mlp::new(&[5, 4, 2], 3, &device);
        let fa = a.to_flat().unwrap();
        assert_eq!(fa, b.to_flat().unwrap());
        assert_eq!(fa.len(), Mlp::parameter_count(&[5, 4, 2]));
        assert_ne!(fa, Mlp::new(&[5, 4, 2], 4, &device).to_flat().unwrap());
        let c = Mlp::from_flat(&[5, 4, 2], &fa, &device).unwrap();
        assert_eq!(c.dims(), vec![5, 4, 2]);
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 10], [2, 5]), &device);
        assert_eq!(
            read_f32(a.forward(x.clone())).unwrap(),
            read_f32(c.forward(x)).unwrap()
        );
        assert!(Mlp::from_flat(&[5, 4, 2], &fa[1..], &device).is_none());
    }
}
