//! Several detectors on the same images, their anomaly maps combined on one scale (a
//! multi-backbone or multi-model ensemble).
//!
//! Members answer on scales of their own (a nearest-neighbour distance, a Mahalanobis distance,
//! a negative log-likelihood), so each is first measured on good images it was not fitted on:
//! [`Ensemble::fit`] holds out a seeded fraction of the good images, fits every member on the
//! rest, and records the mean and standard deviation of the member's anomaly-map values over
//! the held-out images ([`MemberScale`]); then every member is fitted again on all the good
//! images. A prediction standardises each member's map with its scale and averages them:
//!
//! ```text
//! map(x) = 1/M sum_m (map_m(x) - mean_m) / std_m,     score = max_x map(x)
//! ```
//!
//! so "how unusual for this member on good parts" is what gets averaged, and a member that is
//! sure about a defect is not drowned by one whose scores simply run larger. Fitting costs every
//! member's fit twice.
//!
//! A member may also count for the image score alone ([`MemberRole::Score`]): a context model
//! whose map is too coarse to outline defects but whose image score sees what the fine members
//! miss (e.g. a PatchCore at half resolution, where a patch covers much of a small part). Its
//! image score is put on its map's scale (`mean_k`, `std_k` of its map values on the held-out
//! images, as for a map member), and each candidate score is then centred on its mean over the
//! held-out images (`o_0` for the largest value of the averaged map, `o_k` for member `k`), so
//! that both say "how far above a good part's usual maximum"; the larger decides:
//!
//! ```text
//! map'(x) = map(x) - o_0,     score = max( max_x map'(x), max_k ((score_k - mean_k) / std_k - o_k) )
//! ```
//!
//! The spreads come from every map value of the held-out images (thousands), only the centres
//! from one value per image: a handful of held-out images (8 of a PIPED class's 32) would give
//! a spread of maxima too noisy to divide by. `map'` is a shift of the map, so pixel AUROC and
//! AUPRO are those of the map members alone.
//!
//! Cross-fitting ([`EnsembleParams::folds`] `= k`) measures every good image instead of a
//! quarter: the images are dealt into `k` folds, and each fold is measured by members fitted
//! on the other folds. With that many maxima their own spread can be used
//! ([`ScoreSpread::Maxima`]): each centred candidate is divided by its standard deviation
//! `s_0, s_k` over the measured images, so that all say "how many of a good part's usual
//! deviations above its usual maximum", whatever the member's map resolution makes of its
//! maxima's tail:
//!
//! ```text
//! map'(x) = (map(x) - o_0) / s_0,     score = max( max_x map'(x), max_k (((score_k - mean_k) / std_k - o_k) / s_k) )
//! ```
//!
//! Members see the ensemble's preprocessed images. A member may work at another resolution
//! (a multi-resolution ensemble, e.g. a half-resolution member for context): it gets the
//! ensemble's images resized to its own size (the same antialiased bilinear filter,
//! [`ImageBatch::resized`]), and its map is resized back to the ensemble's size (bilinear)
//! before it is standardised and averaged. Such a member must normalise as the ensemble does and
//! crop nothing.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::detector::{BoxError, Detector, EpochCallback, FitSummary};
use crate::postprocess::upsample;
use crate::tiling::{pack_members, unpack_members};
use crate::{
    AnomalyMap, CoreError, ImageBatch, MapUpsample, Prediction, PreprocessConfig, Preprocessor,
};
use crate::{Threshold, model_file};

/// Magic bytes of an ensemble's model file.
pub const MAGIC: &[u8; 8] = b"ADENSMB\0";
/// Model file format version.
pub const FORMAT_VERSION: u32 = 1;

/// How an ensemble measures its members (unchecked; [`EnsembleParams::check`] validates). In
/// an ensemble's config file, the `[calibration]` table:
///
/// ```toml
/// [calibration]
/// holdout = 0.25
/// seed = 7
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnsembleParams {
    /// Fraction of the good images held out to measure each member's scale (they are fitted
    /// on afterwards like the others).
    pub holdout: f64,
    /// Seed of the hold-out.
    pub seed: u64,
    /// `0`: measure on the `holdout` fraction once (the default). `k >= 2`: cross-fitting:
    /// the good images are split into `k` seeded folds and every fold is measured by members
    /// fitted on the other folds, so every good image is measured once (`holdout` is then
    /// unused). Fitting costs every member's fit `k + 1` times instead of twice.
    #[serde(default)]
    pub folds: usize,
    /// What a score candidate (the averaged map's maximum, a score member's score) is divided
    /// by once centred, for the largest to decide (module documentation).
    #[serde(default)]
    pub score_spread: ScoreSpread,
}

/// The spread a centred score candidate is divided by ([`EnsembleParams::score_spread`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreSpread {
    /// The member's map values' standard deviation (its [`MemberScale`]), as the map itself.
    #[default]
    Map,
    /// The standard deviation of the candidate itself over the measured good images (one
    /// value per image: with few images, e.g. a hold-out of 8, a noisy divisor; meant for
    /// cross-fitting, [`EnsembleParams::folds`]).
    Maxima,
}

impl Default for EnsembleParams {
    /// A quarter of the good images, seed 7.
    fn default() -> Self {
        Self {
            holdout: 0.25,
            seed: 7,
            folds: 0,
            score_spread: ScoreSpread::Map,
        }
    }
}

impl EnsembleParams {
    /// Checks that the hold-out fraction lies in `(0, 1)` and that `folds` is 0 or at least 2.
    pub fn check(&self) -> Result<(), CoreError> {
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            return Err(CoreError::InvalidParameter {
                name: "ensemble.holdout",
                reason: format!("{} must lie in (0, 1)", self.holdout),
            });
        }
        if self.folds == 1 {
            return Err(CoreError::InvalidParameter {
                name: "ensemble.folds",
                reason: "1 fold would measure the members on the images they were fitted on: \
                         use 0 (the hold-out) or at least 2"
                    .into(),
            });
        }
        Ok(())
    }

    /// The measuring rounds for `n` images: which images each round measures (with members
    /// fitted on the others). One round (the hold-out) when `folds` is 0, otherwise `folds`
    /// rounds that together measure every image once (the seeded order of the hold-out, dealt
    /// round-robin).
    ///
    /// # Errors
    /// [`CoreError::InvalidParameter`] below two images, or with more folds than images.
    pub fn rounds(&self, n: usize) -> Result<Vec<Vec<bool>>, CoreError> {
        if self.folds == 0 {
            return Ok(vec![self.held_out(n)?]);
        }
        self.check()?;
        if self.folds > n {
            return Err(CoreError::InvalidParameter {
                name: "ensemble.folds",
                reason: format!(
                    "{} folds for {n} good images: at most one fold per image",
                    self.folds
                ),
            });
        }
        let order = self.order(n);
        Ok((0..self.folds)
            .map(|f| {
                let mut measured = vec![false; n];
                for &i in order.iter().skip(f).step_by(self.folds) {
                    measured[i] = true;
                }
                measured
            })
            .collect())
    }

    /// `0..n` in the seeded order (Fisher-Yates with SplitMix64).
    fn order(&self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        let mut state = self.seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for i in (1..n).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }

    /// Which of `n` images are held out (seeded shuffle; at least one on each side).
    ///
    /// # Errors
    /// [`CoreError::InvalidParameter`] below two images.
    pub fn held_out(&self, n: usize) -> Result<Vec<bool>, CoreError> {
        self.check()?;
        if n < 2 {
            return Err(CoreError::InvalidParameter {
                name: "ensemble.holdout",
                reason: format!(
                    "an ensemble needs at least 2 good images (one to fit on, one to measure \
                     its members' scales), got {n}"
                ),
            });
        }
        let hold = ((n as f64 * self.holdout).round() as usize).clamp(1, n - 1);
        let order = self.order(n);
        let mut held = vec![false; n];
        for &i in &order[..hold] {
            held[i] = true;
        }
        Ok(held)
    }
}

/// What a member adds to the ensemble's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberRole {
    /// Its standardised map is averaged into the ensemble's map (and so counts for the score).
    #[default]
    Map,
    /// Only its image score counts: put on its map's scale and centred on the held-out good
    /// images, it competes with the averaged map's centred maximum (see the module
    /// documentation).
    Score,
    /// Only its map counts, for localisation: its standardised map is averaged into the
    /// ensemble's map, but the image score is taken from the map and score members alone (see
    /// the module documentation). For a model whose map outlines defects well but whose
    /// maximum ranks images worse (e.g. PaDiM beside a PatchCore).
    Pixel,
}

/// A member's anomaly-map values on held-out good images: what its maps (and a
/// [`MemberRole::Score`] member's image scores) are standardised by.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberScale {
    /// Mean map value.
    pub mean: f32,
    /// Standard deviation of the map values (at least a millionth of `|mean|`, and positive).
    pub std: f32,
}

impl MemberScale {
    /// The scale of `values` (f64 sums).
    fn of(values: &[f32]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var
            .sqrt()
            .max(1e-6 * mean.abs())
            .max(f64::from(f32::MIN_POSITIVE));
        Self {
            mean: mean as f32,
            std: std as f32,
        }
    }

    /// `v` standardised: `(v - mean) / std`.
    fn standardise(&self, v: f32) -> f32 {
        (v - self.mean) / self.std
    }

    /// Adds `weight` times the standardised `values` to `acc`, element by element.
    fn accumulate(&self, acc: &mut [f32], values: &[f32], weight: f32) {
        for (a, &v) in acc.iter_mut().zip(values) {
            *a += weight * self.standardise(v);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    detectors: Vec<String>,
    params: EnsembleParams,
    preprocess: PreprocessConfig,
    scales: Vec<MemberScale>,
    member_bytes: Vec<u64>,
    threshold: Option<Threshold>,
    /// One per member; empty in files written before roles existed (every member a map one).
    #[serde(default)]
    roles: Vec<MemberRole>,
    /// With score members: the centres `o_0, o_1, ...` (module documentation); empty otherwise.
    #[serde(default)]
    score_offsets: Vec<f32>,
    /// With score members and [`ScoreSpread::Maxima`]: the spreads `s_0, s_1, ...` the
    /// centred candidates are divided by; empty otherwise (and in older files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    score_spreads: Vec<f32>,
}

/// What fitting measures: every member's scale and, with score members, the candidates'
/// centres (and spreads).
#[derive(Default)]
struct Calibration {
    scales: Vec<MemberScale>,
    score_offsets: Vec<f32>,
    score_spreads: Vec<f32>,
}

/// Detectors whose standardised maps are averaged (see the module documentation).
pub struct Ensemble<D: Detector + ?Sized> {
    params: EnsembleParams,
    preprocessor: Preprocessor,
    members: Vec<Box<D>>,
    /// One per member.
    roles: Vec<MemberRole>,
    /// One per member once fitted; empty before.
    scales: Vec<MemberScale>,
    /// With score members, once fitted: the centre of the map's maximum, then of each score
    /// member's standardised score, on the held-out images.
    score_offsets: Vec<f32>,
    /// With score members and [`ScoreSpread::Maxima`], once fitted: the standard deviation of
    /// each centred candidate on the measured images (same order as `score_offsets`).
    score_spreads: Vec<f32>,
    threshold: Option<Threshold>,
}

impl<D: Detector + ?Sized> std::fmt::Debug for Ensemble<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ensemble")
            .field("params", &self.params)
            .field(
                "members",
                &self.members.iter().map(|m| m.name()).collect::<Vec<_>>(),
            )
            .field("roles", &self.roles)
            .field("scales", &self.scales)
            .field("score_offsets", &self.score_offsets)
            .field("score_spreads", &self.score_spreads)
            .finish()
    }
}

impl<D: Detector + ?Sized> Ensemble<D> {
    /// An unfitted ensemble of `members` (at least two), all of which must preprocess images
    /// exactly as `preprocess` does.
    pub fn new(
        params: EnsembleParams,
        preprocess: PreprocessConfig,
        members: Vec<Box<D>>,
    ) -> Result<Self, D::Error> {
        let roles = vec![MemberRole::Map; members.len()];
        Self::with_roles(params, preprocess, members, roles)
    }

    /// An unfitted ensemble whose members count as `roles` says (one per member; at least one
    /// [`MemberRole::Map`] member, at least two members).
    pub fn with_roles(
        params: EnsembleParams,
        preprocess: PreprocessConfig,
        members: Vec<Box<D>>,
        roles: Vec<MemberRole>,
    ) -> Result<Self, D::Error> {
        Self::assemble(
            params,
            preprocess,
            members,
            roles,
            Calibration::default(),
            None,
        )
    }

    fn assemble(
        params: EnsembleParams,
        preprocess: PreprocessConfig,
        members: Vec<Box<D>>,
        roles: Vec<MemberRole>,
        calibration: Calibration,
        threshold: Option<Threshold>,
    ) -> Result<Self, D::Error> {
        let Calibration {
            scales,
            score_offsets,
            score_spreads,
        } = calibration;
        params.check()?;
        let bad = |reason: String| CoreError::InvalidParameter {
            name: "ensemble",
            reason,
        };
        if members.len() < 2 {
            return Err(bad(format!("needs at least 2 members, got {}", members.len())).into());
        }
        if roles.len() != members.len() {
            return Err(bad(format!(
                "{} roles for {} members",
                roles.len(),
                members.len()
            ))
            .into());
        }
        if !roles.contains(&MemberRole::Map) {
            return Err(bad("needs at least one member whose map counts (role map)".into()).into());
        }
        let scoring = roles.iter().filter(|&&r| r == MemberRole::Score).count();
        let want = if scoring > 0 { 1 + scoring } else { 0 };
        if !scales.is_empty() && score_offsets.len() != want {
            return Err(bad(format!(
                "{} score offsets for {scoring} score members",
                score_offsets.len()
            ))
            .into());
        }
        if !(score_spreads.is_empty() || score_spreads.len() == score_offsets.len())
            || score_spreads.iter().any(|&s| !(s.is_finite() && s > 0.0))
        {
            return Err(bad(format!(
                "score spreads {score_spreads:?} for {} score centres: one positive spread each",
                score_offsets.len()
            ))
            .into());
        }
        if !(scales.is_empty() || scales.len() == members.len()) {
            return Err(bad(format!(
                "{} scales for {} members",
                scales.len(),
                members.len()
            ))
            .into());
        }
        for (j, m) in members.iter().enumerate() {
            let own = m.preprocessor().config();
            let resized_alike = own.mean == preprocess.mean
                && own.std == preprocess.std
                && own.brightness == preprocess.brightness
                && own.center_crop.is_none();
            if own != &preprocess && !resized_alike {
                return Err(bad(format!(
                    "member {j} ({}) preprocesses images as {own:?}, the ensemble as \
                     {preprocess:?}: a member may only differ in its resize (same mean, std and \
                     brightness, no crop)",
                    m.name(),
                ))
                .into());
            }
        }
        Ok(Self {
            params,
            preprocessor: Preprocessor::new(preprocess)?,
            members,
            roles,
            scales,
            score_offsets,
            score_spreads,
            threshold,
        })
    }

    /// The members, in order.
    pub fn members(&self) -> &[Box<D>] {
        &self.members
    }

    /// What each member counts for, in order.
    pub fn roles(&self) -> &[MemberRole] {
        &self.roles
    }

    /// Each member's scale on held-out good images (empty before fitting): of its map values,
    /// or of its image scores for a [`MemberRole::Score`] member.
    pub fn scales(&self) -> &[MemberScale] {
        &self.scales
    }

    /// With score members, once fitted: the centre (mean on the held-out images) of the
    /// averaged map's maximum, then of each score member's standardised score; empty otherwise.
    pub fn score_offsets(&self) -> &[f32] {
        &self.score_offsets
    }

    /// With score members and [`ScoreSpread::Maxima`], once fitted: the spread each centred
    /// candidate is divided by (same order as [`Ensemble::score_offsets`]); empty otherwise.
    pub fn score_spreads(&self) -> &[f32] {
        &self.score_spreads
    }

    /// The ensemble's parameters.
    pub fn params(&self) -> &EnsembleParams {
        &self.params
    }

    /// Writes the model: the scales and the members' own model files, in one checksummed
    /// container (atomically).
    pub fn save_ensemble(&self, path: &Path) -> Result<(), D::Error> {
        let (payload, member_bytes) = pack_members(&self.members, path)?;
        let header = Header {
            detectors: self.members.iter().map(|m| m.name().to_string()).collect(),
            params: self.params.clone(),
            preprocess: self.preprocessor.config().clone(),
            scales: self.scales.clone(),
            member_bytes,
            threshold: self.threshold.clone(),
            roles: self.roles.clone(),
            score_offsets: self.score_offsets.clone(),
            score_spreads: self.score_spreads.clone(),
        };
        Ok(model_file::save_json(
            path,
            MAGIC,
            FORMAT_VERSION,
            &header,
            &payload,
        )?)
    }

    /// Loads a model written by [`Ensemble::save_ensemble`]; `load` opens one member's model
    /// file (e.g. the registry's loader, which picks the detector by the file's magic bytes).
    pub fn load_with(
        path: &Path,
        load: impl FnMut(&Path) -> Result<Box<D>, D::Error>,
    ) -> Result<Self, D::Error> {
        let (header, bytes, payload): (Header, _, _) =
            model_file::read_json(path, MAGIC, FORMAT_VERSION, "ensemble")?;
        if header.member_bytes.len() != header.detectors.len() {
            return Err(CoreError::BadModelFile {
                path: path.to_path_buf(),
                reason: format!(
                    "{} member files for {} members",
                    header.member_bytes.len(),
                    header.detectors.len()
                ),
            }
            .into());
        }
        let members = unpack_members(path, &bytes[payload], &header.member_bytes, load)?;
        let roles = if header.roles.is_empty() {
            vec![MemberRole::Map; members.len()]
        } else {
            header.roles
        };
        Self::assemble(
            header.params,
            header.preprocess,
            members,
            roles,
            Calibration {
                scales: header.scales,
                score_offsets: header.score_offsets,
                score_spreads: header.score_spreads,
            },
            header.threshold,
        )
    }

    /// Fits every member on the images of `batches` where `keep` says so (in stream order).
    fn fit_members(
        &mut self,
        batches: &[ImageBatch],
        keep: impl Fn(usize) -> bool,
    ) -> Result<FitSummary, D::Error> {
        let mut subset = Vec::new();
        let mut at = 0;
        for b in batches {
            let idx: Vec<usize> = (0..b.len()).filter(|&i| keep(at + i)).collect();
            at += b.len();
            subset.extend(b.select(&idx)?);
        }
        let mut summary = FitSummary::default();
        for m in &mut self.members {
            let size = m.preprocessor().output_size();
            let s = m.fit(subset.iter().map(|b| b.resized(size)))?;
            summary.features += s.features;
            summary.memory_rows += s.memory_rows;
            summary.extract_time += s.extract_time;
            summary.build_time += s.build_time;
        }
        summary.images = subset.iter().map(ImageBatch::len).sum();
        Ok(summary)
    }
}

/// A member's predictions of `batch`'s images, which it sees resized to its own size when the two
/// differ.
fn member_predict<D: Detector + ?Sized>(
    member: &D,
    batch: &ImageBatch,
) -> Result<Vec<Prediction>, D::Error> {
    let own = member.preprocessor().output_size();
    if own == (batch.height(), batch.width()) {
        member.predict(batch)
    } else {
        member.predict(&batch.resized(own)?)
    }
}

/// A member's maps of `batch`'s images at the batch's size (resized back, bilinear, when the
/// member works at another size), each with the image's score.
fn member_maps<D: Detector + ?Sized>(
    member: &D,
    batch: &ImageBatch,
) -> Result<Vec<(Vec<f32>, f32)>, D::Error> {
    let (h, w) = (batch.height(), batch.width());
    let own = member.preprocessor().output_size();
    member_predict(member, batch)?
        .into_iter()
        .map(|p| {
            let (mh, mw) = (p.map.height(), p.map.width());
            if (mh, mw) == (h, w) {
                Ok((p.map.into_vec(), p.score))
            } else if (mh, mw) == own {
                let map = upsample(p.map.as_slice(), own, (h, w), MapUpsample::Bilinear);
                Ok((map, p.score))
            } else {
                Err(CoreError::InvalidParameter {
                    name: "ensemble",
                    reason: format!(
                        "member {} returned a {mw}x{mh} map for {}x{} images",
                        member.name(),
                        own.1,
                        own.0
                    ),
                }
                .into())
            }
        })
        .collect()
}

impl<D: Detector + ?Sized> Ensemble<D> {
    /// Weight of each map member in the average the image score is taken from (`1 / number
    /// of map members`).
    fn map_weight(&self) -> f32 {
        let mapping = self.roles.iter().filter(|&&r| r == MemberRole::Map).count();
        1.0 / mapping.max(1) as f32
    }

    /// Weight of each map and pixel member in the returned map (`1 / number of map and pixel
    /// members`).
    fn pixel_weight(&self) -> f32 {
        let mapping = self
            .roles
            .iter()
            .filter(|&&r| r != MemberRole::Score)
            .count();
        1.0 / mapping.max(1) as f32
    }

    /// The candidate scores' centres (means) on the measured images (module documentation)
    /// and, with [`ScoreSpread::Maxima`], their standard deviations: the averaged map's largest
    /// value, then each score member's standardised score. `maps[j]` holds member `j`'s maps
    /// of the `images` measured images, one after another, and `scores[j]` its image scores.
    fn centres(
        &self,
        scales: &[MemberScale],
        maps: &[Vec<f32>],
        scores: &[Vec<f32>],
        images: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let per_image = maps.first().map_or(0, Vec::len) / images.max(1);
        let inv = self.map_weight();
        let mut candidates: Vec<Vec<f32>> = vec![Vec::with_capacity(images)];
        let mut averaged = vec![0.0f32; per_image];
        for i in 0..images {
            averaged.iter_mut().for_each(|a| *a = 0.0);
            for ((v, s), role) in maps.iter().zip(scales).zip(&self.roles) {
                if *role == MemberRole::Map {
                    s.accumulate(&mut averaged, &v[i * per_image..(i + 1) * per_image], inv);
                }
            }
            candidates[0].push(averaged.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        }
        for ((z, s), role) in scores.iter().zip(scales).zip(&self.roles) {
            if *role == MemberRole::Score {
                candidates.push(z.iter().map(|&v| s.standardise(v)).collect());
            }
        }
        let measured: Vec<MemberScale> = candidates.iter().map(|c| MemberScale::of(c)).collect();
        let centres = measured.iter().map(|m| m.mean).collect();
        let spreads = match self.params.score_spread {
            ScoreSpread::Map => Vec::new(),
            ScoreSpread::Maxima => measured.iter().map(|m| m.std).collect(),
        };
        (centres, spreads)
    }
}

impl<D: Detector + ?Sized> Detector for Ensemble<D> {
    type Error = D::Error;

    fn name(&self) -> &'static str {
        "ensemble"
    }

    /// Holds out [`EnsembleParams::holdout`] of the good images (or, with
    /// [`EnsembleParams::folds`], each fold in turn), fits every member on the rest, measures
    /// each member's map values on the held-out images and, with score members, the centres
    /// (and spreads) of the candidate scores there; then fits every member on all the images
    /// (the batches are kept in memory for the later passes).
    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, D::Error>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let batches = batches
            .into_iter()
            .map(|b| b.map_err(|e| CoreError::Input(e.into())))
            .collect::<Result<Vec<ImageBatch>, CoreError>>()?;
        let n: usize = batches.iter().map(ImageBatch::len).sum();
        // Every member's maps (all at the ensemble's size) and scores of the measured images,
        // round after round.
        let mut values: Vec<Vec<f32>> = vec![Vec::new(); self.members.len()];
        let mut scores: Vec<Vec<f32>> = vec![Vec::new(); self.members.len()];
        let mut images = 0;
        for measured in self.params.rounds(n)? {
            self.fit_members(&batches, |i| !measured[i])?;
            let mut at = 0;
            for b in &batches {
                let idx: Vec<usize> = (0..b.len()).filter(|&i| measured[at + i]).collect();
                at += b.len();
                if let Some(h) = b.select(&idx)? {
                    images += h.len();
                    for ((m, v), sc) in self.members.iter().zip(&mut values).zip(&mut scores) {
                        for (map, score) in member_maps(m.as_ref(), &h)? {
                            v.extend(map);
                            sc.push(score);
                        }
                    }
                }
            }
        }
        let scales: Vec<MemberScale> = values.iter().map(|v| MemberScale::of(v)).collect();
        (self.score_offsets, self.score_spreads) = if self.roles.contains(&MemberRole::Score) {
            self.centres(&scales, &values, &scores, images)
        } else {
            (Vec::new(), Vec::new())
        };
        self.scales = scales;
        self.fit_members(&batches, |_| true)
    }

    /// Every map member's map standardised by its scale, averaged; the score is the largest
    /// value (with score members: the map shifted by its centre (and divided by its spread),
    /// and the largest of its maximum and the score members' centred scores).
    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, D::Error> {
        if self.scales.len() != self.members.len() {
            return Err(CoreError::InvalidParameter {
                name: "ensemble",
                reason: "predict before fit: the members' scales are not measured".into(),
            }
            .into());
        }
        let (h, w) = (batch.height(), batch.width());
        // The returned maps (map and pixel members) and, with pixel members, the map members'
        // own average the image score is taken from.
        let pixels = self.roles.contains(&MemberRole::Pixel);
        let mut maps = vec![vec![0.0f32; h * w]; batch.len()];
        let mut scoring_maps = if pixels {
            vec![vec![0.0f32; h * w]; batch.len()]
        } else {
            Vec::new()
        };
        let mut others = vec![f32::NEG_INFINITY; batch.len()];
        let (o0, offsets) = self
            .score_offsets
            .split_first()
            .map_or((0.0, &[][..]), |(o0, rest)| (*o0, rest));
        // Each candidate's spread (1 unless measured: `ScoreSpread::Map`).
        let spread = |k: usize| self.score_spreads.get(k).copied().unwrap_or(1.0);
        let (inv, inv_all) = (self.map_weight(), self.pixel_weight());
        let mut offsets = offsets.iter().zip(1..);
        for ((m, s), role) in self.members.iter().zip(&self.scales).zip(&self.roles) {
            match role {
                MemberRole::Map | MemberRole::Pixel => {
                    let member = member_maps(m.as_ref(), batch)?;
                    for (j, (map, _)) in member.into_iter().enumerate() {
                        s.accumulate(&mut maps[j], &map, inv_all);
                        if pixels && *role == MemberRole::Map {
                            s.accumulate(&mut scoring_maps[j], &map, inv);
                        }
                    }
                }
                MemberRole::Score => {
                    // One centre per score member: `assemble` checked the count.
                    let (ok, sk) = offsets.next().map_or((0.0, 1.0), |(o, k)| (*o, spread(k)));
                    for (b, p) in others.iter_mut().zip(member_predict(m.as_ref(), batch)?) {
                        *b = b.max((s.standardise(p.score) - ok) / sk);
                    }
                }
            }
        }
        let largest = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let tops: Vec<f32> = if pixels {
            scoring_maps.iter().map(|m| largest(m)).collect()
        } else {
            maps.iter().map(|m| largest(m)).collect()
        };
        let s0 = spread(0);
        if !self.score_offsets.is_empty() {
            for map in &mut maps {
                for v in map.iter_mut() {
                    *v = (*v - o0) / s0;
                }
            }
        }
        maps.into_iter()
            .zip(tops.into_iter().zip(others))
            .map(|(data, (top, other))| {
                let map = AnomalyMap::new(w, h, data)?;
                // The shift is monotone, so without pixel members this is the shifted map's
                // maximum, to the bit.
                let score = ((top - o0) / s0).max(other);
                Ok(Prediction {
                    score,
                    map,
                    is_anomalous: self.threshold.as_ref().map(|t| t.is_anomalous(score)),
                })
            })
            .collect()
    }

    fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    fn save(&self, path: &Path) -> Result<(), D::Error> {
        self.save_ensemble(path)
    }

    fn threshold(&self) -> Option<&Threshold> {
        self.threshold.as_ref()
    }

    fn set_threshold(&mut self, threshold: Option<Threshold>) {
        self.threshold = threshold;
    }

    /// The smallest member batch size.
    fn batch_size(&self) -> usize {
        self.members
            .iter()
            .map(|m| m.batch_size())
            .min()
            .unwrap_or(1)
            .max(1)
    }

    fn set_epoch_callback(&mut self, callback: Option<EpochCallback>) {
        // Trained members report their epochs; all share the one callback.
        let shared = callback.map(|cb| std::sync::Arc::new(std::sync::Mutex::new(cb)));
        for m in &mut self.members {
            m.set_epoch_callback(shared.clone().map(|cb| {
                Box::new(move |r: &crate::EpochReport| {
                    if let Ok(mut f) = cb.lock() {
                        f(r);
                    }
                }) as EpochCallback
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy detector: the squared difference from the mean training image, to the power
    /// `power`, times `gain`, plus `offset` (members on different scales; with another power,
    /// a member whose standardised map differs).
    struct MeanImage {
        pre: Preprocessor,
        mean: Vec<f32>,
        gain: f32,
        offset: f32,
        power: i32,
        threshold: Option<Threshold>,
    }

    impl MeanImage {
        fn new(gain: f32, offset: f32) -> Box<Self> {
            Self::with_power(gain, offset, 1)
        }

        fn with_power(gain: f32, offset: f32, power: i32) -> Box<Self> {
            Box::new(Self {
                pre: Preprocessor::new(PreprocessConfig::default().with_size(8, 8)).unwrap(),
                mean: Vec::new(),
                gain,
                offset,
                power,
                threshold: None,
            })
        }
    }

    impl Detector for MeanImage {
        type Error = CoreError;
        fn name(&self) -> &'static str {
            "mean-image"
        }
        fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, CoreError>
        where
            I: IntoIterator<Item = Result<ImageBatch, E>>,
            E: Into<BoxError>,
        {
            let mut sum = vec![0.0f32; 3 * 64];
            let mut n = 0;
            for b in batches {
                let b = b.map_err(|e| CoreError::Input(e.into()))?;
                for img in b.as_slice().chunks_exact(3 * 64) {
                    for (s, v) in sum.iter_mut().zip(img) {
                        *s += v;
                    }
                    n += 1;
                }
            }
            self.mean = sum.iter().map(|s| s / n as f32).collect();
            Ok(FitSummary {
                images: n,
                ..FitSummary::default()
            })
        }
        fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, CoreError> {
            batch
                .as_slice()
                .chunks_exact(3 * 64)
                .map(|img| {
                    let data: Vec<f32> = (0..64)
                        .map(|p| {
                            let d: f32 = (0..3)
                                .map(|c| (img[c * 64 + p] - self.mean[c * 64 + p]).powi(2))
                                .sum();
                            self.gain * d.powi(self.power) + self.offset
                        })
                        .collect();
                    let map = AnomalyMap::new(8, 8, data)?;
                    Ok(Prediction {
                        score: map.max(),
                        map,
                        is_anomalous: None,
                    })
                })
                .collect()
        }
        fn preprocessor(&self) -> &Preprocessor {
            &self.pre
        }
        fn save(&self, path: &Path) -> Result<(), CoreError> {
            let header =
                serde_json::to_vec(&(self.gain, self.offset, self.power, &self.mean)).unwrap();
            model_file::write_atomic(path, &model_file::encode(b"TOYMEAN\0", 1, &header, &[]))
                .map_err(|source| CoreError::Io {
                    path: path.to_path_buf(),
                    source,
                })
        }
        fn threshold(&self) -> Option<&Threshold> {
            self.threshold.as_ref()
        }
        fn set_threshold(&mut self, threshold: Option<Threshold>) {
            self.threshold = threshold;
        }
    }

    fn load_toy(path: &Path) -> Result<Box<MeanImage>, CoreError> {
        let bytes = std::fs::read(path).map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (header, _) = model_file::decode(&bytes, b"TOYMEAN\0", 1, "toy").unwrap();
        let (gain, offset, power, mean): (f32, f32, i32, Vec<f32>) =
            serde_json::from_slice(header).unwrap();
        let mut m = MeanImage::with_power(gain, offset, power);
        m.mean = mean;
        Ok(m)
    }

    fn images(n: usize, seed: u32) -> Vec<ImageBatch> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 9) as f32 / (1u32 << 23) as f32
        };
        (0..n)
            .map(|_| {
                let plane: Vec<f32> = (0..3 * 64).map(|_| 0.1 * next()).collect();
                ImageBatch::from_planes(vec![plane], (8, 8), [0.0; 3], [1.0; 3]).unwrap()
            })
            .collect()
    }

    #[test]
    fn members_on_different_scales_count_alike_and_the_model_round_trips() {
        let pre = PreprocessConfig::default().with_size(8, 8);
        let members: Vec<Box<MeanImage>> = vec![MeanImage::new(1.0, 0.0), MeanImage::new(1e3, 5.0)];
        let mut e = Ensemble::new(EnsembleParams::default(), pre.clone(), members).unwrap();
        let good = images(12, 1);
        let s = e.fit(good.iter().cloned().map(Ok::<_, CoreError>)).unwrap();
        assert_eq!(s.images, 12);
        // Both members are the same detector up to an affine map: once standardised, each
        // contributes the same map, so the ensemble's map is either member's standardised map.
        let (a, b) = (e.scales()[0], e.scales()[1]);
        assert!((b.std / a.std - 1e3).abs() < 1.0, "{a:?} {b:?}");
        let mut bad = images(1, 99).remove(0);
        let plane: Vec<f32> = bad
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 64 == 9 { v + 1.0 } else { *v })
            .collect();
        bad = ImageBatch::from_planes(vec![plane], (8, 8), [0.0; 3], [1.0; 3]).unwrap();
        let p = e.predict(&bad).unwrap().remove(0);
        let m0 = e.members()[0].predict(&bad).unwrap().remove(0);
        for (&v, &u) in p.map.as_slice().iter().zip(m0.map.as_slice()) {
            let want = (u - a.mean) / a.std;
            assert!(
                (v - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{v} vs {want}"
            );
        }
        assert_eq!(p.map.as_slice().iter().position(|&v| v == p.score), Some(9));
        // Save, load, same predictions.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ensemble");
        let image = |w: usize, h: usize| crate::RgbImage::new(w, h, vec![0; w * h * 3]).unwrap();
        assert_eq!(
            e.input_warning(&image(8, 8)),
            None,
            "no threshold, nothing recorded"
        );
        e.set_threshold(Some(
            Threshold::new(1.0, 0.0, 2.0, crate::ThresholdMethod::Manual)
                .unwrap()
                .with_inputs(crate::InputSizes::from_sizes([(40, 30); 12])),
        ));
        e.save(&path).unwrap();
        let back = Ensemble::<MeanImage>::load_with(&path, load_toy).unwrap();
        assert_eq!(back.scales(), e.scales());
        assert_eq!(back.threshold(), e.threshold());
        // The fitted images' sizes come back with the threshold, and images unlike them are
        // named.
        assert_eq!(back.input_warning(&image(44, 33)), None);
        let why = back.input_warning(&image(30, 40)).unwrap();
        assert!(
            why.contains("stretched") && why.contains("12 images, 40x30"),
            "{why}"
        );
        assert_eq!(back.predict(&bad).unwrap(), e.predict(&bad).unwrap());
    }

    #[test]
    fn members_at_another_resolution_see_resized_images_and_answer_at_the_ensembles() {
        // The ensemble works at 16 x 16, its members at 8 x 8: they fit on the images shrunk
        // to their size, and their maps come back at 16 x 16.
        let pre = PreprocessConfig::default().with_size(16, 16);
        let members: Vec<Box<MeanImage>> = vec![MeanImage::new(1.0, 0.0), MeanImage::new(2.0, 1.0)];
        let mut e = Ensemble::new(EnsembleParams::default(), pre, members).unwrap();
        let big = |small: &ImageBatch| {
            let planes = small
                .as_slice()
                .chunks_exact(3 * 64)
                .map(|img| {
                    (0..3 * 256)
                        .map(|i| img[(i / 256) * 64 + (i % 256) / 32 * 8 + (i % 16) / 2])
                        .collect()
                })
                .collect();
            ImageBatch::from_planes(planes, (16, 16), [0.0; 3], [1.0; 3]).unwrap()
        };
        let good: Vec<ImageBatch> = images(12, 1).iter().map(big).collect();
        e.fit(good.iter().cloned().map(Ok::<_, CoreError>)).unwrap();
        // A defect in the 2 x 2 block of 16-px pixels (4..6, 10..12): the member's pixel (2, 5).
        let mut plane = good[0].as_slice().to_vec();
        for c in 0..3 {
            for (y, x) in [(4, 10), (4, 11), (5, 10), (5, 11)] {
                plane[c * 256 + y * 16 + x] += 1.0;
            }
        }
        let bad = ImageBatch::from_planes(vec![plane], (16, 16), [0.0; 3], [1.0; 3]).unwrap();
        let p = e.predict(&bad).unwrap().remove(0);
        assert_eq!((p.map.width(), p.map.height()), (16, 16));
        let at = p.map.as_slice().iter().position(|&v| v == p.score).unwrap();
        let (y, x) = (at / 16, at % 16);
        assert!(
            (3..=6).contains(&y) && (9..=12).contains(&x),
            "peak at {y}, {x}"
        );
        // The member's own map, standardised and enlarged, is the ensemble's (both members
        // are one detector up to an affine map).
        let m0 = e.members()[0]
            .predict(&bad.resized((8, 8)).unwrap())
            .unwrap();
        let s0 = e.scales()[0];
        let std: Vec<f32> = m0[0]
            .map
            .as_slice()
            .iter()
            .map(|v| (v - s0.mean) / s0.std)
            .collect();
        let want = upsample(&std, (8, 8), (16, 16), MapUpsample::Bilinear);
        for (&v, &u) in p.map.as_slice().iter().zip(&want) {
            assert!((v - u).abs() <= 1e-3 * u.abs().max(1.0), "{v} vs {u}");
        }
    }

    /// Predicts an image with one bright pixel with `e` (a map member 0 and a score member 1)
    /// and checks the module documentation's formula: the map is member 0's standardised map
    /// shifted by its centre and divided by its spread (1 without measured spreads), the score
    /// the larger of its maximum and member 1's centred, divided score; then that the saved
    /// model loads with the same calibration and predictions. Returns the prediction.
    fn check_score_formula_and_round_trip(e: &Ensemble<MeanImage>) -> Prediction {
        let (a, b) = (e.scales()[0], e.scales()[1]);
        let o = e.score_offsets();
        let spread = |k: usize| e.score_spreads().get(k).copied().unwrap_or(1.0);
        let mut plane = images(1, 99).remove(0).as_slice().to_vec();
        plane[9] += 1.0;
        let bad = ImageBatch::from_planes(vec![plane], (8, 8), [0.0; 3], [1.0; 3]).unwrap();
        let p = e.predict(&bad).unwrap().remove(0);
        let m0 = e.members()[0].predict(&bad).unwrap().remove(0);
        for (&v, &u) in p.map.as_slice().iter().zip(m0.map.as_slice()) {
            let want = ((u - a.mean) / a.std - o[0]) / spread(0);
            assert!(
                (v - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{v} vs {want}"
            );
        }
        let m1 = e.members()[1].predict(&bad).unwrap().remove(0);
        let other = ((m1.score - b.mean) / b.std - o[1]) / spread(1);
        assert_eq!(p.score, p.map.max().max(other));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ensemble");
        e.save(&path).unwrap();
        let back = Ensemble::<MeanImage>::load_with(&path, load_toy).unwrap();
        assert_eq!(back.roles(), e.roles());
        assert_eq!(back.params(), e.params());
        assert_eq!(back.score_offsets(), e.score_offsets());
        assert_eq!(back.score_spreads(), e.score_spreads());
        assert_eq!(back.predict(&bad).unwrap(), e.predict(&bad).unwrap());
        p
    }

    #[test]
    fn score_members_count_for_the_score_only_and_round_trip() {
        let pre = PreprocessConfig::default().with_size(8, 8);
        let members: Vec<Box<MeanImage>> = vec![MeanImage::new(1.0, 0.0), MeanImage::new(1e3, 5.0)];
        let roles = vec![MemberRole::Map, MemberRole::Score];
        let mut e = Ensemble::with_roles(EnsembleParams::default(), pre, members, roles).unwrap();
        let good = images(12, 1);
        e.fit(good.iter().cloned().map(Ok::<_, CoreError>)).unwrap();
        let (a, b) = (e.scales()[0], e.scales()[1]);
        // Both scales are of map values: the members are one detector up to an affine map.
        assert!((b.std / a.std - 1e3).abs() < 1.0, "{a:?} {b:?}");
        let o = e.score_offsets().to_vec();
        assert_eq!(o.len(), 2);
        // Centres of maxima: above the map mean (0 once standardised); equal for the two
        // members, which are the same detector.
        assert!(o[0] > 0.5 && (o[1] - o[0]).abs() < 1e-3 * o[0], "{o:?}");
        assert!(
            e.score_spreads().is_empty(),
            "the hold-out divides by the map spreads"
        );
        let p = check_score_formula_and_round_trip(&e);
        assert!(p.score > 1.0, "{}", p.score);
        // Score members alone make no map: refused.
        let two = vec![MeanImage::new(1.0, 0.0), MeanImage::new(1.0, 0.0)];
        let pre = PreprocessConfig::default().with_size(8, 8);
        let roles = vec![MemberRole::Score, MemberRole::Score];
        assert!(Ensemble::with_roles(EnsembleParams::default(), pre, two, roles).is_err());
    }

    #[test]
    fn pixel_members_change_the_map_but_not_the_score() {
        use MemberRole::{Map, Pixel, Score};
        let pre = PreprocessConfig::default().with_size(8, 8);
        let good = images(12, 1);
        let fit = |members: Vec<Box<MeanImage>>, roles: Vec<MemberRole>| {
            let mut e =
                Ensemble::with_roles(EnsembleParams::default(), pre.clone(), members, roles)
                    .unwrap();
            e.fit(good.iter().cloned().map(Ok::<_, CoreError>)).unwrap();
            e
        };
        let map = || MeanImage::new(1.0, 0.0);
        let score = || MeanImage::new(1e3, 5.0);
        let pixel = || MeanImage::with_power(2.0, 1.0, 2);
        let mut plane = images(1, 99).remove(0).as_slice().to_vec();
        plane[9] += 1.0;
        plane[70] += 0.5;
        let bad = ImageBatch::from_planes(vec![plane], (8, 8), [0.0; 3], [1.0; 3]).unwrap();
        let cases = [
            (vec![map(), score()], vec![Map, Score]),
            (vec![map(), pixel(), score()], vec![Map, Pixel, Score]),
            (vec![map(), map()], vec![Map, Map]),
            (vec![map(), pixel()], vec![Map, Pixel]),
        ];
        let [without, with, plain, pixels] = cases.map(|(members, roles)| fit(members, roles));
        for (without, with) in [(&without, &with), (&plain, &pixels)] {
            let (p, q) = (without.predict(&bad).unwrap(), with.predict(&bad).unwrap());
            // The score is the map (and score) members' alone, to the bit.
            assert_eq!(with.score_offsets(), without.score_offsets());
            assert_eq!(q[0].score, p[0].score);
            // The map averages the map and pixel members' standardised maps, shifted as the
            // score's map.
            let o0 = with.score_offsets().first().copied().unwrap_or(0.0);
            let (a, c) = (with.scales()[0], with.scales()[1]);
            let m0 = with.members()[0].predict(&bad).unwrap().remove(0);
            let m1 = with.members()[1].predict(&bad).unwrap().remove(0);
            let maps = m0.map.as_slice().iter().zip(m1.map.as_slice());
            for (&v, (&u0, &u1)) in q[0].map.as_slice().iter().zip(maps) {
                let want = 0.5 * ((u0 - a.mean) / a.std + (u1 - c.mean) / c.std) - o0;
                assert!(
                    (v - want).abs() <= 1e-3 * want.abs().max(1.0),
                    "{v} vs {want}"
                );
            }
            assert_ne!(q[0].map, p[0].map);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.ensemble");
            with.save(&path).unwrap();
            let back = Ensemble::<MeanImage>::load_with(&path, load_toy).unwrap();
            assert_eq!(back.roles(), with.roles());
            assert_eq!(back.predict(&bad).unwrap(), q);
        }
        // Pixel members alone make no score: refused.
        let roles = vec![Pixel, Pixel];
        assert!(
            Ensemble::with_roles(EnsembleParams::default(), pre, vec![map(), pixel()], roles)
                .is_err()
        );
    }

    #[test]
    fn bad_ensembles_are_refused() {
        let pre = PreprocessConfig::default().with_size(8, 8);
        assert!(
            Ensemble::new(
                EnsembleParams::default(),
                pre.clone(),
                vec![MeanImage::new(1.0, 0.0)]
            )
            .is_err()
        );
        // Members may differ in size only: not in normalisation, nor by a crop.
        let mut other = PreprocessConfig::default().with_size(16, 16);
        other.mean = [0.5; 3];
        let two = || vec![MeanImage::new(1.0, 0.0), MeanImage::new(1.0, 0.0)];
        assert!(Ensemble::new(EnsembleParams::default(), other, two()).is_err());
        let mut cropping = two();
        cropping[1].pre = Preprocessor::new(
            PreprocessConfig::default()
                .with_size(10, 10)
                .with_center_crop(Some((8, 8))),
        )
        .unwrap();
        let at16 = PreprocessConfig::default().with_size(16, 16);
        assert!(Ensemble::new(EnsembleParams::default(), at16.clone(), cropping).is_err());
        assert!(Ensemble::new(EnsembleParams::default(), at16, two()).is_ok());
        let params = EnsembleParams {
            holdout: 1.0,
            seed: 0,
            ..EnsembleParams::default()
        };
        assert!(params.check().is_err());
        let one_fold = EnsembleParams {
            folds: 1,
            ..EnsembleParams::default()
        };
        assert!(one_fold.check().is_err());
        let mut e = Ensemble::new(
            EnsembleParams::default(),
            pre,
            vec![MeanImage::new(1.0, 0.0), MeanImage::new(1.0, 0.0)],
        )
        .unwrap();
        let one = images(1, 3);
        assert!(e.predict(&one[0]).is_err(), "predict before fit");
        assert!(
            e.fit(one.into_iter().map(Ok::<_, CoreError>)).is_err(),
            "one image"
        );
    }

    #[test]
    fn hold_out_is_seeded_and_leaves_both_sides() {
        let p = EnsembleParams::default();
        let h = p.held_out(32).unwrap();
        assert_eq!(h.iter().filter(|&&x| x).count(), 8);
        assert_eq!(p.held_out(32).unwrap(), h);
        let other = EnsembleParams {
            seed: 8,
            ..p.clone()
        };
        assert_ne!(other.held_out(32).unwrap(), h);
        assert_eq!(p.held_out(2).unwrap().iter().filter(|&&x| x).count(), 1);
        assert!(p.held_out(1).is_err());
        // Without folds, one round: the hold-out.
        assert_eq!(p.rounds(32).unwrap(), vec![h]);
    }

    #[test]
    fn folds_measure_every_image_once() {
        let p = EnsembleParams {
            folds: 4,
            ..EnsembleParams::default()
        };
        let rounds = p.rounds(30).unwrap();
        assert_eq!(rounds.len(), 4);
        let sizes: Vec<usize> = rounds
            .iter()
            .map(|r| r.iter().filter(|&&x| x).count())
            .collect();
        assert_eq!(sizes, vec![8, 8, 7, 7]);
        for i in 0..30 {
            assert_eq!(rounds.iter().filter(|r| r[i]).count(), 1, "image {i}");
        }
        assert_eq!(p.rounds(30).unwrap(), rounds, "seeded");
        // Not the first images in stream order: the seeded order is dealt.
        assert_ne!(rounds[0][..8], [true; 8]);
        assert!(p.rounds(3).is_err(), "more folds than images");
        assert_eq!(p.rounds(4).unwrap().len(), 4);
    }

    #[test]
    fn cross_fitting_divides_each_candidate_by_its_spread() {
        let pre = PreprocessConfig::default().with_size(8, 8);
        let params = EnsembleParams {
            folds: 3,
            score_spread: ScoreSpread::Maxima,
            ..EnsembleParams::default()
        };
        let members: Vec<Box<MeanImage>> = vec![MeanImage::new(1.0, 0.0), MeanImage::new(1e3, 5.0)];
        let roles = vec![MemberRole::Map, MemberRole::Score];
        let mut e = Ensemble::with_roles(params, pre, members, roles).unwrap();
        let good = images(12, 1);
        e.fit(good.iter().cloned().map(Ok::<_, CoreError>)).unwrap();
        let (o, sp) = (e.score_offsets().to_vec(), e.score_spreads().to_vec());
        assert_eq!((o.len(), sp.len()), (2, 2));
        assert!(sp.iter().all(|&s| s > 0.0), "{sp:?}");
        // The two members are one detector up to an affine map: the same spread of maxima.
        assert!((sp[1] - sp[0]).abs() < 1e-3 * sp[0], "{sp:?}");
        check_score_formula_and_round_trip(&e);
    }
}
