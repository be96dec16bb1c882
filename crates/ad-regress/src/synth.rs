//! Synthetic anomalies made from good images, so that a head trained without real defects
//! still sees what a defect looks like to its teacher.
//!
//! CutPaste (Li et al., CVPR 2021): a rectangle cut from a good image (of area 2-15 % of the
//! image, aspect ratio 0.3-3.3, log-uniform), its colour jittered, pasted elsewhere; and the
//! "scar" variant, a thin strip (2-16 px wide, 10-25 % of the side long, horizontal or
//! vertical). A harder kind, [`thin_curve`]: a thin, low-contrast curve drawn on the image
//! itself (a scratch, crack or vein: no foreign texture, no sharp rectangle edge). Images are
//! the normalised planar `[3, h, w]` values of an [`ImageBatch`](ad_core::ImageBatch); the mask
//! says which pixels changed.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// A rectangle `(y, x, height, width)`.
type Rect = (usize, usize, usize, usize);

fn patch_rect(rng: &mut Xoshiro256PlusPlus, (h, w): (usize, usize)) -> Rect {
    let area = rng.random_range(0.02f64..0.15) * (h * w) as f64;
    let aspect = (rng.random_range(0.3f64.ln()..3.3f64.ln())).exp();
    let ph = ((area * aspect).sqrt().round() as usize).clamp(1, h);
    let pw = ((area / aspect).sqrt().round() as usize).clamp(1, w);
    (0, 0, ph, pw)
}

fn scar_rect(rng: &mut Xoshiro256PlusPlus, (h, w): (usize, usize)) -> Rect {
    let thick = rng.random_range(2..=16usize);
    let fraction = rng.random_range(0.10f64..0.25);
    let long = |side: usize| ((side as f64 * fraction) as usize).clamp(2, side);
    if rng.random_bool(0.5) {
        (0, 0, thick.min(h), long(w))
    } else {
        (0, 0, long(h), thick.min(w))
    }
}

/// Pastes a jittered rectangle of `source` into `target` (both planar `[3, h, w]`), at a
/// position different from where it was cut; returns the changed-pixel mask `[h * w]`.
///
/// `seed` fixes the shape, positions and jitter.
pub fn cut_paste(target: &mut [f32], source: &[f32], size: (usize, usize), seed: u64) -> Vec<bool> {
    let (h, w) = size;
    let plane = h * w;
    let mut mask = vec![false; plane];
    if target.len() != 3 * plane || source.len() != 3 * plane || h < 2 || w < 2 {
        return mask;
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let scar = rng.random_bool(0.5);
    let (_, _, ph, pw) = if scar {
        scar_rect(&mut rng, size)
    } else {
        patch_rect(&mut rng, size)
    };
    let (sy, sx) = (rng.random_range(0..=h - ph), rng.random_range(0..=w - pw));
    let (ty, tx) = (rng.random_range(0..=h - ph), rng.random_range(0..=w - pw));
    // Colour jitter in normalised units (about +-0.1 .. 0.4 of the [0, 1] range / std 0.225).
    let jitter: [f32; 3] = std::array::from_fn(|_| rng.random_range(-1.5f32..1.5));
    let contrast = rng.random_range(0.6f32..1.4);
    for c in 0..3 {
        let (src, dst) = (&source[c * plane..], c * plane);
        for y in 0..ph {
            for x in 0..pw {
                let v = src[(sy + y) * w + sx + x] * contrast + jitter[c];
                let t = dst + (ty + y) * w + tx + x;
                if target[t] != v {
                    target[t] = v;
                    mask[(ty + y) * w + tx + x] = true;
                }
            }
        }
    }
    mask
}

/// Draws a thin curve on `target` (planar `[3, h, w]`, normalised values): a quadratic Bezier
/// 20-60 % of the shorter side long between a random point and one in a random direction,
/// bent by up to 30 % of its length, half-width 0.5-2 px per 256 px of side with a soft edge,
/// every channel darkened (70 %) or lightened by 0.3-0.8 normalised units (about 7-18 % of the
/// [0, 1] range) where it covers the pixel. Returns the mask of pixels covered at least half
/// `[h * w]`. `seed` fixes everything.
pub fn thin_curve(target: &mut [f32], size: (usize, usize), seed: u64) -> Vec<bool> {
    let (h, w) = size;
    let plane = h * w;
    if target.len() != 3 * plane || h < 4 || w < 4 {
        return vec![false; plane];
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let side = h.min(w) as f64;
    let len = side * rng.random_range(0.2f64..0.6);
    let curve = random_bezier(&mut rng, size, len, 0.3);
    let radius = rng.random_range(0.5f64..2.0) * (side / 256.0).max(0.5);
    let delta = rng.random_range(0.3f32..0.8) * if rng.random_bool(0.7) { -1.0 } else { 1.0 };
    let mut cover = vec![0.0f32; plane];
    let steps = (4.0 * len).ceil().max(8.0) as usize;
    stroke(&mut cover, size, curve, (radius, 1.0), steps);
    blend(target, &cover, |_| [delta; 3])
}

/// The control points `(y, x)` of a quadratic Bezier whose chord is `len` px long from a
/// random point of the image in a random direction (its end clamped to the image), its middle
/// point moved off the chord by up to `max_bend` times `len`. Draws from `rng` in that order.
fn random_bezier(
    rng: &mut Xoshiro256PlusPlus,
    (h, w): (usize, usize),
    len: f64,
    max_bend: f64,
) -> [(f64, f64); 3] {
    let (hm, wm) = (h as f64 - 1.0, w as f64 - 1.0);
    let p0 = (rng.random_range(0.0..hm), rng.random_range(0.0..wm));
    let angle = rng.random_range(0.0..std::f64::consts::TAU);
    let p2 = (
        (p0.0 + len * angle.sin()).clamp(0.0, hm),
        (p0.1 + len * angle.cos()).clamp(0.0, wm),
    );
    let bend = len * rng.random_range(-max_bend..max_bend);
    let p1 = (
        (p0.0 + p2.0) / 2.0 + bend * angle.cos(),
        (p0.1 + p2.1) / 2.0 - bend * angle.sin(),
    );
    [p0, p1, p2]
}

/// Marks on `cover` (`[h * w]`, 0-1, the largest weight kept) the quadratic Bezier through
/// `points` (control points `(y, x)` in pixels), sampled at `steps + 1` points, with
/// half-width `radius` and a linear soft edge `soft` px wide centred on it: weight
/// `clamp((radius + soft / 2 - distance) / soft, 0, 1)`.
fn stroke(
    cover: &mut [f32],
    (h, w): (usize, usize),
    [p0, p1, p2]: [(f64, f64); 3],
    (radius, soft): (f64, f64),
    steps: usize,
) {
    let reach = (radius + soft / 2.0).ceil() as isize + 1;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * (1.0 - t) * t, t * t);
        let (cy, cx) = (
            a * p0.0 + b * p1.0 + c * p2.0,
            a * p0.1 + b * p1.1 + c * p2.1,
        );
        for dy in -reach..=reach {
            for dx in -reach..=reach {
                let (y, x) = (cy.round() as isize + dy, cx.round() as isize + dx);
                if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                    continue;
                }
                let dist = ((y as f64 - cy).powi(2) + (x as f64 - cx).powi(2)).sqrt();
                let weight = ((radius + soft / 2.0 - dist) / soft).clamp(0.0, 1.0) as f32;
                let i = y as usize * w + x as usize;
                cover[i] = cover[i].max(weight);
            }
        }
    }
}

/// Draws a vein on `target` (planar `[3, h, w]`, normalised values): a defect at the scale of
/// the part rather than of a patch (a vein, fold or long streak). A quadratic Bezier from one
/// edge of the image to another (at least half the shorter side long, bent by up to 30 % of
/// its length), half-width 1.5-5 px per 256 px of side with a soft edge as wide as the
/// half-width, and with probability 1/2 a branch from a point of it (20-50 % of the side long,
/// half as wide); every channel darkened (80 %) or lightened by 0.3-0.8 normalised units, as
/// [`thin_curve`]. Locally such a band can look like the texture's own mottling; its length
/// is what a patch-sized view misses. Returns the mask of pixels covered at least half
/// `[h * w]`. `seed` fixes everything.
pub fn vein(target: &mut [f32], size: (usize, usize), seed: u64) -> Vec<bool> {
    veins(target, size, seed, 0.3..0.8)
}

/// [`vein`] at half the contrast: the band changes every channel by 0.15-0.4 normalised units
/// (about 3-9 % of the [0, 1] range), as [`faint_spot`] is [`spot`] at half the contrast. A
/// real vein's contrast fades into the texture's own mottling; locally such a band is hardly
/// there, and only its length sets it apart. The same geometry as [`vein`] for the same seed.
/// Returns the mask of pixels covered at least half `[h * w]`. `seed` fixes everything.
pub fn faint_vein(target: &mut [f32], size: (usize, usize), seed: u64) -> Vec<bool> {
    veins(target, size, seed, 0.15..0.4)
}

/// The band of [`vein`] with its change drawn from `contrast` (normalised units).
fn veins(
    target: &mut [f32],
    size: (usize, usize),
    seed: u64,
    contrast: std::ops::Range<f32>,
) -> Vec<bool> {
    let (h, w) = size;
    let plane = h * w;
    if target.len() != 3 * plane || h < 8 || w < 8 {
        return vec![false; plane];
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let side = h.min(w) as f64;
    let (hm, wm) = (h as f64 - 1.0, w as f64 - 1.0);
    let on_edge = |rng: &mut Xoshiro256PlusPlus, edge: usize| match edge {
        0 => (0.0, rng.random_range(0.0..wm)),
        1 => (hm, rng.random_range(0.0..wm)),
        2 => (rng.random_range(0.0..hm), 0.0),
        _ => (rng.random_range(0.0..hm), wm),
    };
    // Two points on different edges, at least half the shorter side apart (16 tries).
    let (mut p0, mut p2) = ((0.0, 0.0), (hm, wm));
    for _ in 0..16 {
        let e0 = rng.random_range(0..4usize);
        let e2 = (e0 + rng.random_range(1..4usize)) % 4;
        (p0, p2) = (on_edge(&mut rng, e0), on_edge(&mut rng, e2));
        if ((p2.0 - p0.0).powi(2) + (p2.1 - p0.1).powi(2)).sqrt() >= side / 2.0 {
            break;
        }
    }
    let len = ((p2.0 - p0.0).powi(2) + (p2.1 - p0.1).powi(2)).sqrt();
    let (ny, nx) = ((p2.1 - p0.1) / len.max(1.0), -(p2.0 - p0.0) / len.max(1.0));
    let bend = len * rng.random_range(-0.3f64..0.3);
    let p1 = (
        (p0.0 + p2.0) / 2.0 + bend * ny,
        (p0.1 + p2.1) / 2.0 + bend * nx,
    );
    let radius = rng.random_range(1.5f64..5.0) * (side / 256.0).max(0.25);
    let mut cover = vec![0.0f32; plane];
    // The curve is at most 1.3x its chord long (bend <= 30 %): 4 samples per pixel of it.
    let steps = |len: f64| (5.2 * len).ceil().max(8.0) as usize;
    stroke(&mut cover, size, [p0, p1, p2], (radius, radius), steps(len));
    if rng.random_bool(0.5) {
        let t = rng.random_range(0.2f64..0.8);
        let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * (1.0 - t) * t, t * t);
        let q0 = (
            a * p0.0 + b * p1.0 + c * p2.0,
            a * p0.1 + b * p1.1 + c * p2.1,
        );
        let blen = side * rng.random_range(0.2f64..0.5);
        let angle = rng.random_range(0.0..std::f64::consts::TAU);
        let q2 = (
            (q0.0 + blen * angle.sin()).clamp(0.0, hm),
            (q0.1 + blen * angle.cos()).clamp(0.0, wm),
        );
        let q1 = ((q0.0 + q2.0) / 2.0, (q0.1 + q2.1) / 2.0);
        stroke(
            &mut cover,
            size,
            [q0, q1, q2],
            (radius / 2.0, radius / 2.0),
            steps(blen),
        );
    }
    let delta = rng.random_range(contrast) * if rng.random_bool(0.8) { -1.0 } else { 1.0 };
    blend(target, &cover, |_| [delta; 3])
}

/// Draws one to three fibres on `target` (planar `[3, h, w]`, normalised values): short
/// strands (a hair, a fibre, a short scratch), each a quadratic Bezier 4-15 % of the shorter
/// side long, bent by up to 40 % of its length, half-width 0.4-1.2 px per 128 px of side with
/// a one-pixel soft edge; every channel darkened (80 %) or lightened by 0.5-1.5 normalised
/// units, the contrast of [`spot`], the same change for every strand. Shorter and darker than
/// a [`thin_curve`]: an impurity rather than a crack. Returns the mask of pixels covered at
/// least half `[h * w]`. `seed` fixes everything.
pub fn fibre(target: &mut [f32], size: (usize, usize), seed: u64) -> Vec<bool> {
    let (h, w) = size;
    let plane = h * w;
    if target.len() != 3 * plane || h < 8 || w < 8 {
        return vec![false; plane];
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let side = h.min(w) as f64;
    let scale = (side / 128.0).max(0.5);
    let mut cover = vec![0.0f32; plane];
    for _ in 0..rng.random_range(1..=3usize) {
        let len = side * rng.random_range(0.04f64..0.15);
        let curve = random_bezier(&mut rng, size, len, 0.4);
        let radius = rng.random_range(0.4f64..1.2) * scale;
        // The curve is at most 1.4x its chord long (bend <= 40 %): 4 samples per pixel of it.
        let steps = (5.6 * len).ceil().max(8.0) as usize;
        stroke(&mut cover, size, curve, (radius, 1.0), steps);
    }
    let delta = rng.random_range(0.5f32..1.5) * if rng.random_bool(0.8) { -1.0 } else { 1.0 };
    blend(target, &cover, |_| [delta; 3])
}

/// Draws 1-3 small spots on `target` (planar `[3, h, w]`, normalised values): soft-edged
/// ellipses of radius 0.75-3 px per 128 px of side (aspect 0.6-1.7), every channel darkened
/// (70 %) or lightened by 0.5-1.5 normalised units with a slight tint (each channel within
/// +-25 % of the common change): dirt, impurities, pits. Returns the mask of pixels covered at
/// least half `[h * w]`. `seed` fixes everything.
pub fn spot(target: &mut [f32], size: (usize, usize), seed: u64) -> Vec<bool> {
    spots(target, size, seed, 0.5..1.5)
}

/// [`spot`] at half the contrast: the spots change every channel by 0.25-0.75 normalised
/// units (about 6-17 % of the [0, 1] range), as dark as a textured surface's own darkest
/// specks at the faint end. Mild defects score just above the good parts; these copies put
/// training targets between the good parts' and the plain spots'. Returns the mask of pixels
/// covered at least half `[h * w]`. `seed` fixes everything.
pub fn faint_spot(target: &mut [f32], size: (usize, usize), seed: u64) -> Vec<bool> {
    spots(target, size, seed, 0.25..0.75)
}

/// The spots of [`spot`] with the common change of every spot drawn from `contrast`
/// (normalised units).
fn spots(
    target: &mut [f32],
    size: (usize, usize),
    seed: u64,
    contrast: std::ops::Range<f32>,
) -> Vec<bool> {
    let (h, w) = size;
    let plane = h * w;
    if target.len() != 3 * plane || h < 4 || w < 4 {
        return vec![false; plane];
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let scale = (h.min(w) as f64 / 128.0).max(0.5);
    let mut cover = vec![0.0f32; plane];
    let mut deltas = vec![[0.0f32; 3]; plane];
    for _ in 0..rng.random_range(1..=3usize) {
        let radius = rng.random_range(0.75f64..3.0) * scale;
        let aspect = rng.random_range(0.6f64.ln()..1.7f64.ln()).exp();
        let (ry, rx) = (radius * aspect.sqrt(), radius / aspect.sqrt());
        let (cy, cx) = (
            rng.random_range(0.0..h as f64 - 1.0),
            rng.random_range(0.0..w as f64 - 1.0),
        );
        let sign = if rng.random_bool(0.7) { -1.0 } else { 1.0 };
        let base = rng.random_range(contrast.clone()) * sign;
        let delta: [f32; 3] = std::array::from_fn(|_| base * rng.random_range(0.75f32..1.25));
        let (y0, y1) = ((cy - ry - 1.0).floor().max(0.0), (cy + ry + 1.0).ceil());
        let (x0, x1) = ((cx - rx - 1.0).floor().max(0.0), (cx + rx + 1.0).ceil());
        for y in y0 as usize..=(y1 as usize).min(h - 1) {
            for x in x0 as usize..=(x1 as usize).min(w - 1) {
                // Distance in units of the radius, then a one-pixel soft edge.
                let (dy, dx) = ((y as f64 - cy) / ry, (x as f64 - cx) / rx);
                let r = (dy * dy + dx * dx).sqrt();
                let weight = ((1.0 - r) * ry.min(rx) + 0.5).clamp(0.0, 1.0) as f32;
                let i = y * w + x;
                if weight > cover[i] {
                    cover[i] = weight;
                    deltas[i] = delta;
                }
            }
        }
    }
    blend(target, &cover, |i| deltas[i])
}

/// Adds `delta(pixel)` weighted by the soft coverage `cover` (`[h * w]`, 0-1) to every channel
/// of `target` (planar `[3, h, w]`); returns the mask of pixels covered at least half.
fn blend(target: &mut [f32], cover: &[f32], delta: impl Fn(usize) -> [f32; 3]) -> Vec<bool> {
    let plane = cover.len();
    for (i, &c) in cover.iter().enumerate() {
        if c > 0.0 {
            let d = delta(i);
            for ch in 0..3 {
                target[ch * plane + i] += d[ch] * c;
            }
        }
    }
    cover.iter().map(|&c| c >= 0.5).collect()
}

/// A kind of synthetic anomaly made from a good image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyntheticAnomaly {
    /// [`cut_paste`]: a jittered rectangle or scar from another good image.
    CutPaste,
    /// [`thin_curve`]: a thin, low-contrast curve (scratch, crack, vein).
    ThinCurve,
    /// [`spot`]: one to three small dark or light spots (dirt, impurities).
    Spot,
    /// [`faint_spot`]: the spots at half the contrast (mild impurities).
    FaintSpot,
    /// [`vein`]: a long, soft band from edge to edge (a defect at the scale of the part).
    Vein,
    /// [`faint_vein`]: the band at half the contrast (a vein fading into the texture).
    FaintVein,
    /// [`fibre`]: one to three short, thin, dark or light strands (hairs, fibres).
    Fibre,
}

impl SyntheticAnomaly {
    /// Every kind, in a fixed order.
    pub const ALL: [SyntheticAnomaly; 7] = [
        Self::CutPaste,
        Self::ThinCurve,
        Self::Spot,
        Self::FaintSpot,
        Self::Vein,
        Self::FaintVein,
        Self::Fibre,
    ];

    /// The kinds a student trains on unless told otherwise: one of each but
    /// [`FaintSpot`](Self::FaintSpot), [`Vein`](Self::Vein), [`FaintVein`](Self::FaintVein) and
    /// [`Fibre`](Self::Fibre).
    pub const DEFAULT: [SyntheticAnomaly; 3] = [Self::CutPaste, Self::ThinCurve, Self::Spot];

    /// Applies this anomaly to `target` (`source`: the image cut-paste takes its patch from);
    /// returns the changed-pixel mask `[h * w]`.
    pub fn apply(
        self,
        target: &mut [f32],
        source: &[f32],
        size: (usize, usize),
        seed: u64,
    ) -> Vec<bool> {
        match self {
            Self::CutPaste => cut_paste(target, source, size, seed),
            Self::ThinCurve => thin_curve(target, size, seed),
            Self::Spot => spot(target, size, seed),
            Self::FaintSpot => faint_spot(target, size, seed),
            Self::Vein => vein(target, size, seed),
            Self::FaintVein => faint_vein(target, size, seed),
            Self::Fibre => fibre(target, size, seed),
        }
    }
}

impl std::fmt::Display for SyntheticAnomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CutPaste => "cut-paste",
            Self::ThinCurve => "thin-curve",
            Self::Spot => "spot",
            Self::FaintSpot => "faint-spot",
            Self::Vein => "vein",
            Self::FaintVein => "faint-vein",
            Self::Fibre => "fibre",
        })
    }
}

impl std::str::FromStr for SyntheticAnomaly {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ad_core::parse_name(s, &Self::ALL, "anomaly")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(h: usize, w: usize, v: f32) -> Vec<f32> {
        (0..3 * h * w).map(|i| v + (i % 7) as f32 * 0.1).collect()
    }

    #[test]
    fn changes_exactly_the_masked_pixels_and_is_seeded() {
        let (h, w) = (64, 48);
        let source = image(h, w, 0.0);
        for seed in 0..20 {
            let original = image(h, w, 0.5);
            let mut a = original.clone();
            let m = cut_paste(&mut a, &source, (h, w), seed);
            let changed = m.iter().filter(|&&b| b).count();
            assert!(changed > 0, "seed {seed}");
            assert!(changed < h * w / 4, "seed {seed}: {changed}");
            for p in 0..h * w {
                let diff = (0..3).any(|c| a[c * h * w + p] != original[c * h * w + p]);
                assert_eq!(diff, m[p], "seed {seed} pixel {p}");
            }
            let mut b = original.clone();
            assert_eq!(cut_paste(&mut b, &source, (h, w), seed), m);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn thin_curves_are_thin_seeded_and_change_their_mask() {
        let (h, w) = (256, 256);
        let original = image(h, w, 0.5);
        for seed in 0..20 {
            let mut a = original.clone();
            let m = thin_curve(&mut a, (h, w), seed);
            let marked = m.iter().filter(|&&b| b).count();
            // 20-60 % of 256 px long, 1-4 px wide.
            assert!(marked >= 30, "seed {seed}: {marked} pixels");
            assert!(marked < h * w / 25, "seed {seed}: {marked} pixels");
            for p in 0..h * w {
                if m[p] {
                    let change = (a[p] - original[p]).abs();
                    assert!(change >= 0.15 - 1e-6, "seed {seed} pixel {p}: {change}");
                }
            }
            let mut b = original.clone();
            assert_eq!(thin_curve(&mut b, (h, w), seed), m);
            assert_eq!(a, b);
        }
        let mut t = vec![0.0; 10];
        assert!(!thin_curve(&mut t, (4, 4), 0).iter().any(|&b| b));
    }

    #[test]
    fn veins_cross_the_image_seeded_and_change_their_mask() {
        let (h, w) = (128, 96);
        let original = image(h, w, 0.5);
        for seed in 0..20 {
            let mut a = original.clone();
            let m = vein(&mut a, (h, w), seed);
            let marked: Vec<usize> = (0..h * w).filter(|&p| m[p]).collect();
            // At least half the shorter side long: the marked pixels span that much.
            let (ys, xs): (Vec<usize>, Vec<usize>) = marked.iter().map(|p| (p / w, p % w)).unzip();
            let span = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
            let (dy, dx) = (span(&ys), span(&xs));
            assert!(
                ((dy * dy + dx * dx) as f64).sqrt() >= 0.5 * 96.0 - 2.0,
                "seed {seed}: spans {dy} x {dx}"
            );
            assert!(marked.len() < h * w / 4, "seed {seed}: {}", marked.len());
            for &p in &marked {
                let change = (a[p] - original[p]).abs();
                assert!(change >= 0.15 - 1e-6, "seed {seed} pixel {p}: {change}");
            }
            // Soft edges: some pixels change less than half the band's full contrast.
            let full = (0..h * w)
                .map(|p| (a[p] - original[p]).abs())
                .fold(0.0, f32::max);
            let soft = (0..h * w).filter(|&p| {
                let c = (a[p] - original[p]).abs();
                c > 0.0 && c < 0.5 * full
            });
            assert!(soft.count() > 0, "seed {seed}");
            let mut b = original.clone();
            assert_eq!(vein(&mut b, (h, w), seed), m);
            assert_eq!(a, b);
        }
        assert!(!vein(&mut [0.0; 10], (4, 4), 0).iter().any(|&b| b));
    }

    /// A drawing function of this module: `(planar image, (h, w), seed) -> mask`.
    type Draw = fn(&mut [f32], (usize, usize), u64) -> Vec<bool>;

    /// Small marks made by `draw` on a 256 x 256 image, seeds 0-39: each marks 1 to
    /// `max_marked` pixels, changes every marked pixel by at least `min_change`, is the same
    /// for the same seed, varies in size between seeds, and changes nothing on a wrong size.
    fn check_small_marks(draw: Draw, max_marked: usize, min_change: f32) {
        let (h, w) = (256, 256);
        let original = image(h, w, 0.5);
        let mut sizes = Vec::new();
        for seed in 0..40 {
            let mut a = original.clone();
            let m = draw(&mut a, (h, w), seed);
            let marked = m.iter().filter(|&&b| b).count();
            assert!(marked >= 1, "seed {seed}");
            assert!(marked <= max_marked, "seed {seed}: {marked} pixels");
            for p in 0..h * w {
                if m[p] {
                    let change = (a[p] - original[p]).abs();
                    assert!(change >= min_change - 1e-6, "seed {seed} {p}: {change}");
                }
            }
            let mut b = original.clone();
            assert_eq!(draw(&mut b, (h, w), seed), m);
            assert_eq!(a, b);
            sizes.push(marked);
        }
        // The sizes vary (1-3 marks of varying size).
        assert!(sizes.iter().max() > sizes.iter().min());
        assert!(!draw(&mut [0.0; 10], (4, 4), 0).iter().any(|&b| b));
    }

    #[test]
    fn spots_are_small_seeded_and_change_their_mask() {
        // At most 3 ellipses of radius <= 6 px (aspect <= 1.7) at 256 px.
        check_small_marks(spot, 3 * 260, 0.5 * 0.5 * 0.75);
    }

    #[test]
    fn fibres_are_short_thin_seeded_and_change_their_mask() {
        // 1-3 strands, each at most 15 % x 1.4 of 256 px long and 2 x 2.4 + 1 px wide.
        check_small_marks(fibre, 3 * 54 * 6, 0.5 * 0.5);
    }

    /// The faint kinds are their plain kinds at half the contrast: the same mask and
    /// geometry for a seed, every change halved.
    #[test]
    fn faint_kinds_are_the_plain_kinds_at_half_the_contrast() {
        let (h, w) = (128, 96);
        let original = image(h, w, 0.5);
        for (plain_kind, faint_kind) in [
            (SyntheticAnomaly::Spot, SyntheticAnomaly::FaintSpot),
            (SyntheticAnomaly::Vein, SyntheticAnomaly::FaintVein),
        ] {
            for seed in 0..20 {
                let (mut plain, mut faint) = (original.clone(), original.clone());
                let m = plain_kind.apply(&mut plain, &[], (h, w), seed);
                assert_eq!(
                    faint_kind.apply(&mut faint, &[], (h, w), seed),
                    m,
                    "{faint_kind} seed {seed}"
                );
                for i in 0..3 * h * w {
                    let (full, half) = (plain[i] - original[i], faint[i] - original[i]);
                    assert!(
                        (half - full / 2.0).abs() < 1e-5,
                        "{faint_kind} seed {seed} {i}: {full} {half}"
                    );
                }
                assert_ne!(faint, original, "{faint_kind} seed {seed}");
            }
        }
    }

    #[test]
    fn anomaly_kinds_round_trip_their_names() {
        for k in SyntheticAnomaly::ALL {
            assert_eq!(k.to_string().parse::<SyntheticAnomaly>(), Ok(k));
            let json = serde_json::to_string(&k).unwrap_or_default();
            assert_eq!(json, format!("\"{k}\""));
        }
        assert!("perlin".parse::<SyntheticAnomaly>().is_err());
    }

    #[test]
    fn wrong_sizes_change_nothing() {
        let mut t = vec![0.0; 10];
        assert!(!cut_paste(&mut t, &[0.0; 10], (4, 4), 0).iter().any(|&b| b));
    }
}
