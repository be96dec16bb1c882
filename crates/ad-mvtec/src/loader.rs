//! Streaming, parallel decoding and preprocessing into [`ImageBatch`]es.

use ad_core::{ImageBatch, Mask, Preprocessor};
use rayon::prelude::*;

use crate::decode::{load_mask, load_rgb};
use crate::{DatasetError, Sample};

/// A preprocessed batch with what is known about each image.
#[derive(Clone, Debug)]
pub struct LoadedBatch {
    /// Normalised images, `[batch, 3, H, W]`.
    pub images: ImageBatch,
    /// The samples, in batch order.
    pub samples: Vec<Sample>,
    /// Ground truth on the output grid: all-background for good parts, `None` for a defective
    /// part without a mask file.
    pub masks: Vec<Option<Mask>>,
}

/// Decodes and preprocesses one sample: normalised `[3, H, W]` planes and its mask.
///
/// A mask whose size differs from its image is first resized (nearest neighbour) to the image
/// size, and that is logged at debug level.
pub fn load_sample(
    sample: &Sample,
    pre: &Preprocessor,
) -> Result<(Vec<f32>, Option<Mask>), DatasetError> {
    let image = load_rgb(&sample.path)?;
    let planes = pre
        .apply(&image)
        .map_err(|source| DatasetError::Preprocess {
            path: sample.path.clone(),
            source,
        })?;
    let (oh, ow) = pre.output_size();
    let mask = match (&sample.mask, sample.is_anomalous) {
        (Some(path), _) => {
            let mut mask = load_mask(path)?;
            if mask.width() != image.width() || mask.height() != image.height() {
                log::debug!(
                    "mask {} is {}x{} but image {} is {}x{}: resizing the mask (nearest)",
                    path.display(),
                    mask.width(),
                    mask.height(),
                    sample.path.display(),
                    image.width(),
                    image.height()
                );
                mask = mask
                    .resize_nearest(image.width(), image.height())
                    .map_err(|source| DatasetError::Preprocess {
                        path: path.clone(),
                        source,
                    })?;
            }
            Some(pre.mask(&mask).map_err(|source| DatasetError::Preprocess {
                path: path.clone(),
                source,
            })?)
        }
        (None, false) => Some(Mask::empty(ow, oh)),
        (None, true) => None,
    };
    Ok((planes, mask))
}

/// Iterates over samples in batches; each batch is decoded and preprocessed in parallel
/// (rayon), and only one batch is held decoded at a time.
pub struct BatchLoader<'a> {
    samples: &'a [Sample],
    pre: Preprocessor,
    batch_size: usize,
    next: usize,
}

impl<'a> BatchLoader<'a> {
    /// A loader over `samples`; `batch_size` is clamped to at least 1.
    pub fn new(samples: &'a [Sample], pre: Preprocessor, batch_size: usize) -> Self {
        Self {
            samples,
            pre,
            batch_size: batch_size.max(1),
            next: 0,
        }
    }

    /// Number of batches this loader yields in total.
    pub fn num_batches(&self) -> usize {
        self.samples.len().div_ceil(self.batch_size)
    }

    /// Decodes everything at once (only when asked: memory grows with the dataset).
    pub fn load_all(self) -> Result<Vec<LoadedBatch>, DatasetError> {
        self.collect()
    }
}

impl Iterator for BatchLoader<'_> {
    type Item = Result<LoadedBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.samples.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.samples.len());
        let chunk = &self.samples[self.next..end];
        self.next = end;
        let pre = &self.pre;
        let decoded: Result<Vec<_>, DatasetError> =
            chunk.par_iter().map(|s| load_sample(s, pre)).collect();
        Some(decoded.and_then(|items| {
            let (planes, masks): (Vec<_>, Vec<_>) = items.into_iter().unzip();
            let cfg = pre.config();
            let images = ImageBatch::from_planes(planes, pre.output_size(), cfg.mean, cfg.std)?;
            Ok(LoadedBatch {
                images,
                samples: chunk.to_vec(),
                masks,
            })
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.samples.len() - self.next).div_ceil(self.batch_size);
        (n, Some(n))
    }
}
