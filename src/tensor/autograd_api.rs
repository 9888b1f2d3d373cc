//! The autograd surface of a tensor: requires_grad, grad, backward, detach.

use super::Tensor;
use crate::autograd::{self, BackwardOp};
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

impl Tensor {
    /// Whether gradients flow to (or through) this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Mark a leaf as needing gradients (float tensors only), returning the same tensor:
    /// `let x = Tensor::arange(0.0, 4.0, 1.0)?.requires_grad_(true)?;`.
    pub fn requires_grad_(self, requires_grad: bool) -> Result<Tensor> {
        self.live()?;
        if !self.is_leaf() {
            return Err(Error::autograd(
                "requires_grad_",
                "you can only change requires_grad flags of leaf variables; use detach() first",
            ));
        }
        if requires_grad && !self.dtype().is_float() {
            return Err(Error::autograd(
                "requires_grad_",
                format!("only floating point tensors can require gradients, this one is {:?} (shape {:?})", self.dtype(), self.shape()),
            ));
        }
        self.0.requires_grad.store(requires_grad, Ordering::Relaxed);
        Ok(self)
    }

    /// Whether this tensor was created by the user rather than by a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.0.grad_fn.is_none()
    }

    /// The name of the op that created this tensor, if recorded (`MulBackward0`).
    pub fn grad_fn_name(&self) -> Option<String> {
        self.0.grad_fn.as_ref().map(|n| n.name())
    }

    /// The accumulated gradient of a leaf, if any backward pass has reached it.
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forget the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Replace the accumulated gradient.
    pub fn set_grad(&self, grad: Option<Tensor>) -> Result<()> {
        if let Some(g) = &grad {
            g.live()?;
            if g.shape() != self.shape() {
                return Err(Error::shapes(
                    "set_grad",
                    self.shape(),
                    g.shape(),
                    "the gradient must have the tensor's shape",
                ));
            }
            // As PyTorch: a gradient of another dtype or device would reach the optimizer.
            if g.dtype() != self.dtype() {
                return Err(Error::DTypeMismatch {
                    op: "set_grad",
                    lhs: self.dtype(),
                    rhs: g.dtype(),
                    lhs_shape: self.shape().to_vec(),
                    rhs_shape: g.shape().to_vec(),
                    detail: "the gradient must have the tensor's dtype".into(),
                });
            }
            self.same_device("set_grad", g)?;
        }
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = grad;
        Ok(())
    }

    /// A tensor sharing this one's data but cut from the graph.
    pub fn detach(&self) -> Tensor {
        // No tangent either: a detached value is a constant in both modes, as in PyTorch.
        Tensor::view_of(
            self.0.storage.clone(),
            self.0.layout.clone(),
            self.0.dtype,
            self.0.device.clone(),
            None,
            None,
        )
    }

    /// Gradients of this scalar with respect to every leaf that requires grad, accumulated
    /// into their `grad()`.
    ///
    /// ```
    /// use wgrad::Tensor;
    /// let x = Tensor::arange(0.0, 4.0, 1.0)?.requires_grad_(true)?;
    /// let y = x.dot(&x)?.mul_scalar(2.0)?;
    /// y.backward()?;
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![0.0, 4.0, 8.0, 12.0]);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn backward(&self) -> Result<()> {
        self.backward_with_options(None, false, false)
    }

    /// Backward from a non-scalar output with the upstream gradient `gradient` (the seed's
    /// `y.backward(torch.ones(len(x)))`).
    pub fn backward_with(&self, gradient: &Tensor) -> Result<()> {
        self.backward_with_options(Some(gradient), false, false)
    }

    /// Backward with PyTorch's options: an upstream `gradient` (`None`: ones, for a scalar),
    /// `retain_graph` to allow another backward pass through the same graph (by default a
    /// second pass is an error, as in PyTorch), and `create_graph` to record the backward
    /// pass so that the gradients can be differentiated again (it implies `retain_graph`).
    pub fn backward_with_options(
        &self,
        gradient: Option<&Tensor>,
        retain_graph: bool,
        create_graph: bool,
    ) -> Result<()> {
        self.live()?;
        let g = match gradient {
            Some(g) => {
                if g.shape() != self.shape() {
                    return Err(Error::shapes(
                        "backward",
                        self.shape(),
                        g.shape(),
                        "the gradient must have the output's shape",
                    ));
                }
                self.same_device("backward", g)?;
                g.to_dtype(self.dtype())?
            }
            None if self.numel() == 1 => Tensor::ones_like(self)?,
            None => {
                return Err(Error::autograd(
                    "backward",
                    format!("grad can be implicitly created only for scalar outputs, this one has shape {:?}; pass a gradient", self.shape()),
                ))
            }
        };
        autograd::run_backward(self, g, create_graph, retain_graph || create_graph)
    }

    /// Backward that records its own graph, so the gradients can be differentiated again.
    pub fn backward_create_graph(&self, gradient: Option<&Tensor>) -> Result<()> {
        self.backward_with_options(gradient, true, true)
    }

    /// A new handle on this result's storage that records `backward` against `inputs` (and
    /// carries the tangent of its forward rule).
    pub(crate) fn attach(
        self,
        backward: impl FnOnce() -> BackwardOp,
        inputs: &[&Tensor],
    ) -> Result<Tensor> {
        if Tensor::recorded(self.dtype(), inputs) == (false, false) {
            return Ok(self);
        }
        Tensor::made_by(
            self.0.storage.clone(),
            self.0.layout.clone(),
            self.0.dtype,
            self.0.device.clone(),
            backward,
            inputs,
        )
    }
}

/// Gradients of `output` with respect to `inputs`, returned rather than accumulated
/// (`torch.autograd.grad`): the inputs may be leaves or intermediate results, and no tensor's
/// `.grad()` is read or written. With `create_graph` the gradients carry a graph and can be
/// differentiated again. An input that `output` does not depend on is an error (PyTorch's
/// default, `allow_unused=False`); `output` must be a scalar.
///
/// ```
/// use wgrad::{grad, Tensor};
/// let x = Tensor::new([1.0f32, 2.0, 3.0])?.requires_grad_(true)?;
/// let y = x.mul(&x)?.mul(&x)?.sum()?;
/// let dx = grad(&y, &[&x], true)?.remove(0);           // 3x^2
/// let ddx = grad(&dx.sum()?, &[&x], false)?.remove(0); // 6x
/// assert_eq!(ddx.to_vec::<f32>()?, vec![6.0, 12.0, 18.0]);
/// assert!(x.grad().is_none());
///
/// // An intermediate result: for h = x * w, dy/dh.
/// let w = Tensor::new([2.0f32, 2.0, 2.0])?.requires_grad_(true)?;
/// let h = x.mul(&w)?;
/// let y = h.square()?.sum()?;
/// let dh = grad(&y, &[&h], false)?.remove(0);          // 2h
/// assert_eq!(dh.to_vec::<f32>()?, vec![4.0, 8.0, 12.0]);
/// assert!(w.grad().is_none());
/// # Ok::<(), wgrad::Error>(())
/// ```
pub fn grad(output: &Tensor, inputs: &[&Tensor], create_graph: bool) -> Result<Vec<Tensor>> {
    if output.numel() != 1 {
        return Err(Error::autograd(
            "grad",
            format!(
                "grad can be implicitly created only for scalar outputs, this one has shape {:?}",
                output.shape()
            ),
        ));
    }
    for (i, t) in inputs.iter().enumerate() {
        if !t.requires_grad() {
            return Err(Error::autograd(
                "grad",
                format!("input {i} (shape {:?}) does not require grad", t.shape()),
            ));
        }
    }
    autograd::gradients(output, Tensor::ones_like(output)?, inputs, create_graph)
}
