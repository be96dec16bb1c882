//! Frozen backbone features kept on the host, so heads train (and cross-validate) many times
//! without running the backbone again.

use ad_backbone::Backbone;
use ad_core::ImageBatch;
use ad_core::tensor::read_f32;
use burn::tensor::Device;

use crate::RegressError;

/// The maps of one backbone tap for a set of images.
///
/// # Shapes
/// - data: `[images, channels, h, w]`, row-major
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureMaps {
    data: Vec<f32>,
    images: usize,
    channels: usize,
    grid: (usize, usize),
}

impl FeatureMaps {
    /// Runs the frozen `backbone` on `batch` and keeps its first tap.
    pub fn extract(
        backbone: &Backbone,
        batch: &ImageBatch,
        device: &Device,
    ) -> Result<Self, RegressError> {
        let t = backbone
            .forward(batch.to_tensor(device))
            .into_iter()
            .next()
            .ok_or_else(|| RegressError::Data("the backbone has no tap".into()))?;
        let [n, c, h, w] = t.dims();
        Ok(Self {
            data: read_f32(t)?,
            images: n,
            channels: c,
            grid: (h, w),
        })
    }

    /// Appends `other`'s images (same channels and grid).
    pub fn append(&mut self, other: FeatureMaps) -> Result<(), RegressError> {
        if self.images == 0 {
            *self = other;
            return Ok(());
        }
        if (other.channels, other.grid) != (self.channels, self.grid) {
            return Err(RegressError::Data(format!(
                "feature maps of {} channels on {:?} cannot join {} channels on {:?}",
                other.channels, other.grid, self.channels, self.grid
            )));
        }
        self.data.extend_from_slice(&other.data);
        self.images += other.images;
        Ok(())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images
    }

    /// `true` without images.
    pub fn is_empty(&self) -> bool {
        self.images == 0
    }

    /// Channels of the tap.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Grid `(h, w)` of the tap.
    pub fn grid(&self) -> (usize, usize) {
        self.grid
    }

    /// The `[channels, h, w]` maps of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let per = self.channels * self.grid.0 * self.grid.1;
        &self.data[i * per..(i + 1) * per]
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Result<Self, RegressError> {
        let mut data = Vec::new();
        for &i in indices {
            if i >= self.images {
                return Err(RegressError::Data(format!(
                    "index {i} out of {} images",
                    self.images
                )));
            }
            data.extend_from_slice(self.image(i));
        }
        Ok(Self {
            data,
            images: indices.len(),
            channels: self.channels,
            grid: self.grid,
        })
    }

    /// Every image's maps as pixel rows (one row of `channels` values per grid cell), the
    /// input of a per-pixel dense layer (a 1x1 convolution).
    ///
    /// # Shapes
    /// - returns `[images * h * w, channels]`, row-major, image by image
    pub fn pixel_rows(&self) -> Vec<f32> {
        let plane = self.grid.0 * self.grid.1;
        let c = self.channels;
        let mut out = vec![0.0f32; self.images * plane * c];
        for i in 0..self.images {
            let maps = self.image(i);
            let rows = &mut out[i * plane * c..(i + 1) * plane * c];
            for (k, channel) in maps.chunks_exact(plane.max(1)).enumerate() {
                for (p, &v) in channel.iter().enumerate() {
                    rows[p * c + k] = v;
                }
            }
        }
        out
    }

    /// The inverse of [`FeatureMaps::pixel_rows`]: maps from pixel rows.
    ///
    /// # Shapes
    /// - `rows`: `[images * grid.0 * grid.1, channels]`
    pub fn from_pixel_rows(
        rows: &[f32],
        images: usize,
        channels: usize,
        grid: (usize, usize),
    ) -> Result<Self, RegressError> {
        let plane = grid.0 * grid.1;
        if rows.len() != images * plane * channels {
            return Err(RegressError::Data(format!(
                "{} values for {images} images of {channels} x {grid:?} pixel rows",
                rows.len()
            )));
        }
        let mut data = vec![0.0f32; rows.len()];
        for i in 0..images {
            let src = &rows[i * plane * channels..(i + 1) * plane * channels];
            let dst = &mut data[i * plane * channels..(i + 1) * plane * channels];
            for (p, row) in src.chunks_exact(channels.max(1)).enumerate() {
                for (k, &v) in row.iter().enumerate() {
                    dst[k * plane + p] = v;
                }
            }
        }
        Ok(Self {
            data,
            images,
            channels,
            grid,
        })
    }

    /// Global average pooling: `[images, channels]` row-major.
    pub fn pooled(&self) -> Vec<f32> {
        let plane = self.grid.0 * self.grid.1;
        let mut out = Vec::with_capacity(self.images * self.channels);
        for i in 0..self.images {
            for plane_values in self.image(i).chunks(plane.max(1)) {
                out.push(plane_values.iter().sum::<f32>() / plane.max(1) as f32);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_append_and_pool() {
        let a = FeatureMaps {
            data: (0..16).map(|v| v as f32).collect(),
            images: 2,
            channels: 2,
            grid: (2, 2),
        };
        assert_eq!(a.pooled(), vec![1.5, 5.5, 9.5, 13.5]);
        // Image 0: channel 0 = [0, 1, 2, 3], channel 1 = [4, 5, 6, 7] -> pixel rows (0,4), (1,5)...
        let rows = a.pixel_rows();
        assert_eq!(&rows[..8], &[0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]);
        assert_eq!(
            FeatureMaps::from_pixel_rows(&rows, 2, 2, (2, 2)).unwrap(),
            a
        );
        assert!(FeatureMaps::from_pixel_rows(&rows[1..], 2, 2, (2, 2)).is_err());
        let b = a.select(&[1]).unwrap();
        assert_eq!(b.image(0), a.image(1));
        let mut c = b.clone();
        c.append(a.select(&[0]).unwrap()).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.image(1), a.image(0));
        assert!(a.select(&[2]).is_err());
        let other = FeatureMaps {
            data: vec![0.0; 4],
            images: 1,
            channels: 1,
            grid: (2, 2),
        };
        assert!(c.append(other).is_err());
    }
}
