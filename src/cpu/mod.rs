//! The CPU backend: plain Rust kernels over strided layouts, parallel with rayon, matmul
//! through the `gemm` crate.

mod backend;
pub(crate) mod cells;
pub(crate) mod conv;
pub(crate) mod cross_entropy;
pub(crate) mod elementwise;
pub(crate) mod fused;
mod index;
pub(crate) mod lanes;
pub(crate) mod layer_norm;
pub(crate) mod map;
pub(crate) mod matmul;
mod memory;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod pooling;
pub(crate) mod recurrent;
mod reduce;
pub(crate) mod simd;
pub(crate) mod softmax;

pub use memory::room;

use crate::dtype::{DType, Scalar};
use crate::host::HostBuffer;
use crate::layout::Layout;

impl HostBuffer {
    /// A buffer of `n` copies of `value` converted to `dtype`.
    pub fn filled(n: usize, value: Scalar, dtype: DType) -> Self {
        fn filled<T: pool::Pooled>(n: usize, v: T) -> Vec<T> {
            let mut out = pool::take(n);
            out.fill(v);
            out
        }
        match dtype {
            DType::F32 => HostBuffer::F32(filled(n, value.to_f64() as f32)),
            DType::I64 => HostBuffer::I64(filled(n, value.to_i64())),
            DType::Bool => HostBuffer::Bool(filled(n, value.to_bool())),
            DType::F16 => HostBuffer::F16(filled(n, half::f16::from_f64(value.to_f64()))),
            DType::BF16 => HostBuffer::BF16(filled(n, half::bf16::from_f64(value.to_f64()))),
            DType::F64 => HostBuffer::F64(filled(n, value.to_f64())),
        }
    }

    /// Hand the buffer to the reuse cache (called when the last tensor using it is dropped).
    pub fn recycle(self) {
        crate::host::with_vec!(self, |v| pool::give(v))
    }

    /// The elements of a layout, contiguous, in row-major order.
    pub fn compacted(&self, l: &Layout) -> HostBuffer {
        match self {
            HostBuffer::F32(v) => HostBuffer::F32(contiguous_vec(v, l)),
            HostBuffer::I64(v) => HostBuffer::I64(contiguous_vec(v, l)),
            HostBuffer::Bool(v) => HostBuffer::Bool(contiguous_vec(v, l)),
            HostBuffer::F16(v) => HostBuffer::F16(contiguous_vec(v, l)),
            HostBuffer::BF16(v) => HostBuffer::BF16(contiguous_vec(v, l)),
            HostBuffer::F64(v) => HostBuffer::F64(contiguous_vec(v, l)),
        }
    }
}

/// The elements of `l` in row-major order, copying only when the layout is not already a
/// contiguous slice.
pub fn contiguous_vec<T: pool::Pooled + Sync>(v: &[T], l: &Layout) -> Vec<T> {
    // An empty view may start past the end of its buffer: the strided walk takes it.
    if l.is_contiguous() && l.numel() > 0 {
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
    if l.is_contiguous() && l.numel() > 0 {
        std::borrow::Cow::Borrowed(&v[l.offset..l.offset + l.numel()])
    } else {
        std::borrow::Cow::Owned(map::map1(v, l, |x| x))
    }
}

/// Work below this many elements runs on the calling thread: spawning costs more.
pub const PARALLEL_THRESHOLD: usize = 1 << 15;

/// Split `0..n` into chunks for parallel work.
pub fn chunk_len(n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (n.div_ceil(threads * 4)).max(PARALLEL_THRESHOLD / 2)
}

/// Deterministic test values in [-1.5, 2.5), a different sequence for each seed.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 250.0 - 1.5)
        .collect()
}

/// Check a kernel's gradient `dx` of `objective` at `x` against central differences in f64.
#[cfg(test)]
pub(crate) fn assert_gradient(
    objective: impl Fn(&[f64]) -> f64,
    x: &[f64],
    dx: &[f32],
    what: &str,
) {
    for j in 0..x.len() {
        let h = 1e-5;
        let (mut up, mut down) = (x.to_vec(), x.to_vec());
        up[j] += h;
        down[j] -= h;
        let numeric = (objective(&up) - objective(&down)) / (2.0 * h);
        assert!(
            (dx[j] as f64 - numeric).abs() < 1e-4 * (1.0 + numeric.abs()),
            "{what} dx[{j}]: {} vs {numeric}",
            dx[j]
        );
    }
}
