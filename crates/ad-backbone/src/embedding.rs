//! Locally aware patch features (PatchCore section 3.1).
//!
//! Each backbone tap is averaged over a `p x p` neighbourhood (stride 1, zero padding counted,
//! like `AvgPool2d(3, 1, 1)`), deeper taps are upsampled bilinearly (half-pixel centres) to the
//! first tap's grid, and the taps are concatenated along channels. Optionally the channels are
//! reduced to a target dimension by adaptive average pooling (the official code's 1024-d).
//!
//! On the CPU backend (flex) the pooling, upsampling and concatenation run on host buffers
//! and write the rows directly ([`host_rows`]): the same arithmetic in the same order as
//! flex's operations, so the rows are bit-identical, without the intermediate tensors and the
//! permuted copy (3.7-4.5x faster than the operations, `cargo bench --bench embedding`;
//! docs/performance.md).

use burn::tensor::module::{adaptive_avg_pool1d, avg_pool2d, interpolate};
use burn::tensor::ops::{AvgPoolOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

/// Aggregates tap maps into patch embeddings.
///
/// # Shapes
/// - `taps[i]`: `[batch, c_i, h_i, w_i]`, the first tap is the finest grid `[h, w]`
/// - returns `[batch * h * w, d]` with rows in `(image, y, x)` order, `d = sum c_i` or
///   `target_dim`
pub fn patch_embedding(
    taps: Vec<Tensor<4>>,
    patch_size: usize,
    target_dim: Option<usize>,
) -> Tensor<2> {
    let Some(rows) = host_rows(&taps, patch_size) else {
        return patch_embedding_with_ops(taps, patch_size, target_dim);
    };
    reduce_channels(rows, target_dim)
}

/// [`patch_embedding`] through Burn's operations on any device, without the CPU fast path:
/// the reference the fast path is tested (and benchmarked, `cargo bench --bench embedding`)
/// against.
///
/// # Shapes
/// As [`patch_embedding`].
pub fn patch_embedding_with_ops(
    taps: Vec<Tensor<4>>,
    patch_size: usize,
    target_dim: Option<usize>,
) -> Tensor<2> {
    reduce_channels(embed_with_ops(taps, patch_size), target_dim)
}

/// The optional channel reduction of [`patch_embedding`]: adaptive average pooling of each
/// row to `target_dim` values.
fn reduce_channels(rows: Tensor<2>, target_dim: Option<usize>) -> Tensor<2> {
    let [n, d] = rows.dims();
    match target_dim {
        Some(t) if t != d => adaptive_avg_pool1d(rows.reshape([n, 1, d]), t).reshape([n, t]),
        _ => rows,
    }
}

/// [`patch_embedding`] without the channel reduction, through Burn's operations (any device).
fn embed_with_ops(taps: Vec<Tensor<4>>, patch_size: usize) -> Tensor<2> {
    let pad = patch_size / 2;
    let pool = AvgPoolOptions::new([patch_size, patch_size])
        .with_stride([1, 1])
        .with_padding([pad, pad])
        .with_count_include_pad(true);
    let mut grid = None;
    let mut parts = Vec::with_capacity(taps.len());
    for tap in taps {
        let pooled = if patch_size > 1 {
            avg_pool2d(tap, pool.clone())
        } else {
            tap
        };
        let [_, _, h, w] = pooled.dims();
        let (gh, gw) = *grid.get_or_insert((h, w));
        let aligned = if (h, w) == (gh, gw) {
            pooled
        } else {
            interpolate(
                pooled,
                InterpolateOptions::new(InterpolateMode::Bilinear)
                    .with_align_corners(false)
                    .with_output_size([gh, gw]),
            )
        };
        parts.push(aligned);
    }
    let features = Tensor::cat(parts, 1); // [b, d, h, w]
    let [b, d, h, w] = features.dims();
    features.permute([0, 2, 3, 1]).reshape([b * h * w, d])
}

/// The CPU fast path of [`embed_with_ops`]: `None` unless every tap is an `f32` tensor on
/// flex that does not require gradients (their data is host memory: a copy, never a device
/// transfer).
///
/// Each `(image, channel)` plane is pooled as flex's `avg_pool2d` pools (the window's valid
/// values summed in row-major order from zero, divided by `p * p`: padding counted) and, for
/// a deeper tap, resampled as flex's bilinear `interpolate` (half-pixel centres, weights in
/// `f64` rounded to `f32`, the four products summed in the same order); the planes are then
/// written as rows. Images run in turn, each one's planes in parallel (rayon).
///
/// # Shapes
/// - `taps[i]`: `[batch, c_i, h_i, w_i]`
/// - returns `[batch * h * w, sum c_i]`, `(h, w)` the first tap's pooled grid
fn host_rows(taps: &[Tensor<4>], patch_size: usize) -> Option<Tensor<2>> {
    let device = Device::flex();
    if patch_size == 0
        || taps.is_empty()
        || taps
            .iter()
            .any(|t| t.device() != device || t.dtype() != DType::F32 || t.is_require_grad())
    {
        return None;
    }
    let pad = patch_size / 2;
    let pooled = |n: usize| (n + 2 * pad + 1).checked_sub(patch_size);
    let [b, _, h0, w0] = taps[0].dims();
    let grid = (pooled(h0)?, pooled(w0)?);
    let g = grid.0 * grid.1;
    let mut inputs = Vec::with_capacity(taps.len());
    for t in taps {
        let [tb, channels, h, w] = t.dims();
        let size = (pooled(h)?, pooled(w)?);
        if tb != b || size.0 == 0 || size.1 == 0 {
            return None;
        }
        // A deeper tap's resampling tables, built once for all its planes.
        let resample = (size != grid).then(|| Resample::new(size, grid));
        let values = crate::fused::host(t.clone())?;
        inputs.push(TapInput {
            values,
            channels,
            size: (h, w),
            resample,
        });
    }
    let d: usize = inputs.iter().map(|t| t.channels).sum();
    if b == 0 || d == 0 || g == 0 {
        return None;
    }
    // Which tap and channel each of the `d` feature channels comes from.
    let source: Vec<(usize, usize)> = inputs
        .iter()
        .enumerate()
        .flat_map(|(i, t)| (0..t.channels).map(move |c| (i, c)))
        .collect();
    // One image at a time (its planes stay in cache): its `d` planes in parallel, then
    // `[d, g] -> [g, d]` in blocks of positions, also in parallel.
    const BLOCK: usize = 64;
    let mut planes = vec![0.0f32; d * g];
    let mut rows = vec![0.0f32; b * g * d];
    for (image, rows) in rows.chunks_exact_mut(g * d).enumerate() {
        planes
            .par_chunks_mut(g)
            .zip(source.par_iter())
            .for_each_init(Vec::new, |scratch, (out, &(tap, c))| {
                let t = &inputs[tap];
                let (h, w) = t.size;
                let plane = &t.values[(image * t.channels + c) * h * w..][..h * w];
                match &t.resample {
                    None => avg_pool_plane(plane, t.size, patch_size, out),
                    Some(r) => {
                        scratch.resize(r.from.0 * r.from.1, 0.0);
                        avg_pool_plane(plane, t.size, patch_size, scratch);
                        r.apply(scratch, out);
                    }
                }
            });
        rows.par_chunks_mut(BLOCK * d)
            .enumerate()
            .for_each(|(block, rows)| {
                let start = block * BLOCK;
                for (c, plane) in planes.chunks_exact(g).enumerate() {
                    for (p, &v) in plane[start..start + rows.len() / d].iter().enumerate() {
                        rows[p * d + c] = v;
                    }
                }
            });
    }
    Some(Tensor::from_data(
        TensorData::new(rows, [b * g, d]),
        &device,
    ))
}

/// `AvgPool2d(p, stride 1, padding p / 2, count_include_pad)` of one `h x w` plane into `out`
/// (`(h + 2 * (p / 2) - p + 1) x (w + ...)`), as flex computes it: each output sums its
/// window's valid values from zero, rows then columns, and divides by `p * p`. The columns
/// whose window lies inside the plane are summed a whole run at a time (the same additions in
/// the same order per output, vectorised across outputs); the border columns one by one.
fn avg_pool_plane(x: &[f32], (h, w): (usize, usize), p: usize, out: &mut [f32]) {
    let pad = p / 2;
    let (oh, ow) = (h + 2 * pad + 1 - p, w + 2 * pad + 1 - p);
    let divisor = (p * p) as f32;
    // The window rows (or columns) of output position `o` that fall inside `0..n`.
    let valid = |o: usize, n: usize| (pad.saturating_sub(o), (n + pad - o).min(p));
    // Output columns whose whole window is inside the plane: `pad ..= w + pad - p` (none
    // when the plane is narrower than the window; then every column is a border column).
    let start = pad.min(ow);
    let inner = (start, (w + pad + 1).saturating_sub(p).clamp(start, ow));
    for (y, out) in out.chunks_exact_mut(ow).take(oh).enumerate() {
        let (ky0, ky1) = valid(y, h);
        out.fill(0.0);
        // A non-empty inner run starts at `pad` and needs `w >= p`, so `kx` indexes the row.
        if inner.0 < inner.1 {
            for ky in ky0..ky1 {
                let row = &x[(y + ky - pad) * w..][..w];
                for kx in 0..p {
                    for (o, &v) in out[inner.0..inner.1].iter_mut().zip(&row[kx..]) {
                        *o += v;
                    }
                }
            }
        }
        for xo in (0..inner.0).chain(inner.1..ow) {
            let (kx0, kx1) = valid(xo, w);
            let mut sum = 0.0f32;
            for ky in ky0..ky1 {
                let row = &x[(y + ky - pad) * w..][..w];
                for kx in kx0..kx1 {
                    sum += row[xo + kx - pad];
                }
            }
            out[xo] = sum;
        }
        for o in out.iter_mut() {
            *o /= divisor;
        }
    }
}

/// One tap of [`host_rows`]: its values on the host, channels, input size and, for a tap
/// whose pooled grid is not the first tap's, its resampling.
struct TapInput {
    values: Vec<f32>,
    channels: usize,
    size: (usize, usize),
    resample: Option<Resample>,
}

/// Bilinear resampling of planes from `from` to the grid (`align_corners = false`), as flex's
/// `interpolate` computes it: per output row and column the low and high source index and the
/// high one's weight (computed in `f64`, rounded to `f32`).
struct Resample {
    from: (usize, usize),
    ys: Vec<(usize, usize, f32)>,
    xs: Vec<(usize, usize, f32)>,
}

impl Resample {
    fn new(from: (usize, usize), to: (usize, usize)) -> Self {
        let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
            let ratio = n_in as f64 / n_out as f64;
            (0..n_out)
                .map(|o| {
                    let at = (o as f64 + 0.5) * ratio - 0.5;
                    let low = at.floor().max(0.0) as usize;
                    let high = (low + 1).min(n_in - 1);
                    (low, high, (at - low as f64).max(0.0) as f32)
                })
                .collect()
        };
        Self {
            from,
            ys: axis(from.0, to.0),
            xs: axis(from.1, to.1),
        }
    }

    /// One `from` plane `x` into the grid plane `out` (the four products summed in flex's
    /// order).
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        let w = self.from.1;
        for (&(y0, y1, wy), out) in self.ys.iter().zip(out.chunks_exact_mut(self.xs.len())) {
            for (&(x0, x1, wx), o) in self.xs.iter().zip(out.iter_mut()) {
                let (a, b) = (x[y0 * w + x0], x[y0 * w + x1]);
                let (c, e) = (x[y1 * w + x0], x[y1 * w + x1]);
                *o = a * (1.0 - wx) * (1.0 - wy)
                    + b * wx * (1.0 - wy)
                    + c * (1.0 - wx) * wy
                    + e * wx * wy;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    fn tensor(data: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(data, shape), &Device::default())
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn average_pool_counts_padding_like_torch() {
        // One 3x3 channel of ones: the centre averages 9 ones, a corner 4 ones / 9.
        let t = tensor(vec![1.0; 9], [1, 1, 3, 3]);
        let e = values(patch_embedding(vec![t], 3, None));
        assert_eq!(e.len(), 9);
        assert!((e[4] - 1.0).abs() < 1e-6);
        assert!((e[0] - 4.0 / 9.0).abs() < 1e-6);
        assert!((e[1] - 6.0 / 9.0).abs() < 1e-6);
    }

    #[test]
    fn deeper_tap_is_upsampled_and_concatenated() {
        // Tap 1: 2 channels on 4x4; tap 2: 1 channel on 2x2 (constant 5) -> d = 3, 16 rows.
        let a = tensor((0..32).map(|v| v as f32).collect(), [1, 2, 4, 4]);
        let b = tensor(vec![5.0; 4], [1, 1, 2, 2]);
        let e = patch_embedding(vec![a, b], 1, None);
        assert_eq!(e.dims(), [16, 3]);
        let v = values(e);
        // Row (y=1, x=2): channels 0 and 1 of tap 1, then the upsampled constant.
        let r = 4 + 2;
        assert_eq!(&v[r * 3..r * 3 + 3], &[6.0, 22.0, 5.0]);
    }

    #[test]
    fn bilinear_upsampling_uses_half_pixel_centres() {
        // 1x2 -> 1x4 with align_corners = False: [0, 1] -> [0, 0.25, 0.75, 1].
        let a = tensor(vec![0.0; 4], [1, 1, 1, 4]);
        let b = tensor(vec![0.0, 1.0], [1, 1, 1, 2]);
        let v = values(patch_embedding(vec![a, b], 1, None));
        let up: Vec<f32> = v.chunks(2).map(|r| r[1]).collect();
        for (x, e) in up.iter().zip([0.0, 0.25, 0.75, 1.0]) {
            assert!((x - e).abs() < 1e-6, "{up:?}");
        }
    }

    #[test]
    fn host_path_is_bit_identical_to_the_operations() {
        // Two images, a fine tap and two coarser ones (one at an odd ratio), patch sizes
        // 1, 2 (even: the grid grows by one), 3 and 5, with and without a reduction.
        let mut seed = 7u64;
        let mut noise = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect()
        };
        let taps = vec![
            tensor(noise(2 * 3 * 12 * 10), [2, 3, 12, 10]),
            tensor(noise(2 * 4 * 6 * 5), [2, 4, 6, 5]),
            tensor(noise(2 * 2 * 5 * 3), [2, 2, 5, 3]),
        ];
        // The coarse tap first: the finer ones are resampled down to its grid.
        let reversed: Vec<Tensor<4>> = taps.iter().rev().cloned().collect();
        for p in [1, 3] {
            let fast = host_rows(&reversed, p).expect("flex f32 taps take the host path");
            let reference = embed_with_ops(reversed.clone(), p);
            assert_eq!(values(fast), values(reference), "reversed, p = {p}");
        }
        for p in [1, 2, 3, 5] {
            let fast = host_rows(&taps, p).expect("flex f32 taps take the host path");
            let reference = embed_with_ops(taps.clone(), p);
            assert_eq!(fast.dims(), reference.dims(), "p = {p}");
            assert_eq!(values(fast), values(reference), "p = {p}");
            for target in [None, Some(4)] {
                assert_eq!(
                    values(patch_embedding(taps.clone(), p, target)),
                    values(patch_embedding_with_ops(taps.clone(), p, target))
                );
            }
        }
    }

    #[test]
    fn host_path_matches_the_operations_on_planes_narrower_than_the_window() {
        // A deeper tap one cell wide or high (a small image at stride 16 or 32) under a
        // window of 5 or 7: every output column is a border column.
        let ramp = |n: usize| (0..n).map(|v| (v as f32 * 0.37).sin()).collect::<Vec<_>>();
        for (fine, coarse) in [([1, 2, 6, 4], [1, 3, 1, 1]), ([1, 1, 2, 1], [1, 2, 1, 2])] {
            let taps = vec![
                tensor(ramp(fine.iter().product()), fine),
                tensor(ramp(coarse.iter().product()), coarse),
            ];
            for p in [1, 2, 3, 5, 7] {
                let fast = host_rows(&taps, p).expect("flex f32 taps take the host path");
                let reference = embed_with_ops(taps.clone(), p);
                assert_eq!(fast.dims(), reference.dims(), "{fine:?} {coarse:?} p = {p}");
                assert_eq!(
                    values(fast),
                    values(reference),
                    "{fine:?} {coarse:?} p = {p}"
                );
            }
        }
    }

    #[test]
    fn target_dim_reduces_by_adaptive_average() {
        let a = tensor(vec![1.0, 3.0, 5.0, 7.0], [1, 4, 1, 1]);
        let v = values(patch_embedding(vec![a], 1, Some(2)));
        assert_eq!(v, vec![2.0, 6.0]);
    }
}
