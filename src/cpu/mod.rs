//! The CPU backend: plain Rust kernels over strided layouts, parallel with rayon, matmul
//! through the `gemm` crate.

mod elementwise;
mod index;
pub(crate) mod map;
mod matmul;
pub(crate) mod pool;
mod reduce;
pub(crate) mod walk;

pub use elementwise::{binary, binary_inplace, cast, cmp, unary, where_cond};
pub use index::{gather, index_select, scatter_add};
pub use matmul::matmul;
pub use reduce::{cumsum, reduce};

use crate::dtype::{DType, Scalar};
use crate::layout::Layout;

/// A CPU buffer of one dtype.
#[derive(Debug, Clone)]
pub enum CpuStorage {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
            CpuStorage::Bool(v) => v.len(),
        }
    }

    /// Address of the first element, to tell whether two tensors share memory.
    pub fn data_ptr(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.as_ptr() as usize,
            CpuStorage::I64(v) => v.as_ptr() as usize,
            CpuStorage::Bool(v) => v.as_ptr() as usize,
        }
    }

    /// A buffer of `n` copies of `value` converted to `dtype`.
    pub fn full(n: usize, value: Scalar, dtype: DType) -> Self {
        fn filled<T: pool::Pooled>(n: usize, v: T) -> Vec<T> {
            let mut out = pool::take(n);
            out.fill(v);
            out
        }
        match dtype {
            DType::F32 => CpuStorage::F32(filled(n, value.to_f64() as f32)),
            DType::I64 => CpuStorage::I64(filled(n, value.to_i64())),
            DType::Bool => CpuStorage::Bool(filled(n, value.to_bool())),
        }
    }

    /// Hand the buffer to the reuse cache (called when the last tensor using it is dropped).
    pub fn recycle(self) {
        match self {
            CpuStorage::F32(v) => pool::give(v),
            CpuStorage::I64(v) => pool::give(v),
            CpuStorage::Bool(v) => pool::give(v),
        }
    }

    /// The element at a storage offset, as a scalar.
    pub fn get(&self, offset: usize) -> Scalar {
        match self {
            CpuStorage::F32(v) => Scalar::Float(v[offset] as f64),
            CpuStorage::I64(v) => Scalar::Int(v[offset]),
            CpuStorage::Bool(v) => Scalar::Bool(v[offset]),
        }
    }

    /// The elements of a layout, contiguous, in row-major order.
    pub fn copy_strided(&self, l: &Layout) -> CpuStorage {
        match self {
            CpuStorage::F32(v) => CpuStorage::F32(contiguous_vec(v, l)),
            CpuStorage::I64(v) => CpuStorage::I64(contiguous_vec(v, l)),
            CpuStorage::Bool(v) => CpuStorage::Bool(contiguous_vec(v, l)),
        }
    }

    /// Overwrite the elements of `dst_layout` with `src` (same dtype, broadcast to its shape).
    pub fn write(&mut self, dst_layout: &Layout, src: &CpuStorage, src_layout: &Layout) {
        match (self, src) {
            (CpuStorage::F32(d), CpuStorage::F32(s)) => {
                map::write_into(d, dst_layout, s, src_layout)
            }
            (CpuStorage::I64(d), CpuStorage::I64(s)) => {
                map::write_into(d, dst_layout, s, src_layout)
            }
            (CpuStorage::Bool(d), CpuStorage::Bool(s)) => {
                map::write_into(d, dst_layout, s, src_layout)
            }
            _ => unreachable!("write: dtypes are unified by the caller"),
        }
    }
}

/// The elements of `l` in row-major order, copying only when the layout is not already a
/// contiguous slice.
pub fn contiguous_vec<T: pool::Pooled + Sync>(v: &[T], l: &Layout) -> Vec<T> {
    if l.is_contiguous() {
        let mut out = pool::take(l.numel());
        out.copy_from_slice(&v[l.offset..l.offset + l.numel()]);
        out
    } else {
        map::map1(v, l, |x| x)
    }
}

/// Borrow the elements of `l` as a contiguous slice when possible, else copy.
pub fn contiguous_cow<'a, T: pool::Pooled + Sync>(
    v: &'a [T],
    l: &Layout,
) -> std::borrow::Cow<'a, [T]> {
    if l.is_contiguous() {
        std::borrow::Cow::Borrowed(&v[l.offset..l.offset + l.numel()])
    } else {
        std::borrow::Cow::Owned(map::map1(v, l, |x| x))
    }
}
