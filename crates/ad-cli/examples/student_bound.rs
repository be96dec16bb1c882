//! What a score student's map representation costs before any regression error: a perfect
//! student, whose grid held exactly its targets, on a category's test split.
//!
//! The teacher's maps are pooled to the student's grid (cell mean or maximum) and upsampled
//! bilinearly, as the student's output is (optionally blurred again), and scored (image score =
//! the map's maximum); with `--raw-teacher` (the same PatchCore with `blur_sigma = 0`, so its
//! map holds the patch scores), the pooled patch scores' grid maximum is the image score and
//! the map is that grid upsampled and blurred. With `--student`, the student's own maps are
//! scored, and blurred afterwards; with several, their maps averaged too. With a raw teacher and
//! a student, the pixel AUROC is decomposed: the defect pixels of one model's maps against the
//! normal pixels of the other's, which tells whether the student scores defects too low or
//! normal pixels too high. Prints a Markdown table of image and pixel AUROC.
//!
//! ```text
//! ad fit --model patchcore --backbone efficientnet-lite1 --taps blocks.3,blocks.6 --threshold none --data ../shared/datasets/piped --category PA_FVN01_TL --out fvn.patchcore
//! ad fit --model patchcore --backbone efficientnet-lite1 --taps blocks.3,blocks.6 --sigma 0 --neighbors 1 --threshold none --data ../shared/datasets/piped --category PA_FVN01_TL --out fvn_raw.patchcore
//! cargo run --release --example student_bound -- --teacher fvn.patchcore --raw-teacher fvn_raw.patchcore \
//!     --student fvn.student --data ../shared/datasets/piped --category PA_FVN01_TL --grid 64
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use ad_core::postprocess::{gaussian_blur, upsample};
use ad_core::{Detector, MapUpsample};
use ad_mvtec::BatchLoader;
use anomaly_detection::pipeline::{self, TestRun};
use anomaly_detection::registry;
use anomaly_detection::regress::{ScoreStudent, TargetPool, pool_to_grid};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// The teacher's model file (its maps blurred, as fitted by default).
    #[arg(long)]
    teacher: PathBuf,
    /// The same teacher fitted with `--sigma 0` (its map = the upsampled patch scores).
    #[arg(long)]
    raw_teacher: Option<PathBuf>,
    /// A student's model file, scored and then blurred; repeat for several (seeds), whose maps
    /// are also averaged.
    #[arg(long)]
    student: Vec<PathBuf>,
    /// Dataset root in MVTec AD's layout.
    #[arg(long)]
    data: PathBuf,
    /// Category under `--data`.
    #[arg(long)]
    category: String,
    /// Side of the student's (square) grid: 64 for the accurate student at 256 px (stride 4),
    /// 32 for the default one (stride 8).
    #[arg(long, default_value_t = 64)]
    grid: usize,
}

/// `run`, when its maps are `size` (the teacher's).
fn same_size(
    run: TestRun,
    size: (usize, usize),
    path: &std::path::Path,
) -> Result<TestRun, Box<dyn std::error::Error>> {
    if run.map_size != size {
        return Err(format!(
            "{}: {:?} maps, the teacher's are {size:?}",
            path.display(),
            run.map_size
        )
        .into());
    }
    Ok(run)
}

fn largest(v: &[f32]) -> f32 {
    v.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Prints one row: image AUROC of `scores` (the maps' maxima when `None`) and pixel AUROC of
/// `maps` over the images with masks.
fn row(name: &str, run: &TestRun, maps: &[f32], scores: Option<&[f32]>) -> Result<(), String> {
    let per = run.map_size.0 * run.map_size.1;
    let image: Vec<f32> = match scores {
        Some(s) => s.to_vec(),
        None => maps.chunks(per).map(largest).collect(),
    };
    let image = ad_metrics::roc_auc(&image, &run.labels).map_err(|e| e.to_string())?;
    let (mut pm, mut pk) = (Vec::new(), Vec::new());
    for (i, _) in run.has_mask.iter().enumerate().filter(|(_, m)| **m) {
        pm.extend_from_slice(&maps[i * per..(i + 1) * per]);
        pk.extend_from_slice(&run.masks[i * per..(i + 1) * per]);
    }
    let pixel = ad_metrics::roc_auc(&pm, &pk).map_err(|e| e.to_string())?;
    println!("| {name} | {:.2} | {:.2} |", 100.0 * image, 100.0 * pixel);
    Ok(())
}

/// Which normal pixels a [`cross`] row compares the defect pixels with.
#[derive(Clone, Copy)]
enum Normal {
    /// Every normal pixel of the masked images.
    All,
    /// The pixels of the good images.
    GoodImages,
    /// The normal pixels of the defective images.
    DefectiveImages,
}

/// Prints one row of the pixel AUROC decomposition: the defect pixels scored by `defect`
/// against the chosen normal pixels scored by `normal` (both maps on the same scale). With the
/// student's maps on one side and its teacher's on the other, it tells whether a pixel AUROC
/// gap comes from defects scored too low or normal pixels scored too high.
fn cross(
    name: &str,
    run: &TestRun,
    defect: &[f32],
    normal: &[f32],
    which: Normal,
) -> Result<(), String> {
    let per = run.map_size.0 * run.map_size.1;
    let (mut s, mut k) = (Vec::new(), Vec::new());
    for (i, _) in run.has_mask.iter().enumerate().filter(|(_, m)| **m) {
        let keep = match which {
            Normal::All => true,
            Normal::GoodImages => !run.labels[i],
            Normal::DefectiveImages => run.labels[i],
        };
        for p in i * per..(i + 1) * per {
            if run.masks[p] {
                s.push(defect[p]);
                k.push(true);
            } else if keep {
                s.push(normal[p]);
                k.push(false);
            }
        }
    }
    let auc = ad_metrics::roc_auc(&s, &k).map_err(|e| e.to_string())?;
    println!("| {name} | | {:.2} |", 100.0 * auc);
    Ok(())
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = burn::tensor::Device::flex();
    let cat = ad_mvtec::MvtecCategory::open(&args.data, &args.category)?;
    let bar = indicatif::ProgressBar::hidden();
    let test = |path: &PathBuf| -> Result<TestRun, Box<dyn std::error::Error>> {
        let model = registry::load(path, &device)?;
        Ok(pipeline::test(
            model.as_ref(),
            &cat.splits.test,
            8,
            &bar,
            |_, _| Ok(()),
        )?)
    };
    let teacher = test(&args.teacher)?;
    let size = teacher.map_size;
    let test = |path: &PathBuf| -> Result<TestRun, Box<dyn std::error::Error>> {
        same_size(test(path)?, size, path)
    };
    let per = size.0 * size.1;
    let g = args.grid;
    let up = |grid: &[f32], sigma: f32| {
        gaussian_blur(
            &upsample(grid, (g, g), size, MapUpsample::Bilinear),
            size,
            sigma,
        )
    };
    // Every image's map pooled to the student's grid.
    let pooled = |run: &TestRun, pool: TargetPool| -> Vec<Vec<f32>> {
        run.maps
            .chunks(per)
            .map(|m| pool_to_grid(m, size, (g, g), pool))
            .collect()
    };
    println!(
        "| {} maps (grid {g}x{g}) | image AUROC % | pixel AUROC % |",
        args.category
    );
    println!("| --- | --- | --- |");
    row("teacher", &teacher, &teacher.maps, Some(&teacher.scores))?;
    for kind in [TargetPool::Mean, TargetPool::Max] {
        let grids = pooled(&teacher, kind);
        for sigma in [0.0f32, 2.0, 4.0] {
            let maps: Vec<f32> = grids.iter().flat_map(|q| up(q, sigma)).collect();
            row(
                &format!("teacher's map {kind}-pooled, blurred {sigma}; score = map max"),
                &teacher,
                &maps,
                None,
            )?;
        }
    }
    let raw = args.raw_teacher.as_ref().map(test).transpose()?;
    if let Some(raw) = &raw {
        row(
            "raw teacher (its own maps and scores)",
            &teacher,
            &raw.maps,
            Some(&raw.scores),
        )?;
        for kind in [TargetPool::Mean, TargetPool::Max] {
            let grids = pooled(raw, kind);
            let scores: Vec<f32> = grids.iter().map(|q| largest(q)).collect();
            for sigma in [0.0f32, 2.0, 4.0] {
                let maps: Vec<f32> = grids.iter().flat_map(|q| up(q, sigma)).collect();
                if sigma == 0.0 {
                    row(
                        &format!("raw patch scores {kind}-pooled, blurred 0; score = map max"),
                        &teacher,
                        &maps,
                        None,
                    )?;
                }
                row(
                    &format!("raw patch scores {kind}-pooled, blurred {sigma}; score = grid max"),
                    &teacher,
                    &maps,
                    Some(&scores),
                )?;
            }
        }
    }
    let mut students = Vec::new();
    for path in &args.student {
        let model = ScoreStudent::load(path, &device)?;
        let student = same_size(
            pipeline::test(&model, &cat.splits.test, 8, &bar, |_, _| Ok(()))?,
            size,
            path,
        )?;
        let name = path.display();
        row(
            &format!("student {name}"),
            &teacher,
            &student.maps,
            Some(&student.scores),
        )?;
        // Its grids' maxima, the score it gives with `image_score = "grid-max"`.
        let mut scores = Vec::new();
        for batch in BatchLoader::new(&cat.splits.test, model.preprocessor().clone(), 8) {
            let grids = model.score_grids(&batch?.images)?;
            scores.extend(grids.grids.iter().map(|q| largest(q)));
        }
        row(
            &format!("student {name}, score = grid max"),
            &teacher,
            &student.maps,
            Some(&scores),
        )?;
        for sigma in [1.0f32, 2.0, 4.0] {
            let maps: Vec<f32> = student
                .maps
                .chunks(per)
                .flat_map(|m| gaussian_blur(m, size, sigma))
                .collect();
            row(
                &format!("student {name}, blurred {sigma}; score = map max"),
                &teacher,
                &maps,
                None,
            )?;
        }
        students.push(student.maps);
    }
    // Several students (seeds): their maps averaged, as one model of several heads would give.
    let mean: Option<Vec<f32>> = (students.len() > 1).then(|| {
        let n = students.len() as f32;
        (0..students[0].len())
            .map(|p| students.iter().map(|m| m[p]).sum::<f32>() / n)
            .collect()
    });
    if let Some(mean) = &mean {
        row(
            &format!(
                "the {} students' maps averaged; score = map max",
                students.len()
            ),
            &teacher,
            mean,
            None,
        )?;
    }
    // Where a student's pixel AUROC is lost, against the raw teacher (its targets): the first
    // student's maps, and the average's.
    if let Some(raw) = &raw {
        let mut who = Vec::new();
        if let Some(first) = students.first() {
            who.push(("student", first));
        }
        if let Some(mean) = &mean {
            who.push(("averaged students", mean));
        }
        for (which, label) in [
            (Normal::All, "all normal pixels"),
            (Normal::GoodImages, "good images' pixels"),
            (Normal::DefectiveImages, "defective images' normal pixels"),
        ] {
            cross(
                &format!("defect pixels / {label}: raw teacher / raw teacher"),
                &teacher,
                &raw.maps,
                &raw.maps,
                which,
            )?;
            for (name, maps) in &who {
                for (d, n, pair) in [
                    (*maps, *maps, format!("{name} / {name}")),
                    (*maps, &raw.maps, format!("{name} / raw teacher")),
                    (&raw.maps, *maps, format!("raw teacher / {name}")),
                ] {
                    cross(
                        &format!("defect pixels / {label}: {pair}"),
                        &teacher,
                        d,
                        n,
                        which,
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
