//! k-NN with Burn tensor ops on any [`Device`] (GPU backends for large banks).
//!
//! Per block of queries and block of bank rows: `v = ||m||^2 - 2 Q M^T` by a device matmul, then the
//! `k` smallest per row by `k` rounds of `min_dim_with_indices` + masking the found column (flex's
//! `topk` is a full sort, far slower for small `k`); the per-block candidates are merged on the host.
//! Returns Euclidean distances, like [`crate::BruteForce`].

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
}

impl KnnIndex for BurnKnn {
    /// Builds on `Device::default()` (the first enabled backend, GPUs first).
    fn build(bank: &MemoryBank) -> Result<Self> {
        Ok(Self::on_device(bank, &Device::default()))
    }

    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<KnnResult> {
        check_search(queries, nq, self.dim, k, self.len)?;
        let d = self.dim;
        let mut distances = Vec::with_capacity(nq * k);
        let mut indices = Vec::with_capacity(nq * k);
        let mut q0 = 0;
        while q0 < nq {
            let q1 = (q0 + self.block_q).min(nq);
            let bq = q1 - q0;
            let qt: Tensor<2> = Tensor::from_data(
                TensorData::new(queries[q0 * d..q1 * d].to_vec(), [bq, d]),
                &self.device,
            );
            // Host-side merge buffers: ascending (value, index) per query.
            let mut cd = vec![f32::INFINITY; bq * k];
            let mut ci = vec![u32::MAX; bq * k];
            let mut m0 = 0;
            while m0 < self.len {
                let m1 = (m0 + self.block_m).min(self.len);
                let bm = m1 - m0;
                let mb = self.bank.clone().narrow(0, m0, bm);
                let nb = self.norms.clone().narrow(1, m0, bm);
                // [bq, bm]
                let mut v = qt.clone().matmul(mb.transpose()).mul_scalar(-2.0).add(nb);
                let kb = k.min(bm);
                let mut vals = Vec::with_capacity(kb);
                let mut ids = Vec::with_capacity(kb);
                let iota = (kb > 1).then(|| {
                    Tensor::<1, Int>::arange(0..bm as i64, &self.device)
                        .reshape([1, bm])
                        .expand([bq, bm])
                });
                for round in 0..kb {
                    let (mv, mi) = v.clone().min_dim_with_indices(1); // [bq, 1]
                    if round + 1 < kb
                        && let Some(iota) = &iota
                    {
                        let mask = iota.clone().equal(mi.clone().expand([bq, bm]));
                        v = v.mask_fill(mask, f32::INFINITY);
                    }
                    vals.push(mv);
                    ids.push(mi);
                }
                let vals = read_f32(Tensor::cat(vals, 1))?; // [bq, kb]
                let ids = read_i64(Tensor::cat(ids, 1))?;
                for r in 0..bq {
                    let ds = &mut cd[r * k..(r + 1) * k];
                    let is = &mut ci[r * k..(r + 1) * k];
                    for j in 0..kb {
                        let (val, id) = (vals[r * kb + j], (ids[r * kb + j] as usize + m0) as u32);
                        if val < ds[k - 1] || (val == ds[k - 1] && id < is[k - 1]) {
                            let mut pos = k - 1;
                            while pos > 0
                                && (ds[pos - 1] > val || (ds[pos - 1] == val && is[pos - 1] > id))
                            {
                                ds[pos] = ds[pos - 1];
                                is[pos] = is[pos - 1];
                                pos -= 1;
                            }
                            ds[pos] = val;
                            is[pos] = id;
                        }
                    }
                }
                m0 = m1;
            }
            for r in 0..bq {
                let q = &queries[(q0 + r) * d..(q0 + r + 1) * d];
                let qn: f32 = q.iter().map(|x| x * x).sum();
                for j in 0..k {
                    distances.push((cd[r * k + j] + qn).max(0.0).sqrt());
                    indices.push(ci[r * k + j]);
                }
            }
            q0 = q1;
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
}
