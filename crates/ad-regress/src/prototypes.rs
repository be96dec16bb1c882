//! Radial features of the score student: distances of a patch feature to a few prototypes of
//! the good patches (k-means centres, frozen after fitting). A head that sees these
//! distances extrapolates as its teacher does: a patch unlike every good patch is far from
//! every prototype, whatever direction it lies in, where a plain MLP's output off the training
//! data is arbitrary.

use burn::tensor::Tensor;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rayon::prelude::*;

/// Lloyd iterations of [`kmeans`].
const ITERATIONS: usize = 15;

/// `k` centres of the `n x d` rows `x` by Lloyd's algorithm on (up to) `max_rows` of them drawn
/// with `seed`, started from `k` drawn rows (cycling through them when there are fewer than
/// `k`: duplicate centres, so the count is always `k`); an emptied centre keeps its position.
/// Returns `k x d`, row-major (empty when `x` is).
pub(crate) fn kmeans(x: &[f32], d: usize, k: usize, max_rows: usize, seed: u64) -> Vec<f32> {
    let n = x.len() / d.max(1);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
    order.truncate(max_rows.min(n));
    if order.is_empty() {
        return Vec::new();
    }
    let mut centres: Vec<f32> = (0..k)
        .map(|j| order[j % order.len()])
        .flat_map(|i| x[i * d..(i + 1) * d].iter().copied())
        .collect();
    for _ in 0..ITERATIONS {
        let assign: Vec<usize> = order
            .par_iter()
            .map(|&i| nearest(&x[i * d..(i + 1) * d], &centres, d).0)
            .collect();
        let mut sums = vec![0.0f64; k * d];
        let mut counts = vec![0usize; k];
        for (&i, &a) in order.iter().zip(&assign) {
            counts[a] += 1;
            for (s, &v) in sums[a * d..(a + 1) * d]
                .iter_mut()
                .zip(&x[i * d..(i + 1) * d])
            {
                *s += f64::from(v);
            }
        }
        for (c, (&count, sum)) in counts.iter().zip(sums.chunks(d)).enumerate() {
            if count > 0 {
                for (o, &s) in centres[c * d..(c + 1) * d].iter_mut().zip(sum) {
                    *o = (s / count as f64) as f32;
                }
            }
        }
    }
    centres
}

/// Index and squared distance of the nearest centre.
fn nearest(row: &[f32], centres: &[f32], d: usize) -> (usize, f32) {
    centres
        .chunks_exact(d)
        .map(|c| {
            row.iter()
                .zip(c)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
        })
        .enumerate()
        .fold(
            (0, f32::INFINITY),
            |best, (j, v)| if v < best.1 { (j, v) } else { best },
        )
}

/// Every row followed by its Euclidean distances to the prototypes, on the rows' device:
/// `sqrt(max(0, |x|^2 - 2 x.c + |c|^2))` by one matrix product.
///
/// # Shapes
/// - `x`: `[n, d]`
/// - `prototypes`: `[k, d]`
/// - returns `[n, d + k]`
pub(crate) fn with_radial(x: Tensor<2>, prototypes: &Tensor<2>) -> Tensor<2> {
    let x2 = x.clone().powf_scalar(2.0).sum_dim(1);
    let c2 = prototypes.clone().powf_scalar(2.0).sum_dim(1).transpose();
    let cross = x.clone().matmul(prototypes.clone().transpose());
    let d2 = x2 + c2 - cross.mul_scalar(2.0);
    Tensor::cat(vec![x, d2.clamp_min(0.0).sqrt()], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ad_core::tensor::read_f32;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn kmeans_finds_separated_clusters_and_radial_features_are_distances() {
        // Two tight clusters around (0, 0) and (10, 10).
        let mut x = Vec::new();
        for i in 0..50 {
            let e = (i % 5) as f32 * 0.01;
            x.extend([e, -e, 10.0 + e, 10.0 - e]);
        }
        let c = kmeans(&x, 2, 2, 1000, 3);
        let mut firsts: Vec<f32> = c.chunks(2).map(|p| p[0].round()).collect();
        firsts.sort_by(f32::total_cmp);
        assert_eq!(firsts, vec![0.0, 10.0]);
        assert_eq!(kmeans(&x, 2, 2, 1000, 3), c, "seeded");
        // Fewer rows than centres: still `k` centres (duplicates); no rows: none.
        assert_eq!(kmeans(&x[..4], 2, 5, 1000, 3).len(), 5 * 2);
        assert!(kmeans(&[], 2, 5, 1000, 3).is_empty());
        let device = Device::default();
        let row = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0], [1, 2]), &device);
        let p = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 3.0, 0.0], [2, 2]),
            &device,
        );
        let r = read_f32(with_radial(row, &p)).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(&r[..2], &[3.0, 4.0]);
        assert!(
            (r[2] - 5.0).abs() < 1e-5 && (r[3] - 4.0).abs() < 1e-5,
            "{r:?}"
        );
    }
}
