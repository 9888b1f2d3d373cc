//! Products and norms.

use super::{Fresh, Tensor};
use crate::autograd::BackwardOp;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::{broadcast_shapes, IntList};

impl Tensor {
    /// Matrix product with PyTorch's rules: 1-D operands get a dim of 1 added (and removed
    /// from the result), batch dims broadcast, transposed views are read in place.
    ///
    /// ```
    /// use wgrad::Tensor;
    /// let a = Tensor::randn(&[2, 1, 3, 4])?;
    /// let b = Tensor::randn(&[5, 4, 2])?;
    /// assert_eq!(a.matmul(&b)?.shape(), &[2, 5, 3, 2]);
    /// assert_eq!(Tensor::ones(&[4])?.matmul(&b)?.shape(), &[5, 2]);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.live()?;
        rhs.live()?;
        if let Some([a, b]) = crate::autocast::lowered([self, rhs])? {
            return a.matmul(&b);
        }
        const OP: &str = "matmul";
        self.same_device(OP, rhs)?;
        if self.dtype() != rhs.dtype() || self.dtype() == DType::Bool {
            return Err(Error::DTypeMismatch {
                op: OP,
                lhs: self.dtype(),
                rhs: rhs.dtype(),
                lhs_shape: self.shape().to_vec(),
                rhs_shape: rhs.shape().to_vec(),
                detail: "both operands must have the same numeric dtype".into(),
            });
        }
        if self.ndim() == 0 || rhs.ndim() == 0 {
            return Err(Error::shapes(
                OP,
                self.shape(),
                rhs.shape(),
                "both arguments to matmul need to be at least 1D",
            ));
        }
        let a = if self.ndim() == 1 {
            self.unsqueeze(0)?
        } else {
            self.clone()
        };
        let b = if rhs.ndim() == 1 {
            rhs.unsqueeze(1)?
        } else {
            rhs.clone()
        };
        let (ra, rb) = (a.ndim(), b.ndim());
        let (m, k, k2, n) = (
            a.shape()[ra - 2],
            a.shape()[ra - 1],
            b.shape()[rb - 2],
            b.shape()[rb - 1],
        );
        if k != k2 {
            return Err(Error::shapes(
                OP,
                self.shape(),
                rhs.shape(),
                format!("inner dimensions differ ({k} vs {k2})"),
            ));
        }
        // `[batch.., m, k] @ [k, n]` (activations times a weight): one 2-D product over all
        // the rows, whose backward pass is one gemm for the weight's gradient with the batch
        // as its inner dim, rather than a gemm per batch element and a sum over them. Rows
        // that a view cannot merge (a transposed sequence) are copied into order first: a
        // copy of the activations costs less than a gemm per batch element.
        if rb == 2 && ra > 2 {
            let rows: usize = a.shape()[..ra - 1].iter().product();
            let a = if a.layout().reshape(&[rows, k]).is_some() {
                a
            } else {
                a.contiguous()?
            };
            let mut shape = a.shape()[..ra - 1].to_vec();
            shape.push(n);
            let out = a.reshape([rows, k])?.matmul(&b)?.reshape(shape)?;
            return if rhs.ndim() == 1 {
                out.squeeze_dim(-1)
            } else {
                Ok(out)
            };
        }
        let batch =
            broadcast_shapes(OP, &a.shape()[..ra - 2], &b.shape()[..rb - 2]).map_err(|_| {
                Error::shapes(
                    OP,
                    self.shape(),
                    rhs.shape(),
                    "batch dimensions do not broadcast",
                )
            })?;
        let full = |rows: usize, cols: usize| [batch.as_slice(), &[rows, cols]].concat();
        let la = a.layout().broadcast_to(OP, &full(m, k))?;
        let lb = b.layout().broadcast_to(OP, &full(k, n))?;
        // On a GPU, an f32 product is computed when needed, with the elementwise ops that
        // read it (`storage/lazy.rs`).
        let lazy = match self.device() {
            Device::Cpu => None,
            Device::Gpu(_) => crate::storage::lazy::try_product(a.storage(), &la, b.storage(), &lb),
        };
        let s: Fresh = match lazy {
            Some(cell) => Fresh {
                cell,
                dtype: DType::F32,
                device: self.device().clone(),
            },
            None => crate::storage::with_reads(
                [Some(a.storage()), Some(b.storage())],
                |[sa, sb]| match (sa, sb) {
                    (Some(sa), Some(sb)) => sa.matmul(&la, sb, &lb),
                    _ => Err(Error::invalid(OP, "a storage was not locked")),
                },
            )?
            .into(),
        };
        let out_shape = full(m, n);
        let out = if self.dtype().is_float() {
            Tensor::from_op(s, &out_shape, || BackwardOp::Matmul, &[&a, &b])?
        } else {
            Tensor::from_storage(s, &out_shape)
        };
        match (self.ndim(), rhs.ndim()) {
            (1, 1) => out.reshape([0usize; 0]),
            (1, _) => out.squeeze_dim(-2),
            (_, 1) => out.squeeze_dim(-1),
            _ => Ok(out),
        }
    }

    /// Product of two matrices (`torch.mm`).
    pub fn mm(&self, rhs: &Tensor) -> Result<Tensor> {
        self.live()?;
        rhs.live()?;
        if self.ndim() != 2 || rhs.ndim() != 2 {
            return Err(Error::shapes(
                "mm",
                self.shape(),
                rhs.shape(),
                "mm expects two 2-D tensors",
            ));
        }
        self.matmul(rhs)
    }

    /// Matrix-vector product (`torch.mv`).
    pub fn mv(&self, v: &Tensor) -> Result<Tensor> {
        self.live()?;
        v.live()?;
        if self.ndim() != 2 || v.ndim() != 1 {
            return Err(Error::shapes(
                "mv",
                self.shape(),
                v.shape(),
                "mv expects a 2-D matrix and a 1-D vector",
            ));
        }
        self.matmul(v)
    }

    /// Inner product of two vectors of the same length (`torch.dot`).
    pub fn dot(&self, v: &Tensor) -> Result<Tensor> {
        self.live()?;
        v.live()?;
        if self.ndim() != 1 || v.ndim() != 1 || self.shape() != v.shape() {
            return Err(Error::shapes(
                "dot",
                self.shape(),
                v.shape(),
                "dot expects two 1-D tensors of the same length",
            ));
        }
        self.matmul(v)
    }

    /// The 2-norm of all elements (Frobenius norm for matrices), `torch.norm(x)`.
    pub fn norm(&self) -> Result<Tensor> {
        self.live()?;
        self.vector_norm(2.0, &[] as &[isize], false)
    }

    /// The `p`-norm over `dims` (all dims when empty): `p` may be any positive number,
    /// `f64::INFINITY`, `f64::NEG_INFINITY` or 0 (count of non-zeros), `torch.linalg.vector_norm`.
    pub fn vector_norm(&self, p: f64, dims: impl IntList, keepdim: bool) -> Result<Tensor> {
        self.live()?;
        // 16-bit inputs: f32 throughout, one rounding (a square overflows f16 past 256).
        let dims = dims.to_isize();
        if let Some(n) = super::fused::through_f32([Some(self)], |[x]| {
            super::fused::given("vector_norm", x)?.vector_norm(p, dims.as_slice(), keepdim)
        })? {
            return Ok(n);
        }
        let x = if self.dtype().is_float() {
            self.clone()
        } else {
            return Err(Error::UnsupportedDType {
                op: "vector_norm",
                dtype: self.dtype(),
                shape: self.shape().to_vec(),
                expected: "a floating-point tensor",
            });
        };
        let mut dims = dims.to_isize();
        if dims.is_empty() {
            dims = (0..x.ndim() as isize).collect();
        }
        let a = x.abs()?;
        if dims.is_empty() {
            // A 0-d tensor: the norm of one number is its absolute value.
            return if p == 0.0 {
                a.ne_scalar(0.0)?.to_dtype(DType::F32)
            } else {
                Ok(a)
            };
        }
        if p == f64::INFINITY {
            a.max_dims(&dims, keepdim)
        } else if p == f64::NEG_INFINITY {
            a.min_dims(&dims, keepdim)
        } else if p == 0.0 {
            a.ne_scalar(0.0)?
                .to_dtype(DType::F32)?
                .sum_dims(&dims, keepdim)
        } else if p == 1.0 {
            a.sum_dims(&dims, keepdim)
        } else if p == 2.0 {
            root_at_zero_is_zero(x.square()?.sum_dims(&dims, keepdim)?, |s| s.sqrt())
        } else if p > 0.0 {
            let sum = a.pow_scalar(p)?.sum_dims(&dims, keepdim)?;
            root_at_zero_is_zero(sum, |s| s.pow_scalar(1.0 / p))
        } else {
            Err(Error::invalid(
                "vector_norm",
                format!("p must be positive, 0 or +-inf, got {p}"),
            ))
        }
    }
}

/// `root(sum)` where `sum > 0`, and 0 where it is 0, with a gradient of 0 there (as
/// PyTorch's norms have) instead of `inf * 0 = NaN`: the root only ever sees positive
/// values, and `where` sends no gradient to the branch it did not take.
fn root_at_zero_is_zero(sum: Tensor, root: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let zero = sum.eq_scalar(0.0)?;
    let safe = Tensor::where_cond(&zero, 1.0, &sum)?;
    Tensor::where_cond(&zero, 0.0, &root(&safe)?)
}
