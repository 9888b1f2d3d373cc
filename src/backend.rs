//! The seam between tensors and devices: the primitive operations every backend implements
//! (`cpu/backend.rs`, `gpu/ops.rs`), over buffers of its own and layouts into them.
//!
//! `storage.rs` holds a buffer of either backend and forwards each call to the backend that
//! owns its operands; the tensor layer above it (`tensor/`) sees only `Storage`, layouts,
//! dtypes and the op tables. Every result is a fresh buffer from the backend's one allocation
//! path, which turns a size the device cannot hold into `Err(OutOfMemory)` or
//! `Err(BufferTooLarge)`. A backend that cannot run an op on a dtype returns
//! `Err(Unsupported)`; none panics on an argument that reached it.

use crate::dtype::{DType, Scalar};
use crate::error::Result;
use crate::host::HostBuffer;
use crate::layout::Layout;
use crate::op::{BinaryOp, CmpOp, FillKind, ReduceOp, UnaryOp};
use crate::rng::Generator;

/// An operand of an elementwise op, as a backend sees it.
#[derive(Debug)]
pub enum Arg<'a, S> {
    /// A buffer of the backend through a layout already broadcast to the result's shape.
    Buf(&'a S, &'a Layout),
    /// A Rust number, which the backend converts to the op's dtype (a kernel parameter on a
    /// GPU: no buffer, no fill).
    Scalar(Scalar),
}

impl<S> Clone for Arg<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Arg<'_, S> {}

/// The primitive operations of one backend.
pub trait Backend: Sized {
    /// What creates buffers on this backend.
    type Device;

    /// Results are contiguous, in row-major order of their shape.
    fn full(dev: &Self::Device, n: usize, value: Scalar, dtype: DType) -> Result<Self>;
    /// `start + i * step` for `i < n`.
    fn arange(
        dev: &Self::Device,
        n: usize,
        start: Scalar,
        step: Scalar,
        dtype: DType,
    ) -> Result<Self>;
    /// Numbers from `gen`'s stream: the same values on every backend.
    fn random(
        dev: &Self::Device,
        kind: FillKind,
        n: usize,
        gen: &mut Generator,
        range: (i64, i64),
    ) -> Result<Self>;
    fn from_host(dev: &Self::Device, data: HostBuffer) -> Result<Self>;

    fn dtype(&self) -> DType;
    /// The elements of `l`, row-major, in host memory.
    fn to_host(&self, l: &Layout) -> Result<HostBuffer>;
    fn copy_strided(&self, l: &Layout) -> Result<Self>;
    /// Overwrite the elements of the view `dst` with `src` (of this dtype).
    fn write(&mut self, dst: &Layout, src: Arg<'_, Self>) -> Result<()>;

    fn unary(&self, op: UnaryOp, l: &Layout) -> Result<Self>;
    /// `a (op) b` in `dtype`; at least one operand is a buffer.
    fn binary(
        op: BinaryOp,
        shape: &[usize],
        dtype: DType,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
    ) -> Result<Self>;
    /// `self[dst] = self[dst] (op) src` in place; `src` is another buffer or a number.
    fn binary_inplace(&mut self, op: BinaryOp, dst: &Layout, src: Arg<'_, Self>) -> Result<()>;
    /// A comparison of two operands of `dtype`, to bool.
    fn cmp(
        op: CmpOp,
        shape: &[usize],
        dtype: DType,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
    ) -> Result<Self>;
    /// `cond ? a : b` with a bool condition; `a` and `b` of `dtype`.
    fn where_cond(
        shape: &[usize],
        dtype: DType,
        cond: (&Self, &Layout),
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
    ) -> Result<Self>;
    fn cast(&self, l: &Layout, to: DType) -> Result<Self>;

    /// Reduce `dims` (sorted, distinct): the kept dims in order (keepdim is a reshape).
    fn reduce(&self, op: ReduceOp, l: &Layout, dims: &[usize]) -> Result<Self>;
    fn cumsum(&self, l: &Layout, dim: usize) -> Result<Self>;
    /// Batched matrix product of layouts `[..., m, k]` and `[..., k, n]` (batch dims equal).
    fn matmul(&self, l: &Layout, rhs: &Self, rl: &Layout) -> Result<Self>;
    fn index_select(&self, l: &Layout, dim: usize, index: &Self, il: &Layout) -> Result<Self>;
    fn gather(&self, l: &Layout, dim: usize, index: &Self, il: &Layout) -> Result<Self>;
    #[allow(clippy::too_many_arguments)]
    fn scatter_add(
        &self,
        l: &Layout,
        dim: usize,
        index: &Self,
        il: &Layout,
        src: &Self,
        sl: &Layout,
    ) -> Result<Self>;
}
