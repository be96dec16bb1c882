//! The decoder of one tap: a conditional normalizing flow of affine coupling blocks (FrEIA's
//! `AllInOneBlock` as anomalib configures it for CFlow: hard permutation, SOFTPLUS global
//! affine, soft-clamped affine coupling, no GIN, no Householder reflections).
//!
//! One block maps `x` (with condition `c`) to `z`:
//!
//! ```text
//! x1, x2 = x[:, :C - C/2], x[:, C - C/2:]
//! a      = 0.1 * fc2(relu(fc1([x1, c])))           (subnet: Linear(k, 2k), ReLU, Linear(2k, 2 * C/2))
//! s      = alpha * tanh(a[:, :C/2]);  t = a[:, C/2:]
//! y      = [x1, x2 * exp(s) + t] * g + b            (g = 0.2 * ln(1 + exp(0.5 * gamma)), 1 at init)
//! z      = y[:, perm]
//! log |det J| = sum(s) + sum(ln g)
//! ```

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// `ln(sqrt(2 pi))`.
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_7;

/// Pre-activation of the global scale that makes the scale exactly 1:
/// `2 ln(exp(5) - 1)` (FrEIA's `global_affine_init = 1` for SOFTPLUS).
fn global_scale_init() -> f32 {
    (2.0 * (5f64.exp() - 1.0).ln()) as f32
}

/// A `Linear` with PyTorch's default initialisation, `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` for
/// weight and bias, drawn on the host from `rng` (so a seed fixes it, whatever else runs).
fn linear(d_in: usize, d_out: usize, rng: &mut Xoshiro256PlusPlus, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f32).sqrt();
    let mut draw =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let w = draw(d_in * d_out);
    let b = draw(d_out);
    linear_from(w, b, d_in, d_out, device)
}

/// A `Linear` from its weight (`[d_in, d_out]`, row-major) and bias.
pub(crate) fn linear_from(
    w: Vec<f32>,
    b: Vec<f32>,
    d_in: usize,
    d_out: usize,
    device: &Device,
) -> Linear {
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

/// One affine coupling block with its permutation and global affine transform.
#[derive(Module, Debug)]
pub struct CouplingBlock {
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
    /// Pre-activation of the per-channel global scale, `[C]`.
    pub(crate) global_scale: Param<Tensor<1>>,
    /// Per-channel global offset, `[C]`.
    pub(crate) global_offset: Param<Tensor<1>>,
    /// Output channel `j` is channel `perm[j]` of the block's affine output.
    #[module(skip)]
    pub(crate) perm: Vec<usize>,
    pub(crate) channels: usize,
    pub(crate) condition: usize,
    pub(crate) clamp: f32,
}

fn index(v: &[usize], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = v.iter().map(|&i| i as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(data, [v.len()]), device)
}

impl CouplingBlock {
    /// A freshly initialised block for `channels` features and `condition` condition channels.
    pub fn new(
        channels: usize,
        condition: usize,
        clamp: f32,
        rng: &mut Xoshiro256PlusPlus,
        device: &Device,
    ) -> Self {
        let s1 = channels - channels / 2;
        let s2 = channels / 2;
        let k = s1 + condition;
        let fc1 = linear(k, 2 * k, rng, device);
        let fc2 = linear(2 * k, 2 * s2, rng, device);
        let mut perm: Vec<usize> = (0..channels).collect();
        for i in (1..channels).rev() {
            let j = rng.random_range(0..=i);
            perm.swap(i, j);
        }
        let gs = vec![global_scale_init(); channels];
        Self {
            fc1,
            fc2,
            global_scale: Param::from_tensor(Tensor::from_data(
                TensorData::new(gs, [channels]),
                device,
            )),
            global_offset: Param::from_tensor(Tensor::zeros([channels], device)),
            perm,
            channels,
            condition,
            clamp,
        }
    }

    fn split(&self) -> (usize, usize) {
        (self.channels - self.channels / 2, self.channels / 2)
    }

    /// Scale and shift of the coupling: `(s, t)`, each `[n, C/2]`.
    fn coefficients(&self, x1: Tensor<2>, c: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let (_, s2) = self.split();
        let h = Tensor::cat(vec![x1, c], 1);
        let a = self.fc2.forward(relu(self.fc1.forward(h))).mul_scalar(0.1);
        let s = a.clone().narrow(1, 0, s2).tanh().mul_scalar(self.clamp);
        let t = a.narrow(1, s2, s2);
        (s, t)
    }

    /// The global scale `g` per channel, `[1, C]` (1 at initialisation).
    fn scale(&self) -> Tensor<2> {
        softplus(self.global_scale.val(), 0.5)
            .mul_scalar(0.1)
            .unsqueeze_dim::<2>(0)
    }

    /// `z = f(x; c)` and `log |det df/dx|` per row.
    ///
    /// # Shapes
    /// `x`: `[n, C]`, `c`: `[n, P]`; returns `[n, C]` and `[n]`.
    pub fn forward(&self, x: Tensor<2>, c: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        let device = x.device();
        let (s1, s2) = self.split();
        let x1 = x.clone().narrow(1, 0, s1);
        let x2 = x.narrow(1, s1, s2);
        let (s, t) = self.coefficients(x1.clone(), c);
        let y2 = x2 * s.clone().exp() + t;
        let g = self.scale();
        let y = Tensor::cat(vec![x1, y2], 1) * g.clone()
            + self.global_offset.val().unsqueeze_dim::<2>(0);
        let z = y.select(1, index(&self.perm, &device));
        let logdet = s.sum_dim(1).squeeze_dim::<1>(1) + g.log().sum();
        (z, logdet)
    }

    /// `x = f^-1(z; c)`.
    ///
    /// # Shapes
    /// `z`: `[n, C]`, `c`: `[n, P]`; returns `[n, C]`.
    pub fn inverse(&self, z: Tensor<2>, c: Tensor<2>) -> Tensor<2> {
        let device = z.device();
        let (s1, s2) = self.split();
        let mut inv = vec![0; self.channels];
        for (j, &p) in self.perm.iter().enumerate() {
            inv[p] = j;
        }
        let y = (z.select(1, index(&inv, &device))
            - self.global_offset.val().unsqueeze_dim::<2>(0))
            / self.scale();
        let y1 = y.clone().narrow(1, 0, s1);
        let y2 = y.narrow(1, s1, s2);
        let (s, t) = self.coefficients(y1.clone(), c);
        let x2 = (y2 - t) * s.neg().exp();
        Tensor::cat(vec![y1, x2], 1)
    }
}

/// The decoder of one tap: coupling blocks in sequence.
#[derive(Module, Debug)]
pub struct Flow {
    pub(crate) blocks: Vec<CouplingBlock>,
}

impl Flow {
    /// `blocks` freshly initialised blocks.
    pub fn new(
        channels: usize,
        condition: usize,
        blocks: usize,
        clamp: f32,
        rng: &mut Xoshiro256PlusPlus,
        device: &Device,
    ) -> Self {
        Self {
            blocks: (0..blocks)
                .map(|_| CouplingBlock::new(channels, condition, clamp, rng, device))
                .collect(),
        }
    }

    /// Feature channels `C`.
    pub fn channels(&self) -> usize {
        self.blocks.first().map_or(0, |b| b.channels)
    }

    /// `z` and the summed `log |det J|`.
    ///
    /// # Shapes
    /// `x`: `[n, C]`, `c`: `[n, P]`; returns `[n, C]` and `[n]`.
    pub fn forward(&self, x: Tensor<2>, c: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        let n = x.dims()[0];
        let mut logdet = Tensor::<1>::zeros([n], &x.device());
        let mut z = x;
        for b in &self.blocks {
            let (nz, ld) = b.forward(z, c.clone());
            z = nz;
            logdet = logdet + ld;
        }
        (z, logdet)
    }

    /// The inverse of [`Flow::forward`].
    pub fn inverse(&self, z: Tensor<2>, c: Tensor<2>) -> Tensor<2> {
        let mut x = z;
        for b in self.blocks.iter().rev() {
            x = b.inverse(x, c.clone());
        }
        x
    }

    /// Log-likelihood per feature dimension under a standard normal base distribution,
    /// `(-C ln sqrt(2 pi) - |z|^2 / 2 + log |det J|) / C` (anomalib's `get_logp` / C).
    ///
    /// # Shapes
    /// `x`: `[n, C]`, `c`: `[n, P]`; returns `[n]`.
    pub fn log_prob_per_dim(&self, x: Tensor<2>, c: Tensor<2>) -> Tensor<1> {
        let ch = x.dims()[1] as f64;
        let (z, logdet) = self.forward(x, c);
        let sq = z.powi_scalar(2).sum_dim(1).squeeze_dim::<1>(1);
        (logdet - sq.mul_scalar(0.5))
            .sub_scalar(ch * LN_SQRT_2PI)
            .div_scalar(ch)
    }
}

/// A seeded generator for the decoders of a model (one stream per tap).
pub(crate) fn rng(seed: u64, tap: usize) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed ^ (0xC0F1_0000 + tap as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, d: usize, seed: u64, device: &Device) -> Tensor<2> {
        let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
        let v: Vec<f32> = (0..n * d).map(|_| r.random_range(-2.0f32..2.0)).collect();
        Tensor::from_data(TensorData::new(v, [n, d]), device)
    }

    fn host(t: Tensor<2>) -> Vec<f32> {
        ad_core::tensor::read_f32(t).unwrap()
    }

    /// A block whose coefficients and global affine are far from the identity.
    fn perturbed_flow(channels: usize, cond: usize, device: &Device) -> Flow {
        let mut r = rng(5, 0);
        let mut f = Flow::new(channels, cond, 3, 1.9, &mut r, device);
        for (i, b) in f.blocks.iter_mut().enumerate() {
            let gs: Vec<f32> = (0..channels)
                .map(|k| 3.0 + 0.5 * ((i + k) % 4) as f32)
                .collect();
            let go: Vec<f32> = (0..channels).map(|k| 0.1 * (k as f32) - 0.2).collect();
            b.global_scale =
                Param::from_tensor(Tensor::from_data(TensorData::new(gs, [channels]), device));
            b.global_offset =
                Param::from_tensor(Tensor::from_data(TensorData::new(go, [channels]), device));
            // Larger subnet outputs: scale the last layer up so tanh is not linear.
            let w = b.fc2.weight.val().mul_scalar(30.0);
            b.fc2.weight = Param::from_tensor(w);
        }
        f
    }

    #[test]
    fn every_block_is_invertible() {
        let device = Device::flex();
        for channels in [5, 8] {
            let flow = perturbed_flow(channels, 4, &device);
            let x = data(33, channels, 1, &device);
            let c = data(33, 4, 2, &device);
            for b in &flow.blocks {
                let (z, _) = b.forward(x.clone(), c.clone());
                let back = b.inverse(z, c.clone());
                for (a, b) in host(x.clone()).iter().zip(host(back)) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
                }
            }
            let (z, _) = flow.forward(x.clone(), c.clone());
            let back = flow.inverse(z, c);
            for (a, b) in host(x).iter().zip(host(back)) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }

    /// log |det J| of a numerically differentiated block (central differences in f64 over the
    /// f32 forward, LU determinant) equals the block's own log-determinant.
    #[test]
    fn log_determinant_matches_a_numerical_jacobian() {
        let device = Device::flex();
        let channels = 5;
        let flow = perturbed_flow(channels, 3, &device);
        let c = data(1, 3, 7, &device);
        let x0 = host(data(1, channels, 8, &device));
        for b in &flow.blocks {
            let f = |x: &[f64]| -> Vec<f64> {
                let t = Tensor::<2>::from_data(
                    TensorData::new(
                        x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                        [1, channels],
                    ),
                    &device,
                );
                host(b.forward(t, c.clone()).0)
                    .into_iter()
                    .map(f64::from)
                    .collect()
            };
            let h = 1e-2;
            let mut jac = vec![0.0f64; channels * channels];
            for j in 0..channels {
                let mut p: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
                let mut m = p.clone();
                p[j] += h;
                m[j] -= h;
                let (fp, fm) = (f(&p), f(&m));
                for i in 0..channels {
                    jac[i * channels + j] = (fp[i] - fm[i]) / (2.0 * h);
                }
            }
            let numeric = log_abs_det(&mut jac, channels);
            let t = Tensor::<2>::from_data(TensorData::new(x0.clone(), [1, channels]), &device);
            let (_, ld) = b.forward(t, c.clone());
            let analytic = ad_core::tensor::read_f32(ld).unwrap()[0] as f64;
            assert!(
                (numeric - analytic).abs() < 2e-3 * (1.0 + analytic.abs()),
                "numerical {numeric} vs block {analytic}"
            );
        }
    }

    /// `ln |det A|` by Gaussian elimination with partial pivoting.
    fn log_abs_det(a: &mut [f64], n: usize) -> f64 {
        let mut total = 0.0;
        for col in 0..n {
            let piv = (col..n)
                .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
                .unwrap();
            if piv != col {
                for k in 0..n {
                    a.swap(col * n + k, piv * n + k);
                }
            }
            let d = a[col * n + col];
            total += d.abs().ln();
            for r in col + 1..n {
                let f = a[r * n + col] / d;
                for k in col..n {
                    a[r * n + k] -= f * a[col * n + k];
                }
            }
        }
        total
    }
}
