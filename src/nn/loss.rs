//! Loss functions, numerically stable (log-sum-exp; no `log(0)` for large logits).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// How per-element losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The mean over all elements (PyTorch's default).
    #[default]
    Mean,
    /// The sum over all elements.
    Sum,
    /// The per-element losses.
    None,
}

fn reduce(loss: Tensor, r: Reduction) -> Result<Tensor> {
    match r {
        Reduction::Mean => loss.mean(),
        Reduction::Sum => loss.sum(),
        Reduction::None => Ok(loss),
    }
}

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::shapes(
            op,
            a.shape(),
            b.shape(),
            "input and target must have the same shape",
        ));
    }
    Ok(())
}

/// Squared error `(input - target)^2` (`torch.nn.functional.mse_loss`).
pub fn mse_loss(input: &Tensor, target: &Tensor, r: Reduction) -> Result<Tensor> {
    same_shape("mse_loss", input, target)?;
    reduce(input.sub(target)?.square()?, r)
}

/// Absolute error.
pub fn l1_loss(input: &Tensor, target: &Tensor, r: Reduction) -> Result<Tensor> {
    same_shape("l1_loss", input, target)?;
    reduce(input.sub(target)?.abs()?, r)
}

/// Huber's robust loss: `0.5 d^2` where `|d| < delta`, else `delta (|d| - 0.5 delta)`.
pub fn huber_loss(input: &Tensor, target: &Tensor, delta: f64, r: Reduction) -> Result<Tensor> {
    same_shape("huber_loss", input, target)?;
    if !(delta > 0.0 && delta.is_finite()) {
        return Err(Error::invalid(
            "huber_loss",
            format!("delta must be positive, got {delta}"),
        ));
    }
    let d = input.sub(target)?;
    let a = d.abs()?;
    let quadratic = d.square()?.mul_scalar(0.5)?;
    let linear = a.sub_scalar(0.5 * delta)?.mul_scalar(delta)?;
    reduce(
        Tensor::where_cond(&a.lt_scalar(delta)?, &quadratic, &linear)?,
        r,
    )
}

fn check_labels(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    if target.dtype() != DType::I64 {
        return Err(Error::UnsupportedDType {
            op,
            dtype: target.dtype(),
            shape: target.shape().to_vec(),
            expected: "I64 class labels",
        });
    }
    if input.ndim() != 2 || target.ndim() != 1 || input.shape()[0] != target.shape()[0] {
        return Err(Error::shapes(
            op,
            input.shape(),
            target.shape(),
            "expected input [N, C] and target [N]",
        ));
    }
    Ok(())
}

/// Negative log-likelihood of integer labels given log-probabilities `[N, C]`.
pub fn nll_loss(log_probs: &Tensor, target: &Tensor, r: Reduction) -> Result<Tensor> {
    check_labels("nll_loss", log_probs, target)?;
    let picked = log_probs.gather(1, &target.unsqueeze(1)?)?.squeeze_dim(1)?;
    reduce(picked.neg()?, r)
}

/// Cross-entropy of logits `[N, C]` and integer labels `[N]`, with optional label
/// smoothing (`torch.nn.functional.cross_entropy`).
pub fn cross_entropy(
    logits: &Tensor,
    target: &Tensor,
    label_smoothing: f64,
    r: Reduction,
) -> Result<Tensor> {
    check_labels("cross_entropy", logits, target)?;
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::invalid(
            "cross_entropy",
            format!("label_smoothing must be in [0, 1], got {label_smoothing}"),
        ));
    }
    let logp = logits.log_softmax(1)?;
    let nll = nll_loss(&logp, target, Reduction::None)?;
    let loss = if label_smoothing > 0.0 {
        let uniform = logp.mean_dims([1], false)?.neg()?;
        nll.mul_scalar(1.0 - label_smoothing)?
            .add(&uniform.mul_scalar(label_smoothing)?)?
    } else {
        nll
    };
    reduce(loss, r)
}

/// Binary cross-entropy of logits and 0/1 targets, computed stably:
/// `max(x, 0) - x y + log(1 + e^-|x|)`.
pub fn binary_cross_entropy_with_logits(
    logits: &Tensor,
    target: &Tensor,
    r: Reduction,
) -> Result<Tensor> {
    same_shape("binary_cross_entropy_with_logits", logits, target)?;
    let t = target.to_dtype(logits.dtype())?;
    let loss = logits
        .relu()?
        .sub(&logits.mul(&t)?)?
        .add(&logits.abs()?.neg()?.exp()?.add_scalar(1.0)?.log()?)?;
    reduce(loss, r)
}
