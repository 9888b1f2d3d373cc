//! Forward-mode differentiation and function transforms, with the names and meaning of
//! PyTorch's `torch.autograd.forward_ad` and `torch.func`.
//!
//! A dual tensor carries a tangent beside its value; every op on it computes the tangent of
//! its result in the same pass, with the primitive's forward rule (`autograd/forward.rs`),
//! and keeps no graph. [`jvp`] is forward mode over a function; [`vjp`] and [`grad`] are
//! reverse mode; [`jacfwd`] and [`jacrev`] build whole Jacobians one column or one row at a
//! time; [`hessian`] is forward over reverse. The transforms take and return functions of
//! `&[Tensor]` and differentiate with respect to the first argument (`torch.func`'s default
//! `argnums=0`), so they compose: `jacfwd(jacrev(f))` is the Hessian.
//!
//! ```
//! use wgrad::{func, Tensor};
//! // f(x) = sum(x^3): the gradient is 3x^2, the Hessian diag(6x).
//! let f = |xs: &[Tensor]| xs[0].pow_scalar(3.0)?.sum();
//! let x = Tensor::new([1.0f32, 2.0])?;
//! let (y, dy) = func::jvp(f, &[x.clone()], &[Tensor::new([1.0f32, 0.0])?])?;
//! assert_eq!((y.item::<f64>()?, dy.item::<f64>()?), (9.0, 3.0));
//! let h = func::hessian(f)(&[x])?;
//! assert_eq!(h.to_vec2::<f32>()?, vec![vec![6.0, 0.0], vec![0.0, 12.0]]);
//! # Ok::<(), wgrad::Error>(())
//! ```
//!
//! Forward mode does not nest in itself (a tangent of a tangent): `jacfwd(jacfwd(f))` is an
//! `Err`; use `jacfwd(jacrev(f))` or `jacrev(jacrev(f))`.

use crate::autograd::{self, BackwardOp};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::atomic::Ordering;

/// A dual tensor: `primal`'s value with `tangent` as its forward-mode derivative
/// (`forward_ad.make_dual`). Gradients of the dual flow back to `primal`.
pub fn make_dual(primal: &Tensor, tangent: &Tensor) -> Result<Tensor> {
    const OP: &str = "make_dual";
    // PyTorch refuses an integer or bool tangent too (it converts one float type to another).
    for (t, expected) in [(primal, "a float primal"), (tangent, "a float tangent")] {
        if !t.dtype().is_float() {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
                expected,
            });
        }
    }
    if tangent.shape() != primal.shape() {
        return Err(Error::shapes(
            OP,
            primal.shape(),
            tangent.shape(),
            "the tangent must have the primal's shape",
        ));
    }
    primal.same_device(OP, tangent)?;
    if primal.0.tangent.is_some() {
        return Err(Error::autograd(
            OP,
            format!(
                "the primal (shape {:?}) is already a dual tensor: forward mode does not nest (use jacfwd over jacrev instead of jacfwd over jacfwd)",
                primal.shape()
            ),
        ));
    }
    let tangent = tangent.to_dtype(primal.dtype())?;
    let node = (autograd::is_grad_enabled() && primal.requires_grad())
        .then(|| autograd::node(BackwardOp::Reshape, &[primal], primal.storage()));
    Ok(Tensor::view_of(
        primal.storage().clone(),
        primal.layout().clone(),
        primal.dtype(),
        primal.device().clone(),
        node,
        Some(tangent),
    ))
}

/// The value and the tangent of a dual tensor (`forward_ad.unpack_dual`); the tangent is
/// `None` for a tensor that carries none.
pub fn unpack_dual(t: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
    let node = (autograd::is_grad_enabled() && t.requires_grad())
        .then(|| autograd::node(BackwardOp::Reshape, &[t], t.storage()));
    let primal = Tensor::view_of(
        t.storage().clone(),
        t.layout().clone(),
        t.dtype(),
        t.device().clone(),
        node,
        None,
    );
    Ok((primal, t.tangent()))
}

impl Tensor {
    /// The forward-mode derivative this tensor carries, if it is a dual tensor (see
    /// [`make_dual`]).
    pub fn tangent(&self) -> Option<Tensor> {
        self.0.tangent.clone()
    }
}

/// `x` as something reverse mode can differentiate with respect to: itself when it already
/// requires grad, else a new leaf over its data that does (its tangent kept, so that
/// forward over reverse works), leaving the caller's tensor untouched.
fn differentiable(x: &Tensor) -> Result<Tensor> {
    if x.requires_grad() {
        return Ok(x.clone());
    }
    if !x.dtype().is_float() {
        return Err(Error::UnsupportedDType {
            op: "func",
            dtype: x.dtype(),
            shape: x.shape().to_vec(),
            expected: "a float argument to differentiate with respect to",
        });
    }
    let leaf = Tensor::view_of(
        x.storage().clone(),
        x.layout().clone(),
        x.dtype(),
        x.device().clone(),
        None,
        x.tangent(),
    );
    leaf.0.requires_grad.store(true, Ordering::Relaxed);
    Ok(leaf)
}

/// `f(primals)` and its derivative along `tangents` (one per primal), in one forward pass
/// that keeps no graph (`torch.func.jvp`).
pub fn jvp<F>(f: F, primals: &[Tensor], tangents: &[Tensor]) -> Result<(Tensor, Tensor)>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    if primals.len() != tangents.len() {
        return Err(Error::invalid(
            "jvp",
            format!(
                "{} primals but {} tangents: give one tangent per primal",
                primals.len(),
                tangents.len()
            ),
        ));
    }
    let duals = primals
        .iter()
        .zip(tangents)
        .map(|(p, t)| make_dual(p, t))
        .collect::<Result<Vec<_>>>()?;
    let y = f(&duals)?;
    let (value, tangent) = unpack_dual(&y)?;
    let tangent = match tangent {
        Some(t) => t,
        None => Tensor::zeros_like(&value)?,
    };
    Ok((value, tangent))
}

/// The function's value, and a function that maps a cotangent of the output (its shape) to
/// the vector-Jacobian products of every primal (`torch.func.vjp`). When a primal requires
/// grad the products carry a graph, so they can be differentiated again.
#[allow(clippy::type_complexity)] // (value, pullback), as torch.func.vjp returns
pub fn vjp<F>(f: F, primals: &[Tensor]) -> Result<(Tensor, impl Fn(&Tensor) -> Result<Vec<Tensor>>)>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let xs = primals
        .iter()
        .map(differentiable)
        .collect::<Result<Vec<_>>>()?;
    // A graph of the products is needed only when an outer reverse pass will differentiate
    // them (forward mode needs none: tangents pass through backward rules without one).
    let create_graph = primals.iter().any(|p| p.requires_grad());
    let y = f(&xs)?;
    let out = y.clone();
    let pullback = move |v: &Tensor| -> Result<Vec<Tensor>> {
        if v.shape() != y.shape() {
            return Err(Error::shapes(
                "vjp",
                y.shape(),
                v.shape(),
                "the cotangent must have the output's shape",
            ));
        }
        let refs: Vec<&Tensor> = xs.iter().collect();
        autograd::gradients_of(&y, v.to_dtype(y.dtype())?, &refs, create_graph, true, true)
    };
    Ok((out, pullback))
}

/// The gradient of a scalar function with respect to its first argument
/// (`torch.func.grad`), as a function.
pub fn grad<F>(f: F) -> impl Fn(&[Tensor]) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    move |xs: &[Tensor]| {
        let (args, x) = with_first_differentiable(xs)?;
        let y = f(&args)?;
        if y.numel() != 1 {
            return Err(Error::autograd(
                "grad",
                format!(
                    "the function must return one element, not shape {:?}",
                    y.shape()
                ),
            ));
        }
        let ones = Tensor::ones_like(&y)?;
        let create_graph = xs[0].requires_grad();
        Ok(autograd::gradients_of(&y, ones, &[&x], create_graph, true, true)?.remove(0))
    }
}

fn with_first_differentiable(xs: &[Tensor]) -> Result<(Vec<Tensor>, Tensor)> {
    let first = xs
        .first()
        .ok_or_else(|| Error::invalid("func", "the function needs at least one argument"))?;
    let x = differentiable(first)?;
    let mut args = xs.to_vec();
    args[0] = x.clone();
    Ok((args, x))
}

/// The Jacobian with respect to the first argument by reverse mode, one output element per
/// backward pass (`torch.func.jacrev`): shape `output.shape ++ input.shape`.
pub fn jacrev<F>(f: F) -> impl Fn(&[Tensor]) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    move |xs: &[Tensor]| {
        let (args, x) = with_first_differentiable(xs)?;
        let create_graph = xs[0].requires_grad();
        let y = f(&args)?;
        let flat = y.reshape([-1isize])?;
        let mut rows = Vec::with_capacity(flat.numel());
        for i in 0..flat.numel() {
            let yi = flat.select(0, i as isize)?;
            let ones = Tensor::ones_like(&yi)?;
            rows.push(
                autograd::gradients_of(&yi, ones, &[&x], create_graph, true, true)?.remove(0),
            );
        }
        let mut shape: Vec<usize> = y.shape().to_vec();
        shape.extend_from_slice(x.shape());
        if rows.is_empty() {
            return Tensor::zeros_on(shape, (x.dtype(), x.device()));
        }
        Tensor::stack(&rows.iter().collect::<Vec<_>>(), 0)?.reshape(shape)
    }
}

/// The Jacobian with respect to the first argument by forward mode, one input element per
/// forward pass (`torch.func.jacfwd`): shape `output.shape ++ input.shape`.
pub fn jacfwd<F>(f: F) -> impl Fn(&[Tensor]) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    move |xs: &[Tensor]| {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("jacfwd", "the function needs at least one argument"))?;
        let n = first.numel();
        let mut columns = Vec::with_capacity(n);
        let mut out_shape = Vec::new();
        for j in 0..n {
            let basis = Tensor::zeros_on([n], (first.dtype(), first.device()))?;
            basis.i(crate::s![j])?.fill_(1.0)?;
            let e = basis.reshape(first.shape())?;
            let (y, t) = jvp(
                |d: &[Tensor]| {
                    let mut args = xs.to_vec();
                    args[0] = d[0].clone();
                    f(&args)
                },
                std::slice::from_ref(first),
                &[e],
            )?;
            out_shape = y.shape().to_vec();
            columns.push(t);
        }
        let mut shape = out_shape.clone();
        shape.extend_from_slice(first.shape());
        if columns.is_empty() {
            let y = f(xs)?;
            let mut shape = y.shape().to_vec();
            shape.extend_from_slice(first.shape());
            return Tensor::zeros_on(shape, (y.dtype(), y.device()));
        }
        Tensor::stack(&columns.iter().collect::<Vec<_>>(), -1)?.reshape(shape)
    }
}

/// The Hessian of a scalar function with respect to its first argument, forward over
/// reverse (`torch.func.hessian`): shape `input.shape ++ input.shape`.
pub fn hessian<F>(f: F) -> impl Fn(&[Tensor]) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    jacfwd(jacrev(f))
}

/// A scalar function's value and its Hessian times `v` at `primals`, forward over reverse,
/// without forming the Hessian (`torch.autograd.functional.hvp`).
pub fn hvp<F>(f: F, primals: &[Tensor], v: &Tensor) -> Result<(Tensor, Tensor)>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let first = primals
        .first()
        .ok_or_else(|| Error::invalid("hvp", "the function needs at least one argument"))?;
    let value = f(primals)?;
    let df = grad(&f);
    let (_, hv) = jvp(
        |d: &[Tensor]| {
            let mut args = primals.to_vec();
            args[0] = d[0].clone();
            df(&args)
        },
        std::slice::from_ref(first),
        std::slice::from_ref(v),
    )?;
    Ok((value, hv))
}
