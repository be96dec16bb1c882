//! Pre-flight of a dataset: every file's header read (in parallel) before any pixel is
//! decoded, so a missing, empty or undecodable file stops the run before work is spent, and
//! degenerate but legal input is reported as warnings instead of being silently stretched.
//! Byte-identical images are reported too: a test image that is a training image measures
//! recall, not detection, and a test image present twice counts twice in every metric (PIPED
//! has such copies, docs/results.md).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use ad_core::InputSizes;

use crate::decode::read_dims;
use crate::{DatasetError, Splits};

/// Images smaller than this on a side are reported (they are upsampled a lot).
pub const TINY_SIDE: usize = 32;

/// Relative aspect-ratio difference from the resize target above which an image is reported
/// as stretched (the same as a model's check of its inputs).
pub const ASPECT_TOLERANCE: f64 = ad_core::ASPECT_TOLERANCE;

/// What [`check_splits`] found: the image count and the warnings, one line per kind of
/// problem (with a count and the first file).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataCheck {
    /// Images whose headers were read (train and test).
    pub images: usize,
    /// Masks whose headers were read.
    pub masks: usize,
    /// The decoded sizes of the training images (`None` without any): what a model fitted on
    /// them records of its inputs.
    pub train_sizes: Option<InputSizes>,
    /// Degenerate but legal input, in words.
    pub warnings: Vec<String>,
}

struct Finding {
    count: usize,
    first: Option<String>,
}

impl Finding {
    fn new() -> Self {
        Self {
            count: 0,
            first: None,
        }
    }

    fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(what());
        }
    }

    fn warn(&self, out: &mut Vec<String>, what: &str, consequence: &str) {
        if let Some(first) = &self.first {
            out.push(format!(
                "{} {what} (first: {first}): {consequence}",
                self.count
            ));
        }
    }
}

fn dims_all(paths: &[&Path]) -> Result<Vec<(usize, usize)>, DatasetError> {
    // The first failure in file order is reported.
    let all: Vec<Result<(usize, usize), DatasetError>> =
        paths.par_iter().map(|p| read_dims(p)).collect();
    all.into_iter().collect()
}

/// Reads the header of every image and mask of `splits` and checks them against the resize
/// target `(height, width)`, and the test images against the training images' sizes.
///
/// # Errors
/// The first file (in dataset order) that is missing, empty, of an unknown format or too large.
pub fn check_splits(splits: &Splits, target: (usize, usize)) -> Result<DataCheck, DatasetError> {
    check_splits_against(splits, target, None)
}

/// [`check_splits`], the test images checked against `fitted_on` (the sizes a saved model
/// records of the images it was fitted on) instead of this dataset's training images: what
/// `ad test` of a saved model checks.
///
/// # Errors
/// The first file (in dataset order) that is missing, empty, of an unknown format or too large.
pub fn check_splits_against(
    splits: &Splits,
    target: (usize, usize),
    fitted_on: Option<&InputSizes>,
) -> Result<DataCheck, DatasetError> {
    let samples: Vec<_> = splits.train.iter().chain(&splits.test).collect();
    let paths: Vec<&Path> = samples.iter().map(|s| s.path.as_path()).collect();
    let dims = dims_all(&paths)?;
    let masked: Vec<(usize, &PathBuf)> = samples
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.mask.as_ref().map(|m| (i, m)))
        .collect();
    let mask_paths: Vec<&Path> = masked.iter().map(|(_, m)| m.as_path()).collect();
    let mask_dims = dims_all(&mask_paths)?;

    let (th, tw) = target;
    let target_aspect = tw as f64 / th as f64;
    let train_sizes = InputSizes::from_sizes(dims[..splits.train.len()].iter().copied());
    let reference = fitted_on.or(train_sizes.as_ref());
    let (mut tiny, mut stretched, mut resized) = (Finding::new(), Finding::new(), Finding::new());
    let mut unlike = Finding::new();
    for (i, (p, &(w, h))) in paths.iter().zip(&dims).enumerate() {
        if w < TINY_SIDE || h < TINY_SIDE {
            tiny.add(|| format!("{} {w}x{h}", p.display()));
        }
        let aspect = w as f64 / h as f64;
        if ((aspect - target_aspect) / target_aspect).abs() > ASPECT_TOLERANCE {
            stretched.add(|| format!("{} {w}x{h}", p.display()));
        }
        if i >= splits.train.len() && reference.is_some_and(|r| r.check(w, h).is_some()) {
            unlike.add(|| format!("{} {w}x{h}", p.display()));
        }
    }
    for ((i, m), &(mw, mh)) in masked.iter().zip(&mask_dims) {
        let (w, h) = dims[*i];
        if (mw, mh) != (w, h) {
            resized.add(|| format!("{} {mw}x{mh}, image {w}x{h}", m.display()));
        }
    }
    let mut warnings = Vec::new();
    let (leaked, twice, copies) = duplicates(&paths, splits.train.len())?;
    leaked.warn(
        &mut warnings,
        "test images identical to a training image",
        "their scores measure recall of the training set, not detection",
    );
    twice.warn(
        &mut warnings,
        "test images identical to an earlier test image",
        "every copy counts again in the metrics",
    );
    copies.warn(
        &mut warnings,
        "training images identical to an earlier training image",
        "the copies add nothing to the model",
    );
    tiny.warn(
        &mut warnings,
        &format!("images smaller than {TINY_SIDE} px on a side"),
        &format!("upsampled to {tw}x{th}, little detail is left to detect defects in"),
    );
    stretched.warn(
        &mut warnings,
        &format!("images with another aspect ratio than the {tw}x{th} resize"),
        "stretched (consider --center-crop, or tiling for large images)",
    );
    if let Some(r) = reference {
        let whose = if fitted_on.is_some() {
            "the images the model was fitted on"
        } else {
            "the training images"
        };
        unlike.warn(
            &mut warnings,
            &format!("test images of another size or aspect ratio than {whose} ({r})"),
            "resized unlike them, their scores may not hold (a camera or crop that changed?)",
        );
    }
    resized.warn(
        &mut warnings,
        "masks of another size than their image",
        "resized to the image (nearest neighbour)",
    );
    Ok(DataCheck {
        images: paths.len(),
        masks: mask_paths.len(),
        train_sizes,
        warnings,
    })
}

/// For every file of `paths`, the index of the first file with the same bytes (itself when
/// none comes before it): the groups a split must keep together so that no copy of a test
/// image trains the model. Only files whose sizes coincide are read (in parallel), and equal
/// hashes are confirmed byte for byte; a path listed twice is its own copy.
///
/// # Errors
/// A file that cannot be read.
pub fn first_identical_files(paths: &[&Path]) -> Result<Vec<usize>, DatasetError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| DatasetError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let sizes: Vec<u64> = paths
        .par_iter()
        .map(|p| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|source| DatasetError::Io {
                    path: p.to_path_buf(),
                    source,
                })
        })
        .collect::<Result<_, DatasetError>>()?;
    let mut by_size: HashMap<u64, usize> = HashMap::new();
    for &s in &sizes {
        *by_size.entry(s).or_default() += 1;
    }
    // Hashes of the files whose size another file shares (None: a unique size).
    let hashes: Vec<Option<u64>> = paths
        .par_iter()
        .zip(&sizes)
        .map(|(p, s)| {
            if by_size[s] < 2 {
                return Ok(None);
            }
            let mut h = DefaultHasher::new();
            h.write(&read(p)?);
            Ok(Some(h.finish()))
        })
        .collect::<Result<_, DatasetError>>()?;
    // The first file of each content, by (size, hash); several when hashes collide.
    let mut first: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    let mut out = Vec::with_capacity(paths.len());
    for (i, hash) in hashes.iter().enumerate() {
        let Some(hash) = *hash else {
            out.push(i);
            continue;
        };
        let seen = first.entry((sizes[i], hash)).or_default();
        // Equal hashes are confirmed byte for byte (this file read once, when needed).
        let mut mine = None;
        let mut original = None;
        for &j in seen.iter() {
            if paths[i] != paths[j] {
                if mine.is_none() {
                    mine = Some(read(paths[i])?);
                }
                if mine.as_deref() != Some(read(paths[j])?.as_slice()) {
                    continue;
                }
            }
            original = Some(j);
            break;
        }
        out.push(original.unwrap_or_else(|| {
            seen.push(i);
            i
        }));
    }
    Ok(out)
}

/// Byte-identical files among `paths` (the first `train` of them the training images, the rest
/// the test images), each copy reported against the first file with its bytes: test copies of
/// a training image, test copies of an earlier test image, training copies of an earlier
/// training image.
fn duplicates(paths: &[&Path], train: usize) -> Result<(Finding, Finding, Finding), DatasetError> {
    let (mut leaked, mut twice, mut copies) = (Finding::new(), Finding::new(), Finding::new());
    for (i, j) in first_identical_files(paths)?.into_iter().enumerate() {
        if i == j {
            continue;
        }
        let pair = || format!("{} = {}", paths[i].display(), paths[j].display());
        match (i < train, j < train) {
            (true, _) => copies.add(pair),
            (false, true) => leaked.add(pair),
            (false, false) => twice.add(pair),
        }
    }
    Ok((leaked, twice, copies))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;

    fn png(dir: &Path, name: &str, w: u32, h: u32) -> PathBuf {
        let p = dir.join(name);
        image::RgbImage::new(w, h).save(&p).unwrap();
        p
    }

    #[test]
    fn headers_are_checked_and_degenerate_input_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ok = png(d, "ok.png", 64, 64);
        let wide = png(d, "wide.png", 512, 128);
        let tiny = png(d, "tiny.png", 1, 1);
        let mask = png(d, "m.png", 32, 32);
        let splits = Splits {
            name: "t".into(),
            train: vec![Sample::good(ok.clone()), Sample::good(wide.clone())],
            test: vec![
                Sample::good(tiny),
                Sample {
                    path: ok.clone(),
                    is_anomalous: true,
                    defect: "x".into(),
                    mask: Some(mask),
                },
            ],
        };
        let c = check_splits(&splits, (256, 256)).unwrap();
        assert_eq!((c.images, c.masks), (4, 1));
        let sizes = c.train_sizes.as_ref().unwrap();
        assert_eq!(
            (sizes.images, sizes.width, sizes.height),
            (2, (64, 512), (64, 128))
        );
        assert_eq!(c.warnings.len(), 5, "{:?}", c.warnings);
        // `ok.png` is a training image and a test image; the 1x1 test image is far smaller
        // than both training images.
        for (i, needle) in [
            (0, "1 test images identical to a training image"),
            (1, "1 images smaller"),
            (2, "wide.png 512x128"),
            (
                3,
                "1 test images of another size or aspect ratio than the training images (2 \
                 images, 64-512 x 64-128 px",
            ),
            (3, "tiny.png 1x1"),
            (4, "m.png 32x32, image 64x64"),
        ] {
            assert!(
                c.warnings[i].contains(needle),
                "{i} {needle}: {:?}",
                c.warnings
            );
        }
        // Against a saved model's record of other images, the 64x64 test image is unlike too.
        let fitted = InputSizes::from_sizes([(900, 900)]);
        let c = check_splits_against(&splits, (256, 256), fitted.as_ref()).unwrap();
        assert!(
            c.warnings[3].starts_with(
                "2 test images of another size or aspect ratio than the images the model was \
                 fitted on (1 image, 900x900)"
            ),
            "{:?}",
            c.warnings
        );

        // A garbage file is an error naming it, before any decoding (its size is unique, so
        // the duplicate check does not read it).
        let bad = d.join("bad.png");
        std::fs::write(&bad, b"definitely not a png").unwrap();
        let mut broken = splits.clone();
        broken.test.push(Sample::good(bad.clone()));
        match check_splits(&broken, (256, 256)) {
            Err(e) => assert!(e.to_string().contains("bad.png"), "{e}"),
            Ok(c) => panic!("{c:?}"),
        }
    }

    #[test]
    fn byte_identical_images_are_reported_by_split() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Uniform images of one size, four shades: alike in length, not in bytes.
        let shade = |name: &str, v: u8| {
            let p = d.join(name);
            image::RgbImage::from_pixel(64, 64, image::Rgb([v, v, v]))
                .save(&p)
                .unwrap();
            p
        };
        let copy = |from: &Path, name: &str| {
            let p = d.join(name);
            std::fs::copy(from, &p).unwrap();
            p
        };
        let a = shade("a.png", 10);
        let b = shade("b.png", 20);
        let c = shade("c.png", 30);
        let e = shade("e.png", 40);
        let splits = Splits {
            name: "t".into(),
            train: vec![
                Sample::good(a.clone()),
                Sample::good(copy(&a, "a_again.png")),
                Sample::good(b),
            ],
            test: vec![
                Sample::good(copy(&a, "a_test.png")),
                Sample::good(c.clone()),
                Sample::good(copy(&c, "c_again.png")),
                Sample::good(e),
            ],
        };
        let w = check_splits(&splits, (64, 64)).unwrap().warnings;
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].starts_with("1 test images identical to a training image (first: ")
                && w[0].contains("a_test.png = ")
                && w[0].contains("a.png)"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("1 test images identical to an earlier test image")
                && w[1].contains("c_again.png = "),
            "{w:?}"
        );
        assert!(
            w[2].starts_with("1 training images identical to an earlier training image")
                && w[2].contains("a_again.png = "),
            "{w:?}"
        );
        // Distinct images, however alike in size, give no warning.
        let distinct = Splits {
            name: "t".into(),
            train: vec![Sample::good(a)],
            test: vec![Sample::good(c)],
        };
        assert!(
            check_splits(&distinct, (64, 64))
                .unwrap()
                .warnings
                .is_empty()
        );
    }
}
