//! PaDiM's patch embedding (section 3.1 of the paper): the maps of the taps, the deeper ones
//! upsampled with nearest neighbour to the first (finest) tap's grid, concatenated along
//! channels, and a random subset of `d` channels kept.
//!
//! The full concatenation is never materialised: on the taps' device, each tap gives up only
//! its kept channels, deeper taps are upsampled by index selection, and the result is laid out
//! as `[positions][batch][d]`, the layout the Gaussians consume, so that only the kept
//! channels are read back to the host.

use burn::tensor::{Int, Tensor, TensorData};

/// PyTorch's `nearest` source index: `floor(dst * in / out)`, clamped.
fn nearest(dst: usize, n_in: usize, n_out: usize) -> usize {
    ((dst * n_in) / n_out).min(n_in - 1)
}

/// Draws `d` distinct channel indices of `0..total` with seed `seed` (partial Fisher-Yates on
/// SplitMix64, version-stable), sorted ascending. `d >= total` keeps every channel.
pub fn channel_subset(total: usize, d: usize, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..total).collect();
    if d >= total {
        return all;
    }
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in 0..d {
        let j = i + (next() % (total - i) as u64) as usize;
        all.swap(i, j);
    }
    let mut kept = all[..d].to_vec();
    kept.sort_unstable();
    kept
}

/// Gathers the selected channels (indices into the concatenation of all taps' channels) of
/// every image at every position of the first tap's grid, on the taps' device.
///
/// # Shapes
/// - `taps[i]`: `[batch, c_i, h_i, w_i]`, `taps[0]` the finest grid `[h, w]`
/// - returns `[h * w, batch, channels.len()]` and `(h, w)`
///
/// # Panics
/// When `taps` is empty or no channel is kept, or a channel index is out of range (callers
/// validate channels against the backbone once).
pub fn align_taps(taps: Vec<Tensor<4>>, channels: &[usize]) -> (Tensor<3>, (usize, usize)) {
    let [batch, _, gh, gw] = taps[0].dims();
    let device = taps[0].device();
    let index = |v: Vec<i64>| {
        let n = v.len();
        Tensor::<1, Int>::from_data(TensorData::new(v, [n]), &device)
    };
    let mut parts = Vec::with_capacity(taps.len());
    let mut offset = 0;
    for t in taps {
        let [_, c, h, w] = t.dims();
        let local: Vec<i64> = channels
            .iter()
            .filter(|&&k| (offset..offset + c).contains(&k))
            .map(|&k| (k - offset) as i64)
            .collect();
        offset += c;
        if local.is_empty() {
            continue;
        }
        let mut t = if local.len() == c {
            t // `channels` is ascending: every channel, in order
        } else {
            t.select(1, index(local))
        };
        if h != gh {
            t = t.select(
                2,
                index((0..gh).map(|y| nearest(y, h, gh) as i64).collect()),
            );
        }
        if w != gw {
            t = t.select(
                3,
                index((0..gw).map(|x| nearest(x, w, gw) as i64).collect()),
            );
        }
        parts.push(t);
    }
    assert!(
        channels.iter().all(|&k| k < offset),
        "channel index out of range for {offset} tap channels"
    );
    let x = Tensor::cat(parts, 1); // [batch, d, h, w]
    (
        x.permute([2, 3, 0, 1])
            .reshape([gh * gw, batch, channels.len()]),
        (gh, gw),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_is_deterministic_distinct_and_sorted() {
        let a = channel_subset(176, 100, 0);
        assert_eq!(a, channel_subset(176, 100, 0));
        assert_ne!(a, channel_subset(176, 100, 1));
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(*a.last().unwrap() < 176);
        assert_eq!(channel_subset(5, 9, 3), vec![0, 1, 2, 3, 4]);
    }

    fn tap(data: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(data, shape), &burn::tensor::Device::flex())
    }

    fn aligned(taps: Vec<Tensor<4>>, channels: &[usize]) -> (Vec<f32>, (usize, usize)) {
        let (e, grid) = align_taps(taps, channels);
        (ad_core::tensor::read_f32(e).unwrap(), grid)
    }

    #[test]
    fn deeper_taps_are_upsampled_nearest_and_concatenated() {
        // Tap 0: 1 image, 2 channels, 2x2; tap 1: 1 channel on 1x1 (value 9).
        let t0 = tap(vec![0., 1., 2., 3., 10., 11., 12., 13.], [1, 2, 2, 2]);
        let t1 = tap(vec![9.0], [1, 1, 1, 1]);
        let (e, grid) = aligned(vec![t0, t1], &[0, 1, 2]);
        assert_eq!(grid, (2, 2));
        assert_eq!(e, vec![0., 10., 9., 1., 11., 9., 2., 12., 9., 3., 13., 9.]);
    }

    #[test]
    fn a_subset_of_channels_across_taps_with_a_non_integer_factor() {
        // Tap 0: 1 image, 3 channels on 1x4 (value 100c + x); tap 1: 2 channels on 1x3
        // (value 1000 + 100c + x), upsampled 3 -> 4 by floor(x * 0.75) = [0, 0, 1, 2].
        let t0 = tap(
            (0..3)
                .flat_map(|c| (0..4).map(move |x| (100 * c + x) as f32))
                .collect(),
            [1, 3, 1, 4],
        );
        let t1 = tap(
            (0..2)
                .flat_map(|c| (0..3).map(move |x| (1000 + 100 * c + x) as f32))
                .collect(),
            [1, 2, 1, 3],
        );
        // Keep tap 0's channel 1 and tap 1's channel 1 (global 4).
        let (e, grid) = aligned(vec![t0, t1], &[1, 4]);
        assert_eq!(grid, (1, 4));
        assert_eq!(e, vec![100., 1100., 101., 1100., 102., 1101., 103., 1102.]);
    }

    #[test]
    fn nearest_matches_pytorch_for_a_4x_factor() {
        // 4 -> 16: each source cell covers 4 outputs.
        let got: Vec<usize> = (0..16).map(|d| nearest(d, 4, 16)).collect();
        assert_eq!(got, vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
        // Non-integer factor 3 -> 4: floor(dst * 0.75) = [0, 0, 1, 2].
        let got: Vec<usize> = (0..4).map(|d| nearest(d, 3, 4)).collect();
        assert_eq!(got, vec![0, 0, 1, 2]);
    }

    #[test]
    fn batch_layout_is_positions_then_images() {
        let (e, _) = aligned(vec![tap(vec![1., 2., 3., 4.], [2, 1, 1, 2])], &[0]);
        // Position 0: image 0 -> 1, image 1 -> 3; position 1: 2, 4.
        assert_eq!(e, vec![1., 3., 2., 4.]);
    }
}
