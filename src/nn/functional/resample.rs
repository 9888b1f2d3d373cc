//! Padding and resizing of the trailing (spatial) dims: `F.pad` in its four modes and
//! `F.interpolate` (nearest, linear/bilinear), as index selections and small interpolation
//! matrices, so gradients come from the primitives.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// How [`pad`] fills the new border.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadMode {
    /// A constant value (negative pads crop).
    Constant(f64),
    /// Mirror the inside, without repeating the edge (`[1, 2, 3]` by 2: `[3, 2, 1, 2, 3]`).
    Reflect,
    /// Repeat the edge element.
    Replicate,
    /// Wrap around (the other end's elements).
    Circular,
}

/// Pad the last dims (`torch.nn.functional.pad`): `pad` holds (before, after) pairs from the
/// last dim backwards, `[left, right, top, bottom, ...]`.
pub fn pad(x: &Tensor, pad: &[isize], mode: PadMode) -> Result<Tensor> {
    const OP: &str = "pad";
    if !pad.len().is_multiple_of(2) || pad.len() / 2 > x.ndim() {
        return Err(Error::bad_shape(
            OP,
            x.shape(),
            format!(
                "pad {pad:?} must hold (before, after) pairs for at most {} dims",
                x.ndim()
            ),
        ));
    }
    let mut out = x.clone();
    for (k, pair) in pad.chunks(2).enumerate() {
        let d = x.ndim() - 1 - k;
        out = pad_dim(&out, d, pair[0], pair[1], mode)?;
    }
    Ok(out)
}

fn pad_dim(x: &Tensor, d: usize, before: isize, after: isize, mode: PadMode) -> Result<Tensor> {
    const OP: &str = "pad";
    let n = x.shape()[d] as isize;
    if let PadMode::Constant(value) = mode {
        // Negative pads crop first; positive ones add constant blocks. Saturating: a crop of
        // isize::MIN has no negation, and two crops can pass isize's range together.
        let start = before.saturating_neg().max(0);
        let len = n
            .saturating_sub(start)
            .saturating_sub(after.saturating_neg().max(0));
        if len < 0 {
            return Err(Error::bad_shape(
                OP,
                x.shape(),
                format!("pads ({before}, {after}) crop more than dim {d} holds"),
            ));
        }
        let inner = x.narrow(d as isize, start as usize, len as usize)?;
        let block = |size: isize| -> Result<Tensor> {
            let mut shape = inner.shape().to_vec();
            shape[d] = size as usize;
            Tensor::full_on(shape, value, (inner.dtype(), inner.device()))
        };
        let mut parts = Vec::new();
        if before > 0 {
            parts.push(block(before)?);
        }
        parts.push(inner.clone());
        if after > 0 {
            parts.push(block(after)?);
        }
        return Tensor::cat(&parts.iter().collect::<Vec<_>>(), d as isize);
    }
    if before < 0 || after < 0 {
        return Err(Error::invalid(
            OP,
            format!("negative pads ({before}, {after}) only crop in constant mode"),
        ));
    }
    let limit = if mode == PadMode::Reflect { n - 1 } else { n };
    if n == 0 || before > limit || after > limit {
        return Err(Error::bad_shape(
            OP,
            x.shape(),
            format!(
                "pads ({before}, {after}) of {mode:?} must be below the size {n} of dim {d}{}",
                if mode == PadMode::Reflect {
                    " (at most size - 1)"
                } else {
                    ""
                }
            ),
        ));
    }
    let index: Vec<i64> = (-before..n + after)
        .map(|i| match mode {
            PadMode::Reflect => {
                if i < 0 {
                    -i
                } else if i >= n {
                    2 * (n - 1) - i
                } else {
                    i
                }
            }
            PadMode::Replicate => i.clamp(0, n - 1),
            PadMode::Circular | PadMode::Constant(_) => i.rem_euclid(n),
        } as i64)
        .collect();
    let len = index.len();
    let index = Tensor::from_vec(index, [len])?.to_device(x.device())?;
    x.index_select(d as isize, &index)
}

/// How [`interpolate`] computes new samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// The nearest input sample (PyTorch's `nearest`: `floor(out_index * in / out)`).
    Nearest,
    /// Linear in each spatial dim (`linear`, `bilinear`); `align_corners` as PyTorch.
    Linear {
        /// Sample the corners' centres exactly (PyTorch's `align_corners=True`).
        align_corners: bool,
    },
}

/// Resize the spatial dims of `x [N, C, d1, ...]` to `size` (`F.interpolate`).
pub fn interpolate(x: &Tensor, size: &[usize], mode: Interpolation) -> Result<Tensor> {
    const OP: &str = "interpolate";
    if x.ndim() < 3 || size.len() != x.ndim() - 2 {
        return Err(Error::bad_shape(
            OP,
            x.shape(),
            format!(
                "expected [N, C, d1, ...] with one output size per spatial dim, got sizes {size:?}"
            ),
        ));
    }
    // The result's size first: a size no machine holds is refused before the per-axis index
    // lists and intermediate results (each of which might fit, and together not) are built.
    let out_numel = x.shape()[..2]
        .iter()
        .chain(size)
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| {
            Error::bad_shape(OP, x.shape(), format!("output size {size:?} is too large"))
        })?;
    crate::storage::room_on(x.device(), OP, out_numel, x.dtype())?;
    let mut out = x.clone();
    for (k, &o) in size.iter().enumerate() {
        let d = 2 + k;
        let n = x.shape()[d];
        if n == 0 || o == 0 {
            return Err(Error::bad_shape(
                OP,
                x.shape(),
                "input and output sizes must be positive",
            ));
        }
        // The index list or weight matrix is built on the host: room for it first.
        let entries = match mode {
            Interpolation::Nearest => Some(o),
            Interpolation::Linear { .. } => o.checked_mul(n),
        };
        let entries = entries.ok_or_else(|| {
            Error::bad_shape(OP, x.shape(), format!("output size {o} is too large"))
        })?;
        crate::storage::host_room(OP, entries, crate::DType::I64)?;
        out = match mode {
            Interpolation::Nearest => {
                let index: Vec<i64> = (0..o)
                    .map(|i| ((i as f64 * n as f64 / o as f64).floor() as usize).min(n - 1) as i64)
                    .collect();
                out.index_select(
                    d as isize,
                    &Tensor::from_vec(index, [o])?.to_device(x.device())?,
                )?
            }
            Interpolation::Linear { align_corners } => {
                let w = linear_weights(n, o, align_corners)?.to_device(x.device())?;
                // [.., n, ..] -> move d last, @ w^T [n, o], move back.
                out.transpose(d as isize, -1)?
                    .matmul(&w.t()?)?
                    .transpose(d as isize, -1)?
            }
        };
    }
    Ok(out)
}

/// The `[out, in]` matrix of linear interpolation weights, PyTorch's source coordinates:
/// `i * (in - 1) / (out - 1)` with `align_corners`, else `(i + 0.5) * in / out - 0.5`
/// clamped at 0.
fn linear_weights(n: usize, o: usize, align_corners: bool) -> Result<Tensor> {
    let mut w = vec![0f32; o * n];
    for i in 0..o {
        let src = if align_corners {
            if o > 1 {
                i as f64 * (n - 1) as f64 / (o - 1) as f64
            } else {
                0.0
            }
        } else {
            ((i as f64 + 0.5) * n as f64 / o as f64 - 0.5).max(0.0)
        };
        let lo = (src.floor() as usize).min(n - 1);
        let hi = (lo + 1).min(n - 1);
        let t = (src - lo as f64) as f32;
        w[i * n + lo] += 1.0 - t;
        w[i * n + hi] += t;
    }
    Tensor::from_vec(w, [o, n])
}

/// The output size of [`interpolate`] from a `scale_factor` (floor, as PyTorch).
pub fn scaled_size(x: &Tensor, scale_factor: f64) -> Result<Vec<usize>> {
    if !(scale_factor > 0.0 && scale_factor.is_finite()) {
        return Err(Error::invalid(
            "interpolate",
            format!("scale_factor must be positive, got {scale_factor}"),
        ));
    }
    Ok(x.shape()
        .iter()
        .skip(2)
        .map(|&n| (n as f64 * scale_factor).floor() as usize)
        .collect())
}

/// `torch.nn.functional.one_hot`: I64 labels `[..]` to `[.., num_classes]` of 0/1 (I64);
/// `num_classes` `None` takes the largest label + 1. A label outside `0..num_classes` is
/// an `Err`.
pub fn one_hot(labels: &Tensor, num_classes: Option<usize>) -> Result<Tensor> {
    const OP: &str = "one_hot";
    if labels.dtype() != crate::DType::I64 {
        return Err(Error::UnsupportedDType {
            op: OP,
            dtype: labels.dtype(),
            shape: labels.shape().to_vec(),
            expected: "I64 class labels",
        });
    }
    let host = labels.to_device(&crate::Device::Cpu)?.to_vec::<i64>()?;
    let classes = match num_classes {
        Some(c) => c,
        // The largest label plus one, without overflow at i64::MAX.
        None => host
            .iter()
            .max()
            .map_or(0, |&m| (m.max(-1) as u64).wrapping_add(1) as usize),
    };
    let in_range = |l: i64| l >= 0 && (l as u64) < classes as u64;
    if let Some(&bad) = host.iter().find(|&&l| !in_range(l)) {
        return Err(Error::IndexOutOfRange {
            op: OP,
            index: bad,
            dim: labels.ndim(),
            size: classes,
            shape: labels.shape().to_vec(),
        });
    }
    let numel = labels.numel().saturating_mul(classes);
    crate::storage::room_on(labels.device(), OP, numel, crate::DType::I64)?;
    let classes_row = Tensor::arange_on(0, classes as i64, 1, labels.device())?;
    labels
        .unsqueeze(-1)?
        .eq(&classes_row)?
        .to_dtype(crate::DType::I64)
}
