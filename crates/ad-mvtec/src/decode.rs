//! Decoding image and mask files (PNG, JPEG, BMP, TIFF; L, LA, RGB, RGBA, 8 and 16 bit).

use std::path::Path;

use ad_core::{Mask, RgbImage};
use image::{DynamicImage, ImageReader, Limits};

use crate::DatasetError;

/// Largest image side decoded (pixels): 32,768, far above any line camera (20 MP is about
/// 5,500 x 3,650).
pub const MAX_SIDE: u32 = 32_768;

/// Largest allocation one decode may make (bytes): 2 GiB, so a forged header cannot make the
/// decoder allocate more.
pub const MAX_ALLOC: u64 = 2 << 30;

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_ALLOC);
    l
}

fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, DatasetError> {
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
    let mut reader = ImageReader::open(path)
        .map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    reader.limits(limits());
    Ok(reader)
}

fn open(path: &Path) -> Result<DynamicImage, DatasetError> {
    reader(path)?
        .decode()
        .map_err(|source| DatasetError::Decode {
            path: path.to_path_buf(),
            source,
        })
}

/// Width and height from the file's header, without decoding the pixels (checks that the file
/// exists, is not empty, has a known format and a size within [`MAX_SIDE`]).
pub fn read_dims(path: &Path) -> Result<(usize, usize), DatasetError> {
    let (w, h) = reader(path)?
        .into_dimensions()
        .map_err(|source| DatasetError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(DatasetError::InvalidParameter {
            name: "image size",
            reason: format!(
                "{}: {w}x{h} is outside 1..={MAX_SIDE} pixels per side",
                path.display()
            ),
        });
    }
    Ok((w as usize, h as usize))
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

/// Whether the file name has an image extension this crate decodes and is not hidden
/// (`.name`, including macOS AppleDouble `._name` files, is skipped everywhere).
pub fn is_image_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .map(|n| n.to_string_lossy().starts_with('.'))
        .unwrap_or(false);
    !hidden
        && path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff"
                )
            })
            .unwrap_or(false)
}
