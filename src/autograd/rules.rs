//! The backward rule of every primitive op, in one exhaustive `match`. Each rule maps the
//! gradient of the output to gradients of the inputs using tensor ops only.

use crate::dtype::DType;
use crate::error::Result;
use crate::op::{BinaryOp, UnaryOp};
use crate::tensor::Tensor;

/// Which rule a recorded node runs, with the non-tensor arguments of its forward op.
#[derive(Debug, Clone)]
pub enum BackwardOp {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// Inputs: condition, a, b.
    Where,
    /// Input: the tensor before the cast.
    Cast,
    Sum {
        dims: Vec<usize>,
        keepdim: bool,
    },
    Prod {
        dims: Vec<usize>,
        keepdim: bool,
    },
    /// Max or min over dims; `out` is the (detached) result, used to find the ties.
    Extremum {
        dims: Vec<usize>,
        keepdim: bool,
        out: Tensor,
    },
    Cumsum {
        dim: usize,
    },
    Matmul,
    Reshape,
    Permute {
        dims: Vec<usize>,
    },
    Slice {
        dim: usize,
        start: usize,
        stop: usize,
        step: usize,
    },
    Select {
        dim: usize,
        index: usize,
    },
    Expand,
    Copy,
    Cat {
        dim: usize,
    },
    IndexSelect {
        dim: usize,
        index: Tensor,
    },
    Gather {
        dim: usize,
        index: Tensor,
    },
    /// Inputs: base, src.
    ScatterAdd {
        dim: usize,
        index: Tensor,
    },
    /// The adjoint of a slice or select: the input placed into zeros of `shape`.
    Embed {
        view: EmbedView,
    },
}

/// Where an embedded tensor goes in the zeros it is placed into.
#[derive(Debug, Clone)]
pub enum EmbedView {
    Slice {
        dim: usize,
        start: usize,
        stop: usize,
        step: usize,
    },
    Select {
        dim: usize,
        index: usize,
    },
}

impl BackwardOp {
    /// PyTorch-style node name, shown when a tensor with history is printed.
    pub fn name(&self) -> String {
        use BackwardOp::*;
        let base = match self {
            Unary(op) => capitalize(op.name()),
            Binary(op) => capitalize(op.name()),
            Where => "Where".into(),
            Cast => "ToCopy".into(),
            Sum { .. } => "Sum".into(),
            Prod { .. } => "Prod".into(),
            Extremum { .. } => "Amax".into(),
            Cumsum { .. } => "Cumsum".into(),
            Matmul => "Mm".into(),
            Reshape => "View".into(),
            Permute { .. } => "Permute".into(),
            Slice { .. } => "Slice".into(),
            Select { .. } => "Select".into(),
            Expand => "Expand".into(),
            Copy => "Clone".into(),
            Cat { .. } => "Cat".into(),
            IndexSelect { .. } => "IndexSelect".into(),
            Gather { .. } => "Gather".into(),
            ScatterAdd { .. } => "ScatterAdd".into(),
            Embed { .. } => "SliceScatter".into(),
        };
        format!("{base}Backward0")
    }

    /// Whether the rule reads the values of its inputs (then modifying them in place before
    /// backward is an error).
    pub fn uses_input_values(&self) -> bool {
        use BackwardOp::*;
        match self {
            Unary(op) => !matches!(op, UnaryOp::Neg),
            Binary(op) => !matches!(op, BinaryOp::Add | BinaryOp::Sub),
            Where | Prod { .. } | Extremum { .. } | Matmul => true,
            _ => false,
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut parts = s.split('_').map(|p| {
        let mut c = p.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    });
    let mut out = String::new();
    for p in &mut parts {
        out += &p;
    }
    out
}

/// Gradients of the inputs of `out`'s node, given the gradient `g` of `out`.
pub(crate) fn backward(
    op: &BackwardOp,
    g: &Tensor,
    inputs: &[Tensor],
    out: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    use BackwardOp::*;
    let x = &inputs[0];
    Ok(match op {
        Unary(u) => vec![Some(unary(*u, g, x)?)],
        Binary(b) => {
            let (da, db) = binary(*b, g, x, &inputs[1], out)?;
            vec![
                da.map(|d| d.sum_to(x.shape())).transpose()?,
                db.map(|d| d.sum_to(inputs[1].shape())).transpose()?,
            ]
        }
        Where => {
            let zero = Tensor::zeros_like(g)?;
            let c = &inputs[0];
            vec![
                None,
                Some(Tensor::where_cond(c, g, &zero)?.sum_to(inputs[1].shape())?),
                Some(Tensor::where_cond(c, &zero, g)?.sum_to(inputs[2].shape())?),
            ]
        }
        Cast => vec![Some(if x.dtype().is_float() {
            g.to_dtype(x.dtype())?
        } else {
            return Ok(vec![None]);
        })],
        Sum { dims, keepdim } => vec![Some(unreduce(g, dims, *keepdim, x.shape())?)],
        Prod { dims, keepdim } => {
            // d prod / d x_i = prod / x_i (inputs with zeros are not special-cased).
            let p = unreduce(
                &x.prod_dims_internal(dims, *keepdim)?,
                dims,
                *keepdim,
                x.shape(),
            )?;
            vec![Some(
                unreduce(g, dims, *keepdim, x.shape())?.mul(&p)?.div(x)?,
            )]
        }
        Extremum { dims, keepdim, out } => {
            // Ties share the gradient evenly, as in PyTorch's amax/amin.
            let m = unreduce(out, dims, *keepdim, x.shape())?;
            let mask = x.eq(&m)?.to_dtype(DType::F32)?;
            let count = unreduce(
                &mask.sum_dims_internal(dims, *keepdim)?,
                dims,
                *keepdim,
                x.shape(),
            )?;
            vec![Some(
                unreduce(g, dims, *keepdim, x.shape())?
                    .mul(&mask)?
                    .div(&count)?,
            )]
        }
        Cumsum { dim } => {
            // Reverse cumulative sum: total - cumsum(g) + g.
            let d = *dim as isize;
            let total = g.sum_dims([d], true)?;
            vec![Some(total.sub(&g.cumsum(d)?)?.add(g)?)]
        }
        Matmul => {
            // Only the products whose input needs a gradient: for a layer's input batch
            // that saves a third of the backward pass.
            let b = &inputs[1];
            let da = if x.requires_grad() {
                Some(g.matmul(&b.transpose(-1, -2)?)?.sum_to(x.shape())?)
            } else {
                None
            };
            // (g^T a)^T rather than a^T g: the same numbers, but gemm reads the large
            // operand row by row, which is faster for the usual row-major activations.
            let db = if b.requires_grad() {
                Some(
                    g.transpose(-1, -2)?
                        .matmul(x)?
                        .transpose(-1, -2)?
                        .sum_to(b.shape())?,
                )
            } else {
                None
            };
            vec![da, db]
        }
        Reshape => vec![Some(g.reshape(x.shape())?)],
        Permute { dims } => {
            let mut inverse = vec![0isize; dims.len()];
            for (i, &d) in dims.iter().enumerate() {
                inverse[d] = i as isize;
            }
            vec![Some(g.permute(&inverse)?)]
        }
        Slice {
            dim,
            start,
            stop,
            step,
        } => vec![Some(g.embed(
            x.shape(),
            EmbedView::Slice {
                dim: *dim,
                start: *start,
                stop: *stop,
                step: *step,
            },
        )?)],
        Select { dim, index } => vec![Some(g.embed(
            x.shape(),
            EmbedView::Select {
                dim: *dim,
                index: *index,
            },
        )?)],
        Expand => vec![Some(g.sum_to(x.shape())?)],
        Copy => vec![Some(g.to_device(x.device())?)],
        Cat { dim } => {
            let mut start = 0;
            let mut grads = Vec::with_capacity(inputs.len());
            for t in inputs {
                let len = t.shape()[*dim];
                grads.push(Some(g.narrow(*dim as isize, start, len)?));
                start += len;
            }
            grads
        }
        IndexSelect { dim, index } => {
            // Scatter the rows back: index expanded to the gradient's shape along `dim`.
            let mut shape = vec![1; g.ndim()];
            shape[*dim] = index.numel();
            let idx = index.reshape(&shape)?.expand(g.shape())?;
            vec![
                Some(
                    Tensor::zeros_on(x.shape(), g.dtype(), g.device())?.scatter_add(
                        *dim as isize,
                        &idx,
                        g,
                    )?,
                ),
                None,
            ]
        }
        Gather { dim, index } => vec![
            Some(
                Tensor::zeros_on(x.shape(), g.dtype(), g.device())?.scatter_add(
                    *dim as isize,
                    index,
                    g,
                )?,
            ),
            None,
        ],
        ScatterAdd { dim, index } => vec![
            Some(g.clone()),
            Some(g.gather(*dim as isize, index)?.sum_to(inputs[1].shape())?),
        ],
        Embed { view } => vec![Some(match view {
            EmbedView::Slice {
                dim,
                start,
                stop,
                step,
            } => g.slice(
                *dim as isize,
                Some(*start as isize),
                Some(*stop as isize),
                *step as isize,
            )?,
            EmbedView::Select { dim, index } => g.select(*dim as isize, *index as isize)?,
        })],
    })
}

fn unary(op: UnaryOp, g: &Tensor, x: &Tensor) -> Result<Tensor> {
    use UnaryOp::*;
    match op {
        Neg => g.neg(),
        Abs => g.mul(&x.sign()?),
        Exp => g.mul(&x.exp()?),
        Log => g.div(x),
        Sqrt => g.div(&x.sqrt()?.mul_scalar(2.0)?),
        Sin => g.mul(&x.cos()?),
        Cos => g.mul(&x.sin()?.neg()?),
        Tanh => {
            let t = x.tanh()?;
            g.mul(&t.mul(&t)?.neg()?.add_scalar(1.0)?)
        }
        Sigmoid => {
            let s = x.sigmoid()?;
            g.mul(&s.mul(&s.neg()?.add_scalar(1.0)?)?)
        }
        Relu => g.mul(&x.gt_scalar(0.0)?.to_dtype(g.dtype())?),
        Recip => {
            let r = x.reciprocal()?;
            g.mul(&r.mul(&r)?.neg()?)
        }
        Square => g.mul(&x.mul_scalar(2.0)?),
        Sign | Floor | Ceil | Round | LogicalNot | IsNan => Tensor::zeros_like(g),
    }
}

/// Gradients of a binary op's operands, each only when that operand requires grad.
fn binary(
    op: BinaryOp,
    g: &Tensor,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    use BinaryOp::*;
    let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
    let when = |need: bool, f: &dyn Fn() -> Result<Tensor>| -> Result<Option<Tensor>> {
        if need {
            f().map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(match op {
        Add => (
            when(need_a, &|| Ok(g.clone()))?,
            when(need_b, &|| Ok(g.clone()))?,
        ),
        Sub => (when(need_a, &|| Ok(g.clone()))?, when(need_b, &|| g.neg())?),
        Mul => (when(need_a, &|| g.mul(b))?, when(need_b, &|| g.mul(a))?),
        Div => (
            when(need_a, &|| g.div(b))?,
            when(need_b, &|| g.mul(a)?.div(&b.mul(b)?)?.neg())?,
        ),
        Pow => {
            // d/da a^b = b a^(b-1); d/db a^b = a^b ln a, taken as 0 where a == 0 (PyTorch).
            let da = when(need_a, &|| g.mul(b)?.mul(&a.pow(&b.sub_scalar(1.0)?)?))?;
            let db = when(need_b, &|| {
                // With create_graph the power must carry a graph; otherwise reuse the forward result.
                let p = if crate::autograd::is_grad_enabled() {
                    a.pow(b)?
                } else {
                    out.detach()
                };
                let zero = Tensor::zeros_like(&p)?;
                let safe_log = Tensor::where_cond(&a.eq_scalar(0.0)?, &zero, &p.mul(&a.log()?)?)?;
                g.mul(&safe_log)
            })?;
            (da, db)
        }
        Maximum | Minimum => {
            // The larger (smaller) input gets the gradient; ties split it in half.
            let half = || -> Result<Tensor> { a.eq(b)?.to_dtype(g.dtype())?.mul_scalar(0.5) };
            let (win, lose) = if op == Maximum {
                (a.gt(b)?, a.lt(b)?)
            } else {
                (a.lt(b)?, a.gt(b)?)
            };
            (
                when(need_a, &|| g.mul(&win.to_dtype(g.dtype())?.add(&half()?)?))?,
                when(need_b, &|| g.mul(&lose.to_dtype(g.dtype())?.add(&half()?)?))?,
            )
        }
    })
}

/// Bring a reduced gradient back to the input's shape: re-insert the reduced dims (when
/// keepdim was false) and broadcast.
fn unreduce(g: &Tensor, dims: &[usize], keepdim: bool, shape: &[usize]) -> Result<Tensor> {
    let mut g = g.clone();
    if !keepdim {
        for &d in dims {
            g = g.unsqueeze(d as isize)?;
        }
    }
    g.expand(shape)
}
