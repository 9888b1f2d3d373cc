//! Layer normalisation over the trailing dims as one op where its operands are contiguous
//! f32 CPU tensors without tangents and the weight and bias (where given) have the
//! normalized shape (the kernels of `cpu/layer_norm.rs`), composed from primitives elsewhere
//! (`nn::functional::layer_norm_composite`). Each row's mean and `1 / sqrt(var + eps)` are
//! kept for the backward rule, which runs the fused gradient kernel or, under
//! `create_graph`, differentiates the composite.

use super::{composite_backward, host_tensor, on_host};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::dtype::DType;
use crate::error::Result;
use crate::host::HostBuffer;
use crate::storage::Storage;
use crate::tensor::Tensor;

/// Which inputs follow `x` in the node: the weight and the bias, where given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affine {
    pub weight: bool,
    pub bias: bool,
}

/// The layer norm of `x` over its last `k` dims as one op, or `None` where the kernels do
/// not take these operands. Shapes are checked by the caller.
pub(crate) fn layer_norm(
    x: &Tensor,
    k: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Option<Tensor>> {
    let normalized = &x.shape()[x.ndim() - k..];
    let d: usize = normalized.iter().product();
    if d == 0
        || x.numel() == 0
        || !matches!(x.device(), crate::device::Device::Cpu)
        || [weight, bias]
            .iter()
            .flatten()
            .any(|t| t.shape() != normalized)
    {
        return Ok(None);
    }
    crate::storage::host_room("layer_norm", x.numel(), DType::F32)?;
    // A missing weight or bias fills its operand slot with x, unread.
    let (w, b) = (weight.unwrap_or(x), bias.unwrap_or(x));
    let Some((y, stats)) = on_host([x, w, b], |[x, w, b]| {
        crate::cpu::layer_norm::forward(x, d, weight.map(|_| w), bias.map(|_| b), eps)
    }) else {
        return Ok(None);
    };
    let rows = x.numel() / d;
    let stats = host_tensor(stats, &[rows, 2]);
    let affine = Affine {
        weight: weight.is_some(),
        bias: bias.is_some(),
    };
    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    Tensor::from_op(
        Storage::Cpu(HostBuffer::F32(y)),
        x.shape(),
        || BackwardOp::LayerNorm {
            dims: k,
            affine,
            stats,
            eps,
        },
        &inputs,
    )
    .map(Some)
}

/// The gradients of the input, the weight and the bias (where given) from the output's.
pub(crate) fn layer_norm_backward(
    grad: &Tensor,
    inputs: &[Tensor],
    (k, affine): (usize, Affine),
    stats: &Tensor,
    eps: f64,
) -> Result<Vec<Option<Tensor>>> {
    let x = &inputs[0];
    let weight = affine.weight.then(|| &inputs[1]);
    let bias = affine.bias.then(|| &inputs[1 + affine.weight as usize]);
    if !is_grad_enabled() {
        crate::storage::host_room("layer_norm backward", x.numel(), DType::F32)?;
        let grad = grad.contiguous()?;
        let normalized = &x.shape()[x.ndim() - k..];
        let d: usize = normalized.iter().product();
        let need = [
            x.requires_grad(),
            weight.is_some_and(|w| w.requires_grad()),
            bias.is_some_and(|b| b.requires_grad()),
        ];
        let w = weight.unwrap_or(x);
        if let Some([dx, dw, db]) = on_host([x, w, stats, &grad], |[x, w, stats, dy]| {
            crate::cpu::layer_norm::backward(x, d, weight.map(|_| w), stats, dy, need)
        }) {
            let mut out = vec![dx.map(|v| host_tensor(v, x.shape()))];
            if affine.weight {
                out.push(dw.map(|v| host_tensor(v, normalized)));
            }
            if affine.bias {
                out.push(db.map(|v| host_tensor(v, normalized)));
            }
            return Ok(out);
        }
    }
    composite_backward(grad, inputs, |ins| {
        let w = affine.weight.then(|| &ins[1]);
        let b = affine.bias.then(|| &ins[1 + affine.weight as usize]);
        crate::nn::functional::layer_norm_composite(&ins[0], k, w, b, eps)
    })
}
