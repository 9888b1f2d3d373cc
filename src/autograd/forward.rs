//! Forward-mode differentiation: every op whose input carries a tangent computes its output's
//! tangent beside its value (a dual tensor), with the forward rule of the primitive. For the
//! op tables (`op/`) the forward rule is the declared derivative itself: those rules are
//! linear in the upstream gradient, so applied to a tangent they give `J · t`. The other
//! primitives are linear maps or products, and their rules are below, one exhaustive match
//! beside the backward rules' (`rules.rs`), so no primitive lacks one.
//!
//! Tangents are computed with forward mode off, so a tangent never carries a tangent of its
//! own (nested forward mode is refused where a dual is made), but with grad mode as it is:
//! reverse mode through a forward pass (and forward through a backward pass, as `hessian`
//! does) records as usual.

use super::rules::{BackwardOp, EmbedView};
use crate::error::{Error, Result};
use crate::op::ScalarSide;
use crate::tensor::{Source, Tensor};
use std::cell::Cell;

thread_local! {
    static FORWARD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops compute tangents on this thread (off while a forward rule runs).
pub(crate) fn is_enabled() -> bool {
    FORWARD_ENABLED.with(|f| f.get())
}

struct Paused(bool);

impl Drop for Paused {
    fn drop(&mut self) {
        FORWARD_ENABLED.with(|f| f.set(self.0));
    }
}

fn pause() -> Paused {
    Paused(FORWARD_ENABLED.with(|f| f.replace(false)))
}

/// The tangent of `out`, the result of `op` on `inputs` (some of which carry tangents).
pub(crate) fn tangent(op: &BackwardOp, inputs: &[&Tensor], out: &Tensor) -> Result<Tensor> {
    let _paused = pause();
    let t = rule(op, inputs, out)?;
    if t.shape() != out.shape() {
        return Err(Error::autograd(
            "forward",
            format!(
                "the forward rule of {} gave a tangent of shape {:?} for a result of shape {:?}",
                op.name(),
                t.shape(),
                out.shape()
            ),
        ));
    }
    Ok(t)
}

/// Input `i`'s tangent, or zeros of its shape.
fn tangent_or_zeros(x: &Tensor) -> Result<Tensor> {
    match &x.0.tangent {
        Some(t) => Ok(t.clone()),
        None => Tensor::zeros_like(x),
    }
}

/// The sum of the terms present, or zeros like `out` when none is.
fn total(terms: impl IntoIterator<Item = Result<Option<Tensor>>>, out: &Tensor) -> Result<Tensor> {
    let mut sum: Option<Tensor> = None;
    for term in terms {
        if let Some(t) = term? {
            let t = t.expand(out.shape())?;
            sum = Some(match sum {
                Some(s) => s.add(&t)?,
                None => t,
            });
        }
    }
    match sum {
        Some(s) => Ok(s),
        None => Tensor::zeros_like(out),
    }
}

fn rule(op: &BackwardOp, inputs: &[&Tensor], out: &Tensor) -> Result<Tensor> {
    use BackwardOp::*;
    let x = inputs[0];
    let tx = || tangent_or_zeros(x);
    match op {
        Unary(u) => match u.def().grad {
            Some(rule) => rule(&tx()?, x, out),
            None => Tensor::zeros_like(out),
        },
        Binary(b) => {
            let def = b.def();
            let (a, bb) = (x, inputs[1]);
            total(
                [
                    a.0.tangent
                        .as_ref()
                        .map(|t| (def.grad_lhs)(t, a, &Source::Tensor(bb.clone()), out))
                        .transpose(),
                    bb.0.tangent
                        .as_ref()
                        .map(|t| (def.grad_rhs)(t, &Source::Tensor(a.clone()), bb, out))
                        .transpose(),
                ],
                out,
            )
        }
        BinaryScalar { op, scalar, side } => {
            let def = op.def();
            let s = Source::Scalar(*scalar);
            let t = tx()?;
            let d = match side {
                ScalarSide::Rhs => (def.grad_lhs)(&t, x, &s, out)?,
                ScalarSide::Lhs => (def.grad_rhs)(&t, &s, x, out)?,
            };
            d.expand(out.shape())
        }
        Where { a, b } => {
            let c = x;
            let mut next = 1;
            let mut side = |present: bool| -> Result<Source> {
                if !present {
                    return Ok(Source::Scalar(0.0.into()));
                }
                let t = inputs[next];
                next += 1;
                Ok(match &t.0.tangent {
                    Some(tt) => Source::Tensor(tt.clone()),
                    None => Source::Scalar(0.0.into()),
                })
            };
            let (ta, tb) = (side(*a)?, side(*b)?);
            Tensor::where_cond(c, ta, tb)?
                .to_dtype(out.dtype())?
                .expand(out.shape())
        }
        Cast => tx()?.to_dtype(out.dtype()),
        Sum { dims, keepdim } => tx()?.sum_dims_internal(dims, *keepdim),
        Prod { dims, keepdim } => tx()?
            .mul(&super::rules::prod_derivative(x, dims, *keepdim)?)?
            .sum_dims_internal(dims, *keepdim),
        Extremum {
            dims,
            keepdim,
            out: best,
        } => {
            // The tangent of the chosen element; ties share it evenly, as the gradient does.
            let (mask, count) = super::rules::extremum_ties(x, best, dims, *keepdim)?;
            tx()?
                .mul(&mask)?
                .sum_dims_internal(dims, *keepdim)?
                .div(&count)
        }
        Cumsum { dim } => tx()?.cumsum(*dim as isize),
        Matmul => {
            let b = inputs[1];
            total(
                [
                    x.0.tangent.as_ref().map(|t| t.matmul(b)).transpose(),
                    b.0.tangent.as_ref().map(|t| x.matmul(t)).transpose(),
                ],
                out,
            )
        }
        Reshape => tx()?.reshape(out.shape()),
        Permute { dims } => {
            let d: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
            tx()?.permute(&d)
        }
        Slice {
            dim,
            start,
            stop,
            step,
        } => tx()?.slice(
            *dim as isize,
            Some(*start as isize),
            Some(*stop as isize),
            *step as isize,
        ),
        Select { dim, index } => tx()?.select(*dim as isize, *index as isize),
        Expand => tx()?.expand(out.shape()),
        Copy => tx()?.to_device(out.device()),
        Cat { dim } => {
            let ts: Vec<Tensor> = inputs
                .iter()
                .map(|t| tangent_or_zeros(t))
                .collect::<Result<_>>()?;
            Tensor::cat(&ts.iter().collect::<Vec<_>>(), *dim as isize)
        }
        IndexSelect { dim, index } => tx()?.index_select(*dim as isize, index),
        Gather { dim, index } => tx()?.gather(*dim as isize, index),
        ScatterAdd { dim, index } => {
            tx()?.scatter_add(*dim as isize, index, &tangent_or_zeros(inputs[1])?)
        }
        Embed { view } => tx()?.embed(out.shape(), embed_view(view)),
        Windows { dim, size, step } => tx()?.unfold(*dim as isize, *size, *step),
        // The fused ops take no tangents: a dual tensor's op is composed from primitives.
        RecurrentLayer { .. }
        | Conv2d { .. }
        | BatchNorm { .. }
        | LayerNorm { .. }
        | AvgPool2d { .. }
        | Softmax { .. }
        | CrossEntropy(_) => Err(crate::error::Error::autograd(
            "fused op",
            format!("{} was recorded with a tangent", op.name()),
        )),
        FoldWindows {
            dim,
            size,
            step,
            order,
        } => {
            // The output holds the fold's dims in `order`.
            let shape: Vec<usize> = crate::shape::inverse_permutation(order)
                .into_iter()
                .map(|i| out.shape()[i])
                .collect();
            let o = order.clone();
            tx()?.fold_windows(&shape, *dim, *size, *step)?.permute(&o)
        }
    }
}

fn embed_view(v: &EmbedView) -> EmbedView {
    v.clone()
}
