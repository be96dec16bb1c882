//! The real `ad` executable on the small generated category, with deterministic stand-in
//! backbone weights (no download): fit -> info -> predict -> test, scores bit-identical to
//! in-process prediction, config errors naming the key, image-level-only evaluation; and on
//! real MVTec AD bottle (skipped, saying why, without ../shared or the pretrained weights).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ad_core::Detector;
use ad_mvtec::SyntheticConfig;
use burn::tensor::Device;

fn ad(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ad"))
        .args(args)
        .output()
        .expect("run ad")
}

fn ad_threads(args: &[&str], threads: usize) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ad"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .expect("run ad")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The small generated category under `root` and a config with stand-in weights at 64 px.
fn setup(root: &Path, model: &str) -> (PathBuf, PathBuf) {
    SyntheticConfig::small().generate(root).unwrap();
    let config = root.join(format!("{model}.toml"));
    let extra = match model {
        "patchcore" => "num_neighbors = 3\n[coreset]\nsize = { ratio = 0.25 }\n",
        "cflow" => "epochs = 2\ncoupling_blocks = 2\ncondition_dim = 16\nlearning_rate = 0.001\n",
        _ => "n_features = 24\n",
    };
    std::fs::write(
        &config,
        format!(
            "model = \"{model}\"\nweights = {{ random = {{ seed = 1 }} }}\nbatch_size = 4\n\
             {extra}[preprocess]\nresize = [64, 64]\n"
        ),
    )
    .unwrap();
    (root.join("synthetic_small"), config)
}

/// `ad CMD --config CONFIG --data ROOT --category synthetic_small --out OUT EXTRA...` (the
/// category `setup` generates).
fn on_small(cmd: &str, config: &Path, root: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        cmd,
        "--config",
        s(config),
        "--data",
        s(root),
        "--category",
        "synthetic_small",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    ad(&args)
}

/// Parses `ad predict` output lines: (path, score or error).
fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn fit_info_predict_test_with_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let (cat, config) = setup(tmp.path(), "patchcore");
    let model = tmp.path().join("m.patchcore");
    let o = on_small("fit", &config, tmp.path(), &model, &["--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("threshold"), "{}", text(&o));
    // The pre-flight estimate of the fit's memory, beside the limit it was checked against.
    assert!(text(&o).contains(" of memory, limit "), "{}", text(&o));

    let o = ad(&["info", s(&model)]);
    assert!(o.status.success(), "{}", text(&o));
    let info = text(&o);
    for needle in [
        "patchcore",
        "formula-seed=1",
        "memory bank",
        "held-out good images",
        "fitted on ",
    ] {
        assert!(info.contains(needle), "{needle}: {info}");
    }

    // Files, a folder and a missing file: one line each, the run goes on, exit status 1.
    let good = cat.join("test/good");
    let first_good = std::fs::read_dir(&good)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let maps = tmp.path().join("maps");
    let o = ad(&[
        "predict",
        s(&model),
        s(&first_good),
        s(&cat.join("test/spot")),
        "missing.png",
        "--maps",
        s(&maps),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = lines(&o);
    assert!(out.len() >= 3, "{}", text(&o));
    assert!(out.last().unwrap()["error"].is_string());
    // Scores are bit-identical to the library's in-process prediction.
    let loaded = ad_patchcore::PatchCore::load(&model, &Device::default()).unwrap();
    for line in &out[..out.len() - 1] {
        let path = PathBuf::from(line["path"].as_str().unwrap());
        let image = ad_mvtec::decode::load_rgb(&path).unwrap();
        let p = loaded.predict_image(&image).unwrap();
        let score = line["score"].as_f64().unwrap() as f32;
        assert_eq!(score.to_bits(), p.score.to_bits(), "{}", path.display());
        assert_eq!(line["anomalous"].as_bool(), p.is_anomalous);
        // Images of the training images' size carry no warning.
        assert!(line.get("warning").is_none(), "{line}");
        let map = PathBuf::from(line["map"].as_str().unwrap());
        let png = image::open(&map).unwrap();
        // The map comes back at the image's own resolution.
        assert_eq!(
            (png.width() as usize, png.height() as usize),
            (image.width(), image.height())
        );
    }

    // An image of another aspect ratio is scored, with a warning on its line and on stderr;
    // and the test split that holds it gets the warning in its report.
    let wide = cat.join("test/good/wide.png");
    image::RgbImage::new(200, 60).save(&wide).unwrap();
    let o = ad(&["predict", s(&model), s(&wide)]);
    assert!(o.status.success(), "{}", text(&o));
    let line = &lines(&o)[0];
    assert!(line["score"].is_number(), "{line}");
    let why = line["warning"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("200x60 (aspect ratio 3.333) is stretched"),
        "{line}"
    );
    assert!(
        text(&o).contains("warning: 1 of 1 scored images are unlike the images the model"),
        "{}",
        text(&o)
    );
    // A threshold given on the command line keeps the model's record of its images.
    let o = ad(&["predict", s(&model), s(&wide), "--threshold", "1.5"]);
    assert_eq!(lines(&o)[0]["warning"].as_str(), Some(why), "{}", text(&o));

    let report_dir = tmp.path().join("test");
    let o = ad(&[
        "test",
        "--quiet",
        s(&model),
        s(&cat),
        "--out",
        s(&report_dir),
        "--overlays",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap())
            .unwrap();
    let row = &report["rows"][0];
    // Stand-in weights: the numbers are not meaningful, only present and in range.
    let auroc = row["image_auroc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auroc), "{report}");
    assert!(row["pixel_auroc"].is_number());
    assert!(row["extras"]["balanced_accuracy"].is_number());
    assert!(report_dir.join("roc.png").is_file());
    let notes = report["notes"].to_string();
    assert!(
        notes.contains(
            "1 test images of another size or aspect ratio than the images the model \
             was fitted on"
        ),
        "{notes}"
    );
}

#[test]
fn padim_runs_end_to_end_and_models_load_by_header() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, config) = setup(tmp.path(), "padim");
    let out = tmp.path().join("run");
    let o = on_small(
        "run",
        &config,
        tmp.path(),
        &out,
        &["--quiet", "--overlays", "0", "--warm-up"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // --warm-up predicts one batch before the timer starts, and the report says so.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let notes = report["notes"].to_string();
    assert!(notes.contains("warm-up batch of"), "{report}");
    let model = out.join("model.padim");
    let o = ad(&["info", "--json", s(&model)]);
    assert!(o.status.success(), "{}", text(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["detector"], "padim");
    assert_eq!(info["header"]["channels"].as_array().unwrap().len(), 24);
    // More good images without fitting again: the sums travel in the file.
    let images = info["header"]["images"].as_u64().unwrap();
    let good = tmp.path().join("synthetic_small/test/good");
    let n_good = std::fs::read_dir(&good).unwrap().count() as u64;
    let grown = tmp.path().join("grown.padim");
    let o = ad(&["add", "--quiet", s(&model), s(&good), "--out", s(&grown)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ad(&["info", "--json", s(&grown)]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["header"]["images"].as_u64(), Some(images + n_good));
    // An image that does not decode stops the update and leaves the model as it was.
    let broken = tmp.path().join("broken.png");
    std::fs::write(&broken, b"not a png").unwrap();
    let before = std::fs::read(&model).unwrap();
    let o = ad(&["add", "--quiet", s(&model), s(&broken)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("broken.png"), "{}", text(&o));
    assert_eq!(std::fs::read(&model).unwrap(), before);
    // A file of another kind is refused by its header.
    let junk = tmp.path().join("junk.bin");
    std::fs::write(&junk, b"not a model at all").unwrap();
    let o = ad(&["info", s(&junk)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("not a model file"), "{}", text(&o));
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "model = \"patchcore\"\nnum_neigbors = 3\n").unwrap();
    let o = ad(&["fit", "--config", s(&bad), "--print-config"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("num_neigbors") && t.contains("bad.toml"), "{t}");
    // --print-config writes a config that reads back to the same thing.
    let o = ad(&[
        "fit",
        "--model",
        "padim",
        "--n-features",
        "50",
        "--print-config",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, &o.stdout).unwrap();
    let o2 = ad(&["fit", "--config", s(&good), "--print-config"]);
    assert_eq!(o.stdout, o2.stdout, "{}", text(&o2));
    // The accurate student names its teacher (the accurate PatchCore) in the config it
    // writes, and that config reads back to the same thing.
    let o = ad(&[
        "fit",
        "--model",
        "student",
        "--preset",
        "accurate",
        "--print-config",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    let teacher = t.split("[teacher]").nth(1).unwrap_or_default();
    assert!(
        t.starts_with("model = \"student\"")
            && teacher.contains("efficientnet-lite1")
            && teacher.contains("patchcore"),
        "{t}"
    );
    let student = tmp.path().join("student.toml");
    std::fs::write(&student, &o.stdout).unwrap();
    let o2 = ad(&["fit", "--config", s(&student), "--print-config"]);
    assert_eq!(o.stdout, o2.stdout, "{}", text(&o2));
}

#[test]
fn image_level_labels_only_give_image_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let (cat, config) = setup(tmp.path(), "patchcore");
    let out = tmp.path().join("run");
    // Folders without masks: defective images have image-level labels only.
    let o = ad(&[
        "run",
        "--quiet",
        "--config",
        s(&config),
        "--folder-normal",
        s(&cat.join("train/good")),
        "--folder-abnormal",
        s(&cat.join("test/crack")),
        "--folder-abnormal",
        s(&cat.join("test/spot")),
        "--folder-normal-test",
        s(&cat.join("test/good")),
        "--out",
        s(&out),
        "--overlays",
        "0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let row = &report["rows"][0];
    assert!(row["image_auroc"].is_number() && row["image_f1_max"].is_number());
    assert!(
        row["pixel_auroc"].is_null() && row["aupro"].is_null(),
        "{report}"
    );
    let notes = report["notes"].to_string();
    assert!(notes.contains("no masks: pixel metrics absent"), "{notes}");
}

#[test]
fn bottle_fit_then_predict_matches_in_process_bit_for_bit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/mvtec_ad");
    if !root.join("bottle").is_dir() {
        println!(
            "SKIPPED: {} not found (real MVTec AD bottle)",
            root.display()
        );
        return;
    }
    if let Err(e) = ad_backbone::Pretrained::EfficientNetLite0.ensure() {
        println!("SKIPPED: pretrained EfficientNet-Lite0 weights unavailable: {e}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("bottle.patchcore");
    let o = ad(&[
        "fit",
        "--quiet",
        "--data",
        s(&root),
        "--category",
        "bottle",
        "--out",
        s(&model),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let test = root.join("bottle/test/broken_large");
    let o = ad(&[
        "predict",
        s(&model),
        s(&test),
        s(&root.join("bottle/test/good")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = lines(&o);
    assert_eq!(out.len(), 40);
    let loaded = ad_patchcore::PatchCore::load(&model, &Device::default()).unwrap();
    let mut flagged = (0, 0);
    for line in &out {
        let path = PathBuf::from(line["path"].as_str().unwrap());
        let p = loaded
            .predict_image(&ad_mvtec::decode::load_rgb(&path).unwrap())
            .unwrap();
        let score = line["score"].as_f64().unwrap() as f32;
        assert_eq!(score.to_bits(), p.score.to_bits(), "{}", path.display());
        if line["anomalous"].as_bool().unwrap() {
            if path.to_string_lossy().contains("broken_large") {
                flagged.0 += 1;
            } else {
                flagged.1 += 1;
            }
        }
    }
    println!(
        "bottle: {} of 20 broken_large flagged, {} of 20 good flagged",
        flagged.0, flagged.1
    );
    assert!(flagged.0 >= 18, "{flagged:?}");
}

#[test]
fn same_seed_gives_byte_identical_models_on_one_and_two_threads() {
    for model in ["patchcore", "padim"] {
        let tmp = tempfile::tempdir().unwrap();
        let (_, config) = setup(tmp.path(), model);
        let mut files = Vec::new();
        for (run, threads) in [(0, 1), (1, 2), (2, 2)] {
            let out = tmp.path().join(format!("m{run}.{model}"));
            let o = ad_threads(
                &[
                    "fit",
                    "--quiet",
                    "--config",
                    s(&config),
                    "--data",
                    s(tmp.path()),
                    "--category",
                    "synthetic_small",
                    "--out",
                    s(&out),
                ],
                threads,
            );
            assert!(o.status.success(), "{}", text(&o));
            files.push(std::fs::read(&out).unwrap());
        }
        assert!(
            files[0] == files[1],
            "{model}: 1 thread and 2 threads differ"
        );
        assert!(
            files[1] == files[2],
            "{model}: two runs on 2 threads differ"
        );
    }
}

#[test]
fn bad_input_is_caught_before_fitting() {
    let tmp = tempfile::tempdir().unwrap();
    let (cat, config) = setup(tmp.path(), "patchcore");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "fit".to_string(),
            "--quiet".into(),
            "--config".into(),
            s(&config).into(),
            "--data".into(),
            s(tmp.path()).into(),
            "--category".into(),
            "synthetic_small".into(),
            "--out".into(),
            s(&tmp.path().join("m.patchcore")).into(),
        ];
        v.extend(extra.iter().map(|e| e.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        ad(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // A patch grid below 4x4, a bank smaller than the neighbours, a memory estimate over the
    // limit: errors naming the option, before any image is decoded.
    for (extra, needle) in [
        (&["--image-size", "16"][..], "at least 32"),
        (&["--coreset-count", "2"][..], "fewer than num_neighbors"),
        (&["--image-size", "10000"][..], "--memory-limit"),
    ] {
        let o = run(extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(text(&o).contains(needle), "{extra:?}: {}", text(&o));
        assert!(!text(&o).contains("fitting patchcore"), "{}", text(&o));
    }
    // A corrupt test image stops the run before fitting, naming the file.
    let bad = cat.join("test/good/zz_corrupt.png");
    std::fs::write(&bad, b"\x89PNG but not really").unwrap();
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("zz_corrupt.png"), "{}", text(&o));
    assert!(!text(&o).contains("fitting patchcore"), "{}", text(&o));
    std::fs::remove_file(&bad).unwrap();
    // Hidden and AppleDouble files are skipped, a wide image is a recorded warning.
    std::fs::write(cat.join("train/good/._000.png"), b"AppleDouble").unwrap();
    image::RgbImage::new(256, 64)
        .save(cat.join("train/good/.hidden.png"))
        .unwrap();
    image::RgbImage::new(256, 64)
        .save(cat.join("test/good/wide.png"))
        .unwrap();
    let out = tmp.path().join("run");
    let o = on_small(
        "run",
        &config,
        tmp.path(),
        &out,
        &["--quiet", "--overlays", "0"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("warning: 1 images with another aspect ratio"),
        "{}",
        text(&o)
    );
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(report.contains("wide.png 256x64"), "{report}");
    // --out pointing at a directory where a file is wanted fails before fitting.
    let o = on_small("fit", &config, tmp.path(), tmp.path(), &["--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("is a directory"), "{}", text(&o));
}

#[test]
fn student_trains_with_prototypes_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (cat, _) = setup(tmp.path(), "patchcore");
    let config = tmp.path().join("student.toml");
    std::fs::write(
        &config,
        "model = \"student\"\nweights = { random = { seed = 1 } }\nbatch_size = 4\n\
         hidden = [16]\nepochs = 2\npatch_batch = 256\nprototype_seed = 5\n\
         [preprocess]\nresize = [64, 64]\n\
         [teacher]\nmodel = \"patchcore\"\nweights = { random = { seed = 1 } }\n\
         batch_size = 4\n[teacher.preprocess]\nresize = [64, 64]\n\
         [teacher.coreset]\nsize = { ratio = 0.25 }\n",
    )
    .unwrap();
    let model = tmp.path().join("m.student");
    let fit = |extra: &[&str]| on_small("fit", &config, tmp.path(), &model, extra);
    let o = fit(&["--quiet", "--prototypes", "8"]);
    assert!(o.status.success(), "{}", text(&o));
    let info = text(&ad(&["info", s(&model)]));
    assert!(info.contains("; 8 prototypes (k-means seed 5);"), "{info}");
    // Feature-space anomalies by default.
    assert!(
        info.contains(
            " images and feature-space anomalies (0.25 of the good patches moved, up to 4 \
             median nearest-good-patch distances); "
        ),
        "{info}"
    );
    // The nearest prototype's distance as a skip, set in the config: its slope is shown; and
    // feature-space anomalies from the command line.
    let with_skip = tmp.path().join("skip.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &with_skip,
        toml.replacen("prototype_seed = 5\n", "nearest_skip = true\n", 1),
    )
    .unwrap();
    let skip_model = tmp.path().join("skip.student");
    let o = on_small(
        "fit",
        &with_skip,
        tmp.path(),
        &skip_model,
        &[
            "--quiet",
            "--feature-noise",
            "0.5",
            "--feature-noise-radius",
            "2",
            "--feature-noise-directions",
            "covariance",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let info = text(&ad(&["info", s(&skip_model)]));
    assert!(
        info.contains(
            " images and feature-space anomalies (0.5 of the good patches moved, up to 2 \
             median nearest-good-patch distances, covariance directions); "
        ),
        "{info}"
    );
    assert!(
        info.contains(" prototypes, the nearest one's distance added (slope "),
        "{info}"
    );
    assert!(
        info.contains("; constant learning rate; mean-pooled targets"),
        "{info}"
    );
    assert!(!info.contains("standardised"), "{info}");
    assert!(!info.contains("log1p"), "{info}");
    assert!(!info.contains("image score"), "{info}");
    assert!(!info.contains("backbone on"), "{info}");
    // Default kinds of synthetic anomalies: one copy of every good image per kind.
    assert!(
        info.contains("synthetic (cut-paste, thin-curve, spot) images"),
        "{info}"
    );
    let o = ad(&["predict", s(&model), s(&cat.join("test/crack"))]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(lines(&o).iter().all(|l| l["score"].as_f64().is_some()));
    let o = fit(&[
        "--quiet",
        "--prototypes",
        "0",
        "--anomalies",
        "spot,faint-spot",
        "--synthetic-per-image",
        "2",
        "--lr-schedule",
        "cosine",
        "--target-pool",
        "max",
        "--average-epochs",
        "2",
        "--loss-weights",
        "sqrt-inverse",
        "--standardise-inputs",
        "--target-transform",
        "log1p",
        "--image-score",
        "grid-max",
        "--backbone-size",
        "32",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ad(&["info", s(&model)]);
    assert!(text(&o).contains("; no prototypes"), "{}", text(&o));
    assert!(
        text(&o).contains("; cosine learning rate, weights averaged over 2 epochs;"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains(
            "; max-pooled targets, sqrt-inverse loss weights, standardised inputs, log1p targets; \
             image score = the grid's largest cell, before the blur; backbone on the images \
             resized to 32x32"
        ),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("synthetic (spot, faint-spot) images"),
        "{}",
        text(&o)
    );
    // Two copies of every good image: a spot, a faint spot.
    let counts: Vec<usize> = text(&o)
        .split("trained on ")
        .nth(1)
        .and_then(|t| t.split(" synthetic").next())
        .map(|t| t.split(" good + ").filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    assert!(
        matches!(counts[..], [good, synthetic] if good > 0 && synthetic == 2 * good),
        "{}",
        text(&o)
    );
    let o = fit(&["--quiet", "--anomalies", "perlin"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("perlin"), "{}", text(&o));
    let o = fit(&["--quiet", "--lr-schedule", "linear"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("linear"), "{}", text(&o));
    let o = fit(&["--quiet", "--target-pool", "median"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("median"), "{}", text(&o));
    // The student's backbone sees at most the teacher's pixels.
    let o = fit(&["--quiet", "--backbone-size", "128"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("backbone_size"), "{}", text(&o));
    let o = fit(&["--quiet", "--epochs", "2", "--average-epochs", "3"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("average_epochs"), "{}", text(&o));
    // The flags belong to the student only.
    let o = on_small(
        "fit",
        &tmp.path().join("patchcore.toml"),
        tmp.path(),
        &tmp.path().join("m.patchcore"),
        &["--anomalies", "spot"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--anomalies"), "{}", text(&o));
    let patchcore = tmp.path().join("patchcore.toml");
    let o = on_small(
        "fit",
        &patchcore,
        tmp.path(),
        &tmp.path().join("m.patchcore"),
        &["--prototypes", "8"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--prototypes"), "{}", text(&o));
}

#[test]
fn cflow_trains_and_predicts_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (cat, config) = setup(tmp.path(), "cflow");
    let model = tmp.path().join("m.cflow");
    // Not quiet: the loss of every epoch is reported (on stderr without a terminal).
    let o = on_small("fit", &config, tmp.path(), &model, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("epoch 2/2: loss"), "{}", text(&o));
    let o = ad(&["info", s(&model)]);
    assert!(text(&o).contains("coupling blocks"), "{}", text(&o));
    let o = ad(&["predict", s(&model), s(&cat.join("test/crack"))]);
    assert!(o.status.success(), "{}", text(&o));
    let loaded = ad_cflow::Cflow::load(&model, &Device::default()).unwrap();
    for line in lines(&o) {
        let path = PathBuf::from(line["path"].as_str().unwrap());
        let p = loaded
            .predict_image(&ad_mvtec::decode::load_rgb(&path).unwrap())
            .unwrap();
        let score = line["score"].as_f64().unwrap() as f32;
        assert_eq!(score.to_bits(), p.score.to_bits(), "{}", path.display());
    }
}

#[test]
fn parity_of_the_cpu_with_itself_is_exact_and_unknown_devices_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("parity.json");
    let o = ad(&[
        "parity",
        "--device",
        "cpu",
        "--only",
        "patchcore,padim",
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("all pass"), "{}", text(&o));
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        // Same device twice: the runs are deterministic, so nothing differs.
        for key in ["loaded_score_diff", "loaded_map_diff", "fitted_score_diff"] {
            assert_eq!(row[key].as_f64(), Some(0.0), "{key}: {row}");
        }
    }
    let o = ad(&["parity", "--device", "cpu", "--only", "nonsense"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--only nonsense"), "{}", text(&o));
    let o = ad(&["parity", "--device", "no-such-gpu"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("unknown or disabled device"),
        "{}",
        text(&o)
    );
}

/// `ad ... | head`: a reader that has gone ends `ad` quietly (the default SIGPIPE action), not
/// with a panic and a backtrace.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_ad_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_ad"))
        .args(["run", "--model", "patchcore", "--print-config"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run ad");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        o.status
    );
}
