//! Shapes, broadcasting and dimension normalisation.

use crate::error::{Error, Result};

/// The shape of a tensor: one size per dimension. `[]` is a 0-dimensional (scalar) tensor.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub(crate) Vec<usize>);

impl Shape {
    /// The sizes as a slice.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements (1 for a scalar); a count past `usize::MAX` saturates there, so
    /// that no data can match it (and a size check refuses it) instead of wrapping to a
    /// small number.
    pub fn numel(&self) -> usize {
        self.0
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .unwrap_or(usize::MAX)
    }
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::ops::Deref for Shape {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.0
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Self {
        Shape(v)
    }
}
impl From<&Vec<usize>> for Shape {
    fn from(v: &Vec<usize>) -> Self {
        Shape(v.clone())
    }
}
impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Self {
        Shape(v.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Self {
        Shape(v.to_vec())
    }
}
impl<const N: usize> From<&[usize; N]> for Shape {
    fn from(v: &[usize; N]) -> Self {
        Shape(v.to_vec())
    }
}
impl From<()> for Shape {
    fn from(_: ()) -> Self {
        Shape(vec![])
    }
}
impl From<usize> for Shape {
    fn from(n: usize) -> Self {
        Shape(vec![n])
    }
}
impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Self {
        s.clone()
    }
}
macro_rules! shape_from_tuple {
    ($($n:ident),+) => {
        impl From<($(shape_from_tuple!(@usize $n),)+)> for Shape {
            #[allow(non_snake_case)]
            fn from(($($n,)+): ($(shape_from_tuple!(@usize $n),)+)) -> Self {
                Shape(vec![$($n),+])
            }
        }
    };
    (@usize $n:ident) => { usize };
}
shape_from_tuple!(A);
shape_from_tuple!(A, B);
shape_from_tuple!(A, B, C);
shape_from_tuple!(A, B, C, D);
shape_from_tuple!(A, B, C, D, E);

/// The broadcast shape of two shapes (NumPy/PyTorch rules: align trailing dims; a size of 1
/// stretches).
/// The bytes of a tensor of `shape` with `elem_bytes` per element, or
/// `Err(BufferTooLarge)` when they cannot be addressed (the count overflows or passes
/// `isize::MAX`), before anything computes the element count.
pub(crate) fn addressable_bytes(
    op: &'static str,
    shape: &[usize],
    elem_bytes: usize,
) -> Result<usize> {
    shape
        .iter()
        .try_fold(elem_bytes, |n, &d| n.checked_mul(d))
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or(Error::BufferTooLarge {
            op,
            bytes: u64::MAX,
            limit: isize::MAX as u64,
        })
}

pub fn broadcast_shapes(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Result<Vec<usize>> {
    let rank = lhs.len().max(rhs.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let l = if i < rank - lhs.len() {
            1
        } else {
            lhs[i - (rank - lhs.len())]
        };
        let r = if i < rank - rhs.len() {
            1
        } else {
            rhs[i - (rank - rhs.len())]
        };
        out[i] = if l == r || r == 1 {
            l
        } else if l == 1 {
            r
        } else {
            return Err(Error::shapes(
                op,
                lhs,
                rhs,
                format!("cannot broadcast: size {l} vs {r} at dimension {i} of the result"),
            ));
        };
    }
    Ok(out)
}

/// Turn a possibly negative dim into an index in `0..rank`. A scalar accepts dims 0 and -1,
/// as in PyTorch.
pub fn normalize_dim(op: &'static str, dim: isize, shape: &[usize]) -> Result<usize> {
    let rank = shape.len().max(1) as isize;
    let d = if dim < 0 { dim + rank } else { dim };
    if d < 0 || d >= rank {
        return Err(Error::DimOutOfRange {
            op,
            dim,
            shape: shape.to_vec(),
        });
    }
    Ok(d as usize)
}

/// Normalise a list of dims; duplicates are an error. The result is sorted.
pub fn normalize_dims(op: &'static str, dims: &[isize], shape: &[usize]) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        let n = normalize_dim(op, d, shape)?;
        if out.contains(&n) {
            return Err(Error::invalid(
                op,
                format!("dim {d} appears more than once in {dims:?} (shape {shape:?})"),
            ));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// Resolve a reshape target that may contain one `-1`.
pub fn resolve_reshape(op: &'static str, from: &[usize], to: &[isize]) -> Result<Vec<usize>> {
    let numel: usize = from.iter().product();
    let mut infer = None;
    let mut known = 1usize;
    for (i, &s) in to.iter().enumerate() {
        if s == -1 {
            if infer.is_some() {
                return Err(Error::bad_shape(
                    op,
                    from,
                    format!("only one dimension can be -1 in {to:?}"),
                ));
            }
            infer = Some(i);
        } else if s < 0 {
            return Err(Error::bad_shape(
                op,
                from,
                format!("invalid size {s} in {to:?}"),
            ));
        } else {
            // Saturating: a product past usize::MAX matches no tensor's element count.
            known = known.saturating_mul(s as usize);
        }
    }
    let mut out: Vec<usize> = to.iter().map(|&s| s.max(0) as usize).collect();
    match infer {
        Some(i) => {
            if known == 0 || !numel.is_multiple_of(known) {
                return Err(Error::bad_shape(
                    op,
                    from,
                    format!("cannot reshape {numel} elements into {to:?}"),
                ));
            }
            out[i] = numel / known;
        }
        None => {
            if known != numel {
                return Err(Error::bad_shape(
                    op,
                    from,
                    format!("cannot reshape {numel} elements into {to:?} ({known} elements)"),
                ));
            }
        }
    }
    Ok(out)
}

/// Row-major (C-contiguous) strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i];
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast_shapes("t", &[3, 1], &[1, 4]).unwrap(), vec![3, 4]);
        assert_eq!(
            broadcast_shapes("t", &[2, 1, 3], &[4, 1]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(broadcast_shapes("t", &[5], &[]).unwrap(), vec![5]);
        assert!(broadcast_shapes("t", &[3], &[3, 2]).is_err());
    }

    #[test]
    fn reshape_infers_minus_one() {
        assert_eq!(
            resolve_reshape("t", &[2, 3, 4], &[-1, 2]).unwrap(),
            vec![12, 2]
        );
        assert!(resolve_reshape("t", &[2, 3], &[4, -1]).is_err());
        assert!(resolve_reshape("t", &[2, 3], &[-1, -1]).is_err());
        assert!(resolve_reshape("t", &[2, 3], &[7]).is_err());
    }
}

/// A list of integers given as an array, slice or `Vec` of any integer type: dims
/// (`&[0, 1]`), or a target shape that may contain `-1` (`&[-1, 2]`).
pub trait IntList {
    /// The integers as `isize`.
    fn to_isize(&self) -> Vec<isize>;
}

/// An integer as isize, saturating: a usize past isize::MAX must not wrap to a negative
/// number, which would read as a dim counted from the end or as reshape's -1
/// (`reshape([usize::MAX])` is an error, not a flatten).
fn saturating_isize<T: TryInto<isize> + Default + PartialOrd>(x: T) -> isize {
    let negative = x < T::default();
    x.try_into()
        .unwrap_or(if negative { isize::MIN } else { isize::MAX })
}

macro_rules! int_list {
    ($($t:ty),*) => {$(
        impl IntList for [$t] {
            fn to_isize(&self) -> Vec<isize> { self.iter().map(|&x| saturating_isize(x)).collect() }
        }
        impl<const N: usize> IntList for [$t; N] {
            fn to_isize(&self) -> Vec<isize> { self.as_slice().to_isize() }
        }
        impl IntList for Vec<$t> {
            fn to_isize(&self) -> Vec<isize> { self.as_slice().to_isize() }
        }
    )*};
}
int_list!(i32, i64, isize, usize);

impl<T: IntList + ?Sized> IntList for &T {
    fn to_isize(&self) -> Vec<isize> {
        (**self).to_isize()
    }
}

/// The permutation that undoes `order`: `inverse[order[i]] = i`, so permuting by `order`
/// and then by its inverse is the identity.
pub(crate) fn inverse_permutation(order: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; order.len()];
    for (i, &d) in order.iter().enumerate() {
        inverse[d] = i;
    }
    inverse
}
