//! Stratified splits: every stratum (a defect type, or "good") is spread evenly over the
//! folds, so each fold sees every kind of defect it can.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::RegressError;

/// One train/test split of a data set, as indices into it (sorted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    /// Indices to train on.
    pub train: Vec<usize>,
    /// Indices to evaluate on.
    pub test: Vec<usize>,
}

/// Indices of each stratum, strata in name order, each shuffled by a generator seeded with
/// `seed` (the same seed gives the same folds).
fn shuffled_strata<S: AsRef<str>>(strata: &[S], seed: u64) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in strata.iter().enumerate() {
        groups.entry(s.as_ref()).or_default().push(i);
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    groups
        .into_values()
        .map(|mut g| {
            g.shuffle(&mut rng);
            g
        })
        .collect()
}

/// [`stratified_k_fold`] with copies kept together: `copy_of[i]` is the index of the first
/// item identical to item `i` (`i` itself for an original, never a later index); the
/// originals are split as [`stratified_k_fold`] splits them, and every copy joins its
/// original's test set, so no item is tested by a model trained on its copy. Without copies
/// the folds are [`stratified_k_fold`]'s.
///
/// Errors when `copy_of` does not match `strata` or names a later item, `k < 2`, or there
/// are fewer originals than folds.
pub fn stratified_group_k_fold<S: AsRef<str>>(
    strata: &[S],
    copy_of: &[usize],
    k: usize,
    seed: u64,
) -> Result<Vec<Fold>, RegressError> {
    if copy_of.len() != strata.len() || copy_of.iter().enumerate().any(|(i, &j)| j > i) {
        return Err(RegressError::Data(format!(
            "copy_of ({} entries) must name, for each of the {} items, itself or an earlier one",
            copy_of.len(),
            strata.len()
        )));
    }
    // An item's original, followed to the first of its group.
    let root = |mut i: usize| {
        while copy_of[i] != i {
            i = copy_of[i];
        }
        i
    };
    let originals: Vec<usize> = (0..strata.len()).filter(|&i| copy_of[i] == i).collect();
    let original_strata: Vec<&str> = originals.iter().map(|&i| strata[i].as_ref()).collect();
    let folds = stratified_k_fold(&original_strata, k, seed)?;
    let mut fold_of = vec![0; strata.len()];
    for (f, fold) in folds.iter().enumerate() {
        for &o in &fold.test {
            fold_of[originals[o]] = f;
        }
    }
    for i in 0..strata.len() {
        fold_of[i] = fold_of[root(i)];
    }
    Ok((0..k)
        .map(|f| {
            let (test, train) = (0..strata.len()).partition(|&i| fold_of[i] == f);
            Fold { train, test }
        })
        .collect())
}

/// Stratified `k`-fold cross-validation: each index is in exactly one test set; every stratum
/// is dealt round-robin over the folds (continuing where the previous stratum stopped, so fold
/// sizes differ by at most one).
///
/// Errors when `k < 2` or there are fewer items than folds.
pub fn stratified_k_fold<S: AsRef<str>>(
    strata: &[S],
    k: usize,
    seed: u64,
) -> Result<Vec<Fold>, RegressError> {
    if k < 2 {
        return Err(RegressError::InvalidConfig {
            name: "folds",
            reason: format!("{k} folds: at least 2 are needed"),
        });
    }
    if strata.len() < k {
        return Err(RegressError::Data(format!(
            "{} items cannot make {k} folds",
            strata.len()
        )));
    }
    let mut test = vec![Vec::new(); k];
    let mut next = 0;
    for group in shuffled_strata(strata, seed) {
        for i in group {
            test[next].push(i);
            next = (next + 1) % k;
        }
    }
    Ok(test
        .into_iter()
        .map(|mut t| {
            t.sort_unstable();
            let mut train: Vec<usize> = (0..strata.len())
                .filter(|i| t.binary_search(i).is_err())
                .collect();
            train.sort_unstable();
            Fold { train, test: t }
        })
        .collect())
}

/// One stratified hold-out split: about `test_fraction` of every stratum goes to the test set
/// (rounded, at least one item of every stratum with two or more).
pub fn stratified_split<S: AsRef<str>>(
    strata: &[S],
    test_fraction: f64,
    seed: u64,
) -> Result<Fold, RegressError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(RegressError::InvalidConfig {
            name: "test_fraction",
            reason: format!("{test_fraction} is not in (0, 1)"),
        });
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for group in shuffled_strata(strata, seed) {
        let n = group.len();
        let mut t = (n as f64 * test_fraction).round() as usize;
        if n >= 2 {
            t = t.clamp(1, n - 1);
        } else {
            t = 0;
        }
        test.extend_from_slice(&group[..t]);
        train.extend_from_slice(&group[t..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok(Fold { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_their_originals_test_fold() {
        let s = strata();
        let distinct: Vec<usize> = (0..s.len()).collect();
        // Without copies: the plain stratified folds.
        assert_eq!(
            stratified_group_k_fold(&s, &distinct, 5, 3).unwrap(),
            stratified_k_fold(&s, 5, 3).unwrap()
        );
        // Item 1 is a copy of 0, 2 of 1 (so of 0), 25 of 21 (two cracks).
        let mut copy_of = distinct.clone();
        copy_of[1] = 0;
        copy_of[2] = 1;
        copy_of[25] = 21;
        let folds = stratified_group_k_fold(&s, &copy_of, 5, 3).unwrap();
        let fold_of = |i: usize| folds.iter().position(|f| f.test.contains(&i)).unwrap();
        assert_eq!(fold_of(1), fold_of(0));
        assert_eq!(fold_of(2), fold_of(0));
        assert_eq!(fold_of(25), fold_of(21));
        for f in &folds {
            // Every item once, train and test disjoint and sorted.
            assert_eq!(f.train.len() + f.test.len(), s.len());
            assert!(f.test.windows(2).all(|w| w[0] < w[1]));
            assert!(f.train.iter().all(|i| !f.test.contains(i)));
        }
        let all: usize = folds.iter().map(|f| f.test.len()).sum();
        assert_eq!(all, s.len());
        // A copy of a later item, or a length mismatch, is refused.
        let mut later = distinct.clone();
        later[0] = 1;
        assert!(stratified_group_k_fold(&s, &later, 5, 3).is_err());
        assert!(stratified_group_k_fold(&s, &distinct[1..], 5, 3).is_err());
    }

    fn strata() -> Vec<String> {
        let mut s = vec!["good".to_string(); 20];
        s.extend(vec!["crack".to_string(); 7]);
        s.extend(vec!["scratch".to_string(); 3]);
        s
    }

    #[test]
    fn k_fold_partitions_and_stratifies() {
        let s = strata();
        let folds = stratified_k_fold(&s, 5, 42).unwrap();
        assert_eq!(folds.len(), 5);
        let mut seen = vec![0; s.len()];
        for f in &folds {
            assert_eq!(f.train.len() + f.test.len(), s.len());
            for &i in &f.test {
                seen[i] += 1;
                assert!(f.train.binary_search(&i).is_err());
            }
            // 20 good over 5 folds: exactly 4 each.
            assert_eq!(f.test.iter().filter(|&&i| s[i] == "good").count(), 4);
            let cracks = f.test.iter().filter(|&&i| s[i] == "crack").count();
            assert!((1..=2).contains(&cracks), "{cracks}");
            assert!((6..=6).contains(&f.test.len()));
        }
        assert!(seen.iter().all(|&c| c == 1));
    }

    #[test]
    fn k_fold_is_seeded() {
        let s = strata();
        assert_eq!(
            stratified_k_fold(&s, 5, 1).unwrap(),
            stratified_k_fold(&s, 5, 1).unwrap()
        );
        assert_ne!(
            stratified_k_fold(&s, 5, 1).unwrap(),
            stratified_k_fold(&s, 5, 2).unwrap()
        );
    }

    #[test]
    fn k_fold_rejects_bad_counts() {
        assert!(stratified_k_fold(&strata(), 1, 0).is_err());
        assert!(stratified_k_fold(&["a", "b"], 3, 0).is_err());
    }

    #[test]
    fn split_keeps_every_stratum_on_both_sides() {
        let s = strata();
        let f = stratified_split(&s, 0.2, 42).unwrap();
        assert_eq!(f.train.len() + f.test.len(), s.len());
        // round(0.2 * 20) = 4, round(0.2 * 7) = 1, round(0.2 * 3) = 1 (clamped up from 0.6 -> 1).
        assert_eq!(f.test.len(), 6);
        for name in ["good", "crack", "scratch"] {
            assert!(f.test.iter().any(|&i| s[i] == name), "{name}");
            assert!(f.train.iter().any(|&i| s[i] == name), "{name}");
        }
        assert!(stratified_split(&s, 1.0, 0).is_err());
    }
}
