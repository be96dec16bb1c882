//! The one place where tensors come back from their device to the host.

use burn::tensor::{Int, Tensor};

use crate::CoreError;

/// Reads a tensor of any rank back to the host as `f32` values, row-major (a device -> host
/// copy on GPU backends: call it only where the host needs the numbers).
///
/// # Shapes
/// Any `[d0, .., dn]` tensor gives `d0 * .. * dn` values.
pub fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, CoreError> {
    t.try_into_data()
        .map_err(|e| CoreError::TensorRead(format!("{e:?}")))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| CoreError::TensorRead(format!("{e:?}")))
}

/// Reads an integer tensor (e.g. nearest-neighbour indices) back to the host as `i64`,
/// row-major, whatever the backend's integer width.
///
/// # Shapes
/// Any `[d0, .., dn]` tensor gives `d0 * .. * dn` values.
pub fn read_i64<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<i64>, CoreError> {
    Ok(t.try_into_data()
        .map_err(|e| CoreError::TensorRead(format!("{e:?}")))?
        .iter::<i64>()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn reads_back_row_major() {
        let device = Device::flex();
        let t = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]),
            &device,
        );
        assert_eq!(read_f32(t.transpose()).unwrap(), vec![1.0, 3.0, 2.0, 4.0]);
    }
}
