//! Heat-map overlays: the input image, the anomaly map in a colormap blended over it, the
//! ground-truth contour and the predicted-mask contour — the four things anomalib's visualiser
//! shows — written as one PNG per test image.

use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::rank::Label;

/// Colormaps computed in code.
///
/// `Viridis` and `Inferno` are matplotlib's perceptually uniform maps, evaluated with a 6th
/// degree polynomial fit (within about 2 % of matplotlib's table); `Jet` is the classic
/// rainbow map used by anomalib (through OpenCV), kept for side-by-side comparisons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Colormap {
    /// Dark purple through teal to yellow.
    Viridis,
    /// Black through purple, red and orange to pale yellow (the default: high scores glow).
    #[default]
    Inferno,
    /// Blue through cyan, yellow to red.
    Jet,
}

const VIRIDIS: [[f64; 3]; 7] = [
    [
        0.277_727_327_223_417_7,
        0.005_407_344_544_966_578,
        0.334_099_805_335_306_1,
    ],
    [
        0.105_093_043_108_577_4,
        1.404_613_529_898_575,
        1.384_590_162_594_685,
    ],
    [
        -0.330_861_828_725_556_3,
        0.214_847_559_468_213,
        0.095_095_163_028_236_59,
    ],
    [
        -4.634_230_498_983_486,
        -5.799_100_973_351_585,
        -19.332_440_956_279_87,
    ],
    [
        6.228_269_936_347_081,
        14.179_933_366_805_09,
        56.690_552_600_681_05,
    ],
    [
        4.776_384_997_670_288,
        -13.745_145_377_746_01,
        -65.353_032_633_372_34,
    ],
    [
        -5.435_455_855_934_631,
        4.645_852_612_178_535,
        26.312_435_249_583_2,
    ],
];

const INFERNO: [[f64; 3]; 7] = [
    [
        0.000_218_940_369_119_226_5,
        0.001_651_004_631_001_012,
        -0.019_480_898_437_091_84,
    ],
    [
        0.106_513_419_485_611_6,
        0.563_956_436_788_409_1,
        3.932_712_388_889_277,
    ],
    [
        11.602_493_082_471_87,
        -3.972_853_965_665_698,
        -15.942_394_106_291_4,
    ],
    [
        -41.703_996_131_394_59,
        17.436_398_882_053_13,
        44.354_145_198_728_13,
    ],
    [
        77.162_935_699_427,
        -33.402_358_942_100_92,
        -81.807_309_257_389_93,
    ],
    [
        -71.319_428_244_992_14,
        32.626_064_263_977_23,
        73.209_519_858_032_02,
    ],
    [
        25.131_126_224_773_41,
        -12.242_668_952_385_67,
        -23.070_325_002_871_72,
    ],
];

fn poly(c: &[[f64; 3]; 7], t: f64) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (ch, o) in out.iter_mut().enumerate() {
        let v = c.iter().rev().fold(0.0, |acc, k| acc * t + k[ch]);
        *o = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    }
    out
}

impl Colormap {
    /// Colour of `t` in `[0, 1]` (values outside are clamped, NaN maps to 0).
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() {
            0.0
        } else {
            t.clamp(0.0, 1.0) as f64
        };
        match self {
            Colormap::Viridis => poly(&VIRIDIS, t),
            Colormap::Inferno => poly(&INFERNO, t),
            Colormap::Jet => {
                let ch =
                    |c: f64| ((1.5 - (4.0 * t - c).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
                [ch(3.0), ch(2.0), ch(1.0)]
            }
        }
    }

    /// A 256-entry lookup table.
    pub fn table(self) -> Vec<[u8; 3]> {
        (0..256).map(|i| self.rgb(i as f32 / 255.0)).collect()
    }
}

/// How anomaly-map values become colormap positions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MapScale {
    /// `(v - min) / (max - min)`, the same for every image, so that good images stay dark
    /// (with maps normalised by a [`Normalizer`](crate::Normalizer): `min 0, max 1`).
    Fixed {
        /// Value drawn at the low end.
        min: f32,
        /// Value drawn at the high end.
        max: f32,
    },
    /// Each map stretched over its own min..max (shows structure, hides the level).
    PerImage,
}

/// Look of an overlay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OverlayStyle {
    /// Colormap of the anomaly map.
    pub colormap: Colormap,
    /// Weight of the heat map in the blend (anomalib uses 0.4), in `[0, 1]`.
    pub alpha: f32,
    /// Map-to-colour scaling.
    pub scale: MapScale,
    /// Colour of the ground-truth contour (default green).
    pub gt_color: [u8; 3],
    /// Colour of the predicted-mask contour (default blue).
    pub pred_color: [u8; 3],
    /// Put the untouched input on the left of the overlay (output twice as wide).
    pub side_by_side: bool,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        Self {
            colormap: Colormap::Inferno,
            alpha: 0.4,
            scale: MapScale::Fixed { min: 0.0, max: 1.0 },
            gt_color: [0, 255, 0],
            pred_color: [0, 128, 255],
            side_by_side: true,
        }
    }
}

/// The pieces of one overlay; all have `width x height` pixels.
#[derive(Debug, Clone, Copy)]
pub struct OverlayInput<'a> {
    /// The input image, RGB, row-major, `3 * width * height` bytes.
    pub image: &'a [u8],
    /// The anomaly map, `width * height` values.
    pub map: &'a [f32],
    /// Ground-truth mask, if any.
    pub gt_mask: Option<&'a [bool]>,
    /// Predicted mask (e.g. [`predicted_mask`]), if any.
    pub pred_mask: Option<&'a [bool]>,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

/// Resizes an RGB image (`3 * width * height` bytes) with a triangle (bilinear) filter, e.g. to
/// bring the original test image to the anomaly map's size before [`overlay`].
///
/// # Errors
/// [`InvalidSize`](MetricsError::InvalidSize) for a zero size,
/// [`LengthMismatch`](MetricsError::LengthMismatch) when `image` does not hold `3 * w * h` bytes.
pub fn resize_rgb(image: &[u8], from: (usize, usize), to: (usize, usize)) -> Result<Vec<u8>> {
    for (w, h) in [from, to] {
        if w == 0 || h == 0 || w > u32::MAX as usize || h > u32::MAX as usize {
            return Err(MetricsError::InvalidSize {
                what: "resize_rgb",
                width: w,
                height: h,
            });
        }
    }
    check_len(
        "resize_rgb image (RGB bytes)",
        image.len(),
        3 * from.0 * from.1,
    )?;
    let src = RgbImage::from_raw(from.0 as u32, from.1 as u32, image.to_vec()).ok_or(
        MetricsError::InvalidSize {
            what: "resize_rgb",
            width: from.0,
            height: from.1,
        },
    )?;
    Ok(image::imageops::resize(
        &src,
        to.0 as u32,
        to.1 as u32,
        image::imageops::FilterType::Triangle,
    )
    .into_raw())
}

/// Resizes an anomaly map bilinearly with half-pixel centres (PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)`), e.g. to the input image's size.
///
/// # Errors
/// As [`resize_rgb`], for a map of `w * h` values.
pub fn resize_map(map: &[f32], from: (usize, usize), to: (usize, usize)) -> Result<Vec<f32>> {
    for (w, h) in [from, to] {
        if w == 0 || h == 0 {
            return Err(MetricsError::InvalidSize {
                what: "resize_map",
                width: w,
                height: h,
            });
        }
    }
    check_len("resize_map map", map.len(), from.0 * from.1)?;
    let (sw, sh) = (from.0 as f64 / to.0 as f64, from.1 as f64 / to.1 as f64);
    let axis = |dst: usize, scale: f64, n: usize| {
        let x = ((dst as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (x.floor() as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, (x - i0 as f64).min(1.0))
    };
    let mut out = Vec::with_capacity(to.0 * to.1);
    for r in 0..to.1 {
        let (r0, r1, fr) = axis(r, sh, from.1);
        for c in 0..to.0 {
            let (c0, c1, fc) = axis(c, sw, from.0);
            let at = |rr: usize, cc: usize| map[rr * from.0 + cc] as f64;
            let top = at(r0, c0) * (1.0 - fc) + at(r0, c1) * fc;
            let bottom = at(r1, c0) * (1.0 - fc) + at(r1, c1) * fc;
            out.push((top * (1.0 - fr) + bottom * fr) as f32);
        }
    }
    Ok(out)
}

/// `map >= threshold` per pixel.
pub fn predicted_mask(map: &[f32], threshold: f32) -> Vec<bool> {
    map.iter().map(|&v| v >= threshold).collect()
}

/// Contour of a mask: the mask pixels with a 4-neighbour outside the mask or outside the image.
pub fn contour<L: Label>(mask: &[L], width: usize, height: usize) -> Vec<bool> {
    let at = |r: usize, c: usize| mask[r * width + c].is_positive();
    let mut out = vec![false; mask.len().min(width * height)];
    for r in 0..height {
        for c in 0..width {
            if !at(r, c) {
                continue;
            }
            let edge = r == 0 || c == 0 || r + 1 == height || c + 1 == width;
            out[r * width + c] =
                edge || !at(r - 1, c) || !at(r + 1, c) || !at(r, c - 1) || !at(r, c + 1);
        }
    }
    out
}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(MetricsError::LengthMismatch {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Renders the overlay (see [`OverlayStyle`]).
///
/// # Errors
/// [`InvalidSize`](MetricsError::InvalidSize) for a zero size,
/// [`LengthMismatch`](MetricsError::LengthMismatch) naming the piece whose length does not fit,
/// [`InvalidParameter`](MetricsError::InvalidParameter) for `alpha` outside `[0, 1]` or a
/// degenerate fixed scale.
pub fn overlay(input: &OverlayInput<'_>, style: &OverlayStyle) -> Result<RgbImage> {
    let (w, h) = (input.width, input.height);
    if w == 0 || h == 0 || w > u32::MAX as usize / 2 || h > u32::MAX as usize {
        return Err(MetricsError::InvalidSize {
            what: "overlay",
            width: w,
            height: h,
        });
    }
    let n = w * h;
    check_len("overlay image (RGB bytes)", input.image.len(), 3 * n)?;
    check_len("overlay anomaly map", input.map.len(), n)?;
    if let Some(m) = input.gt_mask {
        check_len("overlay ground-truth mask", m.len(), n)?;
    }
    if let Some(m) = input.pred_mask {
        check_len("overlay predicted mask", m.len(), n)?;
    }
    if !(0.0..=1.0).contains(&style.alpha) {
        return Err(MetricsError::InvalidParameter {
            name: "alpha",
            value: style.alpha as f64,
            reason: "must be in [0, 1]",
        });
    }
    let (lo, hi) = match style.scale {
        MapScale::Fixed { min, max } => {
            if !(min.is_finite() && max.is_finite() && min < max) {
                return Err(MetricsError::InvalidParameter {
                    name: "scale.max",
                    value: max as f64,
                    reason: "fixed scale needs finite min < max",
                });
            }
            (min, max)
        }
        MapScale::PerImage => {
            let finite = input.map.iter().copied().filter(|v| v.is_finite());
            let lo = finite.clone().fold(f32::INFINITY, f32::min);
            let hi = finite.fold(f32::NEG_INFINITY, f32::max);
            if lo < hi {
                (lo, hi)
            } else {
                (lo.min(0.0), lo.min(0.0) + 1.0)
            }
        }
    };
    let lut = style.colormap.table();
    let a = style.alpha;
    let x0 = if style.side_by_side { w } else { 0 };
    let out_w = if style.side_by_side { 2 * w } else { w };
    let mut out = RgbImage::new(out_w as u32, h as u32);
    let gt = input.gt_mask.map(|m| contour(m, w, h));
    let pred = input.pred_mask.map(|m| contour(m, w, h));
    for r in 0..h {
        for c in 0..w {
            let i = r * w + c;
            let px = [
                input.image[3 * i],
                input.image[3 * i + 1],
                input.image[3 * i + 2],
            ];
            if style.side_by_side {
                out.put_pixel(c as u32, r as u32, image::Rgb(px));
            }
            let t = (input.map[i] - lo) / (hi - lo);
            let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
            let heat = lut[(t * 255.0).round() as usize];
            let mut blended = [0u8; 3];
            for k in 0..3 {
                blended[k] = (a * heat[k] as f32 + (1.0 - a) * px[k] as f32)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
            if gt.as_ref().is_some_and(|g| g[i]) {
                blended = style.gt_color;
            }
            if pred.as_ref().is_some_and(|p| p[i]) {
                blended = style.pred_color;
            }
            out.put_pixel((x0 + c) as u32, r as u32, image::Rgb(blended));
        }
    }
    Ok(out)
}

/// Renders the overlay and writes it as PNG.
///
/// # Errors
/// As [`overlay`], and [`Image`](MetricsError::Image) when the file cannot be written.
pub fn save_overlay(path: &Path, input: &OverlayInput<'_>, style: &OverlayStyle) -> Result<()> {
    let img = overlay(input, style)?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| MetricsError::Image {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(a: [u8; 3], b: [u8; 3]) -> i32 {
        (0..3)
            .map(|k| (a[k] as i32 - b[k] as i32).abs())
            .max()
            .unwrap()
    }

    #[test]
    fn colormaps_match_reference_colours() {
        // matplotlib's viridis / inferno at 0, 0.5, 1
        assert!(dist(Colormap::Viridis.rgb(0.0), [68, 1, 84]) <= 5);
        assert!(dist(Colormap::Viridis.rgb(0.5), [33, 145, 140]) <= 5);
        assert!(dist(Colormap::Viridis.rgb(1.0), [253, 231, 37]) <= 5);
        assert!(dist(Colormap::Inferno.rgb(0.0), [0, 0, 4]) <= 5);
        assert!(dist(Colormap::Inferno.rgb(0.5), [188, 55, 84]) <= 5);
        assert!(dist(Colormap::Inferno.rgb(1.0), [252, 255, 164]) <= 5);
        assert_eq!(Colormap::Jet.rgb(0.0), [0, 0, 128]);
        assert_eq!(Colormap::Jet.rgb(1.0), [128, 0, 0]);
        assert_eq!(Colormap::Inferno.rgb(f32::NAN), Colormap::Inferno.rgb(0.0));
    }

    #[test]
    fn inferno_brightness_is_monotone() {
        let t = Colormap::Inferno.table();
        let lum: Vec<f64> = t
            .iter()
            .map(|c| 0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64)
            .collect();
        assert!(lum.windows(2).all(|w| w[1] >= w[0] - 1.0));
    }

    #[test]
    fn contour_of_square() {
        let mut m = vec![false; 25];
        for r in 1..4 {
            for c in 1..4 {
                m[r * 5 + c] = true;
            }
        }
        let k = contour(&m, 5, 5);
        assert_eq!(k.iter().filter(|&&b| b).count(), 8);
        assert!(!k[12]);
        let edge = contour(&[true; 4], 2, 2);
        assert!(edge.iter().all(|&b| b));
    }

    #[test]
    fn resizing() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=(4, 4),
        //     mode="bilinear", align_corners=False)[0, 0, 0] == [0, 0.25, 0.75, 1]
        let up = resize_map(&[0.0, 1.0, 2.0, 3.0], (2, 2), (4, 4)).unwrap();
        for (a, b) in up[..4].iter().zip([0.0, 0.25, 0.75, 1.0]) {
            assert!((a - b).abs() < 1e-6, "{up:?}");
        }
        assert!((up[15] - 3.0).abs() < 1e-6);
        assert!(resize_map(&[0.0; 3], (2, 2), (4, 4)).is_err());
        let img = resize_rgb(&[200u8; 3 * 8 * 6], (8, 6), (4, 3)).unwrap();
        assert_eq!(img.len(), 3 * 4 * 3);
        assert!(img.iter().all(|&v| v == 200));
    }

    #[test]
    fn overlay_checks_lengths() {
        let img = vec![0u8; 12];
        let map = vec![0.0f32; 3];
        let input = OverlayInput {
            image: &img,
            map: &map,
            gt_mask: None,
            pred_mask: None,
            width: 2,
            height: 2,
        };
        assert!(matches!(
            overlay(&input, &OverlayStyle::default()),
            Err(MetricsError::LengthMismatch { .. })
        ));
    }
}
