//! Map post-processing shared by every detector: from a grid of patch scores to a pixel
//! anomaly map. Upsample the score grid to the image size, then Gaussian blur (sigma 4 in the
//! PatchCore and PaDiM papers), as anomalib's `AnomalyMapGenerator`.

use serde::{Deserialize, Serialize};

/// How a score grid is brought to the image size before blurring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapUpsample {
    /// Nearest neighbour (`F.interpolate` default; anomalib's PatchCore).
    #[default]
    Nearest,
    /// Bilinear with half-pixel centres (`align_corners = False`; the official PatchCore code,
    /// anomalib's PaDiM).
    Bilinear,
}

impl MapUpsample {
    /// Every mode, with its name.
    pub const ALL: [(&'static str, MapUpsample); 2] =
        [("nearest", Self::Nearest), ("bilinear", Self::Bilinear)];
}

impl std::fmt::Display for MapUpsample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(_, m)| m == self)
            .map_or("nearest", |(n, _)| n);
        f.write_str(name)
    }
}

impl std::str::FromStr for MapUpsample {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, m)| *m)
            .ok_or_else(|| format!("unknown upsampling `{s}`: use nearest or bilinear"))
    }
}

/// Checks the settings every detector shares, returning the name of the first bad one and why:
/// the map blur `sigma` in `[0, 64]`, a `batch_size` of at least 1, and the preprocessing.
pub fn check_shared(
    sigma: f32,
    batch_size: usize,
    preprocess: &crate::PreprocessConfig,
) -> Result<(), (&'static str, String)> {
    if !(sigma.is_finite() && (0.0..=64.0).contains(&sigma)) {
        return Err(("blur_sigma", format!("{sigma} is not in [0, 64]")));
    }
    if batch_size == 0 {
        return Err(("batch_size", "must be at least 1".into()));
    }
    crate::Preprocessor::new(preprocess.clone())
        .map(drop)
        .map_err(|e| ("preprocess", e.to_string()))
}

/// Upsamples a `[batch][gh * gw]` score grid to `h x w` and blurs it with `sigma`: the anomaly
/// map of every image of a batch, computed in parallel.
///
/// # Shapes
/// `grids`: `[batch, gh * gw]` row-major; returns `batch` maps of `h * w`.
pub fn score_maps(
    grids: &[f32],
    grid: (usize, usize),
    size: (usize, usize),
    mode: MapUpsample,
    sigma: f32,
) -> Vec<Vec<f32>> {
    use rayon::prelude::*;
    let per = (grid.0 * grid.1).max(1);
    grids
        .par_chunks(per)
        .map(|g| gaussian_blur(&upsample(g, grid, size, mode), size, sigma))
        .collect()
}

/// Kernel size used for `sigma`: `2 * int(4 * sigma + 0.5) + 1` (33 for sigma 4).
pub fn kernel_size(sigma: f32) -> usize {
    2 * (4.0 * sigma + 0.5) as usize + 1
}

/// Normalised 1-D Gaussian kernel centred on `size / 2` (kornia's `get_gaussian_kernel1d`).
pub fn gaussian_kernel(sigma: f32, size: usize) -> Vec<f32> {
    let c = (size / 2) as f64;
    let s = sigma as f64;
    let k: Vec<f64> = (0..size)
        .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * s * s)).exp())
        .collect();
    let total: f64 = k.iter().sum();
    k.into_iter().map(|v| (v / total) as f32).collect()
}

/// Index into `0..n` with PyTorch's `reflect` padding (mirror without repeating the edge),
/// folded as often as needed for kernels wider than the map.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let mut m = i.rem_euclid(period);
    if m >= n as isize {
        m = period - m;
    }
    m as usize
}

/// Upsamples a `gh x gw` grid to `h x w`.
pub fn upsample(
    grid: &[f32],
    (gh, gw): (usize, usize),
    (h, w): (usize, usize),
    mode: MapUpsample,
) -> Vec<f32> {
    let mut out = vec![0.0f32; h * w];
    match mode {
        MapUpsample::Nearest => {
            // PyTorch 'nearest': src = floor(dst * in / out).
            let xs: Vec<usize> = (0..w).map(|x| ((x * gw) / w).min(gw - 1)).collect();
            for y in 0..h {
                let sy = ((y * gh) / h).min(gh - 1);
                let row = &grid[sy * gw..(sy + 1) * gw];
                for (o, &sx) in out[y * w..(y + 1) * w].iter_mut().zip(&xs) {
                    *o = row[sx];
                }
            }
        }
        MapUpsample::Bilinear => {
            let coords = |n_out: usize, n_in: usize| -> Vec<(usize, usize, f32)> {
                let scale = n_in as f32 / n_out as f32;
                (0..n_out)
                    .map(|o| {
                        let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                        let i0 = (src.floor() as usize).min(n_in - 1);
                        let i1 = (i0 + 1).min(n_in - 1);
                        (i0, i1, src - i0 as f32)
                    })
                    .collect()
            };
            let cx = coords(w, gw);
            let cy = coords(h, gh);
            for (y, &(y0, y1, fy)) in cy.iter().enumerate() {
                for (x, &(x0, x1, fx)) in cx.iter().enumerate() {
                    let top = grid[y0 * gw + x0] * (1.0 - fx) + grid[y0 * gw + x1] * fx;
                    let bottom = grid[y1 * gw + x0] * (1.0 - fx) + grid[y1 * gw + x1] * fx;
                    out[y * w + x] = top * (1.0 - fy) + bottom * fy;
                }
            }
        }
    }
    out
}

/// Separable Gaussian blur with reflect padding (`h x w`, row-major); `sigma = 0` copies.
pub fn gaussian_blur(map: &[f32], (h, w): (usize, usize), sigma: f32) -> Vec<f32> {
    if sigma == 0.0 {
        return map.to_vec();
    }
    let size = kernel_size(sigma);
    let k = gaussian_kernel(sigma, size);
    let r = (size / 2) as isize;
    // Rows: each row is padded once (reflect), then every tap is added over the whole row, so
    // the inner loop is a vectorisable axpy; every output still sums its taps in kernel order
    // from zero, as a per-pixel loop would.
    let mut tmp = vec![0.0f32; h * w];
    let mut padded = vec![0.0f32; w + size - 1];
    for y in 0..h {
        let row = &map[y * w..(y + 1) * w];
        for (t, p) in padded.iter_mut().enumerate() {
            *p = row[reflect(t as isize - r, w)];
        }
        let o = &mut tmp[y * w..(y + 1) * w];
        for (j, &kv) in k.iter().enumerate() {
            for (a, &v) in o.iter_mut().zip(&padded[j..j + w]) {
                *a += kv * v;
            }
        }
    }
    let mut out = vec![0.0f32; h * w];
    for y in 0..h {
        let o = &mut out[y * w..(y + 1) * w];
        for (j, &kv) in k.iter().enumerate() {
            let src = reflect(y as isize + j as isize - r, h);
            let row = &tmp[src * w..(src + 1) * w];
            for (a, &v) in o.iter_mut().zip(row) {
                *a += kv * v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_matches_anomalib() {
        assert_eq!(kernel_size(4.0), 33);
        let k = gaussian_kernel(4.0, 33);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(k[16] > k[15] && (k[15] - k[17]).abs() < 1e-9);
        // exp(-1/32) ratio between the centre and its neighbour.
        assert!((k[15] / k[16] - (-1.0f32 / 32.0).exp()).abs() < 1e-6);
    }

    #[test]
    fn reflect_mirrors_without_edge_repeat() {
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(reflect(5, 1), 0);
    }

    #[test]
    fn blur_preserves_constants_and_mass_centre() {
        let c = gaussian_blur(&[2.0; 40 * 30], (30, 40), 4.0);
        assert!(c.iter().all(|v| (v - 2.0).abs() < 1e-5));
        let mut impulse = vec![0.0; 64 * 64];
        impulse[32 * 64 + 32] = 1.0;
        let b = gaussian_blur(&impulse, (64, 64), 4.0);
        assert!((b.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        let max = b.iter().cloned().fold(0.0, f32::max);
        assert_eq!(b[32 * 64 + 32], max);
        // Small maps (narrower than the kernel) still work.
        let s = gaussian_blur(&[1.0, 0.0, 0.0, 1.0], (2, 2), 4.0);
        assert!(s.iter().all(|v| v.is_finite()));
    }

    /// The blur as a per-pixel double loop (taps in kernel order, from zero), to check the
    /// row-wise axpy form against, bit for bit.
    fn blur_per_pixel(map: &[f32], (h, w): (usize, usize), sigma: f32) -> Vec<f32> {
        let size = kernel_size(sigma);
        let k = gaussian_kernel(sigma, size);
        let r = (size / 2) as isize;
        let mut tmp = vec![0.0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0f32;
                for (j, &kv) in k.iter().enumerate() {
                    acc += kv * map[y * w + reflect(x as isize + j as isize - r, w)];
                }
                tmp[y * w + x] = acc;
            }
        }
        let mut out = vec![0.0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0f32;
                for (j, &kv) in k.iter().enumerate() {
                    acc += kv * tmp[reflect(y as isize + j as isize - r, h) * w + x];
                }
                out[y * w + x] = acc;
            }
        }
        out
    }

    #[test]
    fn blur_equals_the_per_pixel_sum_bit_for_bit() {
        for &(h, w, sigma) in &[(37, 53, 4.0f32), (5, 70, 2.0), (64, 3, 4.0), (1, 9, 1.5)] {
            let map: Vec<f32> = (0..h * w)
                .map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0)
                .collect();
            let fast = gaussian_blur(&map, (h, w), sigma);
            let slow = blur_per_pixel(&map, (h, w), sigma);
            assert!(
                fast.iter()
                    .zip(&slow)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{h}x{w}, sigma {sigma}"
            );
        }
    }

    #[test]
    fn upsampling_modes() {
        let g = [0.0, 1.0, 2.0, 3.0];
        let n = upsample(&g, (2, 2), (4, 4), MapUpsample::Nearest);
        assert_eq!(&n[..4], &[0.0, 0.0, 1.0, 1.0]);
        assert_eq!(&n[12..], &[2.0, 2.0, 3.0, 3.0]);
        let b = upsample(&g, (2, 2), (4, 4), MapUpsample::Bilinear);
        assert_eq!(&b[..4], &[0.0, 0.25, 0.75, 1.0]);
    }
}
