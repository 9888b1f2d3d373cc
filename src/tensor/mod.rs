//! The public tensor type. One file per concern: creation, conversion, elementwise math,
//! reductions, movement (views), indexing, linear algebra and printing.

mod autograd_api;
mod convert;
mod create;
mod display;
mod elementwise;
pub(crate) mod fused;
mod index;
mod linalg;
mod movement;
mod operators;
mod options;
mod rearrange;
mod reduce;
pub(crate) mod sampling;
mod scan;
mod sort;

pub use crate::host::CpuElement;
pub use autograd_api::grad;
pub use convert::{NdArray, NdLeaf};
pub(crate) use elementwise::Operand;
pub use index::{SliceItem, Source};
pub use options::TensorOptions;

use crate::autograd::{self, Node};
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::storage::{Storage, StorageCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An n-dimensional array on a device, with optional gradient tracking.
///
/// A `Tensor` is a cheap handle: cloning it shares the data and the autograd identity, like a
/// Python reference to a `torch.Tensor`. Views (reshape of a contiguous tensor, transpose,
/// slicing, expand, ...) share the storage of the tensor they come from.
///
/// ```
/// use wgrad::Tensor;
/// let a = Tensor::arange(0, 12, 1)?.reshape(&[3, 4])?;
/// assert_eq!(a.shape(), &[3, 4]);
/// assert_eq!(a.sum()?.item::<i64>()?, 66);
/// # Ok::<(), wgrad::Error>(())
/// ```
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorInner>);

pub(crate) struct TensorInner {
    pub(crate) id: u64,
    pub(crate) storage: Arc<StorageCell>,
    pub(crate) layout: Layout,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    pub(crate) requires_grad: AtomicBool,
    pub(crate) grad_fn: Option<Arc<Node>>,
    pub(crate) grad: Mutex<Option<Tensor>>,
    /// The forward-mode derivative carried beside the value (a dual tensor), if any.
    pub(crate) tangent: Option<Tensor>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The fresh storage of an op's result: computed data, or a pending fused value
/// (`storage/lazy.rs`), with its dtype and device.
pub(crate) struct Fresh {
    pub(crate) cell: Arc<StorageCell>,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
}

impl From<Storage> for Fresh {
    fn from(s: Storage) -> Fresh {
        Fresh {
            dtype: s.dtype(),
            device: s.device(),
            cell: Arc::new(StorageCell::new(s)),
        }
    }
}

impl Tensor {
    /// A tensor over fresh storage, with no autograd history.
    pub(crate) fn from_storage(storage: impl Into<Fresh>, shape: &[usize]) -> Tensor {
        let f = storage.into();
        Tensor::view_of(
            f.cell,
            Layout::contiguous(shape),
            f.dtype,
            f.device,
            None,
            None,
        )
    }

    pub(crate) fn view_of(
        storage: Arc<StorageCell>,
        layout: Layout,
        dtype: DType,
        device: Device,
        grad_fn: Option<Arc<Node>>,
        tangent: Option<Tensor>,
    ) -> Tensor {
        let requires_grad = grad_fn.is_some();
        Tensor(Arc::new(TensorInner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage,
            layout,
            dtype,
            device,
            requires_grad: AtomicBool::new(requires_grad),
            grad_fn,
            grad: Mutex::new(None),
            tangent,
        }))
    }

    /// The result of an op: fresh contiguous storage, recording `backward` when grad mode is
    /// on and an input requires grad, and carrying the forward-mode tangent when an input
    /// has one.
    pub(crate) fn from_op(
        storage: impl Into<Fresh>,
        shape: &[usize],
        backward: impl FnOnce() -> autograd::BackwardOp,
        inputs: &[&Tensor],
    ) -> Result<Tensor> {
        let f = storage.into();
        Tensor::made_by(
            f.cell,
            Layout::contiguous(shape),
            f.dtype,
            f.device,
            backward,
            inputs,
        )
    }

    /// A view of this tensor's storage with another layout, recording `backward`.
    pub(crate) fn view_op(
        &self,
        layout: Layout,
        backward: impl FnOnce() -> autograd::BackwardOp,
    ) -> Result<Tensor> {
        Tensor::made_by(
            self.0.storage.clone(),
            layout,
            self.0.dtype,
            self.0.device.clone(),
            backward,
            &[self],
        )
    }

    /// Whether an op on `inputs` with a result of `dtype` records a graph node, and whether
    /// it carries a tangent.
    pub(crate) fn recorded(dtype: DType, inputs: &[&Tensor]) -> (bool, bool) {
        let grad = autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let tangent = dtype.is_float()
            && autograd::forward::is_enabled()
            && inputs.iter().any(|t| t.0.tangent.is_some());
        (grad, tangent)
    }

    /// The tensor an op made over `cell`: with a graph node when autograd records it, and a
    /// tangent from the op's forward rule when an input carries one. The op's description is
    /// built only when one of the two needs it.
    pub(crate) fn made_by(
        cell: Arc<StorageCell>,
        layout: Layout,
        dtype: DType,
        device: Device,
        backward: impl FnOnce() -> autograd::BackwardOp,
        inputs: &[&Tensor],
    ) -> Result<Tensor> {
        for t in inputs {
            t.live()?;
        }
        if let Some(e) = cell.failure() {
            return Err(e);
        }
        let (wants_grad, wants_tangent) = Tensor::recorded(dtype, inputs);
        if !wants_grad && !wants_tangent {
            return Ok(Tensor::view_of(cell, layout, dtype, device, None, None));
        }
        let op = backward();
        let tangent = if wants_tangent {
            let value = Tensor::view_of(
                cell.clone(),
                layout.clone(),
                dtype,
                device.clone(),
                None,
                None,
            );
            Some(autograd::forward::tangent(&op, inputs, &value)?)
        } else {
            None
        };
        let node = wants_grad.then(|| autograd::node(op, inputs, &cell));
        Ok(Tensor::view_of(cell, layout, dtype, device, node, tangent))
    }

    /// What an operator returns when it fails (`&a + &b` for shapes that do not broadcast):
    /// a 0-d tensor whose storage holds `error` instead of data. Every op that takes it
    /// returns that error, and no readback can see it as a value; see [`Tensor::check`].
    pub(crate) fn failed(error: Error, device: Device) -> Tensor {
        Tensor::view_of(
            Arc::new(StorageCell::new(Storage::Failed(error))),
            Layout::contiguous(&[]),
            DType::F32,
            device,
            None,
            None,
        )
    }

    /// The error of the operator expression that made this tensor, if it failed.
    ///
    /// ```
    /// use wgrad::Tensor;
    /// let (a, b) = (Tensor::ones(&[2, 3])?, Tensor::ones(&[4])?);
    /// let y = &a * 2.0 + &b; // shapes [2, 3] and [4] do not broadcast
    /// assert!(y.error().is_some());
    /// assert!(y.sum().is_err()); // and the next call that returns a Result says so
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn error(&self) -> Option<Error> {
        self.0.storage.failure()
    }

    /// This tensor, or the error of the operator expression that made it: the one `?` an
    /// expression needs where nothing after it returns a `Result`:
    /// `let h = (&z * &h + (1.0 - &z) * &h_tilde).check()?;`.
    pub fn check(self) -> Result<Tensor> {
        match self.error() {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }

    /// `Err` with the expression's error if this tensor is a failed one (see
    /// [`Tensor::failed`]); ops call it first, so the error they return is the original one.
    #[inline]
    pub(crate) fn live(&self) -> Result<()> {
        match self.0.storage.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The shape, one size per dimension.
    pub fn shape(&self) -> &[usize] {
        &self.0.layout.shape
    }

    /// The size of one dimension (negative counts from the end).
    pub fn size(&self, dim: isize) -> Result<usize> {
        let d = self.0.layout.dim("size", dim)?;
        // A 0-d tensor has no dims to size (dim() accepts 0 and -1 for it, as reductions do).
        self.0
            .layout
            .shape
            .get(d)
            .copied()
            .ok_or(Error::DimOutOfRange {
                op: "size",
                dim,
                shape: self.shape().to_vec(),
            })
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.0.layout.rank()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// The device holding the data.
    pub fn device(&self) -> &Device {
        &self.0.device
    }

    /// Strides in elements (PyTorch's `stride()`).
    pub fn stride(&self) -> &[usize] {
        &self.0.layout.strides
    }

    /// Offset of the first element within the storage, in elements.
    pub fn storage_offset(&self) -> usize {
        self.0.layout.offset
    }

    /// Whether the elements are laid out row-major with no gaps.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.0.layout
    }

    pub(crate) fn storage(&self) -> &Arc<StorageCell> {
        &self.0.storage
    }

    /// An id that identifies the storage: two tensors with the same `storage_id` share memory
    /// (the analogue of comparing `data_ptr()` in PyTorch, or `id()` in the seed's example).
    pub fn storage_id(&self) -> usize {
        Arc::as_ptr(&self.0.storage) as usize
    }

    /// The address of the storage's first element. Stays the same across in-place ops.
    pub fn data_ptr(&self) -> usize {
        self.0.storage.read().data_ptr()
    }

    /// Whether two handles refer to the same tensor (same autograd identity).
    pub fn same_tensor(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// Check that `other` lives on the same device.
    pub(crate) fn same_device(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.0.device != other.0.device {
            return Err(Error::DeviceMismatch {
                op,
                lhs: self.0.device.to_string(),
                rhs: other.0.device.to_string(),
            });
        }
        Ok(())
    }

    /// Run `f` on the storage (read lock).
    pub(crate) fn with_storage<T>(
        &self,
        f: impl FnOnce(&Storage, &Layout) -> Result<T>,
    ) -> Result<T> {
        let s = self.0.storage.read();
        if let Some(e) = s.failure() {
            return Err(e.clone());
        }
        f(&s, &self.0.layout)
    }
}
