//! Opening datasets: the generated category, folder datasets, image modes and formats, and the
//! real MVTec AD bottle category when `../shared/datasets` is present.

use std::path::{Path, PathBuf};

use ad_core::{PreprocessConfig, Preprocessor};
use ad_mvtec::decode::{load_mask, load_rgb};
use ad_mvtec::{BatchLoader, FolderConfig, MvtecCategory, SyntheticConfig};
use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};

fn shared_bottle() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/mvtec_ad");
    if root.join("bottle").is_dir() {
        Some(root)
    } else {
        println!(
            "SKIPPED: {} not found (real MVTec AD bottle)",
            root.display()
        );
        None
    }
}

#[test]
fn generated_category_opens_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig::small();
    let dir = cfg.ensure(tmp.path()).unwrap();
    // A second ensure() finds the same marker and does not regenerate.
    let before = std::fs::metadata(dir.join("train/good/000.png"))
        .unwrap()
        .modified()
        .unwrap();
    cfg.ensure(tmp.path()).unwrap();
    let after = std::fs::metadata(dir.join("train/good/000.png"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);

    let cat = MvtecCategory::open(tmp.path(), &cfg.name).unwrap();
    assert_eq!(cat.splits.train.len(), cfg.train);
    assert_eq!(cat.splits.test.len(), cfg.test_good + 4 * cfg.per_defect);
    assert_eq!(cat.splits.test_anomalous(), 4 * cfg.per_defect);
    assert_eq!(
        cat.splits.defect_types(),
        vec!["crack", "good", "missing", "scratch", "spot"]
    );
    let pre = Preprocessor::new(PreprocessConfig::default().with_size(48, 48)).unwrap();
    let loader = BatchLoader::new(&cat.splits.test, pre, 3);
    assert_eq!(loader.num_batches(), cat.splits.test.len().div_ceil(3));
    let batches = loader.load_all().unwrap();
    let mut n = 0;
    for b in &batches {
        assert_eq!(b.images.height(), 48);
        for (s, m) in b.samples.iter().zip(&b.masks) {
            let m = m.as_ref().unwrap();
            assert_eq!((m.width(), m.height()), (48, 48));
            assert_eq!(s.is_anomalous, m.count() > 0, "{}", s.path.display());
            n += 1;
        }
    }
    assert_eq!(n, cat.splits.test.len());
}

#[test]
fn image_modes_and_formats_decode_to_rgb() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h) = (7u32, 5u32);
    let rgb = ImageBuffer::from_fn(w, h, |x, y| Rgb([x as u8 * 30, y as u8 * 40, 200]));
    let cases: Vec<(&str, DynamicImage)> = vec![
        ("rgb.png", DynamicImage::ImageRgb8(rgb.clone())),
        (
            "l.png",
            DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, _| Luma([x as u8 * 30]))),
        ),
        (
            "la.png",
            DynamicImage::ImageLumaA8(ImageBuffer::from_fn(w, h, |x, _| LumaA([x as u8 * 30, 9]))),
        ),
        (
            "rgba.png",
            DynamicImage::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
                Rgba([x as u8 * 30, y as u8 * 40, 200, 17])
            })),
        ),
        (
            "rgb16.png",
            DynamicImage::ImageRgb16(ImageBuffer::from_fn(w, h, |x, y| {
                Rgb([x as u16 * 30 * 257, y as u16 * 40 * 257, 200 * 257])
            })),
        ),
        (
            "l16.tiff",
            DynamicImage::ImageLuma16(ImageBuffer::from_fn(w, h, |x, _| {
                Luma([x as u16 * 30 * 257])
            })),
        ),
        ("rgb.bmp", DynamicImage::ImageRgb8(rgb.clone())),
        ("rgb.tif", DynamicImage::ImageRgb8(rgb.clone())),
    ];
    for (name, img) in cases {
        let p = tmp.path().join(name);
        img.save(&p).unwrap();
        let got = load_rgb(&p).unwrap();
        assert_eq!((got.width(), got.height()), (7, 5), "{name}");
        let px = got.pixel(3, 2).unwrap();
        if name.starts_with('l') {
            assert_eq!(px, [90, 90, 90], "{name}");
        } else {
            assert_eq!(px, [90, 80, 200], "{name}");
        }
    }
    // JPEG is lossy: check it decodes to the right size and roughly the right colour.
    let p = tmp.path().join("rgb.jpg");
    DynamicImage::ImageRgb8(rgb).save(&p).unwrap();
    let got = load_rgb(&p).unwrap();
    assert_eq!((got.width(), got.height()), (7, 5));
    assert!((got.pixel(3, 2).unwrap()[2] as i32 - 200).abs() < 30);
}

#[test]
fn folder_dataset_split_and_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig {
        train: 10,
        ..SyntheticConfig::small()
    };
    let dir = cfg.generate(tmp.path()).unwrap();
    let folder = FolderConfig::new("line", dir.join("train/good"))
        .with_abnormal_dir(dir.join("test/spot"))
        .with_mask_dir(dir.join("ground_truth/spot"))
        .with_split(0.3, 11);
    let a = folder.open().unwrap();
    let b = folder.open().unwrap();
    assert_eq!(a, b, "seeded split is deterministic");
    assert_eq!(a.splits.train.len(), 7);
    assert_eq!(a.splits.test.iter().filter(|s| !s.is_anomalous).count(), 3);
    let spot: Vec<_> = a.splits.test.iter().filter(|s| s.is_anomalous).collect();
    assert_eq!(spot.len(), cfg.per_defect);
    assert!(spot.iter().all(|s| s.mask.is_some() && s.defect == "spot"));
    // A different seed gives a different split.
    let c = folder.clone().with_split(0.3, 12).open().unwrap();
    assert_ne!(a.splits.train, c.splits.train);
    // With a normal test dir nothing is split off.
    let d = FolderConfig::new("line", dir.join("train/good"))
        .with_normal_test_dir(dir.join("test/good"))
        .open()
        .unwrap();
    assert_eq!(d.splits.train.len(), 10);
    assert_eq!(d.splits.test.len(), cfg.test_good);
}

#[test]
fn real_mvtec_bottle() {
    let Some(root) = shared_bottle() else { return };
    let cat = MvtecCategory::open(&root, "bottle").unwrap();
    assert_eq!(cat.splits.train.len(), 209);
    assert_eq!(cat.splits.test.len(), 83);
    assert_eq!(
        cat.splits.defect_types(),
        vec!["broken_large", "broken_small", "contamination", "good"]
    );
    let with_mask: Vec<_> = cat
        .splits
        .test
        .iter()
        .filter(|s| s.mask.is_some())
        .collect();
    assert_eq!(with_mask.len(), 63);
    for s in &with_mask {
        let mask_path = s.mask.as_ref().unwrap();
        let stem = s.stem();
        assert!(mask_path.ends_with(format!("{}/{stem}_mask.png", s.defect)));
        // Every mask is binary (0/255) and non-empty.
        let img = image::open(mask_path).unwrap().to_luma8();
        assert!(img.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
        let m = load_mask(mask_path).unwrap();
        assert!(m.count() > 0);
        assert_eq!((m.width(), m.height()), (512, 512));
    }
    // Decode and preprocess a few images of each group.
    let pre = Preprocessor::new(PreprocessConfig::default()).unwrap();
    let picks: Vec<_> = cat.splits.test.iter().step_by(10).cloned().collect();
    for b in BatchLoader::new(&picks, pre, 4) {
        let b = b.unwrap();
        assert_eq!(b.images.shape()[1..], [3, 256, 256]);
        let v = b.images.as_slice();
        assert!(v.iter().all(|x| x.is_finite() && x.abs() < 3.0));
    }
}
