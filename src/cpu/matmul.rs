//! Batched matrix multiply. f32 and f64 go through the `gemm` crate, which reads operands through
//! arbitrary row and column strides (so transposed views need no copy) and uses all cores.

use super::HostBuffer;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// The geometry of `batch` products of `m x k` and `k x n` matrices: where each product's
/// operands start in their buffers, and their row and column strides.
struct Products {
    m: usize,
    k: usize,
    n: usize,
    batch: usize,
    oa: Vec<usize>,
    ob: Vec<usize>,
    a_strides: (usize, usize),
    b_strides: (usize, usize),
}

/// The products of float matrices through gemm, into a fresh row-major `[batch, m, n]`
/// (`zero` and `one` are the type's).
fn float_batches<T: super::pool::Pooled + Sync + 'static>(
    x: &[T],
    y: &[T],
    p: &Products,
    zero: T,
    one: T,
) -> Vec<T> {
    let Products {
        m,
        k,
        n,
        batch,
        ref oa,
        ref ob,
        a_strides: (ars, acs),
        b_strides: (brs, bcs),
    } = *p;
    // gemm overwrites every element (read_dst is false), so a recycled buffer is fine.
    let mut out = super::pool::take::<T>(batch * m * n);
    if m * n == 0 {
        return out;
    }
    if k == 0 {
        // An empty sum: gemm may leave dst untouched.
        out.fill(zero);
        return out;
    }
    let big = m * n * k >= 48 * 48 * 48;
    let parallelism = if big && batch == 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let run = |bi: usize, dst: &mut [T]| {
        // SAFETY: the offsets and strides come from layouts validated against the
        // storage lengths, so every element gemm touches is in bounds; `dst` is a
        // fresh m x n row-major block.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                x.as_ptr().add(oa[bi]),
                acs as isize,
                ars as isize,
                y.as_ptr().add(ob[bi]),
                bcs as isize,
                brs as isize,
                zero,
                one,
                false,
                false,
                false,
                parallelism,
            )
        }
    };
    if batch > 1 && big {
        use rayon::prelude::*;
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(bi, dst)| run(bi, dst));
    } else {
        out.chunks_mut(m * n)
            .enumerate()
            .for_each(|(bi, dst)| run(bi, dst));
    }
    out
}

/// `a [batch.., m, k] @ b [batch.., k, n]` where both layouts have the same (already
/// broadcast) batch dims. Returns a contiguous `[batch.., m, n]` buffer.
pub fn matmul(a: &HostBuffer, la: &Layout, b: &HostBuffer, lb: &Layout) -> Result<HostBuffer> {
    let r = la.rank();
    let (m, k, n) = (la.shape[r - 2], la.shape[r - 1], lb.shape[r - 1]);
    let batch_shape = &la.shape[..r - 2];
    let batch: usize = batch_shape.iter().product();
    // Storage offsets of each batch's matrices.
    let offsets = |l: &Layout| -> Vec<usize> {
        let mut offs = Vec::with_capacity(batch);
        for bi in 0..batch {
            let mut rem = bi;
            let mut off = l.offset;
            for d in (0..r - 2).rev() {
                off += (rem % batch_shape[d]) * l.strides[d];
                rem /= batch_shape[d];
            }
            offs.push(off);
        }
        offs
    };
    let (oa, ob) = (offsets(la), offsets(lb));
    let (ars, acs) = (la.strides[r - 2], la.strides[r - 1]);
    let (brs, bcs) = (lb.strides[r - 2], lb.strides[r - 1]);
    let products = Products {
        m,
        k,
        n,
        batch,
        oa,
        ob,
        a_strides: (ars, acs),
        b_strides: (brs, bcs),
    };
    match (a, b) {
        (HostBuffer::F32(x), HostBuffer::F32(y)) => {
            Ok(HostBuffer::F32(float_batches(x, y, &products, 0.0, 1.0)))
        }
        (HostBuffer::F64(x), HostBuffer::F64(y)) => {
            Ok(HostBuffer::F64(float_batches(x, y, &products, 0.0, 1.0)))
        }
        (HostBuffer::I64(x), HostBuffer::I64(y)) => {
            let mut out = vec![0i64; batch * m * n];
            for bi in 0..batch {
                for i in 0..m {
                    for p in 0..k {
                        let av = x[products.oa[bi] + i * ars + p * acs];
                        for j in 0..n {
                            let o = &mut out[(bi * m + i) * n + j];
                            *o = o.wrapping_add(
                                av.wrapping_mul(y[products.ob[bi] + p * brs + j * bcs]),
                            );
                        }
                    }
                }
            }
            Ok(HostBuffer::I64(out))
        }
        (HostBuffer::Bool(_), HostBuffer::Bool(_)) => Err(Error::Unsupported {
            op: "matmul",
            dtype: DType::Bool,
            backend: "cpu",
        }),
        (x, y) => Err(Error::invalid(
            "matmul",
            format!(
                "operands of dtypes {:?} and {:?} reached the CPU kernel",
                x.dtype(),
                y.dtype()
            ),
        )),
    }
}

/// One row-major product `dst [m, n] (+)= a [m, k] @ b [k, n]`, each operand
/// a slice with its row and column strides; `parallelism` says whether gemm may spread
/// one product over the thread pool (the callers inside a rayon loop pass `None`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_slices(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    a: &[f32],
    (a_row, a_col): (usize, usize),
    b: &[f32],
    (b_row, b_col): (usize, usize),
    parallelism: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // The last element each operand's strides reach, checked so the unsafe call below
    // stays inside the slices.
    let reach = |rows: usize, cols: usize, (r, c): (usize, usize)| (rows - 1) * r + (cols - 1) * c;
    assert!(
        dst.len() >= m * n
            && a.len() > reach(m, k, (a_row, a_col))
            && b.len() > reach(k, n, (b_row, b_col))
    );
    // SAFETY: every element gemm reads or writes lies within the slices (asserted above),
    // and `dst` does not alias `a` or `b` (a `&mut` borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_col as isize,
            a_row as isize,
            b.as_ptr(),
            b_col as isize,
            b_row as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}
