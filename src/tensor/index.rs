//! Indexing (`t[1:3, ::2]` through the [`s!`](crate::s) macro), gathering and scattering
//! with index tensors, and every op that writes into a tensor's existing storage.

use super::{Operand, Tensor};
use crate::autograd::{self, BackwardOp};
use crate::backend::Arg;
use crate::device::Device;
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::op::BinaryOp;
use crate::shape::broadcast_shapes;

/// One entry of an index expression: an integer (removes the dim), a range with a step, or
/// a new axis of size 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceItem {
    /// `t[i]`: picks one index and removes the dim (negative counts from the end).
    Index(isize),
    /// `t[start:end:step]`; `None` bounds mean the whole extent.
    #[allow(missing_docs)]
    Range {
        start: Option<isize>,
        end: Option<isize>,
        step: isize,
    },
    /// `t[None]`: a new dim of size 1.
    NewAxis,
}

impl SliceItem {
    /// The same range with a step (`..;2` in [`s!`](crate::s)).
    pub fn step(self, step: isize) -> SliceItem {
        match self {
            SliceItem::Range { start, end, .. } => SliceItem::Range { start, end, step },
            SliceItem::Index(i) => SliceItem::Range {
                start: Some(i),
                end: None,
                step,
            },
            SliceItem::NewAxis => SliceItem::NewAxis,
        }
    }
}

macro_rules! slice_item_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for SliceItem {
            fn from(i: $t) -> Self { SliceItem::Index(i as isize) }
        }
        impl From<std::ops::Range<$t>> for SliceItem {
            fn from(r: std::ops::Range<$t>) -> Self {
                SliceItem::Range { start: Some(r.start as isize), end: Some(r.end as isize), step: 1 }
            }
        }
        impl From<std::ops::RangeInclusive<$t>> for SliceItem {
            fn from(r: std::ops::RangeInclusive<$t>) -> Self {
                let end = *r.end() as isize;
                SliceItem::Range { start: Some(*r.start() as isize), end: if end == -1 { None } else { Some(end + 1) }, step: 1 }
            }
        }
        impl From<std::ops::RangeFrom<$t>> for SliceItem {
            fn from(r: std::ops::RangeFrom<$t>) -> Self {
                SliceItem::Range { start: Some(r.start as isize), end: None, step: 1 }
            }
        }
        impl From<std::ops::RangeTo<$t>> for SliceItem {
            fn from(r: std::ops::RangeTo<$t>) -> Self {
                SliceItem::Range { start: None, end: Some(r.end as isize), step: 1 }
            }
        }
    )*};
}
slice_item_from_int!(i32, i64, isize, usize);

impl From<std::ops::RangeFull> for SliceItem {
    fn from(_: std::ops::RangeFull) -> Self {
        SliceItem::Range {
            start: None,
            end: None,
            step: 1,
        }
    }
}

/// Build an index expression like NumPy's: `s![1, 1..3, ..;2, -1]` is `[1, 1:3, ::2, -1]`.
/// Integers select (and remove a dim), ranges slice, `range;step` slices with a step.
///
/// ```
/// use wgrad::{s, Tensor};
/// let x = Tensor::arange(0, 35, 1)?.reshape(&[7, 5])?;
/// let y = x.i(s![..;3, ..;2])?;
/// assert_eq!(y.to_vec2::<i64>()?, vec![vec![0, 2, 4], vec![15, 17, 19], vec![30, 32, 34]]);
/// assert_eq!(x.i(s![-1])?.to_vec::<i64>()?, vec![30, 31, 32, 33, 34]);
/// # Ok::<(), wgrad::Error>(())
/// ```
#[macro_export]
macro_rules! s {
    (@acc [$($acc:expr),*]) => { vec![$($acc),*] };
    (@acc [$($acc:expr),*] $e:expr ; $step:expr , $($rest:tt)*) => {
        $crate::s!(@acc [$($acc,)* $crate::SliceItem::from($e).step($step)] $($rest)*)
    };
    (@acc [$($acc:expr),*] $e:expr ; $step:expr) => {
        $crate::s!(@acc [$($acc,)* $crate::SliceItem::from($e).step($step)])
    };
    (@acc [$($acc:expr),*] $e:expr , $($rest:tt)*) => {
        $crate::s!(@acc [$($acc,)* $crate::SliceItem::from($e)] $($rest)*)
    };
    (@acc [$($acc:expr),*] $e:expr) => {
        $crate::s!(@acc [$($acc,)* $crate::SliceItem::from($e)])
    };
    ($($t:tt)*) => { $crate::s!(@acc [] $($t)*) };
}

/// An operand that is a tensor (broadcast) or a Rust number: the right-hand side of an
/// assignment or an in-place op, and either side of elementwise math (`x.mul(2.0)`).
#[derive(Clone)]
pub enum Source {
    /// A tensor, broadcast to the destination.
    Tensor(Tensor),
    /// One value for every element.
    Scalar(Scalar),
}

impl From<&Tensor> for Source {
    fn from(t: &Tensor) -> Self {
        Source::Tensor(t.clone())
    }
}
impl From<Tensor> for Source {
    fn from(t: Tensor) -> Self {
        Source::Tensor(t)
    }
}
impl<S: Into<Scalar>> From<S> for Source {
    fn from(s: S) -> Self {
        Source::Scalar(s.into())
    }
}

impl Source {
    /// The tensor, if this is one.
    pub fn tensor(&self) -> Option<&Tensor> {
        match self {
            Source::Tensor(t) => Some(t),
            Source::Scalar(_) => None,
        }
    }
}

impl Tensor {
    /// A view selected by an index expression built with [`s!`](crate::s); dims not named
    /// are kept whole.
    pub fn i(&self, items: impl AsRef<[SliceItem]>) -> Result<Tensor> {
        self.live()?;
        let items = items.as_ref();
        let named = items
            .iter()
            .filter(|it| !matches!(it, SliceItem::NewAxis))
            .count();
        if named > self.ndim() {
            return Err(Error::bad_shape(
                "index",
                self.shape(),
                format!(
                    "too many indices: {named} for a tensor of {} dims",
                    self.ndim()
                ),
            ));
        }
        let mut t = self.clone();
        let mut dim = 0isize;
        for it in items {
            match *it {
                SliceItem::Index(i) => t = t.select(dim, i)?,
                SliceItem::Range { start, end, step } => {
                    t = t.slice(dim, start, end, step)?;
                    dim += 1;
                }
                SliceItem::NewAxis => {
                    t = t.unsqueeze(dim)?;
                    dim += 1;
                }
            }
        }
        Ok(t)
    }

    /// Rows (or slices along `dim`) picked by a 1-D I64 index tensor (`torch.index_select`,
    /// also `t[idx]` for `dim` 0).
    pub fn index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        self.live()?;
        index.live()?;
        const OP: &str = "index_select";
        self.same_device(OP, index)?;
        check_index_dtype(OP, index)?;
        if index.ndim() > 1 {
            return Err(Error::bad_shape(
                OP,
                index.shape(),
                "the index must be a 1-D tensor",
            ));
        }
        let src = if self.ndim() == 0 {
            self.reshape([1usize])?
        } else {
            self.clone()
        };
        let d = src.layout().dim(OP, dim)?;
        let index = index.reshape([-1isize])?;
        let s = {
            crate::storage::with_reads([Some(src.storage()), Some(index.storage())], |[ss, si]| {
                match (ss, si) {
                    (Some(ss), Some(si)) => ss.index_select(src.layout(), d, si, index.layout()),
                    _ => Err(Error::invalid(OP, "a storage was not locked")),
                }
            })?
        };
        let mut shape = src.shape().to_vec();
        shape[d] = index.numel();
        let out = Tensor::from_op(
            s,
            &shape,
            || BackwardOp::IndexSelect {
                dim: d,
                index: index.clone(),
            },
            &[&src],
        )?;
        if self.ndim() == 0 {
            return out.reshape(self.shape());
        }
        Ok(out)
    }

    /// `out[i][j] = self[index[i][j]][j]` for `dim` 0 (and likewise for other dims):
    /// `torch.gather`. `index` has the rank of `self` and is I64.
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        self.live()?;
        index.live()?;
        const OP: &str = "gather";
        self.same_device(OP, index)?;
        check_index_dtype(OP, index)?;
        if self.ndim() == 0 && index.ndim() == 0 {
            // A 0-d tensor gathers as a tensor of one element (dim 0 or -1, as PyTorch).
            self.layout().dim(OP, dim)?;
            return self
                .reshape([1])?
                .gather(0, &index.reshape([1])?)?
                .reshape(Vec::<usize>::new());
        }
        let d = self.layout().dim(OP, dim)?;
        check_index_shape(OP, d, index, self.shape(), self.shape())?;
        let s = {
            crate::storage::with_reads([Some(self.storage()), Some(index.storage())], |[ss, si]| {
                match (ss, si) {
                    (Some(ss), Some(si)) => ss.gather(self.layout(), d, si, index.layout()),
                    _ => Err(Error::invalid(OP, "a storage was not locked")),
                }
            })?
        };
        Tensor::from_op(
            s,
            index.shape(),
            || BackwardOp::Gather {
                dim: d,
                index: index.clone(),
            },
            &[self],
        )
    }

    /// A copy of `self` with `src` added at the positions `index` names along `dim`
    /// (`torch.scatter_add`).
    pub fn scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        self.live()?;
        index.live()?;
        src.live()?;
        const OP: &str = "scatter_add";
        self.same_device(OP, index)?;
        self.same_device(OP, src)?;
        check_index_dtype(OP, index)?;
        if self.ndim() == 0 && index.ndim() == 0 && src.ndim() == 0 {
            self.layout().dim(OP, dim)?;
            let one = |t: &Tensor| t.reshape([1]);
            return one(self)?
                .scatter_add(0, &one(index)?, &one(src)?)?
                .reshape(Vec::<usize>::new());
        }
        if src.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch {
                op: OP,
                lhs: self.dtype(),
                rhs: src.dtype(),
                lhs_shape: self.shape().to_vec(),
                rhs_shape: src.shape().to_vec(),
                detail: "self and src must have the same dtype".into(),
            });
        }
        if self.dtype() == DType::Bool {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: DType::Bool,
                shape: self.shape().to_vec(),
                expected: "a numeric tensor",
            });
        }
        let d = self.layout().dim(OP, dim)?;
        check_index_shape(OP, d, index, self.shape(), src.shape())?;
        if index.ndim() != src.ndim()
            || (0..index.ndim()).any(|i| index.shape()[i] > src.shape()[i])
        {
            return Err(Error::shapes(
                OP,
                index.shape(),
                src.shape(),
                "the index may not be larger than src in any dimension",
            ));
        }
        let s = {
            crate::storage::with_reads(
                [
                    Some(self.storage()),
                    Some(index.storage()),
                    Some(src.storage()),
                ],
                |[sb, si, ss]| match (sb, si, ss) {
                    (Some(sb), Some(si), Some(ss)) => {
                        sb.scatter_add(self.layout(), d, si, index.layout(), ss, src.layout())
                    }
                    _ => Err(Error::invalid(OP, "a storage was not locked")),
                },
            )?
        };
        Tensor::from_op(
            s,
            self.shape(),
            || BackwardOp::ScatterAdd {
                dim: d,
                index: index.clone(),
            },
            &[self, src],
        )
    }

    /// Refuse to write in place into a tensor that autograd tracks.
    fn check_inplace(&self, op: &'static str, src: Option<&Tensor>) -> Result<()> {
        self.live()?;
        if let Some(t) = src {
            t.live()?;
        }
        // Elements that share memory (an expanded dim, overlapping windows) would each be
        // written, in an order that decides the result and differs between backends:
        // refused, as in PyTorch.
        if self.layout().may_overlap() {
            return Err(Error::invalid(
                op,
                format!(
                    "the destination (shape {:?}, strides {:?}) has elements that share memory (an expanded or unfolded view); write into a contiguous() copy instead",
                    self.shape(),
                    self.stride()
                ),
            ));
        }
        if self.0.tangent.is_some() || src.is_some_and(|s| s.0.tangent.is_some()) {
            return Err(Error::autograd(
                op,
                format!("in-place operations on dual tensors (forward mode) are not supported (shape {:?}); use the out-of-place op", self.shape()),
            ));
        }
        if !autograd::is_grad_enabled() {
            return Ok(());
        }
        if self.requires_grad() && self.is_leaf() {
            return Err(Error::autograd(
                op,
                format!("a leaf tensor that requires grad (shape {:?}) is being used in an in-place operation; wrap it in no_grad() or use the out-of-place op", self.shape()),
            ));
        }
        if self.requires_grad() || src.is_some_and(|s| s.requires_grad()) {
            return Err(Error::autograd(
                op,
                format!("in-place operations on tensors that are part of a graph are not supported (shape {:?}); use the out-of-place op", self.shape()),
            ));
        }
        Ok(())
    }

    /// Write `value` (a tensor broadcast to this view and converted to its dtype, or a
    /// number) into the elements of this view.
    fn write_from(&self, op: &'static str, value: &Source) -> Result<()> {
        if let Source::Tensor(t) = value {
            t.live()?;
        }
        let v = match value {
            Source::Scalar(v) => {
                let v = v.checked_for(op, self.dtype())?;
                return self.storage().write().write(self.layout(), Arg::Scalar(v));
            }
            Source::Tensor(t) => t,
        };
        self.same_device(op, v)?;
        if broadcast_shapes(op, self.shape(), v.shape())? != self.shape() {
            return Err(Error::shapes(
                op,
                self.shape(),
                v.shape(),
                "the value must broadcast to the destination's shape",
            ));
        }
        let mut v = v.to_dtype(self.dtype())?;
        if v.storage_id() == self.storage_id() {
            // Overlapping source and destination: read everything before writing.
            v = v.contiguous_copy()?;
        }
        let lv = v.layout().broadcast_to(op, self.shape())?;
        crate::storage::with_write_read(self.storage(), v.storage(), |dst, src| {
            dst.write(self.layout(), Arg::Buf(src, &lv))
        })
    }

    /// Write into the elements selected by `items`, in place (`b[1:3, :] = 12`,
    /// `c[:] = a + b`). The storage is not reallocated.
    ///
    /// ```
    /// use wgrad::{s, Tensor};
    /// let b = Tensor::arange(0, 12, 1)?.reshape(&[3, 4])?;
    /// let before = b.data_ptr();
    /// b.assign(s![1..3, ..], 12)?;
    /// assert_eq!(b.to_vec2::<i64>()?[1], vec![12, 12, 12, 12]);
    /// assert_eq!(b.data_ptr(), before);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn assign(&self, items: impl AsRef<[SliceItem]>, value: impl Into<Source>) -> Result<()> {
        self.live()?;
        let value = value.into();
        self.check_inplace("assign", value.tensor())?;
        let view = autograd::no_grad_scope(|| self.i(items))?;
        view.write_from("assign", &value)
    }

    fn inplace_binary(&self, op: BinaryOp, name: &'static str, other: Source) -> Result<&Tensor> {
        self.check_inplace(name, other.tensor())?;
        // A 0-d CPU tensor acts like a number on any device, as in PyTorch.
        let other = match other {
            Source::Tensor(t)
                if t.ndim() == 0
                    && matches!(t.device(), Device::Cpu)
                    && !matches!(self.device(), Device::Cpu) =>
            {
                Source::Tensor(t.to_device(self.device())?)
            }
            o => o,
        };
        if let Source::Tensor(t) = &other {
            self.same_device(name, t)?;
        }
        // The result must keep this tensor's dtype (PyTorch: "result type Float can't be
        // cast to the desired output type Long").
        let result = Tensor::binary_result_dtype(op, Operand::Tensor(self), (&other).into())?;
        if result != self.dtype() {
            let (rhs, rhs_shape) = match &other {
                Source::Tensor(t) => (t.dtype(), t.shape().to_vec()),
                Source::Scalar(v) => (v.dtype(), vec![]),
            };
            return Err(Error::DTypeMismatch {
                op: name,
                lhs: self.dtype(),
                rhs,
                lhs_shape: self.shape().to_vec(),
                rhs_shape,
                detail: format!(
                    "result type {result:?} can't be cast to the desired output type {:?}",
                    self.dtype()
                ),
            });
        }
        match &other {
            Source::Scalar(v) => {
                // One kernel with the number as a parameter, straight into the destination.
                self.storage()
                    .write()
                    .binary_inplace(op, self.layout(), Arg::Scalar(*v))?;
            }
            Source::Tensor(t) if t.storage_id() != self.storage_id() => {
                let t = t.to_dtype(self.dtype())?;
                let lo = t.layout().broadcast_to(name, self.shape()).map_err(|_| {
                    Error::shapes(
                        name,
                        self.shape(),
                        t.shape(),
                        "the operand must broadcast to the destination's shape",
                    )
                })?;
                crate::storage::with_write_read(self.storage(), t.storage(), |dst, src| {
                    dst.binary_inplace(op, self.layout(), Arg::Buf(src, &lo))
                })?;
            }
            Source::Tensor(t) => {
                // The operand shares this storage: compute out of place, then write.
                let result = autograd::no_grad_scope(|| {
                    Tensor::binary_of(op, Operand::Tensor(self), Operand::Tensor(t))
                })?;
                if broadcast_shapes(name, self.shape(), result.shape())? != self.shape() {
                    return Err(Error::shapes(
                        name,
                        self.shape(),
                        t.shape(),
                        "the operand must broadcast to the destination's shape",
                    ));
                }
                self.write_from(name, &Source::Tensor(result))?;
            }
        }
        Ok(self)
    }

    /// `self += other` in place (tensor broadcast to `self`, or a scalar).
    pub fn add_(&self, other: impl Into<Source>) -> Result<&Tensor> {
        self.live()?;
        self.inplace_binary(BinaryOp::Add, "add_", other.into())
    }

    /// `self -= other` in place.
    pub fn sub_(&self, other: impl Into<Source>) -> Result<&Tensor> {
        self.live()?;
        self.inplace_binary(BinaryOp::Sub, "sub_", other.into())
    }

    /// `self *= other` in place.
    pub fn mul_(&self, other: impl Into<Source>) -> Result<&Tensor> {
        self.live()?;
        self.inplace_binary(BinaryOp::Mul, "mul_", other.into())
    }

    /// `self /= other` in place (float tensors).
    pub fn div_(&self, other: impl Into<Source>) -> Result<&Tensor> {
        self.live()?;
        self.inplace_binary(BinaryOp::Div, "div_", other.into())
    }

    /// Set every element to `value`, in place.
    pub fn fill_(&self, value: impl Into<Scalar>) -> Result<&Tensor> {
        self.live()?;
        self.check_inplace("fill_", None)?;
        self.write_from("fill_", &Source::Scalar(value.into()))?;
        Ok(self)
    }

    /// Set every element to zero, in place.
    pub fn zero_(&self) -> Result<&Tensor> {
        self.live()?;
        self.fill_(0)
    }

    /// Copy `src` (broadcast, converted to this dtype, from any device) into this tensor,
    /// in place. As in PyTorch, `src` may live on another device: it is moved here first
    /// (gradients flow back to it).
    pub fn copy_(&self, src: &Tensor) -> Result<&Tensor> {
        self.live()?;
        src.live()?;
        let moved;
        let src = if src.device() == self.device() {
            src
        } else {
            moved = src.to_device(self.device())?;
            &moved
        };
        self.check_inplace("copy_", Some(src))?;
        self.write_from("copy_", &Source::Tensor(src.clone()))?;
        Ok(self)
    }
}

fn check_index_dtype(op: &'static str, index: &Tensor) -> Result<()> {
    if index.dtype() != DType::I64 {
        return Err(Error::UnsupportedDType {
            op,
            dtype: index.dtype(),
            shape: index.shape().to_vec(),
            expected: "I64 for the index",
        });
    }
    Ok(())
}

/// PyTorch's rule for gather/scatter: same rank, and the index no larger than the other
/// tensors in every dim but `dim`.
fn check_index_shape(
    op: &'static str,
    dim: usize,
    index: &Tensor,
    target: &[usize],
    other: &[usize],
) -> Result<()> {
    let ok = index.ndim() == target.len()
        && (0..index.ndim())
            .all(|i| i == dim || (index.shape()[i] <= target[i] && index.shape()[i] <= other[i]));
    if !ok {
        return Err(Error::shapes(
            op,
            target,
            index.shape(),
            format!("the index must have the same rank and be no larger outside dimension {dim}"),
        ));
    }
    Ok(())
}
