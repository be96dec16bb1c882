//! The official MVTec AD layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::sample::{Splits, file_stem, list_dirs, list_images, require_dir};
use crate::{DatasetError, Sample};

/// One category of MVTec AD (or any dataset in its layout):
///
/// ```text
/// <root>/<category>/train/good/*.png
/// <root>/<category>/test/good/*.png
/// <root>/<category>/test/<defect>/*.png
/// <root>/<category>/ground_truth/<defect>/<stem>_mask.png
/// ```
///
/// Masks are paired to images by file stem. A defective image without a mask (or a defect
/// type without a `ground_truth` folder) is labelled at image level only
/// ([`Splits::anomalous_without_mask`](crate::Splits::anomalous_without_mask)); a mask without its image is an error naming both
/// paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MvtecCategory {
    /// `<root>/<category>`.
    pub dir: PathBuf,
    /// The splits.
    pub splits: Splits,
}

impl MvtecCategory {
    /// Opens and checks a category; nothing is decoded yet.
    pub fn open(root: impl AsRef<Path>, category: &str) -> Result<Self, DatasetError> {
        let dir = root.as_ref().join(category);
        require_dir(&dir)?;
        let train_dir = dir.join("train").join("good");
        let train: Vec<Sample> = list_images(&train_dir)?
            .into_iter()
            .map(Sample::good)
            .collect();
        if train.is_empty() {
            return Err(DatasetError::EmptyTrainSet { path: train_dir });
        }

        let test_dir = dir.join("test");
        let gt_dir = dir.join("ground_truth");
        let mut test = Vec::new();
        for defect_dir in list_dirs(&test_dir)? {
            let defect = file_stem_of_dir(&defect_dir);
            let images = list_images(&defect_dir)?;
            if defect == "good" {
                test.extend(images.into_iter().map(Sample::good));
                continue;
            }
            let mask_dir = gt_dir.join(&defect);
            let mut masks: BTreeMap<String, PathBuf> = BTreeMap::new();
            if mask_dir.exists() {
                for m in list_images(&mask_dir)? {
                    let stem = file_stem(&m);
                    let key = stem.strip_suffix("_mask").unwrap_or(&stem).to_string();
                    masks.insert(key, m);
                }
            }
            for image in images {
                // A defective image without a mask is labelled at image level only: it counts
                // in the image metrics, and pixel metrics use the images that have masks.
                let mask = masks.remove(&file_stem(&image));
                test.push(Sample {
                    path: image,
                    is_anomalous: true,
                    defect: defect.clone(),
                    mask,
                });
            }
            if let Some((stem, mask)) = masks.into_iter().next() {
                return Err(DatasetError::OrphanMask {
                    mask,
                    expected_image: defect_dir.join(format!("{stem}.png")),
                });
            }
        }
        if test.is_empty() {
            return Err(DatasetError::EmptyTestSet { path: test_dir });
        }
        Ok(Self {
            dir,
            splits: Splits {
                name: category.to_string(),
                train,
                test,
            },
        })
    }
}

fn file_stem_of_dir(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
