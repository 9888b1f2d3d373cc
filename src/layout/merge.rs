//! Visiting the elements of strided layouts in row-major order: the layout logic that every
//! backend shares (the CPU walks runs with it, the GPU packs the merged dims as kernel
//! metadata).
//!
//! Several layouts of the same shape are walked together (an output and its broadcast inputs),
//! after merging the dims that are contiguous in all of them, so a contiguous tensor is one
//! flat loop and only real views pay for index arithmetic.
#![allow(clippy::needless_range_loop)] // index arithmetic over several parallel arrays reads clearer with indices

/// Dims merged across `K` layouts that share `shape`: `(sizes, strides per layout)`.
pub struct Merged<const K: usize> {
    pub sizes: Vec<usize>,
    pub strides: [Vec<usize>; K],
    pub offsets: [usize; K],
}

impl<const K: usize> Merged<K> {
    pub fn new(shape: &[usize], strides: [&[usize]; K], offsets: [usize; K]) -> Self {
        let mut sizes: Vec<usize> = Vec::with_capacity(shape.len());
        let mut out: [Vec<usize>; K] = std::array::from_fn(|_| Vec::with_capacity(shape.len()));
        for (d, &size) in shape.iter().enumerate() {
            if size == 1 {
                continue;
            }
            if let Some(&last) = sizes.last() {
                // Merge with the previous dim when every layout steps through both as one.
                let mergeable = (0..K).all(|k| *out[k].last().unwrap() == strides[k][d] * size);
                if mergeable {
                    *sizes.last_mut().unwrap() = last * size;
                    for (k, o) in out.iter_mut().enumerate() {
                        *o.last_mut().unwrap() = strides[k][d];
                    }
                    continue;
                }
            }
            sizes.push(size);
            for (k, o) in out.iter_mut().enumerate() {
                o.push(strides[k][d]);
            }
        }
        Merged {
            sizes,
            strides: out,
            offsets,
        }
    }

    pub fn numel(&self) -> usize {
        self.sizes.iter().product()
    }

    /// The merged sizes, and each layout's offset with its merged strides.
    pub fn into_parts(self) -> (Vec<usize>, Vec<(usize, Vec<usize>)>) {
        let operands = self.offsets.into_iter().zip(self.strides).collect();
        (self.sizes, operands)
    }

    /// Call `f(offsets, run_len, run_strides)` for each innermost run of the flat index range
    /// `start..end`: the elements `offsets[k] + i * run_strides[k]` for `i < run_len`.
    pub fn for_each_run(
        &self,
        start: usize,
        end: usize,
        mut f: impl FnMut([usize; K], usize, [usize; K]),
    ) {
        if start >= end {
            return;
        }
        let rank = self.sizes.len();
        if rank == 0 {
            f(self.offsets, 1, [0; K]);
            return;
        }
        let inner = self.sizes[rank - 1];
        let inner_strides: [usize; K] = std::array::from_fn(|k| self.strides[k][rank - 1]);
        // Multi-index of `start`.
        let mut idx = vec![0usize; rank];
        let mut rem = start;
        for d in (0..rank).rev() {
            idx[d] = rem % self.sizes[d];
            rem /= self.sizes[d];
        }
        let mut offs: [usize; K] = std::array::from_fn(|k| {
            self.offsets[k]
                + (0..rank)
                    .map(|d| idx[d] * self.strides[k][d])
                    .sum::<usize>()
        });
        let mut pos = start;
        while pos < end {
            let run = (inner - idx[rank - 1]).min(end - pos);
            f(offs, run, inner_strides);
            pos += run;
            if pos >= end {
                break;
            }
            // Advance to the next row: carry through the outer dims.
            for k in 0..K {
                offs[k] -= idx[rank - 1] * inner_strides[k];
            }
            idx[rank - 1] = 0;
            let mut d = rank - 1;
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                idx[d] += 1;
                for k in 0..K {
                    offs[k] += self.strides[k][d];
                }
                if idx[d] < self.sizes[d] {
                    break;
                }
                for k in 0..K {
                    offs[k] -= idx[d] * self.strides[k][d];
                }
                idx[d] = 0;
            }
        }
    }
}

/// The walks of a reduction over `dims` (sorted) of `l`: one over the kept dims (with the
/// layout's offset) giving each output's first element, one over the reduced dims relative
/// to it.
pub fn split_reduced(l: &super::Layout, dims: &[usize]) -> (Merged<1>, Merged<1>) {
    let kept: Vec<usize> = (0..l.rank()).filter(|d| !dims.contains(d)).collect();
    let pick = |ds: &[usize], xs: &[usize]| ds.iter().map(|&d| xs[d]).collect::<Vec<_>>();
    let outer = Merged::new(
        &pick(&kept, &l.shape),
        [&pick(&kept, &l.strides)],
        [l.offset],
    );
    let inner = Merged::new(&pick(dims, &l.shape), [&pick(dims, &l.strides)], [0]);
    (outer, inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(
        shape: &[usize],
        strides: &[usize],
        offset: usize,
        start: usize,
        end: usize,
    ) -> Vec<usize> {
        let m = Merged::new(shape, [strides], [offset]);
        let mut v = vec![];
        m.for_each_run(start, end, |o, n, s| {
            for i in 0..n {
                v.push(o[0] + i * s[0]);
            }
        });
        v
    }

    #[test]
    fn walks_transposed_view() {
        // A [2,3] view of a transposed [3,2] buffer.
        assert_eq!(offsets(&[2, 3], &[1, 2], 0, 0, 6), vec![0, 2, 4, 1, 3, 5]);
        assert_eq!(offsets(&[2, 3], &[1, 2], 0, 2, 5), vec![4, 1, 3]);
    }

    #[test]
    fn merges_contiguous_dims() {
        let m = Merged::new(&[2, 3, 4], [&[12, 4, 1]], [5]);
        assert_eq!(m.sizes, vec![24]);
        assert_eq!(offsets(&[2, 3, 4], &[12, 4, 1], 5, 22, 24), vec![27, 28]);
    }

    #[test]
    fn broadcast_stride_zero() {
        assert_eq!(offsets(&[2, 3], &[0, 1], 0, 0, 6), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(offsets(&[], &[], 7, 0, 1), vec![7]);
    }
}
