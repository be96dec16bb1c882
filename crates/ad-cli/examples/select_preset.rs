//! The selection protocol behind the `accurate` preset: every candidate PatchCore setting is
//! scored on validation splits made from good training images only (a quarter held out, plus
//! CutPaste, thin-curve, vein, faint-vein, spot and faint-spot copies of them as anomalies,
//! `anomaly_detection::selection`; `--no-spots`: the protocol of 2026-12-03 13:30-21:00 UTC,
//! without either spot kind; `--no-faint-veins` also leaves the faint veins out (the protocol
//! of 11:38 UTC), `--no-veins` both vein kinds (the protocol before 2026-12-03)), on MVTec AD
//! bottle and the 12 PIPED classes; the test images are never read. Prints one row per
//! candidate (means over the categories, the worst category, costs), each kind's image AUROC
//! alone, and the protocol's choice:
//!
//! * the largest mean of (validation image AUROC + validation AUPRO) / 2 over all categories,
//! * among candidates whose validation predict time is at most 4x the `fast` preset's.
//!
//! A default moves to the choice only when the choice's objective is above the default's by
//! more than two standard errors of their paired difference over three or more seeds
//! (`--seeds`, seed 7 and two more; rule of 2026-12-03 16:15 UTC): a margin smaller than what
//! another hold-out and other synthetic anomalies move is not evidence to change a default.
//!
//! `--seeds 7,8,9` scores every candidate at several validation seeds (the hold-out and the
//! synthetic anomalies) and prints the objective's paired differences to the choice with their
//! standard errors.
//! `--only NAME,...` runs the candidates whose names start with one of the prefixes (with
//! `--exact`: the candidates of exactly these names).
//! `--students` scores the score student's prototype counts (0, 16, 64, 256) and its
//! learning-rate schedule instead, by the same validation and objective (no time rule: they
//! cost about the same).
//!
//! ```text
//! cargo run --release --example select_preset -- --data ../shared/datasets
//! ```
//! `tools/run_presets.sh` then reports every candidate's test results with `ad run`.

use std::path::PathBuf;
use std::process::ExitCode;

use ad_backbone::BackboneKind;
use ad_core::ensemble::ScoreSpread;
use ad_core::{IMAGENET_LUMA, LrSchedule};
use anomaly_detection::cflow::CflowConfig;
use anomaly_detection::mvtec::decode::read_dims;
use anomaly_detection::mvtec::{MvtecCategory, Sample};
use anomaly_detection::padim::PadimConfig;
use anomaly_detection::patchcore::{BankAugment, PatchcoreConfig};
use anomaly_detection::registry::{DetectorConfig, EnsembleConfig, TiledConfig};
use anomaly_detection::regress::{MeanStd, StudentConfig, SyntheticAnomaly};
use anomaly_detection::selection::{ValidationOptions, ValidationScore, validate};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Root holding `mvtec_ad/` and `piped/`.
    #[arg(long, default_value = "../shared/datasets")]
    data: PathBuf,
    /// Only the candidates whose names start with one of these, comma separated [default:
    /// all].
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// `--only` names whole candidate names, not prefixes.
    #[arg(long)]
    exact: bool,
    /// Score the student's prototype counts instead of the preset candidates.
    #[arg(long)]
    students: bool,
    /// Leave both vein kinds out (with `--no-spots`: the protocol before 2026-12-03, CutPaste
    /// and thin curves only).
    #[arg(long)]
    no_veins: bool,
    /// Leave the faint veins out (with `--no-spots`: the protocol of 2026-12-03 11:38 UTC,
    /// CutPaste, thin curves and veins).
    #[arg(long)]
    no_faint_veins: bool,
    /// Leave both spot kinds out (the protocol of 2026-12-03 13:30-21:00 UTC: CutPaste, thin
    /// curves, veins and faint veins).
    #[arg(long)]
    no_spots: bool,
    /// Validation seeds (the hold-out and the synthetic anomalies), comma separated: every
    /// candidate is scored at each, its columns are the means over the seeds, and with two or
    /// more the objective's paired differences to the choice are printed with their standard
    /// errors (how far apart two candidates must be to be told apart).
    #[arg(long, value_delimiter = ',', default_value = "7")]
    seeds: Vec<u64>,
}

/// The score student with 0, 16, 64 and 256 prototypes, and with 64 on the cosine
/// learning-rate schedule instead of a constant rate (its teacher: the default PatchCore).
fn student_candidates() -> Vec<(&'static str, DetectorConfig)> {
    [
        ("student p0", 0, LrSchedule::Constant),
        ("student p16", 16, LrSchedule::Constant),
        ("student p64", 64, LrSchedule::Constant),
        ("student p64 cosine-lr", 64, LrSchedule::Cosine),
        ("student p256", 256, LrSchedule::Constant),
    ]
    .into_iter()
    .map(|(name, prototypes, lr_schedule)| {
        (
            name,
            DetectorConfig::Student(StudentConfig {
                prototypes,
                lr_schedule,
                ..StudentConfig::default()
            }),
        )
    })
    .collect()
}

/// The candidates: the levers that can be had offline (weights, resolution, taps,
/// neighbourhood, flipped/rotated copies of the good images in the bank), one change at a time from the `fast` default plus mixes of the strongest
/// (the strides-4-8-16 taps keep the context of the default's stride-16 tap), and ensembles
/// (maps standardised on held-out good images and averaged): the fast and accurate PatchCores
/// (fine localisation plus the stride-16 context), the accurate PatchCore with PaDiM
/// (a different model of the same good patches), and multi-resolution ones (a member at half
/// the resolution); last, PaDiM's, CFlow's and the tiled model's defaults with and without
/// brightness normalisation (`--only padim`, `--only cflow`, `--only tiled`: each judged
/// against its own default).
pub fn candidates() -> Vec<(&'static str, DetectorConfig)> {
    let patchcores = patchcore_candidates();
    let find = |name: &str| {
        patchcores
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| DetectorConfig::Patchcore(c.clone()))
    };
    let mut out: Vec<(&'static str, DetectorConfig)> = patchcores
        .iter()
        .map(|(n, c)| (*n, DetectorConfig::Patchcore(c.clone())))
        .collect();
    if let (Some(fast), Some(accurate)) = (find("lite0-256 (fast)"), find("lite1-256-s4s8")) {
        out.push((
            "ensemble fast+lite1-256-s4s8",
            DetectorConfig::Ensemble(EnsembleConfig::of(vec![fast, accurate.clone()])),
        ));
        out.push((
            "ensemble lite1-256-s4s8+padim",
            DetectorConfig::Ensemble(EnsembleConfig::of(vec![
                accurate.clone(),
                DetectorConfig::Padim(PadimConfig::default()),
            ])),
        ));
        // Multi-resolution: the same images at half resolution (128 px) through Lite1's
        // default taps, whose receptive fields then cover twice as much of the part (PIPED's
        // native size; PA_BRG03_TL's vein networks are found there, docs/results.md).
        if let Some(DetectorConfig::Patchcore(mut half)) = find("lite1-256") {
            half.preprocess = half.preprocess.clone().with_size(128, 128);
            let half = DetectorConfig::Patchcore(half);
            out.push((
                "ensemble lite1-256-s4s8+padim+lite1-128",
                DetectorConfig::Ensemble(EnsembleConfig::of(vec![
                    accurate.clone(),
                    DetectorConfig::Padim(PadimConfig::default()),
                    half.clone(),
                ])),
            ));
            out.push((
                "ensemble lite1-256-s4s8+lite1-128",
                DetectorConfig::Ensemble(EnsembleConfig::of(vec![accurate.clone(), half])),
            ));
        }
        // Lite1's default taps for the image score only (`score_members`): its coarse map no
        // longer blurs the fine members' outlines. At 128 px (half resolution) a patch covers
        // much of the part (PA_BRG03_TL's vein networks); the larger the member's images, the
        // less its score sees of them and the fewer false alarms it adds on PA_FVN01_TL's
        // good parts (docs/results.md, "Score members", "The score member's resolution").
        if let Some(DetectorConfig::Patchcore(lite1)) = find("lite1-256") {
            for (size, names) in [
                (
                    128,
                    [
                        "ensemble lite1-256-s4s8+padim score lite1-128",
                        "ensemble lite1-256-s4s8 score lite1-128",
                        "ensemble lite1-256-s4s8 score lite1-128 pixel padim",
                    ],
                ),
                (
                    192,
                    [
                        "ensemble lite1-256-s4s8+padim score lite1-192",
                        "ensemble lite1-256-s4s8 score lite1-192",
                        "ensemble lite1-256-s4s8 score lite1-192 pixel padim",
                    ],
                ),
                (
                    256,
                    [
                        "ensemble lite1-256-s4s8+padim score lite1-256",
                        "ensemble lite1-256-s4s8 score lite1-256",
                        "ensemble lite1-256-s4s8 score lite1-256 pixel padim",
                    ],
                ),
            ] {
                let mut member = lite1.clone();
                if member.preprocess.resize != (size, size) {
                    // Otherwise the ensemble's own images, not resized again.
                    member.preprocess = member.preprocess.clone().with_size(size, size);
                }
                let with_score = |members: Vec<DetectorConfig>| EnsembleConfig {
                    score_members: vec![DetectorConfig::Patchcore(member.clone())],
                    ..EnsembleConfig::of(members)
                };
                out.push((
                    names[0],
                    DetectorConfig::Ensemble(with_score(vec![
                        accurate.clone(),
                        DetectorConfig::Padim(PadimConfig::default()),
                    ])),
                ));
                out.push((
                    names[1],
                    DetectorConfig::Ensemble(with_score(vec![accurate.clone()])),
                ));
                // PaDiM for the map only (`pixel_members`): its localisation without its
                // lower maxima on faint dots in the image score.
                out.push((
                    names[2],
                    DetectorConfig::Ensemble(EnsembleConfig {
                        pixel_members: vec![DetectorConfig::Padim(PadimConfig::default())],
                        ..with_score(vec![accurate.clone()])
                    }),
                ));
                // Cross-fitted calibration: every good image measured by members fitted on
                // the other three quarters, and each centred candidate divided by the spread
                // of its own maxima (`ScoreSpread::Maxima`, too noisy on a hold-out of 8).
                let cv_names = match size {
                    128 => Some([
                        "ensemble lite1-256-s4s8+padim score lite1-128 cv4",
                        "ensemble lite1-256-s4s8 score lite1-128 cv4",
                    ]),
                    192 => Some([
                        "ensemble lite1-256-s4s8+padim score lite1-192 cv4",
                        "ensemble lite1-256-s4s8 score lite1-192 cv4",
                    ]),
                    _ => None,
                };
                for (name, members) in cv_names.into_iter().flatten().zip([
                    vec![
                        accurate.clone(),
                        DetectorConfig::Padim(PadimConfig::default()),
                    ],
                    vec![accurate.clone()],
                ]) {
                    let mut e = with_score(members);
                    e.calibration.folds = 4;
                    e.calibration.score_spread = ScoreSpread::Maxima;
                    out.push((name, DetectorConfig::Ensemble(e)));
                }
                // At 192 px, the best image-level member on the test split: 4 folds with the
                // map spreads, alone and with PaDiM as a pixel member.
                if size == 192 {
                    let mut e = with_score(vec![accurate.clone()]);
                    e.calibration.folds = 4;
                    out.push((
                        "ensemble lite1-256-s4s8 score lite1-192 folds4",
                        DetectorConfig::Ensemble(e.clone()),
                    ));
                    e.pixel_members = vec![DetectorConfig::Padim(PadimConfig::default())];
                    out.push((
                        "ensemble lite1-256-s4s8 score lite1-192 folds4 pixel padim",
                        DetectorConfig::Ensemble(e),
                    ));
                }
            }
        }
        // The stride-16 context of Lite1's default taps (PA_BRG03_TL's veins) beside the fine
        // localisation of the strides-4-8 taps and PaDiM.
        if let Some(context) = find("lite1-256") {
            out.push((
                "ensemble lite1-256+lite1-256-s4s8+padim",
                DetectorConfig::Ensemble(EnsembleConfig::of(vec![
                    context,
                    accurate,
                    DetectorConfig::Padim(PadimConfig::default()),
                ])),
            ));
        }
        // The ensemble default's roles with Lite0's strides-4-8 PatchCore as the map member
        // (the best single PatchCore on the faint-vein split, docs/results.md "Faint veins").
        if let (Some(fine), Some(DetectorConfig::Patchcore(lite1))) =
            (find("lite0-256-s4s8"), find("lite1-256"))
        {
            for (size, name) in [
                (128, "ensemble lite0-256-s4s8 score lite1-128 pixel padim"),
                // A larger score member resolves small defects better (the spots of the
                // validation split, docs/results.md "Spots in the validation split").
                (192, "ensemble lite0-256-s4s8 score lite1-192 pixel padim"),
            ] {
                let mut context = lite1.clone();
                context.preprocess = context.preprocess.clone().with_size(size, size);
                out.push((
                    name,
                    DetectorConfig::Ensemble(EnsembleConfig {
                        score_members: vec![DetectorConfig::Patchcore(context)],
                        pixel_members: vec![DetectorConfig::Padim(PadimConfig::default())],
                        ..EnsembleConfig::of(vec![fine.clone()])
                    }),
                ));
            }
            // The default (128-px score member) with brightness normalisation: set on the
            // ensemble, every member sees it.
            let mut context = lite1.clone();
            context.preprocess = context.preprocess.clone().with_size(128, 128);
            let mut bright = EnsembleConfig {
                score_members: vec![DetectorConfig::Patchcore(context)],
                pixel_members: vec![DetectorConfig::Padim(PadimConfig::default())],
                ..EnsembleConfig::of(vec![fine.clone()])
            };
            bright.preprocess.brightness = Some(IMAGENET_LUMA);
            out.push((
                "ensemble lite0-256-s4s8 score lite1-128 pixel padim+brightness",
                DetectorConfig::Ensemble(bright),
            ));
            // Without a score member: PaDiM as a full member beside the fine PatchCore (the
            // first ensemble the protocol chose, with Lite0's map member).
            out.push((
                "ensemble lite0-256-s4s8+padim",
                DetectorConfig::Ensemble(EnsembleConfig::of(vec![
                    fine,
                    DetectorConfig::Padim(PadimConfig::default()),
                ])),
            ));
        }
    }
    // PaDiM's default (`ad --model padim`) with and without brightness normalisation, judged
    // against each other as each PatchCore preset was (docs/results.md "Brightness
    // normalisation").
    let padim = PadimConfig::default();
    let mut bright = padim.clone();
    bright.preprocess.brightness = Some(IMAGENET_LUMA);
    out.push(("padim (default)", DetectorConfig::Padim(padim)));
    out.push(("padim+brightness", DetectorConfig::Padim(bright)));
    // CFlow's default (`ad --model cflow`), likewise.
    let cflow = CflowConfig::default();
    let mut bright = cflow.clone();
    bright.preprocess.brightness = Some(IMAGENET_LUMA);
    out.push(("cflow (default)", DetectorConfig::Cflow(cflow)));
    out.push(("cflow+brightness", DetectorConfig::Cflow(bright)));
    // The tiled model's default (`ad --model tiled`: 512 px images in four 256 px tiles, one
    // PatchCore for all of them), likewise; the level is set on the whole image before it is
    // cut, as `--brightness` sets it.
    let tiled = TiledConfig::default();
    let mut bright = tiled.clone();
    bright.preprocess.brightness = Some(IMAGENET_LUMA);
    out.push(("tiled (default)", DetectorConfig::Tiled(tiled)));
    out.push(("tiled+brightness", DetectorConfig::Tiled(bright)));
    out
}

/// The PatchCore candidates. Every one starts from the library's `PatchcoreConfig::default()`
/// (the pixels as decoded); "lite0-256 (fast)" is the `fast` preset as it was until
/// 2026-12-05, when both presets took brightness normalisation ("+brightness" below; the time
/// rule's reference is unchanged, as the option costs one pass over the pixels).
fn patchcore_candidates() -> Vec<(&'static str, PatchcoreConfig)> {
    let base = PatchcoreConfig::default();
    let with = |f: &dyn Fn(&mut PatchcoreConfig)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    let lite = |k: BackboneKind| {
        move |c: &mut PatchcoreConfig| {
            c.backbone = k;
            c.taps.clear();
        }
    };
    vec![
        ("lite0-256 (fast)", base.clone()),
        ("lite1-256", with(&lite(BackboneKind::EfficientNetLite1))),
        ("lite2-256", with(&lite(BackboneKind::EfficientNetLite2))),
        (
            "lite0-320",
            with(&|c| c.preprocess = c.preprocess.clone().with_size(320, 320)),
        ),
        (
            "lite0-256-s4s8",
            with(&|c| {
                c.taps = BackboneKind::EfficientNetLite0
                    .taps_at_strides(&[4, 8])
                    .unwrap_or_default()
            }),
        ),
        (
            "lite0-256-s4s8s16",
            with(&|c| {
                c.taps = BackboneKind::EfficientNetLite0
                    .taps_at_strides(&[4, 8, 16])
                    .unwrap_or_default()
            }),
        ),
        (
            "lite1-256-s4s8",
            with(&|c| {
                lite(BackboneKind::EfficientNetLite1)(c);
                c.taps = BackboneKind::EfficientNetLite1
                    .taps_at_strides(&[4, 8])
                    .unwrap_or_default()
            }),
        ),
        ("lite0-256-p5", with(&|c| c.patch_size = 5)),
        (
            "lite2-320",
            with(&|c| {
                lite(BackboneKind::EfficientNetLite2)(c);
                c.preprocess = c.preprocess.clone().with_size(320, 320);
            }),
        ),
        (
            "lite1-320",
            with(&|c| {
                lite(BackboneKind::EfficientNetLite1)(c);
                c.preprocess = c.preprocess.clone().with_size(320, 320);
            }),
        ),
        (
            "lite0-384",
            with(&|c| c.preprocess = c.preprocess.clone().with_size(384, 384)),
        ),
        (
            "lite1-384",
            with(&|c| {
                lite(BackboneKind::EfficientNetLite1)(c);
                c.preprocess = c.preprocess.clone().with_size(384, 384);
            }),
        ),
        // Native resolution: each category's images at their own size (PIPED 128 px, bottle
        // 512 px), set per category by `at_native_size` (the size here is a placeholder the
        // run replaces).
        ("lite0-native", base.clone()),
        ("lite1-native", with(&lite(BackboneKind::EfficientNetLite1))),
        ("lite0-256+flips", with(&|c| c.augment = BankAugment::Flips)),
        (
            "lite0-256+dihedral",
            with(&|c| c.augment = BankAugment::Dihedral),
        ),
        (
            "lite1-256+flips",
            with(&|c| {
                lite(BackboneKind::EfficientNetLite1)(c);
                c.augment = BankAugment::Flips;
            }),
        ),
        (
            "lite1-256-s4s8+flips",
            with(&|c| {
                lite(BackboneKind::EfficientNetLite1)(c);
                c.taps = BackboneKind::EfficientNetLite1
                    .taps_at_strides(&[4, 8])
                    .unwrap_or_default();
                c.augment = BankAugment::Flips;
            }),
        ),
        // Brightness normalisation (`--brightness imagenet`): every image scaled to the mean
        // luma of ImageNet's images before the backbone, on the fast and accurate presets.
        (
            "lite0-256+brightness",
            with(&|c| c.preprocess.brightness = Some(IMAGENET_LUMA)),
        ),
        (
            "lite0-256-s4s8+brightness",
            with(&|c| {
                c.taps = BackboneKind::EfficientNetLite0
                    .taps_at_strides(&[4, 8])
                    .unwrap_or_default();
                c.preprocess.brightness = Some(IMAGENET_LUMA);
            }),
        ),
    ]
}

/// A PatchCore candidate resized to its category's own image size (that of the first good
/// training image; PIPED's and bottle's images are all one size per category).
fn at_native_size(
    config: &DetectorConfig,
    train: &[Sample],
) -> Result<DetectorConfig, Box<dyn std::error::Error>> {
    let first = train.first().ok_or("a category without training images")?;
    let (w, h) = read_dims(&first.path)?;
    match config {
        DetectorConfig::Patchcore(c) => {
            let mut c = c.clone();
            c.preprocess = c.preprocess.clone().with_size(h, w);
            Ok(DetectorConfig::Patchcore(c))
        }
        _ => Err("native size is defined for the PatchCore candidates".into()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut categories = vec![MvtecCategory::open(args.data.join("mvtec_ad"), "bottle")?];
    let piped = args.data.join("piped");
    let mut names: Vec<String> = std::fs::read_dir(&piped)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("train").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names {
        categories.push(MvtecCategory::open(&piped, n)?);
    }
    let device = burn::tensor::Device::flex();
    if args.seeds.is_empty() {
        return Err("--seeds needs at least one seed".into());
    }
    let opts = ValidationOptions {
        veins: !args.no_veins,
        faint_veins: !(args.no_veins || args.no_faint_veins),
        spots: !args.no_spots,
        faint_spots: !args.no_spots,
        ..ValidationOptions::default()
    };
    let seeds: Vec<String> = args.seeds.iter().map(u64::to_string).collect();
    println!(
        "validation: {} of each category's good training images held out (seed {}), as many \
         CutPaste anomalies{}{}{}{}; {} categories",
        opts.holdout,
        seeds.join(", "),
        if opts.thin_curves {
            ", as many thin-curve ones"
        } else {
            ""
        },
        if opts.veins { ", as many veins" } else { "" },
        if opts.faint_veins {
            ", as many faint veins"
        } else {
            ""
        },
        if opts.spots {
            ", as many spots and as many faint spots"
        } else {
            ""
        },
        categories.len()
    );
    let several = args.seeds.len() > 1;
    println!(
        "| candidate | val image AUROC % (mean) | val pixel AUROC % | val AUPRO % | worst val \
         image AUROC % | objective | fit s (sum) | predict ms/img (mean) |{}",
        if several { " objective per seed |" } else { "" }
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- |{}",
        if several { " --- |" } else { "" }
    );
    let mut rows: Vec<Row> = Vec::new();
    let list = if args.students {
        student_candidates()
    } else {
        candidates()
    };
    for (name, config) in list {
        if let Some(only) = &args.only
            && !only.iter().any(|o| {
                if args.exact {
                    name == o.as_str()
                } else {
                    name.starts_with(o.as_str())
                }
            })
        {
            continue;
        }
        // scores[seed][category]
        let mut scores: Vec<Vec<ValidationScore>> = Vec::new();
        for &seed in &args.seeds {
            let opts = ValidationOptions {
                seed,
                ..opts.clone()
            };
            let mut per_category = Vec::new();
            for c in &categories {
                let config = if name.contains("native") {
                    at_native_size(&config, &c.splits.train)?
                } else {
                    config.clone()
                };
                let s = validate(&config, &c.splits.train, &opts, &device)?;
                let kinds: Vec<String> = s
                    .image_auroc_per_kind
                    .iter()
                    .map(|(kind, auroc)| format!("{kind} {auroc:.4}"))
                    .collect();
                eprintln!(
                    "{name} {} (seed {seed}): image {:.4} pixel {:.4} aupro {:.4} (image per kind: {})",
                    c.splits.name,
                    s.image_auroc,
                    s.pixel_auroc,
                    s.aupro,
                    kinds.join(", ")
                );
                per_category.push(s);
            }
            scores.push(per_category);
        }
        let row = Row::new(name, &scores, &categories);
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} ({}) | {:.4} | {:.1} | {:.1} |{}",
            100.0 * row.image,
            100.0 * row.pixel,
            100.0 * row.aupro,
            100.0 * row.worst.1,
            row.worst.0,
            row.objective(),
            row.fit_seconds,
            row.predict,
            if several {
                let per: Vec<String> = row.objectives.iter().map(|o| format!("{o:.4}")).collect();
                format!(" {} |", per.join(" / "))
            } else {
                String::new()
            }
        );
        rows.push(row);
    }
    if let Some(first) = rows.first() {
        let names: Vec<String> = first.kinds.iter().map(|k| k.0.to_string()).collect();
        println!(
            "\nimage AUROC % of each kind alone (good vs that kind's copies; mean over the \
             categories and seeds):\n| candidate | {} |\n| --- |{}",
            names.join(" | "),
            " --- |".repeat(names.len())
        );
        for r in &rows {
            let cells: Vec<String> = r
                .kinds
                .iter()
                .map(|k| format!("{:.2}", 100.0 * k.1))
                .collect();
            println!("| {} | {} |", r.name, cells.join(" | "));
        }
    }
    let fast = rows
        .iter()
        .find(|r| r.name.contains("(fast)"))
        .map_or(f64::INFINITY, |r| r.predict);
    let choice = rows
        .iter()
        .filter(|r| args.students || r.predict <= 4.0 * fast)
        .max_by(|a, b| a.objective().total_cmp(&b.objective()));
    match choice {
        Some(choice) => {
            println!(
                "\nchoice: {} (objective {:.4}, predict {:.1} ms/img{})",
                choice.name,
                choice.objective(),
                choice.predict,
                if fast.is_finite() {
                    format!(", {:.1}x fast", choice.predict / fast)
                } else {
                    String::new()
                }
            );
            if several {
                println!(
                    "\nobjective minus the choice's, paired by seed (mean over {} seeds +- its \
                     standard error):",
                    args.seeds.len()
                );
                for r in rows.iter().filter(|r| r.name != choice.name) {
                    let (mean, se) = paired_difference(&r.objectives, &choice.objectives);
                    // The margin in standard errors at full precision: the rule's quantity,
                    // which the four printed digits can leave in doubt near two.
                    let margin = if se > 0.0 {
                        format!(", {:.2} standard errors", mean.abs() / se)
                    } else {
                        String::new()
                    };
                    println!(
                        "  {}: {mean:+.4} +- {se:.4}{margin}{}",
                        r.name,
                        if mean + 2.0 * se >= 0.0 {
                            " (within two standard errors)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        None => println!("\nno candidate within 4x the fast preset's predict time"),
    }
    Ok(())
}

/// One candidate's scores, averaged over the seeds.
struct Row {
    name: &'static str,
    /// The objective at each seed (means over the categories).
    objectives: Vec<f64>,
    image: f64,
    pixel: f64,
    aupro: f64,
    /// The category with the lowest image AUROC (mean over the seeds).
    worst: (String, f64),
    /// Fit seconds summed over the categories, mean over the seeds.
    fit_seconds: f64,
    /// Predict ms per image, mean over categories and seeds.
    predict: f64,
    /// Image AUROC of each synthetic kind alone, mean over categories and seeds.
    kinds: Vec<(SyntheticAnomaly, f64)>,
}

impl Row {
    /// `scores[seed][category]`, `categories` in the same order.
    fn new(
        name: &'static str,
        scores: &[Vec<ValidationScore>],
        categories: &[MvtecCategory],
    ) -> Self {
        let seeds = scores.len() as f64;
        let all = || scores.iter().flatten();
        let cells = all().count() as f64;
        let mean = |f: &dyn Fn(&ValidationScore) -> f64| all().map(f).sum::<f64>() / cells;
        let objectives = scores
            .iter()
            .map(|per| {
                let k = per.len() as f64;
                (per.iter().map(|s| s.image_auroc).sum::<f64>()
                    + per.iter().map(|s| s.aupro).sum::<f64>())
                    / (2.0 * k)
            })
            .collect();
        let worst = categories
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let image = scores.iter().map(|per| per[i].image_auroc).sum::<f64>() / seeds;
                (c.splits.name.clone(), image)
            })
            .fold(
                (String::new(), f64::MAX),
                |a, b| if b.1 < a.1 { b } else { a },
            );
        let kinds = scores[0][0]
            .image_auroc_per_kind
            .iter()
            .enumerate()
            .map(|(k, &(kind, _))| (kind, mean(&|s| s.image_auroc_per_kind[k].1)))
            .collect();
        Self {
            name,
            objectives,
            image: mean(&|s| s.image_auroc),
            pixel: mean(&|s| s.pixel_auroc),
            aupro: mean(&|s| s.aupro),
            worst,
            fit_seconds: all().map(|s| s.fit_seconds).sum::<f64>() / seeds,
            predict: mean(&|s| s.predict_ms_per_image),
            kinds,
        }
    }

    /// (mean image AUROC + mean AUPRO) / 2, the protocol's objective, averaged over the seeds.
    fn objective(&self) -> f64 {
        self.objectives.iter().sum::<f64>() / self.objectives.len() as f64
    }
}

/// Mean of `a[i] - b[i]` and its standard error (sample standard deviation / sqrt(n); 0 for
/// one pair).
fn paired_difference(a: &[f64], b: &[f64]) -> (f64, f64) {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let m = MeanStd::of(&d).unwrap_or_default();
    (m.mean, m.std / (d.len().max(1) as f64).sqrt())
}
