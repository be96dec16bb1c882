//! A user's own production line: folders of good and defective images, like anomalib's
//! `Folder` datamodule.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;
use crate::sample::{Splits, file_stem, list_images};
use crate::{DatasetError, Sample};

/// Folders that make a dataset (unchecked; [`FolderConfig::open`] validates and lists them).
///
/// - `normal_dirs`: one or more folders of good parts (training; some go to test when there is
///   no `normal_test_dir`);
/// - `abnormal_dirs`: optional folders of defective parts (test only); the folder name is the
///   defect type;
/// - `mask_dir`: optional folder of masks, paired with defective images by stem
///   (`<stem>.<ext>` or `<stem>_mask.<ext>`);
/// - `normal_test_dir`: optional folder of good parts kept for testing;
/// - `test_split_ratio`: fraction of the normal images moved to test when there is no
///   `normal_test_dir` (default 0.2), chosen by a seeded shuffle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FolderConfig {
    /// Dataset name for reports.
    pub name: String,
    /// Folders of good images.
    pub normal_dirs: Vec<PathBuf>,
    /// Folders of defective images.
    pub abnormal_dirs: Vec<PathBuf>,
    /// Folder of masks for the defective images.
    pub mask_dir: Option<PathBuf>,
    /// Folder of good images reserved for testing.
    pub normal_test_dir: Option<PathBuf>,
    /// Fraction of normal images moved to test when `normal_test_dir` is absent.
    pub test_split_ratio: f64,
    /// Seed of the normal split.
    pub seed: u64,
}

impl Default for FolderConfig {
    fn default() -> Self {
        Self {
            name: "folder".to_string(),
            normal_dirs: Vec::new(),
            abnormal_dirs: Vec::new(),
            mask_dir: None,
            normal_test_dir: None,
            test_split_ratio: 0.2,
            seed: 42,
        }
    }
}

/// A dataset built from a [`FolderConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderDataset {
    /// The splits.
    pub splits: Splits,
}

impl FolderConfig {
    /// Starts a configuration with one folder of good images.
    pub fn new(name: impl Into<String>, normal_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            normal_dirs: vec![normal_dir.into()],
            ..Self::default()
        }
    }

    /// Adds a folder of defective images.
    pub fn with_abnormal_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.abnormal_dirs.push(dir.into());
        self
    }

    /// Sets the mask folder.
    pub fn with_mask_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.mask_dir = Some(dir.into());
        self
    }

    /// Sets the folder of good test images.
    pub fn with_normal_test_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.normal_test_dir = Some(dir.into());
        self
    }

    /// Sets the fraction of normal images moved to test and the seed of that split.
    pub fn with_split(mut self, ratio: f64, seed: u64) -> Self {
        self.test_split_ratio = ratio;
        self.seed = seed;
        self
    }

    /// Validates the configuration, lists the folders and pairs masks.
    pub fn open(&self) -> Result<FolderDataset, DatasetError> {
        if self.normal_dirs.is_empty() {
            return Err(DatasetError::InvalidParameter {
                name: "normal_dirs",
                reason: "at least one folder of good images is required".into(),
            });
        }
        if !(0.0..1.0).contains(&self.test_split_ratio) {
            return Err(DatasetError::InvalidParameter {
                name: "test_split_ratio",
                reason: format!("{} is not in [0, 1)", self.test_split_ratio),
            });
        }
        let mut normal = Vec::new();
        for dir in &self.normal_dirs {
            normal.extend(list_images(dir)?);
        }
        let mut test: Vec<Sample> = Vec::new();
        let train_paths = match &self.normal_test_dir {
            Some(dir) => {
                test.extend(list_images(dir)?.into_iter().map(Sample::good));
                normal
            }
            None => {
                let mut order: Vec<usize> = (0..normal.len()).collect();
                SplitMix64::new(self.seed).shuffle(&mut order);
                let n_test = (normal.len() as f64 * self.test_split_ratio).round() as usize;
                let mut is_test = vec![false; normal.len()];
                for &i in &order[..n_test.min(normal.len())] {
                    is_test[i] = true;
                }
                let mut train = Vec::new();
                for (p, t) in normal.into_iter().zip(is_test) {
                    if t {
                        test.push(Sample::good(p));
                    } else {
                        train.push(p);
                    }
                }
                train
            }
        };
        if train_paths.is_empty() {
            return Err(DatasetError::EmptyTrainSet {
                path: self.normal_dirs[0].clone(),
            });
        }

        let mut masks: BTreeMap<String, PathBuf> = BTreeMap::new();
        if let Some(mask_dir) = &self.mask_dir {
            for m in list_images(mask_dir)? {
                let stem = file_stem(&m);
                let key = stem.strip_suffix("_mask").unwrap_or(&stem).to_string();
                masks.insert(key, m);
            }
        }
        for dir in &self.abnormal_dirs {
            let defect = dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "abnormal".into());
            for image in list_images(dir)? {
                // Without a mask folder, or without this image's mask, the image is labelled at
                // image level only.
                let mask = masks.remove(&file_stem(&image));
                test.push(Sample {
                    path: image,
                    is_anomalous: true,
                    defect: defect.clone(),
                    mask,
                });
            }
        }
        if let Some((stem, mask)) = masks.into_iter().next() {
            let expected_image = self
                .abnormal_dirs
                .first()
                .map(|d| d.join(format!("{stem}.png")))
                .unwrap_or_else(|| PathBuf::from(format!("{stem}.png")));
            return Err(DatasetError::OrphanMask {
                mask,
                expected_image,
            });
        }
        if test.is_empty() {
            return Err(DatasetError::EmptyTestSet {
                path: self.normal_dirs[0].clone(),
            });
        }
        Ok(FolderDataset {
            splits: Splits {
                name: self.name.clone(),
                train: train_paths.into_iter().map(Sample::good).collect(),
                test,
            },
        })
    }
}
