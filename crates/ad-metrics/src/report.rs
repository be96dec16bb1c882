//! Run reports: one JSON file and one Markdown table per run, one row per category.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::evaluate::Evaluation;

/// The numbers of one category and model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Dataset category (e.g. `bottle`).
    pub category: String,
    /// Model name (e.g. `patchcore-effnet-lite0`).
    pub model: String,
    /// Image-level AUROC in `[0, 1]`.
    pub image_auroc: f64,
    /// Pixel-level AUROC, when masks exist.
    pub pixel_auroc: Option<f64>,
    /// Image-level F1-max.
    pub image_f1_max: f64,
    /// Pixel-level F1-max, when masks exist.
    pub pixel_f1_max: Option<f64>,
    /// AUPRO (normalised, FPR limit in `aupro_fpr_limit`), when masks exist.
    pub aupro: Option<f64>,
    /// FPR limit of `aupro`.
    pub aupro_fpr_limit: Option<f64>,
    /// Seconds spent fitting (building the memory bank, ...); `None` when the run did not
    /// fit (a saved model was tested).
    #[serde(default)]
    pub fit_seconds: Option<f64>,
    /// Mean prediction time per test image, milliseconds.
    pub predict_ms_per_image: f64,
    /// Peak resident memory during the run, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_mb: Option<f64>,
    /// Size of the saved model, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_size_mb: Option<f64>,
    /// Further named numbers (shown as extra Markdown columns).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extras: BTreeMap<String, f64>,
}

impl MetricsRow {
    /// A row from an [`Evaluation`] and the measured times.
    pub fn from_evaluation(
        category: impl Into<String>,
        model: impl Into<String>,
        eval: &Evaluation,
        fit_seconds: Option<f64>,
        predict_ms_per_image: f64,
    ) -> Self {
        Self {
            category: category.into(),
            model: model.into(),
            image_auroc: eval.image.auroc,
            pixel_auroc: eval.pixel.map(|p| p.level.auroc),
            image_f1_max: eval.image.f1.f1,
            pixel_f1_max: eval.pixel.map(|p| p.level.f1.f1),
            aupro: eval.pixel.map(|p| p.aupro),
            aupro_fpr_limit: eval.pixel.map(|p| p.fpr_limit),
            fit_seconds,
            predict_ms_per_image,
            peak_memory_mb: None,
            model_size_mb: None,
            extras: BTreeMap::new(),
        }
    }
}

/// All rows of one run, with free-form context (command, machine, date).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Name of the run.
    pub run: String,
    /// Context lines (command line, machine, date...), printed above the table.
    #[serde(default)]
    pub notes: Vec<String>,
    /// One row per category and model.
    pub rows: Vec<MetricsRow>,
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for v in values.flatten() {
        s += v;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.2}", 100.0 * v))
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

impl RunReport {
    /// An empty report.
    pub fn new(run: impl Into<String>) -> Self {
        Self {
            run: run.into(),
            notes: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: MetricsRow) {
        self.rows.push(row);
    }

    /// Column means over the rows that have the value (`None` for a column nobody has).
    pub fn mean_row(&self) -> Option<MetricsRow> {
        if self.rows.is_empty() {
            return None;
        }
        let r = &self.rows;
        let keys: std::collections::BTreeSet<&String> =
            r.iter().flat_map(|x| x.extras.keys()).collect();
        Some(MetricsRow {
            category: "mean".into(),
            model: if r.iter().all(|x| x.model == r[0].model) {
                r[0].model.clone()
            } else {
                "(mixed)".into()
            },
            image_auroc: mean(r.iter().map(|x| Some(x.image_auroc))).unwrap_or(0.0),
            pixel_auroc: mean(r.iter().map(|x| x.pixel_auroc)),
            image_f1_max: mean(r.iter().map(|x| Some(x.image_f1_max))).unwrap_or(0.0),
            pixel_f1_max: mean(r.iter().map(|x| x.pixel_f1_max)),
            aupro: mean(r.iter().map(|x| x.aupro)),
            aupro_fpr_limit: r.iter().find_map(|x| x.aupro_fpr_limit),
            fit_seconds: mean(r.iter().map(|x| x.fit_seconds)),
            predict_ms_per_image: mean(r.iter().map(|x| Some(x.predict_ms_per_image)))
                .unwrap_or(0.0),
            peak_memory_mb: mean(r.iter().map(|x| x.peak_memory_mb)),
            model_size_mb: mean(r.iter().map(|x| x.model_size_mb)),
            extras: keys
                .into_iter()
                .filter_map(|k| {
                    mean(r.iter().map(|x| x.extras.get(k).copied())).map(|m| (k.clone(), m))
                })
                .collect(),
        })
    }

    /// The Markdown table: metrics in percent with two decimals, times in seconds and
    /// milliseconds, a final mean row; optional columns appear only when some row has them.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {}\n", self.run);
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        if !self.notes.is_empty() {
            s.push('\n');
        }
        let has_mem = self.rows.iter().any(|r| r.peak_memory_mb.is_some());
        let has_size = self.rows.iter().any(|r| r.model_size_mb.is_some());
        let extra_keys: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| r.extras.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let limit = self
            .rows
            .iter()
            .find_map(|r| r.aupro_fpr_limit)
            .unwrap_or(crate::DEFAULT_FPR_LIMIT);
        let mut header = vec![
            "category".to_string(),
            "model".into(),
            "image AUROC %".into(),
            "pixel AUROC %".into(),
            "image F1-max %".into(),
            "pixel F1-max %".into(),
            format!("AUPRO@{limit} %"),
            "fit s".into(),
            "predict ms/img".into(),
        ];
        if has_mem {
            header.push("peak MiB".into());
        }
        if has_size {
            header.push("model MiB".into());
        }
        header.extend(extra_keys.iter().cloned());
        let _ = writeln!(s, "| {} |", header.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(header.len()));
        let line = |r: &MetricsRow, bold: bool| {
            let mut cells = vec![
                if bold {
                    format!("**{}**", r.category)
                } else {
                    r.category.clone()
                },
                r.model.clone(),
                pct(Some(r.image_auroc)),
                pct(r.pixel_auroc),
                pct(Some(r.image_f1_max)),
                pct(r.pixel_f1_max),
                pct(r.aupro),
                num(r.fit_seconds, 2),
                num(Some(r.predict_ms_per_image), 1),
            ];
            if has_mem {
                cells.push(num(r.peak_memory_mb, 0));
            }
            if has_size {
                cells.push(num(r.model_size_mb, 1));
            }
            cells.extend(extra_keys.iter().map(|k| num(r.extras.get(k).copied(), 4)));
            format!("| {} |\n", cells.join(" | "))
        };
        for r in &self.rows {
            s.push_str(&line(r, false));
        }
        if self.rows.len() > 1
            && let Some(m) = self.mean_row()
        {
            s.push_str(&line(&m, true));
        }
        s
    }

    /// Writes the report as pretty JSON.
    ///
    /// # Errors
    /// [`Json`](MetricsError::Json) or [`Io`](MetricsError::Io) naming `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|source| MetricsError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, text).map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a report written by [`RunReport::write_json`].
    ///
    /// # Errors
    /// [`Io`](MetricsError::Io) or [`Json`](MetricsError::Json) naming `path`.
    pub fn read_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| MetricsError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the Markdown table.
    ///
    /// # Errors
    /// [`Io`](MetricsError::Io) naming `path`.
    pub fn write_markdown(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_markdown()).map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes `<dir>/<stem>.json` and `<dir>/<stem>.md` (creating `dir`), returning both paths.
    ///
    /// # Errors
    /// As [`RunReport::write_json`] and [`RunReport::write_markdown`].
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).map_err(|source| MetricsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (json, md) = (
            dir.join(format!("{stem}.json")),
            dir.join(format!("{stem}.md")),
        );
        self.write_json(&json)?;
        self.write_markdown(&md)?;
        Ok((json, md))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EvalOptions, evaluate_images};

    #[test]
    fn markdown_and_json_roundtrip() {
        let e = evaluate_images(
            &[0.1, 0.9, 0.8],
            &[false, true, true],
            &EvalOptions::default(),
        )
        .unwrap();
        let mut rep = RunReport::new("smoke");
        rep.notes.push("command: cargo test".into());
        let mut a = MetricsRow::from_evaluation("bottle", "patchcore", &e, Some(1.5), 20.0);
        a.peak_memory_mb = Some(512.0);
        rep.push(a);
        let mut b = MetricsRow::from_evaluation("cable", "patchcore", &e, Some(2.5), 30.0);
        b.pixel_auroc = Some(0.9);
        b.extras.insert("balanced_acc".into(), 0.75);
        rep.push(b);
        let md = rep.to_markdown();
        assert!(md.contains("| bottle | patchcore | 100.00 | – |"), "{md}");
        assert!(
            md.contains("| **mean** | patchcore | 100.00 | 90.00 |"),
            "{md}"
        );
        assert!(md.contains("peak MiB") && md.contains("balanced_acc"));
        assert_eq!(md.lines().filter(|l| l.starts_with('|')).count(), 5);
        let m = rep.mean_row().unwrap();
        assert_eq!(m.fit_seconds, Some(2.0));
        let dir = tempfile::tempdir().unwrap();
        let (json, mdp) = rep.write(dir.path(), "run").unwrap();
        assert_eq!(RunReport::read_json(&json).unwrap(), rep);
        assert!(
            std::fs::read_to_string(mdp)
                .unwrap()
                .starts_with("## smoke")
        );
    }
}
