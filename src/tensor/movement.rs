//! Views and movement: reshape, permute, slicing, expand, squeeze, and joining/splitting.
//! Every view shares storage; `contiguous` and `cat` are the copies.

use super::Tensor;
use crate::autograd::{BackwardOp, EmbedView};
use crate::backend::Arg;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::shape::{resolve_reshape, IntList};
use crate::storage::Storage;

impl Tensor {
    /// The same elements in a new shape (one dim may be `-1`). A view when the strides allow
    /// it (always for contiguous tensors), else a copy, like `torch.reshape`.
    ///
    /// ```
    /// use wgrad::Tensor;
    /// let x = Tensor::arange(0, 6, 1)?;
    /// let y = x.reshape(&[-1, 2])?;
    /// assert_eq!(y.shape(), &[3, 2]);
    /// assert_eq!(x.storage_id(), y.storage_id()); // a view
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn reshape(&self, shape: impl IntList) -> Result<Tensor> {
        self.live()?;
        let shape = resolve_reshape("reshape", self.shape(), &shape.to_isize())?;
        match self.layout().reshape(&shape) {
            Some(l) => Ok(self.view_op(l, || BackwardOp::Reshape)?),
            None => self.contiguous()?.reshape(shape),
        }
    }

    /// Like [`Tensor::reshape`] but an error when a view is impossible (`torch.view`).
    pub fn view(&self, shape: impl IntList) -> Result<Tensor> {
        self.live()?;
        let shape = resolve_reshape("view", self.shape(), &shape.to_isize())?;
        match self.layout().reshape(&shape) {
            Some(l) => Ok(self.view_op(l, || BackwardOp::Reshape)?),
            None => Err(Error::bad_shape(
                "view",
                self.shape(),
                format!(
                    "view size {shape:?} is not compatible with the strides {:?}; use reshape",
                    self.stride()
                ),
            )),
        }
    }

    /// Reorder the dims.
    pub fn permute(&self, dims: impl IntList) -> Result<Tensor> {
        self.live()?;
        let dims = dims.to_isize();
        if dims.len() != self.ndim() {
            return Err(Error::bad_shape(
                "permute",
                self.shape(),
                format!(
                    "permutation {dims:?} has {} dims, the tensor {}",
                    dims.len(),
                    self.ndim()
                ),
            ));
        }
        let norm = crate::shape::normalize_dims("permute", &dims, self.shape())?;
        debug_assert_eq!(norm.len(), dims.len());
        let order: Vec<usize> = dims
            .iter()
            .map(|&d| self.layout().dim("permute", d))
            .collect::<Result<_>>()?;
        let l = self.layout().permute(&order);
        self.view_op(l, || BackwardOp::Permute { dims: order })
    }

    /// Swap two dims.
    pub fn transpose(&self, dim0: isize, dim1: isize) -> Result<Tensor> {
        self.live()?;
        if self.ndim() < 2 {
            // PyTorch allows transposing the only dim of a vector with itself.
            self.layout().dim("transpose", dim0)?;
            self.layout().dim("transpose", dim1)?;
            return Ok(self.clone());
        }
        let (a, b) = (
            self.layout().dim("transpose", dim0)?,
            self.layout().dim("transpose", dim1)?,
        );
        let mut order: Vec<usize> = (0..self.ndim()).collect();
        order.swap(a, b);
        self.permute(order)
    }

    /// The transpose of a matrix (vectors and scalars are returned as they are), `A.T`.
    pub fn t(&self) -> Result<Tensor> {
        self.live()?;
        if self.ndim() > 2 {
            return Err(Error::bad_shape(
                "t",
                self.shape(),
                "t() expects a tensor with <= 2 dimensions; use transpose or permute",
            ));
        }
        self.transpose(0, -1)
    }

    /// Elements `start, start+step, ...` before `end` along `dim`, Python slice semantics:
    /// negative bounds count from the end, out-of-range bounds are clamped, `None` means the
    /// whole extent. A negative `step` walks backwards, as NumPy's `x[::-1]` (PyTorch
    /// refuses it; here it is a copy, a positive step a view). A step of 0 is an error.
    pub fn slice(
        &self,
        dim: isize,
        start: Option<isize>,
        end: Option<isize>,
        step: isize,
    ) -> Result<Tensor> {
        self.live()?;
        let d = self.layout().dim("slice", dim)?;
        if self.ndim() == 0 {
            return Err(Error::bad_shape(
                "slice",
                self.shape(),
                "cannot slice a 0-d tensor",
            ));
        }
        if step == 0 {
            return Err(Error::invalid(
                "slice",
                format!("step must not be zero (shape {:?})", self.shape()),
            ));
        }
        let size = self.shape()[d] as isize;
        if step < 0 {
            // Python's bounds for a backward walk: from `start` (default the last) down to,
            // not including, `end` (default before the first); both clamped to -1..size-1.
            let bound = |v: isize| (if v < 0 { v + size } else { v }).clamp(-1, size - 1);
            let first = start.map(bound).unwrap_or(size - 1);
            let last = end.map(bound).unwrap_or(-1);
            let picked: Vec<i64> = (last + 1..=first)
                .rev()
                .step_by(step.unsigned_abs())
                .map(|i| i as i64)
                .collect();
            let n = picked.len();
            let index = Tensor::from_vec(picked, [n])?.to_device(self.device())?;
            return self.index_select(d as isize, &index);
        }
        let clamp =
            |v: isize| -> usize { (if v < 0 { v + size } else { v }).clamp(0, size) as usize };
        let start = start.map(clamp).unwrap_or(0);
        let stop = end.map(clamp).unwrap_or(size as usize).max(start);
        let step = step as usize;
        let l = self.layout().slice(d, start, stop, step);
        self.view_op(l, || BackwardOp::Slice {
            dim: d,
            start,
            stop,
            step,
        })
    }

    /// `len` elements from `start` along `dim` (`torch.narrow`); out-of-range is an error.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        self.live()?;
        let d = self.layout().dim("narrow", dim)?;
        let size = self.shape().get(d).copied().unwrap_or(1);
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::IndexOutOfRange {
                op: "narrow",
                index: start.saturating_add(len).min(i64::MAX as usize) as i64,
                dim: d,
                size,
                shape: self.shape().to_vec(),
            });
        }
        self.slice(dim, Some(start as isize), Some((start + len) as isize), 1)
    }

    /// The sub-tensor at `index` along `dim`, removing the dim (`t[index]`, `t[:, index]`).
    pub fn select(&self, dim: isize, index: isize) -> Result<Tensor> {
        self.live()?;
        if self.ndim() == 0 {
            return Err(Error::bad_shape(
                "select",
                self.shape(),
                "cannot index a 0-d tensor",
            ));
        }
        let d = self.layout().dim("select", dim)?;
        let size = self.shape()[d];
        let i = if index < 0 {
            index + size as isize
        } else {
            index
        };
        if i < 0 || i >= size as isize {
            return Err(Error::IndexOutOfRange {
                op: "select",
                index: index as i64,
                dim: d,
                size,
                shape: self.shape().to_vec(),
            });
        }
        let i = i as usize;
        let l = self.layout().select(d, i);
        self.view_op(l, || BackwardOp::Select { dim: d, index: i })
    }

    /// Broadcast to a larger shape without copying; `-1` keeps a dim's size.
    pub fn expand(&self, shape: impl IntList) -> Result<Tensor> {
        self.live()?;
        let target = shape.to_isize();
        if target.len() < self.ndim() {
            return Err(Error::shapes(
                "expand",
                self.shape(),
                &target
                    .iter()
                    .map(|&s| s.max(0) as usize)
                    .collect::<Vec<_>>(),
                "the target has fewer dimensions",
            ));
        }
        let extra = target.len() - self.ndim();
        let mut full = Vec::with_capacity(target.len());
        for (i, &s) in target.iter().enumerate() {
            if s == -1 {
                if i < extra {
                    return Err(Error::invalid(
                        "expand",
                        format!(
                            "-1 is not allowed in a new leading dimension ({target:?}, shape {:?})",
                            self.shape()
                        ),
                    ));
                }
                full.push(self.shape()[i - extra]);
            } else if s < 0 {
                return Err(Error::invalid(
                    "expand",
                    format!("invalid size {s} in {target:?}"),
                ));
            } else {
                full.push(s as usize);
            }
        }
        if full == self.shape() {
            return Ok(self.clone());
        }
        let l = self.layout().broadcast_to("expand", &full)?;
        self.view_op(l, || BackwardOp::Expand)
    }

    /// Every window of `size` consecutive elements along `dim`, `step` apart, as a new last
    /// dim (`Tensor.unfold`): `[.., L, ..]` becomes `[.., (L - size) / step + 1, .., size]`.
    /// A view: windows share elements where `step < size`, and the gradient sums them.
    ///
    /// ```
    /// use wgrad::Tensor;
    /// let x = Tensor::arange(0, 5, 1)?;
    /// assert_eq!(x.unfold(0, 2, 2)?.to_vec2::<i64>()?, vec![vec![0, 1], vec![2, 3]]);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn unfold(&self, dim: isize, size: usize, step: usize) -> Result<Tensor> {
        self.live()?;
        if self.ndim() == 0 {
            // PyTorch treats a 0-d tensor as one element along dim 0 or -1.
            self.layout().dim("unfold", dim)?;
            return self.unsqueeze(0)?.unfold(0, size, step)?.squeeze_dim(0);
        }
        let d = self.layout().dim("unfold", dim)?;
        let len = self.shape()[d];
        if step == 0 || size > len {
            return Err(Error::bad_shape(
                "unfold",
                self.shape(),
                format!(
                    "size {size} must be at most dimension {d}'s {len} and step {step} positive"
                ),
            ));
        }
        let l = self.layout().windows(d, size, step);
        crate::shape::addressable_bytes("unfold", &l.shape, 8)?;
        self.view_op(l, || BackwardOp::Windows { dim: d, size, step })
    }

    /// The adjoint of [`Tensor::unfold`]: windows `[.., n, .., size]` summed back into
    /// `shape` (each element gets the sum of its copies; elements no window covers, zero).
    ///
    /// The sum is laid out in memory in the order of this tensor's strides (a permuted
    /// view of `shape`), so each tap's add walks both operands along their fastest dim:
    /// the gradient of a convolution's windows arrives transposed, and a row-major sum
    /// would take it three elements at a time.
    pub(crate) fn fold_windows(
        &self,
        shape: &[usize],
        dim: usize,
        size: usize,
        step: usize,
    ) -> Result<Tensor> {
        let rank = shape.len();
        let windows = self.shape().get(dim).copied().unwrap_or(0);
        // Windows that tile the dim exactly (a pool's, stride = size) sum nothing: the fold
        // is a reordering, the taps moved next to their window's dim and merged with it.
        // One copy, instead of a zero fill and a strided add per tap.
        let tiles =
            dim < rank && self.ndim() == rank + 1 && windows.checked_mul(size) == Some(shape[dim]);
        if step == size && size > 0 && windows > 0 && tiles {
            let mut order: Vec<usize> = (0..rank).collect();
            order.insert(dim + 1, rank);
            return self.permute(order)?.reshape(shape);
        }
        // An f32 fold on a GPU is one kernel: each element sums its own taps.
        let on_gpu = self.with_storage(|s, l| match s {
            Storage::Gpu(g) if g.dtype == crate::DType::F32 && self.ndim() == rank + 1 => {
                g.fold_windows(l, shape, (dim, size, step)).map(Some)
            }
            _ => Ok(None),
        })?;
        if let Some(out) = on_gpu {
            return Tensor::from_op(
                Storage::Gpu(out),
                shape,
                || BackwardOp::FoldWindows {
                    dim,
                    size,
                    step,
                    order: (0..rank).collect(),
                },
                &[self],
            );
        }
        let strides = self.stride();
        let mut order: Vec<usize> = (0..rank).collect();
        order.sort_by_key(|&d| std::cmp::Reverse(strides.get(d).copied().unwrap_or(0)));
        let inverse = crate::shape::inverse_permutation(&order);
        self.fold_windows_in(shape, dim, size, step, order)?
            .permute(inverse)
    }

    /// [`Tensor::fold_windows`] into a buffer whose dims are `shape`'s in `order`; the
    /// result has that permuted shape.
    fn fold_windows_in(
        &self,
        shape: &[usize],
        dim: usize,
        size: usize,
        step: usize,
        order: Vec<usize>,
    ) -> Result<Tensor> {
        let stored: Vec<usize> = order.iter().map(|&d| shape[d]).collect();
        // The buffer seen in `shape`'s dim order.
        let full = Layout::contiguous(&stored).permute(&crate::shape::inverse_permutation(&order));
        let windows = self.shape().get(dim).copied().unwrap_or(0);
        let mut out = Storage::full(self.device(), full.numel(), 0.into(), self.dtype())?;
        if windows > 0 {
            // One strided add per tap: tap `t` of window `w` is element `w * step + t`.
            let last = self.ndim() - 1;
            for t in 0..size {
                // Both walked in the buffer's order (an elementwise add may go in any).
                let dst = full
                    .slice(dim, t, t + (windows - 1) * step + 1, step)
                    .permute(&order);
                self.with_storage(|s, l| {
                    out.binary_inplace(
                        crate::op::BinaryOp::Add,
                        &dst,
                        Arg::Buf(s, &l.select(last, t).permute(&order)),
                    )
                })?;
            }
        }
        Tensor::from_op(
            out,
            &stored,
            || BackwardOp::FoldWindows {
                dim,
                size,
                step,
                order,
            },
            &[self],
        )
    }

    /// Broadcast to `shape` (`torch.broadcast_to`).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        self.live()?;
        self.expand(shape)
    }

    /// Insert a dim of size 1 at `dim` (`-1` appends).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        self.live()?;
        let rank = self.ndim() as isize + 1;
        let d = if dim < 0 { dim + rank } else { dim };
        if d < 0 || d >= rank {
            return Err(Error::DimOutOfRange {
                op: "unsqueeze",
                dim,
                shape: self.shape().to_vec(),
            });
        }
        let l = self.layout().unsqueeze(d as usize);
        self.view_op(l, || BackwardOp::Reshape)
    }

    /// Remove `dim` if its size is 1 (otherwise the tensor is returned unchanged, as in PyTorch).
    pub fn squeeze_dim(&self, dim: isize) -> Result<Tensor> {
        self.live()?;
        if self.ndim() == 0 {
            self.layout().dim("squeeze", dim)?;
            return Ok(self.clone());
        }
        let d = self.layout().dim("squeeze", dim)?;
        if self.shape()[d] != 1 {
            return Ok(self.clone());
        }
        let l = self.layout().squeeze(d);
        self.view_op(l, || BackwardOp::Reshape)
    }

    /// Remove every dim of size 1.
    pub fn squeeze(&self) -> Result<Tensor> {
        self.live()?;
        let shape: Vec<usize> = self.shape().iter().copied().filter(|&s| s != 1).collect();
        if shape.len() == self.ndim() {
            return Ok(self.clone());
        }
        self.reshape(shape)
    }

    /// Merge dims `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        self.live()?;
        if self.ndim() == 0 {
            return self.reshape([1usize]);
        }
        let (s, e) = (
            self.layout().dim("flatten", start)?,
            self.layout().dim("flatten", end)?,
        );
        if s > e {
            return Err(Error::invalid(
                "flatten",
                format!(
                    "start dim {start} comes after end dim {end} (shape {:?})",
                    self.shape()
                ),
            ));
        }
        let mut shape: Vec<usize> = self.shape()[..s].to_vec();
        shape.push(self.shape()[s..=e].iter().product());
        shape.extend_from_slice(&self.shape()[e + 1..]);
        self.reshape(shape)
    }

    /// A contiguous tensor with the same values: `self` when already contiguous, else a copy.
    pub fn contiguous(&self) -> Result<Tensor> {
        self.live()?;
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        self.contiguous_copy()
    }

    /// A copy into fresh storage (PyTorch's `clone()`; Rust's `Clone` shares the tensor).
    pub fn deep_clone(&self) -> Result<Tensor> {
        self.live()?;
        self.contiguous_copy()
    }

    pub(crate) fn contiguous_copy(&self) -> Result<Tensor> {
        let s = self.with_storage(|s, l| s.copy_strided(l))?;
        Tensor::from_op(s, self.shape(), || BackwardOp::Copy, &[self])
    }

    /// Join tensors along an existing dim (`torch.cat`). Shapes must agree except along `dim`;
    /// dtypes are promoted.
    ///
    /// ```
    /// use wgrad::Tensor;
    /// let x = Tensor::zeros(&[2, 3])?;
    /// let y = Tensor::ones(&[1, 3])?;
    /// assert_eq!(Tensor::cat(&[&x, &y], 0)?.shape(), &[3, 3]);
    /// assert!(Tensor::cat(&[&x, &y], 1).is_err());
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        for t in tensors {
            t.live()?;
        }
        const OP: &str = "cat";
        let first = *tensors
            .first()
            .ok_or_else(|| Error::invalid(OP, "expected a non-empty list of tensors"))?;
        if first.ndim() == 0 {
            return Err(Error::bad_shape(
                OP,
                first.shape(),
                "zero-dimensional tensors cannot be concatenated",
            ));
        }
        let d = first.layout().dim(OP, dim)?;
        let mut dtype = first.dtype();
        let mut shape = first.shape().to_vec();
        shape[d] = 0;
        for t in tensors {
            first.same_device(OP, t)?;
            let ok = t.ndim() == first.ndim()
                && (0..t.ndim()).all(|i| i == d || t.shape()[i] == first.shape()[i]);
            if !ok {
                return Err(Error::shapes(
                    OP,
                    first.shape(),
                    t.shape(),
                    format!("sizes must match except in dimension {d}"),
                ));
            }
            shape[d] += t.shape()[d];
            dtype = dtype.promote(t.dtype());
        }
        let parts: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.to_dtype(dtype))
            .collect::<Result<_>>()?;
        let mut out = Storage::full(first.device(), shape.iter().product(), 0.into(), dtype)?;
        let full = Layout::contiguous(&shape);
        let mut start = 0;
        for p in &parts {
            let len = p.shape()[d];
            let dst = full.slice(d, start, start + len, 1);
            p.with_storage(|s, l| out.write(&dst, Arg::Buf(s, l)))?;
            start += len;
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::from_op(out, &shape, || BackwardOp::Cat { dim: d }, &refs)
    }

    /// Join tensors of the same shape along a new dim (`torch.stack`).
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        for t in tensors {
            t.live()?;
        }
        let first = *tensors
            .first()
            .ok_or_else(|| Error::invalid("stack", "expected a non-empty list of tensors"))?;
        for t in tensors {
            if t.shape() != first.shape() {
                return Err(Error::shapes(
                    "stack",
                    first.shape(),
                    t.shape(),
                    "stack expects each tensor to be equal size",
                ));
            }
        }
        let rank = first.ndim() as isize + 1;
        let d = if dim < 0 { dim + rank } else { dim };
        if d < 0 || d >= rank {
            return Err(Error::DimOutOfRange {
                op: "stack",
                dim,
                shape: first.shape().to_vec(),
            });
        }
        let parts: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.unsqueeze(d))
            .collect::<Result<_>>()?;
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), d)
    }

    /// Views of consecutive pieces of `size` along `dim` (the last may be smaller).
    pub fn split(&self, size: usize, dim: isize) -> Result<Vec<Tensor>> {
        self.live()?;
        let d = self.layout().dim("split", dim)?;
        if size == 0 {
            return Err(Error::invalid(
                "split",
                format!("split size must be positive (shape {:?})", self.shape()),
            ));
        }
        let n = self.shape()[d];
        (0..n.div_ceil(size).max(1))
            .map(|i| {
                self.narrow(
                    d as isize,
                    (i * size).min(n),
                    size.min(n - (i * size).min(n)),
                )
            })
            .collect()
    }

    /// Views of pieces with the given sizes along `dim`; the sizes must add up to the dim.
    pub fn split_with_sizes(&self, sizes: &[usize], dim: isize) -> Result<Vec<Tensor>> {
        self.live()?;
        let d = self.layout().dim("split_with_sizes", dim)?;
        let total: usize = sizes.iter().sum();
        if total != self.shape()[d] {
            return Err(Error::bad_shape(
                "split_with_sizes",
                self.shape(),
                format!("sizes {sizes:?} add up to {total}, not {}", self.shape()[d]),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&s| {
                let t = self.narrow(d as isize, start, s);
                start += s;
                t
            })
            .collect()
    }

    /// `chunks` views of (nearly) equal size along `dim`.
    pub fn chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
        self.live()?;
        let d = self.layout().dim("chunk", dim)?;
        if chunks == 0 {
            return Err(Error::invalid("chunk", "number of chunks must be positive"));
        }
        self.split(self.shape()[d].div_ceil(chunks).max(1), dim)
    }

    /// The adjoint of a slice or select: this tensor placed at `view` within zeros of `shape`.
    pub(crate) fn embed(&self, shape: &[usize], view: EmbedView) -> Result<Tensor> {
        let full = Layout::contiguous(shape);
        let dst = match &view {
            EmbedView::Slice {
                dim,
                start,
                stop,
                step,
            } => full.slice(*dim, *start, *stop, *step),
            EmbedView::Select { dim, index } => full.select(*dim, *index),
        };
        let mut out = Storage::full(self.device(), full.numel(), 0.into(), self.dtype())?;
        self.with_storage(|s, l| out.write(&dst, Arg::Buf(s, l)))?;
        Tensor::from_op(out, shape, || BackwardOp::Embed { view }, &[self])
    }
}
