//! PyTorch's tensor calls that rearrange, repeat, mask or summarise elements, written with
//! the primitive ops (so every one has gradients, forward-mode derivatives and both
//! backends): var/std, flip, roll, repeat, tile, repeat_interleave, tril/triu, outer,
//! index_add, masked_select and nonzero.

use super::Tensor;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::{broadcast_shapes, normalize_dim, IntList};

impl Tensor {
    /// The variance over `dims` (all dims when empty) with Bessel's `correction`
    /// (`torch.var(x, dim, correction=1)`): `sum((x - mean)^2) / (N - correction)`.
    pub fn var(&self, dims: impl IntList, correction: usize, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        let dims = dims.to_isize();
        // 16-bit inputs: f32 throughout, one rounding (squares overflow f16 early).
        if let Some(v) = super::fused::through_f32([Some(self)], |[x]| {
            super::fused::given("var", x)?.var(dims.as_slice(), correction, keepdim)
        })? {
            return Ok(v);
        }
        let all: Vec<isize> = (0..self.ndim() as isize).collect();
        let dims = if dims.is_empty() { all } else { dims };
        let d = crate::shape::normalize_dims("var", &dims, self.shape())?;
        // A 0-d tensor's dim 0 (or -1) holds its one element.
        let n: usize = d
            .iter()
            .map(|&k| self.shape().get(k).copied().unwrap_or(1))
            .product();
        let mean = self.mean_dims(dims.as_slice(), true)?;
        let squares = (self - &mean)
            .square()?
            .sum_dims(dims.as_slice(), keepdim)?;
        // N <= correction divides by zero or less: inf or NaN, as PyTorch gives.
        squares.div_scalar(n as f64 - correction as f64)
    }

    /// The standard deviation: `var(..).sqrt()`.
    pub fn std(&self, dims: impl IntList, correction: usize, keepdim: bool) -> Result<Tensor> {
        self.var(dims, correction, keepdim)?.sqrt()
    }

    /// Reverse the order of the elements along each of `dims` (`torch.flip`).
    pub fn flip(&self, dims: impl IntList) -> Result<Tensor> {
        self.live()?;
        let mut out = self.clone();
        for d in dims.to_isize() {
            let d = normalize_dim("flip", d, self.shape())?;
            if self.ndim() == 0 {
                // One element reverses to itself (dim 0 or -1 of a 0-d tensor, as PyTorch).
                continue;
            }
            let n = self.shape()[d] as i64;
            let reversed = Tensor::arange_on(n - 1, -1, -1, self.device())?;
            out = out.index_select(d as isize, &reversed)?;
        }
        Ok(out)
    }

    /// Shift the elements along `dims` by `shifts`, wrapping around (`torch.roll`); with no
    /// dims, over the flattened tensor.
    pub fn roll(&self, shifts: impl IntList, dims: impl IntList) -> Result<Tensor> {
        self.live()?;
        let (shifts, dims) = (shifts.to_isize(), dims.to_isize());
        if dims.is_empty() {
            if shifts.len() != 1 {
                return Err(Error::invalid(
                    "roll",
                    format!("without dims, one shift is expected, got {shifts:?}"),
                ));
            }
            return self
                .flatten(0, -1)?
                .roll([shifts[0]], [0])?
                .reshape(self.shape());
        }
        if shifts.len() != dims.len() {
            return Err(Error::invalid(
                "roll",
                format!("shifts {shifts:?} and dims {dims:?} must have the same length"),
            ));
        }
        let mut out = self.clone();
        for (&s, &d) in shifts.iter().zip(&dims) {
            let d = normalize_dim("roll", d, self.shape())?;
            let Some(&n) = self.shape().get(d) else {
                continue; // a 0-d tensor: one element, nothing to roll
            };
            if n == 0 {
                continue;
            }
            let s = s.rem_euclid(n as isize) as usize;
            if s == 0 {
                continue;
            }
            let tail = out.narrow(d as isize, n - s, s)?;
            let head = out.narrow(d as isize, 0, n - s)?;
            out = Tensor::cat(&[&tail, &head], d as isize)?;
        }
        Ok(out)
    }

    /// Repeat the whole tensor `sizes[i]` times along each dim (`torch.Tensor.repeat`);
    /// `sizes` may be longer than the rank (new leading dims).
    pub fn repeat(&self, sizes: impl IntList) -> Result<Tensor> {
        self.live()?;
        let sizes = sizes.to_isize();
        if sizes.len() < self.ndim() || sizes.iter().any(|&s| s < 0) {
            return Err(Error::bad_shape(
                "repeat",
                self.shape(),
                format!("repeats {sizes:?} must be non-negative, one per dim at least"),
            ));
        }
        let lead = sizes.len() - self.ndim();
        let shape: Vec<usize> = std::iter::repeat_n(1, lead)
            .chain(self.shape().iter().copied())
            .collect();
        // [d0, d1, ..] -> [1, d0, 1, d1, ..] -> expand to [r0, d0, r1, d1, ..] -> [r0 d0, ..]
        let spread: Vec<usize> = shape.iter().flat_map(|&d| [1, d]).collect();
        let expanded: Vec<usize> = shape
            .iter()
            .zip(&sizes)
            .flat_map(|(&d, &r)| [r as usize, d])
            .collect();
        let out: Vec<usize> = shape
            .iter()
            .zip(&sizes)
            .map(|(&d, &r)| (r as usize).saturating_mul(d)) // too large: expand refuses it
            .collect();
        self.reshape(spread)?.expand(expanded)?.reshape(out)
    }

    /// `torch.tile`: [`Tensor::repeat`] with `dims` padded with leading ones to the rank.
    pub fn tile(&self, dims: impl IntList) -> Result<Tensor> {
        let mut dims = dims.to_isize();
        while dims.len() < self.ndim() {
            dims.insert(0, 1);
        }
        self.repeat(dims.as_slice())
    }

    /// Repeat each element `repeats` times along `dim` (`torch.repeat_interleave`).
    pub fn repeat_interleave(&self, repeats: usize, dim: isize) -> Result<Tensor> {
        self.live()?;
        let d = normalize_dim("repeat_interleave", dim, self.shape())?;
        if self.ndim() == 0 {
            return self.reshape([1])?.repeat_interleave(repeats, 0);
        }
        let mut spread = self.shape().to_vec();
        spread.insert(d + 1, 1);
        let mut expanded = spread.clone();
        expanded[d + 1] = repeats;
        let mut out = self.shape().to_vec();
        if let Some(n) = out.get_mut(d) {
            *n = n.checked_mul(repeats).ok_or_else(|| {
                Error::bad_shape(
                    "repeat_interleave",
                    self.shape(),
                    format!("{repeats} repeats overflow the size"),
                )
            })?;
        }
        self.reshape(spread)?.expand(expanded)?.reshape(out)
    }

    /// The lower triangle of the last two dims, from `diagonal` (0 the main one, positive
    /// above it) down; zeros elsewhere (`torch.tril`).
    pub fn tril(&self, diagonal: i64) -> Result<Tensor> {
        self.triangle("tril", diagonal, true)
    }

    /// The upper triangle of the last two dims, from `diagonal` up (`torch.triu`).
    pub fn triu(&self, diagonal: i64) -> Result<Tensor> {
        self.triangle("triu", diagonal, false)
    }

    fn triangle(&self, op: &'static str, diagonal: i64, lower: bool) -> Result<Tensor> {
        self.live()?;
        if self.ndim() < 2 {
            return Err(Error::bad_shape(
                op,
                self.shape(),
                "expected at least 2 dims",
            ));
        }
        let (r, c) = (self.shape()[self.ndim() - 2], self.shape()[self.ndim() - 1]);
        let rows = Tensor::arange_on(0, r as i64, 1, self.device())?.reshape([r, 1])?;
        let cols = Tensor::arange_on(0, c as i64, 1, self.device())?.reshape([1, c])?;
        // Column minus row is the diagonal an element is on.
        let offset = &cols - &rows;
        let outside = if lower {
            offset.gt_scalar(diagonal)?
        } else {
            offset.lt_scalar(diagonal)?
        };
        self.masked_fill(&outside, 0)
    }

    /// The outer product of two vectors: `[n] x [m] -> [n, m]` (`torch.outer`).
    pub fn outer(&self, other: &Tensor) -> Result<Tensor> {
        if self.ndim() != 1 || other.ndim() != 1 {
            return Err(Error::shapes(
                "outer",
                self.shape(),
                other.shape(),
                "expected two 1-D tensors",
            ));
        }
        self.unsqueeze(1)?.mul(&other.unsqueeze(0)?)
    }

    /// `self` with `alpha * source` added at `index` along `dim` (`torch.index_add`):
    /// `out[.., index[i], ..] += alpha * source[.., i, ..]`, repeated indices accumulating.
    pub fn index_add(
        &self,
        dim: isize,
        index: &Tensor,
        source: &Tensor,
        alpha: f64,
    ) -> Result<Tensor> {
        self.live()?;
        const OP: &str = "index_add";
        let d = normalize_dim(OP, dim, self.shape())?;
        let k = index.numel();
        let mut want = self.shape().to_vec();
        if index.ndim() > 1 || want.is_empty() {
            return Err(Error::shapes(
                OP,
                self.shape(),
                index.shape(),
                "expected a 1-D index and a tensor with dims",
            ));
        }
        want[d] = k;
        if source.shape() != want.as_slice() {
            return Err(Error::shapes(
                OP,
                self.shape(),
                source.shape(),
                format!("source must have shape {want:?} (the tensor's, with {k} along dim {d})"),
            ));
        }
        let mut line = vec![1usize; want.len()];
        line[d] = k;
        let spread = index.reshape(line)?.expand(want.clone())?;
        self.scatter_add(d as isize, &spread, &source.mul_scalar(alpha)?)
    }

    /// The elements where `mask` (broadcast with this tensor) is true, as a 1-D tensor in
    /// row-major order (`torch.masked_select`). The mask is read on the host: the result's
    /// length depends on it.
    pub fn masked_select(&self, mask: &Tensor) -> Result<Tensor> {
        self.live()?;
        mask.live()?;
        const OP: &str = "masked_select";
        if mask.dtype() != DType::Bool {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: mask.dtype(),
                shape: mask.shape().to_vec(),
                expected: "Bool for the mask",
            });
        }
        let shape = broadcast_shapes(OP, self.shape(), mask.shape())?;
        let flat_mask = mask
            .to_device(&Device::Cpu)?
            .expand(shape.clone())?
            .to_vec::<bool>()?;
        let picked: Vec<i64> = (0..flat_mask.len() as i64)
            .filter(|&i| flat_mask[i as usize])
            .collect();
        let n = picked.len();
        let index = Tensor::from_vec(picked, [n])?.to_device(self.device())?;
        self.expand(shape)?
            .reshape([-1isize])?
            .index_select(0, &index)
    }

    /// The indices of the non-zero elements as `[nnz, ndim]` (I64, row-major order;
    /// `torch.nonzero`). Read on the host: the count depends on the data.
    pub fn nonzero(&self) -> Result<Tensor> {
        self.live()?;
        let nonzero = self
            .ne_scalar(0)?
            .to_device(&Device::Cpu)?
            .to_vec::<bool>()?;
        let shape = self.shape().to_vec();
        let mut out = Vec::new();
        let mut count = 0usize;
        for (flat, &nz) in nonzero.iter().enumerate() {
            if !nz {
                continue;
            }
            count += 1;
            let mut rest = flat;
            let mut index = vec![0i64; shape.len()];
            for (k, &n) in shape.iter().enumerate().rev() {
                index[k] = (rest % n) as i64;
                rest /= n;
            }
            out.extend(index);
        }
        Tensor::from_vec(out, [count, shape.len()])?.to_device(self.device())
    }
}
