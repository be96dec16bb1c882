use crate::CoreError;

/// A decoded 8-bit RGB image, row-major, interleaved (`[r, g, b, r, g, b, ...]`).
///
/// Every decoder in the workspace (PNG, JPEG, BMP, TIFF; L, LA, RGB, RGBA, 16-bit) converts to
/// this one type, the way PIL's `Image.convert("RGB")` does for the Python references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps an interleaved RGB buffer of `width * height * 3` bytes.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self, CoreError> {
        check_dims("image", width, height)?;
        let expected = width * height * 3;
        if data.len() != expected {
            return Err(CoreError::BufferSize {
                what: "RGB image",
                width,
                height,
                channels: 3,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Builds an image from a function of the pixel position (handy in tests and examples).
    pub fn from_fn(
        width: usize,
        height: usize,
        mut f: impl FnMut(usize, usize) -> [u8; 3],
    ) -> Self {
        let mut data = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                data.extend_from_slice(&f(x, y));
            }
        }
        Self {
            width,
            height,
            data,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The interleaved RGB bytes.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    /// Consumes the image and returns its interleaved RGB bytes.
    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// The pixel at `(x, y)`; `None` outside the image.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }
}

/// A binary ground-truth mask (`true` = defective pixel), row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    width: usize,
    height: usize,
    data: Vec<bool>,
}

impl Mask {
    /// Wraps a row-major buffer of `width * height` flags.
    pub fn new(width: usize, height: usize, data: Vec<bool>) -> Result<Self, CoreError> {
        check_dims("mask", width, height)?;
        if data.len() != width * height {
            return Err(CoreError::BufferSize {
                what: "mask",
                width,
                height,
                channels: 1,
                expected: width * height,
                actual: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// An all-background mask (the ground truth of a good part).
    pub fn empty(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![false; width * height],
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Row-major flags.
    pub fn as_slice(&self) -> &[bool] {
        &self.data
    }

    /// Number of defective pixels.
    pub fn count(&self) -> usize {
        self.data.iter().filter(|&&v| v).count()
    }

    /// Resizes with nearest-neighbour sampling exactly as PIL's `Image.NEAREST`
    /// (source index `floor((i + 0.5) * in / out)`), so masks stay binary.
    pub fn resize_nearest(&self, width: usize, height: usize) -> Result<Self, CoreError> {
        check_dims("mask target", width, height)?;
        let xs: Vec<usize> = nearest_indices(self.width, width);
        let ys: Vec<usize> = nearest_indices(self.height, height);
        let mut data = Vec::with_capacity(width * height);
        for &sy in &ys {
            let row = &self.data[sy * self.width..(sy + 1) * self.width];
            data.extend(xs.iter().map(|&sx| row[sx]));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Crops the rectangle at `(left, top)` of the given size (must lie inside the mask).
    pub fn crop(
        &self,
        left: usize,
        top: usize,
        width: usize,
        height: usize,
    ) -> Result<Self, CoreError> {
        check_dims("mask crop", width, height)?;
        if left + width > self.width || top + height > self.height {
            return Err(CoreError::InvalidParameter {
                name: "crop",
                reason: format!(
                    "{width}x{height} at ({left}, {top}) does not fit in a {}x{} mask",
                    self.width, self.height
                ),
            });
        }
        let mut data = Vec::with_capacity(width * height);
        for y in top..top + height {
            data.extend_from_slice(
                &self.data[y * self.width + left..y * self.width + left + width],
            );
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }
}

/// PIL's nearest-neighbour source indices for resizing `input` samples to `output`.
pub(crate) fn nearest_indices(input: usize, output: usize) -> Vec<usize> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|i| (((i as f64 + 0.5) * scale).floor() as usize).min(input - 1))
        .collect()
}

pub(crate) fn check_dims(what: &'static str, width: usize, height: usize) -> Result<(), CoreError> {
    if width == 0 || height == 0 {
        return Err(CoreError::EmptyImage {
            what,
            width,
            height,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_buffer_size_is_checked() {
        assert!(matches!(
            RgbImage::new(2, 2, vec![0; 11]),
            Err(CoreError::BufferSize { expected: 12, .. })
        ));
        assert!(matches!(
            RgbImage::new(0, 2, vec![]),
            Err(CoreError::EmptyImage { .. })
        ));
        let img = RgbImage::from_fn(3, 2, |x, y| [x as u8, y as u8, 7]);
        assert_eq!(img.pixel(2, 1), Some([2, 1, 7]));
        assert_eq!(img.pixel(3, 0), None);
    }

    #[test]
    fn nearest_resize_matches_pil_rule() {
        // 4 -> 2: PIL takes source pixels 1 and 3 ((0.5 * 2) and (1.5 * 2)).
        let m = Mask::new(4, 1, vec![false, true, false, true]).unwrap();
        let r = m.resize_nearest(2, 1).unwrap();
        assert_eq!(r.as_slice(), &[true, true]);
        // Upsampling 2 -> 4 repeats each pixel twice.
        let m = Mask::new(2, 1, vec![true, false]).unwrap();
        assert_eq!(
            m.resize_nearest(4, 1).unwrap().as_slice(),
            &[true, true, false, false]
        );
    }

    #[test]
    fn crop_bounds_are_checked() {
        let m = Mask::empty(4, 4);
        assert!(m.crop(1, 1, 3, 3).is_ok());
        assert!(matches!(
            m.crop(2, 2, 3, 3),
            Err(CoreError::InvalidParameter { .. })
        ));
    }
}
