//! Reductions over a set of dims, and the cumulative sum.

use super::HostBuffer;
use super::{chunk_len, PARALLEL_THRESHOLD};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::split_reduced;
use crate::layout::Layout;
use crate::op::{int_pow, ReduceOp};
use rayon::prelude::*;

/// Reduce `dims` (sorted, distinct) of a strided layout. The result is contiguous with the
/// kept dims in order (keepdim is a reshape done by the caller). Sum and prod of bool are
/// done on i64 by the caller, as PyTorch does.
pub fn reduce(op: ReduceOp, s: &HostBuffer, l: &Layout, dims: &[usize]) -> Result<HostBuffer> {
    use ReduceOp::*;
    // A reduced dim of stride 0 (a broadcast) repeats the same elements: max and min are the
    // reduction without it, a sum is that times its size, a product that to its power, and
    // the first extremum lies at index 0 of it. One pass over the stored elements instead of
    // a walk over every repeat (2^40 of them for a view expanded that far).
    if let Some((stored, repeats)) = without_broadcast_dims(l, dims) {
        return Ok(match (op, reduce(op, s, &stored, dims)?) {
            (ArgMax | ArgMin, HostBuffer::I64(v)) => {
                // The flat index over the reduced dims with the broadcast ones cut to 1,
                // spread back over their full sizes (at index 0 of each broadcast dim).
                let full: Vec<usize> = dims.iter().map(|&d| l.shape[d]).collect();
                let cut: Vec<usize> = dims.iter().map(|&d| stored.shape[d]).collect();
                HostBuffer::I64(v.into_iter().map(|f| reindex(f, &cut, &full)).collect())
            }
            (Prod, HostBuffer::F32(v)) => HostBuffer::F32(
                v.into_iter()
                    .map(|x| (x as f64).powf(repeats as f64) as f32)
                    .collect(),
            ),
            (Prod, HostBuffer::I64(v)) => {
                // `repeats` counts elements of one tensor: it fits in an i64.
                HostBuffer::I64(v.into_iter().map(|x| int_pow(x, repeats as i64)).collect())
            }
            (Sum, HostBuffer::F32(v)) => HostBuffer::F32(
                v.into_iter()
                    .map(|x| (x as f64 * repeats as f64) as f32)
                    .collect(),
            ),
            (Prod, HostBuffer::F64(v)) => {
                HostBuffer::F64(v.into_iter().map(|x| x.powf(repeats as f64)).collect())
            }
            (Sum, HostBuffer::F64(v)) => {
                HostBuffer::F64(v.into_iter().map(|x| x * repeats as f64).collect())
            }
            (Sum, HostBuffer::I64(v)) => HostBuffer::I64(
                // Wrapping, as a sum of that many terms wraps.
                v.into_iter()
                    .map(|x| x.wrapping_mul(repeats as u64 as i64))
                    .collect(),
            ),
            (_, out) => out,
        });
    }
    if let (Sum, HostBuffer::F32(v)) = (op, s) {
        if let Some(out) = sum_leading_dims(v, l, dims) {
            return Ok(HostBuffer::F32(out));
        }
    }
    Ok(match s {
        HostBuffer::F32(v) => match op {
            Sum => HostBuffer::F32(fold(
                v,
                l,
                dims,
                0f64,
                sum_run_f32,
                |a, b| a + b,
                |a, _| a as f32,
            )),
            Prod => HostBuffer::F32(fold(
                v,
                l,
                dims,
                1f64,
                |a, x, _| x.iter().fold(a, |a, &x| a * x as f64),
                |a, b| a * b,
                |a, _| a as f32,
            )),
            Max | Min | ArgMax | ArgMin => float_extremum(op, v, l, dims, f32::INFINITY, f32::NAN)?,
        },
        HostBuffer::F64(v) => match op {
            Sum => HostBuffer::F64(fold(
                v,
                l,
                dims,
                0f64,
                |a, x, _| x.iter().fold(a, |a, &x| a + x),
                |a, b| a + b,
                |a, _| a,
            )),
            Prod => HostBuffer::F64(fold(
                v,
                l,
                dims,
                1f64,
                |a, x, _| x.iter().fold(a, |a, &x| a * x),
                |a, b| a * b,
                |a, _| a,
            )),
            Max | Min | ArgMax | ArgMin => float_extremum(op, v, l, dims, f64::INFINITY, f64::NAN)?,
        },
        HostBuffer::I64(v) => match op {
            Sum => HostBuffer::I64(fold(
                v,
                l,
                dims,
                0i64,
                |a, x, _| x.iter().fold(a, |a, &x| a.wrapping_add(x)),
                i64::wrapping_add,
                |a, _| a,
            )),
            Prod => HostBuffer::I64(fold(
                v,
                l,
                dims,
                1i64,
                |a, x, _| x.iter().fold(a, |a, &x| a.wrapping_mul(x)),
                i64::wrapping_mul,
                |a, _| a,
            )),
            Max => HostBuffer::I64(fold(
                v,
                l,
                dims,
                i64::MIN,
                |a, x, _| x.iter().fold(a, |a, &x| a.max(x)),
                i64::max,
                |a, _| a,
            )),
            Min => HostBuffer::I64(fold(
                v,
                l,
                dims,
                i64::MAX,
                |a, x, _| x.iter().fold(a, |a, &x| a.min(x)),
                i64::min,
                |a, _| a,
            )),
            ArgMax => HostBuffer::I64(fold(
                v,
                l,
                dims,
                (0i64, -1i64),
                |a, x, i| arg_run(a, x, i, |n, b| n > b),
                |a, b| arg_merge(a, b, |n, b| n > b),
                |a, _| a.1.max(0),
            )),
            ArgMin => HostBuffer::I64(fold(
                v,
                l,
                dims,
                (0i64, -1i64),
                |a, x, i| arg_run(a, x, i, |n, b| n < b),
                |a, b| arg_merge(a, b, |n, b| n < b),
                |a, _| a.1.max(0),
            )),
        },
        HostBuffer::Bool(v) => match op {
            Max => HostBuffer::Bool(fold(
                v,
                l,
                dims,
                false,
                |a, x, _| a || x.iter().any(|&x| x),
                |a, b| a || b,
                |a, _| a,
            )),
            Min => HostBuffer::Bool(fold(
                v,
                l,
                dims,
                true,
                |a, x, _| a && x.iter().all(|&x| x),
                |a, b| a && b,
                |a, _| a,
            )),
            ArgMax => HostBuffer::I64(fold(
                v,
                l,
                dims,
                (false, -1i64),
                |a, x, i| arg_run(a, x, i, |n, b| n & !b),
                |a, b| arg_merge(a, b, |n, b| n & !b),
                |a, _| a.1.max(0),
            )),
            ArgMin => HostBuffer::I64(fold(
                v,
                l,
                dims,
                (false, -1i64),
                |a, x, i| arg_run(a, x, i, |n, b| !n & b),
                |a, b| arg_merge(a, b, |n, b| !n & b),
                |a, _| a.1.max(0),
            )),
            Sum | Prod => {
                return Err(Error::Unsupported {
                    op: op.name(),
                    dtype: DType::Bool,
                    backend: "cpu",
                })
            }
        },
        // The storage layer reduces the 16-bit floats in f32.
        HostBuffer::F16(_) | HostBuffer::BF16(_) => {
            return Err(Error::Unsupported {
                op: op.name(),
                dtype: s.dtype(),
                backend: "cpu",
            })
        }
    })
}

/// max, min, argmax or argmin of a float dtype (NaN wins; ties keep the first index).
fn float_extremum<T>(
    op: ReduceOp,
    v: &[T],
    l: &Layout,
    dims: &[usize],
    infinity: T,
    nan: T,
) -> Result<HostBuffer>
where
    T: crate::host::CpuElement + Default + Sync + Send + std::ops::Neg<Output = T>,
{
    use ReduceOp::*;
    Ok(match op {
        Max => T::wrap(fold(
            v,
            l,
            dims,
            -infinity,
            |a, x, _| x.iter().fold(a, |a, &x| max_nan(a, x)),
            max_nan,
            |a, _| a,
        )),
        Min => T::wrap(fold(
            v,
            l,
            dims,
            infinity,
            |a, x, _| x.iter().fold(a, |a, &x| min_nan(a, x)),
            min_nan,
            |a, _| a,
        )),
        ArgMax => HostBuffer::I64(fold(
            v,
            l,
            dims,
            (nan, -1i64),
            |a, x, i| arg_run(a, x, i, |n, b| n > b),
            |a, b| arg_merge(a, b, |n, b| n > b),
            |a, _| a.1.max(0),
        )),
        ArgMin => HostBuffer::I64(fold(
            v,
            l,
            dims,
            (nan, -1i64),
            |a, x, i| arg_run(a, x, i, |n, b| n < b),
            |a, b| arg_merge(a, b, |n, b| n < b),
            |a, _| a.1.max(0),
        )),
        Sum | Prod => {
            return Err(Error::invalid(
                op.name(),
                "not an extremum (the float reduction handles it)",
            ))
        }
    })
}

/// Rows summed in f32 before their sum joins the f64 total in [`sum_leading_dims`].
const BLOCK: usize = 32;

/// The sum over the leading dims of a contiguous layout (a bias's gradient: `[rows, cols]`
/// summed over the rows), row by row into a vector of column sums, so every element is read
/// in order and the adds vectorise; the generic driver would gather each column with a
/// stride of a row. `None` when the layout or dims are not of that form.
fn sum_leading_dims(v: &[f32], l: &Layout, dims: &[usize]) -> Option<Vec<f32>> {
    let lead = dims.len();
    if lead == 0
        || lead == l.rank()
        || !l.is_contiguous()
        || dims.iter().enumerate().any(|(i, &d)| i != d)
    {
        return None;
    }
    let rows: usize = l.shape[..lead].iter().product();
    let cols: usize = l.shape[lead..].iter().product();
    let data = &v[l.offset..l.offset + rows * cols];
    // f32 partial sums over blocks of rows, added into f64 totals: the accuracy of the
    // generic path's blocked sum.
    let sum_rows = |part: &[f32]| -> Vec<f64> {
        let mut total = vec![0f64; cols];
        let mut block = vec![0f32; cols];
        for chunk in part.chunks(BLOCK * cols.max(1)) {
            block.fill(0.0);
            for row in chunk.chunks_exact(cols.max(1)) {
                for (b, &x) in block.iter_mut().zip(row) {
                    *b += x;
                }
            }
            for (t, &b) in total.iter_mut().zip(&block) {
                *t += b as f64;
            }
        }
        total
    };
    let totals = if rows * cols >= PARALLEL_THRESHOLD && rows >= 2 * BLOCK {
        // One share of the rows per thread, whole blocks each, added in order.
        let threads = rayon::current_num_threads().max(1);
        let share = rows.div_ceil(threads).div_ceil(BLOCK) * BLOCK;
        let parts: Vec<Vec<f64>> = data.par_chunks(share * cols).map(sum_rows).collect();
        parts.into_iter().reduce(|mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
            a
        })?
    } else {
        sum_rows(data)
    };
    Some(totals.into_iter().map(|t| t as f32).collect())
}

/// NaN-propagating maximum, as PyTorch's reductions.
#[inline]
#[allow(clippy::eq_op)]
fn max_nan<T: Copy + PartialOrd>(a: T, x: T) -> T {
    // `v != v` is NaN, for f32 and f64 alike.
    if a != a || !(x > a || x != x) {
        a
    } else {
        x
    }
}
#[inline]
#[allow(clippy::eq_op)]
fn min_nan<T: Copy + PartialOrd>(a: T, x: T) -> T {
    if a != a || !(x < a || x != x) {
        a
    } else {
        x
    }
}

/// A row-major flat index over `from` sizes as the same multi-index's flat index over `to`
/// sizes (each at least as large).
fn reindex(flat: i64, from: &[usize], to: &[usize]) -> i64 {
    let mut rest = flat as usize;
    let mut idx = vec![0usize; from.len()];
    for (k, &n) in from.iter().enumerate().rev() {
        idx[k] = rest % n.max(1);
        rest /= n.max(1);
    }
    idx.iter().zip(to).fold(0usize, |a, (&i, &n)| a * n + i) as i64
}

/// `l` with its reduced dims of stride 0 (and size over 1) cut to size 1, and the number of
/// times each stored element repeats in them; `None` where no reduced dim is a broadcast.
fn without_broadcast_dims(l: &Layout, dims: &[usize]) -> Option<(Layout, usize)> {
    let mut stored = l.clone();
    let mut repeats = 1usize;
    for &d in dims {
        if l.strides[d] == 0 && l.shape[d] > 1 {
            repeats = repeats.saturating_mul(l.shape[d]);
            stored.shape[d] = 1;
        }
    }
    (repeats > 1).then_some((stored, repeats))
}

/// Sum a run in blocks: 32 f32 lanes inside a block (independent accumulators, so the
/// adds pipeline and vectorise), f64 across blocks for accuracy. A long run is read as two
/// halves side by side: two streams keep more memory reads in flight than one (16M floats:
/// median 51-55 -> 57-61 GB/s on this project's 2-core machine, PyTorch's 56-62).
fn sum_run_f32(acc: f64, xs: &[f32], _start: usize) -> f64 {
    const LANES: usize = 32;
    const BLOCK: usize = 4096;
    super::simd::vectorized(
        #[inline(always)]
        || {
            let mut total = acc;
            let half = xs.len() / (2 * BLOCK) * BLOCK;
            let (a, rest) = xs.split_at(half);
            let (b, tail) = rest.split_at(half);
            for (ba, bb) in a.chunks_exact(BLOCK).zip(b.chunks_exact(BLOCK)) {
                let (mut la, mut lb) = ([0f32; LANES], [0f32; LANES]);
                for (ca, cb) in ba.chunks_exact(LANES).zip(bb.chunks_exact(LANES)) {
                    for k in 0..LANES {
                        la[k] += ca[k];
                        lb[k] += cb[k];
                    }
                }
                total += la.iter().sum::<f32>() as f64 + lb.iter().sum::<f32>() as f64;
            }
            for block in tail.chunks(BLOCK) {
                let mut lanes = [0f32; LANES];
                let mut it = block.chunks_exact(LANES);
                for c in &mut it {
                    for k in 0..LANES {
                        lanes[k] += c[k];
                    }
                }
                total += (lanes.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()) as f64;
            }
            total
        },
    )
}

/// Arg-reduction over a run: keeps the first index of the best value; NaN wins for floats
/// (PyTorch treats NaN as the maximum and the minimum).
fn arg_run<T: Copy + PartialOrd>(
    mut acc: (T, i64),
    xs: &[T],
    start: usize,
    better: impl Fn(T, T) -> bool,
) -> (T, i64) {
    for (i, &x) in xs.iter().enumerate() {
        #[allow(clippy::eq_op)]
        let x_nan = x != x;
        #[allow(clippy::eq_op)]
        let a_nan = acc.0 != acc.0 && acc.1 >= 0;
        if acc.1 < 0 || (!a_nan && (x_nan || better(x, acc.0))) {
            acc = (x, (start + i) as i64);
        }
    }
    acc
}

fn arg_merge<T: Copy + PartialOrd>(
    a: (T, i64),
    b: (T, i64),
    better: impl Fn(T, T) -> bool,
) -> (T, i64) {
    if a.1 < 0 {
        return b;
    }
    if b.1 < 0 {
        return a;
    }
    #[allow(clippy::eq_op)]
    let (a_nan, b_nan) = (a.0 != a.0, b.0 != b.0);
    if !a_nan && (b_nan || better(b.0, a.0)) {
        b
    } else {
        a
    }
}

/// The generic reduction driver. `fold_run(acc, elements, flat_index_of_first)` folds a run
/// of contiguous elements (strided runs are gathered into a small buffer first); partial
/// results of chunks are combined left to right with `merge`.
fn fold<T, A, U>(
    v: &[T],
    l: &Layout,
    dims: &[usize],
    init: A,
    fold_run: impl Fn(A, &[T], usize) -> A + Sync,
    merge: impl Fn(A, A) -> A + Sync,
    finish: impl Fn(A, usize) -> U + Sync,
) -> Vec<U>
where
    T: Copy + Sync + Send + Default,
    A: Copy + Send + Sync,
    U: Copy + Send + Default,
{
    let (outer, inner) = split_reduced(l, dims);
    let (out_n, inner_n) = (outer.numel(), inner.numel());

    // Storage offset of the first reduced element of each output.
    let mut bases = Vec::with_capacity(out_n);
    outer.for_each_run(0, out_n, |[o], run, [s]| {
        bases.extend((0..run).map(|i| o + i * s))
    });

    // A strided run is gathered into a buffer a block at a time: a run can be as long as
    // the reduction, far more than memory holds. (Broadcast dims never get here: `reduce`
    // takes them out first.)
    const GATHER: usize = 4096;
    let fold_range = |base: usize, start: usize, end: usize| -> A {
        let mut acc = init;
        let mut pos = start;
        let mut buf: Vec<T> = Vec::new();
        inner.for_each_run(start, end, |[o], run, [s]| {
            if s == 1 || run == 1 {
                acc = fold_run(acc, &v[base + o..base + o + run], pos);
            } else {
                for at in (0..run).step_by(GATHER) {
                    let n = (run - at).min(GATHER);
                    buf.clear();
                    buf.extend((at..at + n).map(|i| v[base + o + i * s]));
                    acc = fold_run(acc, &buf, pos + at);
                }
            }
            pos += run;
        });
        acc
    };

    let total = out_n * inner_n.max(1);
    let threads = rayon::current_num_threads();
    if total < PARALLEL_THRESHOLD || threads == 1 {
        return bases
            .iter()
            .map(|&b| finish(fold_range(b, 0, inner_n), inner_n))
            .collect();
    }
    if out_n >= threads * 4 {
        // Many outputs: one output per task.
        let mut out = vec![U::default(); out_n];
        out.par_iter_mut()
            .zip(bases.par_iter())
            .with_min_len((PARALLEL_THRESHOLD / inner_n.max(1)).max(1))
            .for_each(|(o, &b)| *o = finish(fold_range(b, 0, inner_n), inner_n));
        return out;
    }
    // Few outputs with long reductions: split each reduction across threads.
    let len = chunk_len(inner_n);
    bases
        .iter()
        .map(|&b| {
            let parts: Vec<A> = (0..inner_n.div_ceil(len))
                .into_par_iter()
                .map(|c| fold_range(b, c * len, ((c + 1) * len).min(inner_n)))
                .collect();
            let acc = parts.into_iter().fold(init, &merge);
            finish(acc, inner_n)
        })
        .collect()
}

/// Inclusive cumulative sum along `dim` (f64 accumulator for f32, as PyTorch's CPU kernel).
pub fn cumsum(s: &HostBuffer, l: &Layout, dim: usize) -> Result<HostBuffer> {
    fn scan<T: super::pool::Pooled + Sync, A: Copy>(
        v: &[T],
        l: &Layout,
        dim: usize,
        zero: A,
        add: impl Fn(A, T) -> A,
        out_of: impl Fn(A) -> T,
    ) -> Vec<T> {
        let mut out = super::contiguous_vec(v, l);
        if l.rank() == 0 {
            return out;
        }
        let n = l.shape[dim];
        let inner: usize = l.shape[dim + 1..].iter().product();
        let outer: usize = l.shape[..dim].iter().product();
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = zero;
                for k in 0..n {
                    let idx = (o * n + k) * inner + i;
                    acc = add(acc, out[idx]);
                    out[idx] = out_of(acc);
                }
            }
        }
        out
    }
    match s {
        HostBuffer::F32(v) => Ok(HostBuffer::F32(scan(
            v,
            l,
            dim,
            0f64,
            |a, x| a + x as f64,
            |a| a as f32,
        ))),
        HostBuffer::F64(v) => Ok(HostBuffer::F64(scan(v, l, dim, 0f64, |a, x| a + x, |a| a))),
        HostBuffer::I64(v) => Ok(HostBuffer::I64(scan(
            v,
            l,
            dim,
            0i64,
            |a, x| a.wrapping_add(x),
            |a| a,
        ))),
        HostBuffer::Bool(_) | HostBuffer::F16(_) | HostBuffer::BF16(_) => Err(Error::Unsupported {
            op: "cumsum",
            dtype: s.dtype(),
            backend: "cpu",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `op` over `dims` of `v` seen through `l`, as elements of the dtype the test expects.
    fn reduced<T: crate::host::CpuElement>(
        op: ReduceOp,
        v: &HostBuffer,
        l: &Layout,
        dims: &[usize],
    ) -> Vec<T> {
        T::unwrap(reduce(op, v, l, dims).expect("the reduction runs")).expect("the result's dtype")
    }

    fn strided(shape: &[usize], strides: &[usize], offset: usize) -> Layout {
        Layout {
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
        }
    }

    /// Strided runs longer than the gather block: sums and arg-reductions across block
    /// boundaries, with the positions of later blocks.
    #[test]
    fn long_strided_runs_fold_in_blocks() {
        let n = 10_000;
        // [2, n] seen through a transpose of [n, 2]: each row a run of stride 2.
        let mut v: Vec<f32> = (0..2 * n).map(|i| ((i * 31) % 97) as f32 / 97.0).collect();
        v[2 * 9_000 + 1] = 5.0;
        let (buf, l) = (HostBuffer::F32(v.clone()), strided(&[2, n], &[1, 2], 0));
        let sums: Vec<f32> = reduced(ReduceOp::Sum, &buf, &l, &[1]);
        for (r, &got) in sums.iter().enumerate() {
            let want: f64 = (0..n).map(|i| v[2 * i + r] as f64).sum();
            assert!((got as f64 - want).abs() < 1e-3, "row {r}: {got} vs {want}");
        }
        let arg: Vec<i64> = reduced(ReduceOp::ArgMax, &buf, &l, &[1]);
        assert_eq!(arg[1], 9_000);
    }

    /// Reductions over broadcast (stride-0) dims run over the stored elements: sums scaled,
    /// products raised to the repeats (i64 wrapping as the walked ones), extrema unchanged,
    /// the first extremum's index at 0 of the broadcast dim.
    #[test]
    fn broadcast_dims_are_reduced_without_walking_the_repeats() {
        // One element broadcast to n.
        let v = HostBuffer::F32(vec![0.0, 0.0, 0.0, 0.75]);
        let s: Vec<f32> = reduced(ReduceOp::Sum, &v, &strided(&[10_000], &[0], 3), &[0]);
        assert_eq!(s, vec![7_500.0]);
        // The stored row [0.5, 1, 7, 7] broadcast to [3, 4] (first max at flat 2), to [4, 3]
        // read down its columns (flat 2 * 3 = 6), and over the broadcast dim alone.
        let row = HostBuffer::F32(vec![0.5, 1.0, 7.0, 7.0]);
        for (shape, strides, dims, op, want) in [
            ([3, 4], [0, 1], &[0, 1][..], ReduceOp::ArgMax, vec![2]),
            ([4, 3], [1, 0], &[0, 1], ReduceOp::ArgMax, vec![6]),
            ([4, 3], [1, 0], &[0, 1], ReduceOp::ArgMin, vec![0]),
            ([4, 3], [1, 0], &[1], ReduceOp::ArgMax, vec![0; 4]),
        ] {
            let l = strided(&shape, &strides, 0);
            let a: Vec<i64> = reduced(op, &row, &l, dims);
            assert_eq!(a, want, "{op:?} of {l:?} over {dims:?}");
        }
        // A row broadcast to 2^40 rows, with a kept dim.
        let huge = strided(&[1 << 40, 3], &[0, 1], 0);
        let row = HostBuffer::F32(vec![1.5, -2.0, f32::NAN]);
        let s: Vec<f32> = reduced(ReduceOp::Sum, &row, &huge, &[0]);
        let n = (1u64 << 40) as f32;
        assert_eq!(s[..2], [1.5 * n, -2.0 * n]);
        assert!(s[2].is_nan());
        let m: Vec<f32> = reduced(ReduceOp::Max, &row, &huge, &[0, 1]);
        assert!(m[0].is_nan(), "NaN wins");
        let ints = HostBuffer::I64(vec![i64::MAX, 3, -1]);
        let s: Vec<i64> = reduced(ReduceOp::Sum, &ints, &huge, &[0]);
        assert_eq!(s, vec![i64::MAX.wrapping_mul(1 << 40), 3 << 40, -(1 << 40)]);
        let p: Vec<i64> = reduced(ReduceOp::Prod, &ints, &huge, &[0]);
        let small: Vec<i64> = reduced(
            ReduceOp::Prod,
            &HostBuffer::I64(vec![2, -3]),
            &strided(&[5, 2], &[0, 1], 0),
            &[0],
        );
        assert_eq!(small, vec![32, -243]);
        // As the products walked one by one would wrap: int_pow is the pow op's own kernel.
        let powers = [i64::MAX, 3, -1].map(|x| int_pow(x, 1 << 40));
        assert_eq!(p, powers.to_vec());
        let near_one = HostBuffer::F32(vec![1.0 + 1e-7, 0.5]);
        let p: Vec<f32> = reduced(
            ReduceOp::Prod,
            &near_one,
            &strided(&[1 << 20, 2], &[0, 1], 0),
            &[0],
        );
        let want = ((1.0f32 + 1e-7) as f64).powi(1 << 20);
        assert!(
            (p[0] as f64 - want).abs() < 1e-6 * want,
            "{} vs {want}",
            p[0]
        );
        assert_eq!(p[1], 0.0);
    }

    /// A run's sum, read as two streams and a tail, against f64 for lengths below, at and
    /// around the two-block boundary, with a nonzero starting value.
    #[test]
    fn run_sums_match_a_float64_reference() {
        for n in [0usize, 1, 31, 4096, 8191, 8192, 8193, 3 * 8192 + 77] {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 4.0)
                .collect();
            let want = 0.25 + v.iter().map(|&x| x as f64).sum::<f64>();
            let got = sum_run_f32(0.25, &v, 0);
            let bound =
                4096.0 * f32::EPSILON as f64 * v.iter().map(|x| x.abs() as f64).sum::<f64>();
            assert!(
                (got - want).abs() <= bound + 1e-12,
                "n {n}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn sums_over_leading_dims_match_a_float64_reference() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        // Serial and parallel sizes, one and several leading dims, an offset view, empty.
        for (shape, lead, offset) in [
            (vec![300, 7], 1, 0),
            (vec![5000, 9], 1, 3),
            (vec![4, 6, 5, 3], 2, 0),
            (vec![2, 3, 64, 128], 3, 5),
            (vec![0, 4], 1, 0),
            (vec![3, 0], 1, 0),
        ] {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n + offset).map(|_| next()).collect();
            let mut l = Layout::contiguous(&shape);
            l.offset = offset;
            let dims: Vec<usize> = (0..lead).collect();
            let got = sum_leading_dims(&v, &l, &dims).expect("the fast path applies");
            let cols: usize = shape[lead..].iter().product();
            let rows: usize = shape[..lead].iter().product();
            assert_eq!(got.len(), cols);
            for c in 0..cols {
                let column = (0..rows).map(|r| v[offset + r * cols + c] as f64);
                let want: f64 = column.clone().sum();
                // Recursive summation's bound within a block of f32 adds, and the rounding of
                // the result.
                let bound = BLOCK as f64 * f32::EPSILON as f64 * column.map(f64::abs).sum::<f64>()
                    + f32::EPSILON as f64 * want.abs();
                assert!(
                    (got[c] as f64 - want).abs() <= bound,
                    "{shape:?} column {c}: {} vs {want}",
                    got[c]
                );
            }
        }
        // Not leading dims, or not contiguous: the generic driver's.
        let l = Layout::contiguous(&[4, 5]);
        assert!(sum_leading_dims(&[0.0; 20], &l, &[1]).is_none());
        assert!(sum_leading_dims(&[0.0; 20], &l.transpose(0, 1), &[0]).is_none());
    }
}
