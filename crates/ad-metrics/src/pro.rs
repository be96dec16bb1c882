//! Per-region overlap (PRO) curve and AUPRO, following the MVTec AD evaluation protocol
//! (Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021, and its evaluation code).
//!
//! - Ground-truth regions are the 8-connected components of each mask, counted over all images.
//! - At a threshold `t`, the PRO is the mean over all regions of the fraction of the region's
//!   pixels scoring `>= t`; the false-positive rate is the fraction of all background pixels
//!   (of all images, good ones included) scoring `>= t`.
//! - The curve starts at `(0, 0)`, has one point per distinct score (ties merged), ends at
//!   `(1, 1)`, and is integrated with the trapezoid rule up to the FPR limit; when the limit falls
//!   between two points, the PRO at the limit is interpolated linearly and the last partial
//!   trapezoid added. The area is divided by the limit, so a perfect detector scores 1.
//!
//! Differences from the reference script: FPRs are computed in `f64` (the script rounds them
//! to `f32`), which changes the area by less than `1e-6`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::rank::{Label, Ranking, checked_key};

/// The usual FPR limit of AUPRO (MVTec AD reports AU-PRO up to 30 % FPR).
pub const DEFAULT_FPR_LIMIT: f64 = 0.3;

/// Shape of a stack of same-size maps or masks, stored image after image, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapDims {
    /// Number of maps.
    pub count: usize,
    /// Rows per map.
    pub height: usize,
    /// Columns per map.
    pub width: usize,
}

impl MapDims {
    /// `count` maps of `height x width`.
    pub fn new(count: usize, height: usize, width: usize) -> Self {
        Self {
            count,
            height,
            width,
        }
    }

    /// Pixels per map.
    pub fn pixels_per_map(&self) -> usize {
        self.height * self.width
    }

    /// Total number of values, or `None` on overflow.
    pub fn total(&self) -> Option<usize> {
        self.count.checked_mul(self.height)?.checked_mul(self.width)
    }

    /// Checks that `len` values fit these dimensions.
    pub(crate) fn check(&self, what: &'static str, len: usize) -> Result<()> {
        let total = self.total().ok_or(MetricsError::InvalidSize {
            what,
            width: self.width,
            height: self.height,
        })?;
        if total == 0 {
            return Err(MetricsError::Empty { what });
        }
        if len != total {
            return Err(MetricsError::LengthMismatch {
                what,
                expected: total,
                got: len,
            });
        }
        Ok(())
    }
}

/// The PRO curve: `(fpr, pro)` points from `(0, 0)` to `(1, 1)`, lowest FPR first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProCurve {
    /// False-positive rate over all background pixels.
    pub fpr: Vec<f64>,
    /// Mean per-region overlap.
    pub pro: Vec<f64>,
}

impl ProCurve {
    /// Area under the curve up to `fpr_limit`, divided by `fpr_limit`.
    ///
    /// # Errors
    /// [`InvalidFprLimit`](MetricsError::InvalidFprLimit) unless `0 < fpr_limit <= 1`.
    pub fn normalized_area(&self, fpr_limit: f64) -> Result<f64> {
        check_limit(fpr_limit)?;
        let mut acc = LimitedTrapezoid::new(fpr_limit);
        for (&x, &y) in self.fpr.iter().zip(self.pro.iter()).skip(1) {
            if acc.push(x, y) {
                break;
            }
        }
        Ok(acc.area() / fpr_limit)
    }
}

fn check_limit(fpr_limit: f64) -> Result<()> {
    if !(fpr_limit > 0.0 && fpr_limit <= 1.0) {
        return Err(MetricsError::InvalidFprLimit(fpr_limit));
    }
    Ok(())
}

/// Trapezoid rule over a curve streamed point by point from `(0, 0)`, cut at `limit` with the
/// MVTec end-point interpolation.
struct LimitedTrapezoid {
    limit: f64,
    x: f64,
    y: f64,
    sum: f64,
    done: bool,
}

impl LimitedTrapezoid {
    fn new(limit: f64) -> Self {
        Self {
            limit,
            x: 0.0,
            y: 0.0,
            sum: 0.0,
            done: false,
        }
    }

    /// Adds a point; returns `true` once the limit has been passed (later points are ignored).
    fn push(&mut self, x: f64, y: f64) -> bool {
        if self.done {
            return true;
        }
        if x <= self.limit {
            self.sum += 0.5 * (y + self.y) * (x - self.x);
            self.x = x;
            self.y = y;
            return false;
        }
        if self.x != self.limit {
            let y_limit = self.y + (y - self.y) * (self.limit - self.x) / (x - self.x);
            self.sum += 0.5 * (y_limit + self.y) * (self.limit - self.x);
        }
        self.done = true;
        true
    }

    fn area(&self) -> f64 {
        self.sum
    }
}

/// 8-connected components of one `height x width` mask: a label per pixel (0 = background,
/// regions numbered from 1 in raster order of their first pixel) and the number of regions.
/// This is `scipy.ndimage.label(mask, structure=np.ones((3, 3)))`.
pub fn label_components<L: Label>(mask: &[L], height: usize, width: usize) -> (Vec<u32>, usize) {
    let mut labels = vec![0u32; mask.len().min(height * width)];
    let n = label_into(mask, height, width, &mut labels, &mut Vec::new());
    (labels, n)
}

fn label_into<L: Label>(
    mask: &[L],
    height: usize,
    width: usize,
    labels: &mut [u32],
    stack: &mut Vec<usize>,
) -> usize {
    let mut next = 0u32;
    for start in 0..labels.len() {
        if labels[start] != 0 || !mask[start].is_positive() {
            continue;
        }
        next += 1;
        labels[start] = next;
        stack.clear();
        stack.push(start);
        while let Some(p) = stack.pop() {
            let (r, c) = (p / width, p % width);
            let r0 = r.saturating_sub(1);
            let r1 = (r + 1).min(height - 1);
            let c0 = c.saturating_sub(1);
            let c1 = (c + 1).min(width - 1);
            for rr in r0..=r1 {
                for cc in c0..=c1 {
                    let q = rr * width + cc;
                    if labels[q] == 0 && mask[q].is_positive() {
                        labels[q] = next;
                        stack.push(q);
                    }
                }
            }
        }
    }
    next as usize
}

/// Scores split into ground-truth foreground (payload: global region id) and background, both
/// sorted, plus the size of every region.
pub(crate) struct ProRanking {
    /// `pos`: foreground pixels with their region id; `neg`: background pixels.
    pub ranking: Ranking,
    /// Pixel count of each region.
    pub region_sizes: Vec<u32>,
}

impl ProRanking {
    /// Labels every mask, converts the scores once into the two class vectors and sorts them.
    pub fn build<L: Label>(
        what: &'static str,
        maps: &[f32],
        masks: &[L],
        dims: MapDims,
    ) -> Result<Self> {
        dims.check(what, maps.len())?;
        dims.check(what, masks.len())?;
        let hw = dims.pixels_per_map();
        let fg_counts: Vec<usize> = masks
            .par_chunks(hw)
            .map(|m| m.iter().filter(|l| l.is_positive()).count())
            .collect();
        let n_fg: usize = fg_counts.iter().sum();
        let mut pos = vec![0u64; n_fg];
        let mut neg = vec![0u32; maps.len() - n_fg];
        let mut pos_parts = Vec::with_capacity(dims.count);
        let mut neg_parts = Vec::with_capacity(dims.count);
        {
            let (mut prest, mut nrest) = (&mut pos[..], &mut neg[..]);
            for &c in &fg_counts {
                let (p, pr) = prest.split_at_mut(c);
                let (q, nr) = nrest.split_at_mut(hw - c);
                pos_parts.push(p);
                neg_parts.push(q);
                prest = pr;
                nrest = nr;
            }
        }
        let per_image: Vec<Vec<u32>> = maps
            .par_chunks(hw)
            .zip(masks.par_chunks(hw))
            .zip(pos_parts.into_par_iter().zip(neg_parts.into_par_iter()))
            .enumerate()
            .map(|(img, ((s, m), (p, q)))| -> Result<Vec<u32>> {
                let mut labels = vec![0u32; hw];
                let n_regions =
                    label_into(m, dims.height, dims.width, &mut labels, &mut Vec::new());
                let mut sizes = vec![0u32; n_regions];
                let (mut ip, mut iq) = (0, 0);
                for (j, (&x, &l)) in s.iter().zip(labels.iter()).enumerate() {
                    let k = checked_key(what, img * hw + j, x)?;
                    if l != 0 {
                        sizes[l as usize - 1] += 1;
                        p[ip] = ((k as u64) << 32) | (l as u64 - 1);
                        ip += 1;
                    } else {
                        q[iq] = k;
                        iq += 1;
                    }
                }
                Ok(sizes)
            })
            .collect::<Result<_>>()?;
        // Local region ids -> global ids.
        let mut offsets = Vec::with_capacity(dims.count);
        let mut region_sizes = Vec::new();
        for sizes in &per_image {
            offsets.push(region_sizes.len() as u64);
            region_sizes.extend_from_slice(sizes);
        }
        {
            let mut parts = Vec::with_capacity(dims.count);
            let mut rest = &mut pos[..];
            for &c in &fg_counts {
                let (p, r) = rest.split_at_mut(c);
                parts.push(p);
                rest = r;
            }
            parts
                .into_par_iter()
                .zip(offsets.into_par_iter())
                .for_each(|(p, off)| {
                    if off != 0 {
                        p.iter_mut().for_each(|v| *v += off);
                    }
                });
        }
        if region_sizes.is_empty() {
            return Err(MetricsError::NoRegions { pixels: maps.len() });
        }
        if neg.is_empty() {
            return Err(MetricsError::NoBackground { pixels: maps.len() });
        }
        Ok(Self {
            ranking: Ranking::from_unsorted(pos, neg),
            region_sizes,
        })
    }

    /// Walks the PRO curve (without its `(0, 0)` start and `(1, 1)` end), calling `f(fpr, pro)`
    /// until it returns `true`.
    fn walk(&self, mut f: impl FnMut(f64, f64) -> bool) {
        let weights: Vec<f64> = self.region_sizes.iter().map(|&s| 1.0 / s as f64).collect();
        let n_regions = self.region_sizes.len() as f64;
        let n_bg = self.ranking.n_neg() as f64;
        let mut pro_sum = 0.0f64;
        for s in self.ranking.steps() {
            for &v in &self.ranking.pos[s.pos_range.0..s.pos_range.1] {
                pro_sum += weights[(v & 0xffff_ffff) as usize];
            }
            let fpr = (s.fp as f64 / n_bg).min(1.0);
            let pro = (pro_sum / n_regions).min(1.0);
            if f(fpr, pro) {
                return;
            }
        }
    }

    /// The full curve.
    pub fn curve(&self) -> ProCurve {
        let mut fpr = vec![0.0];
        let mut pro = vec![0.0];
        self.walk(|x, y| {
            fpr.push(x);
            pro.push(y);
            false
        });
        fpr.push(1.0);
        pro.push(1.0);
        ProCurve { fpr, pro }
    }

    /// Normalised area up to `fpr_limit` (already validated), stopping at the limit.
    ///
    /// Between two foreground scores only background pixels change, so the curve is
    /// horizontal there and its corners give the same area (and the same interpolated end) as
    /// every point of the full curve.
    pub fn aupro(&self, fpr_limit: f64) -> f64 {
        let weights: Vec<f64> = self.region_sizes.iter().map(|&s| 1.0 / s as f64).collect();
        let n_regions = self.region_sizes.len() as f64;
        let n_bg = self.ranking.n_neg() as f64;
        let mut acc = LimitedTrapezoid::new(fpr_limit);
        let mut pro_sum = 0.0f64;
        for c in self.ranking.corners() {
            let pro_prev = (pro_sum / n_regions).min(1.0);
            if acc.push((c.fp_above as f64 / n_bg).min(1.0), pro_prev) {
                break;
            }
            for &v in &self.ranking.pos[c.pos_range.0..c.pos_range.1] {
                pro_sum += weights[(v & 0xffff_ffff) as usize];
            }
            if acc.push(
                (c.fp as f64 / n_bg).min(1.0),
                (pro_sum / n_regions).min(1.0),
            ) {
                break;
            }
        }
        acc.push(1.0, 1.0);
        acc.area() / fpr_limit
    }
}

/// AUPRO up to `fpr_limit` (normalised by it), MVTec AD protocol.
///
/// `maps` and `masks` hold `dims.count` maps of `dims.height x dims.width`, one after another.
///
/// # Errors
/// [`InvalidFprLimit`](MetricsError::InvalidFprLimit), [`Empty`](MetricsError::Empty),
/// [`LengthMismatch`](MetricsError::LengthMismatch), [`NonFinite`](MetricsError::NonFinite),
/// [`NoRegions`](MetricsError::NoRegions) when every mask is empty (the PRO is undefined) and
/// [`NoBackground`](MetricsError::NoBackground) when no pixel is background.
///
/// ```
/// use ad_metrics::{aupro, MapDims};
/// // one 2x3 map whose defect (left column) scores highest: a perfect detector
/// let map = [0.9, 0.1, 0.2, 0.8, 0.3, 0.1];
/// let mask = [true, false, false, true, false, false];
/// let a = aupro(&map, &mask, MapDims::new(1, 2, 3), 0.3)?;
/// assert!((a - 1.0).abs() < 1e-12);
/// # Ok::<(), ad_metrics::MetricsError>(())
/// ```
pub fn aupro<L: Label>(maps: &[f32], masks: &[L], dims: MapDims, fpr_limit: f64) -> Result<f64> {
    check_limit(fpr_limit)?;
    Ok(ProRanking::build("aupro", maps, masks, dims)?.aupro(fpr_limit))
}

/// The whole PRO curve (for plotting or a custom limit via [`ProCurve::normalized_area`]).
///
/// # Errors
/// As [`aupro`].
pub fn pro_curve<L: Label>(maps: &[f32], masks: &[L], dims: MapDims) -> Result<ProCurve> {
    Ok(ProRanking::build("pro_curve", maps, masks, dims)?.curve())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn components_are_eight_connected() {
        #[rustfmt::skip]
        let m = [
            1u8, 0, 0, 1,
            0, 1, 0, 1,
            0, 0, 0, 0,
            1, 1, 0, 1,
        ];
        let (l, n) = label_components(&m, 4, 4);
        assert_eq!(n, 4);
        assert_eq!(l[0], l[5]); // diagonal neighbours join
        assert_eq!(l[3], l[7]);
        assert_eq!(l[12], l[13]);
        assert_ne!(l[0], l[3]);
        assert_eq!(l[15], 4);
    }

    #[test]
    fn hand_computed_curve() {
        // one image, 1x4: region {0,1}; background {2,3}
        let map = [0.9f32, 0.5, 0.7, 0.1];
        let mask = [true, true, false, false];
        let c = pro_curve(&map, &mask, MapDims::new(1, 1, 4)).unwrap();
        assert_eq!(c.fpr, vec![0.0, 0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(c.pro, vec![0.0, 0.5, 0.5, 1.0, 1.0, 1.0]);
        // up to 0.3: area 0.5*0.3 = 0.15 -> 0.5 normalised
        close(
            aupro(&map, &mask, MapDims::new(1, 1, 4), 0.3).unwrap(),
            0.5,
            1e-12,
        );
        // up to 1: 0.5*0.5 + 1*0.5 = 0.75
        close(
            aupro(&map, &mask, MapDims::new(1, 1, 4), 1.0).unwrap(),
            0.75,
            1e-12,
        );
        close(c.normalized_area(1.0).unwrap(), 0.75, 1e-12);
        // limit on a curve point: no interpolation term
        close(c.normalized_area(0.5).unwrap(), 0.5, 1e-12);
    }

    #[test]
    fn regions_weigh_equally() {
        // two images; a big region half detected and a small one fully detected
        let map = [0.9f32, 0.9, 0.1, 0.1, 0.2, 0.2, 0.95, 0.0];
        let mask = [true, true, true, true, false, false, true, false];
        let c = pro_curve(&map, &mask, MapDims::new(2, 2, 2)).unwrap();
        // thresholds 0.95 (small region done), 0.9 (big half): pro = (1 + 0.5)/2
        assert_eq!(c.pro[1], 0.5);
        assert_eq!(c.pro[2], 0.75);
        assert_eq!(c.fpr[2], 0.0);
    }

    #[test]
    fn errors() {
        let d = MapDims::new(1, 1, 2);
        assert!(matches!(
            aupro(&[0.1, 0.2], &[false, false], d, 0.3),
            Err(MetricsError::NoRegions { .. })
        ));
        assert!(matches!(
            aupro(&[0.1, 0.2], &[true, true], d, 0.3),
            Err(MetricsError::NoBackground { .. })
        ));
        assert!(matches!(
            aupro(&[0.1, 0.2], &[true, false], d, 0.0),
            Err(MetricsError::InvalidFprLimit(_))
        ));
        assert!(matches!(
            aupro(&[0.1, 0.2], &[true, false], d, f64::NAN),
            Err(MetricsError::InvalidFprLimit(_))
        ));
        assert!(matches!(
            aupro(&[0.1], &[true, false], d, 0.3),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            aupro(&[0.1, f32::NAN], &[true, false], d, 0.3),
            Err(MetricsError::NonFinite { index: 1, .. })
        ));
    }
}
