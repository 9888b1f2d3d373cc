//! Automatic mixed precision, as PyTorch's `torch.autocast`: inside a scope opened by
//! [`autocast`], the ops that gain from a 16-bit type (matmul and what is built on it:
//! linear, attention, einsum; convolutions) cast their float operands to it, and the ops
//! that lose accuracy in it (softmax, log_softmax, losses, norms, sums, exp/log and their
//! kin) cast 16-bit operands up to f32. Every other op runs in its inputs' dtype. The casts
//! are ordinary differentiable ops, so F32 parameters (the master weights) get F32
//! gradients. Backward passes run without autocast, in the dtypes the forward pass chose.
//!
//! ```
//! use wgrad::{autocast, DType, Tensor};
//! let w = Tensor::randn([4, 3])?.requires_grad_(true)?;
//! let x = Tensor::randn([2, 4])?;
//! let loss = {
//!     let _amp = autocast(DType::BF16)?;
//!     let y = x.matmul(&w)?; // in bf16
//!     assert_eq!(y.dtype(), DType::BF16);
//!     y.log_softmax(1)?.sum()? // in f32
//! };
//! assert_eq!(loss.dtype(), DType::F32);
//! loss.backward()?;
//! assert_eq!(w.grad().unwrap().dtype(), DType::F32);
//! # Ok::<(), wgrad::Error>(())
//! ```

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::UnaryOp;
use crate::tensor::Tensor;
use std::cell::Cell;

thread_local! {
    /// The autocast dtype of this thread's innermost open scope.
    static AUTOCAST: Cell<Option<DType>> = const { Cell::new(None) };
}

/// An open autocast scope: dropping it restores the setting that was in force before.
#[must_use = "autocast lasts as long as the guard: bind it with `let _amp = ...`"]
#[derive(Debug)]
pub struct AutocastGuard {
    previous: Option<DType>,
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        AUTOCAST.with(|a| a.set(self.previous));
    }
}

/// Run the ops of this thread in mixed precision with `dtype` (`F16` or `BF16`) until the
/// guard is dropped (`with torch.autocast(device, dtype)`). Scopes nest.
pub fn autocast(dtype: DType) -> Result<AutocastGuard> {
    if !dtype.is_half() {
        return Err(Error::invalid(
            "autocast",
            format!("mixed precision runs in F16 or BF16, not {dtype:?}"),
        ));
    }
    Ok(AutocastGuard {
        previous: AUTOCAST.with(|a| a.replace(Some(dtype))),
    })
}

/// The dtype of the innermost open autocast scope of this thread, if any.
pub fn autocast_dtype() -> Option<DType> {
    AUTOCAST.with(Cell::get)
}

/// No autocast until the guard is dropped (backward passes run under one).
pub(crate) fn suspended() -> AutocastGuard {
    AutocastGuard {
        previous: AUTOCAST.with(|a| a.replace(None)),
    }
}

/// The operands of an op that runs in the autocast dtype, converted to it, when a scope is
/// open and some float operand is not in it yet; `None` otherwise (run the op as it is).
pub(crate) fn lowered<const N: usize>(operands: [&Tensor; N]) -> Result<Option<[Tensor; N]>> {
    let Some(d) = autocast_dtype() else {
        return Ok(None);
    };
    // F64 is left alone, as PyTorch's autocast leaves float64.
    let eligible = |t: &Tensor| t.dtype().is_float() && t.dtype() != DType::F64;
    if !operands.iter().any(|t| eligible(t) && t.dtype() != d) {
        return Ok(None);
    }
    convert_each(operands, eligible, d).map(Some)
}

/// [`lowered`] for a weighted op with an optional bias (linear, convolutions).
pub(crate) fn lowered_with_bias(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Option<(Tensor, Tensor, Option<Tensor>)>> {
    Ok(match b {
        Some(b) => lowered([x, w, b])?.map(|[x, w, b]| (x, w, Some(b))),
        None => lowered([x, w])?.map(|[x, w]| (x, w, None)),
    })
}

/// The operands of an op that runs in f32 under autocast, with the 16-bit ones converted to
/// f32, when a scope is open and some operand is 16-bit; `None` otherwise.
pub(crate) fn widened<const N: usize>(operands: [&Tensor; N]) -> Result<Option<[Tensor; N]>> {
    if autocast_dtype().is_none() || !operands.iter().any(|t| t.dtype().is_half()) {
        return Ok(None);
    }
    convert_each(operands, |t| t.dtype().is_half(), DType::F32).map(Some)
}

/// Each operand that `convert` picks, converted to `dtype`; the others as they are.
fn convert_each<const N: usize>(
    operands: [&Tensor; N],
    convert: impl Fn(&Tensor) -> bool,
    dtype: DType,
) -> Result<[Tensor; N]> {
    let mut failure = None;
    let out = std::array::from_fn(|k| {
        let t = operands[k];
        if !convert(t) {
            return t.clone();
        }
        t.to_dtype(dtype).unwrap_or_else(|e| {
            failure = Some(e);
            t.clone()
        })
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Whether a unary op is on PyTorch's autocast list of ops that run in f32.
pub(crate) fn runs_in_f32(op: UnaryOp) -> bool {
    matches!(
        op,
        UnaryOp::Exp
            | UnaryOp::Expm1
            | UnaryOp::Log
            | UnaryOp::Log1p
            | UnaryOp::Asin
            | UnaryOp::Acos
            | UnaryOp::Sinh
            | UnaryOp::Cosh
            | UnaryOp::Reciprocal
    )
}
