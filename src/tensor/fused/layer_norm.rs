//! Layer normalisation over the trailing dims as one op where its operands are contiguous
//! f32 tensors without tangents and the weight and bias (where given) have the normalized
//! shape (the kernels of `cpu/layer_norm.rs`; on a GPU `shaders/layer_norm*.wgsl`, a
//! workgroup per row), composed from primitives elsewhere
//! (`nn::functional::layer_norm_composite`). Each row's mean and `1 / sqrt(var + eps)` are
//! kept for the backward rule, which runs the fused gradient kernels or, under
//! `create_graph`, differentiates the composite. On a GPU the weight's and bias's
//! gradients, sums over the rows, are reductions.

use super::{composite_backward, from_buffer_start, gpu_takes, host_tensor, on_host};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::dtype::DType;
use crate::error::Result;
use crate::host::HostBuffer;
use crate::storage::{with_reads, Storage};
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
        || [weight, bias]
            .iter()
            .flatten()
            .any(|t| t.shape() != normalized)
    {
        return Ok(None);
    }
    let affine = Affine {
        weight: weight.is_some(),
        bias: bias.is_some(),
    };
    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    let record = |y: Storage, stats: Tensor| {
        Tensor::from_op(
            y,
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
    };
    let rows = x.numel() / d;
    if gpu_takes(&inputs) {
        let cells = [
            Some(x.storage()),
            weight.map(Tensor::storage),
            bias.map(Tensor::storage),
        ];
        let out = with_reads(cells, |[xs, ws, bs]| match (xs, ws, bs) {
            // A weight or bias given must be a GPU buffer (not a failed value).
            (Some(Storage::Gpu(xs)), ws, bs)
                if gpu_of(ws).is_some() == weight.is_some()
                    && gpu_of(bs).is_some() == bias.is_some() =>
            {
                xs.layer_norm((rows, d), gpu_of(ws), gpu_of(bs), eps)
                    .map(Some)
            }
            _ => Ok(None),
        })?;
        if let Some([y, stats]) = out {
            let stats = Tensor::from_storage(Storage::Gpu(stats), &[rows, 2]);
            return record(Storage::Gpu(y), stats);
        }
    }
    if !matches!(x.device(), crate::device::Device::Cpu) {
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
    record(
        Storage::Cpu(HostBuffer::F32(y)),
        host_tensor(stats, &[rows, 2]),
    )
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
        if let Some(grads) = gpu_backward(x, weight, bias, stats, &grad, (k, need))? {
            return Ok(grads);
        }
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

/// [`layer_norm_backward`] by the GPU's kernel for the input's gradient and reductions for
/// the weight's and the bias's, where the kernel takes the operands.
fn gpu_backward(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    stats: &Tensor,
    grad: &Tensor,
    (k, need): (usize, [bool; 3]),
) -> Result<Option<Vec<Option<Tensor>>>> {
    let mut operands = vec![x, stats];
    operands.extend(weight);
    if !gpu_takes(&operands) {
        return Ok(None);
    }
    let grad = from_buffer_start(grad)?;
    let normalized = &x.shape()[x.ndim() - k..];
    let d: usize = normalized.iter().product();
    let rows = x.numel() / d;
    let dx = if need[0] {
        let cells = [
            Some(x.storage()),
            weight.map(Tensor::storage),
            Some(stats.storage()),
            Some(grad.storage()),
        ];
        let dx = with_reads(cells, |[xs, ws, ss, gs]| match (xs, ws, ss, gs) {
            (Some(Storage::Gpu(xs)), ws, Some(Storage::Gpu(ss)), Some(Storage::Gpu(gs)))
                if gpu_of(ws).is_some() == weight.is_some() =>
            {
                xs.layer_norm_backward((rows, d), gpu_of(ws), ss, gs)
                    .map(Some)
            }
            _ => Ok(None),
        })?;
        let Some(dx) = dx else {
            return Ok(None);
        };
        Some(Tensor::from_storage(Storage::Gpu(dx), x.shape()))
    } else {
        None
    };
    // The weight's and bias's gradients: sums over the rows of dy * xhat and dy, each one
    // reduction whose elementwise part is fused into it.
    let dy = grad.reshape([rows, d])?;
    let mut out = vec![dx];
    if weight.is_some() {
        out.push(if need[1] {
            let mean = stats.narrow(1, 0, 1)?;
            let rstd = stats.narrow(1, 1, 1)?;
            let xhat = x.reshape([rows, d])?.sub(&mean)?.mul(&rstd)?;
            Some(dy.mul(&xhat)?.sum_dims([0], false)?.reshape(normalized)?)
        } else {
            None
        });
    }
    if bias.is_some() {
        out.push(if need[2] {
            Some(dy.sum_dims([0], false)?.reshape(normalized)?)
        } else {
            None
        });
    }
    Ok(Some(out))
}

/// The GPU buffer of an optional operand (its cell's storage, locked).
fn gpu_of(s: Option<&Storage>) -> Option<&crate::gpu::GpuStorage> {
    match s {
        Some(Storage::Gpu(g)) => Some(g),
        _ => None,
    }
}
