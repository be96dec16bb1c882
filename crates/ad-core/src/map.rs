use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::image::check_dims;

/// A per-pixel anomaly map on the preprocessed image grid (row-major, higher = more anomalous).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyMap {
    width: usize,
    height: usize,
    data: Vec<f32>,
}

impl AnomalyMap {
    /// Wraps a row-major buffer of `width * height` scores.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Result<Self, CoreError> {
        check_dims("anomaly map", width, height)?;
        if data.len() != width * height {
            return Err(CoreError::BufferSize {
                what: "anomaly map",
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

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Row-major scores.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the map, returning its scores.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Largest score (PaDiM's image score); `f32::NEG_INFINITY` never occurs for a valid map.
    pub fn max(&self) -> f32 {
        self.data.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }

    /// The map brought to `width x height` (bilinear, half-pixel centres, as
    /// `F.interpolate(align_corners=False)`); a copy when the size is already right. Used to
    /// return maps at the input image's resolution.
    pub fn resized(&self, width: usize, height: usize) -> Result<AnomalyMap, CoreError> {
        check_dims("resized anomaly map", width, height)?;
        if (width, height) == (self.width, self.height) {
            return Ok(self.clone());
        }
        let data = crate::postprocess::upsample(
            &self.data,
            (self.height, self.width),
            (height, width),
            crate::MapUpsample::Bilinear,
        );
        AnomalyMap::new(width, height, data)
    }

    /// Binary segmentation at `threshold` (`score >= threshold`).
    pub fn threshold(&self, threshold: f32) -> Vec<bool> {
        self.data.iter().map(|&v| v >= threshold).collect()
    }
}

/// What a detector says about one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Image-level anomaly score (higher = more anomalous).
    pub score: f32,
    /// Pixel-level anomaly map on the preprocessed grid.
    pub map: AnomalyMap,
    /// `Some(true)` when the score reaches the detector's learnt threshold, `None` when the
    /// detector has no threshold yet.
    pub is_anomalous: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_checks_size_and_thresholds() {
        assert!(AnomalyMap::new(2, 2, vec![0.0; 3]).is_err());
        let m = AnomalyMap::new(2, 2, vec![0.1, 0.9, 0.5, 0.2]).unwrap();
        assert_eq!(m.max(), 0.9);
        assert_eq!(m.threshold(0.5), vec![false, true, true, false]);
        let big = m.resized(4, 4).unwrap();
        assert_eq!((big.width(), big.height()), (4, 4));
        assert_eq!(big.as_slice()[0], 0.1);
        assert_eq!(big.as_slice()[15], 0.2);
        assert_eq!(m.resized(2, 2).unwrap(), m);
        assert!(m.resized(0, 2).is_err());
    }
}
