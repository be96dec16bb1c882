//! Learning-rate schedules of the trained models: one type for every trainer (the score
//! student's `lr_schedule` today).

use serde::{Deserialize, Serialize};

/// How the learning rate moves over a training run of `total` optimiser steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The base rate at every step.
    #[default]
    Constant,
    /// Cosine annealing from the base rate to zero over the run, without restarts (SGDR,
    /// Loshchilov & Hutter 2017; PyTorch's `CosineAnnealingLR` with `eta_min = 0`): large
    /// steps first, then ever smaller ones, so the last weights are not one noisy step of a
    /// constant rate.
    Cosine,
}

impl LrSchedule {
    /// Every schedule, in the order of the docs.
    pub const ALL: [LrSchedule; 2] = [LrSchedule::Constant, LrSchedule::Cosine];

    /// The rate of step `step` (0-based) of a run of `total` steps with base rate `base`.
    pub fn rate(self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => {
                let t = step.min(total) as f64 / total.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

impl std::fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
        })
    }
}

impl std::str::FromStr for LrSchedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        crate::parse_name(s, &Self::ALL, "learning-rate schedule")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_falls_from_the_base_rate_to_zero() {
        let c = LrSchedule::Cosine;
        assert_eq!(c.rate(1e-3, 0, 100), 1e-3);
        assert!((c.rate(1e-3, 50, 100) - 0.5e-3).abs() < 1e-12);
        assert!(c.rate(1e-3, 99, 100) < 1e-6 && c.rate(1e-3, 99, 100) > 0.0);
        let rates: Vec<f64> = (0..100).map(|s| c.rate(1.0, s, 100)).collect();
        assert!(rates.windows(2).all(|w| w[1] < w[0]));
        assert_eq!(LrSchedule::Constant.rate(1e-3, 99, 100), 1e-3);
    }

    #[test]
    fn names_round_trip() {
        for k in LrSchedule::ALL {
            assert_eq!(k.to_string().parse::<LrSchedule>(), Ok(k));
        }
        assert!("linear".parse::<LrSchedule>().is_err());
    }
}
