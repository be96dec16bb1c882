//! PaDiM's patch embedding (section 3.1 of the paper): the maps of the taps, the deeper ones
//! upsampled with nearest neighbour to the first (finest) tap's grid, concatenated along
//! channels, and a random subset of `d` channels kept.
//!
//! The concatenation is never materialised: the kept channels are gathered straight from the
//! tap maps on the host, into the `[positions][batch][d]` layout the Gaussians consume.

use rayon::prelude::*;

/// One tap's feature maps on the host, `[batch, channels, height, width]` row-major.
#[derive(Clone, Debug)]
pub struct TapMap {
    /// Values.
    pub data: Vec<f32>,
    /// Images.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Height of the grid.
    pub height: usize,
    /// Width of the grid.
    pub width: usize,
}

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
/// every image at every position of the first tap's grid.
///
/// # Shapes
/// - `taps[i]`: `[batch, c_i, h_i, w_i]`, `taps[0]` the finest grid `[h, w]`
/// - returns `[h * w][batch][channels.len()]` and `(h, w)`
///
/// # Panics
/// When `taps` is empty, the taps' batch sizes differ, or a channel index is out of range
/// (callers validate channels against the backbone once).
pub fn gather_embedding(taps: &[TapMap], channels: &[usize]) -> (Vec<f32>, (usize, usize)) {
    let first = &taps[0];
    let (gh, gw, batch) = (first.height, first.width, first.batch);
    // (tap, channel within the tap) of every kept channel.
    let mut sources = Vec::with_capacity(channels.len());
    for &c in channels {
        let mut local = c;
        let mut tap = 0;
        while local >= taps[tap].channels {
            local -= taps[tap].channels;
            tap += 1;
        }
        assert_eq!(taps[tap].batch, batch, "taps disagree on the batch size");
        sources.push((tap, local));
    }
    let d = channels.len();
    let mut out = vec![0.0f32; gh * gw * batch * d];
    out.par_chunks_mut(batch * d)
        .enumerate()
        .for_each(|(p, o)| {
            let (y, x) = (p / gw, p % gw);
            for b in 0..batch {
                let row = &mut o[b * d..(b + 1) * d];
                for (v, &(t, c)) in row.iter_mut().zip(&sources) {
                    let m = &taps[t];
                    let (sy, sx) = (nearest(y, m.height, gh), nearest(x, m.width, gw));
                    *v = m.data[((b * m.channels + c) * m.height + sy) * m.width + sx];
                }
            }
        });
    (out, (gh, gw))
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

    #[test]
    fn deeper_taps_are_upsampled_nearest_and_concatenated() {
        // Tap 0: 1 image, 2 channels, 2x2; tap 1: 1 channel on 1x1 (value 9).
        let t0 = TapMap {
            data: vec![0., 1., 2., 3., 10., 11., 12., 13.],
            batch: 1,
            channels: 2,
            height: 2,
            width: 2,
        };
        let t1 = TapMap {
            data: vec![9.0],
            batch: 1,
            channels: 1,
            height: 1,
            width: 1,
        };
        let (e, grid) = gather_embedding(&[t0, t1], &[0, 1, 2]);
        assert_eq!(grid, (2, 2));
        assert_eq!(e, vec![0., 10., 9., 1., 11., 9., 2., 12., 9., 3., 13., 9.]);
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
        let t = TapMap {
            data: vec![1., 2., 3., 4.],
            batch: 2,
            channels: 1,
            height: 1,
            width: 2,
        };
        let (e, _) = gather_embedding(&[t], &[0]);
        // Position 0: image 0 -> 1, image 1 -> 3; position 1: 2, 4.
        assert_eq!(e, vec![1., 3., 2., 4.]);
    }
}
