//! Sorting along a dim: `sort`, `argsort` and `topk`. The order is found on the host (the
//! result's indices), then the values are a `gather` on the tensor's own device, so they
//! carry gradients and tangents like any gather.

use super::Tensor;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::normalize_dim;

impl Tensor {
    /// The elements along `dim` in ascending (or descending) order, and where each came
    /// from (`torch.sort`). NaN sorts as the largest value, as in PyTorch; equal elements
    /// keep their order.
    pub fn sort(&self, dim: isize, descending: bool) -> Result<(Tensor, Tensor)> {
        let indices = self.argsort(dim, descending)?;
        Ok((self.gather(dim, &indices)?, indices))
    }

    /// The indices that sort along `dim` (`torch.argsort`), I64.
    pub fn argsort(&self, dim: isize, descending: bool) -> Result<Tensor> {
        self.live()?;
        const OP: &str = "sort";
        if self.dtype() == DType::Bool {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: self.dtype(),
                shape: self.shape().to_vec(),
                expected: "a float or integer tensor",
            });
        }
        if self.ndim() == 0 {
            return Tensor::zeros_on([], (DType::I64, self.device()));
        }
        let d = normalize_dim(OP, dim, self.shape())?;
        // Rows along the last dim: move `d` there, sort each row, move it back.
        let moved = self.transpose(d as isize, -1)?;
        let n = moved.shape()[moved.ndim() - 1];
        let host = moved.to_device(&Device::Cpu)?;
        // Integers are compared exactly (as floats they would lose order past 2^53); every
        // float dtype compares as the f64 values it holds exactly.
        let index = if self.dtype() == DType::I64 {
            sorted_rows(&host.to_vec::<i64>()?, n, descending, |a, b| a.cmp(b))
        } else {
            let keys = host.to_dtype(DType::F64)?.to_vec::<f64>()?;
            sorted_rows(&keys, n, descending, nan_largest)
        };
        Tensor::from_vec(index, moved.shape())?
            .to_device(self.device())?
            .transpose(d as isize, -1)?
            .contiguous()
    }

    /// The `k` largest (or smallest) elements along `dim`, sorted, and their indices
    /// (`torch.topk`).
    pub fn topk(&self, k: usize, dim: isize, largest: bool) -> Result<(Tensor, Tensor)> {
        self.live()?;
        let d = normalize_dim("topk", dim, self.shape())?;
        let n = self.shape().get(d).copied().unwrap_or(1);
        if k > n {
            return Err(Error::invalid(
                "topk",
                format!(
                    "k ({k}) is larger than dim {d} of size {n} (shape {:?})",
                    self.shape()
                ),
            ));
        }
        let indices = self.argsort(dim, largest)?;
        let indices = if self.ndim() == 0 {
            indices
        } else {
            indices.narrow(d as isize, 0, k)?.contiguous()?
        };
        Ok((self.gather(dim, &indices)?, indices))
    }
}

/// NaN after every number, as PyTorch sorts it.
fn nan_largest(a: &f64, b: &f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// For each row of `n` keys, the positions in sorted order (stable).
fn sorted_rows<T>(
    keys: &[T],
    n: usize,
    descending: bool,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<i64> {
    let mut index = Vec::with_capacity(keys.len());
    for row in keys.chunks(n.max(1)) {
        let mut idx: Vec<usize> = (0..row.len()).collect();
        idx.sort_by(|&i, &j| {
            let o = cmp(&row[i], &row[j]);
            if descending {
                o.reverse()
            } else {
                o
            }
        });
        index.extend(idx.into_iter().map(|i| i as i64));
    }
    index
}
