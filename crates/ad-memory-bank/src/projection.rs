//! Johnson-Lindenstrauss random projections used before the greedy coreset search.
//!
//! * [`ProjectionKind::Gaussian`]: dense `N(0, 1) / sqrt(dim)` matrix to `dim` (default 128) components.
//!   The official PatchCore code projects with an untrained `torch.nn.Linear(d, 128, bias=False)`,
//!   whose weights are `U(-1/sqrt(d), 1/sqrt(d))`: [`ProjectionKind::LinearUniform`] draws that
//!   distribution. A global scale never changes which point is farthest, so the greedy selection only
//!   depends on the matrix up to scale.
//! * [`ProjectionKind::SparseJl`]: anomalib's `SparseRandomProjection` (scikit-learn's "very sparse"
//!   projection): `n_components = johnson_lindenstrauss_min_dim(n_samples, eps)` (eps 0.9 in anomalib),
//!   density `1 / sqrt(n_features)`, non-zeros `+-sqrt(1 / density) / sqrt(n_components)`. Note that
//!   the component count depends only on `n_samples` and may exceed the input dimension (anomalib does
//!   not check this: 164,000 samples give 296 components, even for 152-d input).
//! * [`ProjectionMatrix::from_rows`]: any explicit matrix (e.g. one saved by a Python peer).
//!
//! All random matrices come from a seeded `Xoshiro256PlusPlus`, so a seed fixes the matrix.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Binomial, Distribution, StandardNormal};
use rayon::prelude::*;

use crate::error::{MemoryBankError, Result, check_matrix};
use crate::matmul::gemm_abt;

/// Which projection to apply before the coreset distance computations.
///
/// In config files (serde): `"identity"`, `{ gaussian = { dim = 128 } }`,
/// `{ linear_uniform = { dim = 128 } }`, `{ sparse_jl = { eps = 0.9 } }`; on command lines
/// ([`FromStr`](std::str::FromStr)): `identity`, `gaussian:128`, `linear-uniform:128`,
/// `sparse-jl:0.9`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionKind {
    /// Use the features as they are.
    Identity,
    /// Dense Gaussian matrix with `dim` output components, entries `N(0,1)/sqrt(dim)`.
    Gaussian {
        /// Output dimension (the official code uses 128).
        dim: usize,
    },
    /// Dense matrix with entries `U(-1/sqrt(d_in), 1/sqrt(d_in))`, the distribution of an untrained
    /// `torch.nn.Linear(d_in, dim, bias=False)` as used by the official PatchCore sampler.
    LinearUniform {
        /// Output dimension.
        dim: usize,
    },
    /// anomalib / scikit-learn sparse random projection with the Johnson-Lindenstrauss dimension
    /// for the given distortion `eps` (anomalib uses 0.9).
    SparseJl {
        /// Distortion rate in (0, 1).
        eps: f64,
    },
}

impl std::fmt::Display for ProjectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectionKind::Identity => write!(f, "identity"),
            ProjectionKind::Gaussian { dim } => write!(f, "gaussian:{dim}"),
            ProjectionKind::LinearUniform { dim } => write!(f, "linear-uniform:{dim}"),
            ProjectionKind::SparseJl { eps } => write!(f, "sparse-jl:{eps}"),
        }
    }
}

impl std::str::FromStr for ProjectionKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let usage = "use identity, gaussian:DIM, linear-uniform:DIM or sparse-jl:EPS";
        let dim = || {
            arg.parse::<usize>()
                .map_err(|_| format!("`{s}`: `{arg}` is not a dimension; {usage}"))
        };
        let kind = match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "identity" | "none" => ProjectionKind::Identity,
            "gaussian" => ProjectionKind::Gaussian { dim: dim()? },
            "linear-uniform" => ProjectionKind::LinearUniform { dim: dim()? },
            "sparse-jl" => ProjectionKind::SparseJl {
                eps: arg
                    .parse()
                    .map_err(|_| format!("`{s}`: `{arg}` is not a distortion; {usage}"))?,
            },
            _ => return Err(format!("unknown projection `{s}`: {usage}")),
        };
        kind.check().map_err(|e| e.to_string())?;
        Ok(kind)
    }
}

impl ProjectionKind {
    /// The official PatchCore default: dense projection to 128 components.
    pub const fn official() -> Self {
        ProjectionKind::Gaussian { dim: 128 }
    }

    /// anomalib's default: sparse projection with `eps = 0.9`.
    pub const fn anomalib() -> Self {
        ProjectionKind::SparseJl { eps: 0.9 }
    }

    /// Checks the dimension or distortion.
    pub fn check(&self) -> Result<()> {
        match *self {
            ProjectionKind::Identity => Ok(()),
            ProjectionKind::Gaussian { dim } | ProjectionKind::LinearUniform { dim }
                if dim == 0 =>
            {
                Err(MemoryBankError::InvalidParameter {
                    name: "projection.dim",
                    value: dim.to_string(),
                    reason: "must be at least 1",
                })
            }
            ProjectionKind::SparseJl { eps } if !(eps > 0.0 && eps < 1.0) => {
                Err(MemoryBankError::InvalidParameter {
                    name: "projection.eps",
                    value: eps.to_string(),
                    reason: "must lie in (0, 1)",
                })
            }
            _ => Ok(()),
        }
    }

    /// Builds the matrix for `n_samples` inputs of dimension `d_in`; `None` for [`ProjectionKind::Identity`].
    pub fn matrix(
        &self,
        n_samples: usize,
        d_in: usize,
        seed: u64,
    ) -> Result<Option<ProjectionMatrix>> {
        self.check()?;
        if d_in == 0 {
            return Err(MemoryBankError::Empty("projection input dimension"));
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let m = match *self {
            ProjectionKind::Identity => return Ok(None),
            ProjectionKind::Gaussian { dim } => {
                let scale = 1.0 / (dim as f32).sqrt();
                let data = (0..dim * d_in)
                    .map(|_| {
                        let v: f32 = StandardNormal.sample(&mut rng);
                        v * scale
                    })
                    .collect();
                ProjectionMatrix {
                    out_dim: dim,
                    in_dim: d_in,
                    data,
                    sparse: None,
                }
            }
            ProjectionKind::LinearUniform { dim } => {
                let bound = 1.0 / (d_in as f32).sqrt();
                let data = (0..dim * d_in)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                ProjectionMatrix {
                    out_dim: dim,
                    in_dim: d_in,
                    data,
                    sparse: None,
                }
            }
            ProjectionKind::SparseJl { eps } => {
                sparse_matrix(jl_min_dim(n_samples, eps)?, d_in, &mut rng)?
            }
        };
        Ok(Some(m))
    }
}

/// scikit-learn's `johnson_lindenstrauss_min_dim`: `floor(4 ln(n) / (eps^2/2 - eps^3/3))`.
pub fn jl_min_dim(n_samples: usize, eps: f64) -> Result<usize> {
    if !(eps > 0.0 && eps < 1.0) {
        return Err(MemoryBankError::InvalidParameter {
            name: "eps",
            value: eps.to_string(),
            reason: "must lie in (0, 1)",
        });
    }
    if n_samples < 2 {
        return Err(MemoryBankError::InvalidParameter {
            name: "n_samples",
            value: n_samples.to_string(),
            reason: "the Johnson-Lindenstrauss dimension needs at least 2 samples",
        });
    }
    let denominator = eps * eps / 2.0 - eps * eps * eps / 3.0;
    Ok((4.0 * (n_samples as f64).ln() / denominator) as usize)
}

fn sparse_matrix(
    out_dim: usize,
    in_dim: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<ProjectionMatrix> {
    let density = 1.0 / (in_dim as f64).sqrt();
    let mut data = vec![0.0f32; out_dim * in_dim];
    if in_dim == 1 {
        let scale = (1.0 / (out_dim as f64).sqrt()) as f32;
        for v in &mut data {
            *v = if rng.random_bool(0.5) { scale } else { -scale };
        }
    } else {
        let scale = ((1.0 / density).sqrt() / (out_dim as f64).sqrt()) as f32;
        let binomial = Binomial::new(in_dim as u64, density).map_err(|_| {
            MemoryBankError::InvalidParameter {
                name: "density",
                value: density.to_string(),
                reason: "invalid binomial probability",
            }
        })?;
        for row in data.chunks_exact_mut(in_dim) {
            let nnz = binomial.sample(rng) as usize;
            for col in rand::seq::index::sample(rng, in_dim, nnz.min(in_dim)) {
                row[col] = if rng.random_bool(0.5) { scale } else { -scale };
            }
        }
    }
    let sparse = SparseRows::of(&data, out_dim, in_dim);
    Ok(ProjectionMatrix {
        out_dim,
        in_dim,
        data,
        sparse,
    })
}

/// The non-zeros of a matrix whose entries are all `0` or `+-scale` (the sparse JL projection),
/// per output row: the input columns to add, then those to subtract.
#[derive(Clone, Debug, PartialEq)]
struct SparseRows {
    scale: f32,
    /// Per output row `o`: `cols[starts[o]..splits[o]]` are added, `cols[splits[o]..starts[o + 1]]`
    /// subtracted (ascending columns in each part).
    starts: Vec<usize>,
    splits: Vec<usize>,
    cols: Vec<u32>,
}

/// Rows per tile of the sparse evaluation (one AVX-512 vector of f32).
const SPARSE_TILE: usize = 16;

impl SparseRows {
    /// The sparse form of `data` (`out_dim x in_dim`), or `None` unless every entry is `0` or
    /// `+-s` for one `s > 0` and at most a quarter are non-zero (then a dense product is cheaper).
    fn of(data: &[f32], out_dim: usize, in_dim: usize) -> Option<Self> {
        let scale = data.iter().map(|v| v.abs()).find(|&v| v > 0.0)?;
        let nnz = data.iter().filter(|&&v| v != 0.0).count();
        if data.iter().any(|&v| v != 0.0 && v.abs() != scale) || 4 * nnz > data.len() {
            return None;
        }
        let mut starts = Vec::with_capacity(out_dim + 1);
        let mut splits = Vec::with_capacity(out_dim);
        let mut cols = Vec::with_capacity(nnz);
        for row in data.chunks_exact(in_dim) {
            starts.push(cols.len());
            cols.extend((0..in_dim as u32).filter(|&j| row[j as usize] > 0.0));
            splits.push(cols.len());
            cols.extend((0..in_dim as u32).filter(|&j| row[j as usize] < 0.0));
        }
        starts.push(cols.len());
        Some(Self {
            scale,
            starts,
            splits,
            cols,
        })
    }

    /// Projects `rows` (`len x in_dim`, at most [`SPARSE_TILE`] rows) into `out` (`len x
    /// out_dim`): per output, `scale * (sum of the added inputs - sum of the subtracted)`, each
    /// sum taken in ascending column order (the rows of a tile are the lanes of one vector).
    #[inline(always)]
    fn project_tile(&self, rows: &[f32], in_dim: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        let len = rows.len() / in_dim;
        let out_dim = self.splits.len();
        // The tile transposed: `scratch[j * SPARSE_TILE + lane]` = row `lane`, column `j`.
        scratch.clear();
        scratch.resize(in_dim * SPARSE_TILE, 0.0);
        for (lane, row) in rows.chunks_exact(in_dim).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                scratch[j * SPARSE_TILE + lane] = v;
            }
        }
        let column = |j: u32| {
            let at = j as usize * SPARSE_TILE;
            &scratch[at..at + SPARSE_TILE]
        };
        for o in 0..out_dim {
            let (mut plus, mut minus) = ([0.0f32; SPARSE_TILE], [0.0f32; SPARSE_TILE]);
            for &j in &self.cols[self.starts[o]..self.splits[o]] {
                for (p, v) in plus.iter_mut().zip(column(j)) {
                    *p += v;
                }
            }
            for &j in &self.cols[self.splits[o]..self.starts[o + 1]] {
                for (m, v) in minus.iter_mut().zip(column(j)) {
                    *m += v;
                }
            }
            for (lane, dst) in out.chunks_exact_mut(out_dim).take(len).enumerate() {
                dst[o] = self.scale * (plus[lane] - minus[lane]);
            }
        }
    }

    /// [`Self::project_tile`] with AVX-512F intrinsics (same results: the same lane-wise IEEE
    /// additions in the same order): the tile is transposed in and the outputs out by 16 x 16
    /// register transposes instead of one scalar store per value. Tiles of fewer than 16 rows
    /// take the portable path.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn project_tile_avx512(
        &self,
        rows: &[f32],
        in_dim: usize,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        use std::arch::x86_64::*;
        const T: usize = SPARSE_TILE;
        let out_dim = self.splits.len();
        if rows.len() != T * in_dim || out.len() != T * out_dim {
            self.project_tile(rows, in_dim, out, scratch);
            return;
        }
        // `scratch[..in_dim * T]`: the tile transposed (column `j` of the 16 rows at `j * T`);
        // `scratch[in_dim * T..]`: the outputs, output `o` of the 16 rows at `o * T`.
        scratch.clear();
        scratch.resize((in_dim + out_dim) * T, 0.0);
        let (columns, results) = scratch.split_at_mut(in_dim * T);
        let whole = in_dim - in_dim % T;
        for j0 in (0..whole).step_by(T) {
            // SAFETY: rows `0..16` of `rows` hold columns `j0..j0 + 16` (`j0 + 16 <= in_dim`),
            // and `columns` holds `(j0 + 16) * 16 <= in_dim * 16` values.
            unsafe {
                x86::transpose16(
                    rows.as_ptr().add(j0),
                    in_dim,
                    columns.as_mut_ptr().add(j0 * T),
                    T,
                )
            };
        }
        for (lane, row) in rows.chunks_exact(in_dim).enumerate() {
            for j in whole..in_dim {
                columns[j * T + lane] = row[j];
            }
        }
        let column = |j: u32| {
            debug_assert!((j as usize) < in_dim);
            // SAFETY: `j < in_dim`, so the 16 values at `j * 16` are inside `columns`.
            unsafe { _mm512_loadu_ps(columns.as_ptr().add(j as usize * T)) }
        };
        let scale = _mm512_set1_ps(self.scale);
        for o in 0..out_dim {
            let (mut plus, mut minus) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for &j in &self.cols[self.starts[o]..self.splits[o]] {
                plus = _mm512_add_ps(plus, column(j));
            }
            for &j in &self.cols[self.splits[o]..self.starts[o + 1]] {
                minus = _mm512_add_ps(minus, column(j));
            }
            let v = _mm512_mul_ps(scale, _mm512_sub_ps(plus, minus));
            // SAFETY: `results` holds `out_dim * 16` values.
            unsafe { _mm512_storeu_ps(results.as_mut_ptr().add(o * T), v) };
        }
        let whole_out = out_dim - out_dim % T;
        for o0 in (0..whole_out).step_by(T) {
            // SAFETY: `results` holds outputs `o0..o0 + 16` of the 16 rows; each of the 16 rows
            // of `out` holds outputs `o0..o0 + 16` (`o0 + 16 <= out_dim`).
            unsafe {
                x86::transpose16(
                    results.as_ptr().add(o0 * T),
                    T,
                    out.as_mut_ptr().add(o0),
                    out_dim,
                )
            };
        }
        for (lane, dst) in out.chunks_exact_mut(out_dim).enumerate() {
            for o in whole_out..out_dim {
                dst[o] = results[o * T + lane];
            }
        }
    }

    /// Projects `n` rows (`n x in_dim`) into `out` (`n x out_dim`), tiles in parallel.
    fn project(&self, features: &[f32], in_dim: usize, out: &mut [f32]) {
        let out_dim = self.splits.len();
        out.par_chunks_mut(SPARSE_TILE * out_dim)
            .zip(features.par_chunks(SPARSE_TILE * in_dim))
            .for_each_init(Vec::new, |scratch, (dst, src)| {
                #[cfg(target_arch = "x86_64")]
                if crate::fused::available() {
                    // SAFETY: AVX-512F is present (checked just above).
                    unsafe { self.project_tile_avx512(src, in_dim, dst, scratch) };
                    return;
                }
                self.project_tile(src, in_dim, dst, scratch);
            });
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Writes the transpose of the 16 x 16 block whose row `r` is `src[r * src_stride..][..16]`
    /// to `dst`: row `c` of the result at `dst[c * dst_stride..][..16]`.
    ///
    /// # Safety
    /// AVX-512F is available; the 16 source rows are readable and the 16 destination rows
    /// writable, 16 values each.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn transpose16(
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        // SAFETY: the caller guarantees the 16 rows of 16 values.
        let r: [__m512; 16] =
            std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * src_stride)) });
        // Pairs of rows interleaved: 2 x 2 blocks.
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        // 4 x 4 blocks inside each 128-bit lane.
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let base = i & !3;
            let (a, b) = (t[base + (i % 4) / 2], t[base + 2 + (i % 4) / 2]);
            if i % 2 == 0 {
                _mm512_shuffle_ps::<0x44>(a, b)
            } else {
                _mm512_shuffle_ps::<0xEE>(a, b)
            }
        });
        // 128-bit lanes: first across rows 4 apart, then 8 apart.
        let v: [__m512; 16] = std::array::from_fn(|i| {
            let base = i & 8;
            let (a, b) = (u[base + i % 4], u[base + 4 + i % 4]);
            if i % 8 < 4 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(a, b)
            }
        });
        for i in 0..16 {
            let (a, b) = (v[i % 8], v[8 + i % 8]);
            let w = if i < 8 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(a, b)
            };
            // SAFETY: the caller guarantees the 16 destination rows.
            unsafe { _mm512_storeu_ps(dst.add(i * dst_stride), w) };
        }
    }
}

/// A projection matrix `out_dim x in_dim` (row-major); projects rows `x` to `W x`.
///
/// The sparse JL matrix ([`ProjectionKind::SparseJl`]) is evaluated through its non-zeros
/// (about `1 / sqrt(in_dim)` of the entries, all `+-s`: per output, `s` times a sum of inputs
/// minus another), a dense product otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionMatrix {
    out_dim: usize,
    in_dim: usize,
    data: Vec<f32>,
    sparse: Option<SparseRows>,
}

impl ProjectionMatrix {
    /// Wraps an explicit `out_dim x in_dim` row-major matrix (e.g. the one a Python peer used).
    pub fn from_rows(data: Vec<f32>, out_dim: usize, in_dim: usize) -> Result<Self> {
        check_matrix("projection matrix", &data, out_dim, in_dim)?;
        Ok(Self {
            out_dim,
            in_dim,
            data,
            sparse: None,
        })
    }

    /// Output dimension.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Input dimension.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// The matrix, row-major `out_dim x in_dim`.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Projects `n` row-major rows of dimension `in_dim`; returns `n x out_dim` row-major.
    pub fn project(&self, features: &[f32], n: usize) -> Result<Vec<f32>> {
        check_matrix("features", features, n, self.in_dim)?;
        Ok(self.project_checked(features, n))
    }

    /// [`Self::project`] of features already checked (`n x in_dim`, finite).
    pub(crate) fn project_checked(&self, features: &[f32], n: usize) -> Vec<f32> {
        debug_assert_eq!(features.len(), n * self.in_dim);
        const BLOCK: usize = 2048;
        let mut out = vec![0.0f32; n * self.out_dim];
        if let Some(sparse) = &self.sparse {
            sparse.project(features, self.in_dim, &mut out);
            return out;
        }
        out.par_chunks_mut(BLOCK * self.out_dim)
            .zip(features.par_chunks(BLOCK * self.in_dim))
            .for_each(|(dst, src)| {
                let rows = src.len() / self.in_dim;
                gemm_abt(dst, src, &self.data, rows, self.out_dim, self.in_dim, 1.0);
            });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jl_dim_matches_sklearn() {
        // sklearn.random_projection.johnson_lindenstrauss_min_dim(164000, eps=0.9) == 296
        assert_eq!(jl_min_dim(164_000, 0.9).unwrap(), 296);
        // johnson_lindenstrauss_min_dim(1000, eps=0.9) == 170
        assert_eq!(jl_min_dim(1000, 0.9).unwrap(), 170);
        assert!(jl_min_dim(10, 1.5).is_err());
    }

    #[test]
    fn sparse_matrix_has_sklearn_structure() {
        let d_in = 400;
        let m = ProjectionKind::SparseJl { eps: 0.9 }
            .matrix(1000, d_in, 7)
            .unwrap()
            .unwrap();
        assert_eq!((m.out_dim(), m.in_dim()), (170, d_in));
        let scale = ((d_in as f64).sqrt().sqrt() / (170f64).sqrt()) as f32;
        let nnz = m.as_slice().iter().filter(|v| **v != 0.0).count();
        for v in m.as_slice().iter().filter(|v| **v != 0.0) {
            assert!((v.abs() - scale).abs() < 1e-6);
        }
        // expected density 1/sqrt(400) = 0.05 of 68,000 entries = 3,400
        assert!((3000..3800).contains(&nnz), "nnz = {nnz}");
        let again = ProjectionKind::SparseJl { eps: 0.9 }
            .matrix(1000, d_in, 7)
            .unwrap()
            .unwrap();
        assert_eq!(m, again, "same seed, same matrix");
    }

    #[test]
    fn sparse_evaluation_matches_the_dense_product_and_is_row_independent() {
        // 400 inputs: whole 16 x 16 transposes only; 403: a remainder of columns.
        for d_in in [400, 403] {
            sparse_evaluation_case(d_in);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn transpose16_transposes() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let (src_stride, dst_stride) = (21, 19);
        let src: Vec<f32> = (0..16 * src_stride).map(|i| i as f32).collect();
        let mut dst = vec![-1.0f32; 16 * dst_stride];
        // SAFETY: AVX-512F checked above; 16 rows of 16 values fit both strides.
        unsafe { x86::transpose16(src.as_ptr(), src_stride, dst.as_mut_ptr(), dst_stride) };
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(
                    dst[c * dst_stride + r],
                    src[r * src_stride + c],
                    "({r}, {c})"
                );
            }
            for c in 16..dst_stride {
                assert_eq!(dst[r * dst_stride + c], -1.0, "untouched ({r}, {c})");
            }
        }
    }

    fn sparse_evaluation_case(d_in: usize) {
        let n = 37;
        let x: Vec<f32> = (0..n * d_in)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let m = ProjectionKind::SparseJl { eps: 0.9 }
            .matrix(1000, d_in, 7)
            .unwrap()
            .unwrap();
        assert!(m.sparse.is_some(), "the JL matrix is evaluated sparsely");
        let y = m.project(&x, n).unwrap();
        let dense = ProjectionMatrix::from_rows(m.as_slice().to_vec(), m.out_dim(), d_in).unwrap();
        assert!(dense.sparse.is_none());
        let want = dense.project(&x, n).unwrap();
        for (j, (a, b)) in y.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-4, "value {j}: sparse {a}, dense {b}");
        }
        // A row's projection does not depend on the rows around it (partial tiles included).
        let tail = m.project(&x[5 * d_in..], n - 5).unwrap();
        assert_eq!(tail, y[5 * m.out_dim()..]);
        let one = m.project(&x[20 * d_in..21 * d_in], 1).unwrap();
        assert_eq!(one, y[20 * m.out_dim()..21 * m.out_dim()]);
    }

    #[test]
    fn projection_matches_naive_and_preserves_distances_roughly() {
        let (n, d_in) = (37, 300);
        let x: Vec<f32> = (0..n * d_in)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let m = ProjectionKind::Gaussian { dim: 128 }
            .matrix(n, d_in, 3)
            .unwrap()
            .unwrap();
        let y = m.project(&x, n).unwrap();
        for r in 0..n {
            for o in 0..128 {
                let want: f32 = (0..d_in)
                    .map(|i| x[r * d_in + i] * m.as_slice()[o * d_in + i])
                    .sum();
                assert!((y[r * 128 + o] - want).abs() < 1e-3, "row {r} comp {o}");
            }
        }
        assert!(ProjectionKind::Gaussian { dim: 0 }.check().is_err());
        assert!(m.project(&x[1..], n).is_err());
    }
}
