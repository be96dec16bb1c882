//! Tiling: scoring images larger than a detector's input by overlapping tiles.
//!
//! A camera image of several megapixels squeezed to 256 px loses its small defects. A tiled
//! detector instead preprocesses the image to its full working size (`preprocess.resize`,
//! e.g. 1024 x 1024 or the native size), cuts it into tiles of the detector's input size at a
//! stride ([`TileLayout`]), runs the detector on every tile, and stitches the tile maps back
//! (overlapping pixels get the mean of their tiles); the image score is the largest tile
//! score. Fitting sees the tiles of the good images. The backbone only ever runs on tiles, so
//! its memory is set by the tile size, not by the image size.
//!
//! [`Tiled`] wraps any [`Detector`]: one model for every tile position (default), or one model
//! per position ([`TilingConfig::ensemble`], anomalib's tiled ensemble), useful when parts are
//! aligned and each region has its own look.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    AnomalyMap, BoxError, CoreError, Detector, EpochCallback, FitSummary, ImageBatch, Prediction,
    PreprocessConfig, Preprocessor, Threshold,
};

/// How images are cut into tiles. In a config file:
///
/// ```toml
/// [tiling]
/// tile = [256, 256]
/// stride = [224, 224]
/// ensemble = false
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TilingConfig {
    /// Tile size `(height, width)` in pixels of the preprocessed image: the detector's input.
    pub tile: (usize, usize),
    /// Step between tile origins `(y, x)`; `None` = the tile size (no overlap). The last tile
    /// of every row and column is moved back to end at the image border, so every tile is whole.
    pub stride: Option<(usize, usize)>,
    /// One model per tile position (tiled ensemble) instead of one model for all tiles.
    pub ensemble: bool,
}

impl Default for TilingConfig {
    fn default() -> Self {
        Self {
            tile: (256, 256),
            stride: None,
            ensemble: false,
        }
    }
}

impl TilingConfig {
    /// The tile origins over preprocessed images of `image = (height, width)`.
    pub fn layout(&self, image: (usize, usize)) -> Result<TileLayout, CoreError> {
        TileLayout::new(image, self.tile, self.stride.unwrap_or(self.tile))
    }
}

/// Tile origins over one image size.
#[derive(Clone, Debug, PartialEq)]
pub struct TileLayout {
    image: (usize, usize),
    tile: (usize, usize),
    origins: Vec<(usize, usize)>,
}

/// Origins along one axis: `0, stride, 2 stride, ...`, the last one moved to `size - tile`.
fn axis(size: usize, tile: usize, stride: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut o = 0;
    loop {
        if o + tile >= size {
            v.push(size - tile);
            return v;
        }
        v.push(o);
        o += stride;
    }
}

impl TileLayout {
    /// Tiles of `tile` at `stride` over an image of `image`, row by row.
    ///
    /// # Errors
    /// [`CoreError::InvalidParameter`] (`tiling`) for a zero size or stride, a tile larger
    /// than the image, or a stride larger than the tile (pixels no tile would cover).
    pub fn new(
        image: (usize, usize),
        tile: (usize, usize),
        stride: (usize, usize),
    ) -> Result<Self, CoreError> {
        let bad = |reason: String| CoreError::InvalidParameter {
            name: "tiling",
            reason,
        };
        if tile.0 == 0 || tile.1 == 0 || stride.0 == 0 || stride.1 == 0 {
            return Err(bad(format!(
                "tile {tile:?} and stride {stride:?} must be positive"
            )));
        }
        if tile.0 > image.0 || tile.1 > image.1 {
            return Err(bad(format!(
                "a {}x{} tile does not fit a {}x{} image: use smaller tiles or a larger \
                 preprocess.resize",
                tile.0, tile.1, image.0, image.1
            )));
        }
        if stride.0 > tile.0 || stride.1 > tile.1 {
            return Err(bad(format!(
                "stride {stride:?} is larger than the tile {tile:?}: some pixels would be in no tile"
            )));
        }
        let ys = axis(image.0, tile.0, stride.0);
        let xs = axis(image.1, tile.1, stride.1);
        let origins = ys
            .iter()
            .flat_map(|&y| xs.iter().map(move |&x| (y, x)))
            .collect();
        Ok(Self {
            image,
            tile,
            origins,
        })
    }

    /// Number of tiles per image.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// Always false: a layout has at least one tile.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Tile origins `(y, x)`, row by row.
    pub fn origins(&self) -> &[(usize, usize)] {
        &self.origins
    }

    /// Tile size `(height, width)`.
    pub fn tile(&self) -> (usize, usize) {
        self.tile
    }

    /// Image size `(height, width)`.
    pub fn image(&self) -> (usize, usize) {
        self.image
    }

    /// Cuts a row-major `image.0 x image.1` map into tile maps (in [`TileLayout::origins`] order).
    pub fn split(&self, map: &[f32]) -> Result<Vec<Vec<f32>>, CoreError> {
        let (h, w) = self.image;
        if map.len() != h * w {
            return Err(CoreError::BufferSize {
                what: "map to split",
                width: w,
                height: h,
                channels: 1,
                expected: h * w,
                actual: map.len(),
            });
        }
        let (th, tw) = self.tile;
        Ok(self
            .origins
            .iter()
            .map(|&(y0, x0)| {
                (y0..y0 + th)
                    .flat_map(|y| map[y * w + x0..y * w + x0 + tw].iter().copied())
                    .collect()
            })
            .collect())
    }

    /// Stitches tile maps (one per origin, `tile.0 x tile.1` each) into one image map;
    /// pixels covered by several tiles get their mean (accumulated in f64, so a map split and
    /// stitched back is returned bit for bit).
    ///
    /// # Shapes
    /// `maps`: [`TileLayout::len`] slices of `tile.0 * tile.1`; result `image.0 * image.1`.
    pub fn stitch<M: AsRef<[f32]>>(&self, maps: &[M]) -> Result<Vec<f32>, CoreError> {
        let (h, w) = self.image;
        let (th, tw) = self.tile;
        if maps.len() != self.origins.len() {
            return Err(CoreError::InvalidParameter {
                name: "tiling",
                reason: format!(
                    "{} tile maps for a layout of {} tiles",
                    maps.len(),
                    self.origins.len()
                ),
            });
        }
        let mut sum = vec![0.0f64; h * w];
        let mut count = vec![0u32; h * w];
        for (m, &(y0, x0)) in maps.iter().zip(&self.origins) {
            let m = m.as_ref();
            if m.len() != th * tw {
                return Err(CoreError::BufferSize {
                    what: "tile map",
                    width: tw,
                    height: th,
                    channels: 1,
                    expected: th * tw,
                    actual: m.len(),
                });
            }
            for y in 0..th {
                let row = (y0 + y) * w + x0;
                for (x, &v) in m[y * tw..(y + 1) * tw].iter().enumerate() {
                    sum[row + x] += v as f64;
                    count[row + x] += 1;
                }
            }
        }
        Ok(sum
            .iter()
            .zip(&count)
            .map(|(&s, &c)| (s / c.max(1) as f64) as f32)
            .collect())
    }
}

/// The 8 bytes that open a tiled model file.
pub const MAGIC: &[u8; 8] = b"ADTILED\0";
/// Version of the tiled file format.
pub const FORMAT_VERSION: u32 = 1;

/// Header of a tiled model file; the payload is the members' own model files, one after the
/// other (`member_bytes` gives their lengths).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Header {
    detector: String,
    tiling: TilingConfig,
    preprocess: PreprocessConfig,
    tiles: usize,
    member_bytes: Vec<u64>,
    threshold: Option<Threshold>,
}

/// A detector run tile by tile (see the module documentation): [`Tiled::new`] takes the
/// tiling, the preprocessing of the whole image and a constructor of unfitted members.
///
/// ```
/// use ad_core::tiling::TilingConfig;
///
/// // 1024 px images, 256 px tiles overlapping by 32 px: 5 x 5 tiles.
/// let tiling = TilingConfig { tile: (256, 256), stride: Some((224, 224)), ensemble: false };
/// let layout = tiling.layout((1024, 1024))?;
/// assert_eq!(layout.len(), 25);
/// assert_eq!(layout.origins()[4], (0, 768)); // the last column ends at the border
/// # Ok::<(), ad_core::CoreError>(())
/// ```
pub struct Tiled<D: Detector + ?Sized> {
    tiling: TilingConfig,
    layout: TileLayout,
    preprocessor: Preprocessor,
    members: Vec<Box<D>>,
    threshold: Option<Threshold>,
}

impl<D: Detector + ?Sized> std::fmt::Debug for Tiled<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiled")
            .field("tiling", &self.tiling)
            .field("tiles", &self.layout.len())
            .field("members", &self.members.len())
            .finish()
    }
}

impl<D: Detector + ?Sized> Tiled<D> {
    /// A tiled detector over images preprocessed by `preprocess`; `make` builds one unfitted
    /// member (called once, or once per tile position for an ensemble), whose preprocessing
    /// must output tiles of exactly `tiling.tile`.
    pub fn new(
        tiling: TilingConfig,
        preprocess: PreprocessConfig,
        mut make: impl FnMut() -> Result<Box<D>, D::Error>,
    ) -> Result<Self, D::Error> {
        let preprocessor = Preprocessor::new(preprocess)?;
        let layout = tiling.layout(preprocessor.output_size())?;
        let n = if tiling.ensemble { layout.len() } else { 1 };
        let members = (0..n).map(|_| make()).collect::<Result<Vec<_>, _>>()?;
        Self::assemble(tiling, preprocessor, layout, members, None)
    }

    fn assemble(
        tiling: TilingConfig,
        preprocessor: Preprocessor,
        layout: TileLayout,
        members: Vec<Box<D>>,
        threshold: Option<Threshold>,
    ) -> Result<Self, D::Error> {
        for m in &members {
            let got = m.preprocessor().output_size();
            if got != tiling.tile {
                return Err(CoreError::InvalidParameter {
                    name: "tiling",
                    reason: format!(
                        "the tiled detector's preprocessing outputs {got:?}, not the tile size {:?}",
                        tiling.tile
                    ),
                }
                .into());
            }
        }
        Ok(Self {
            tiling,
            layout,
            preprocessor,
            members,
            threshold,
        })
    }

    /// The tiling parameters.
    pub fn tiling(&self) -> &TilingConfig {
        &self.tiling
    }

    /// The tile origins over the preprocessed image.
    pub fn layout(&self) -> &TileLayout {
        &self.layout
    }

    /// The member detectors: one, or one per tile position.
    pub fn members(&self) -> &[Box<D>] {
        &self.members
    }

    /// Tile batches of member `j`'s share of `batch`: all tiles of every image (single
    /// model, in chunks of its batch size) or position `j` of every image (ensemble).
    fn tile_batches(&self, batch: &ImageBatch, j: usize) -> Result<Vec<ImageBatch>, CoreError> {
        let bs = self.members[0].batch_size().max(1);
        cut(&self.layout, self.tiling.ensemble.then_some(j), bs, batch)
    }

    /// Fits (`add = false`) or adds to (`add = true`) every member from the outer stream.
    fn feed<I, E>(&mut self, batches: I, add: bool) -> Result<FitSummary, D::Error>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        let mut images = 0usize;
        let mut summary = FitSummary::default();
        let mut merge = |s: FitSummary| {
            summary.features += s.features;
            summary.memory_rows += s.memory_rows;
            summary.extract_time += s.extract_time;
            summary.build_time += s.build_time;
        };
        if !self.tiling.ensemble {
            // One model: the tiles stream through as the outer batches arrive.
            let layout = self.layout.clone();
            let member = &mut self.members[0];
            let bs = member.batch_size().max(1);
            let counted = &mut images;
            let stream = batches.into_iter().flat_map(|b| {
                let tiles: Vec<Result<ImageBatch, BoxError>> = match b {
                    Err(e) => vec![Err(e.into())],
                    Ok(b) => {
                        *counted += b.len();
                        match cut(&layout, None, bs, &b) {
                            Ok(t) => t.into_iter().map(Ok).collect(),
                            Err(e) => vec![Err(Box::new(e) as BoxError)],
                        }
                    }
                };
                tiles
            });
            merge(if add {
                member.add(stream)?
            } else {
                member.fit(stream)?
            });
        } else {
            // An ensemble: each member needs its position of every image; the crops are kept
            // per position (the outer stream is read once) and each member fitted in turn.
            let mut per: Vec<Vec<ImageBatch>> = vec![Vec::new(); self.members.len()];
            for b in batches {
                let b = b.map_err(|e| CoreError::Input(e.into()))?;
                images += b.len();
                for (j, p) in per.iter_mut().enumerate() {
                    p.extend(self.tile_batches(&b, j)?);
                }
            }
            for (member, crops) in self.members.iter_mut().zip(per) {
                let stream = crops.into_iter().map(Ok::<_, CoreError>);
                merge(if add {
                    member.add(stream)?
                } else {
                    member.fit(stream)?
                });
            }
        }
        summary.images = images;
        Ok(summary)
    }

    /// Writes the model: the tiling header and the members' own model files, in one
    /// checksummed container (atomically).
    pub fn save_tiled(&self, path: &Path) -> Result<(), D::Error> {
        let (payload, member_bytes) = pack_members(&self.members, path)?;
        let header = Header {
            detector: self.members[0].name().to_string(),
            tiling: self.tiling.clone(),
            preprocess: self.preprocessor.config().clone(),
            tiles: self.layout.len(),
            member_bytes,
            threshold: self.threshold.clone(),
        };
        Ok(crate::model_file::save_json(
            path,
            MAGIC,
            FORMAT_VERSION,
            &header,
            &payload,
        )?)
    }

    /// Loads a model written by [`Tiled::save_tiled`]; `load` opens one member's model file
    /// (e.g. the registry's loader, which picks the detector by the file's magic bytes).
    pub fn load_with(
        path: &Path,
        load: impl FnMut(&Path) -> Result<Box<D>, D::Error>,
    ) -> Result<Self, D::Error> {
        let (header, bytes, payload): (Header, _, _) =
            crate::model_file::read_json(path, MAGIC, FORMAT_VERSION, "tiled")?;
        let bad = |reason: String| CoreError::BadModelFile {
            path: path.to_path_buf(),
            reason,
        };
        let preprocessor = Preprocessor::new(header.preprocess)?;
        let layout = header.tiling.layout(preprocessor.output_size())?;
        let expected = if header.tiling.ensemble {
            layout.len()
        } else {
            1
        };
        if header.member_bytes.len() != expected || header.tiles != layout.len() {
            return Err(bad(format!(
                "{} members for {} tiles ({} expected)",
                header.member_bytes.len(),
                layout.len(),
                expected
            ))
            .into());
        }
        let members = unpack_members(path, &bytes[payload], &header.member_bytes, load)?;
        Self::assemble(
            header.tiling,
            preprocessor,
            layout,
            members,
            header.threshold,
        )
    }
}

/// The tile batches of `batch` over `layout`: every tile of every image in chunks of `bs`
/// (`position = None`), or one position of every image.
fn cut(
    layout: &TileLayout,
    position: Option<usize>,
    bs: usize,
    batch: &ImageBatch,
) -> Result<Vec<ImageBatch>, CoreError> {
    if (batch.height(), batch.width()) != layout.image() {
        return Err(CoreError::InvalidParameter {
            name: "batch",
            reason: format!(
                "images of {}x{}, the tiled detector takes {}x{} (its preprocessing)",
                batch.height(),
                batch.width(),
                layout.image().0,
                layout.image().1
            ),
        });
    }
    let tile = layout.tile();
    if let Some(j) = position {
        return Ok(vec![batch.crop(layout.origins()[j], tile)?]);
    }
    let mut out = Vec::new();
    for i in 0..batch.len() {
        for chunk in layout.origins().chunks(bs.max(1)) {
            out.push(batch.tiles(i, chunk, tile)?);
        }
    }
    Ok(out)
}

/// The model files of `members`, one after another, and their lengths: the payload of a
/// container model (tiled, ensemble) saved to `path` (each member is written to a scratch file
/// next to it, read back and removed).
pub(crate) fn pack_members<D: Detector + ?Sized>(
    members: &[Box<D>],
    path: &Path,
) -> Result<(Vec<u8>, Vec<u64>), D::Error> {
    let mut payload = Vec::new();
    let mut member_bytes = Vec::new();
    for (j, m) in members.iter().enumerate() {
        let tmp = scratch_path(path, j);
        let saved = m.save(&tmp);
        let bytes = std::fs::read(&tmp);
        let _ = std::fs::remove_file(&tmp);
        saved?;
        let bytes = bytes.map_err(|source| CoreError::Io { path: tmp, source })?;
        member_bytes.push(bytes.len() as u64);
        payload.extend_from_slice(&bytes);
    }
    Ok((payload, member_bytes))
}

/// The members of a container model read from `path`: `payload` cut at `member_bytes`, each
/// part opened by `load` (through a scratch file, removed afterwards).
pub(crate) fn unpack_members<D: Detector + ?Sized>(
    path: &Path,
    payload: &[u8],
    member_bytes: &[u64],
    mut load: impl FnMut(&Path) -> Result<Box<D>, D::Error>,
) -> Result<Vec<Box<D>>, D::Error> {
    let total: u64 = member_bytes.iter().sum();
    if total != payload.len() as u64 || member_bytes.is_empty() {
        return Err(CoreError::BadModelFile {
            path: path.to_path_buf(),
            reason: format!("{total} member bytes announced, {} present", payload.len()),
        }
        .into());
    }
    let mut members = Vec::with_capacity(member_bytes.len());
    let mut at = 0usize;
    for (j, &len) in member_bytes.iter().enumerate() {
        let len = len as usize;
        let tmp = scratch_path(&std::env::temp_dir().join("member"), j);
        std::fs::write(&tmp, &payload[at..at + len]).map_err(|source| CoreError::Io {
            path: tmp.clone(),
            source,
        })?;
        let member = load(&tmp);
        let _ = std::fs::remove_file(&tmp);
        members.push(member?);
        at += len;
    }
    Ok(members)
}

/// A scratch file for member `j` next to `base`, unique to this process and call.
fn scratch_path(base: &Path, j: usize) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = base
        .file_name()
        .map_or_else(|| "model".into(), |f| f.to_string_lossy().into_owned());
    base.with_file_name(format!(".{name}.{}.{n}.member{j}.tmp", std::process::id()))
}

impl<D: Detector + ?Sized> Detector for Tiled<D> {
    type Error = D::Error;

    fn name(&self) -> &'static str {
        self.members[0].name()
    }

    fn fit<I, E>(&mut self, batches: I) -> Result<FitSummary, D::Error>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        self.feed(batches, false)
    }

    fn add<I, E>(&mut self, batches: I) -> Result<FitSummary, D::Error>
    where
        I: IntoIterator<Item = Result<ImageBatch, E>>,
        E: Into<BoxError>,
    {
        self.feed(batches, true)
    }

    /// Scores every tile, stitches the tile maps (mean over overlaps) and takes the largest
    /// tile score as the image score.
    fn predict(&self, batch: &ImageBatch) -> Result<Vec<Prediction>, D::Error> {
        let n = self.layout.len();
        let (h, w) = self.layout.image();
        // Per image: the tile maps and scores, in layout order.
        let mut maps: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(n); batch.len()];
        let mut scores: Vec<f32> = vec![f32::NEG_INFINITY; batch.len()];
        let mut take = |i: usize, p: Prediction| {
            scores[i] = scores[i].max(p.score);
            maps[i].push(p.map.into_vec());
        };
        if self.tiling.ensemble {
            // Position by position; each member scores its tile of every image.
            for (j, member) in self.members.iter().enumerate() {
                for tb in self.tile_batches(batch, j)? {
                    for (i, p) in member.predict(&tb)?.into_iter().enumerate() {
                        take(i, p);
                    }
                }
            }
        } else {
            let bs = self.members[0].batch_size().max(1);
            let per_image = n.div_ceil(bs);
            for (k, tb) in self.tile_batches(batch, 0)?.into_iter().enumerate() {
                let i = k / per_image;
                for p in self.members[0].predict(&tb)? {
                    take(i, p);
                }
            }
        }
        maps.into_iter()
            .zip(scores)
            .map(|(m, score)| {
                let map = AnomalyMap::new(w, h, self.layout.stitch(&m)?)?;
                Ok(Prediction {
                    score,
                    map,
                    is_anomalous: self.threshold.as_ref().map(|t| t.is_anomalous(score)),
                })
            })
            .collect()
    }

    fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    fn save(&self, path: &Path) -> Result<(), D::Error> {
        self.save_tiled(path)
    }

    fn threshold(&self) -> Option<&Threshold> {
        self.threshold.as_ref()
    }

    fn set_threshold(&mut self, threshold: Option<Threshold>) {
        self.threshold = threshold;
    }

    /// Whole images per batch: the member's batch size in tiles, at least one image.
    fn batch_size(&self) -> usize {
        (self.members[0].batch_size() / self.layout.len()).max(1)
    }

    fn set_epoch_callback(&mut self, callback: Option<EpochCallback>) {
        // Only the first member reports epochs (a callback cannot be shared).
        self.members[0].set_epoch_callback(callback);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_cover_the_image_with_whole_tiles() {
        let l = TileLayout::new((512, 512), (256, 256), (256, 256)).unwrap();
        assert_eq!(l.origins(), &[(0, 0), (0, 256), (256, 0), (256, 256)]);
        let l = TileLayout::new((512, 600), (256, 256), (224, 224)).unwrap();
        let xs: Vec<usize> = l
            .origins()
            .iter()
            .filter(|o| o.0 == 0)
            .map(|o| o.1)
            .collect();
        assert_eq!(xs, vec![0, 224, 344]);
        assert_eq!(l.len(), 3 * 3);
        let one = TileLayout::new((64, 64), (64, 64), (32, 32)).unwrap();
        assert_eq!(one.origins(), &[(0, 0)]);
        for (image, tile, stride) in [
            ((64, 64), (65, 64), (64, 64)),
            ((64, 64), (32, 32), (33, 32)),
            ((64, 64), (0, 32), (32, 32)),
            ((64, 64), (32, 32), (0, 32)),
        ] {
            assert!(
                matches!(
                    TileLayout::new(image, tile, stride),
                    Err(CoreError::InvalidParameter { name: "tiling", .. })
                ),
                "{image:?} {tile:?} {stride:?}"
            );
        }
    }

    #[test]
    fn split_then_stitch_returns_the_map_bit_for_bit() {
        let (h, w) = (300, 420);
        let map: Vec<f32> = (0..h * w)
            .map(|i| ((i * 7919) % 1013) as f32 / 97.0 + 1e-3 * (i % 7) as f32)
            .collect();
        for stride in [(128, 128), (100, 90), (17, 33)] {
            let l = TileLayout::new((h, w), (128, 128), stride).unwrap();
            let tiles = l.split(&map).unwrap();
            assert_eq!(tiles.len(), l.len());
            let back = l.stitch(&tiles).unwrap();
            assert!(
                back.iter()
                    .zip(&map)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{stride:?}"
            );
        }
    }

    #[test]
    fn overlaps_are_averaged_and_bad_inputs_are_errors() {
        let l = TileLayout::new((4, 6), (4, 4), (2, 2)).unwrap();
        assert_eq!(l.origins(), &[(0, 0), (0, 2)]);
        let a = vec![1.0f32; 16];
        let b = vec![3.0f32; 16];
        let m = l.stitch(&[a.clone(), b]).unwrap();
        // Columns 0-1: tile a only; 2-3: both; 4-5: tile b only.
        assert_eq!(&m[..6], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        assert!(l.stitch(std::slice::from_ref(&a)).is_err());
        assert!(l.stitch(&[a, vec![0.0; 3]]).is_err());
        assert!(l.split(&[0.0; 5]).is_err());
    }

    #[test]
    fn batch_tiles_are_the_crops_of_the_image() {
        let pre = Preprocessor::new(PreprocessConfig::default().with_size(8, 10)).unwrap();
        let img = crate::RgbImage::from_fn(10, 8, |x, y| [(x * 20) as u8, (y * 30) as u8, 7]);
        let batch = pre.batch(&[img.clone(), img]).unwrap();
        let tiles = batch.tiles(1, &[(0, 0), (4, 6)], (4, 4)).unwrap();
        assert_eq!(tiles.shape(), [2, 3, 4, 4]);
        let plane = 8 * 10;
        let src = batch.as_slice();
        // Channel 1, row 2, column 3 of the second tile = image pixel (6, 9).
        let t = &tiles.as_slice()[3 * 16..];
        assert_eq!(t[16 + 2 * 4 + 3], src[3 * plane + plane + 6 * 10 + 9]);
        let crop = batch.crop((4, 6), (4, 4)).unwrap();
        assert_eq!(crop.shape(), [2, 3, 4, 4]);
        assert_eq!(&crop.as_slice()[..48], &tiles.as_slice()[48..]);
        assert!(batch.crop((5, 0), (4, 4)).is_err());
        assert!(batch.tiles(2, &[(0, 0)], (4, 4)).is_err());
    }
}
