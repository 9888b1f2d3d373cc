//! Elementwise math with NumPy/PyTorch broadcasting and type promotion, driven by the op
//! tables (`op/`): each method resolves the dtype by the table's rule, runs the backend's
//! kernel, and records the op for autograd. A Rust number is an operand like a tensor
//! (`x.mul(2.0)`, `&x * 2.0`, `1.0 - &z`) and reaches the kernel as a parameter.

use super::Tensor;
use crate::autograd::BackwardOp;
use crate::backend::Arg;
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::op::{Binary, BinaryOp, CmpOp, ScalarSide, Unary, UnaryOp};
use crate::shape::broadcast_shapes;
use crate::storage::Storage;

use super::Source;

/// The dtype rule of a table entry, without its kernel.
enum Rule {
    Kernel,
    ViaFloat,
    ViaInt,
    Refused(&'static str),
}

fn unary_rule(op: UnaryOp, d: DType) -> Rule {
    fn of<T>(e: &Unary<T>) -> Rule {
        match e {
            Unary::Map(_) | Unary::Test(_) => Rule::Kernel,
            Unary::ViaFloat => Rule::ViaFloat,
            Unary::Refused(why) => Rule::Refused(why),
        }
    }
    let def = op.def();
    match d {
        DType::F32 => of(&def.f32),
        DType::I64 => of(&def.i64),
        DType::Bool => of(&def.bool),
    }
}

fn binary_rule(op: BinaryOp, d: DType) -> Rule {
    fn of<T>(e: &Binary<T>) -> Rule {
        match e {
            Binary::Map(_) => Rule::Kernel,
            Binary::ViaFloat => Rule::ViaFloat,
            Binary::ViaInt => Rule::ViaInt,
            Binary::Refused(why) => Rule::Refused(why),
        }
    }
    let def = op.def();
    match d {
        DType::F32 => of(&def.f32),
        DType::I64 => of(&def.i64),
        DType::Bool => of(&def.bool),
    }
}

impl Source {
    fn shape(&self) -> &[usize] {
        match self {
            Source::Tensor(t) => t.shape(),
            Source::Scalar(_) => &[],
        }
    }
}

/// PyTorch's result type of two operands: tensors promote in the dtype lattice; a number
/// joins a tensor as a "wrapped number" (it does not widen the tensor's category); two
/// numbers give the default dtype of the higher category.
fn result_type(a: &Source, b: &Source) -> DType {
    match (a, b) {
        (Source::Tensor(x), Source::Tensor(y)) => x.dtype().promote(y.dtype()),
        (Source::Tensor(t), Source::Scalar(s)) | (Source::Scalar(s), Source::Tensor(t)) => {
            t.dtype().promote_scalar(*s)
        }
        (Source::Scalar(x), Source::Scalar(y)) => DType::default_for(x.kind().max(y.kind())),
    }
}

/// The operand converted to `dtype` and broadcast to `shape`, held for the storage call.
enum Prepared {
    Tensor(Tensor, crate::layout::Layout),
    Scalar(Scalar),
}

impl Prepared {
    fn new(op: &'static str, s: &Source, dtype: DType, shape: &[usize]) -> Result<Prepared> {
        Ok(match s {
            Source::Tensor(t) => {
                let t = t.to_dtype(dtype)?;
                let l = t.layout().broadcast_to(op, shape)?;
                Prepared::Tensor(t, l)
            }
            Source::Scalar(v) => Prepared::Scalar(*v),
        })
    }

    fn tensor(&self) -> Option<&Tensor> {
        match self {
            Prepared::Tensor(t, _) => Some(t),
            Prepared::Scalar(_) => None,
        }
    }
}

/// Lock the storages of the prepared operands and call `f` with them as backend operands.
fn with_args<R>(ops: &[&Prepared], f: impl FnOnce(&[Arg<'_, Storage>]) -> Result<R>) -> Result<R> {
    let tensors: Vec<&Tensor> = ops.iter().filter_map(|p| p.tensor()).collect();
    Tensor::read_storages(&tensors, |storages| {
        let mut next = storages.iter();
        let mut args = Vec::with_capacity(ops.len());
        for p in ops {
            args.push(match p {
                Prepared::Tensor(_, l) => match next.next() {
                    Some(s) => Arg::Buf(*s, l),
                    None => {
                        return Err(Error::invalid("elementwise", "an operand lost its storage"))
                    }
                },
                Prepared::Scalar(v) => Arg::Scalar(*v),
            });
        }
        f(&args)
    })
}

impl Tensor {
    /// Apply a unary op of the table (`op/`) by value: `x.unary_op(UnaryOp::Log1p)` is
    /// `x.log1p()`.
    pub fn unary_op(&self, op: UnaryOp) -> Result<Tensor> {
        self.unary(op)
    }

    /// Apply a binary op of the table by value to tensors or numbers (at least one tensor):
    /// `Tensor::binary_op(BinaryOp::Sub, 1.0, &x)` is `1.0 - &x`.
    pub fn binary_op(op: BinaryOp, a: impl Into<Source>, b: impl Into<Source>) -> Result<Tensor> {
        Tensor::binary_of(op, a.into(), b.into())
    }

    /// Apply a comparison of the table by value.
    pub fn compare_op(&self, op: CmpOp, rhs: impl Into<Source>) -> Result<Tensor> {
        self.compare(op, rhs.into())
    }

    pub(crate) fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        match unary_rule(op, self.dtype()) {
            Rule::Kernel => {}
            Rule::ViaFloat | Rule::ViaInt => return self.to_dtype(DType::F32)?.unary(op),
            Rule::Refused(expected) => {
                return Err(Error::UnsupportedDType {
                    op: op.name(),
                    dtype: self.dtype(),
                    shape: self.shape().to_vec(),
                    expected,
                })
            }
        }
        let s = self.with_storage(|s, l| s.unary(op, l))?;
        if !s.dtype().is_float() {
            return Ok(Tensor::from_storage(s, self.shape()));
        }
        Ok(Tensor::from_op(
            s,
            self.shape(),
            || BackwardOp::Unary(op),
            &[self],
        ))
    }

    /// `a (op) b` for tensors and numbers: the dtype by PyTorch's rules and the op's table
    /// entry, the shape by broadcasting.
    pub(crate) fn binary_of(op: BinaryOp, a: Source, b: Source) -> Result<Tensor> {
        let name = op.name();
        let dtype = Tensor::binary_result_dtype(op, &a, &b)?;
        if let (Source::Tensor(x), Source::Tensor(y)) = (&a, &b) {
            x.same_device(name, y)?;
        }
        let shape = broadcast_shapes(name, a.shape(), b.shape())?;
        let (pa, pb) = (
            Prepared::new(name, &a, dtype, &shape)?,
            Prepared::new(name, &b, dtype, &shape)?,
        );
        let s = with_args(&[&pa, &pb], |args| {
            Storage::binary(op, &shape, dtype, args[0], args[1])
        })?;
        if !dtype.is_float() {
            return Ok(Tensor::from_storage(s, &shape));
        }
        Ok(match (&pa, &pb) {
            (Prepared::Tensor(x, _), Prepared::Tensor(y, _)) => {
                Tensor::from_op(s, &shape, || BackwardOp::Binary(op), &[x, y])
            }
            (Prepared::Tensor(x, _), Prepared::Scalar(v)) => Tensor::from_op(
                s,
                &shape,
                || BackwardOp::BinaryScalar {
                    op,
                    scalar: *v,
                    side: ScalarSide::Rhs,
                },
                &[x],
            ),
            (Prepared::Scalar(v), Prepared::Tensor(y, _)) => Tensor::from_op(
                s,
                &shape,
                || BackwardOp::BinaryScalar {
                    op,
                    scalar: *v,
                    side: ScalarSide::Lhs,
                },
                &[y],
            ),
            (Prepared::Scalar(_), Prepared::Scalar(_)) => Tensor::from_storage(s, &shape),
        })
    }

    /// The dtype `a (op) b` computes in: PyTorch's result type, then the op's rule for it
    /// (integers divide in float, bools raise to a power as integers).
    pub(crate) fn binary_result_dtype(op: BinaryOp, a: &Source, b: &Source) -> Result<DType> {
        let mut dtype = result_type(a, b);
        loop {
            match binary_rule(op, dtype) {
                Rule::Kernel => return Ok(dtype),
                Rule::ViaFloat => dtype = DType::default_for(crate::dtype::Kind::Float),
                Rule::ViaInt => dtype = DType::default_for(crate::dtype::Kind::Int),
                Rule::Refused(why) => {
                    let dtype_of = |s: &Source| match s {
                        Source::Tensor(t) => t.dtype(),
                        Source::Scalar(v) => v.dtype(),
                    };
                    return Err(Error::DTypeMismatch {
                        op: op.name(),
                        lhs: dtype_of(a),
                        rhs: dtype_of(b),
                        lhs_shape: a.shape().to_vec(),
                        rhs_shape: b.shape().to_vec(),
                        detail: why.into(),
                    });
                }
            }
        }
    }

    /// A comparison of this tensor with a tensor or a number, to bool.
    pub(crate) fn compare(&self, op: CmpOp, rhs: Source) -> Result<Tensor> {
        let name = op.name();
        let a = Source::Tensor(self.clone());
        let dtype = result_type(&a, &rhs);
        if let Source::Tensor(y) = &rhs {
            self.same_device(name, y)?;
        }
        let shape = broadcast_shapes(name, self.shape(), rhs.shape())?;
        let (pa, pb) = (
            Prepared::new(name, &a, dtype, &shape)?,
            Prepared::new(name, &rhs, dtype, &shape)?,
        );
        let s = with_args(&[&pa, &pb], |args| {
            Storage::cmp(op, &shape, dtype, args[0], args[1])
        })?;
        Ok(Tensor::from_storage(s, &shape))
    }

    /// `cond ? a : b` elementwise, all three broadcast together (`torch.where`); `a` and `b`
    /// are tensors or numbers.
    ///
    /// ```
    /// use wgrad::Tensor;
    /// let x = Tensor::new([-1.0, 2.0, -3.0])?;
    /// let y = Tensor::where_cond(&x.gt_scalar(0.0)?, &x, 0.0)?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![0.0, 2.0, 0.0]);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn where_cond(cond: &Tensor, a: impl Into<Source>, b: impl Into<Source>) -> Result<Tensor> {
        let (a, b) = (a.into(), b.into());
        let dtype = result_type(&a, &b);
        Tensor::where_in(cond, a, b, dtype)
    }

    /// `where` with the result dtype given (masked_fill keeps the tensor's).
    fn where_in(cond: &Tensor, a: Source, b: Source, dtype: DType) -> Result<Tensor> {
        const OP: &str = "where";
        if cond.dtype() != DType::Bool {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: cond.dtype(),
                shape: cond.shape().to_vec(),
                expected: "Bool for the condition",
            });
        }
        for s in [&a, &b] {
            if let Source::Tensor(t) = s {
                cond.same_device(OP, t)?;
            }
        }
        let shape = broadcast_shapes(
            OP,
            cond.shape(),
            &broadcast_shapes(OP, a.shape(), b.shape())?,
        )?;
        let lc = cond.layout().broadcast_to(OP, &shape)?;
        let pc = Prepared::Tensor(cond.clone(), lc);
        let (pa, pb) = (
            Prepared::new(OP, &a, dtype, &shape)?,
            Prepared::new(OP, &b, dtype, &shape)?,
        );
        let s = with_args(&[&pc, &pa, &pb], |args| match args[0] {
            Arg::Buf(c, lc) => Storage::where_cond(&shape, dtype, (c, lc), args[1], args[2]),
            Arg::Scalar(_) => Err(Error::invalid(OP, "the condition must be a tensor")),
        })?;
        if !dtype.is_float() {
            return Ok(Tensor::from_storage(s, &shape));
        }
        let mut inputs = vec![cond];
        inputs.extend(pa.tensor());
        inputs.extend(pb.tensor());
        let (ta, tb) = (pa.tensor().is_some(), pb.tensor().is_some());
        Ok(Tensor::from_op(
            s,
            &shape,
            || BackwardOp::Where { a: ta, b: tb },
            &inputs,
        ))
    }

    /// Limit each element to `[min, max]` (two kernels, one per bound). The gradient flows
    /// where `min <= x <= max`.
    pub fn clamp(&self, min: impl Into<Scalar>, max: impl Into<Scalar>) -> Result<Tensor> {
        self.clamp_min(min)?.clamp_max(max)
    }

    /// Replace the elements where `mask` is true by `value` (mask broadcast to this shape;
    /// the dtype stays this tensor's).
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
        Tensor::where_in(
            mask,
            Source::Scalar(value.into()),
            Source::Tensor(self.clone()),
            self.dtype(),
        )
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
