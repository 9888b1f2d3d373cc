//! A view of a buffer: shape, strides and offset, in elements. Every movement op (reshape of a
//! compatible view, permute, slice with step, select, expand, squeeze/unsqueeze) is a pure
//! function from one layout to another; no data moves.

mod merge;

pub use merge::{split_reduced, Merged};

use crate::error::{Error, Result};
use crate::shape::{contiguous_strides, normalize_dim};

/// Shape, strides and offset of a tensor within its storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layout {
    pub shape: Vec<usize>,
    /// Strides in elements. A stride of 0 repeats an element (broadcasting).
    pub strides: Vec<usize>,
    pub offset: usize,
}

impl Layout {
    /// The row-major layout of a fresh buffer.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Row-major with no gaps (the offset may be non-zero).
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != acc {
                return false;
            }
            acc *= self.shape[i];
        }
        true
    }

    /// The range of storage elements the layout may touch (for bounds checks).
    pub fn max_offset(&self) -> usize {
        if self.numel() == 0 {
            return self.offset;
        }
        self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(&s, &st)| (s - 1) * st)
                .sum::<usize>()
    }

    pub fn permute(&self, dims: &[usize]) -> Layout {
        Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        }
    }

    pub fn transpose(&self, a: usize, b: usize) -> Layout {
        let mut l = self.clone();
        l.shape.swap(a, b);
        l.strides.swap(a, b);
        l
    }

    /// Elements `start, start+step, ...` below `stop` along `dim` (indices already clamped).
    pub fn slice(&self, dim: usize, start: usize, stop: usize, step: usize) -> Layout {
        let mut l = self.clone();
        let len = if stop > start {
            (stop - start).div_ceil(step)
        } else {
            0
        };
        if len > 0 {
            l.offset += start * self.strides[dim];
        }
        l.shape[dim] = len;
        // With two elements or more, `stride * step` stays inside the buffer; with one, a
        // step as large as isize::MAX (x[::huge]) would overflow and the stride is unused.
        if len > 1 {
            l.strides[dim] *= step;
        }
        l
    }

    /// Drop `dim`, fixing its index.
    pub fn select(&self, dim: usize, index: usize) -> Layout {
        let mut l = self.clone();
        l.offset += index * self.strides[dim];
        l.shape.remove(dim);
        l.strides.remove(dim);
        l
    }

    /// Whether two positions of the view may address one element (an expanded dim,
    /// overlapping windows): false only where the strides prove otherwise, each dim's
    /// stride at least the span of the finer dims together.
    pub fn may_overlap(&self) -> bool {
        let mut dims: Vec<(usize, usize)> = self
            .shape
            .iter()
            .zip(&self.strides)
            .filter(|(&size, _)| size > 1)
            .map(|(&size, &stride)| (stride, size))
            .collect();
        dims.sort_unstable();
        let mut span = 0;
        for (stride, size) in dims {
            if stride <= span {
                return true;
            }
            span += (size - 1) * stride;
        }
        false
    }

    /// Windows of `size` elements `step` apart along `dim`, as a new last dim (`size` no
    /// larger than the dim, `step` positive: checked by the caller).
    pub fn windows(&self, dim: usize, size: usize, step: usize) -> Layout {
        let mut l = self.clone();
        l.shape[dim] = (self.shape[dim] - size) / step + 1;
        // One window leaves the stride unused; a huge step would overflow it (as in slice).
        if l.shape[dim] > 1 {
            l.strides[dim] *= step;
        }
        l.shape.push(size);
        l.strides.push(self.strides[dim]);
        l
    }

    pub fn unsqueeze(&self, dim: usize) -> Layout {
        let mut l = self.clone();
        let stride = if dim < self.rank() {
            self.strides[dim] * self.shape[dim]
        } else {
            1
        };
        l.shape.insert(dim, 1);
        l.strides.insert(dim, stride);
        l
    }

    pub fn squeeze(&self, dim: usize) -> Layout {
        let mut l = self.clone();
        if l.shape[dim] == 1 {
            l.shape.remove(dim);
            l.strides.remove(dim);
        }
        l
    }

    /// Broadcast to `shape` (leading dims added, size-1 dims stretched with stride 0).
    pub fn broadcast_to(&self, op: &'static str, shape: &[usize]) -> Result<Layout> {
        // A view may repeat elements, but never so many that its element count overflows:
        // every op on it would have to allocate that many (of up to 8 bytes each).
        crate::shape::addressable_bytes(op, shape, 8)?;
        if shape.len() < self.rank() {
            return Err(Error::shapes(
                op,
                &self.shape,
                shape,
                "cannot expand to fewer dimensions",
            ));
        }
        let extra = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for i in 0..self.rank() {
            let (s, t) = (self.shape[i], shape[i + extra]);
            strides[i + extra] = if s == t {
                self.strides[i]
            } else if s == 1 {
                0
            } else {
                return Err(Error::shapes(
                    op,
                    &self.shape,
                    shape,
                    format!("size {s} at dimension {i} cannot be expanded to {t}"),
                ));
            };
        }
        Ok(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// A view with a new shape over the same elements, if the strides allow it (PyTorch's
    /// `view` rule: each group of merged dims must be contiguous among themselves). `None`
    /// means a copy is needed.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        let numel = self.numel();
        if numel == 0 || self.is_contiguous() {
            let mut l = Layout::contiguous(shape);
            l.offset = self.offset;
            return Some(l);
        }
        // Walk the old dims in chunks that are contiguous with each other and match them with
        // the new dims that multiply to the same size.
        let old: Vec<(usize, usize)> = self
            .shape
            .iter()
            .zip(&self.strides)
            .filter(|(&s, _)| s != 1)
            .map(|(&s, &st)| (s, st))
            .collect();
        let mut new_strides = vec![0; shape.len()];
        let mut oi = 0;
        let mut ni = 0;
        while ni < shape.len() || oi < old.len() {
            // Skip new size-1 dims.
            if ni < shape.len() && shape[ni] == 1 {
                new_strides[ni] = if ni + 1 < shape.len() { 0 } else { 1 };
                ni += 1;
                continue;
            }
            if oi >= old.len() || ni >= shape.len() {
                return None;
            }
            // Take a chunk of old dims that is contiguous.
            let mut chunk_size = old[oi].0;
            let mut chunk_end = oi;
            let mut new_size = shape[ni];
            let mut new_end = ni;
            loop {
                if chunk_size == new_size {
                    break;
                }
                if chunk_size < new_size {
                    chunk_end += 1;
                    if chunk_end >= old.len()
                        || old[chunk_end - 1].1 != old[chunk_end].0 * old[chunk_end].1
                    {
                        return None;
                    }
                    chunk_size *= old[chunk_end].0;
                } else {
                    new_end += 1;
                    if new_end >= shape.len() {
                        return None;
                    }
                    new_size *= shape[new_end];
                }
            }
            // Assign strides to new dims ni..=new_end, innermost = stride of last old dim in chunk.
            let mut stride = old[chunk_end].1;
            for k in (ni..=new_end).rev() {
                new_strides[k] = stride;
                stride *= shape[k];
            }
            oi = chunk_end + 1;
            ni = new_end + 1;
        }
        Some(Layout {
            shape: shape.to_vec(),
            strides: new_strides,
            offset: self.offset,
        })
    }

    /// Normalise a dim against this layout's shape.
    pub fn dim(&self, op: &'static str, dim: isize) -> Result<usize> {
        normalize_dim(op, dim, &self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_of_transposed_view_needs_copy() {
        let l = Layout::contiguous(&[3, 4]).transpose(0, 1);
        assert!(l.reshape(&[12]).is_none());
        assert!(l.reshape(&[4, 3]).is_some());
        // Splitting a dim of a transposed view is still a view.
        let v = l.reshape(&[2, 2, 3]).unwrap();
        assert_eq!(v.strides, vec![2, 1, 4]);
    }

    #[test]
    fn slice_with_step() {
        let l = Layout::contiguous(&[7, 5])
            .slice(0, 0, 7, 3)
            .slice(1, 0, 5, 2);
        assert_eq!(l.shape, vec![3, 3]);
        assert_eq!(l.strides, vec![15, 2]);
    }
}
