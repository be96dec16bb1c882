//! Feature-space anomalies of the score student ([`StudentConfig::feature_noise`]): good patch
//! features moved off the good patches' manifold by Gaussian noise, with targets from the
//! nearest-neighbour distance that defines the teacher's score, so the head is trained on
//! what the teacher does away from its training data in every direction, not only in the
//! directions the synthetic images (cut-paste, curves, spots) happen to reach.
//!
//! For a good patch `x` of a fold (scored by a teacher fitted on the other folds' images),
//! with the teacher's target `t(x)`:
//! 1. `p(x)`: the Euclidean distance from `x` to the nearest patch of the other folds' good
//!    images (the rows the teacher's memory bank was drawn from);
//! 2. `x' = x + r * m * u`, where `u` is a unit direction ([`NoiseDirections`]: by default a
//!    standard Gaussian vector scaled column by column by the good patches' standard
//!    deviations, normalised to unit length), `m` is the median
//!    of `p` over the fold's drawn patches and `r` is uniform in `[0, R)`, `R` the
//!    configured radius ([`StudentConfig::feature_noise_radius`], 4 by default);
//! 3. `t(x') = t(x) + max(0, p(x') - p(x))`: exact at `r = 0`, and growing with the distance
//!    to the nearest good patch as the teacher's score does (its bank is a coreset of those
//!    rows, so its own distance is `p` plus a covering gap that is nearly constant at this
//!    scale).
//!
//! [`StudentConfig::feature_noise`]: crate::StudentConfig::feature_noise
//! [`StudentConfig::feature_noise_radius`]: crate::StudentConfig::feature_noise_radius

use ad_memory_bank::{BruteForce, KnnIndex, MemoryBank};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::RegressError;
use crate::student::quantile;

/// Default largest radius of a perturbation, in units of the median nearest-good-patch
/// distance: the moved patches' distances reach about `sqrt(1 + 4^2)` ≈ 4 times a good
/// patch's, the range of the synthetic images' targets.
pub(crate) const DEFAULT_NOISE_RADIUS: f32 = 4.0;

/// Where the feature-space anomalies are moved ([`StudentConfig::feature_noise_directions`]).
///
/// [`StudentConfig::feature_noise_directions`]: crate::StudentConfig::feature_noise_directions
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseDirections {
    /// A standard Gaussian vector scaled column by column by the good patches' standard
    /// deviations: every direction, each column by its own spread, correlations ignored.
    #[default]
    Diagonal,
    /// The difference of two good patches drawn at random: directions distributed as the
    /// good patches vary (their covariance, correlations included), the directions along
    /// which a real part's patch can change.
    Covariance,
    /// A standard Gaussian vector: every direction equally likely, whatever each column's
    /// spread.
    Isotropic,
}

impl NoiseDirections {
    /// Every kind, in CLI order.
    pub const ALL: [NoiseDirections; 3] = [
        NoiseDirections::Diagonal,
        NoiseDirections::Covariance,
        NoiseDirections::Isotropic,
    ];
}

impl std::fmt::Display for NoiseDirections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoiseDirections::Diagonal => "diagonal",
            NoiseDirections::Covariance => "covariance",
            NoiseDirections::Isotropic => "isotropic",
        })
    }
}

impl std::str::FromStr for NoiseDirections {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ad_core::parse_name(s, &Self::ALL, "noise directions")
    }
}

/// The good patch rows of one teacher fold and where they sit among all the good rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FoldRows {
    /// The split the fold belongs to (its bank is the other folds of the same split).
    pub(crate) split: usize,
    /// First good row of the fold.
    pub(crate) start: usize,
    /// Good rows of the fold.
    pub(crate) len: usize,
}

/// Moved rows and their targets (in the teacher's units), `n x d` row-major and `n`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Moved {
    /// The moved patch features.
    pub(crate) rows: Vec<f32>,
    /// Their targets.
    pub(crate) targets: Vec<f32>,
}

/// Feature-space anomalies of every fold: `fraction` of each fold's good rows, rounded to
/// whole images of `cells` rows (at least one image's worth when `fraction > 0`), drawn with
/// replacement and moved as the module describes, by radii uniform below `radius` median
/// nearest-good-patch distances, in `directions`. `good_rows` (`n x d`) and `good_targets`
/// are the folds' good rows and the teachers' targets, in fold order; `folds` says which
/// rows belong to which fold; `progress(done, total)` hears of every fold done (and of the
/// start). Seeded: the same inputs and seed give the same rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn feature_anomalies(
    good_rows: &[f32],
    good_targets: &[f32],
    folds: &[FoldRows],
    d: usize,
    cells: usize,
    fraction: f32,
    radius: f32,
    directions: NoiseDirections,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Moved, RegressError> {
    let n = good_targets.len();
    if good_rows.len() != n * d {
        return Err(RegressError::Data(format!(
            "{} good feature values for {n} targets of width {d}",
            good_rows.len()
        )));
    }
    let mut out = Moved::default();
    if fraction <= 0.0 || n == 0 || d == 0 {
        return Ok(out);
    }
    progress(0, folds.len());
    let scales = column_std(good_rows, d);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xFEA7_0000_0000_0001);
    for (j, fold) in folds.iter().enumerate() {
        let bank: Vec<f32> = folds
            .iter()
            .enumerate()
            .filter(|&(i, f)| i != j && f.split == fold.split)
            .flat_map(|(_, f)| {
                good_rows[f.start * d..(f.start + f.len) * d]
                    .iter()
                    .copied()
            })
            .collect();
        if bank.is_empty() || fold.len == 0 {
            progress(j + 1, folds.len());
            continue;
        }
        let index = BruteForce::new(
            MemoryBank::from_rows(bank, d).map_err(|e| RegressError::Data(e.to_string()))?,
        );
        let images = ((fold.len as f32 * fraction) / cells.max(1) as f32).round() as usize;
        let count = images.max(1) * cells.max(1);
        let sources: Vec<usize> = (0..count)
            .map(|_| fold.start + rng.random_range(0..fold.len))
            .collect();
        let source_rows: Vec<f32> = sources
            .iter()
            .flat_map(|&i| good_rows[i * d..(i + 1) * d].iter().copied())
            .collect();
        let near = nearest(&index, &source_rows, count)?;
        let median = quantile(&near, 0.5);
        let source_mean = sources.iter().map(|&i| good_targets[i]).sum::<f32>() / count as f32;
        log::info!(
            "feature noise, fold {}: {count} patches moved; their nearest good patch at a \
             median {median:.3}, the teacher's mean target {source_mean:.3}",
            j + 1
        );
        let mut moved = source_rows;
        for row in moved.chunks_mut(d) {
            let r = rng.random_range(0.0..radius) * median;
            let u: Vec<f32> = match directions {
                NoiseDirections::Diagonal => {
                    scales.iter().map(|&s| s * gaussian(&mut rng)).collect()
                }
                NoiseDirections::Isotropic => (0..d).map(|_| gaussian(&mut rng)).collect(),
                NoiseDirections::Covariance => {
                    let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                    good_rows[a * d..(a + 1) * d]
                        .iter()
                        .zip(&good_rows[b * d..(b + 1) * d])
                        .map(|(x, y)| x - y)
                        .collect()
                }
            };
            let norm = u.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                for (x, v) in row.iter_mut().zip(&u) {
                    *x += r * v / norm;
                }
            }
        }
        let moved_near = nearest(&index, &moved, count)?;
        out.targets.extend(
            sources
                .iter()
                .zip(near.iter().zip(&moved_near))
                .map(|(&i, (&p, &q))| good_targets[i] + (q - p).max(0.0)),
        );
        out.rows.extend(moved);
        progress(j + 1, folds.len());
    }
    Ok(out)
}

/// The nearest bank row's distance of each of the `nq` queries.
fn nearest(index: &BruteForce, queries: &[f32], nq: usize) -> Result<Vec<f32>, RegressError> {
    Ok(index
        .search(queries, nq, 1)
        .map_err(|e| RegressError::Data(e.to_string()))?
        .distances)
}

/// Standard deviation of every column of the `n x d` rows (f64 sums, row order).
fn column_std(rows: &[f32], d: usize) -> Vec<f32> {
    let n = (rows.len() / d.max(1)).max(1) as f64;
    let mut sum = vec![0.0f64; d];
    let mut squares = vec![0.0f64; d];
    for row in rows.chunks_exact(d) {
        for ((s, q), &v) in sum.iter_mut().zip(&mut squares).zip(row) {
            *s += f64::from(v);
            *q += f64::from(v) * f64::from(v);
        }
    }
    sum.iter()
        .zip(&squares)
        .map(|(s, q)| {
            let m = s / n;
            ((q / n - m * m).max(0.0)).sqrt() as f32
        })
        .collect()
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut Xoshiro256PlusPlus) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `feature_anomalies` on rows of width 2 in images of 4 rows, without progress.
    fn moves(
        rows: &[f32],
        targets: &[f32],
        folds: &[FoldRows],
        fraction: f32,
        radius: f32,
        directions: NoiseDirections,
        seed: u64,
    ) -> Result<Moved, RegressError> {
        feature_anomalies(
            rows,
            targets,
            folds,
            2,
            4,
            fraction,
            radius,
            directions,
            seed,
            &mut |_, _| {},
        )
    }

    /// Two folds of one split on a line: fold 0 at x = 0, 1, ..., fold 1 at x = 0.5, 1.5, ...
    fn two_folds() -> (Vec<f32>, Vec<f32>, Vec<FoldRows>) {
        let mut rows = Vec::new();
        for i in 0..8 {
            rows.extend([i as f32, 0.0]);
        }
        for i in 0..8 {
            rows.extend([i as f32 + 0.5, 0.0]);
        }
        let targets = vec![0.5; 16];
        let folds = vec![
            FoldRows {
                split: 0,
                start: 0,
                len: 8,
            },
            FoldRows {
                split: 0,
                start: 8,
                len: 8,
            },
        ];
        (rows, targets, folds)
    }

    #[test]
    fn moved_rows_score_at_least_their_source_and_grow_with_the_distance() {
        let (rows, targets, folds) = two_folds();
        let moved = moves(
            &rows,
            &targets,
            &folds,
            1.0,
            DEFAULT_NOISE_RADIUS,
            NoiseDirections::Diagonal,
            7,
        )
        .unwrap();
        // One fraction of each fold, in whole images of 4 rows: 8 rows per fold.
        assert_eq!(moved.targets.len(), 16);
        assert_eq!(moved.rows.len(), 32);
        // Every moved row's target is its source's (0.5) plus how much farther it is from the
        // other fold's nearest row than its source was (0.5 for every source here).
        for (j, (row, &t)) in moved.rows.chunks(2).zip(&moved.targets).enumerate() {
            let bank_offset = if j < 8 { 0.5 } else { 0.0 };
            let p = (0..8)
                .map(|i| {
                    let b = i as f32 + bank_offset;
                    ((row[0] - b).powi(2) + row[1].powi(2)).sqrt()
                })
                .fold(f32::INFINITY, f32::min);
            assert!(t >= 0.5, "{t}");
            assert!(
                (t - (0.5 + (p - 0.5).max(0.0))).abs() < 1e-4,
                "row {j}: {row:?} target {t}, distance {p}"
            );
        }
        // The second column has no spread, so the moves are along the first only.
        assert!(moved.rows.chunks(2).all(|r| r[1] == 0.0));
        // Seeded.
        assert_eq!(
            moves(
                &rows,
                &targets,
                &folds,
                1.0,
                DEFAULT_NOISE_RADIUS,
                NoiseDirections::Diagonal,
                7
            )
            .unwrap(),
            moved
        );
        assert_ne!(
            moves(
                &rows,
                &targets,
                &folds,
                1.0,
                DEFAULT_NOISE_RADIUS,
                NoiseDirections::Diagonal,
                8
            )
            .unwrap(),
            moved
        );
    }

    #[test]
    fn the_radius_bounds_every_move() {
        let (rows, targets, folds) = two_folds();
        // The median nearest distance is 0.5 (every source is 0.5 from the other fold), so a
        // radius of 0.1 moves a row by less than 0.05 from its source (fold 0 at the
        // integers, fold 1 at the halves) and adds less than 0.05 to its target.
        let offset = |x: f32, half: f32| ((x - half) - (x - half).round()).abs();
        let near = moves(
            &rows,
            &targets,
            &folds,
            1.0,
            0.1,
            NoiseDirections::Diagonal,
            7,
        )
        .unwrap();
        for (j, (row, &t)) in near.rows.chunks(2).zip(&near.targets).enumerate() {
            let half = if j < 8 { 0.0 } else { 0.5 };
            assert!(offset(row[0], half) < 0.05, "row {j}: {row:?}");
            assert!((0.5..0.55).contains(&t), "row {j}: target {t}");
        }
        // The default radius moves some row farther than that.
        let far = moves(
            &rows,
            &targets,
            &folds,
            1.0,
            DEFAULT_NOISE_RADIUS,
            NoiseDirections::Diagonal,
            7,
        )
        .unwrap();
        assert!(
            far.rows
                .chunks(2)
                .enumerate()
                .any(|(j, row)| offset(row[0], if j < 8 { 0.0 } else { 0.5 }) >= 0.05)
        );
    }

    #[test]
    fn covariance_directions_follow_the_good_patches_correlations() {
        // Both columns equal: the good patches vary along the diagonal only.
        let (line, targets, folds) = two_folds();
        let rows: Vec<f32> = line.chunks(2).flat_map(|r| [r[0], r[0]]).collect();
        let moved_in = |directions| {
            moves(
                &rows,
                &targets,
                &folds,
                1.0,
                DEFAULT_NOISE_RADIUS,
                directions,
                7,
            )
            .unwrap()
        };
        let along = moved_in(NoiseDirections::Covariance);
        assert_eq!(along.targets.len(), 16);
        assert!(along.rows.chunks(2).all(|r| (r[0] - r[1]).abs() < 1e-4));
        assert!(along.targets.iter().all(|&t| t >= 0.5));
        // Some row moved (two equal draws leave their row where it was).
        assert!(
            along
                .rows
                .chunks(2)
                .any(|r| (r[0] - r[0].round()).abs() > 1e-3)
        );
        assert_eq!(moved_in(NoiseDirections::Covariance), along);
        // Diagonal moves ignore the correlation.
        let diagonal = moved_in(NoiseDirections::Diagonal);
        assert!(diagonal.rows.chunks(2).any(|r| (r[0] - r[1]).abs() > 1e-3));
        // Isotropic moves ignore the spreads: in `two_folds` the second column has none, and
        // only isotropic moves leave it.
        let (line, _, _) = two_folds();
        let iso = moves(
            &line,
            &targets,
            &folds,
            1.0,
            DEFAULT_NOISE_RADIUS,
            NoiseDirections::Isotropic,
            7,
        )
        .unwrap();
        assert!(iso.rows.chunks(2).any(|r| r[1].abs() > 1e-3));
        assert!(iso.targets.iter().all(|&t| t >= 0.5));
        assert_eq!("covariance".parse(), Ok(NoiseDirections::Covariance));
        assert_eq!("isotropic".parse(), Ok(NoiseDirections::Isotropic));
        assert_eq!(NoiseDirections::Diagonal.to_string(), "diagonal");
    }

    #[test]
    fn no_fraction_no_rows_and_a_fold_without_a_bank_is_skipped() {
        let (rows, targets, folds) = two_folds();
        let none = moves(
            &rows,
            &targets,
            &folds,
            0.0,
            DEFAULT_NOISE_RADIUS,
            NoiseDirections::Diagonal,
            7,
        )
        .unwrap();
        assert!(none.rows.is_empty() && none.targets.is_empty());
        // Folds of different splits are not each other's bank.
        let apart = [
            folds[0],
            FoldRows {
                split: 1,
                ..folds[1]
            },
        ];
        let moved = moves(
            &rows,
            &targets,
            &apart,
            1.0,
            DEFAULT_NOISE_RADIUS,
            NoiseDirections::Diagonal,
            7,
        )
        .unwrap();
        assert!(moved.rows.is_empty());
        // A small fraction still moves one image's worth of rows per fold.
        let one = moves(
            &rows,
            &targets,
            &folds,
            0.01,
            DEFAULT_NOISE_RADIUS,
            NoiseDirections::Diagonal,
            7,
        )
        .unwrap();
        assert_eq!(one.targets.len(), 8);
        assert!(
            moves(
                &rows[..30],
                &targets,
                &folds,
                1.0,
                DEFAULT_NOISE_RADIUS,
                NoiseDirections::Diagonal,
                7
            )
            .is_err()
        );
    }
}
