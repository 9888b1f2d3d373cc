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
