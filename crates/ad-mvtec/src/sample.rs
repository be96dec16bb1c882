use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DatasetError;
use crate::decode::is_image_file;

/// One image of a dataset split, not yet decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// `true` for a defective part.
    pub is_anomalous: bool,
    /// Defect type (the MVTec sub-directory name; `"good"` for good parts).
    pub defect: String,
    /// The ground-truth mask file, for defective parts that have one.
    pub mask: Option<PathBuf>,
}

impl Sample {
    /// A good part (no mask).
    pub fn good(path: PathBuf) -> Self {
        Self {
            path,
            is_anomalous: false,
            defect: "good".to_string(),
            mask: None,
        }
    }

    /// The file stem, e.g. `"003"` for `test/broken_large/003.png`.
    pub fn stem(&self) -> String {
        file_stem(&self.path)
    }
}

/// The train and test splits of one category: what every dataset of this crate produces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    /// Category or dataset name (used in reports).
    pub name: String,
    /// Good images to fit on.
    pub train: Vec<Sample>,
    /// Good and defective images to evaluate on.
    pub test: Vec<Sample>,
}

impl Splits {
    /// Number of defective test images.
    pub fn test_anomalous(&self) -> usize {
        self.test.iter().filter(|s| s.is_anomalous).count()
    }

    /// Defective test images without a ground-truth mask (labelled at image level only).
    pub fn anomalous_without_mask(&self) -> usize {
        self.test
            .iter()
            .filter(|s| s.is_anomalous && s.mask.is_none())
            .count()
    }

    /// Distinct defect types of the test split, sorted, `"good"` included when present.
    pub fn defect_types(&self) -> Vec<String> {
        let mut v: Vec<String> = self.test.iter().map(|s| s.defect.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

pub(crate) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Requires `path` to be an existing directory.
pub(crate) fn require_dir(path: &Path) -> Result<(), DatasetError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(DatasetError::WrongKind {
            path: path.to_path_buf(),
            expected: "directory",
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DatasetError::MissingDir {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(DatasetError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Lists the image files of a directory, sorted by name. Entries with an image extension that
/// are not files (e.g. a directory called `001.png`) are an error; other entries are ignored.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    require_dir(dir)?;
    let rd = std::fs::read_dir(dir).map_err(|source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| DatasetError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if !is_image_file(&path) {
            continue;
        }
        // Follows symlinks, like opening the file would.
        let meta = std::fs::metadata(&path).map_err(|source| DatasetError::Io {
            path: path.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(DatasetError::WrongKind {
                path,
                expected: "file",
            });
        }
        out.push(path);
    }
    out.sort();
    Ok(out)
}

/// Lists the sub-directories of a directory, sorted by name.
pub(crate) fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    require_dir(dir)?;
    let rd = std::fs::read_dir(dir).map_err(|source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| DatasetError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
