//! One-file model formats, in the [`ad_core::model_file`] container (versioned, checksummed,
//! written atomically): a JSON header (configuration, backbone identity, head widths, grid,
//! training record, threshold) and the head's parameters as the payload, `f32` little-endian
//! in [`Mlp::to_flat`]'s order (a classifier's fine-tuned last stage follows its head). The backbone weights are not copied: their identity (kind +
//! SHA-256 of the checkpoint) is, and loading checks it.

use std::path::Path;

use ad_core::Threshold;
use burn::tensor::Device;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::RegressError;
use crate::classifier::{ClassifierConfig, SupervisedClassifier, TrainReport};
use crate::head::Mlp;
use crate::student::{ScoreStudent, StudentConfig, Trained};

/// The 8 bytes that open a [`ScoreStudent`] model file.
pub const STUDENT_MAGIC: &[u8; 8] = b"ADSTUDNT";
/// The 8 bytes that open a [`SupervisedClassifier`] model file.
pub const CLASSIFIER_MAGIC: &[u8; 8] = b"ADCLASSF";
/// Version of the file formats written by this crate.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StudentHeader {
    config: StudentConfig,
    backbone: String,
    dims: Vec<usize>,
    trained: Trained,
    threshold: Option<Threshold>,
}

#[derive(Serialize, Deserialize)]
struct ClassifierHeader {
    config: ClassifierConfig,
    backbone: String,
    dims: Vec<usize>,
    image_size: (usize, usize),
    report: Option<TrainReport>,
    threshold: Option<Threshold>,
    /// Widths of the fine-tuned last stage, whose parameters follow the head's in the payload.
    #[serde(default)]
    stage: Option<Vec<usize>>,
}

fn write<H: Serialize>(
    path: &Path,
    magic: &[u8; 8],
    kind: &'static str,
    header: &H,
    flat: &[f32],
) -> Result<(), RegressError> {
    let json = serde_json::to_vec(header).map_err(|e| RegressError::BadModelFile {
        path: path.to_path_buf(),
        kind,
        reason: format!("cannot encode header: {e}"),
    })?;
    let payload: Vec<u8> = flat.iter().flat_map(|v| v.to_le_bytes()).collect();
    let out = ad_core::model_file::encode(magic, FORMAT_VERSION, &json, &payload);
    ad_core::model_file::write_atomic(path, &out).map_err(|source| RegressError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read<H: DeserializeOwned>(
    path: &Path,
    magic: &[u8; 8],
    kind: &'static str,
) -> Result<(H, Vec<f32>), RegressError> {
    let bytes = std::fs::read(path).map_err(|source| RegressError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| RegressError::BadModelFile {
        path: path.to_path_buf(),
        kind,
        reason,
    };
    let (header, payload) =
        ad_core::model_file::decode(&bytes, magic, FORMAT_VERSION, kind).map_err(bad)?;
    let header: H = serde_json::from_slice(header).map_err(|e| bad(format!("header: {e}")))?;
    if payload.len() % 4 != 0 {
        return Err(bad("payload is not a whole number of f32".into()));
    }
    let floats = payload
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((header, floats))
}

fn head_from(
    path: &Path,
    kind: &'static str,
    dims: &[usize],
    expect_in: usize,
    expect_out: usize,
    flat: &[f32],
    device: &Device,
) -> Result<Mlp, RegressError> {
    if dims.first() != Some(&expect_in) || dims.last() != Some(&expect_out) {
        return Err(RegressError::BadModelFile {
            path: path.to_path_buf(),
            kind,
            reason: format!(
                "head widths {dims:?} do not fit the backbone ({expect_in} in, {expect_out} out)"
            ),
        });
    }
    Mlp::from_flat(dims, flat, device).ok_or_else(|| RegressError::BadModelFile {
        path: path.to_path_buf(),
        kind,
        reason: format!(
            "{} parameters for a head of widths {dims:?} ({} expected)",
            flat.len(),
            Mlp::parameter_count(dims)
        ),
    })
}

impl ScoreStudent {
    /// Saves the trained student (heads in f32, one after the other: reloading gives
    /// bit-identical scores).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), RegressError> {
        let (first, trained) = match (self.heads.first(), &self.trained) {
            (Some(h), Some(t)) => (h, t),
            _ => return Err(RegressError::NotFitted),
        };
        let header = StudentHeader {
            config: self.config.as_config().clone(),
            backbone: self.backbone.identity().to_string(),
            dims: first.dims(),
            trained: trained.clone(),
            threshold: self.threshold.clone(),
        };
        let mut flat = Vec::new();
        for head in &self.heads {
            flat.extend(head.to_flat()?);
        }
        write(path.as_ref(), STUDENT_MAGIC, "student", &header, &flat)
    }

    /// Loads a model saved by [`ScoreStudent::save`], rebuilding its backbone on `device` and
    /// checking that the weights are the ones it was trained with. The loaded model predicts;
    /// to train it again, give it a teacher ([`ScoreStudent::set_teacher`]).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self, RegressError> {
        let path = path.as_ref();
        let (header, flat): (StudentHeader, _) = read(path, STUDENT_MAGIC, "student")?;
        let mut model = ScoreStudent::new(&header.config, None, device)?;
        if model.backbone.identity() != header.backbone {
            return Err(RegressError::BackboneMismatch {
                saved: header.backbone,
                found: model.backbone.identity().to_string(),
            });
        }
        let d = model.config.feature_dim()?;
        let k = header.trained.prototypes.len() / d.max(1);
        if k * d != header.trained.prototypes.len() {
            return Err(RegressError::BadModelFile {
                path: path.to_path_buf(),
                kind: "student",
                reason: format!(
                    "{} prototype values are not whole {d}-d rows",
                    header.trained.prototypes.len()
                ),
            });
        }
        // The heads follow one another in the payload (one head: files written before the
        // option).
        let heads = model.config.heads;
        let per = flat.len() / heads;
        if per * heads != flat.len() {
            return Err(RegressError::BadModelFile {
                path: path.to_path_buf(),
                kind: "student",
                reason: format!("{} parameters are not {heads} equal heads", flat.len()),
            });
        }
        model.heads = flat
            .chunks(per.max(1))
            .map(|f| head_from(path, "student", &header.dims, d + k, 1, f, device))
            .collect::<Result<_, _>>()?;
        if model.heads.len() != heads {
            return Err(RegressError::BadModelFile {
                path: path.to_path_buf(),
                kind: "student",
                reason: format!("{} heads, the config names {heads}", model.heads.len()),
            });
        }
        model.trained = Some(header.trained);
        model.threshold = header.threshold;
        Ok(model)
    }
}

impl SupervisedClassifier {
    /// Saves the trained classifier.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), RegressError> {
        let (head, image_size) = match (&self.head, self.image_size) {
            (Some(h), Some(s)) => (h, s),
            _ => return Err(RegressError::NotFitted),
        };
        let header = ClassifierHeader {
            config: self.config.as_config().clone(),
            backbone: self.backbone.identity().to_string(),
            dims: head.dims(),
            image_size,
            report: self.report.clone(),
            threshold: self.threshold.clone(),
            stage: self.stage.as_ref().map(Mlp::dims),
        };
        let mut flat = head.to_flat()?;
        if let Some(stage) = &self.stage {
            flat.extend(stage.to_flat()?);
        }
        write(
            path.as_ref(),
            CLASSIFIER_MAGIC,
            "classifier",
            &header,
            &flat,
        )
    }

    /// Loads a model saved by [`SupervisedClassifier::save`] (backbone identity checked).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self, RegressError> {
        let path = path.as_ref();
        let (header, flat): (ClassifierHeader, _) = read(path, CLASSIFIER_MAGIC, "classifier")?;
        let mut model = SupervisedClassifier::new(&header.config, device)?;
        if model.backbone.identity() != header.backbone {
            return Err(RegressError::BackboneMismatch {
                saved: header.backbone,
                found: model.backbone.identity().to_string(),
            });
        }
        let c = model.backbone.tap_channels().first().copied().unwrap_or(0);
        let split = Mlp::parameter_count(&header.dims).min(flat.len());
        let (head_flat, stage_flat) = flat.split_at(split);
        let width = match &header.stage {
            Some(dims) => {
                let stage = head_from(
                    path,
                    "classifier",
                    dims,
                    c,
                    dims.last().copied().unwrap_or(0),
                    stage_flat,
                    device,
                )?;
                let width = dims.last().copied().unwrap_or(0);
                model.stage = Some(stage);
                width
            }
            None if !stage_flat.is_empty() => {
                return Err(RegressError::BadModelFile {
                    path: path.to_path_buf(),
                    kind: "classifier",
                    reason: format!("{} parameters after the head", stage_flat.len()),
                });
            }
            None => c,
        };
        if model.stage.is_some() != model.config.fine_tune_last_stage {
            return Err(RegressError::BadModelFile {
                path: path.to_path_buf(),
                kind: "classifier",
                reason: "the fine-tuned stage does not match the configuration".into(),
            });
        }
        model.head = Some(head_from(
            path,
            "classifier",
            &header.dims,
            width,
            2,
            head_flat,
            device,
        )?);
        model.image_size = Some(header.image_size);
        model.report = header.report;
        model.threshold = header.threshold;
        Ok(model)
    }
}
