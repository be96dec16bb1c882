//! k-NN with Burn tensor ops on any [`Device`] (GPU backends for large banks).
//!
//! Per block of queries and block of bank rows: `v = ||m||^2 - 2 Q M^T` by a device matmul, then the
//! `k` smallest per row by `k` rounds of `min_dim_with_indices` + masking the found column (flex's
//! `topk` is a full sort, far slower for small `k`); the per-block candidates are merged the same
//! way, on the device. Returns Euclidean distances, like [`crate::BruteForce`], recomputed from
//! the chosen rows. [`BurnKnn::search_tensor`] takes and returns device tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::bank::MemoryBank;
use crate::error::{MemoryBankError, Result};
use crate::knn::{KnnIndex, KnnResult, check_search};

/// k-NN index whose bank lives on a Burn device.
#[derive(Debug)]
pub struct BurnKnn {
    device: Device,
    bank: Tensor<2>,
    norms: Tensor<2>,
    len: usize,
    dim: usize,
    block_q: usize,
    block_m: usize,
}

fn read_f32(t: Tensor<2>) -> Result<Vec<f32>> {
    ad_core::tensor::read_f32(t).map_err(|e| MemoryBankError::Burn(e.to_string()))
}

fn read_i64(t: Tensor<2, Int>) -> Result<Vec<i64>> {
    ad_core::tensor::read_i64(t).map_err(|e| MemoryBankError::Burn(e.to_string()))
}

impl BurnKnn {
    /// Uploads the bank (and its squared norms) to `device`.
    pub fn on_device(bank: &MemoryBank, device: &Device) -> Self {
        let (len, dim) = (bank.len(), bank.dim());
        let norms: Vec<f32> = (0..len)
            .map(|i| bank.row(i).iter().map(|v| v * v).sum())
            .collect();
        Self {
            device: device.clone(),
            bank: Tensor::from_data(
                TensorData::new(bank.as_slice().to_vec(), [len, dim]),
                device,
            ),
            norms: Tensor::from_data(TensorData::new(norms, [1, len]), device),
            len,
            dim,
            block_q: 1024,
            block_m: 16_384,
        }
    }

    /// Overrides the block sizes (queries x bank rows per device matmul; memory is `4 * bq * bm` bytes).
    pub fn with_blocks(mut self, block_q: usize, block_m: usize) -> Result<Self> {
        for (name, v) in [("block_q", block_q), ("block_m", block_m)] {
            if v == 0 {
                return Err(MemoryBankError::InvalidParameter {
                    name,
                    value: "0".into(),
                    reason: "must be at least 1",
                });
            }
        }
        self.block_q = block_q;
        self.block_m = block_m;
        Ok(self)
    }

    /// The device holding the bank.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The `k` nearest memory samples of queries that already live on the bank's device; nothing
    /// leaves the device (for a GPU pipeline: backbone -> patch embedding -> search -> scores,
    /// read back once at the end).
    ///
    /// Per block of queries and block of bank rows, `v = ||m||^2 - 2 q.m` by a device matmul
    /// and the `k` smallest of each row by `k` rounds of minimum + masking; the blocks'
    /// candidates are merged the same way. The returned distances are then recomputed directly
    /// as `||q - m||` from the chosen rows (no cancellation error from the expansion). Ties
    /// go to whichever index the backend's minimum reports (the first one on flex).
    ///
    /// # Shapes
    /// - `queries`: `[n, d]`, `d = self.dim()`, on [`Self::device`]
    /// - returns `[n, k]` Euclidean distances (ascending per row) and `[n, k]` bank row indices
    ///
    /// Non-finite queries are not detected here (that would need a read-back): they give
    /// non-finite distances, which a caller sees when it reads the distances.
    pub fn search_tensor(
        &self,
        queries: Tensor<2>,
        k: usize,
    ) -> Result<(Tensor<2>, Tensor<2, Int>)> {
        let [n, d] = queries.dims();
        if n == 0 {
            return Err(MemoryBankError::Empty("queries"));
        }
        if d != self.dim {
            return Err(MemoryBankError::DimensionMismatch {
                what: "queries",
                expected: self.dim,
                got: d,
            });
        }
        if k == 0 || k > self.len {
            return Err(MemoryBankError::InvalidK { k, len: self.len });
        }
        let mut dists = Vec::new();
        let mut ids = Vec::new();
        let mut q0 = 0;
        while q0 < n {
            let q1 = (q0 + self.block_q).min(n);
            let q = queries.clone().narrow(0, q0, q1 - q0);
            let (_, i) = self.block_candidates(q.clone(), k);
            let exact = exact_distances(&self.bank, q, i.clone());
            if k == 1 {
                dists.push(exact);
                ids.push(i);
            } else {
                // The expansion's rounding may order near-equal candidates differently from
                // their exact distances: sort the k exact ones.
                let (sorted, order) = exact.sort_with_indices(1);
                dists.push(sorted);
                ids.push(i.gather(1, order));
            }
            q0 = q1;
        }
        Ok((Tensor::cat(dists, 0), Tensor::cat(ids, 0)))
    }

    /// The `k` smallest `||m||^2 - 2 q.m` of one query block over the whole bank, ascending.
    ///
    /// # Shapes
    /// `q`: `[bq, d]` -> (`[bq, k]` values, `[bq, k]` bank indices)
    fn block_candidates(&self, q: Tensor<2>, k: usize) -> (Tensor<2>, Tensor<2, Int>) {
        let mut vals = Vec::new();
        let mut ids = Vec::new();
        let mut m0 = 0;
        while m0 < self.len {
            let m1 = (m0 + self.block_m).min(self.len);
            let bm = m1 - m0;
            let mb = self.bank.clone().narrow(0, m0, bm);
            let nb = self.norms.clone().narrow(1, m0, bm);
            let v = q.clone().matmul(mb.transpose()).mul_scalar(-2.0).add(nb); // [bq, bm]
            let (bv, bi) = smallest(v, k.min(bm));
            vals.push(bv);
            ids.push(bi.add_scalar(m0 as i64));
            m0 = m1;
        }
        if vals.len() == 1 {
            return (vals.remove(0), ids.remove(0));
        }
        // Merge the blocks' candidates: the k smallest of their concatenation (earlier blocks
        // first, so ties keep the smaller bank index where the backend's minimum is stable).
        let (v, pos) = smallest(Tensor::cat(vals, 1), k);
        (v, Tensor::cat(ids, 1).gather(1, pos))
    }
}

/// The `k` smallest values of each row, ascending, with their column indices: `k` rounds of
/// `min_dim_with_indices` + masking the found column (flex's `topk` is a full sort, far slower
/// for small `k`).
///
/// # Shapes
/// `v`: `[r, c]`, `k <= c` -> `[r, k]` values and `[r, k]` column indices
fn smallest(mut v: Tensor<2>, k: usize) -> (Tensor<2>, Tensor<2, Int>) {
    let [r, c] = v.dims();
    let device = v.device();
    let iota = (k > 1).then(|| {
        Tensor::<1, Int>::arange(0..c as i64, &device)
            .reshape([1, c])
            .expand([r, c])
    });
    let mut vals = Vec::with_capacity(k);
    let mut ids = Vec::with_capacity(k);
    for round in 0..k {
        let (mv, mi) = v.clone().min_dim_with_indices(1); // [r, 1]
        if round + 1 < k
            && let Some(iota) = &iota
        {
            let mask = iota.clone().equal(mi.clone().expand([r, c]));
            v = v.mask_fill(mask, f32::INFINITY);
        }
        vals.push(mv);
        ids.push(mi);
    }
    (Tensor::cat(vals, 1), Tensor::cat(ids, 1))
}

/// `||q - m||` of each query to its chosen bank rows, computed from the rows themselves.
///
/// # Shapes
/// `bank`: `[m, d]`, `q`: `[bq, d]`, `ids`: `[bq, k]` -> `[bq, k]`
fn exact_distances(bank: &Tensor<2>, q: Tensor<2>, ids: Tensor<2, Int>) -> Tensor<2> {
    let [bq, k] = ids.dims();
    let [_, d] = q.dims();
    let rows = bank
        .clone()
        .select(0, ids.reshape([bq * k]))
        .reshape([bq, k, d]);
    let diff = rows.sub(q.reshape([bq, 1, d]).expand([bq, k, d]));
    diff.clone().mul(diff).sum_dim(2).reshape([bq, k]).sqrt()
}

impl KnnIndex for BurnKnn {
    /// Builds on `Device::default()` (the first enabled backend, GPUs first).
    fn build(bank: &MemoryBank) -> Result<Self> {
        Ok(Self::on_device(bank, &Device::default()))
    }

    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult> {
        check_search(queries, nq, self.dim, k, self.len)?;
        let q = Tensor::from_data(
            TensorData::new(queries.to_vec(), [nq, self.dim]),
            &self.device,
        );
        let (distances, indices) = self.search_tensor(q, k)?;
        Ok(KnnResult {
            distances: read_f32(distances)?,
            indices: read_i64(indices)?.into_iter().map(|i| i as u32).collect(),
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
    fn burn_knn_on_flex_matches_naive() {
        let device = Device::flex();
        for (n, d, nq) in [(5usize, 3usize, 4usize), (1037, 40, 70), (300, 152, 9)] {
            let bank = MemoryBank::from_rows(random(n, d, n as u64 + 1), d).unwrap();
            let q = random(nq, d, 3);
            // Small blocks so that several query and bank blocks (odd remainders) are exercised.
            let idx = BurnKnn::on_device(&bank, &device)
                .with_blocks(32, 200)
                .unwrap();
            for k in [1usize, 9] {
                if k > n {
                    assert!(idx.search(&q, nq, k).is_err());
                    continue;
                }
                let got = idx.search(&q, nq, k).unwrap();
                let want = naive_search(&bank, &q, nq, k).unwrap();
                assert_close(&got, &want, 1e-4);
            }
        }
    }

    #[test]
    fn search_tensor_stays_on_the_device_and_checks_its_input() {
        let device = Device::flex();
        let (n, d, nq) = (700usize, 24usize, 50usize);
        let bank = MemoryBank::from_rows(random(n, d, 11), d).unwrap();
        let q = random(nq, d, 12);
        let idx = BurnKnn::on_device(&bank, &device)
            .with_blocks(16, 128)
            .unwrap();
        let qt = Tensor::<2>::from_data(TensorData::new(q.clone(), [nq, d]), &device);
        let before = ad_core::tensor::read_back_stats();
        let (dist, ids) = idx.search_tensor(qt.clone(), 5).unwrap();
        assert_eq!(ad_core::tensor::read_back_stats(), before, "no read-back");
        assert_eq!((dist.dims(), ids.dims()), ([nq, 5], [nq, 5]));
        let got = KnnResult {
            distances: read_f32(dist).unwrap(),
            indices: read_i64(ids)
                .unwrap()
                .into_iter()
                .map(|i| i as u32)
                .collect(),
            k: 5,
        };
        assert_close(&got, &naive_search(&bank, &q, nq, 5).unwrap(), 1e-4);
        for r in 0..nq {
            let row = &got.distances[r * 5..(r + 1) * 5];
            assert!(row.windows(2).all(|w| w[0] <= w[1]), "ascending: {row:?}");
        }
        assert!(matches!(
            idx.search_tensor(qt.clone().narrow(1, 0, d - 1), 1),
            Err(MemoryBankError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            idx.search_tensor(qt, n + 1),
            Err(MemoryBankError::InvalidK { .. })
        ));
    }
}
