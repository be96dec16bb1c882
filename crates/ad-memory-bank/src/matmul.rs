//! Thin safe wrapper over the `gemm` crate (the matrix multiply Burn's flex backend uses).

/// `dst[m x n] = beta * lhs[m x k] * rhs^T` where `rhs` is `n x k` row-major (so `rhs^T` is `k x n`),
/// `dst` row-major with row stride `n`. Single-threaded: callers parallelise over blocks.
pub(crate) fn gemm_abt(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
) {
    assert!(
        dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= n * k,
        "gemm_abt: buffer too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above guarantee every strided access stays inside the slices:
    // dst(i, j) = i * n + j, lhs(i, p) = i * k + p, rhs^T(p, j) = j * k + p.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            0.0f32,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product() {
        let (m, n, k) = (5, 7, 3);
        let lhs: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let rhs: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut dst = vec![0.0; m * n];
        gemm_abt(&mut dst, &lhs, &rhs, m, n, k, -2.0);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = -2.0 * (0..k).map(|p| lhs[i * k + p] * rhs[j * k + p]).sum::<f32>();
                assert!((dst[i * n + j] - want).abs() < 1e-5);
            }
        }
    }
}
