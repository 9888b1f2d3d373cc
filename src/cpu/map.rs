//! Elementwise maps over strided (and broadcast) inputs into a fresh contiguous output,
//! parallel across chunks when large.

use super::walk::{chunk_len, Merged, PARALLEL_THRESHOLD};
use crate::layout::Layout;
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

/// `out[i] = f(a[i], b[i])` over two layouts of the same (broadcast) shape.
pub fn map2<T: Copy + Sync, V: Copy + Sync, U: super::pool::Pooled>(
    a: &[T],
    la: &Layout,
    b: &[V],
    lb: &Layout,
    f: impl Fn(T, V) -> U + Sync,
) -> Vec<U> {
    fill(&la.shape, [la, lb], |out, [oa, ob], run, [sa, sb]| {
        if sa == 1 && sb == 1 {
            for ((d, &x), &y) in out.iter_mut().zip(&a[oa..oa + run]).zip(&b[ob..ob + run]) {
                *d = f(x, y);
            }
        } else if sa == 1 && sb == 0 {
            let y = b[ob];
            for (d, &x) in out.iter_mut().zip(&a[oa..oa + run]) {
                *d = f(x, y);
            }
        } else if sa == 0 && sb == 1 {
            let x = a[oa];
            for (d, &y) in out.iter_mut().zip(&b[ob..ob + run]) {
                *d = f(x, y);
            }
        } else {
            for (i, d) in out.iter_mut().enumerate() {
                *d = f(a[oa + i * sa], b[ob + i * sb]);
            }
        }
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
/// (broadcast) shape in a different buffer. Parallel when the destination is contiguous.
pub fn update2<T: Copy + Sync + Send>(
    dst: &mut [T],
    dl: &Layout,
    src: &[T],
    sl: &Layout,
    f: impl Fn(T, T) -> T + Sync,
) {
    let n = dl.numel();
    if dl.is_contiguous() {
        let src_walk = Merged::new(&sl.shape, [&sl.strides], [sl.offset]);
        let work = |start: usize, chunk: &mut [T]| {
            let mut pos = 0;
            src_walk.for_each_run(start, start + chunk.len(), |[o], run, [s]| {
                let d = &mut chunk[pos..pos + run];
                if s == 1 {
                    for (x, &y) in d.iter_mut().zip(&src[o..o + run]) {
                        *x = f(*x, y);
                    }
                } else {
                    for (i, x) in d.iter_mut().enumerate() {
                        *x = f(*x, src[o + i * s]);
                    }
                }
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
        for i in 0..run {
            let d = &mut dst[od + i * sd];
            *d = f(*d, src[os + i * ss]);
        }
    });
}
