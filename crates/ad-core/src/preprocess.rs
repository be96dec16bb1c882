//! Preprocessing: resize exactly as PIL does, optional centre crop, optional brightness
//! normalisation, ImageNet normalisation.
//!
//! The Python references (anomalib, the official PatchCore code) feed PIL images through
//! torchvision's `Resize` (bilinear, antialiased), `CenterCrop`, `ToTensor` and `Normalize`.
//! [`resize_bilinear`] reproduces PIL's 8-bit resampler bit for bit (same filter support,
//! same fixed-point coefficients, horizontal pass first, rounding to 8 bits after each pass), so
//! features computed here and in PyTorch start from identical pixels.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::image::check_dims;
use crate::{CoreError, Mask, RgbImage};

/// ImageNet channel means (RGB), as used by torchvision.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB), as used by torchvision.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Rec. 601 luma weights of R, G and B: what [`PreprocessConfig::brightness`] measures.
const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// The gain that takes an image of mean luma `mean` to `level` (both on `[0, 1]`); 1 for an
/// image that is black everywhere, which no gain changes.
fn brightness_gain(level: f32, mean: f64) -> f32 {
    if mean > 0.0 {
        (level as f64 / mean) as f32
    } else {
        1.0
    }
}

/// The luma (Rec. 601: `0.299 R + 0.587 G + 0.114 B`) of [`IMAGENET_MEAN`]: the mean
/// brightness of the images an ImageNet backbone was trained on, on `[0, 1]`
/// ([`PreprocessConfig::brightness`]).
pub const IMAGENET_LUMA: f32 = LUMA[0] as f32 * IMAGENET_MEAN[0]
    + LUMA[1] as f32 * IMAGENET_MEAN[1]
    + LUMA[2] as f32 * IMAGENET_MEAN[2];

/// Unchecked preprocessing parameters (serde-friendly); [`Preprocessor::new`] validates them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Resize target `(height, width)`; default 256x256 (anomalib's default).
    pub resize: (usize, usize),
    /// Optional centre crop `(height, width)` applied after resizing (the paper's 224 on 256).
    pub center_crop: Option<(usize, usize)>,
    /// Per-channel mean subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided after subtracting the mean.
    pub std: [f32; 3],
    /// Brightness normalisation: every image (after resizing and cropping) is multiplied by
    /// one gain so that its mean luma (Rec. 601, on `[0, 1]`) is this level, before the mean
    /// and std above; values are not clipped, so nothing is lost. Lighting that drifts
    /// between the good images a model was fitted on and the parts it inspects then moves
    /// no feature, and images far brighter or darker than ImageNet's reach the backbone at
    /// the brightness it was trained on ([`IMAGENET_LUMA`], `ad --brightness imagenet`).
    /// A defect that changes a whole part's brightness is normalised away with the lighting.
    /// `None` (the default: the references' preprocessing, and what model files written
    /// before the option hold): the pixels as decoded. `ad`'s PatchCore presets set
    /// [`IMAGENET_LUMA`], the selection protocol's choice (docs/results.md, "Brightness
    /// normalisation").
    pub brightness: Option<f32>,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            resize: (256, 256),
            center_crop: None,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            brightness: None,
        }
    }
}

impl PreprocessConfig {
    /// Sets the resize target.
    pub fn with_size(mut self, height: usize, width: usize) -> Self {
        self.resize = (height, width);
        self
    }

    /// Sets (or clears) the centre crop.
    pub fn with_center_crop(mut self, crop: Option<(usize, usize)>) -> Self {
        self.center_crop = crop;
        self
    }

    /// The `(height, width)` of preprocessed images.
    pub fn output_size(&self) -> (usize, usize) {
        self.center_crop.unwrap_or(self.resize)
    }
}

/// Validated preprocessing: turns decoded images into normalised `[3, H, W]` planes and
/// masks into the same pixel grid.
#[derive(Clone, Debug)]
pub struct Preprocessor {
    config: PreprocessConfig,
}

impl Preprocessor {
    /// Validates the configuration once.
    pub fn new(config: PreprocessConfig) -> Result<Self, CoreError> {
        let (h, w) = config.resize;
        if h == 0 || w == 0 || h > 16384 || w > 16384 {
            return Err(CoreError::InvalidParameter {
                name: "resize",
                reason: format!("{h}x{w} must be between 1 and 16384 on each side"),
            });
        }
        if let Some((ch, cw)) = config.center_crop
            && (ch == 0 || cw == 0 || ch > h || cw > w)
        {
            return Err(CoreError::InvalidParameter {
                name: "center_crop",
                reason: format!("{ch}x{cw} must be non-empty and fit in the {h}x{w} resize"),
            });
        }
        for c in 0..3 {
            let std_ok = config.std[c].is_finite() && config.std[c] > 0.0;
            if !std_ok || !config.mean[c].is_finite() {
                return Err(CoreError::InvalidParameter {
                    name: "mean/std",
                    reason: format!(
                        "channel {c}: mean {} and std {} must be finite, std > 0",
                        config.mean[c], config.std[c]
                    ),
                });
            }
        }
        if let Some(level) = config.brightness
            && !(level.is_finite() && level > 0.0 && level <= 1.0)
        {
            return Err(CoreError::InvalidParameter {
                name: "brightness",
                reason: format!("the mean luma {level} must lie in (0, 1]"),
            });
        }
        Ok(Self { config })
    }

    /// The validated configuration.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// `(height, width)` of the output planes.
    pub fn output_size(&self) -> (usize, usize) {
        self.config.output_size()
    }

    /// Resizes and crops an image, keeping 8-bit RGB (for overlays and for [`Self::normalize`]).
    pub fn resize_crop(&self, image: &RgbImage) -> Result<RgbImage, CoreError> {
        let (h, w) = self.config.resize;
        let resized = if image.width() == w && image.height() == h {
            image.clone()
        } else {
            resize_bilinear(image, w, h)?
        };
        match self.config.center_crop {
            None => Ok(resized),
            Some((ch, cw)) => {
                let (left, top) = center_crop_origin((w, h), (cw, ch));
                crop_rgb(&resized, left, top, cw, ch)
            }
        }
    }

    /// Scales to `[0, 1]` (times the brightness gain, [`Self::brightness_gain`]), subtracts
    /// the mean and divides by the std: planar `[3, H, W]`.
    pub fn normalize(&self, image: &RgbImage) -> Vec<f32> {
        let (w, h) = (image.width(), image.height());
        let plane = w * h;
        let mut out = vec![0.0f32; 3 * plane];
        let gain = self.brightness_gain(image);
        // Per channel a lookup table of 256 values keeps this a gather.
        let luts: [[f32; 256]; 3] = std::array::from_fn(|c| {
            std::array::from_fn(|v| {
                (gain * (v as f32 / 255.0) - self.config.mean[c]) / self.config.std[c]
            })
        });
        for (i, px) in image.as_raw().chunks_exact(3).enumerate() {
            out[i] = luts[0][px[0] as usize];
            out[plane + i] = luts[1][px[1] as usize];
            out[2 * plane + i] = luts[2][px[2] as usize];
        }
        out
    }

    /// The gain [`Self::normalize`] multiplies `image`'s `[0, 1]` values by: the configured
    /// [`PreprocessConfig::brightness`] over the image's mean luma (Rec. 601), or 1 without
    /// the option (and for an image that is black everywhere, which no gain changes).
    pub fn brightness_gain(&self, image: &RgbImage) -> f32 {
        let Some(level) = self.config.brightness else {
            return 1.0;
        };
        let (sum, n) = image
            .as_raw()
            .chunks_exact(3)
            .fold((0.0f64, 0usize), |(s, n), px| {
                let luma: f64 = (0..3).map(|c| LUMA[c] * px[c] as f64).sum();
                (s + luma, n + 1)
            });
        brightness_gain(level, sum / (255.0 * n.max(1) as f64))
    }

    /// Resize, crop and normalise one image into planar `[3, H, W]` values.
    pub fn apply(&self, image: &RgbImage) -> Result<Vec<f32>, CoreError> {
        Ok(self.normalize(&self.resize_crop(image)?))
    }

    /// Brings a ground-truth mask onto the output grid: nearest-neighbour resize, then the same
    /// centre crop, so it stays binary and aligned with the image.
    pub fn mask(&self, mask: &Mask) -> Result<Mask, CoreError> {
        let (h, w) = self.config.resize;
        let resized = if mask.width() == w && mask.height() == h {
            mask.clone()
        } else {
            mask.resize_nearest(w, h)?
        };
        match self.config.center_crop {
            None => Ok(resized),
            Some((ch, cw)) => {
                let (left, top) = center_crop_origin((w, h), (cw, ch));
                resized.crop(left, top, cw, ch)
            }
        }
    }

    /// Preprocesses several images into one batch (sequentially; the dataset loaders of
    /// `ad-mvtec` do the same work in parallel).
    pub fn batch(&self, images: &[RgbImage]) -> Result<ImageBatch, CoreError> {
        let mut planes = Vec::with_capacity(images.len());
        for image in images {
            planes.push(self.apply(image)?);
        }
        ImageBatch::from_planes(
            planes,
            self.output_size(),
            self.config.mean,
            self.config.std,
        )
    }
}

/// A batch of normalised images, `[batch, 3, height, width]` row-major (NCHW), ready to become a
/// Burn tensor on any device.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageBatch {
    data: Vec<f32>,
    len: usize,
    height: usize,
    width: usize,
    mean: [f32; 3],
    std: [f32; 3],
}

impl ImageBatch {
    /// Builds a batch from planar `[3, H, W]` images that share one size.
    pub fn from_planes(
        planes: Vec<Vec<f32>>,
        (height, width): (usize, usize),
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Self, CoreError> {
        if planes.is_empty() {
            return Err(CoreError::EmptyBatch);
        }
        check_dims("batch image", width, height)?;
        let per = 3 * height * width;
        let mut data = Vec::with_capacity(per * planes.len());
        for p in &planes {
            if p.len() != per {
                return Err(CoreError::BufferSize {
                    what: "image plane",
                    width,
                    height,
                    channels: 3,
                    expected: per,
                    actual: p.len(),
                });
            }
            data.extend_from_slice(p);
        }
        Ok(Self {
            data,
            len: planes.len(),
            height,
            width,
            mean,
            std,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a batch holds at least one image.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Image height.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `[batch, 3, height, width]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.len, 3, self.height, self.width]
    }

    /// The normalised values, NCHW.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Copies the batch onto `device` as a `[batch, 3, height, width]` float tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::<4>::from_data(TensorData::new(self.data.clone(), self.shape()), device)
    }

    /// Every image resized to `(height, width)` with the antialiased bilinear filter of
    /// [`resize_bilinear`], on the normalised values (for a detector that looks at the same
    /// images at another resolution, e.g. an ensemble's half-resolution member).
    ///
    /// # Shapes
    /// - `self`: `[n, 3, h, w]`
    /// - returns `[n, 3, height, width]`
    pub fn resized(&self, (height, width): (usize, usize)) -> Result<ImageBatch, CoreError> {
        check_dims("resize target", width, height)?;
        if (height, width) == (self.height, self.width) {
            return Ok(self.clone());
        }
        let from = (self.height, self.width);
        let planes = self
            .data
            .chunks_exact(3 * self.height * self.width)
            .map(|image| {
                image
                    .chunks_exact(self.height * self.width)
                    .flat_map(|c| resize_plane(c, from, (height, width)))
                    .collect()
            })
            .collect();
        Self::from_planes(planes, (height, width), self.mean, self.std)
    }

    /// The images at `indices` (in that order), or `None` when `indices` is empty.
    ///
    /// # Errors
    /// [`CoreError::IndexOutOfRange`] for an index past the batch.
    pub fn select(&self, indices: &[usize]) -> Result<Option<ImageBatch>, CoreError> {
        let per = 3 * self.height * self.width;
        let mut data = Vec::with_capacity(per * indices.len());
        for &i in indices {
            if i >= self.len {
                return Err(CoreError::IndexOutOfRange {
                    index: i,
                    len: self.len,
                });
            }
            data.extend_from_slice(&self.data[i * per..(i + 1) * per]);
        }
        Ok((!indices.is_empty()).then_some(Self {
            data,
            len: indices.len(),
            height: self.height,
            width: self.width,
            mean: self.mean,
            std: self.std,
        }))
    }

    /// Splits the batch into chunks of at most `size` images (for a device with little memory).
    pub fn chunks(&self, size: usize) -> impl Iterator<Item = ImageBatch> + '_ {
        let per = 3 * self.height * self.width;
        let size = size.max(1);
        self.data.chunks(per * size).map(move |c| Self {
            data: c.to_vec(),
            len: c.len() / per,
            height: self.height,
            width: self.width,
            mean: self.mean,
            std: self.std,
        })
    }

    /// Tiles of image `index`: one `[3, size.0, size.1]` crop per origin `(y, x)`, in order
    /// (the tiles of a tiled detector).
    pub fn tiles(
        &self,
        index: usize,
        origins: &[(usize, usize)],
        size: (usize, usize),
    ) -> Result<ImageBatch, CoreError> {
        if index >= self.len {
            return Err(CoreError::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        let planes = origins
            .iter()
            .map(|&o| self.crop_plane(index, o, size))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_planes(planes, size, self.mean, self.std)
    }

    /// The same crop `[3, size.0, size.1]` at origin `(y, x)` of every image of the batch (one
    /// tile position of a tiled ensemble).
    pub fn crop(
        &self,
        origin: (usize, usize),
        size: (usize, usize),
    ) -> Result<ImageBatch, CoreError> {
        let planes = (0..self.len)
            .map(|i| self.crop_plane(i, origin, size))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_planes(planes, size, self.mean, self.std)
    }

    fn crop_plane(
        &self,
        index: usize,
        (y0, x0): (usize, usize),
        (th, tw): (usize, usize),
    ) -> Result<Vec<f32>, CoreError> {
        if y0 + th > self.height || x0 + tw > self.width || th == 0 || tw == 0 {
            return Err(CoreError::InvalidParameter {
                name: "tile",
                reason: format!(
                    "a {th}x{tw} tile at ({y0}, {x0}) does not fit a {}x{} image",
                    self.height, self.width
                ),
            });
        }
        let plane = self.height * self.width;
        let base = index * 3 * plane;
        let mut out = Vec::with_capacity(3 * th * tw);
        for c in 0..3 {
            for y in y0..y0 + th {
                let row = base + c * plane + y * self.width;
                out.extend_from_slice(&self.data[row + x0..row + x0 + tw]);
            }
        }
        Ok(out)
    }

    /// Undoes the normalisation of image `index`: the 8-bit RGB picture the detector saw
    /// (for overlays).
    pub fn image(&self, index: usize) -> Result<RgbImage, CoreError> {
        if index >= self.len {
            return Err(CoreError::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        let plane = self.height * self.width;
        let base = index * 3 * plane;
        let mut rgb = Vec::with_capacity(plane * 3);
        for i in 0..plane {
            for c in 0..3 {
                let v = self.data[base + c * plane + i] * self.std[c] + self.mean[c];
                rgb.push((v * 255.0).round().clamp(0.0, 255.0) as u8);
            }
        }
        RgbImage::new(self.width, self.height, rgb)
    }

    /// Brightness normalisation of images already normalised without it: each image's values
    /// on `[0, 1]` multiplied by `level` over its mean luma, as
    /// [`PreprocessConfig::brightness`] does while decoding (the same up to float rounding for
    /// an image straight from the decoder). For images changed after preprocessing, e.g.
    /// synthetic defects drawn on a good image, so the gain is measured on the changed
    /// image as a camera image of that defect would be. `None` returns the batch unchanged.
    ///
    /// # Shapes
    /// - `self`, returns: `[n, 3, h, w]`
    pub fn with_brightness(mut self, level: Option<f32>) -> ImageBatch {
        let Some(level) = level else {
            return self;
        };
        let plane = self.height * self.width;
        let (mean, std) = (self.mean, self.std);
        for image in self.data.chunks_exact_mut(3 * plane) {
            let unit = |c: usize, x: f32| LUMA[c] * (x * std[c] + mean[c]) as f64;
            let luma: f64 = (0..plane)
                .map(|i| (0..3).map(|c| unit(c, image[c * plane + i])).sum::<f64>())
                .sum::<f64>()
                / plane.max(1) as f64;
            let gain = brightness_gain(level, luma);
            for (k, x) in image.iter_mut().enumerate() {
                let c = k / plane;
                *x = (gain * (*x * std[c] + mean[c]) - mean[c]) / std[c];
            }
        }
        self
    }
}

/// torchvision's `CenterCrop` origin: `round((size - crop) / 2)` with Python's
/// round-half-to-even.
pub fn center_crop_origin(
    (width, height): (usize, usize),
    (cw, ch): (usize, usize),
) -> (usize, usize) {
    let half = |a: usize, b: usize| ((a - b) as f64 / 2.0).round_ties_even() as usize;
    (half(width, cw), half(height, ch))
}

fn crop_rgb(
    image: &RgbImage,
    left: usize,
    top: usize,
    width: usize,
    height: usize,
) -> Result<RgbImage, CoreError> {
    let src = image.as_raw();
    let stride = image.width() * 3;
    let mut out = Vec::with_capacity(width * height * 3);
    for y in top..top + height {
        out.extend_from_slice(&src[y * stride + left * 3..y * stride + (left + width) * 3]);
    }
    RgbImage::new(width, height, out)
}

/// Fixed-point precision of PIL's 8-bit resampler (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Per output sample: first source index and fixed-point weights (PIL's `precompute_coeffs` +
/// `normalize_coeffs_8bpc` for the bilinear filter, support 1).
struct Coeffs {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn bilinear_coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let (start, weights) = bilinear_weights(in_size, out_size);
    let weights = weights
        .iter()
        .map(|w| {
            w.iter()
                .map(|&v| {
                    let s = v * (1u32 << PRECISION_BITS) as f64;
                    if v < 0.0 {
                        (s - 0.5) as i32
                    } else {
                        (s + 0.5) as i32
                    }
                })
                .collect()
        })
        .collect();
    Coeffs { start, weights }
}

/// Per output sample: first source index and the normalised weights of PIL's antialiased
/// bilinear filter (a triangle of support 1, widened by the scale when shrinking).
fn bilinear_weights(in_size: usize, out_size: usize) -> (Vec<usize>, Vec<Vec<f64>>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0 * filterscale
    let ss = 1.0 / filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates towards zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let mut w: Vec<f64> = (xmin..xmax)
            .map(|x| {
                let t = ((x as f64 - center + 0.5) * ss).abs();
                if t < 1.0 { 1.0 - t } else { 0.0 }
            })
            .collect();
        let total: f64 = w.iter().sum();
        if total != 0.0 {
            for v in &mut w {
                *v /= total;
            }
        }
        start.push(xmin);
        weights.push(w);
    }
    (start, weights)
}

/// One `[h, w]` float plane resized to `(oh, ow)` with [`resize_bilinear`]'s filter
/// (antialiased bilinear), in floating point.
fn resize_plane(plane: &[f32], (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f32> {
    let horizontal = if w == ow {
        plane.to_vec()
    } else {
        let (start, weights) = bilinear_weights(w, ow);
        let mut out = vec![0.0f32; h * ow];
        for (row, orow) in plane.chunks_exact(w).zip(out.chunks_exact_mut(ow)) {
            for (x, o) in orow.iter_mut().enumerate() {
                let src = &row[start[x]..start[x] + weights[x].len()];
                *o = src
                    .iter()
                    .zip(&weights[x])
                    .map(|(&v, &k)| f64::from(v) * k)
                    .sum::<f64>() as f32;
            }
        }
        out
    };
    if h == oh {
        return horizontal;
    }
    let (start, weights) = bilinear_weights(h, oh);
    let mut out = vec![0.0f32; oh * ow];
    for (y, orow) in out.chunks_exact_mut(ow).enumerate() {
        for (k, &wt) in weights[y].iter().enumerate() {
            let row = &horizontal[(start[y] + k) * ow..(start[y] + k + 1) * ow];
            for (o, &v) in orow.iter_mut().zip(row) {
                *o += (f64::from(v) * wt) as f32;
            }
        }
    }
    out
}

#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Bilinear resize with antialiasing, bit-identical to PIL's `Image.resize(size, BILINEAR)` on
/// 8-bit RGB (horizontal pass first, each pass rounded to 8 bits).
pub fn resize_bilinear(
    image: &RgbImage,
    width: usize,
    height: usize,
) -> Result<RgbImage, CoreError> {
    check_dims("resize target", width, height)?;
    let (iw, ih) = (image.width(), image.height());
    let src = image.as_raw();
    // Horizontal pass.
    let horizontal: Vec<u8> = if iw == width {
        src.to_vec()
    } else {
        let c = bilinear_coeffs(iw, width);
        let mut out = vec![0u8; width * ih * 3];
        for y in 0..ih {
            let row = &src[y * iw * 3..(y + 1) * iw * 3];
            let orow = &mut out[y * width * 3..(y + 1) * width * 3];
            for x in 0..width {
                let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
                for (k, &w) in c.weights[x].iter().enumerate() {
                    let p = (c.start[x] + k) * 3;
                    for ch in 0..3 {
                        acc[ch] += row[p + ch] as i64 * w as i64;
                    }
                }
                for ch in 0..3 {
                    orow[x * 3 + ch] = clip8(acc[ch]);
                }
            }
        }
        out
    };
    if ih == height {
        return RgbImage::new(width, height, horizontal);
    }
    // Vertical pass.
    let c = bilinear_coeffs(ih, height);
    let stride = width * 3;
    let mut out = vec![0u8; width * height * 3];
    let mut acc = vec![0i64; stride];
    for y in 0..height {
        acc.fill(1i64 << (PRECISION_BITS - 1));
        for (k, &w) in c.weights[y].iter().enumerate() {
            let row = &horizontal[(c.start[y] + k) * stride..(c.start[y] + k + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i64 * w as i64;
            }
        }
        for (o, &a) in out[y * stride..(y + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    RgbImage::new(width, height, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            [
                (x * 255 / (w - 1)) as u8,
                (y * 255 / (h - 1)) as u8,
                ((x * 7 + y * 13) % 256) as u8,
            ]
        })
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_fn(37, 23, |_, _| [10, 128, 250]);
        for (w, h) in [(8, 8), (64, 50), (37, 5)] {
            let r = resize_bilinear(&img, w, h).unwrap();
            assert!(r.as_raw().chunks(3).all(|p| p == [10, 128, 250]));
        }
    }

    #[test]
    fn downscale_by_two_averages_like_pil() {
        // PIL's antialiased bilinear at scale 2 has support 2: weights 1/8, 3/8, 3/8, 1/8
        // around each output centre (clipped at the border and renormalised).
        let img = RgbImage::from_fn(8, 1, |x, _| [(x * 10) as u8, 0, 0]);
        let r = resize_bilinear(&img, 4, 1).unwrap();
        // centre of output 1 is 3.0: inputs 1..5 (10, 20, 30, 40) with weights
        // 1/8, 3/8, 3/8, 1/8 -> 25.
        assert_eq!(r.pixel(1, 0).unwrap()[0], 25);
        // output 0: inputs 0,1,2 with weights 3/7,3/7,1/7 -> (0*3+10*3+20)/7 = 7.14 -> 7
        assert_eq!(r.pixel(0, 0).unwrap()[0], 7);
    }

    #[test]
    fn batches_resize_with_the_same_filter_as_images() {
        // Shrinking a batch of normalised planes agrees with resizing the 8-bit image first
        // (up to the 8-bit rounding of the latter), and a batch at its own size is unchanged.
        let big = Preprocessor::new(PreprocessConfig::default().with_size(32, 48)).unwrap();
        let small = Preprocessor::new(PreprocessConfig::default().with_size(16, 20)).unwrap();
        let img = gradient(48, 32);
        let batch = big.batch(&[img.clone(), img.clone()]).unwrap();
        let resized = batch.resized((16, 20)).unwrap();
        assert_eq!(resized.shape(), [2, 3, 16, 20]);
        let direct = small.batch(&[img]).unwrap();
        let step = 1.0 / (255.0 * IMAGENET_STD[2]);
        for (a, b) in resized.as_slice()[..direct.as_slice().len()]
            .iter()
            .zip(direct.as_slice())
        {
            assert!((a - b).abs() <= 1.01 * step, "{a} vs {b}");
        }
        assert_eq!(batch.resized((32, 48)).unwrap(), batch);
        // Enlarging keeps a constant plane constant.
        let flat = ImageBatch::from_planes(
            vec![vec![0.5; 3 * 4 * 4]],
            (4, 4),
            IMAGENET_MEAN,
            IMAGENET_STD,
        )
        .unwrap();
        let up = flat.resized((9, 7)).unwrap();
        assert!(up.as_slice().iter().all(|v| (v - 0.5).abs() < 1e-6));
        assert!(flat.resized((0, 7)).is_err());
    }

    #[test]
    fn normalisation_and_denormalisation_round_trip() {
        let pre = Preprocessor::new(PreprocessConfig::default().with_size(16, 16)).unwrap();
        let img = gradient(40, 30);
        let batch = pre.batch(&[img.clone(), img]).unwrap();
        assert_eq!(batch.shape(), [2, 3, 16, 16]);
        let back = batch.image(1).unwrap();
        let direct = pre.resize_crop(&gradient(40, 30)).unwrap();
        assert_eq!(back, direct);
        assert!(batch.image(2).is_err());
        // First value: (r/255 - mean) / std.
        let r = direct.as_raw()[0] as f32 / 255.0;
        assert!((batch.as_slice()[0] - (r - IMAGENET_MEAN[0]) / IMAGENET_STD[0]).abs() < 1e-6);
    }

    #[test]
    fn brightness_normalisation_sets_the_mean_luma_and_cancels_a_global_gain() {
        let plain = PreprocessConfig::default().with_size(16, 16);
        let level = PreprocessConfig {
            brightness: Some(IMAGENET_LUMA),
            ..plain.clone()
        };
        let (off, on) = (
            Preprocessor::new(plain).unwrap(),
            Preprocessor::new(level).unwrap(),
        );
        let img = gradient(16, 16);
        // The same scene under 30 % less light (8-bit, as a camera would record it).
        let dim = RgbImage::from_fn(16, 16, |x, y| {
            img.pixel(x, y)
                .unwrap()
                .map(|v| (v as f32 * 0.7).round() as u8)
        });
        // Without the option nothing changes; with it, the image's mean luma on [0, 1] is the
        // level after the gain.
        assert_eq!(off.brightness_gain(&img), 1.0);
        assert_eq!(off.apply(&img).unwrap(), off.normalize(&img));
        let values = on.apply(&img).unwrap();
        let plane = 16 * 16;
        let luma: f32 = (0..plane)
            .map(|i| {
                let c = |k: usize| values[k * plane + i] * IMAGENET_STD[k] + IMAGENET_MEAN[k];
                (0..3).map(|k| LUMA[k] as f32 * c(k)).sum::<f32>()
            })
            .sum::<f32>()
            / plane as f32;
        assert!((luma - IMAGENET_LUMA).abs() < 1e-4, "{luma}");
        // The dimmed copy lands on the bright one's values, up to the 8-bit rounding of the
        // dimming (at most half a level, over 0.7, in the brighter image's units).
        let worst = on
            .apply(&dim)
            .unwrap()
            .iter()
            .zip(&values)
            .enumerate()
            .map(|(k, (a, b))| (a - b).abs() * IMAGENET_STD[k / plane])
            .fold(0.0f32, f32::max);
        assert!(worst < 1.5 / 255.0, "{worst}");
        let far = off
            .apply(&dim)
            .unwrap()
            .iter()
            .zip(&off.apply(&img).unwrap())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(far > 0.5, "{far}");
        // Normalising a batch made without the option gives the decoder's values.
        let later = off
            .batch(std::slice::from_ref(&dim))
            .unwrap()
            .with_brightness(Some(IMAGENET_LUMA));
        let direct = on.apply(&dim).unwrap();
        assert!(
            later
                .as_slice()
                .iter()
                .zip(&direct)
                .all(|(a, b)| (a - b).abs() < 1e-4)
        );
        // A black image has no brightness to normalise: it stays black.
        let black = RgbImage::from_fn(4, 4, |_, _| [0, 0, 0]);
        assert_eq!(on.brightness_gain(&black), 1.0);
        for bad in [0.0, -0.2, 1.5, f32::NAN] {
            let config = PreprocessConfig {
                brightness: Some(bad),
                ..PreprocessConfig::default()
            };
            assert!(Preprocessor::new(config).is_err(), "{bad}");
        }
    }

    #[test]
    fn centre_crop_follows_torchvision() {
        assert_eq!(center_crop_origin((256, 256), (224, 224)), (16, 16));
        // (5 - 2) / 2 = 1.5 rounds to 2 (half to even)
        assert_eq!(center_crop_origin((5, 5), (2, 2)), (2, 2));
        let pre = Preprocessor::new(
            PreprocessConfig::default()
                .with_size(8, 8)
                .with_center_crop(Some((4, 6))),
        )
        .unwrap();
        let img = gradient(8, 8);
        let out = pre.resize_crop(&img).unwrap();
        assert_eq!((out.width(), out.height()), (6, 4));
        assert_eq!(out.pixel(0, 0), img.pixel(1, 2));
        let mask = Mask::new(8, 8, (0..64).map(|i| i == 2 * 8 + 1).collect()).unwrap();
        let m = pre.mask(&mask).unwrap();
        assert_eq!((m.width(), m.height()), (6, 4));
        assert!(m.as_slice()[0]);
        assert_eq!(m.count(), 1);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let bad = [
            PreprocessConfig::default().with_size(0, 10),
            PreprocessConfig::default().with_center_crop(Some((300, 10))),
            PreprocessConfig {
                std: [1.0, 0.0, 1.0],
                ..Default::default()
            },
        ];
        for cfg in bad {
            assert!(matches!(
                Preprocessor::new(cfg),
                Err(CoreError::InvalidParameter { .. })
            ));
        }
    }

    #[test]
    fn batch_becomes_a_tensor() {
        let pre = Preprocessor::new(PreprocessConfig::default().with_size(4, 5)).unwrap();
        let batch = pre.batch(&[gradient(10, 10)]).unwrap();
        let t = batch.to_tensor(&Device::default());
        assert_eq!(t.dims(), [1, 3, 4, 5]);
        let back: Vec<f32> = t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(back, batch.as_slice());
        assert_eq!(batch.chunks(1).count(), 1);
    }
}
