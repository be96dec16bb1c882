//! Property tests of the decoder: whatever bytes a file holds, `read_dims` and `load_rgb`
//! return a typed result and never panic; forged headers cannot make it allocate gigabytes.

use std::io::Cursor;
use std::path::Path;

use ad_mvtec::decode::{MAX_SIDE, load_mask, load_rgb, read_dims};
use proptest::prelude::*;

const FORMATS: [(&str, image::ImageFormat); 4] = [
    ("png", image::ImageFormat::Png),
    ("jpg", image::ImageFormat::Jpeg),
    ("bmp", image::ImageFormat::Bmp),
    ("tiff", image::ImageFormat::Tiff),
];

fn encoded(format: image::ImageFormat, w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed.wrapping_mul(3)])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// Decoding `bytes` as `name` must not panic; the result is whatever it is.
fn decode_all(dir: &Path, name: &str, bytes: &[u8]) -> (bool, bool) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let dims = read_dims(&p);
    let rgb = load_rgb(&p);
    let _ = load_mask(&p);
    if let (Ok((w, h)), Ok(img)) = (&dims, &rgb) {
        assert_eq!((*w, *h), (img.width(), img.height()));
    }
    (dims.is_ok(), rgb.is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), f in 0usize..4) {
        let dir = tempfile::tempdir().unwrap();
        decode_all(dir.path(), &format!("x.{}", FORMATS[f].0), &bytes);
    }

    #[test]
    fn truncated_images_never_panic(f in 0usize..4, w in 1u32..40, h in 1u32..40, seed in any::<u8>(), cut in 0.0f64..1.0) {
        let dir = tempfile::tempdir().unwrap();
        let (ext, format) = FORMATS[f];
        let full = encoded(format, w, h, seed);
        let (_, whole) = decode_all(dir.path(), &format!("full.{ext}"), &full);
        prop_assert!(whole, "the untruncated {ext} must decode");
        let n = ((full.len() as f64) * cut) as usize;
        decode_all(dir.path(), &format!("cut.{ext}"), &full[..n]);
    }

    #[test]
    fn flipped_bytes_never_panic(f in 0usize..4, pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let dir = tempfile::tempdir().unwrap();
        let (ext, format) = FORMATS[f];
        let mut bytes = encoded(format, 17, 11, 5);
        let i = pos.index(bytes.len());
        bytes[i] ^= mask;
        decode_all(dir.path(), &format!("flip.{ext}"), &bytes);
    }
}

/// A PNG whose header claims `w x h` (valid chunk CRC), with one tiny data chunk.
fn forged_png(w: u32, h: u32) -> Vec<u8> {
    let mut png = encoded(image::ImageFormat::Png, 1, 1, 0);
    // Signature (8) + IHDR length (4) + "IHDR" (4): width and height follow.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn forged_headers_are_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    for (w, h) in [(MAX_SIDE + 1, 8), (100_000, 100_000), (30_000, 30_000)] {
        let p = dir.path().join("forged.png");
        std::fs::write(&p, forged_png(w, h)).unwrap();
        let t = std::time::Instant::now();
        let dims = read_dims(&p);
        let rgb = load_rgb(&p);
        assert!(rgb.is_err(), "{w}x{h} decoded");
        if w > MAX_SIDE || h > MAX_SIDE {
            assert!(dims.is_err(), "{w}x{h} passed the header check");
        }
        // 30,000 x 30,000 RGB would be 2.7 GB: refused by the allocation limit, quickly.
        assert!(t.elapsed().as_secs_f64() < 5.0);
    }
}
