//! Locally aware patch features (PatchCore section 3.1).
//!
//! Each backbone tap is averaged over a `p x p` neighbourhood (stride 1, zero padding counted,
//! like `AvgPool2d(3, 1, 1)`), deeper taps are upsampled bilinearly (half-pixel centres) to the
//! first tap's grid, and the taps are concatenated along channels. Optionally the channels are
//! reduced to a target dimension by adaptive average pooling (the official code's 1024-d).

use burn::tensor::Tensor;
use burn::tensor::module::{adaptive_avg_pool1d, avg_pool2d, interpolate};
use burn::tensor::ops::{AvgPoolOptions, InterpolateMode, InterpolateOptions};

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
    let rows = features.permute([0, 2, 3, 1]).reshape([b * h * w, d]);
    match target_dim {
        Some(t) if t != d => {
            let reduced = adaptive_avg_pool1d(rows.reshape([b * h * w, 1, d]), t);
            reduced.reshape([b * h * w, t])
        }
        _ => rows,
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
    fn target_dim_reduces_by_adaptive_average() {
        let a = tensor(vec![1.0, 3.0, 5.0, 7.0], [1, 4, 1, 1]);
        let v = values(patch_embedding(vec![a], 1, Some(2)));
        assert_eq!(v, vec![2.0, 6.0]);
    }
}
