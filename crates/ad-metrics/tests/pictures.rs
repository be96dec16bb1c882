//! Renders an overlay and ROC/PR plots of a small generated dataset and checks what a person
//! would look for: sizes, the colormap's full range, contours on mask borders, legends drawn.
//!
//! Set `AD_METRICS_PICTURES_DIR=/some/dir` to keep the PNGs for looking at them.

use std::path::PathBuf;

use ad_metrics::plot::{DEFAULT_SIZE, save_pr, save_roc};
use ad_metrics::viz::{
    Colormap, MapScale, OverlayInput, OverlayStyle, contour, overlay, predicted_mask, save_overlay,
};
use ad_metrics::{EvalOptions, MapDims, PixelMaps, evaluate};

const W: usize = 96;
const H: usize = 64;

/// A textured "product" with one elliptic defect, its mask and a plausible anomaly map.
fn sample(seed: u64, defect: bool) -> (Vec<u8>, Vec<f32>, Vec<bool>) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let (cy, cx) = (20.0 + 20.0 * rnd(), 25.0 + 40.0 * rnd());
    let mut img = Vec::with_capacity(3 * W * H);
    let mut map = Vec::with_capacity(W * H);
    let mut mask = Vec::with_capacity(W * H);
    for r in 0..H {
        for c in 0..W {
            let d = ((r as f32 - cy) / 7.0).powi(2) + ((c as f32 - cx) / 11.0).powi(2);
            let m = defect && d <= 1.0;
            let tex =
                110.0 + 40.0 * ((r as f32 * 0.4).sin() * (c as f32 * 0.3).cos()) + 20.0 * rnd();
            let shade = if m { 0.55 } else { 1.0 };
            img.extend_from_slice(&[
                (tex * shade) as u8,
                (tex * 0.9 * shade) as u8,
                (tex * 0.8) as u8,
            ]);
            let heat = if defect { (-d * 0.6).exp() } else { 0.0 };
            map.push((0.15 * rnd() + 0.9 * heat).min(1.0));
            mask.push(m);
        }
    }
    (img, map, mask)
}

fn out_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("AD_METRICS_PICTURES_DIR") {
        Some(d) => {
            std::fs::create_dir_all(&d).unwrap();
            (None, PathBuf::from(d))
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    }
}

#[test]
fn overlay_shows_map_and_contours() {
    let (_keep, dir) = out_dir();
    let (img, map, gt) = sample(3, true);
    let pred = predicted_mask(&map, 0.5);
    let input = OverlayInput {
        image: &img,
        map: &map,
        gt_mask: Some(&gt),
        pred_mask: Some(&pred),
        width: W,
        height: H,
    };
    let style = OverlayStyle::default();
    let path = dir.join("overlay.png");
    save_overlay(&path, &input, &style).unwrap();
    let png = image::open(&path).unwrap().to_rgb8();
    assert_eq!((png.width() as usize, png.height() as usize), (2 * W, H));
    // left half is the untouched input
    assert_eq!(
        png.get_pixel(5, 7).0,
        [
            img[3 * (7 * W + 5)],
            img[3 * (7 * W + 5) + 1],
            img[3 * (7 * W + 5) + 2]
        ]
    );

    // contour pixels of each colour lie on the border of their mask
    let (gt_c, pred_c) = (contour(&gt, W, H), contour(&pred, W, H));
    let border = |m: &[bool], r: usize, c: usize| {
        let at = |rr: isize, cc: isize| {
            rr >= 0
                && cc >= 0
                && (rr as usize) < H
                && (cc as usize) < W
                && m[rr as usize * W + cc as usize]
        };
        let (r, c) = (r as isize, c as isize);
        at(r, c) && !(at(r - 1, c) && at(r + 1, c) && at(r, c - 1) && at(r, c + 1))
    };
    let (mut n_gt, mut n_pred) = (0, 0);
    for r in 0..H {
        for c in 0..W {
            let px = png.get_pixel((W + c) as u32, r as u32).0;
            if px == style.pred_color {
                assert!(
                    border(&pred, r, c),
                    "pred contour pixel ({r},{c}) not on the predicted mask border"
                );
                n_pred += 1;
            } else if px == style.gt_color {
                assert!(
                    border(&gt, r, c),
                    "gt contour pixel ({r},{c}) not on the ground-truth border"
                );
                n_gt += 1;
            }
            // every border pixel is drawn (prediction drawn over ground truth)
            if pred_c[r * W + c] {
                assert_eq!(px, style.pred_color);
            } else if gt_c[r * W + c] {
                assert_eq!(px, style.gt_color);
            }
        }
    }
    assert!(
        n_gt > 20 && n_pred > 10,
        "{n_gt} gt and {n_pred} pred contour pixels"
    );

    // heat layer alone (alpha 1, per-image scale): both ends of the colormap are present
    let heat_only = OverlayStyle {
        alpha: 1.0,
        scale: MapScale::PerImage,
        side_by_side: false,
        ..style
    };
    let bare = OverlayInput {
        gt_mask: None,
        pred_mask: None,
        ..input
    };
    let heat = overlay(&bare, &heat_only).unwrap();
    assert_eq!((heat.width() as usize, heat.height() as usize), (W, H));
    let lut = Colormap::Inferno.table();
    assert!(heat.pixels().any(|p| p.0 == lut[0]), "low end missing");
    assert!(heat.pixels().any(|p| p.0 == lut[255]), "high end missing");
    let distinct: std::collections::HashSet<[u8; 3]> = heat.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 100, "only {} colours", distinct.len());
}

#[test]
fn roc_and_pr_plots_render_with_legend() {
    let (_keep, dir) = out_dir();
    let n = 12;
    let mut maps = Vec::new();
    let mut masks = Vec::new();
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let defect = i % 3 != 0;
        let (_, map, mask) = sample(100 + i as u64, defect);
        scores.push(map.iter().copied().fold(0.0f32, f32::max));
        labels.push(defect);
        maps.extend(map);
        masks.extend(mask);
    }
    let px = PixelMaps {
        maps: &maps,
        masks: &masks,
        dims: MapDims::new(n, H, W),
    };
    let e = evaluate(&scores, &labels, &px, &EvalOptions::default()).unwrap();
    let (ic, pc) = (e.image_curves.unwrap(), e.pixel_curves.unwrap());
    let roc_path = dir.join("roc.png");
    save_roc(
        &roc_path,
        "synthetic: ROC",
        &[("image", &ic.roc), ("pixel", &pc.roc)],
        DEFAULT_SIZE,
    )
    .unwrap();
    let pr_path = dir.join("pr.png");
    save_pr(
        &pr_path,
        "synthetic: PR",
        &[("image", &ic.pr), ("pixel", &pc.pr)],
        DEFAULT_SIZE,
    )
    .unwrap();
    for path in [&roc_path, &pr_path] {
        let png = image::open(path).unwrap().to_rgb8();
        assert_eq!((png.width(), png.height()), DEFAULT_SIZE);
        let dark = png.pixels().filter(|p| p.0.iter().all(|&v| v < 80)).count();
        assert!(
            dark > 2000,
            "{}: {dark} dark pixels (axes and text missing?)",
            path.display()
        );
        // both curve colours are drawn
        let blue = png.pixels().filter(|p| p.0 == [31, 119, 180]).count();
        let red = png.pixels().filter(|p| p.0 == [214, 39, 40]).count();
        assert!(
            blue > 100 && red > 100,
            "{}: {blue} blue, {red} red pixels",
            path.display()
        );
    }
    // the legend area (lower right of the ROC plot) contains text pixels
    let png = image::open(&roc_path).unwrap().to_rgb8();
    let (w, h) = DEFAULT_SIZE;
    let text = (w / 2..w - 20)
        .flat_map(|x| (h * 2 / 3..h - 50).map(move |y| (x, y)))
        .filter(|&(x, y)| png.get_pixel(x, y).0.iter().all(|&v| v < 100))
        .count();
    assert!(text > 100, "legend text missing ({text} dark pixels)");
}
