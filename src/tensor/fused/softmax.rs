//! Softmax and log-softmax along the last dim as one op where the input is a contiguous
//! f32 tensor without a tangent (the kernels of `cpu/softmax.rs`; on a GPU
//! `shaders/softmax*.wgsl`, a workgroup per row), composed from primitives elsewhere
//! (`Tensor::softmax_composite`, `Tensor::log_softmax_composite`). The backward rule reads
//! the output; under `create_graph` it differentiates the composite.

use super::{composite_backward, from_buffer_start, gpu_takes, host_tensor, on_host};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::dtype::DType;
use crate::error::Result;
use crate::host::HostBuffer;
use crate::storage::{with_reads, Storage};
use crate::tensor::Tensor;

/// The last dim's length, where the kernels may take `x` (a non-empty row of a CPU tensor).
fn row_len(x: &Tensor) -> Option<usize> {
    let on_cpu = matches!(x.device(), crate::device::Device::Cpu);
    x.shape()
        .last()
        .copied()
        .filter(|&n| on_cpu && n > 0 && x.numel() > 0)
}

/// Softmax (`log` false) or log-softmax of `x` along its last dim as one op, or `None`
/// where the kernels do not take `x`.
pub(crate) fn softmax_last(x: &Tensor, log: bool) -> Result<Option<Tensor>> {
    if let Some(y) = on_gpu(x, log)? {
        return Ok(Some(y));
    }
    let Some(n) = row_len(x) else {
        return Ok(None);
    };
    crate::storage::host_room(
        if log { "log_softmax" } else { "softmax" },
        x.numel(),
        DType::F32,
    )?;
    let Some(y) = on_host([x], |[x]| crate::cpu::softmax::forward(x, n, log)) else {
        return Ok(None);
    };
    Tensor::from_op(
        Storage::Cpu(HostBuffer::F32(y)),
        x.shape(),
        || BackwardOp::Softmax { log },
        &[x],
    )
    .map(Some)
}

/// The input's gradient from the output's `grad` and the output `out`.
pub(crate) fn softmax_backward(
    grad: &Tensor,
    inputs: &[Tensor],
    out: &Tensor,
    log: bool,
) -> Result<Vec<Option<Tensor>>> {
    if !is_grad_enabled() {
        if let Some(dx) = gpu_backward(grad, out, log)? {
            return Ok(vec![Some(dx)]);
        }
        if let Some(n) = row_len(out) {
            crate::storage::host_room("softmax backward", out.numel(), DType::F32)?;
            let grad = grad.contiguous()?;
            if let Some(dx) = on_host([out, &grad], |[y, g]| {
                crate::cpu::softmax::backward(y, g, n, log)
            }) {
                return Ok(vec![Some(host_tensor(dx, out.shape()))]);
            }
        }
    }
    composite_backward(grad, inputs, |ins| {
        let last = ins[0].ndim().saturating_sub(1);
        if log {
            ins[0].log_softmax_composite(last)
        } else {
            ins[0].softmax_composite(last)
        }
    })
}

/// The rows of `x` (its last dim's length and how many) where the GPU kernels take it.
fn gpu_rows(x: &Tensor) -> Option<(usize, usize)> {
    let n = x.shape().last().copied().filter(|&n| n > 0)?;
    (x.numel() > 0 && gpu_takes(&[x])).then(|| (x.numel() / n, n))
}

/// [`softmax_last`] by the GPU's kernel, where it takes `x`.
fn on_gpu(x: &Tensor, log: bool) -> Result<Option<Tensor>> {
    let Some(rows) = gpu_rows(x) else {
        return Ok(None);
    };
    let y = with_reads([Some(x.storage())], |[s]| match s {
        Some(Storage::Gpu(s)) => s.softmax(rows, log).map(Some),
        _ => Ok(None),
    })?;
    let Some(y) = y else {
        return Ok(None);
    };
    Tensor::from_op(
        Storage::Gpu(y),
        x.shape(),
        || BackwardOp::Softmax { log },
        &[x],
    )
    .map(Some)
}

/// [`softmax_backward`] by the GPU's kernel, where it takes the output.
fn gpu_backward(grad: &Tensor, out: &Tensor, log: bool) -> Result<Option<Tensor>> {
    let Some(rows) = gpu_rows(out) else {
        return Ok(None);
    };
    let grad = from_buffer_start(grad)?;
    let dx = with_reads(
        [Some(out.storage()), Some(grad.storage())],
        |[y, g]| match (y, g) {
            (Some(Storage::Gpu(y)), Some(Storage::Gpu(g))) => {
                y.softmax_backward(rows, log, g).map(Some)
            }
            _ => Ok(None),
        },
    )?;
    Ok(dx.map(|dx| Tensor::from_storage(Storage::Gpu(dx), out.shape())))
}
