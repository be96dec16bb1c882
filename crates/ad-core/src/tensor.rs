//! The one place where tensors come back from their device to the host.
//!
//! Every device -> host copy in the workspace's library code goes through [`read_f32`] or
//! [`read_i64`] (a test scans the sources for other read-backs), and both count what they read
//! on the calling thread ([`read_back_stats`]): tests use the count to prove that a prediction
//! path on a GPU device reads back scores, not patch embeddings.

use std::cell::Cell;

use burn::tensor::{Int, Tensor};

use crate::CoreError;

/// Device -> host read-backs made on one thread: how many, and how many values in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadBackStats {
    /// Calls to [`read_f32`] / [`read_i64`].
    pub reads: u64,
    /// Values read back (elements, not bytes).
    pub values: u64,
}

impl std::ops::Sub for ReadBackStats {
    type Output = ReadBackStats;
    fn sub(self, rhs: ReadBackStats) -> ReadBackStats {
        ReadBackStats {
            reads: self.reads - rhs.reads,
            values: self.values - rhs.values,
        }
    }
}

thread_local! {
    static READ_BACK: Cell<ReadBackStats> = const { Cell::new(ReadBackStats { reads: 0, values: 0 }) };
}

/// Read-backs made so far on the calling thread (monotonic; subtract two readings to measure
/// a call).
pub fn read_back_stats() -> ReadBackStats {
    READ_BACK.with(Cell::get)
}

fn count(values: usize) {
    READ_BACK.with(|c| {
        let s = c.get();
        c.set(ReadBackStats {
            reads: s.reads + 1,
            values: s.values + values as u64,
        });
    });
}

/// Reads a tensor of any rank back to the host as `f32` values, row-major (a device -> host
/// copy on GPU backends: call it only where the host needs the numbers).
///
/// # Shapes
/// Any `[d0, .., dn]` tensor gives `d0 * .. * dn` values.
pub fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, CoreError> {
    count(t.shape().num_elements());
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
    count(t.shape().num_elements());
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
        let before = read_back_stats();
        assert_eq!(read_f32(t.transpose()).unwrap(), vec![1.0, 3.0, 2.0, 4.0]);
        let ids = Tensor::<1, Int>::arange(0..3, &device);
        assert_eq!(read_i64(ids).unwrap(), vec![0, 1, 2]);
        assert_eq!(
            read_back_stats() - before,
            ReadBackStats {
                reads: 2,
                values: 7
            }
        );
    }
}
