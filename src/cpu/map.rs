//! Elementwise maps over strided (and broadcast) inputs into a fresh contiguous output,
//! parallel across chunks when large.

use super::{chunk_len, PARALLEL_THRESHOLD};
use crate::layout::Layout;
use crate::layout::Merged;
use crate::op::{Run1, Run2, Update2};
use rayon::prelude::*;

/// Fill `out` (contiguous, in row-major order of `shape`) from the elements of `K` input
/// layouts: `f(offsets)` receives the storage offset into each input.
fn fill<const K: usize, U: super::pool::Pooled>(
    shape: &[usize],
    layouts: [&Layout; K],
    f: impl Fn(&mut [U], [usize; K], usize, [usize; K]) + Sync,
) -> Vec<U> {
    let strides: [&[usize]; K] = std::array::from_fn(|k| layouts[k].strides.as_slice());
    let offsets: [usize; K] = std::array::from_fn(|k| layouts[k].offset);
    let merged = Merged::new(shape, strides, offsets);
    let n = merged.numel();
    // Every element is written below, so a recycled buffer's old contents never show.
    let mut out = super::pool::take::<U>(n);
    let work = |start: usize, chunk: &mut [U]| {
        let mut pos = 0;
        merged.for_each_run(start, start + chunk.len(), |offs, run, st| {
            f(&mut chunk[pos..pos + run], offs, run, st);
            pos += run;
        });
    };
    if n >= PARALLEL_THRESHOLD {
        let len = chunk_len(n);
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| work(i * len, c));
    } else {
        work(0, &mut out);
    }
    out
}

/// `out[i] = f(src[i])` over a strided layout.
pub fn map1<T: Copy + Sync, U: super::pool::Pooled>(
    src: &[T],
    l: &Layout,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    fill(&l.shape, [l], |out, [o], run, [s]| {
        if s == 1 {
            for (d, &x) in out.iter_mut().zip(&src[o..o + run]) {
                *d = f(x);
            }
        } else {
            for (i, d) in out.iter_mut().enumerate() {
                *d = f(src[o + i * s]);
            }
        }
    })
}

/// `out[i] = f(src[i])` with a table kernel's run (see `op/kernel.rs`).
pub fn run1<T: Copy + Sync, U: super::pool::Pooled>(
    src: &[T],
    l: &Layout,
    run: Run1<T, U>,
) -> Vec<U> {
    fill(&l.shape, [l], |out, [o], _, [s]| run(out, src, o, s))
}

/// `out[i] = f(a[i], b[i])` over two layouts of `shape`, with a table kernel's run.
pub fn run2<T: Copy + Sync, U: super::pool::Pooled>(
    shape: &[usize],
    (a, la): (&[T], &Layout),
    (b, lb): (&[T], &Layout),
    run: Run2<T, U>,
) -> Vec<U> {
    fill(shape, [la, lb], |out, [oa, ob], _, [sa, sb]| {
        run(out, a, oa, sa, b, ob, sb)
    })
}

/// `out[i] = f(a[i], b[i], c[i])` over three layouts of the same shape.
pub fn map3<A: Copy + Sync, B: Copy + Sync, C: Copy + Sync, U: super::pool::Pooled>(
    a: (&[A], &Layout),
    b: (&[B], &Layout),
    c: (&[C], &Layout),
    f: impl Fn(A, B, C) -> U + Sync,
) -> Vec<U> {
    fill(
        &a.1.shape,
        [a.1, b.1, c.1],
        |out, [oa, ob, oc], _run, [sa, sb, sc]| {
            for (i, d) in out.iter_mut().enumerate() {
                *d = f(a.0[oa + i * sa], b.0[ob + i * sb], c.0[oc + i * sc]);
            }
        },
    )
}

/// Write `src` (a layout of `dst_layout`'s shape, possibly broadcast) into the strided
/// destination in place.
pub fn write_into<T: Copy + Sync + Send>(dst: &mut [T], dl: &Layout, src: &[T], sl: &Layout) {
    let merged = Merged::new(
        &dl.shape,
        [&dl.strides, &sl.strides],
        [dl.offset, sl.offset],
    );
    let n = merged.numel();
    merged.for_each_run(0, n, |[od, os], run, [sd, ss]| {
        if sd == 1 && ss == 1 {
            dst[od..od + run].copy_from_slice(&src[os..os + run]);
        } else {
            for i in 0..run {
                dst[od + i * sd] = src[os + i * ss];
            }
        }
    });
}

/// `dst[i] = f(dst[i], src[i])` in place over a destination view and a source of the same
/// (broadcast) shape in a different buffer, with a table kernel's update. Parallel when the
/// destination is contiguous.
pub fn update<T: Copy + Sync + Send>(
    dst: &mut [T],
    dl: &Layout,
    src: &[T],
    sl: &Layout,
    update: Update2<T>,
) {
    let n = dl.numel();
    if dl.is_contiguous() {
        let src_walk = Merged::new(&sl.shape, [&sl.strides], [sl.offset]);
        let work = |start: usize, chunk: &mut [T]| {
            let mut pos = 0;
            src_walk.for_each_run(start, start + chunk.len(), |[o], run, [s]| {
                update(chunk, pos, 1, run, src, o, s);
                pos += run;
            });
        };
        let out = &mut dst[dl.offset..dl.offset + n];
        if n >= PARALLEL_THRESHOLD {
            let len = chunk_len(n);
            out.par_chunks_mut(len)
                .enumerate()
                .for_each(|(i, c)| work(i * len, c));
        } else {
            work(0, out);
        }
        return;
    }
    let merged = Merged::new(
        &dl.shape,
        [&dl.strides, &sl.strides],
        [dl.offset, sl.offset],
    );
    merged.for_each_run(0, n, |[od, os], run, [sd, ss]| {
        update(dst, od, sd, run, src, os, ss)
    });
}
