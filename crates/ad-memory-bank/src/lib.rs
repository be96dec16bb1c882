//! PatchCore's memory bank (Roth et al., CVPR 2022, section 3.2): greedy k-center **coreset**
//! subsampling of the training patch features and exact **k-nearest-neighbour** search of test patches.
//!
//! * [`CoresetSampler`]: random projection ([`ProjectionKind`]: the official dense 128-d projection or
//!   anomalib's sparse Johnson-Lindenstrauss one), then greedy farthest-point selection. The
//!   [`CoresetAlgorithm::Reference`] variant is anomalib's `KCenterGreedy` loop; the default
//!   [`CoresetAlgorithm::Fast`] variant selects bit-identical indices with triangle-inequality pruning.
//!   Memory is `O(N * d_proj)`; no `N x N` matrix is ever built.
//! * [`MemoryBank`]: the selected features, with a checksummed f32/f16 file format.
//! * [`KnnIndex`]: [`BruteForce`] (exact: lower bounds from the bank's principal subspace rule out
//!   most rows, or a bf16 screen of every row (AVX512-BF16) keeps the few that can be nearest, then
//!   a fused AVX-512 distance + top-k kernel on the rest, bit-identical to scanning every row;
//!   blocked gemm on other CPUs; multi-threaded, bounded memory), [`KdTree`] (kiddo, for low
//!   dimensions) and [`BurnKnn`] (Burn tensor ops on any device). Distances are Euclidean.
//!
//! ```
//! use ad_memory_bank::{BruteForce, CoresetParams, CoresetSampler, CoresetSize, KnnIndex, MemoryBank};
//!
//! let (n, d) = (500, 32);
//! let features: Vec<f32> = (0..n * d).map(|i| ((i * 7919) % 997) as f32 / 997.0).collect();
//! let sampler = CoresetSampler::new(CoresetParams { size: CoresetSize::Ratio(0.1), ..Default::default() })?;
//! let selection = sampler.select(&features, n, d)?;
//! let bank = MemoryBank::from_selection(&features, n, d, &selection.indices)?;
//! let index = BruteForce::new(bank);
//! let result = index.search(&features[..3 * d], 3, 1)?; // 3 queries, 1 neighbour each
//! assert_eq!(result.distances.len(), 3);
//! # Ok::<(), ad_memory_bank::MemoryBankError>(())
//! ```

mod bank;
mod burn_knn;
pub mod coreset;
mod error;
mod fused;
mod kdtree;
pub mod knn;
mod matmul;
pub mod projection;
mod pruned;
mod screened;
mod simd;
mod subspace;

pub use bank::{MemoryBank, Storage};
pub use burn_knn::BurnKnn;
pub use coreset::{
    CoresetAlgorithm, CoresetParams, CoresetSampler, CoresetSelection, CoresetSize, StartPoint,
    coverage_radius,
};
pub use error::{MemoryBankError, Result};
pub use kdtree::KdTree;
pub use knn::{BruteForce, KnnIndex, KnnKernel, KnnResult, naive_search};
pub use projection::{ProjectionKind, ProjectionMatrix, jl_min_dim};
pub use simd::sq_dist;
