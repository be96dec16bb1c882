//! Where the images come from: an MVTec AD root, one category folder, your own folders, or
//! (none given) the generated category.

use std::path::PathBuf;

use ad_mvtec::{FolderConfig, MvtecCategory, Splits, SyntheticConfig};

use crate::CliError;

/// Dataset options shared by `fit`, `test` and `run`.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// MVTec AD root (the folder holding `bottle/`, ...). Without it and without
    /// --folder-normal, a generated category is used.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Category (or comma-separated categories, or `all`) under --data.
    #[arg(long, default_value = "bottle")]
    pub category: String,
    /// Folder(s) of good images of your own line (anomalib's Folder); repeatable.
    #[arg(long)]
    pub folder_normal: Vec<PathBuf>,
    /// Folder(s) of defective images; repeatable. Masks are optional: without them, defective
    /// images count in the image metrics only.
    #[arg(long)]
    pub folder_abnormal: Vec<PathBuf>,
    /// Folder of masks for the defective images (`<stem>.png` or `<stem>_mask.png`).
    #[arg(long)]
    pub folder_mask: Option<PathBuf>,
    /// Folder of good test images (otherwise --split of the normal images go to test).
    #[arg(long)]
    pub folder_normal_test: Option<PathBuf>,
    /// Fraction of normal images moved to test when there is no --folder-normal-test.
    #[arg(long, default_value_t = 0.2)]
    pub split: f64,
    /// Seed of that split.
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// Where the generated category is written (when no dataset is given).
    #[arg(long, default_value = "datasets/generated")]
    pub generated_root: PathBuf,
}

/// The categories a [`DataArgs`] selects, and whether the generated one was used.
pub struct Datasets {
    /// One entry per category.
    pub splits: Vec<Splits>,
    /// `Some(root)` when no dataset was given and the generated category was used.
    pub generated: Option<PathBuf>,
}

impl DataArgs {
    /// Opens one category folder in the MVTec layout (`<dir>/train/good`, `<dir>/test/...`).
    pub fn open_category_dir(dir: &std::path::Path) -> Result<Splits, CliError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CliError::Usage(format!("{}: not a category folder", dir.display())))?;
        let root = dir.parent().unwrap_or(std::path::Path::new("."));
        Ok(MvtecCategory::open(root, &name)
            .map_err(anomaly_detection::Error::from)?
            .splits)
    }

    /// Opens the selected categories (one for folders and the generated data).
    pub fn open(&self) -> Result<Datasets, CliError> {
        let lib = anomaly_detection::Error::from;
        if !self.folder_normal.is_empty() {
            let name = self
                .folder_normal
                .first()
                .and_then(|p| p.parent())
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "folder".into());
            let cfg = FolderConfig {
                name,
                normal_dirs: self.folder_normal.clone(),
                abnormal_dirs: self.folder_abnormal.clone(),
                mask_dir: self.folder_mask.clone(),
                normal_test_dir: self.folder_normal_test.clone(),
                test_split_ratio: self.split,
                seed: self.split_seed,
            };
            return Ok(Datasets {
                splits: vec![cfg.open().map_err(lib)?.splits],
                generated: None,
            });
        }
        if let Some(root) = &self.data {
            let names: Vec<String> = if self.category == "all" {
                let mut v: Vec<String> = std::fs::read_dir(root)
                    .map_err(|source| CliError::Io {
                        path: root.clone(),
                        source,
                    })?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("train").is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                if v.is_empty() {
                    return Err(CliError::Usage(format!(
                        "--category all: no category folder (one holding train/) under {}",
                        root.display()
                    )));
                }
                v
            } else {
                self.category
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect()
            };
            let splits = names
                .iter()
                .map(|n| Ok(MvtecCategory::open(root, n).map_err(lib)?.splits))
                .collect::<Result<_, CliError>>()?;
            return Ok(Datasets {
                splits,
                generated: None,
            });
        }
        let cfg = SyntheticConfig::default();
        cfg.ensure(&self.generated_root).map_err(lib)?;
        Ok(Datasets {
            splits: vec![
                MvtecCategory::open(&self.generated_root, &cfg.name)
                    .map_err(lib)?
                    .splits,
            ],
            generated: Some(self.generated_root.join(&cfg.name)),
        })
    }
}
