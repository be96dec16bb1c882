//! One-file model format: the [`ad_core::model_file`] container with magic `ADCFLOW\0`, a JSON
//! header (configuration, encoder identity, grids, likelihood references, permutations,
//! threshold, training losses) and the decoders' parameters as payload, `f32` little-endian in
//! a fixed order: per tap, per block, `fc1.weight [k, 2k]`, `fc1.bias`, `fc2.weight`,
//! `fc2.bias`, `global_scale [C]`, `global_offset [C]`. The encoder weights are not copied:
//! their identity (kind + SHA-256 of the checkpoint) is, and loading checks it.

use std::path::Path;

use ad_core::Threshold;
use ad_core::tensor::read_f32;
use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::flow::{Flow, linear_from};
use crate::model::{Cflow, Fitted};
use crate::{CflowConfig, CflowError};

/// The 8 bytes that open a CFlow model file.
pub const MAGIC: &[u8; 8] = b"ADCFLOW\0";
/// Version of the file format written by this crate.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    config: CflowConfig,
    backbone: String,
    tap_channels: Vec<usize>,
    permutations: Vec<Vec<Vec<usize>>>,
    grids: Vec<(usize, usize)>,
    reference: Vec<f32>,
    image_size: (usize, usize),
    losses: Vec<f64>,
    threshold: Option<Threshold>,
    parameters: usize,
}

fn push(out: &mut Vec<f32>, t: Tensor<2>) -> Result<(), CflowError> {
    out.extend(read_f32(t)?);
    Ok(())
}

fn push1(out: &mut Vec<f32>, t: Tensor<1>) -> Result<(), CflowError> {
    out.extend(read_f32(t)?);
    Ok(())
}

impl Cflow {
    /// Saves the fitted model (decoders in f32, as held: reloading gives bit-identical scores).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CflowError> {
        let path = path.as_ref();
        let fitted = self.fitted.as_ref().ok_or(CflowError::NotFitted)?;
        let mut params = Vec::new();
        for flow in &self.decoders {
            for b in &flow.blocks {
                push(&mut params, b.fc1.weight.val())?;
                push1(
                    &mut params,
                    b.fc1
                        .bias
                        .as_ref()
                        .map(|p| p.val())
                        .ok_or(CflowError::NotFitted)?,
                )?;
                push(&mut params, b.fc2.weight.val())?;
                push1(
                    &mut params,
                    b.fc2
                        .bias
                        .as_ref()
                        .map(|p| p.val())
                        .ok_or(CflowError::NotFitted)?,
                )?;
                push1(&mut params, b.global_scale.val())?;
                push1(&mut params, b.global_offset.val())?;
            }
        }
        let header = Header {
            config: self.config.as_config().clone(),
            backbone: self.backbone.identity().to_string(),
            tap_channels: self.decoders.iter().map(Flow::channels).collect(),
            permutations: self
                .decoders
                .iter()
                .map(|f| f.blocks.iter().map(|b| b.perm.clone()).collect())
                .collect(),
            grids: fitted.grids.clone(),
            reference: fitted.reference.clone(),
            image_size: fitted.image_size,
            losses: fitted.losses.clone(),
            threshold: self.threshold.clone(),
            parameters: params.len(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| CflowError::BadModelFile {
            path: path.to_path_buf(),
            reason: format!("cannot encode header: {e}"),
        })?;
        let payload: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = ad_core::model_file::encode(MAGIC, FORMAT_VERSION, &json, &payload);
        ad_core::model_file::write_atomic(path, &out).map_err(|source| CflowError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads a model saved by [`Cflow::save`], rebuilding its encoder on `device` and checking
    /// that the weights are the ones it was fitted with.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self, CflowError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| CflowError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |reason: String| CflowError::BadModelFile {
            path: path.to_path_buf(),
            reason,
        };
        let (header, payload) =
            ad_core::model_file::decode(&bytes, MAGIC, FORMAT_VERSION, "CFlow").map_err(bad)?;
        let header: Header =
            serde_json::from_slice(header).map_err(|e| bad(format!("header: {e}")))?;
        let mut model = Cflow::new(&header.config, device)?;
        if model.backbone.identity() != header.backbone {
            return Err(CflowError::BackboneMismatch {
                saved: header.backbone,
                found: model.backbone.identity().to_string(),
            });
        }
        let channels = model.backbone.tap_channels();
        let taps = channels.len();
        if header.tap_channels != channels
            || header.permutations.len() != taps
            || header.grids.len() != taps
            || header.reference.len() != taps
            || payload.len() != 4 * header.parameters
        {
            return Err(bad(
                "header and payload do not describe the same decoders".into()
            ));
        }
        let floats: Vec<f32> = payload
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<Vec<f32>, CflowError> {
            let end = at + n;
            let v = floats
                .get(at..end)
                .ok_or_else(|| bad("payload shorter than the decoders".into()))?
                .to_vec();
            at = end;
            Ok(v)
        };
        let p_dim = header.config.condition_dim;
        for (l, flow) in model.decoders.iter_mut().enumerate() {
            let c = channels[l];
            let (s1, s2) = (c - c / 2, c / 2);
            let k = s1 + p_dim;
            if header.permutations[l].len() != flow.blocks.len() {
                return Err(bad(format!("tap {l}: block count differs")));
            }
            for (b, perm) in flow.blocks.iter_mut().zip(&header.permutations[l]) {
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..c).collect::<Vec<_>>() {
                    return Err(bad(format!("tap {l}: a permutation is not one of 0..{c}")));
                }
                b.fc1 = linear_from(take(k * 2 * k)?, take(2 * k)?, k, 2 * k, device);
                b.fc2 = linear_from(take(2 * k * 2 * s2)?, take(2 * s2)?, 2 * k, 2 * s2, device);
                b.global_scale =
                    Param::from_tensor(Tensor::from_data(TensorData::new(take(c)?, [c]), device));
                b.global_offset =
                    Param::from_tensor(Tensor::from_data(TensorData::new(take(c)?, [c]), device));
                b.perm = perm.clone();
            }
        }
        if at != floats.len() {
            return Err(bad("payload longer than the decoders".into()));
        }
        model.threshold = header.threshold;
        model.fitted = Some(Fitted {
            conditions: crate::model::conditions(p_dim, &header.grids),
            grids: header.grids,
            reference: header.reference,
            image_size: header.image_size,
            losses: header.losses,
        });
        Ok(model)
    }
}
