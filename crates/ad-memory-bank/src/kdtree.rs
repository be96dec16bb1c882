//! Exact kd-tree index ([`kiddo`]'s immutable tree) for low-dimensional (projected) features.
//!
//! kd-trees prune well only in low dimensions; at PatchCore's 152 / 1536 dimensions they visit almost
//! every leaf and lose to [`crate::BruteForce`] (see `docs/performance.md`). Dimensions up to
//! [`KdTree::MAX_DIM`] are supported: vectors are zero-padded to the next of 4, 8, 16, 32, 64, 128
//! (padding with zeros leaves all distances unchanged).

use std::num::NonZero;

use kiddo::SquaredEuclidean;
use kiddo::immutable::float::kdtree::ImmutableKdTree;
use rayon::prelude::*;

use crate::bank::MemoryBank;
use crate::error::{MemoryBankError, Result};
use crate::knn::{KnnIndex, KnnResult, check_search};

/// Leaf bucket size.
const B: usize = 32;

#[allow(clippy::large_enum_variant)] // one value per index; boxing buys nothing
enum Tree {
    K4(ImmutableKdTree<f32, u64, 4, B>),
    K8(ImmutableKdTree<f32, u64, 8, B>),
    K16(ImmutableKdTree<f32, u64, 16, B>),
    K32(ImmutableKdTree<f32, u64, 32, B>),
    K64(ImmutableKdTree<f32, u64, 64, B>),
    K128(ImmutableKdTree<f32, u64, 128, B>),
}

/// Exact kd-tree k-NN index; returns Euclidean distances like [`crate::BruteForce`].
pub struct KdTree {
    tree: Tree,
    len: usize,
    dim: usize,
}

impl std::fmt::Debug for KdTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdTree")
            .field("len", &self.len)
            .field("dim", &self.dim)
            .finish()
    }
}

fn padded<const K: usize>(data: &[f32], dim: usize) -> Vec<[f32; K]> {
    data.chunks_exact(dim)
        .map(|r| {
            let mut a = [0.0f32; K];
            a[..dim].copy_from_slice(r);
            a
        })
        .collect()
}

fn query<const K: usize>(
    tree: &ImmutableKdTree<f32, u64, K, B>,
    queries: &[f32],
    dim: usize,
    k: NonZero<usize>,
    out_d: &mut [f32],
    out_i: &mut [u32],
) {
    let kk = k.get();
    out_d
        .par_chunks_mut(kk)
        .zip(out_i.par_chunks_mut(kk))
        .zip(queries.par_chunks(dim))
        .for_each(|((od, oi), q)| {
            let mut a = [0.0f32; K];
            a[..dim].copy_from_slice(q);
            let mut found = tree.nearest_n::<SquaredEuclidean>(&a, k);
            found.sort_by(|x, y| x.distance.total_cmp(&y.distance).then(x.item.cmp(&y.item)));
            for (j, nb) in found.iter().take(kk).enumerate() {
                od[j] = nb.distance.max(0.0).sqrt();
                oi[j] = nb.item as u32;
            }
        });
}

impl KdTree {
    /// Largest supported vector dimension.
    pub const MAX_DIM: usize = 128;
}

impl KnnIndex for KdTree {
    fn build(bank: &MemoryBank) -> Result<Self> {
        let (dim, data) = (bank.dim(), bank.as_slice());
        if bank.len() > u32::MAX as usize {
            return Err(MemoryBankError::InvalidParameter {
                name: "bank.len",
                value: bank.len().to_string(),
                reason: "kd-tree indices are 32-bit",
            });
        }
        let tree = match dim {
            0 => return Err(MemoryBankError::Empty("memory bank dim")),
            1..=4 => Tree::K4(ImmutableKdTree::new_from_slice(&padded::<4>(data, dim))),
            5..=8 => Tree::K8(ImmutableKdTree::new_from_slice(&padded::<8>(data, dim))),
            9..=16 => Tree::K16(ImmutableKdTree::new_from_slice(&padded::<16>(data, dim))),
            17..=32 => Tree::K32(ImmutableKdTree::new_from_slice(&padded::<32>(data, dim))),
            33..=64 => Tree::K64(ImmutableKdTree::new_from_slice(&padded::<64>(data, dim))),
            65..=128 => Tree::K128(ImmutableKdTree::new_from_slice(&padded::<128>(data, dim))),
            _ => {
                return Err(MemoryBankError::InvalidParameter {
                    name: "dim",
                    value: dim.to_string(),
                    reason: "the kd-tree index supports at most 128 dimensions (use BruteForce)",
                });
            }
        };
        Ok(Self {
            tree,
            len: bank.len(),
            dim,
        })
    }

    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult> {
        check_search(queries, nq, self.dim, k, self.len)?;
        let kk = NonZero::new(k).ok_or(MemoryBankError::InvalidK { k, len: self.len })?;
        let mut distances = vec![0.0f32; nq * k];
        let mut indices = vec![0u32; nq * k];
        let (d, od, oi) = (self.dim, &mut distances[..], &mut indices[..]);
        match &self.tree {
            Tree::K4(t) => query(t, queries, d, kk, od, oi),
            Tree::K8(t) => query(t, queries, d, kk, od, oi),
            Tree::K16(t) => query(t, queries, d, kk, od, oi),
            Tree::K32(t) => query(t, queries, d, kk, od, oi),
            Tree::K64(t) => query(t, queries, d, kk, od, oi),
            Tree::K128(t) => query(t, queries, d, kk, od, oi),
        }
        Ok(KnnResult {
            distances,
            indices,
            k,
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::naive_search;
    use crate::knn::tests::{assert_close, random};

    #[test]
    fn kdtree_matches_naive() {
        for (n, d, nq) in [
            (10usize, 2usize, 5usize),
            (1001, 3, 50),
            (3000, 16, 77),
            (700, 100, 13),
        ] {
            let bank = MemoryBank::from_rows(random(n, d, n as u64 + 5), d).unwrap();
            let q = random(nq, d, 7);
            let idx = KdTree::build(&bank).unwrap();
            for k in [1usize, 9] {
                let got = idx.search(&q, nq, k).unwrap();
                let want = naive_search(&bank, &q, nq, k).unwrap();
                assert_close(&got, &want, 1e-4);
            }
        }
        let wide = MemoryBank::from_rows(random(3, 129, 1), 129).unwrap();
        assert!(KdTree::build(&wide).is_err());
    }
}
