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
        |out, [oa, ob, oc], run, [sa, sb, sc]| {
            // Contiguous operands, or numbers broadcast as stride 0 (`where(c, g, 0.0)`),
            // as plain loops the compiler vectorises; any other stride indexed.
            fn whole<T>(v: &[T], o: usize, s: usize, run: usize) -> Option<&[T]> {
                (s == 1).then(|| &v[o..o + run])
            }
            match (
                whole(a.0, oa, sa, run),
                whole(b.0, ob, sb, run),
                whole(c.0, oc, sc, run),
            ) {
                (Some(xa), Some(xb), Some(xc)) => super::simd::vectorized(
                    #[inline(always)]
                    || {
                        for (((d, &x), &y), &z) in out.iter_mut().zip(xa).zip(xb).zip(xc) {
                            *d = f(x, y, z);
                        }
                    },
                ),
                (Some(xa), Some(xb), None) if sc == 0 => {
                    let z = c.0[oc];
                    super::simd::vectorized(
                        #[inline(always)]
                        || {
                            for ((d, &x), &y) in out.iter_mut().zip(xa).zip(xb) {
                                *d = f(x, y, z);
                            }
                        },
                    )
                }
                (Some(xa), None, Some(xc)) if sb == 0 => {
                    let y = b.0[ob];
                    super::simd::vectorized(
                        #[inline(always)]
                        || {
                            for ((d, &x), &z) in out.iter_mut().zip(xa).zip(xc) {
                                *d = f(x, y, z);
                            }
                        },
                    )
                }
                (Some(xa), None, None) if sb == 0 && sc == 0 => {
                    let (y, z) = (b.0[ob], c.0[oc]);
                    super::simd::vectorized(
                        #[inline(always)]
                        || {
                            for (d, &x) in out.iter_mut().zip(xa) {
                                *d = f(x, y, z);
                            }
                        },
                    )
                }
                _ => {
                    for (i, d) in out.iter_mut().enumerate() {
                        *d = f(a.0[oa + i * sa], b.0[ob + i * sb], c.0[oc + i * sc]);
                    }
                }
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
    if n >= PARALLEL_THRESHOLD {
        if let Some(parts) = outer_parts(&merged) {
            // Each index of the outermost dim owns a disjoint stretch of `dst`: one
            // `&mut` chunk per index, so the threads write without sharing.
            let (outer, stride, inner) = parts;
            let [dst_base, src_base] = merged.offsets;
            let src_stride = merged.strides[1][0];
            let inner_n = inner.numel();
            dst[dst_base..]
                .par_chunks_mut(stride)
                .take(outer)
                .enumerate()
                .with_min_len((PARALLEL_THRESHOLD / inner_n.max(1)).max(1))
                .for_each(|(i, chunk)| {
                    let src_off = src_base + i * src_stride;
                    inner.for_each_run(0, inner_n, |[od, os], run, [sd, ss]| {
                        update(chunk, od, sd, run, src, src_off + os, ss)
                    });
                });
            return;
        }
    }
    merged.for_each_run(0, n, |[od, os], run, [sd, ss]| {
        update(dst, od, sd, run, src, os, ss)
    });
}

/// A walk split at its outermost dim where every index of that dim addresses a disjoint
/// stretch of the destination (layout 0): its size, its destination stride (each stretch
/// fits in one stride), and the walk of the inner dims relative to a stretch's start.
fn outer_parts(m: &Merged<2>) -> Option<(usize, usize, Merged<2>)> {
    let (&outer, sizes) = m.sizes.split_first()?;
    let stride = m.strides[0][0];
    let span: usize = sizes
        .iter()
        .zip(&m.strides[0][1..])
        .map(|(&size, &st)| (size - 1) * st)
        .sum::<usize>()
        + 1;
    // Each index runs its own walk: worth it only with enough elements under it.
    let inner_n: usize = sizes.iter().product();
    if sizes.is_empty() || stride < span || outer < 2 || inner_n < 512 {
        return None;
    }
    let inner = Merged {
        sizes: sizes.to_vec(),
        strides: [m.strides[0][1..].to_vec(), m.strides[1][1..].to_vec()],
        offsets: [0, 0],
    };
    Some((outer, stride, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dst[od + i sd] += src[os + i ss]`, as the table's in-place add.
    #[allow(clippy::too_many_arguments)]
    fn add(dst: &mut [f32], od: usize, sd: usize, n: usize, src: &[f32], os: usize, ss: usize) {
        for i in 0..n {
            dst[od + i * sd] += src[os + i * ss];
        }
    }

    #[test]
    fn strided_updates_split_across_threads_match_a_serial_walk() {
        // A destination slice of a permuted buffer (as the windows' fold writes it), large
        // enough for the parallel split, with a broadcast source dim; and a small one.
        for (shape, perm) in [([9usize, 48, 256], [0usize, 2, 1]), ([3, 5, 7], [2, 0, 1])] {
            let n: usize = shape.iter().product();
            let base = Layout::contiguous(&shape);
            let dst_l = base.permute(&perm).slice(2, 1, shape[perm[2]], 2);
            let src_full: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.5).collect();
            let mut src_l = Layout::contiguous(&dst_l.shape);
            src_l.strides[1] = 0;
            let mut dst: Vec<f32> = (0..n).map(|i| (i % 13) as f32).collect();
            let mut want = dst.clone();
            // The reference: every multi-index of the view, one at a time.
            let [a, b, c] = [dst_l.shape[0], dst_l.shape[1], dst_l.shape[2]];
            for i in 0..a {
                for j in 0..b {
                    for k in 0..c {
                        let d = dst_l.offset
                            + i * dst_l.strides[0]
                            + j * dst_l.strides[1]
                            + k * dst_l.strides[2];
                        let s = i * src_l.strides[0] + j * src_l.strides[1] + k * src_l.strides[2];
                        want[d] += src_full[s];
                    }
                }
            }
            update(&mut dst, &dst_l, &src_full, &src_l, add);
            assert_eq!(dst, want, "{shape:?} permuted {perm:?}");
        }
    }
}
