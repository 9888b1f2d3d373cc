//! Elementwise math with NumPy/PyTorch broadcasting and type promotion.

use super::Tensor;
use crate::autograd::BackwardOp;
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::op::{BinaryOp, CmpOp, UnaryOp};
use crate::shape::broadcast_shapes;

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {
        impl Tensor {
            $($(#[$doc])* pub fn $name(&self) -> Result<Tensor> {
                self.unary(UnaryOp::$op)
            })*
        }
    };
}
unary_methods! {
    /// `-x`.
    neg => Neg,
    /// `|x|`.
    abs => Abs,
    /// `e^x` (integers become float).
    exp => Exp,
    /// Natural logarithm.
    log => Log,
    /// Square root.
    sqrt => Sqrt,
    /// Sine.
    sin => Sin,
    /// Cosine.
    cos => Cos,
    /// Hyperbolic tangent.
    tanh => Tanh,
    /// `1 / (1 + e^-x)`, computed without overflow.
    sigmoid => Sigmoid,
    /// `max(x, 0)`.
    relu => Relu,
    /// `1 / x`.
    reciprocal => Recip,
    /// `x * x`.
    square => Square,
    /// -1, 0 or 1.
    sign => Sign,
    /// Round down.
    floor => Floor,
    /// Round up.
    ceil => Ceil,
    /// Round half to even.
    round => Round,
    /// `x == 0`, as bool.
    logical_not => LogicalNot,
    /// Whether each element is NaN.
    isnan => IsNan,
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $name:ident, $scalar:ident => $op:ident),* $(,)?) => {
        impl Tensor {
            $($(#[$doc])* pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
                self.binary(BinaryOp::$op, rhs)
            }
            #[doc = concat!("[`Tensor::", stringify!($name), "`] with a scalar right operand.")]
            pub fn $scalar(&self, rhs: impl Into<Scalar>) -> Result<Tensor> {
                self.binary(BinaryOp::$op, &self.scalar_like(rhs.into())?)
            })*
        }
    };
}
binary_methods! {
    /// Elementwise sum with broadcasting.
    add, add_scalar => Add,
    /// Elementwise difference with broadcasting.
    sub, sub_scalar => Sub,
    /// Elementwise product with broadcasting.
    mul, mul_scalar => Mul,
    /// Elementwise true division (integers give float) with broadcasting.
    div, div_scalar => Div,
    /// Elementwise power with broadcasting.
    pow, pow_scalar => Pow,
    /// Elementwise maximum (NaN propagates).
    maximum, maximum_scalar => Maximum,
    /// Elementwise minimum (NaN propagates).
    minimum, minimum_scalar => Minimum,
}

macro_rules! cmp_methods {
    ($($(#[$doc:meta])* $name:ident, $scalar:ident => $op:ident),* $(,)?) => {
        impl Tensor {
            $($(#[$doc])* pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
                self.compare(CmpOp::$op, rhs)
            }
            #[doc = concat!("[`Tensor::", stringify!($name), "`] against a scalar.")]
            pub fn $scalar(&self, rhs: impl Into<Scalar>) -> Result<Tensor> {
                self.compare(CmpOp::$op, &self.scalar_like(rhs.into())?)
            })*
        }
    };
}
cmp_methods! {
    /// `==`, to bool.
    eq, eq_scalar => Eq,
    /// `!=`, to bool.
    ne, ne_scalar => Ne,
    /// `<`, to bool.
    lt, lt_scalar => Lt,
    /// `<=`, to bool.
    le, le_scalar => Le,
    /// `>`, to bool.
    gt, gt_scalar => Gt,
    /// `>=`, to bool.
    ge, ge_scalar => Ge,
    /// Logical and of truth values, to bool.
    logical_and, logical_and_scalar => And,
    /// Logical or of truth values, to bool.
    logical_or, logical_or_scalar => Or,
    /// Logical exclusive or of truth values, to bool.
    logical_xor, logical_xor_scalar => Xor,
}

impl Tensor {
    /// A 0-d tensor on this tensor's device.
    pub(crate) fn scalar_like(&self, v: Scalar) -> Result<Tensor> {
        Tensor::full_on(&[] as &[usize], v, v.dtype(), self.device())
    }

    pub(crate) fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        if self.dtype() == DType::Bool && op == UnaryOp::Neg {
            return Err(Error::UnsupportedDType {
                op: "neg",
                dtype: DType::Bool,
                shape: self.shape().to_vec(),
                expected: "a numeric tensor (use logical_not for bool)",
            });
        }
        if op.promotes_int_to_float() && !self.dtype().is_float() {
            return self.to_dtype(DType::F32)?.unary(op);
        }
        let s = self.with_storage(|s, l| s.unary(op, l))?;
        if op.returns_bool() || !self.dtype().is_float() {
            return Ok(Tensor::from_storage(s, self.shape()));
        }
        Ok(Tensor::from_op(
            s,
            self.shape(),
            || BackwardOp::Unary(op),
            &[self],
        ))
    }

    /// Bring two operands to a common dtype and broadcast shape.
    fn unify(
        &self,
        op: &'static str,
        rhs: &Tensor,
        dtype: DType,
    ) -> Result<(Tensor, Tensor, Vec<usize>)> {
        self.same_device(op, rhs)?;
        let shape = broadcast_shapes(op, self.shape(), rhs.shape())?;
        Ok((self.to_dtype(dtype)?, rhs.to_dtype(dtype)?, shape))
    }

    pub(crate) fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        let mut dtype = self.dtype().promote(rhs.dtype());
        match (op, dtype) {
            (BinaryOp::Div, DType::I64 | DType::Bool) => dtype = DType::F32,
            (BinaryOp::Pow, DType::Bool) => dtype = DType::I64,
            (BinaryOp::Sub, DType::Bool) => {
                return Err(Error::DTypeMismatch {
                    op: "sub",
                    lhs: self.dtype(),
                    rhs: rhs.dtype(),
                    lhs_shape: self.shape().to_vec(),
                    rhs_shape: rhs.shape().to_vec(),
                    detail: "subtraction of bool tensors is not supported; use logical_xor".into(),
                })
            }
            _ => {}
        }
        let (a, b, shape) = self.unify(op.name(), rhs, dtype)?;
        let (la, lb) = (
            a.layout().broadcast_to(op.name(), &shape)?,
            b.layout().broadcast_to(op.name(), &shape)?,
        );
        let s = {
            let (sa, sb) = (a.storage().read(), b.storage().read());
            sa.binary(op, &la, &sb, &lb)?
        };
        if !dtype.is_float() {
            return Ok(Tensor::from_storage(s, &shape));
        }
        Ok(Tensor::from_op(
            s,
            &shape,
            || BackwardOp::Binary(op),
            &[&a, &b],
        ))
    }

    pub(crate) fn compare(&self, op: CmpOp, rhs: &Tensor) -> Result<Tensor> {
        let dtype = self.dtype().promote(rhs.dtype());
        let (a, b, shape) = self.unify(op.name(), rhs, dtype)?;
        let (la, lb) = (
            a.layout().broadcast_to(op.name(), &shape)?,
            b.layout().broadcast_to(op.name(), &shape)?,
        );
        let s = {
            let (sa, sb) = (a.storage().read(), b.storage().read());
            sa.cmp(op, &la, &sb, &lb)?
        };
        Ok(Tensor::from_storage(s, &shape))
    }

    /// `cond ? a : b` elementwise, all three broadcast together (`torch.where`).
    ///
    /// ```
    /// use wgrad::Tensor;
    /// let x = Tensor::new([-1.0, 2.0, -3.0])?;
    /// let y = Tensor::where_cond(&x.gt_scalar(0.0)?, &x, &x.neg()?)?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![1.0, 2.0, 3.0]);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        const OP: &str = "where";
        if cond.dtype() != DType::Bool {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: cond.dtype(),
                shape: cond.shape().to_vec(),
                expected: "Bool for the condition",
            });
        }
        cond.same_device(OP, a)?;
        let dtype = a.dtype().promote(b.dtype());
        let (a, b, shape) = a.unify(OP, b, dtype)?;
        let shape = broadcast_shapes(OP, cond.shape(), &shape)?;
        let lc = cond.layout().broadcast_to(OP, &shape)?;
        let (la, lb) = (
            a.layout().broadcast_to(OP, &shape)?,
            b.layout().broadcast_to(OP, &shape)?,
        );
        let s = {
            let (sc, sa, sb) = (
                cond.storage().read(),
                a.storage().read(),
                b.storage().read(),
            );
            sc.where_cond(&lc, &sa, &la, &sb, &lb)?
        };
        if !dtype.is_float() {
            return Ok(Tensor::from_storage(s, &shape));
        }
        Ok(Tensor::from_op(
            s,
            &shape,
            || BackwardOp::Where,
            &[cond, &a, &b],
        ))
    }

    /// Limit each element to `[min, max]`. The gradient flows where `min <= x <= max`.
    pub fn clamp(&self, min: impl Into<Scalar>, max: impl Into<Scalar>) -> Result<Tensor> {
        self.clamp_min(min)?.clamp_max(max)
    }

    /// `max(x, min)` with the gradient flowing where `x >= min`.
    pub fn clamp_min(&self, min: impl Into<Scalar>) -> Result<Tensor> {
        let m = self.scalar_like(min.into())?;
        Tensor::where_cond(&self.lt(&m)?, &m, self)
    }

    /// `min(x, max)` with the gradient flowing where `x <= max`.
    pub fn clamp_max(&self, max: impl Into<Scalar>) -> Result<Tensor> {
        let m = self.scalar_like(max.into())?;
        Tensor::where_cond(&self.gt(&m)?, &m, self)
    }

    /// Replace the elements where `mask` is true by `value` (mask broadcast to this shape).
    pub fn masked_fill(&self, mask: &Tensor, value: impl Into<Scalar>) -> Result<Tensor> {
        if mask.dtype() != DType::Bool {
            return Err(Error::UnsupportedDType {
                op: "masked_fill",
                dtype: mask.dtype(),
                shape: mask.shape().to_vec(),
                expected: "Bool for the mask",
            });
        }
        let out_shape = broadcast_shapes("masked_fill", self.shape(), mask.shape())?;
        if out_shape != self.shape() {
            return Err(Error::shapes(
                "masked_fill",
                self.shape(),
                mask.shape(),
                "the mask must broadcast to the tensor's shape",
            ));
        }
        let v = Tensor::full_on(&[] as &[usize], value.into(), self.dtype(), self.device())?;
        Tensor::where_cond(mask, &v, self)
    }

    /// Sum a broadcast result back to `shape` (the reduction behind every gradient of a
    /// broadcasting op).
    pub(crate) fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let extra = self.ndim() - shape.len();
        let dims: Vec<usize> = (0..self.ndim())
            .filter(|&d| d < extra || (shape[d - extra] == 1 && self.shape()[d] != 1))
            .collect();
        self.sum_dims_internal(&dims, true)?.reshape(shape)
    }
}
