//! Sorting scores once: order-preserving integer keys, an LSD radix sort and the walk over
//! distinct thresholds that every curve in this crate is built from.
//!
//! Every binary curve (ROC, PR, PRO) depends only on how many positives and negatives score at
//! or above each distinct threshold. The scores of the two classes are therefore converted once
//! to `u32` keys whose unsigned order equals the float order (`-0.0` and `0.0` share a key, as
//! they compare equal in scikit-learn), sorted with a radix sort, and walked from the highest
//! key down, merging the two sorted lists.

use rayon::prelude::*;

use crate::error::{MetricsError, Result};

/// A ground-truth label: anything that says "anomalous" (positive) or "normal".
///
/// Implemented for `bool`, for `u8` (non-zero is anomalous, as in MVTec's 0/255 masks) and for
/// `f32` (strictly above 0.5 is anomalous).
pub trait Label: Copy + Send + Sync {
    /// `true` for an anomalous sample or pixel.
    fn is_positive(self) -> bool;
}

impl Label for bool {
    #[inline]
    fn is_positive(self) -> bool {
        self
    }
}

impl Label for u8 {
    #[inline]
    fn is_positive(self) -> bool {
        self != 0
    }
}

impl Label for f32 {
    #[inline]
    fn is_positive(self) -> bool {
        self > 0.5
    }
}

/// Order-preserving key of a finite `f32` (`None` for NaN and infinities).
#[inline]
pub(crate) fn key_of(x: f32) -> Option<u32> {
    if !x.is_finite() {
        return None;
    }
    // -0.0 == 0.0: give both the same key so that they form one tie group.
    let x = if x == 0.0 { 0.0f32 } else { x };
    let b = x.to_bits();
    Some(if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    })
}

/// Inverse of [`key_of`].
#[inline]
pub(crate) fn score_of(k: u32) -> f32 {
    let b = if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    };
    f32::from_bits(b)
}

/// Key of the value at `index`, or the typed error naming it.
#[inline]
pub(crate) fn checked_key(what: &'static str, index: usize, x: f32) -> Result<u32> {
    key_of(x).ok_or(MetricsError::NonFinite {
        what,
        index,
        value: x,
    })
}

/// Stable LSD radix sort of `v` by a 32-bit key, in 11-bit digits; digits on which all keys
/// agree are skipped (scores in a narrow range share their top bits).
pub(crate) fn radix_sort_by_key<T: Copy + Send + Sync>(
    v: &mut Vec<T>,
    key: impl Fn(&T) -> u32 + Sync,
) {
    const BITS: [u32; 3] = [0, 11, 22];
    const SIZE: usize = 1 << 11;
    if v.len() < 2 {
        return;
    }
    if v.len() < 256 {
        v.sort_by_key(|x| key(x));
        return;
    }
    let mut hist = vec![[0usize; SIZE]; 3];
    for x in v.iter() {
        let k = key(x);
        for (d, shift) in BITS.iter().enumerate() {
            hist[d][((k >> shift) as usize) & (SIZE - 1)] += 1;
        }
    }
    let n = v.len();
    let mut scratch: Vec<T> = Vec::with_capacity(n);
    let mut in_v = true;
    for (d, shift) in BITS.iter().enumerate() {
        if hist[d].contains(&n) {
            continue; // every key has the same digit here
        }
        let mut offsets = [0usize; SIZE];
        let mut acc = 0;
        for (o, h) in offsets.iter_mut().zip(hist[d].iter()) {
            *o = acc;
            acc += h;
        }
        if scratch.len() != n {
            scratch.resize(n, v[0]);
        }
        let (src, dst) = if in_v {
            (&v[..], &mut scratch[..])
        } else {
            (&scratch[..], &mut v[..])
        };
        for x in src {
            let b = ((key(x) >> shift) as usize) & (SIZE - 1);
            dst[offsets[b]] = *x;
            offsets[b] += 1;
        }
        in_v = !in_v;
    }
    if !in_v {
        std::mem::swap(v, &mut scratch);
    }
}

/// Scores of one binary problem split by class and sorted ascending by key.
///
/// Positives carry a 32-bit payload in their low half (`key << 32 | payload`; the payload is
/// the ground-truth region for AUPRO, zero otherwise); negatives are bare keys.
#[derive(Debug, Clone)]
pub(crate) struct Ranking {
    /// `key << 32 | payload`, sorted by key.
    pub pos: Vec<u64>,
    /// Keys of the negatives, sorted.
    pub neg: Vec<u32>,
}

/// Chunk length of the parallel passes over flat inputs.
const CHUNK: usize = 1 << 16;

impl Ranking {
    /// Splits and sorts `scores` by `labels`: one pass to count, one parallel pass to convert
    /// and scatter into the two class vectors (the only copy of the data), then a radix sort
    /// of both in parallel.
    pub fn build<L: Label>(what: &'static str, scores: &[f32], labels: &[L]) -> Result<Self> {
        if scores.is_empty() {
            return Err(MetricsError::Empty { what });
        }
        if labels.len() != scores.len() {
            return Err(MetricsError::LengthMismatch {
                what,
                expected: scores.len(),
                got: labels.len(),
            });
        }
        // Per-chunk positive counts give each chunk its write offsets.
        let counts: Vec<usize> = labels
            .par_chunks(CHUNK)
            .map(|c| c.iter().filter(|l| l.is_positive()).count())
            .collect();
        let n_pos: usize = counts.iter().sum();
        let n_neg = scores.len() - n_pos;
        let mut pos = vec![0u64; n_pos];
        let mut neg = vec![0u32; n_neg];
        {
            let mut pos_parts = Vec::with_capacity(counts.len());
            let mut neg_parts = Vec::with_capacity(counts.len());
            let (mut prest, mut nrest) = (&mut pos[..], &mut neg[..]);
            for (ci, &c) in counts.iter().enumerate() {
                let len = CHUNK.min(scores.len() - ci * CHUNK);
                let (p, pr) = prest.split_at_mut(c);
                let (q, nr) = nrest.split_at_mut(len - c);
                pos_parts.push(p);
                neg_parts.push(q);
                prest = pr;
                nrest = nr;
            }
            scores
                .par_chunks(CHUNK)
                .zip(labels.par_chunks(CHUNK))
                .zip(pos_parts.into_par_iter().zip(neg_parts.into_par_iter()))
                .enumerate()
                .try_for_each(|(ci, ((s, l), (p, q)))| -> Result<()> {
                    let (mut ip, mut iq) = (0, 0);
                    for (j, (&x, &y)) in s.iter().zip(l.iter()).enumerate() {
                        let k = checked_key(what, ci * CHUNK + j, x)?;
                        if y.is_positive() {
                            p[ip] = (k as u64) << 32;
                            ip += 1;
                        } else {
                            q[iq] = k;
                            iq += 1;
                        }
                    }
                    Ok(())
                })?;
        }
        Ok(Self::from_unsorted(pos, neg))
    }

    /// Sorts both class vectors (in parallel) and wraps them.
    pub fn from_unsorted(mut pos: Vec<u64>, mut neg: Vec<u32>) -> Self {
        rayon::join(
            || radix_sort_by_key(&mut pos, |&x| (x >> 32) as u32),
            || radix_sort_by_key(&mut neg, |&x| x),
        );
        Self { pos, neg }
    }

    /// Number of positives.
    pub fn n_pos(&self) -> usize {
        self.pos.len()
    }

    /// Number of negatives.
    pub fn n_neg(&self) -> usize {
        self.neg.len()
    }

    /// Fails with [`MetricsError::SingleClass`] unless both classes are present.
    pub fn require_both(&self, what: &'static str) -> Result<()> {
        if self.pos.is_empty() || self.neg.is_empty() {
            return Err(MetricsError::SingleClass {
                what,
                positives: self.n_pos(),
                negatives: self.n_neg(),
            });
        }
        Ok(())
    }

    /// Walks the distinct thresholds from the highest down.
    pub fn steps(&self) -> Steps<'_> {
        Steps {
            pos: &self.pos,
            neg: &self.neg,
            tp: 0,
            fp: 0,
        }
    }
}

/// One distinct threshold: counts of positives and negatives scoring at or above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    /// Key of the threshold (see [`score_of`]).
    pub key: u32,
    /// Positives with score `>=` threshold.
    pub tp: u64,
    /// Negatives with score `>=` threshold.
    pub fp: u64,
    /// Index range in `Ranking::pos` of the positives whose score equals the threshold.
    pub pos_range: (usize, usize),
}

/// Iterator over [`Step`]s, highest threshold first.
pub(crate) struct Steps<'a> {
    pos: &'a [u64],
    neg: &'a [u32],
    tp: u64,
    fp: u64,
}

impl Iterator for Steps<'_> {
    type Item = Step;

    #[inline]
    fn next(&mut self) -> Option<Step> {
        let kp = self.pos.last().map(|&x| (x >> 32) as u32);
        let kn = self.neg.last().copied();
        let key = match (kp, kn) {
            (None, None) => return None,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (Some(a), Some(b)) => a.max(b),
        };
        let end = self.pos.len();
        let mut i = end;
        while i > 0 && (self.pos[i - 1] >> 32) as u32 == key {
            i -= 1;
        }
        let mut j = self.neg.len();
        while j > 0 && self.neg[j - 1] == key {
            j -= 1;
        }
        self.tp += (end - i) as u64;
        self.fp += (self.neg.len() - j) as u64;
        self.pos = &self.pos[..i];
        self.neg = &self.neg[..j];
        Some(Step {
            key,
            tp: self.tp,
            fp: self.fp,
            pos_range: (i, end),
        })
    }
}

/// One distinct score of the positives, with the negatives around it: the corners of the ROC
/// and PRO curves. Between two corners only negatives change, so the curves are straight
/// (horizontal) there and every area, F1 and AP value can be read from the corners alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Corner {
    /// Key of the positives' score.
    pub key: u32,
    /// Positives with score `>= key` (after this corner).
    pub tp: u64,
    /// Positives at exactly `key`.
    pub tp_here: u64,
    /// Negatives with score `> key`.
    pub fp_above: u64,
    /// Negatives with score `>= key`.
    pub fp: u64,
    /// Index range in `Ranking::pos` of the positives at `key`.
    pub pos_range: (usize, usize),
}

/// Iterator over [`Corner`]s, highest key first. The scan over the negatives is a tight,
/// well-predicted loop, so this is several times faster than [`Steps`] on millions of pixels.
pub(crate) struct Corners<'a> {
    pos: &'a [u64],
    neg: &'a [u32],
    i: usize,
    j: usize,
    tp: u64,
}

impl Ranking {
    /// Walks the distinct scores of the positives from the highest down.
    pub fn corners(&self) -> Corners<'_> {
        Corners {
            pos: &self.pos,
            neg: &self.neg,
            i: self.pos.len(),
            j: self.neg.len(),
            tp: 0,
        }
    }
}

impl Iterator for Corners<'_> {
    type Item = Corner;

    #[inline]
    fn next(&mut self) -> Option<Corner> {
        if self.i == 0 {
            return None;
        }
        let end = self.i;
        let key = (self.pos[end - 1] >> 32) as u32;
        let mut i = end - 1;
        while i > 0 && (self.pos[i - 1] >> 32) as u32 == key {
            i -= 1;
        }
        // negatives above `key`: neg[j..] after this loop
        let mut j = self.j;
        while j > 0 && self.neg[j - 1] > key {
            j -= 1;
        }
        let fp_above = (self.neg.len() - j) as u64;
        while j > 0 && self.neg[j - 1] == key {
            j -= 1;
        }
        let fp = (self.neg.len() - j) as u64;
        self.j = j;
        self.i = i;
        let tp_here = (end - i) as u64;
        self.tp += tp_here;
        Some(Corner {
            key,
            tp: self.tp,
            tp_here,
            fp_above,
            fp,
            pos_range: (i, end),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order_and_roundtrip() {
        let xs = [
            -1e30f32, -2.5, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 1.0, 3.0e38,
        ];
        for w in xs.windows(2) {
            let (a, b) = (key_of(w[0]).unwrap(), key_of(w[1]).unwrap());
            if w[0] == w[1] {
                assert_eq!(a, b);
            } else {
                assert!(a < b, "{} < {}", w[0], w[1]);
            }
        }
        for &x in &xs {
            assert_eq!(score_of(key_of(x).unwrap()), if x == 0.0 { 0.0 } else { x });
        }
        assert!(key_of(f32::NAN).is_none());
        assert!(key_of(f32::INFINITY).is_none());
    }

    #[test]
    fn radix_sort_matches_std_sort() {
        let mut state = 12345u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for &n in &[0usize, 1, 10, 300, 5000] {
            let mut v: Vec<u64> = (0..n).map(|_| next()).collect();
            let mut expect = v.clone();
            radix_sort_by_key(&mut v, |&x| (x >> 32) as u32);
            expect.sort_by_key(|&x| x >> 32);
            // stable sorts by the same key give the same sequence
            assert_eq!(v, expect);
            let mut w: Vec<u32> = (0..n).map(|_| (next() % 1000) as u32 + 7_000_000).collect();
            let mut e2 = w.clone();
            radix_sort_by_key(&mut w, |&x| x);
            e2.sort();
            assert_eq!(w, e2);
        }
    }

    #[test]
    fn steps_group_ties() {
        let scores = [0.1f32, 0.4, 0.35, 0.8, 0.4, 0.4];
        let labels = [false, false, true, true, true, false];
        let r = Ranking::build("t", &scores, &labels).unwrap();
        let s: Vec<(f32, u64, u64)> = r.steps().map(|s| (score_of(s.key), s.tp, s.fp)).collect();
        assert_eq!(s, vec![(0.8, 1, 0), (0.4, 2, 2), (0.35, 3, 2), (0.1, 3, 3)]);
    }

    #[test]
    fn corners_summarise_steps() {
        let scores = [0.1f32, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.05];
        let labels = [false, false, true, true, true, false, false, true];
        let r = Ranking::build("t", &scores, &labels).unwrap();
        let c: Vec<(f32, u64, u64, u64)> = r
            .corners()
            .map(|c| (score_of(c.key), c.tp, c.fp_above, c.fp))
            .collect();
        assert_eq!(
            c,
            vec![
                (0.8, 1, 1, 1),
                (0.4, 2, 1, 3),
                (0.35, 3, 3, 3),
                (0.05, 4, 4, 4)
            ]
        );
    }

    #[test]
    fn build_errors() {
        assert!(matches!(
            Ranking::build::<bool>("t", &[], &[]),
            Err(MetricsError::Empty { .. })
        ));
        assert!(matches!(
            Ranking::build("t", &[1.0], &[true, false]),
            Err(MetricsError::LengthMismatch {
                expected: 1,
                got: 2,
                ..
            })
        ));
        assert!(matches!(
            Ranking::build("t", &[1.0, f32::NAN], &[true, false]),
            Err(MetricsError::NonFinite { index: 1, .. })
        ));
    }
}
