//! The backward rule of every primitive op, in one exhaustive `match`. Each rule maps the
//! gradient of the output to gradients of the inputs using tensor ops only.

use crate::dtype::Scalar;
use crate::error::Result;
use crate::op::{BinaryOp, Reads, ScalarSide, UnaryOp};
use crate::shape::inverse_permutation;
use crate::tensor::{Source, Tensor};

/// Which rule a recorded node runs, with the non-tensor arguments of its forward op.
#[derive(Debug, Clone)]
pub enum BackwardOp {
    /// The op table's derivative (`op/unary.rs`).
    Unary(UnaryOp),
    /// Two tensor operands; the op table's derivatives (`op/binary.rs`).
    Binary(BinaryOp),
    /// One tensor operand and a number on `side`.
    BinaryScalar {
        op: BinaryOp,
        scalar: Scalar,
        side: ScalarSide,
    },
    /// Inputs: the condition, then `a` and `b` where they are tensors (the flags say which;
    /// a number has no gradient).
    Where {
        a: bool,
        b: bool,
    },
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
    /// Sliding windows along `dim` (`Tensor::unfold`), a view.
    Windows {
        dim: usize,
        size: usize,
        step: usize,
    },
    /// The adjoint of `Windows`: windows summed back into the input's shape, whose dims
    /// the output holds in `order`.
    FoldWindows {
        dim: usize,
        size: usize,
        step: usize,
        order: Vec<usize>,
    },
    /// One direction of a recurrent layer over a sequence (`tensor/fused/recurrent.rs`):
    /// inputs `xs`, `h0`, (LSTM) `c0`, `w_hh`, (where given) `b_hh`; output every step's
    /// states; `work` the activated gates.
    RecurrentLayer {
        geometry: crate::cpu::recurrent::LayerGeometry,
        work: Tensor,
    },
    /// One fused 2-D convolution (`tensor/fused/conv.rs`): inputs `x`, `w` and, where given, `b`.
    Conv2d {
        geometry: crate::cpu::conv::ConvGeometry,
        args: crate::nn::functional::ConvArgs,
    },
    /// Fused batch normalisation with the batch's statistics (`tensor/fused/norm.rs`):
    /// inputs `x`, `weight`, `bias`; `stats` the per-channel mean, variance and
    /// `1 / sqrt(var + eps)`.
    BatchNorm {
        stats: Tensor,
        eps: f64,
    },
    /// Fused layer normalisation over the last `dims` dims (`tensor/fused/layer_norm.rs`):
    /// inputs `x` and, as `affine` says, the weight and the bias; `stats` each row's mean
    /// and `1 / sqrt(var + eps)`.
    LayerNorm {
        dims: usize,
        affine: crate::tensor::fused::layer_norm::Affine,
        stats: Tensor,
        eps: f64,
    },
    /// Fused softmax or log-softmax along the last dim (`tensor/fused/softmax.rs`): input
    /// `x`; the rule reads the output.
    Softmax {
        log: bool,
    },
    /// Fused average pooling (`tensor/fused/pool.rs`): input `x`.
    AvgPool2d {
        geometry: crate::cpu::pooling::PoolGeometry,
    },
    /// The adjoint of a slice or select: the input placed into zeros of `shape`.
    Embed {
        view: EmbedView,
    },
    /// Fused cross-entropy against class labels (`tensor/fused/cross_entropy.rs`): input
    /// the logits.
    CrossEntropy(Box<crate::tensor::fused::cross_entropy::Saved>),
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
            Binary(op) | BinaryScalar { op, .. } => capitalize(op.name()),
            Where { .. } => "Where".into(),
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
            Windows { .. } => "Unfold".into(),
            RecurrentLayer { .. } => "RnnLayer".into(),
            Conv2d { .. } => "Convolution".into(),
            BatchNorm { .. } => "NativeBatchNorm".into(),
            LayerNorm { .. } => "NativeLayerNorm".into(),
            AvgPool2d { .. } => "AvgPool2D".into(),
            Softmax { log: false } => "Softmax".into(),
            Softmax { log: true } => "LogSoftmax".into(),
            FoldWindows { .. } => "UnfoldBackward".into(),
            CrossEntropy(_) => "NllLoss".into(),
        };
        format!("{base}Backward0")
    }

    /// Tensors the rule keeps besides its inputs (index tensors, a reduction's result), whose
    /// storage versions are checked too.
    pub fn saved(&self) -> Vec<&Tensor> {
        use BackwardOp::*;
        match self {
            IndexSelect { index, .. } | Gather { index, .. } | ScatterAdd { index, .. } => {
                vec![index]
            }
            Extremum { out, .. } => vec![out],
            RecurrentLayer { work, .. }
            | BatchNorm { stats: work, .. }
            | LayerNorm { stats: work, .. } => vec![work],
            CrossEntropy(s) => vec![&s.labels, &s.rows],
            Unary(_)
            | Binary(_)
            | BinaryScalar { .. }
            | Where { .. }
            | Cast
            | Sum { .. }
            | Prod { .. }
            | Cumsum { .. }
            | Matmul
            | Reshape
            | Permute { .. }
            | Slice { .. }
            | Select { .. }
            | Expand
            | Copy
            | Cat { .. }
            | Windows { .. }
            | FoldWindows { .. }
            | Conv2d { .. }
            | AvgPool2d { .. }
            | Softmax { .. }
            | Embed { .. } => Vec::new(),
        }
    }

    /// What the rule reads of its inputs and output (then overwriting them in place before
    /// backward is an error).
    pub fn reads(&self) -> Reads {
        use BackwardOp::*;
        match self {
            Unary(op) => op.def().reads,
            Binary(op) | BinaryScalar { op, .. } => op.def().reads,
            Where { .. }
            | Prod { .. }
            | Matmul
            | Conv2d { .. }
            | BatchNorm { .. }
            | LayerNorm { .. }
            | CrossEntropy(_) => Reads::Inputs,
            // The saved result is a view of the output; a recurrent layer's gradient reads
            // the states it output as the next steps' inputs.
            Extremum { .. } | RecurrentLayer { .. } => Reads::All,
            Softmax { .. } => Reads::Output,
            Cast
            | Sum { .. }
            | Cumsum { .. }
            | Reshape
            | Permute { .. }
            | Slice { .. }
            | Select { .. }
            | Expand
            | Copy
            | Cat { .. }
            | IndexSelect { .. }
            | Gather { .. }
            | ScatterAdd { .. }
            | Windows { .. }
            | FoldWindows { .. }
            | AvgPool2d { .. }
            | Embed { .. } => Reads::Nothing,
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
        Unary(u) => vec![Some(match u.def().grad {
            Some(rule) => rule(g, x, out)?,
            None => Tensor::zeros_like(g)?,
        })],
        Binary(op) => {
            let def = op.def();
            let (a, b) = (x, &inputs[1]);
            let da = if a.requires_grad() {
                Some((def.grad_lhs)(g, a, &Source::Tensor(b.clone()), out)?.sum_to(a.shape())?)
            } else {
                None
            };
            let db = if b.requires_grad() {
                Some((def.grad_rhs)(g, &Source::Tensor(a.clone()), b, out)?.sum_to(b.shape())?)
            } else {
                None
            };
            vec![da, db]
        }
        BinaryScalar { op, scalar, side } => {
            let def = op.def();
            let s = Source::Scalar(*scalar);
            let d = match side {
                ScalarSide::Rhs => (def.grad_lhs)(g, x, &s, out)?,
                ScalarSide::Lhs => (def.grad_rhs)(g, &s, x, out)?,
            };
            vec![Some(d.sum_to(x.shape())?)]
        }
        Where { a, b } => {
            let c = &inputs[0];
            let mut grads = vec![None];
            let mut next = 1;
            if *a {
                let t = &inputs[next];
                grads.push(Some(Tensor::where_cond(c, g, 0.0)?.sum_to(t.shape())?));
                next += 1;
            }
            if *b {
                let t = &inputs[next];
                grads.push(Some(Tensor::where_cond(c, 0.0, g)?.sum_to(t.shape())?));
            }
            grads
        }
        Cast => vec![Some(if x.dtype().is_float() {
            g.to_dtype(x.dtype())?
        } else {
            return Ok(vec![None]);
        })],
        Sum { dims, keepdim } => vec![Some(unreduce(g, dims, *keepdim, x.shape())?)],
        Prod { dims, keepdim } => {
            let local = prod_derivative(x, dims, *keepdim)?;
            vec![Some(unreduce(g, dims, *keepdim, x.shape())?.mul(&local)?)]
        }
        Extremum { dims, keepdim, out } => {
            let (mask, count) = extremum_ties(x, out, dims, *keepdim)?;
            vec![Some(
                unreduce(g, dims, *keepdim, x.shape())?
                    .mul(&mask)?
                    .div(&unreduce(&count, dims, *keepdim, x.shape())?)?,
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
            // that saves a third of the backward pass. Each gradient is computed in its
            // input's memory order (row-major, or column-major for a transposed view such
            // as a linear layer's `W^T`), as `(..)^T` of the transposed product where that
            // is column-major: the same numbers, and the ops that consume the gradient walk
            // it as they walked the input.
            let b = &inputs[1];
            let da = if x.requires_grad() {
                let d = if column_major(x) {
                    b.matmul(&g.transpose(-1, -2)?)?.transpose(-1, -2)?
                } else {
                    g.matmul(&b.transpose(-1, -2)?)?
                };
                Some(d.sum_to(x.shape())?)
            } else {
                None
            };
            let db = if b.requires_grad() {
                let d = if column_major(b) {
                    g.transpose(-1, -2)?.matmul(x)?.transpose(-1, -2)?
                } else {
                    x.transpose(-1, -2)?.matmul(g)?
                };
                Some(d.sum_to(b.shape())?)
            } else {
                None
            };
            vec![da, db]
        }
        Reshape => vec![Some(g.reshape(x.shape())?)],
        Permute { dims } => {
            vec![Some(g.permute(inverse_permutation(dims))?)]
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
                    Tensor::zeros_on(x.shape(), (g.dtype(), g.device()))?.scatter_add(
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
                Tensor::zeros_on(x.shape(), (g.dtype(), g.device()))?.scatter_add(
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
        Windows { dim, size, step } => {
            vec![Some(g.fold_windows(x.shape(), *dim, *size, *step)?)]
        }
        RecurrentLayer { geometry, work } => {
            crate::tensor::fused::recurrent::recurrent_layer_backward(
                g, inputs, out, geometry, work,
            )?
        }
        Conv2d { geometry, args } => {
            crate::tensor::fused::conv::conv2d_backward(g, inputs, geometry, *args)?
        }
        BatchNorm { stats, eps } => {
            crate::tensor::fused::norm::batch_norm_backward(g, inputs, stats, *eps)?
        }
        AvgPool2d { geometry } => {
            crate::tensor::fused::pool::avg_pool2d_backward(g, inputs, geometry)?
        }
        LayerNorm {
            dims,
            affine,
            stats,
            eps,
        } => crate::tensor::fused::layer_norm::layer_norm_backward(
            g,
            inputs,
            (*dims, *affine),
            stats,
            *eps,
        )?,
        Softmax { log } => crate::tensor::fused::softmax::softmax_backward(g, inputs, out, *log)?,
        CrossEntropy(saved) => {
            crate::tensor::fused::cross_entropy::cross_entropy_backward(g, inputs, saved)?
        }
        FoldWindows {
            dim,
            size,
            step,
            order,
        } => {
            vec![Some(g.permute(inverse_permutation(order))?.unfold(
                *dim as isize,
                *size,
                *step,
            )?)]
        }
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

/// Whether the matrices of `t` (its last two dims) are stored column by column.
fn column_major(t: &Tensor) -> bool {
    let (shape, strides) = (t.shape(), t.stride());
    let r = shape.len();
    r >= 2 && shape[r - 2] > 1 && strides[r - 2] == 1
}

/// d prod(x) / d x_i over `dims`, of x's shape: the product of the other elements. Written
/// as prod / x_i only where no element of the product is 0; with one zero, the zero element
/// gets the product of the others and the rest 0; with more, everything is 0 (PyTorch's rule,
/// where prod / x would give NaN).
pub(crate) fn prod_derivative(x: &Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
    let zero = x.eq_scalar(0.0)?;
    let back = |t: &Tensor| unreduce(t, dims, keepdim, x.shape());
    let zeros = back(&zero.sum_dims_internal(dims, keepdim)?)?;
    let others = back(&Tensor::where_cond(&zero, 1.0, x)?.prod_dims_internal(dims, keepdim)?)?;
    let lone_zero = zeros.eq_scalar(1)?.logical_and(&zero)?;
    Tensor::where_cond(
        &zeros.eq_scalar(0)?,
        &others.div(x)?,
        &Tensor::where_cond(&lone_zero, &others, 0.0)?,
    )
}

/// The elements of `x` that a max or min over `dims` chose (its result `best`), as a float
/// mask of x's shape, and how many tied (reduced). NaN ties with NaN: the NaN elements get
/// the gradient of a NaN maximum, as in PyTorch.
pub(crate) fn extremum_ties(
    x: &Tensor,
    best: &Tensor,
    dims: &[usize],
    keepdim: bool,
) -> Result<(Tensor, Tensor)> {
    let m = unreduce(best, dims, keepdim, x.shape())?;
    let mask = x
        .eq(&m)?
        .logical_or(&x.isnan()?.logical_and(&m.isnan()?)?)?
        .to_dtype(x.dtype())?;
    let count = mask.sum_dims_internal(dims, keepdim)?;
    Ok((mask, count))
}

/// Bring a reduced gradient back to the input's shape: re-insert the reduced dims (when
/// keepdim was false) and broadcast.
pub(crate) fn unreduce(
    g: &Tensor,
    dims: &[usize],
    keepdim: bool,
    shape: &[usize],
) -> Result<Tensor> {
    let mut g = g.clone();
    if !keepdim {
        for &d in dims {
            g = g.unsqueeze(d as isize)?;
        }
    }
    g.expand(shape)
}
