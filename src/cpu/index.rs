//! Gathering and scattering along a dim with integer indices. Index values are checked here,
//! where they are read, and an out-of-range index is an error naming it.
#![allow(clippy::needless_range_loop)] // index arithmetic over several parallel arrays reads clearer with indices

use super::HostBuffer;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// An index value in `0..size` (PyTorch's index ops take no negative indices: -1 is out of
/// range, not the last element).
fn check(op: &'static str, i: i64, dim: usize, shape: &[usize]) -> Result<usize> {
    let size = shape[dim];
    let j = i;
    if j < 0 || j >= size as i64 {
        return Err(Error::IndexOutOfRange {
            op,
            index: i,
            dim,
            size,
            shape: shape.to_vec(),
        });
    }
    Ok(j as usize)
}

macro_rules! per_dtype {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            HostBuffer::F32($v) => HostBuffer::F32($body),
            HostBuffer::I64($v) => HostBuffer::I64($body),
            HostBuffer::Bool($v) => HostBuffer::Bool($body),
            HostBuffer::F16($v) => HostBuffer::F16($body),
            HostBuffer::BF16($v) => HostBuffer::BF16($body),
            HostBuffer::F64($v) => HostBuffer::F64($body),
        }
    };
}

/// `out[.., j, ..] = src[.., idx[j], ..]` along `dim`; `idx` is a contiguous list.
pub fn index_select(s: &HostBuffer, l: &Layout, dim: usize, idx: &[i64]) -> Result<HostBuffer> {
    let picked: Vec<usize> = idx
        .iter()
        .map(|&i| check("index_select", i, dim, &l.shape))
        .collect::<Result<_>>()?;
    let outer: usize = l.shape[..dim].iter().product();
    let inner_shape = &l.shape[dim + 1..];
    let inner_layout = |o: usize, j: usize| -> Layout {
        // The sub-tensor src[o-th outer index, j, ...].
        let mut off = l.offset + j * l.strides[dim];
        let mut rem = o;
        for d in (0..dim).rev() {
            off += (rem % l.shape[d]) * l.strides[d];
            rem /= l.shape[d];
        }
        Layout {
            shape: inner_shape.to_vec(),
            strides: l.strides[dim + 1..].to_vec(),
            offset: off,
        }
    };
    Ok(per_dtype!(s, v => {
        let mut out = Vec::with_capacity(outer * picked.len() * inner_shape.iter().product::<usize>());
        for o in 0..outer {
            for &j in &picked {
                out.extend_from_slice(&super::contiguous_cow(v, &inner_layout(o, j)));
            }
        }
        out
    }))
}

/// For each position `p` of `index`'s shape: `out[p] = src[p with p[dim] = index[p]]`.
pub fn gather(
    s: &HostBuffer,
    l: &Layout,
    dim: usize,
    index: &[i64],
    il: &Layout,
) -> Result<HostBuffer> {
    let idx = super::contiguous_vec(index, il);
    let shape = &il.shape;
    let mut src_offsets = Vec::with_capacity(idx.len());
    let mut pos = vec![0usize; shape.len()];
    for &i in &idx {
        let j = check("gather", i, dim, &l.shape)?;
        let mut off = l.offset;
        for d in 0..shape.len() {
            off += if d == dim { j } else { pos[d] } * l.strides[d];
        }
        src_offsets.push(off);
        increment(&mut pos, shape);
    }
    Ok(per_dtype!(s, v => src_offsets.iter().map(|&o| v[o]).collect()))
}

/// `out = base` (contiguous copy), then `out[p with p[dim] = index[p]] += src[p]` for each
/// position `p` of `index`'s shape.
pub fn scatter_add(
    base: &HostBuffer,
    bl: &Layout,
    dim: usize,
    index: &[i64],
    il: &Layout,
    src: &HostBuffer,
    sl: &Layout,
) -> Result<HostBuffer> {
    if let Some(line) = index_line(il, dim, &bl.shape) {
        return scatter_add_rows(base, bl, dim, index, il, &line, src, sl);
    }
    let idx = super::contiguous_vec(index, il);
    let strides = crate::shape::contiguous_strides(&bl.shape);
    let shape = &il.shape;
    let mut dst_offsets = Vec::with_capacity(idx.len());
    let mut pos = vec![0usize; shape.len()];
    for &i in &idx {
        let j = check("scatter_add", i, dim, &bl.shape)?;
        let mut off = 0;
        for d in 0..shape.len() {
            off += if d == dim { j } else { pos[d] } * strides[d];
        }
        dst_offsets.push(off);
        increment(&mut pos, shape);
    }
    // The source elements at the positions of `index` (src may be larger than index).
    let src_view = Layout {
        shape: shape.clone(),
        strides: sl.strides.clone(),
        offset: sl.offset,
    };
    Ok(match (base, src) {
        (HostBuffer::F32(b), HostBuffer::F32(s)) => {
            let mut out = super::contiguous_vec(b, bl);
            for (&o, x) in dst_offsets.iter().zip(super::contiguous_vec(s, &src_view)) {
                out[o] += x;
            }
            HostBuffer::F32(out)
        }
        (HostBuffer::F64(b), HostBuffer::F64(s)) => {
            let mut out = super::contiguous_vec(b, bl);
            for (&o, x) in dst_offsets.iter().zip(super::contiguous_vec(s, &src_view)) {
                out[o] += x;
            }
            HostBuffer::F64(out)
        }
        (HostBuffer::I64(b), HostBuffer::I64(s)) => {
            let mut out = super::contiguous_vec(b, bl);
            for (&o, x) in dst_offsets.iter().zip(super::contiguous_vec(s, &src_view)) {
                out[o] = out[o].wrapping_add(x);
            }
            HostBuffer::I64(out)
        }
        (HostBuffer::Bool(_), HostBuffer::Bool(_)) => {
            return Err(Error::Unsupported {
                op: "scatter_add",
                dtype: DType::Bool,
                backend: "cpu",
            })
        }
        (b, s) => {
            return Err(Error::invalid(
                "scatter_add",
                format!(
                    "base of dtype {:?} and source of dtype {:?} reached the CPU kernel",
                    b.dtype(),
                    s.dtype()
                ),
            ))
        }
    })
}

/// Where `index` holds one value per position along `dim`, the same across every other
/// dim (an index line expanded: what `index_add`, `index_select`'s gradient and an
/// embedding's scatter), and has the base's shape elsewhere: the offsets of the line's
/// values in `il`.
fn index_line(il: &Layout, dim: usize, base: &[usize]) -> Option<Vec<usize>> {
    let same_elsewhere = (0..il.rank())
        .all(|d| d == dim || (il.shape[d] == base[d] && (il.strides[d] == 0 || il.shape[d] == 1)));
    if !same_elsewhere || il.rank() != base.len() {
        return None;
    }
    Some(
        (0..il.shape[dim])
            .map(|j| il.offset + j * il.strides[dim])
            .collect(),
    )
}

/// [`scatter_add`] with an index line (see [`index_line`]): whole rows of `src` added to
/// the base's rows that the line names, `[outer, k, inner]` into `[outer, n, inner]`.
#[allow(clippy::too_many_arguments)]
fn scatter_add_rows(
    base: &HostBuffer,
    bl: &Layout,
    dim: usize,
    index: &[i64],
    il: &Layout,
    line: &[usize],
    src: &HostBuffer,
    sl: &Layout,
) -> Result<HostBuffer> {
    let rows: Vec<usize> = line
        .iter()
        .map(|&o| check("scatter_add", index[o], dim, &bl.shape))
        .collect::<Result<_>>()?;
    let outer: usize = bl.shape[..dim].iter().product();
    let inner: usize = bl.shape[dim + 1..].iter().product();
    let (n, k) = (bl.shape[dim], line.len());
    // The source elements at the positions of `index`, contiguous.
    let src_view = Layout {
        shape: il.shape.clone(),
        strides: sl.strides.clone(),
        offset: sl.offset,
    };
    // The base copied, then the source's rows added into the rows the line names.
    fn scatter<T: super::pool::Pooled + Sync>(
        (b, bl): (&[T], &Layout),
        src: &[T],
        rows: &[usize],
        (outer, n, k, inner): (usize, usize, usize, usize),
        add: fn(T, T) -> T,
    ) -> Vec<T> {
        let mut out = super::contiguous_vec(b, bl);
        for o in 0..outer {
            for (j, &r) in rows.iter().enumerate() {
                let dst = &mut out[(o * n + r) * inner..][..inner];
                for (d, &x) in dst.iter_mut().zip(&src[(o * k + j) * inner..][..inner]) {
                    *d = add(*d, x);
                }
            }
        }
        out
    }
    let sizes = (outer, n, k, inner);
    Ok(match (base, src) {
        (HostBuffer::F32(b), HostBuffer::F32(s)) => HostBuffer::F32(scatter(
            (b, bl),
            &super::contiguous_cow(s, &src_view),
            &rows,
            sizes,
            |a, x| a + x,
        )),
        (HostBuffer::F64(b), HostBuffer::F64(s)) => HostBuffer::F64(scatter(
            (b, bl),
            &super::contiguous_cow(s, &src_view),
            &rows,
            sizes,
            |a, x| a + x,
        )),
        (HostBuffer::I64(b), HostBuffer::I64(s)) => HostBuffer::I64(scatter(
            (b, bl),
            &super::contiguous_cow(s, &src_view),
            &rows,
            sizes,
            i64::wrapping_add,
        )),
        (b, s) => {
            return Err(Error::Unsupported {
                op: "scatter_add",
                dtype: if b.dtype() == DType::Bool {
                    b.dtype()
                } else {
                    s.dtype()
                },
                backend: "cpu",
            })
        }
    })
}

/// Advance a row-major multi-index.
fn increment(pos: &mut [usize], shape: &[usize]) {
    for d in (0..shape.len()).rev() {
        pos[d] += 1;
        if pos[d] < shape[d] {
            return;
        }
        pos[d] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::CpuElement;

    /// An index line expanded over the other dims (the rows path) gives what the same index
    /// written out element by element (the general path) gives, into a strided base, with
    /// repeated rows and a strided source; an out-of-range entry is an error on both.
    #[test]
    fn index_lines_scatter_like_full_indices() {
        let base_shape = [2usize, 4, 3];
        let base: Vec<f32> = (0..24).map(|i| i as f32).collect();
        // The base seen through a transpose of its last two dims, made contiguous in memory
        // as [2, 3, 4]: a strided layout of shape [2, 4, 3].
        let mut stored = vec![0f32; 24];
        for (i, v) in stored.iter_mut().enumerate() {
            let (a, c, b) = (i / 12, (i / 4) % 3, i % 4);
            *v = base[(a * 4 + b) * 3 + c];
        }
        let bl = Layout {
            shape: base_shape.to_vec(),
            strides: vec![12, 1, 4],
            offset: 0,
        };
        let line = [3i64, 0, 3, 1, 3];
        let src_shape = [2usize, 5, 3];
        let src: Vec<f32> = (0..30).map(|i| 0.5 + i as f32).collect();
        let sl = Layout::contiguous(&src_shape);
        let expanded = Layout {
            shape: src_shape.to_vec(),
            strides: vec![0, 1, 0],
            offset: 0,
        };
        let full: Vec<i64> = (0..30).map(|i| line[(i / 3) % 5]).collect();
        let (b, s) = (HostBuffer::F32(stored), HostBuffer::F32(src));
        let f32s = |out: Result<HostBuffer>| f32::unwrap(out.expect("scatters")).expect("f32 out");
        let rows = f32s(scatter_add(&b, &bl, 1, &line, &expanded, &s, &sl));
        let general = f32s(scatter_add(&b, &bl, 1, &full, &sl, &s, &sl));
        assert_eq!(rows, general);
        assert_ne!(rows, base, "the rows were added");
        let bad = [3i64, 0, 4, 1, 3];
        assert!(scatter_add(&b, &bl, 1, &bad, &expanded, &s, &sl).is_err());
    }
}
