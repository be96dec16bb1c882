//! A generated category in the MVTec AD layout, deterministic from a seed.
//!
//! Good parts are a brushed metal disc with concentric machining rings and a dark centre bore,
//! lying on a woven background, each with small random shifts of position, size, phase,
//! brightness and sensor noise. Defective parts carry one drawn defect of four kinds, and the
//! ground-truth mask is exactly the set of pixels the defect changed:
//!
//! - `scratch`: a thin bright straight line;
//! - `spot`: a dark rotated ellipse (contamination);
//! - `crack`: a dark jagged polyline;
//! - `missing`: a bite out of the rim showing the background (missing material).
//!
//! It needs no download and no licence, so the examples run on it out of the box and the fast
//! tests use a small version of it.

use std::path::{Path, PathBuf};

use image::{GrayImage, RgbImage as PngRgb};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DatasetError;
use crate::rng::SplitMix64;

/// The four defect kinds, in directory-name order.
pub const DEFECTS: [&str; 4] = ["crack", "missing", "scratch", "spot"];

/// Parameters of a generated category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyntheticConfig {
    /// Category name (directory under the root).
    pub name: String,
    /// Master seed; every image has its own seed derived from it and its index.
    pub seed: u64,
    /// Image side in pixels.
    pub size: usize,
    /// Good training images.
    pub train: usize,
    /// Good test images.
    pub test_good: usize,
    /// Test images per defect kind.
    pub per_defect: usize,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            name: "synthetic".into(),
            seed: 2026,
            size: 256,
            train: 60,
            test_good: 12,
            per_defect: 8,
        }
    }
}

impl SyntheticConfig {
    /// A small, fast version for tests.
    pub fn small() -> Self {
        Self {
            name: "synthetic_small".into(),
            seed: 7,
            size: 64,
            train: 10,
            test_good: 4,
            per_defect: 2,
        }
    }

    fn check(&self) -> Result<(), DatasetError> {
        if self.size < 32 || self.size > 4096 {
            return Err(DatasetError::InvalidParameter {
                name: "size",
                reason: format!("{} must be in 32..=4096", self.size),
            });
        }
        if self.train == 0 || self.test_good + self.per_defect == 0 {
            return Err(DatasetError::InvalidParameter {
                name: "train/test",
                reason: "need at least one training and one test image".into(),
            });
        }
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err(DatasetError::InvalidParameter {
                name: "name",
                reason: format!("{:?} is not a plain directory name", self.name),
            });
        }
        Ok(())
    }

    /// Writes the category under `root` (overwriting images of the same names) and returns
    /// `<root>/<name>`.
    pub fn generate(&self, root: impl AsRef<Path>) -> Result<PathBuf, DatasetError> {
        self.check()?;
        let dir = root.as_ref().join(&self.name);
        // (image path, (defect kind, mask path) for defective parts, seed)
        type Job = (PathBuf, Option<(usize, PathBuf)>, u64);
        let mut jobs: Vec<Job> = Vec::new();
        let seed_of =
            |group: u64, i: usize| SplitMix64::new(self.seed ^ (group << 48) ^ i as u64).next_u64();
        for i in 0..self.train {
            jobs.push((
                dir.join("train/good").join(format!("{i:03}.png")),
                None,
                seed_of(1, i),
            ));
        }
        for i in 0..self.test_good {
            jobs.push((
                dir.join("test/good").join(format!("{i:03}.png")),
                None,
                seed_of(2, i),
            ));
        }
        for (k, defect) in DEFECTS.iter().enumerate() {
            for i in 0..self.per_defect {
                jobs.push((
                    dir.join("test").join(defect).join(format!("{i:03}.png")),
                    Some((
                        k,
                        dir.join("ground_truth")
                            .join(defect)
                            .join(format!("{i:03}_mask.png")),
                    )),
                    seed_of(3 + k as u64, i),
                ));
            }
        }
        for (img, mask, _) in &jobs {
            for p in std::iter::once(img).chain(mask.as_ref().map(|(_, m)| m)) {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| DatasetError::Io {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
            }
        }
        jobs.par_iter().try_for_each(|(img_path, mask, seed)| {
            let (rgb, m) = render(self.size, *seed, mask.as_ref().map(|(k, _)| *k));
            save_rgb(img_path, self.size, &rgb)?;
            if let Some((_, mask_path)) = mask {
                save_mask(mask_path, self.size, &m)?;
            }
            Ok::<(), DatasetError>(())
        })?;
        let marker = dir.join("generated.json");
        let json = serde_json_string(self);
        std::fs::write(&marker, json).map_err(|source| DatasetError::Io {
            path: marker,
            source,
        })?;
        Ok(dir)
    }

    /// Generates the category under `root` unless an identical one is already there (its
    /// `generated.json` marker matches this configuration); returns `<root>/<name>`.
    pub fn ensure(&self, root: impl AsRef<Path>) -> Result<PathBuf, DatasetError> {
        let dir = root.as_ref().join(&self.name);
        if let Ok(existing) = std::fs::read_to_string(dir.join("generated.json"))
            && existing == serde_json_string(self)
        {
            return Ok(dir);
        }
        self.generate(root)
    }
}

/// One generated part in memory (no file): a `size x size` good part, or a defective one
/// with `defect` (a name of [`DEFECTS`]) and its ground-truth mask. The same `seed` gives the
/// same pixels (for benchmarks and memory measurements that need many images).
pub fn render_part(
    size: usize,
    seed: u64,
    defect: Option<&str>,
) -> Result<(ad_core::RgbImage, ad_core::Mask), DatasetError> {
    if !(32..=8192).contains(&size) {
        return Err(DatasetError::InvalidParameter {
            name: "size",
            reason: format!("{size} must be in 32..=8192"),
        });
    }
    let kind = match defect {
        None => None,
        Some(d) => Some(DEFECTS.iter().position(|k| *k == d).ok_or_else(|| {
            DatasetError::InvalidParameter {
                name: "defect",
                reason: format!("unknown defect `{d}`: use one of {}", DEFECTS.join(", ")),
            }
        })?),
    };
    let (rgb, mask) = render(size, seed, kind);
    let bytes: Vec<u8> = rgb
        .iter()
        .flat_map(|p| p.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
        .collect();
    Ok((
        ad_core::RgbImage::new(size, size, bytes)?,
        ad_core::Mask::new(size, size, mask)?,
    ))
}

fn serde_json_string(cfg: &SyntheticConfig) -> String {
    // A tiny hand-written JSON keeps this crate free of serde_json.
    format!(
        "{{\"name\":{:?},\"seed\":{},\"size\":{},\"train\":{},\"test_good\":{},\"per_defect\":{},\"version\":1}}\n",
        cfg.name, cfg.seed, cfg.size, cfg.train, cfg.test_good, cfg.per_defect
    )
}

fn save_rgb(path: &Path, size: usize, rgb: &[[f32; 3]]) -> Result<(), DatasetError> {
    let bytes: Vec<u8> = rgb
        .iter()
        .flat_map(|p| p.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
        .collect();
    let img = PngRgb::from_raw(size as u32, size as u32, bytes).ok_or_else(|| {
        DatasetError::InvalidParameter {
            name: "size",
            reason: "internal buffer size mismatch".into(),
        }
    })?;
    img.save(path).map_err(|source| DatasetError::Encode {
        path: path.to_path_buf(),
        source,
    })
}

fn save_mask(path: &Path, size: usize, mask: &[bool]) -> Result<(), DatasetError> {
    let bytes: Vec<u8> = mask.iter().map(|&m| if m { 255 } else { 0 }).collect();
    let img = GrayImage::from_raw(size as u32, size as u32, bytes).ok_or_else(|| {
        DatasetError::InvalidParameter {
            name: "size",
            reason: "internal buffer size mismatch".into(),
        }
    })?;
    img.save(path).map_err(|source| DatasetError::Encode {
        path: path.to_path_buf(),
        source,
    })
}

/// Woven background colour at a pixel.
fn background(x: f32, y: f32, phase: (f32, f32), tone: f32, noise: f32) -> [f32; 3] {
    let tau = std::f32::consts::TAU;
    let weave = (tau * (x + phase.0) / 6.0).sin() * (tau * (y + phase.1) / 6.0).sin();
    let v = tone + 0.08 * weave + noise;
    [v * 0.95, v * 0.80, v * 0.60]
}

/// Renders one part; `defect` is an index into [`DEFECTS`]. Returns the pixels and the mask.
pub(crate) fn render(size: usize, seed: u64, defect: Option<usize>) -> (Vec<[f32; 3]>, Vec<bool>) {
    let mut rng = SplitMix64::new(seed);
    let s = size as f32;
    let cx = s / 2.0 + rng.range(-0.02, 0.02) * s;
    let cy = s / 2.0 + rng.range(-0.02, 0.02) * s;
    let radius = s * rng.range(0.32, 0.34);
    let ring_period = s / 32.0;
    let ring_phase = rng.range(0.0, std::f32::consts::TAU);
    let phase = (rng.range(0.0, 6.0), rng.range(0.0, 6.0));
    let tone = rng.range(0.33, 0.37);
    let metal = rng.range(0.60, 0.64);
    let noise_amp = 0.02;
    let mut pixels = vec![[0.0f32; 3]; size * size];
    let mut noise = Vec::with_capacity(size * size);
    for _ in 0..size * size {
        noise.push(rng.range(-noise_amp, noise_amp));
    }
    let bg_at = |x: usize, y: usize, n: f32| background(x as f32, y as f32, phase, tone, n);
    for y in 0..size {
        for x in 0..size {
            let i = y * size + x;
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let r = ((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt();
            let bg = bg_at(x, y, noise[i]);
            let coverage = (radius - r + 0.5).clamp(0.0, 1.0);
            let part = if r < radius * 0.28 {
                let v = 0.22 + noise[i];
                [v, v, v * 1.05]
            } else {
                let v = metal
                    + 0.05 * (std::f32::consts::TAU * r / ring_period + ring_phase).sin()
                    + noise[i];
                [v * 0.95, v, v * 1.05]
            };
            pixels[i] = std::array::from_fn(|c| coverage * part[c] + (1.0 - coverage) * bg[c]);
        }
    }
    let mut mask = vec![false; size * size];
    let Some(kind) = defect else {
        return (pixels, mask);
    };
    // A point on the metal annulus (between the bore and the rim).
    let on_part = |rng: &mut SplitMix64, lo: f32, hi: f32| {
        let a = rng.range(0.0, std::f32::consts::TAU);
        let rr = radius * rng.range(lo, hi);
        (cx + rr * a.cos(), cy + rr * a.sin())
    };
    let seg_dist = |p: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        ((p.0 - a.0 - t * dx).powi(2) + (p.1 - a.1 - t * dy).powi(2)).sqrt()
    };
    let paint = |pixels: &mut Vec<[f32; 3]>,
                 mask: &mut Vec<bool>,
                 inside: &dyn Fn(f32, f32) -> bool,
                 colour: &dyn Fn(usize, usize) -> [f32; 3]| {
        for y in 0..size {
            for x in 0..size {
                if inside(x as f32 + 0.5, y as f32 + 0.5) {
                    let i = y * size + x;
                    pixels[i] = colour(x, y);
                    mask[i] = true;
                }
            }
        }
    };
    let half_w = (s / 128.0).max(1.0);
    match DEFECTS[kind] {
        "scratch" => {
            let a = on_part(&mut rng, 0.35, 0.75);
            let ang = rng.range(0.0, std::f32::consts::TAU);
            let len = s * rng.range(0.12, 0.22);
            let b = (a.0 + len * ang.cos(), a.1 + len * ang.sin());
            let bright = rng.range(0.9, 1.0);
            paint(
                &mut pixels,
                &mut mask,
                &|x, y| seg_dist((x, y), a, b) <= half_w,
                &|x, y| {
                    let v = bright - noise[y * size + x].abs();
                    [v, v, v]
                },
            );
        }
        "spot" => {
            let c = on_part(&mut rng, 0.4, 0.8);
            let (ra, rb) = (s * rng.range(0.03, 0.06), s * rng.range(0.025, 0.045));
            let ang = rng.range(0.0, std::f32::consts::PI);
            let (ca, sa) = (ang.cos(), ang.sin());
            paint(
                &mut pixels,
                &mut mask,
                &|x, y| {
                    let (dx, dy) = (x - c.0, y - c.1);
                    let u = (dx * ca + dy * sa) / ra;
                    let v = (-dx * sa + dy * ca) / rb;
                    u * u + v * v <= 1.0
                },
                &|x, y| {
                    let n = noise[y * size + x];
                    [0.30 + n, 0.18 + n, 0.10 + n]
                },
            );
        }
        "crack" => {
            let mut p = on_part(&mut rng, 0.4, 0.7);
            let mut ang = rng.range(0.0, std::f32::consts::TAU);
            let steps = 8 + rng.below(6);
            let mut pts = vec![p];
            for _ in 0..steps {
                ang += rng.range(-0.8, 0.8);
                let l = s * rng.range(0.02, 0.035);
                p = (p.0 + l * ang.cos(), p.1 + l * ang.sin());
                pts.push(p);
            }
            let w = half_w * rng.range(0.9, 1.4);
            paint(
                &mut pixels,
                &mut mask,
                &|x, y| {
                    pts.windows(2)
                        .any(|seg| seg_dist((x, y), seg[0], seg[1]) <= w)
                },
                &|x, y| {
                    let n = noise[y * size + x];
                    [0.08 + n, 0.08 + n, 0.10 + n]
                },
            );
        }
        _ => {
            // Missing material: a bite out of the rim shows the background.
            let a = rng.range(0.0, std::f32::consts::TAU);
            let c = (cx + radius * a.cos(), cy + radius * a.sin());
            let rb = s * rng.range(0.06, 0.09);
            paint(
                &mut pixels,
                &mut mask,
                &|x, y| {
                    let in_bite = (x - c.0).powi(2) + (y - c.1).powi(2) <= rb * rb;
                    let on_disc = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() < radius + 0.5;
                    in_bite && on_disc
                },
                &|x, y| bg_at(x, y, noise[y * size + x]),
            );
        }
    }
    (pixels, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_is_deterministic_and_masks_match_changes() {
        for (kind, name) in DEFECTS.iter().enumerate() {
            let (a, m) = render(64, 99 + kind as u64, Some(kind));
            let (b, m2) = render(64, 99 + kind as u64, Some(kind));
            assert_eq!(a, b);
            assert_eq!(m, m2);
            let n = m.iter().filter(|&&v| v).count();
            assert!(n > 5, "{name}: only {n} defect pixels");
            assert!(n < 64 * 64 / 4, "{name}: {n} defect pixels");
            // Pixels outside the mask are exactly the good rendering of the same seed.
            let (good, _) = render(64, 99 + kind as u64, None);
            for i in 0..64 * 64 {
                if !m[i] {
                    assert_eq!(a[i], good[i]);
                }
            }
        }
        let (_, m) = render(64, 5, None);
        assert!(m.iter().all(|&v| !v));
    }
}
