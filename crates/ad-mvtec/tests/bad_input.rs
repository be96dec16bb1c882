//! Every kind of bad input gives a typed error naming the file, never a panic.

use std::fs;
use std::path::Path;

use ad_core::{PreprocessConfig, Preprocessor};
use ad_mvtec::decode::{load_mask, load_rgb};
use ad_mvtec::{BatchLoader, DatasetError, FolderConfig, MvtecCategory, SyntheticConfig};

fn small_category(root: &Path) -> std::path::PathBuf {
    SyntheticConfig {
        size: 32,
        train: 3,
        test_good: 1,
        per_defect: 1,
        ..SyntheticConfig::small()
    }
    .generate(root)
    .unwrap()
}

#[test]
fn missing_root_and_category() {
    let tmp = tempfile::tempdir().unwrap();
    let err = MvtecCategory::open(tmp.path().join("nope"), "bottle").unwrap_err();
    assert!(matches!(err, DatasetError::MissingDir { ref path } if path.ends_with("nope/bottle")));
}

#[test]
fn category_that_is_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("bottle"), b"x").unwrap();
    let err = MvtecCategory::open(tmp.path(), "bottle").unwrap_err();
    assert!(matches!(
        err,
        DatasetError::WrongKind {
            expected: "directory",
            ..
        }
    ));
}

#[test]
fn empty_train_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_category(tmp.path());
    for f in fs::read_dir(dir.join("train/good")).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    let err = MvtecCategory::open(tmp.path(), "synthetic_small").unwrap_err();
    assert!(
        matches!(err, DatasetError::EmptyTrainSet { ref path } if path.ends_with("train/good"))
    );
}

#[test]
fn defective_image_without_mask_is_image_level() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_category(tmp.path());
    fs::remove_file(dir.join("ground_truth/spot/000_mask.png")).unwrap();
    // Image-level label only: the image is kept, without a mask, and counted.
    let cat = MvtecCategory::open(tmp.path(), "synthetic_small").unwrap();
    let s = cat
        .splits
        .test
        .iter()
        .find(|s| s.path.ends_with("test/spot/000.png"))
        .unwrap();
    assert!(s.is_anomalous && s.mask.is_none());
    assert_eq!(cat.splits.anomalous_without_mask(), 1);
    // A whole defect type without a ground_truth folder is image-level too.
    fs::remove_dir_all(dir.join("ground_truth/spot")).unwrap();
    let cat = MvtecCategory::open(tmp.path(), "synthetic_small").unwrap();
    let spots = cat
        .splits
        .test
        .iter()
        .filter(|s| s.defect == "spot")
        .count();
    assert!(spots >= 1);
    assert_eq!(cat.splits.anomalous_without_mask(), spots);
}

#[test]
fn mask_without_image_names_both() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_category(tmp.path());
    fs::copy(
        dir.join("ground_truth/crack/000_mask.png"),
        dir.join("ground_truth/crack/007_mask.png"),
    )
    .unwrap();
    match MvtecCategory::open(tmp.path(), "synthetic_small").unwrap_err() {
        DatasetError::OrphanMask {
            mask,
            expected_image,
        } => {
            assert!(mask.ends_with("ground_truth/crack/007_mask.png"));
            assert!(expected_image.ends_with("test/crack/007.png"));
        }
        e => panic!("unexpected {e}"),
    }
}

#[test]
fn directory_where_a_file_should_be() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_category(tmp.path());
    fs::create_dir(dir.join("train/good/999.png")).unwrap();
    let err = MvtecCategory::open(tmp.path(), "synthetic_small").unwrap_err();
    assert!(
        matches!(err, DatasetError::WrongKind { ref path, expected: "file" } if path.ends_with("999.png"))
    );
    // Decoding a directory directly is the same typed error.
    assert!(matches!(
        load_rgb(&dir.join("train/good/999.png")),
        Err(DatasetError::WrongKind { .. })
    ));
}

#[test]
fn zero_byte_truncated_and_garbage_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_category(tmp.path());
    let good = dir.join("train/good/000.png");
    let bytes = fs::read(&good).unwrap();

    let empty = tmp.path().join("empty.png");
    fs::write(&empty, b"").unwrap();
    assert!(
        matches!(load_rgb(&empty), Err(DatasetError::EmptyFile { ref path }) if *path == empty)
    );

    let truncated = tmp.path().join("truncated.png");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(
        matches!(load_rgb(&truncated), Err(DatasetError::Decode { ref path, .. }) if *path == truncated)
    );

    let garbage = tmp.path().join("garbage.jpg");
    fs::write(&garbage, b"this is not an image at all").unwrap();
    assert!(matches!(
        load_rgb(&garbage),
        Err(DatasetError::Decode { .. })
    ));

    let missing = tmp.path().join("missing.png");
    assert!(matches!(load_rgb(&missing), Err(DatasetError::Io { .. })));

    // A truncated training image surfaces through the loader as the same error.
    fs::write(&good, &bytes[..bytes.len() / 2]).unwrap();
    let cat = MvtecCategory::open(tmp.path(), "synthetic_small").unwrap();
    let pre = Preprocessor::new(PreprocessConfig::default().with_size(32, 32)).unwrap();
    let first = BatchLoader::new(&cat.splits.train, pre, 2).next().unwrap();
    assert!(
        matches!(first, Err(DatasetError::Decode { ref path, .. }) if path.ends_with("000.png"))
    );
}

#[test]
fn mask_of_another_size_is_resized() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_category(tmp.path());
    let mask_path = dir.join("ground_truth/spot/000_mask.png");
    let mask = load_mask(&mask_path).unwrap();
    // Store the mask at twice the image size.
    let big = mask.resize_nearest(64, 64).unwrap();
    let bytes: Vec<u8> = big
        .as_slice()
        .iter()
        .map(|&m| if m { 255 } else { 0 })
        .collect();
    image::GrayImage::from_raw(64, 64, bytes)
        .unwrap()
        .save(&mask_path)
        .unwrap();
    let cat = MvtecCategory::open(tmp.path(), "synthetic_small").unwrap();
    let pre = Preprocessor::new(PreprocessConfig::default().with_size(32, 32)).unwrap();
    let spot: Vec<_> = cat
        .splits
        .test
        .iter()
        .filter(|s| s.defect == "spot")
        .cloned()
        .collect();
    let batch = BatchLoader::new(&spot, pre, 4).next().unwrap().unwrap();
    let m = batch.masks[0].as_ref().unwrap();
    assert_eq!((m.width(), m.height()), (32, 32));
    assert_eq!(m.as_slice(), mask.as_slice());
}

#[test]
fn folder_dataset_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = FolderConfig::new("line", tmp.path().join("none"))
        .open()
        .unwrap_err();
    assert!(matches!(err, DatasetError::MissingDir { .. }));
    let err = FolderConfig::default().open().unwrap_err();
    assert!(matches!(
        err,
        DatasetError::InvalidParameter {
            name: "normal_dirs",
            ..
        }
    ));
    let dir = small_category(tmp.path());
    let err = FolderConfig::new("line", dir.join("train/good"))
        .with_split(1.5, 0)
        .open()
        .unwrap_err();
    assert!(matches!(
        err,
        DatasetError::InvalidParameter {
            name: "test_split_ratio",
            ..
        }
    ));
}
