//! Decoding image and mask files (PNG, JPEG, BMP, TIFF; L, LA, RGB, RGBA, 8 and 16 bit).

use std::path::Path;

use ad_core::{Mask, RgbImage};
use image::{DynamicImage, ImageReader};

use crate::DatasetError;

fn open(path: &Path) -> Result<DynamicImage, DatasetError> {
    let meta = std::fs::metadata(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Err(DatasetError::WrongKind {
            path: path.to_path_buf(),
            expected: "file",
        });
    }
    if meta.len() == 0 {
        return Err(DatasetError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let reader = ImageReader::open(path)
        .map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    reader.decode().map_err(|source| DatasetError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Decodes an image file to 8-bit RGB, like PIL's `convert("RGB")`: grey is replicated, alpha
/// is dropped, 16-bit samples are scaled to 8 bits.
pub fn load_rgb(path: &Path) -> Result<RgbImage, DatasetError> {
    let img = open(path)?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    RgbImage::new(w, h, img.into_raw()).map_err(|source| DatasetError::Preprocess {
        path: path.to_path_buf(),
        source,
    })
}

/// Decodes a ground-truth mask: any non-zero luminance is a defective pixel (MVTec masks are
/// 0/255; masks stored as 0/1 work too).
pub fn load_mask(path: &Path) -> Result<Mask, DatasetError> {
    let img = open(path)?.to_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    Mask::new(w, h, img.into_raw().into_iter().map(|v| v > 0).collect()).map_err(|source| {
        DatasetError::Preprocess {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Whether the file name has an image extension this crate decodes.
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff"
            )
        })
        .unwrap_or(false)
}
