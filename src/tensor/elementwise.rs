//! Elementwise math with NumPy/PyTorch broadcasting and type promotion, driven by the op
//! tables (`op/`): each method resolves the dtype by the table's rule, runs the backend's
//! kernel, and records the op for autograd. A Rust number is an operand like a tensor
//! (`x.mul(2.0)`, `&x * 2.0`, `1.0 - &z`) and reaches the kernel as a parameter.

use super::Tensor;
use crate::autograd::BackwardOp;
use crate::backend::Arg;
use crate::device::Device;
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::gpu::kernels::lazy::FusedOp;
use crate::op::{Binary, BinaryOp, CmpOp, ScalarSide, Unary, UnaryOp};
use crate::shape::broadcast_shapes;
use crate::storage::{lazy, Storage};

use super::{Fresh, Source};

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
    crate::op::entry_for!(d, def, |e| of(e))
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
    crate::op::entry_for!(d, def, |e| of(e))
}

/// An operand of elementwise math, borrowed: a tensor or a Rust number. The internal form of
/// [`Source`], so that an op on tensors it was given by reference clones none of them.
#[derive(Clone, Copy)]
pub(crate) enum Operand<'a> {
    Tensor(&'a Tensor),
    Scalar(Scalar),
}

impl<'a> From<&'a Source> for Operand<'a> {
    fn from(s: &'a Source) -> Self {
        match s {
            Source::Tensor(t) => Operand::Tensor(t),
            Source::Scalar(v) => Operand::Scalar(*v),
        }
    }
}

impl<'a> From<&'a Tensor> for Operand<'a> {
    fn from(t: &'a Tensor) -> Self {
        Operand::Tensor(t)
    }
}

impl Operand<'_> {
    /// `Err` if the operand is a failed expression's tensor.
    fn live(&self) -> Result<()> {
        match self {
            Operand::Tensor(t) => t.live(),
            Operand::Scalar(_) => Ok(()),
        }
    }

    fn shape(&self) -> &[usize] {
        match self {
            Operand::Tensor(t) => t.shape(),
            Operand::Scalar(_) => &[],
        }
    }

    fn dtype(&self) -> DType {
        match self {
            Operand::Tensor(t) => t.dtype(),
            Operand::Scalar(v) => v.dtype(),
        }
    }
}

/// PyTorch's result type of two operands: tensors promote in the dtype lattice; a number
/// joins a tensor as a "wrapped number" (it does not widen the tensor's category); two
/// numbers give the default dtype of the higher category.
fn result_type(a: Operand<'_>, b: Operand<'_>) -> DType {
    match (a, b) {
        (Operand::Tensor(x), Operand::Tensor(y)) => x.dtype().promote(y.dtype()),
        (Operand::Tensor(t), Operand::Scalar(s)) | (Operand::Scalar(s), Operand::Tensor(t)) => {
            t.dtype().promote_scalar(s)
        }
        (Operand::Scalar(x), Operand::Scalar(y)) => DType::default_for(x.kind().max(y.kind())),
    }
}

/// The operand converted to `dtype` (borrowed when it has it already) and broadcast to
/// `shape`, held for the storage call.
enum Prepared<'a> {
    Tensor(std::borrow::Cow<'a, Tensor>, crate::layout::Layout),
    Scalar(Scalar),
}

impl<'a> Prepared<'a> {
    fn new(
        op: &'static str,
        s: Operand<'a>,
        dtype: DType,
        shape: &[usize],
    ) -> Result<Prepared<'a>> {
        Ok(match s {
            Operand::Tensor(t) => {
                let t = if t.dtype() == dtype {
                    std::borrow::Cow::Borrowed(t)
                } else {
                    std::borrow::Cow::Owned(t.to_dtype(dtype)?)
                };
                let l = t.layout().broadcast_to(op, shape)?;
                Prepared::Tensor(t, l)
            }
            // A number must be a value of the op's dtype (no wrap, no saturation).
            // A number meets a 16-bit tensor in f32, where the kernel computes (PyTorch's opmath).
            Operand::Scalar(v) => Prepared::Scalar(v.checked_for(op, dtype.compute_dtype())?),
        })
    }

    fn tensor(&self) -> Option<&Tensor> {
        match self {
            Prepared::Tensor(t, _) => Some(t),
            Prepared::Scalar(_) => None,
        }
    }

    fn lazy_input(&self) -> lazy::Input<'_> {
        match self {
            Prepared::Tensor(t, l) => lazy::Input::Tensor(t.storage(), l, t.dtype()),
            Prepared::Scalar(v) => lazy::Input::Scalar(*v),
        }
    }
}

/// `t` converted to `dtype`, as fresh storage (see [`fused_or`]).
pub(super) fn cast_storage(t: &Tensor, dtype: DType) -> Result<Fresh> {
    fused_or(
        FusedOp::Cast,
        (t.shape(), t.dtype(), dtype),
        t.device(),
        &[lazy::Input::Tensor(t.storage(), t.layout(), t.dtype())],
        || t.with_storage(|s, l| s.cast(l, dtype)),
    )
}

/// The device of an op over `operands`: the first tensor's (the CPU for numbers alone).
fn device_of(operands: &[&Prepared<'_>]) -> Device {
    operands
        .iter()
        .find_map(|p| p.tensor())
        .map_or(Device::Cpu, |t| t.device().clone())
}

/// The result of an elementwise op of dtype `out` over `inputs` (value operands of dtype
/// `input`) broadcast to `shape`: on a GPU a pending fused value where the op fuses
/// (`storage/lazy.rs`), otherwise computed now by `eager`.
fn fused_or(
    op: FusedOp,
    (shape, input, out): (&[usize], DType, DType),
    device: &Device,
    inputs: &[lazy::Input<'_>],
    eager: impl FnOnce() -> Result<Storage>,
) -> Result<Fresh> {
    if !device.is_cpu() {
        if let Some(cell) = lazy::try_build(op, shape, input, out, inputs) {
            return Ok(Fresh {
                cell,
                dtype: out,
                device: device.clone(),
            });
        }
    }
    eager().map(Fresh::from)
}

/// Lock the storages of the prepared operands (see [`crate::storage::with_reads`]) and call
/// `f` with them as backend operands.
fn with_args<R, const N: usize>(
    ops: [&Prepared<'_>; N],
    f: impl FnOnce([Arg<'_, Storage>; N]) -> Result<R>,
) -> Result<R> {
    let cells: [Option<&std::sync::Arc<crate::storage::StorageCell>>; N] =
        std::array::from_fn(|k| ops[k].tensor().map(|t| t.storage()));
    crate::storage::with_reads(cells, |storages| {
        let mut args: [Arg<'_, Storage>; N] = [Arg::Scalar(Scalar::Bool(false)); N];
        for k in 0..N {
            args[k] = match (ops[k], storages[k]) {
                (Prepared::Tensor(_, l), Some(s)) => Arg::Buf(s, l),
                (Prepared::Scalar(v), _) => Arg::Scalar(*v),
                (Prepared::Tensor(..), None) => {
                    return Err(Error::invalid(
                        "elementwise",
                        "an operand's storage was not locked",
                    ))
                }
            };
        }
        f(args)
    })
}

/// The device that 0-d CPU tensors among `ts` move to: PyTorch lets a 0-d CPU tensor join
/// an elementwise op on any device, like a number. `None` when nothing needs to move (or
/// the operands are on two devices for real, which the op reports).
fn scalar_host(ts: &[&Tensor]) -> Option<Device> {
    let lone = |t: &Tensor| t.ndim() == 0 && matches!(t.device(), Device::Cpu);
    let target = ts.iter().find(|t| !matches!(t.device(), Device::Cpu))?;
    let moves = ts.iter().any(|t| t.device() != target.device() && lone(t));
    let fits = ts.iter().all(|t| t.device() == target.device() || lone(t));
    (moves && fits).then(|| target.device().clone())
}

/// The operand, or its moved copy.
fn pick<'a>(o: Operand<'a>, m: &'a Option<Tensor>) -> Operand<'a> {
    m.as_ref().map_or(o, Operand::Tensor)
}

/// `t` on `dev` if it is a 0-d CPU tensor that [`scalar_host`] moves (a differentiable copy).
fn moved(t: &Tensor, dev: &Option<Device>) -> Result<Option<Tensor>> {
    match dev {
        Some(d) if t.device() != d => t.to_device(d).map(Some),
        _ => Ok(None),
    }
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
        let (a, b) = (a.into(), b.into());
        Tensor::binary_of(op, (&a).into(), (&b).into())
    }

    /// Apply a comparison of the table by value.
    pub fn compare_op(&self, op: CmpOp, rhs: impl Into<Source>) -> Result<Tensor> {
        self.compare(op, (&rhs.into()).into())
    }

    pub(crate) fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        self.live()?;
        if crate::autocast::runs_in_f32(op) {
            if let Some([x]) = crate::autocast::widened([self])? {
                return x.unary(op);
            }
        }
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
        let out = crate::gpu::kernels::unary_output(op, self.dtype()).unwrap_or(self.dtype());
        let s = fused_or(
            FusedOp::Unary(op),
            (self.shape(), self.dtype(), out),
            self.device(),
            &[lazy::Input::Tensor(
                self.storage(),
                self.layout(),
                self.dtype(),
            )],
            || self.with_storage(|s, l| s.unary(op, l)),
        )?;
        if !s.dtype.is_float() {
            return Ok(Tensor::from_storage(s, self.shape()));
        }
        Tensor::from_op(s, self.shape(), || BackwardOp::Unary(op), &[self])
    }

    /// `a (op) b` for tensors and numbers: the dtype by PyTorch's rules and the op's table
    /// entry, the shape by broadcasting.
    pub(crate) fn binary_of(op: BinaryOp, a: Operand<'_>, b: Operand<'_>) -> Result<Tensor> {
        a.live()?;
        b.live()?;
        if let (Operand::Tensor(x), Operand::Tensor(y)) = (a, b) {
            let dev = scalar_host(&[x, y]);
            if dev.is_some() {
                let (mx, my) = (moved(x, &dev)?, moved(y, &dev)?);
                let x = mx.as_ref().unwrap_or(x);
                let y = my.as_ref().unwrap_or(y);
                return Tensor::binary_of(op, Operand::Tensor(x), Operand::Tensor(y));
            }
        }
        let name = op.name();
        let dtype = Tensor::binary_result_dtype(op, a, b)?;
        if let (BinaryOp::Pow, Operand::Scalar(Scalar::Int(e))) = (op, b) {
            if e < 0 && !dtype.is_float() {
                return Err(Error::invalid(
                    name,
                    format!("integers to negative integer powers are not allowed (exponent {e}, tensor of shape {:?})", a.shape()),
                ));
            }
        }
        if let (Operand::Tensor(x), Operand::Tensor(y)) = (a, b) {
            x.same_device(name, y)?;
        }
        let shape = broadcast_shapes(name, a.shape(), b.shape())?;
        let (pa, pb) = (
            Prepared::new(name, a, dtype, &shape)?,
            Prepared::new(name, b, dtype, &shape)?,
        );
        let s = fused_or(
            FusedOp::Binary(op),
            (&shape, dtype, dtype),
            &device_of(&[&pa, &pb]),
            &[pa.lazy_input(), pb.lazy_input()],
            || {
                with_args([&pa, &pb], |[a, b]| {
                    Storage::binary(op, &shape, dtype, a, b)
                })
            },
        )?;
        if !dtype.is_float() {
            return Ok(Tensor::from_storage(s, &shape));
        }
        Ok(match (&pa, &pb) {
            (Prepared::Tensor(x, _), Prepared::Tensor(y, _)) => {
                Tensor::from_op(s, &shape, || BackwardOp::Binary(op), &[x, y])?
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
            )?,
            (Prepared::Scalar(v), Prepared::Tensor(y, _)) => Tensor::from_op(
                s,
                &shape,
                || BackwardOp::BinaryScalar {
                    op,
                    scalar: *v,
                    side: ScalarSide::Lhs,
                },
                &[y],
            )?,
            (Prepared::Scalar(_), Prepared::Scalar(_)) => Tensor::from_storage(s, &shape),
        })
    }

    /// The dtype `a (op) b` computes in: PyTorch's result type, then the op's rule for it
    /// (integers divide in float, bools raise to a power as integers).
    pub(crate) fn binary_result_dtype(
        op: BinaryOp,
        a: Operand<'_>,
        b: Operand<'_>,
    ) -> Result<DType> {
        let mut dtype = result_type(a, b);
        loop {
            match binary_rule(op, dtype) {
                Rule::Kernel => return Ok(dtype),
                Rule::ViaFloat => dtype = DType::default_for(crate::dtype::Kind::Float),
                Rule::ViaInt => dtype = DType::default_for(crate::dtype::Kind::Int),
                Rule::Refused(why) => {
                    return Err(Error::DTypeMismatch {
                        op: op.name(),
                        lhs: a.dtype(),
                        rhs: b.dtype(),
                        lhs_shape: a.shape().to_vec(),
                        rhs_shape: b.shape().to_vec(),
                        detail: why.into(),
                    });
                }
            }
        }
    }

    /// A comparison of this tensor with a tensor or a number, to bool.
    pub(crate) fn compare(&self, op: CmpOp, rhs: Operand<'_>) -> Result<Tensor> {
        self.live()?;
        rhs.live()?;
        if let Operand::Tensor(y) = rhs {
            let dev = scalar_host(&[self, y]);
            if dev.is_some() {
                let (mx, my) = (moved(self, &dev)?, moved(y, &dev)?);
                let x = mx.as_ref().unwrap_or(self);
                let y = my.as_ref().unwrap_or(y);
                return x.compare(op, Operand::Tensor(y));
            }
        }
        let name = op.name();
        let a = Operand::Tensor(self);
        let dtype = result_type(a, rhs);
        if let Operand::Tensor(y) = rhs {
            self.same_device(name, y)?;
        }
        let shape = broadcast_shapes(name, self.shape(), rhs.shape())?;
        let (pa, pb) = (
            Prepared::new(name, a, dtype, &shape)?,
            Prepared::new(name, rhs, dtype, &shape)?,
        );
        let s = fused_or(
            FusedOp::Cmp(op),
            (&shape, dtype, DType::Bool),
            self.device(),
            &[pa.lazy_input(), pb.lazy_input()],
            || with_args([&pa, &pb], |[a, b]| Storage::cmp(op, &shape, dtype, a, b)),
        )?;
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
        let (a, b) = ((&a).into(), (&b).into());
        Tensor::where_in(cond, a, b, result_type(a, b))
    }

    /// `where` with the result dtype given (masked_fill keeps the tensor's).
    fn where_in(cond: &Tensor, a: Operand<'_>, b: Operand<'_>, dtype: DType) -> Result<Tensor> {
        const OP: &str = "where";
        cond.live()?;
        a.live()?;
        b.live()?;
        let mut all = vec![cond];
        for s in [a, b] {
            if let Operand::Tensor(t) = s {
                all.push(t);
            }
        }
        let dev = scalar_host(&all);
        if dev.is_some() {
            let mc = moved(cond, &dev)?;
            let ma = match a {
                Operand::Tensor(t) => moved(t, &dev)?,
                Operand::Scalar(_) => None,
            };
            let mb = match b {
                Operand::Tensor(t) => moved(t, &dev)?,
                Operand::Scalar(_) => None,
            };
            return Tensor::where_in(
                mc.as_ref().unwrap_or(cond),
                pick(a, &ma),
                pick(b, &mb),
                dtype,
            );
        }
        if cond.dtype() != DType::Bool {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: cond.dtype(),
                shape: cond.shape().to_vec(),
                expected: "Bool for the condition",
            });
        }
        for s in [a, b] {
            if let Operand::Tensor(t) = s {
                cond.same_device(OP, t)?;
            }
        }
        let shape = broadcast_shapes(
            OP,
            cond.shape(),
            &broadcast_shapes(OP, a.shape(), b.shape())?,
        )?;
        let lc = cond.layout().broadcast_to(OP, &shape)?;
        let pc = Prepared::Tensor(std::borrow::Cow::Borrowed(cond), lc);
        let (pa, pb) = (
            Prepared::new(OP, a, dtype, &shape)?,
            Prepared::new(OP, b, dtype, &shape)?,
        );
        let s = fused_or(
            FusedOp::Where,
            (&shape, dtype, dtype),
            cond.device(),
            &[pc.lazy_input(), pa.lazy_input(), pb.lazy_input()],
            || {
                with_args([&pc, &pa, &pb], |[c, a, b]| match c {
                    Arg::Buf(c, lc) => Storage::where_cond(&shape, dtype, (c, lc), a, b),
                    Arg::Scalar(_) => Err(Error::invalid(OP, "the condition must be a tensor")),
                })
            },
        )?;
        if !dtype.is_float() {
            return Ok(Tensor::from_storage(s, &shape));
        }
        let mut inputs = vec![cond];
        inputs.extend(pa.tensor());
        inputs.extend(pb.tensor());
        let (ta, tb) = (pa.tensor().is_some(), pb.tensor().is_some());
        Tensor::from_op(s, &shape, || BackwardOp::Where { a: ta, b: tb }, &inputs)
    }

    /// Limit each element to `[min, max]` (two kernels, one per bound). The gradient flows
    /// where `min <= x <= max`.
    pub fn clamp(&self, min: impl Into<Scalar>, max: impl Into<Scalar>) -> Result<Tensor> {
        self.clamp_min(min)?.clamp_max(max)
    }

    /// Replace the elements where `mask` is true by `value` (mask broadcast to this shape;
    /// the dtype stays this tensor's).
    pub fn masked_fill(&self, mask: &Tensor, value: impl Into<Scalar>) -> Result<Tensor> {
        self.live()?;
        mask.live()?;
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
        let value = value.into().checked_for("masked_fill", self.dtype())?;
        Tensor::where_in(
            mask,
            Operand::Scalar(value),
            Operand::Tensor(self),
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
