//! Exact k-nearest-neighbour search over a [`MemoryBank`].
//!
//! All indexes return **Euclidean** distances (not squared; faiss' `IndexFlatL2` returns squared ones),
//! sorted ascending per query, ties broken by the smaller bank index.

use rayon::prelude::*;

use crate::bank::MemoryBank;
use crate::error::{MemoryBankError, Result, check_matrix};
use crate::matmul::gemm_abt;

/// `k` nearest neighbours of `nq` queries: row-major `nq x k` arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct KnnResult {
    /// Euclidean distances, `nq x k`, ascending within each row.
    pub distances: Vec<f32>,
    /// Bank row indices, `nq x k`.
    pub indices: Vec<u32>,
    /// Neighbours per query.
    pub k: usize,
}

impl KnnResult {
    /// Distances of query `q`.
    pub fn row_distances(&self, q: usize) -> &[f32] {
        &self.distances[q * self.k..(q + 1) * self.k]
    }

    /// Indices of query `q`.
    pub fn row_indices(&self, q: usize) -> &[u32] {
        &self.indices[q * self.k..(q + 1) * self.k]
    }
}

/// An exact nearest-neighbour index built from a memory bank.
pub trait KnnIndex: Sized {
    /// Builds the index (copies what it needs from `bank`).
    fn build(bank: &MemoryBank) -> Result<Self>;
    /// The `k` nearest bank vectors of each of the `nq` row-major `queries` (dimension [`KnnIndex::dim`]).
    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult>;
    /// Number of bank vectors.
    fn len(&self) -> usize;
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// Whether the index holds no vectors (never true for a built index).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub(crate) fn check_search(
    queries: &[f32],
    nq: usize,
    dim: usize,
    k: usize,
    len: usize,
) -> Result<()> {
    check_matrix("queries", queries, nq, dim)?;
    if k == 0 || k > len {
        return Err(MemoryBankError::InvalidK { k, len });
    }
    Ok(())
}

/// Sorted candidate list of one query: inserts keep ascending `(value, index)` order.
#[inline]
fn insert(ds: &mut [f32], is: &mut [u32], v: f32, idx: u32) {
    let k = ds.len();
    let mut pos = k - 1;
    while pos > 0 && (ds[pos - 1] > v || (ds[pos - 1] == v && is[pos - 1] > idx)) {
        ds[pos] = ds[pos - 1];
        is[pos] = is[pos - 1];
        pos -= 1;
    }
    ds[pos] = v;
    is[pos] = idx;
}

/// Exact brute-force search: `||q||^2 - 2 q.m + ||m||^2` with a blocked `gemm`, multi-threaded.
///
/// Work is split into tasks of `BLOCK_Q` queries x a slice of the bank; each task walks its bank slice
/// in blocks of `BLOCK_M` rows, so the only scratch per thread is one `BLOCK_Q x BLOCK_M` f32 block
/// (512 KiB) plus the `k` candidates per query: memory stays bounded whatever the bank and query sizes.
/// Squared distances are clamped at 0 before the square root.
#[derive(Clone, Debug)]
pub struct BruteForce {
    bank: MemoryBank,
    norms: Vec<f32>,
}

/// Queries per block.
pub const BLOCK_Q: usize = 128;
/// Bank rows per block.
pub const BLOCK_M: usize = 1024;

impl BruteForce {
    /// Builds the index, taking ownership of the bank (no copy).
    pub fn new(bank: MemoryBank) -> Self {
        let d = bank.dim();
        let norms = bank
            .as_slice()
            .par_chunks(d)
            .map(|r| r.iter().map(|v| v * v).sum::<f32>())
            .collect();
        Self { bank, norms }
    }

    /// The indexed bank.
    pub fn bank(&self) -> &MemoryBank {
        &self.bank
    }

    /// Scans bank rows `[m0, m1)` for queries `q` (`rows x d`); returns candidates of `||m||^2 - 2 q.m`.
    fn scan(&self, q: &[f32], rows: usize, m0: usize, m1: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
        let d = self.bank.dim();
        let mut cd = vec![f32::INFINITY; rows * k];
        let mut ci = vec![u32::MAX; rows * k];
        let mut g = vec![0.0f32; rows * BLOCK_M.min(m1 - m0)];
        let mut start = m0;
        while start < m1 {
            let end = (start + BLOCK_M).min(m1);
            let bm = end - start;
            let g = &mut g[..rows * bm];
            gemm_abt(
                g,
                q,
                &self.bank.as_slice()[start * d..end * d],
                rows,
                bm,
                d,
                -2.0,
            );
            let norms = &self.norms[start..end];
            for r in 0..rows {
                let grow = &mut g[r * bm..(r + 1) * bm];
                let ds = &mut cd[r * k..(r + 1) * k];
                let is = &mut ci[r * k..(r + 1) * k];
                let mut worst = ds[k - 1];
                let mut j0 = 0;
                for (gc, nc) in grow.chunks_mut(16).zip(norms.chunks(16)) {
                    let mut lo = f32::INFINITY;
                    for (x, n) in gc.iter_mut().zip(nc) {
                        *x += n;
                        lo = lo.min(*x);
                    }
                    if lo < worst {
                        for (o, &v) in gc.iter().enumerate() {
                            if v < worst {
                                insert(ds, is, v, (start + j0 + o) as u32);
                                worst = ds[k - 1];
                            }
                        }
                    }
                    j0 += gc.len();
                }
            }
            start = end;
        }
        (cd, ci)
    }
}

impl KnnIndex for BruteForce {
    fn build(bank: &MemoryBank) -> Result<Self> {
        Ok(Self::new(bank.clone()))
    }

    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult> {
        let (n, d) = (self.bank.len(), self.bank.dim());
        check_search(queries, nq, d, k, n)?;
        let nqb = nq.div_ceil(BLOCK_Q);
        let threads = rayon::current_num_threads().max(1);
        let splits = if nqb >= threads {
            1
        } else {
            threads.div_ceil(nqb).min(n.div_ceil(BLOCK_M)).max(1)
        };
        let parts: Vec<(Vec<f32>, Vec<u32>)> = (0..nqb * splits)
            .into_par_iter()
            .map(|t| {
                let (qb, s) = (t / splits, t % splits);
                let (q0, q1) = (qb * BLOCK_Q, ((qb + 1) * BLOCK_Q).min(nq));
                let (m0, m1) = (n * s / splits, n * (s + 1) / splits);
                self.scan(&queries[q0 * d..q1 * d], q1 - q0, m0, m1, k)
            })
            .collect();
        let mut distances = vec![0.0f32; nq * k];
        let mut indices = vec![0u32; nq * k];
        distances
            .par_chunks_mut(k)
            .zip(indices.par_chunks_mut(k))
            .enumerate()
            .for_each(|(q, (dq, iq))| {
                let (qb, r) = (q / BLOCK_Q, q % BLOCK_Q);
                let qn: f32 = queries[q * d..(q + 1) * d].iter().map(|v| v * v).sum();
                let mut ds = vec![f32::INFINITY; k];
                let mut is = vec![u32::MAX; k];
                for s in 0..splits {
                    let (cd, ci) = &parts[qb * splits + s];
                    for j in 0..k {
                        let (v, i) = (cd[r * k + j], ci[r * k + j]);
                        if v < ds[k - 1] || (v == ds[k - 1] && i < is[k - 1]) {
                            insert(&mut ds, &mut is, v, i);
                        }
                    }
                }
                for j in 0..k {
                    dq[j] = (ds[j] + qn).max(0.0).sqrt();
                    iq[j] = is[j];
                }
            });
        Ok(KnnResult {
            distances,
            indices,
            k,
        })
    }

    fn len(&self) -> usize {
        self.bank.len()
    }

    fn dim(&self) -> usize {
        self.bank.dim()
    }
}

/// The obvious double loop (f64 accumulation), for tests and as a specification.
pub fn naive_search(bank: &MemoryBank, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult> {
    let d = bank.dim();
    check_search(queries, nq, d, k, bank.len())?;
    let mut distances = Vec::with_capacity(nq * k);
    let mut indices = Vec::with_capacity(nq * k);
    for q in queries.chunks_exact(d) {
        let mut all: Vec<(f64, u32)> = (0..bank.len())
            .map(|i| {
                (
                    bank.row(i)
                        .iter()
                        .zip(q)
                        .map(|(a, b)| ((a - b) as f64).powi(2))
                        .sum::<f64>(),
                    i as u32,
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(v, i) in &all[..k] {
            distances.push(v.sqrt() as f32);
            indices.push(i);
        }
    }
    Ok(KnnResult {
        distances,
        indices,
        k,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand_distr::{Distribution, StandardNormal};

    pub(crate) fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect()
    }

    /// Asserts equal results up to float tolerance; indices may differ only where distances tie.
    pub(crate) fn assert_close(got: &KnnResult, want: &KnnResult, rel: f32) {
        assert_eq!(got.k, want.k);
        assert_eq!(got.distances.len(), want.distances.len());
        for (j, (g, w)) in got.distances.iter().zip(&want.distances).enumerate() {
            assert!(
                (g - w).abs() <= rel * w.max(1.0),
                "distance {j}: got {g}, want {w}"
            );
            if got.indices[j] != want.indices[j] {
                let q = j / want.k;
                let row = want.row_distances(q);
                let tied = row
                    .iter()
                    .filter(|&&x| (x - w).abs() <= rel * w.max(1.0))
                    .count()
                    > 1
                    || (j % want.k == want.k - 1);
                assert!(
                    tied,
                    "index {j}: got {}, want {} (no tie)",
                    got.indices[j], want.indices[j]
                );
            }
        }
    }

    #[test]
    fn brute_force_matches_naive() {
        for (n, d, nq) in [
            (1usize, 3usize, 2usize),
            (37, 5, 11),
            (1500, 152, 131),
            (2100, 33, 300),
            (3000, 7, 1),
        ] {
            let bank = MemoryBank::from_rows(random(n, d, n as u64), d).unwrap();
            let q = random(nq, d, 99);
            let idx = BruteForce::build(&bank).unwrap();
            for k in [1usize, 9] {
                if k > n {
                    assert!(matches!(
                        idx.search(&q, nq, k),
                        Err(MemoryBankError::InvalidK { .. })
                    ));
                    continue;
                }
                let got = idx.search(&q, nq, k).unwrap();
                let want = naive_search(&bank, &q, nq, k).unwrap();
                assert_close(&got, &want, 1e-4);
            }
        }
    }

    #[test]
    fn exact_match_gives_zero_and_errors_are_typed() {
        let bank = MemoryBank::from_rows(random(50, 16, 1), 16).unwrap();
        let idx = BruteForce::new(bank.clone());
        let q = bank.row(17).to_vec();
        let r = idx.search(&q, 1, 3).unwrap();
        assert_eq!(r.row_indices(0)[0], 17);
        assert!(
            r.distances[0] < 2e-3,
            "clamped self distance {}",
            r.distances[0]
        );
        assert!(matches!(
            idx.search(&q, 2, 1),
            Err(MemoryBankError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            idx.search(&q, 1, 0),
            Err(MemoryBankError::InvalidK { k: 0, .. })
        ));
        assert!(matches!(
            idx.search(&[f32::NAN; 16], 1, 1),
            Err(MemoryBankError::NonFinite { .. })
        ));
    }
}
