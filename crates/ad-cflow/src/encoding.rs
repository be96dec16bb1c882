//! The condition of every flow: a 2-D sinusoidal positional encoding of the feature-grid
//! position (Vaswani et al.'s encoding, one half of the channels for the column, one for the
//! row), as CFLOW-AD and anomalib build it.

/// Positional encoding of a `height x width` grid with `dim` channels (a multiple of 4).
///
/// Channel `2k` / `2k + 1` of the first half are `sin` / `cos` of `x * f_k`, those of the
/// second half `sin` / `cos` of `y * f_k`, with `f_k = exp(-2k ln(10^4) / (dim / 2))`.
///
/// # Shapes
/// Returns `[height * width, dim]`, row-major over positions (`y * width + x`): one
/// condition vector per grid position.
pub fn positional_encoding_2d(dim: usize, height: usize, width: usize) -> Vec<f32> {
    let half = dim / 2;
    let freqs: Vec<f64> = (0..half)
        .step_by(2)
        .map(|k| (k as f64 * -(1e4f64.ln() / half as f64)).exp())
        .collect();
    let mut out = vec![0.0f32; height * width * dim];
    for y in 0..height {
        for x in 0..width {
            let row = &mut out[(y * width + x) * dim..(y * width + x + 1) * dim];
            for (i, &f) in freqs.iter().enumerate() {
                let (px, py) = (x as f64 * f, y as f64 * f);
                row[2 * i] = px.sin() as f32;
                row[2 * i + 1] = px.cos() as f32;
                row[half + 2 * i] = py.sin() as f32;
                row[half + 2 * i + 1] = py.cos() as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_layout() {
        let (dim, h, w) = (8, 3, 5);
        let e = positional_encoding_2d(dim, h, w);
        assert_eq!(e.len(), h * w * dim);
        // Frequencies for dim 8: half 4, k in {0, 2}: 1 and exp(-2 ln(1e4) / 4) = 0.01.
        let at = |y: usize, x: usize, c: usize| e[(y * w + x) * dim + c];
        assert!((at(2, 3, 0) - 3f32.sin()).abs() < 1e-6);
        assert!((at(2, 3, 1) - 3f32.cos()).abs() < 1e-6);
        assert!((at(2, 3, 2) - (3.0f32 * 0.01).sin()).abs() < 1e-6);
        assert!((at(2, 3, 4) - 2f32.sin()).abs() < 1e-6);
        assert!((at(2, 3, 7) - (2.0f32 * 0.01).cos()).abs() < 1e-6);
    }
}
