//! ROC and precision-recall curve pictures (PNG), drawn with `plotters` into an RGB buffer.
//!
//! Text is rendered with DejaVu Sans, embedded from the `dejavu` crate and registered with
//! plotters' `ab_glyph` backend, so no system font is needed: the plots render the same on a
//! bare CI machine as on a desktop.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::error::{MetricsError, Result};
use crate::pr::PrCurve;
use crate::roc::{RocCurve, decimate_indices};

/// Font family name under which DejaVu Sans is registered.
pub const FONT_FAMILY: &str = "sans-serif";

/// Default picture size in pixels.
pub const DEFAULT_SIZE: (u32, u32) = (640, 520);

/// At most this many points per curve are drawn (curves are thinned beforehand).
const MAX_DRAWN_POINTS: usize = 2000;

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Registers the embedded font once (later calls return the first outcome).
///
/// # Errors
/// [`Plot`](MetricsError::Plot) if the embedded font cannot be parsed.
pub fn register_embedded_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            let bytes = match style {
                FontStyle::Bold => dejavu::sans::bold(),
                _ => dejavu::sans::regular(),
            };
            register_font(FONT_FAMILY, style, bytes)
                .map_err(|_| "invalid embedded font".to_string())?;
        }
        Ok(())
    })
    .clone()
    .map_err(|message| MetricsError::Plot {
        what: "font",
        message,
    })
}

fn plot_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> MetricsError {
    move |e| MetricsError::Plot {
        what,
        message: e.to_string(),
    }
}

/// One curve to draw: legend text and points.
struct Series {
    label: String,
    x: Vec<f64>,
    y: Vec<f64>,
}

fn thin(label: String, x: &[f64], y: &[f64]) -> Series {
    let keep = decimate_indices(x, y, MAX_DRAWN_POINTS);
    Series {
        label,
        x: keep.iter().map(|&i| x[i]).collect(),
        y: keep.iter().map(|&i| y[i]).collect(),
    }
}

fn draw(
    what: &'static str,
    title: &str,
    axes: (&str, &str),
    series: &[Series],
    diagonal: bool,
    legend_pos: SeriesLabelPosition,
    size: (u32, u32),
) -> Result<image::RgbImage> {
    register_embedded_font()?;
    let (w, h) = size;
    if w < 64 || h < 64 {
        return Err(MetricsError::InvalidSize {
            what,
            width: w as usize,
            height: h as usize,
        });
    }
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(what))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT_FAMILY, 22).into_font())
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(54)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
            .map_err(plot_err(what))?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .label_style((FONT_FAMILY, 14).into_font())
            .axis_desc_style((FONT_FAMILY, 16).into_font())
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err(what))?;
        if diagonal {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, 0.0), (1.0, 1.0)],
                    RGBColor(160, 160, 160).stroke_width(1),
                ))
                .map_err(plot_err(what))?;
        }
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    s.x.iter().copied().zip(s.y.iter().copied()),
                    color.stroke_width(2),
                ))
                .map_err(plot_err(what))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(legend_pos)
            .label_font((FONT_FAMILY, 15).into_font())
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err(what))?;
        root.present().map_err(plot_err(what))?;
    }
    image::RgbImage::from_raw(w, h, buf).ok_or(MetricsError::InvalidSize {
        what,
        width: w as usize,
        height: h as usize,
    })
}

fn save(img: &image::RgbImage, path: &Path) -> Result<()> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| MetricsError::Image {
            path: path.to_path_buf(),
            source,
        })
}

/// Renders ROC curves, each labelled `"<name> (AUROC = 0.9876)"`, with the chance diagonal.
///
/// # Errors
/// [`Plot`](MetricsError::Plot) from the plotting backend, [`InvalidSize`](MetricsError::InvalidSize)
/// for a picture smaller than 64 x 64.
pub fn render_roc(
    title: &str,
    curves: &[(&str, &RocCurve)],
    size: (u32, u32),
) -> Result<image::RgbImage> {
    let series: Vec<Series> = curves
        .iter()
        .map(|(name, c)| thin(format!("{name} (AUROC = {:.4})", c.auc()), &c.fpr, &c.tpr))
        .collect();
    draw(
        "ROC plot",
        title,
        ("false-positive rate", "true-positive rate"),
        &series,
        true,
        SeriesLabelPosition::LowerRight,
        size,
    )
}

/// Renders precision-recall curves, each labelled `"<name> (AP = .., F1-max = ..)"`.
///
/// # Errors
/// As [`render_roc`].
pub fn render_pr(
    title: &str,
    curves: &[(&str, &PrCurve)],
    size: (u32, u32),
) -> Result<image::RgbImage> {
    let series: Vec<Series> = curves
        .iter()
        .map(|(name, c)| {
            let ap: f64 = c
                .recall
                .windows(2)
                .zip(c.precision.iter())
                .map(|(r, p)| (r[0] - r[1]) * p)
                .sum();
            let f1 = c
                .precision
                .iter()
                .zip(c.recall.iter())
                .map(|(p, r)| 2.0 * p * r / (p + r + crate::pr::F1_EPSILON))
                .fold(0.0, f64::max);
            thin(
                format!("{name} (AP = {ap:.4}, F1-max = {f1:.4})"),
                &c.recall,
                &c.precision,
            )
        })
        .collect();
    draw(
        "PR plot",
        title,
        ("recall", "precision"),
        &series,
        false,
        SeriesLabelPosition::LowerLeft,
        size,
    )
}

/// [`render_roc`] written to a PNG file.
///
/// # Errors
/// As [`render_roc`], and [`Image`](MetricsError::Image) when writing fails.
pub fn save_roc(
    path: &Path,
    title: &str,
    curves: &[(&str, &RocCurve)],
    size: (u32, u32),
) -> Result<()> {
    save(&render_roc(title, curves, size)?, path)
}

/// [`render_pr`] written to a PNG file.
///
/// # Errors
/// As [`render_pr`], and [`Image`](MetricsError::Image) when writing fails.
pub fn save_pr(
    path: &Path,
    title: &str,
    curves: &[(&str, &PrCurve)],
    size: (u32, u32),
) -> Result<()> {
    save(&render_pr(title, curves, size)?, path)
}
