//! Reductions, scans and the softmax family.

use super::fused::{given, through_f32};
use super::Tensor;
use crate::autograd::BackwardOp;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::{Reduce, ReduceOp};
use crate::shape::{normalize_dims, IntList};

impl Tensor {
    /// Reduce `dims` (empty: all dims, as PyTorch's `dim=[]`) without recording a graph.
    fn reduce_raw(&self, op: ReduceOp, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let dims: Vec<usize> = if dims.is_empty() {
            (0..self.ndim()).collect()
        } else {
            dims.to_vec()
        };
        if op.def().needs_elements && dims.iter().any(|&d| self.shape()[d] == 0) {
            return Err(Error::bad_shape(
                op.name(),
                self.shape(),
                "cannot reduce over a zero-size dimension: the result has no identity",
            ));
        }
        match op.rule(self.dtype()) {
            Reduce::Native => {}
            Reduce::ViaInt => return self.to_dtype(DType::I64)?.reduce_raw(op, &dims, keepdim),
        }
        let shape: Vec<usize> = (0..self.ndim())
            .filter_map(|d| {
                if dims.contains(&d) {
                    keepdim.then_some(1)
                } else {
                    Some(self.shape()[d])
                }
            })
            .collect();
        // A fused elementwise value is computed as the reduction reads it.
        let fused = crate::storage::lazy::reduce(self.storage(), self.layout(), op, &dims);
        let s = match fused {
            Some(s) => s?,
            None => self.with_storage(|s, l| s.reduce(op, l, &dims))?,
        };
        Ok(Tensor::from_storage(s, &shape))
    }

    fn dims_of(&self, op: &'static str, dims: impl IntList) -> Result<Vec<usize>> {
        let d = dims.to_isize();
        if self.ndim() == 0 {
            // A scalar accepts dim 0 / -1 and reduces nothing.
            normalize_dims(op, &d, self.shape())?;
            return Ok(vec![]);
        }
        normalize_dims(op, &d, self.shape())
    }

    pub(crate) fn sum_dims_internal(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        if let Some([x]) = crate::autocast::widened([self])? {
            return x.sum_dims_internal(dims, keepdim);
        }
        let out = self.reduce_raw(ReduceOp::Sum, dims, keepdim)?;
        let dims: Vec<usize> = if dims.is_empty() {
            (0..self.ndim()).collect()
        } else {
            dims.to_vec()
        };
        out.attach(|| BackwardOp::Sum { dims, keepdim }, &[self])
    }

    pub(crate) fn prod_dims_internal(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        if let Some([x]) = crate::autocast::widened([self])? {
            return x.prod_dims_internal(dims, keepdim);
        }
        let out = self.reduce_raw(ReduceOp::Prod, dims, keepdim)?;
        let dims: Vec<usize> = if dims.is_empty() {
            (0..self.ndim()).collect()
        } else {
            dims.to_vec()
        };
        out.attach(|| BackwardOp::Prod { dims, keepdim }, &[self])
    }

    fn extremum(&self, op: ReduceOp, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let out = self.reduce_raw(op, dims, keepdim)?;
        let dims: Vec<usize> = if dims.is_empty() {
            (0..self.ndim()).collect()
        } else {
            dims.to_vec()
        };
        let saved = out.clone();
        out.attach(
            move || BackwardOp::Extremum {
                dims,
                keepdim,
                out: saved,
            },
            &[self],
        )
    }

    /// Sum of all elements, as a 0-d tensor (bool and integer sums are I64).
    pub fn sum(&self) -> Result<Tensor> {
        self.sum_dims_internal(&[], false)
    }

    /// Sum over `dims`; `keepdim` keeps them with size 1.
    ///
    /// ```
    /// use wgrad::Tensor;
    /// let a = Tensor::arange(0.0, 20.0, 1.0)?.reshape(&[5, 4])?;
    /// assert_eq!(a.sum_dims(&[0], false)?.to_vec::<f32>()?, vec![40.0, 45.0, 50.0, 55.0]);
    /// assert_eq!(a.sum_dims(&[1], true)?.shape(), &[5, 1]);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn sum_dims(&self, dims: impl IntList, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        let d = self.dims_of("sum", dims)?;
        if d.is_empty() {
            return Ok(self.clone());
        }
        self.sum_dims_internal(&d, keepdim)
    }

    pub(crate) fn require_float(&self, op: &'static str) -> Result<()> {
        if !self.dtype().is_float() {
            return Err(Error::UnsupportedDType {
                op,
                dtype: self.dtype(),
                shape: self.shape().to_vec(),
                expected: "a floating-point tensor (convert with to_dtype(DType::F32))",
            });
        }
        Ok(())
    }

    /// Mean of all elements (float tensors only, as in PyTorch).
    pub fn mean(&self) -> Result<Tensor> {
        self.require_float("mean")?;
        // 16-bit inputs: the sum stays f32 until the division (PyTorch's accumulation).
        if let Some(m) = through_f32([Some(self)], |[x]| given("mean", x)?.mean())? {
            return Ok(m);
        }
        self.sum()?.div_scalar(self.numel() as f64)
    }

    /// Mean over `dims`.
    pub fn mean_dims(&self, dims: impl IntList, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        self.require_float("mean")?;
        let d = self.dims_of("mean", dims)?;
        if let Some(m) = through_f32([Some(self)], |[x]| {
            given("mean", x)?.mean_dims(d.as_slice(), keepdim)
        })? {
            return Ok(m);
        }
        if d.is_empty() {
            return Ok(self.clone());
        }
        let count: usize = d.iter().map(|&i| self.shape()[i]).product();
        self.sum_dims_internal(&d, keepdim)?
            .div_scalar(count as f64)
    }

    /// Product of all elements.
    pub fn prod(&self) -> Result<Tensor> {
        self.prod_dims_internal(&[], false)
    }

    /// Product over `dims`.
    pub fn prod_dims(&self, dims: impl IntList, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        let d = self.dims_of("prod", dims)?;
        if d.is_empty() {
            return Ok(self.clone());
        }
        self.prod_dims_internal(&d, keepdim)
    }

    /// Largest element (NaN if any element is NaN). The gradient is shared among ties.
    pub fn max(&self) -> Result<Tensor> {
        self.extremum(ReduceOp::Max, &[], false)
    }

    /// Smallest element.
    pub fn min(&self) -> Result<Tensor> {
        self.extremum(ReduceOp::Min, &[], false)
    }

    /// Largest values over `dims` (`torch.amax`); the gradient is shared among ties.
    pub fn max_dims(&self, dims: impl IntList, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        let d = self.dims_of("amax", dims)?;
        if d.is_empty() {
            return Ok(self.clone());
        }
        self.extremum(ReduceOp::Max, &d, keepdim)
    }

    /// Smallest values over `dims` (`torch.amin`).
    pub fn min_dims(&self, dims: impl IntList, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        let d = self.dims_of("amin", dims)?;
        if d.is_empty() {
            return Ok(self.clone());
        }
        self.extremum(ReduceOp::Min, &d, keepdim)
    }

    fn extremum_with_index(
        &self,
        op: ReduceOp,
        dim: isize,
        keepdim: bool,
    ) -> Result<(Tensor, Tensor)> {
        let arg = if op == ReduceOp::Max {
            ReduceOp::ArgMax
        } else {
            ReduceOp::ArgMin
        };
        if self.ndim() == 0 {
            self.layout().dim(op.name(), dim)?;
            return Ok((
                self.clone(),
                Tensor::zeros_on(&[] as &[usize], (DType::I64, self.device()))?,
            ));
        }
        let d = self.layout().dim(op.name(), dim)?;
        let idx = self.reduce_raw(arg, &[d], true)?;
        // The values are gathered at the indices, so the gradient goes to that element only,
        // as with `torch.max(x, dim)`.
        let values = self.gather(d as isize, &idx)?;
        if keepdim {
            Ok((values, idx))
        } else {
            Ok((
                values.squeeze_dim(d as isize)?,
                idx.squeeze_dim(d as isize)?,
            ))
        }
    }

    /// Largest values along `dim` and their indices (`torch.max(x, dim)`).
    pub fn max_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        self.live()?;
        self.extremum_with_index(ReduceOp::Max, dim, keepdim)
    }

    /// Smallest values along `dim` and their indices (`torch.min(x, dim)`).
    pub fn min_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        self.live()?;
        self.extremum_with_index(ReduceOp::Min, dim, keepdim)
    }

    /// Index of the largest element of the flattened tensor (first one on ties).
    pub fn argmax(&self) -> Result<Tensor> {
        self.reshape([-1isize])?
            .reduce_raw(ReduceOp::ArgMax, &[0], false)
    }

    /// Index of the smallest element of the flattened tensor.
    pub fn argmin(&self) -> Result<Tensor> {
        self.reshape([-1isize])?
            .reduce_raw(ReduceOp::ArgMin, &[0], false)
    }

    /// Indices of the largest values along `dim`.
    pub fn argmax_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        Ok(self.max_dim(dim, keepdim)?.1)
    }

    /// Indices of the smallest values along `dim`.
    pub fn argmin_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        Ok(self.min_dim(dim, keepdim)?.1)
    }

    /// Running sum along `dim` (`torch.cumsum`); bool and integers give I64.
    pub fn cumsum(&self, dim: isize) -> Result<Tensor> {
        self.live()?;
        let d = self.layout().dim("cumsum", dim)?;
        if self.dtype() == DType::Bool {
            return self.to_dtype(DType::I64)?.cumsum(dim);
        }
        let s = self.with_storage(|s, l| s.cumsum(l, d))?;
        if !self.dtype().is_float() {
            return Ok(Tensor::from_storage(s, self.shape()));
        }
        Tensor::from_op(s, self.shape(), || BackwardOp::Cumsum { dim: d }, &[self])
    }

    fn as_float(&self) -> Result<Tensor> {
        if self.dtype().is_float() {
            Ok(self.clone())
        } else {
            self.to_dtype(DType::F32)
        }
    }

    /// The maximum over `dims` (keepdim), detached: the shift that keeps `exp` from
    /// overflowing. `finite` replaces infinite maxima by 0 (logsumexp's rule: an infinite
    /// element gives an infinite result, not NaN); softmax keeps them, as PyTorch does, so
    /// `softmax([inf, 1])` is `[NaN, NaN]`. Over an empty dim there is no maximum and the
    /// shift is 0 (the sums are 0: logsumexp gives -inf, softmax an empty result).
    fn stable_shift(&self, dims: &[usize], finite: bool) -> Result<Tensor> {
        let _g = crate::no_grad();
        if dims.iter().any(|&d| self.shape()[d] == 0) {
            let shape: Vec<usize> = (0..self.ndim())
                .map(|d| {
                    if dims.contains(&d) {
                        1
                    } else {
                        self.shape()[d]
                    }
                })
                .collect();
            return Tensor::zeros_on(shape, (self.dtype(), self.device()));
        }
        let m = self.reduce_raw(ReduceOp::Max, dims, true)?;
        if !finite {
            return Ok(m);
        }
        let inf = m.abs()?.eq_scalar(f64::INFINITY)?;
        m.masked_fill(&inf, 0.0)
    }

    /// `log(sum(exp(x)))` over `dims`, computed stably.
    pub fn logsumexp(&self, dims: impl IntList, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        let x = self.as_float()?;
        let d = x.dims_of("logsumexp", dims)?;
        if d.is_empty() {
            return Ok(x);
        }
        let m = x.stable_shift(&d, true)?;
        let out = x
            .sub(&m)?
            .exp()?
            .sum_dims_internal(&d, true)?
            .log()?
            .add(&m)?;
        if keepdim {
            return Ok(out);
        }
        let shape: Vec<usize> = (0..x.ndim())
            .filter(|i| !d.contains(i))
            .map(|i| x.shape()[i])
            .collect();
        out.reshape(shape)
    }

    /// `exp(x) / sum(exp(x))` along `dim`, computed stably. One fused op along the last dim
    /// of a contiguous CPU tensor (`tensor/fused/softmax.rs`).
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        self.live()?;
        if let Some([x]) = crate::autocast::widened([self])? {
            return x.softmax(dim);
        }
        if let Some(y) = through_f32([Some(self)], |[x]| given("softmax", x)?.softmax(dim))? {
            return Ok(y);
        }
        let x = self.as_float()?;
        let d = x.dims_of("softmax", [dim])?;
        let Some(&d) = d.first() else {
            return Tensor::ones_like(&x);
        };
        if d + 1 == x.ndim() {
            if let Some(y) = crate::tensor::fused::softmax::softmax_last(&x, false)? {
                return Ok(y);
            }
        }
        x.softmax_composite(d)
    }

    /// [`Tensor::softmax`] along `dim` composed from primitives.
    pub(crate) fn softmax_composite(&self, dim: usize) -> Result<Tensor> {
        let e = self.sub(&self.stable_shift(&[dim], false)?)?.exp()?;
        e.div(&e.sum_dims_internal(&[dim], true)?)
    }

    /// `log(softmax(x))` along `dim`, computed stably (no `log(0)` for large logits). One
    /// fused op along the last dim of a contiguous CPU tensor.
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        self.live()?;
        if let Some([x]) = crate::autocast::widened([self])? {
            return x.log_softmax(dim);
        }
        if let Some(y) = through_f32([Some(self)], |[x]| {
            given("log_softmax", x)?.log_softmax(dim)
        })? {
            return Ok(y);
        }
        let x = self.as_float()?;
        let d = x.dims_of("log_softmax", [dim])?;
        let Some(&d) = d.first() else {
            return Tensor::zeros_like(&x);
        };
        if d + 1 == x.ndim() {
            if let Some(y) = crate::tensor::fused::softmax::softmax_last(&x, true)? {
                return Ok(y);
            }
        }
        x.log_softmax_composite(d)
    }

    /// [`Tensor::log_softmax`] along `dim` composed from primitives.
    pub(crate) fn log_softmax_composite(&self, dim: usize) -> Result<Tensor> {
        self.sub(&self.logsumexp([dim as isize], true)?)
    }
}
