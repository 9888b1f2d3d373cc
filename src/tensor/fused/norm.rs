//! Batch normalisation with the batch's statistics (training mode) as one op where its
//! operands are contiguous f32 tensors without tangents (the kernels of `cpu/norm.rs` and
//! `shaders/batch_norm*.wgsl`: one dispatch forward, one backward, where the composite is
//! about a dozen), composed from primitives elsewhere
//! (`nn::functional::batch_norm_composite`). The statistics the forward pass computed are
//! kept for the backward rule, which runs the fused gradient kernel or, under
//! `create_graph`, differentiates the composite.

use super::{composite_backward, from_buffer_start, gpu_takes, host_tensor, on_host};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::cpu::norm::NormGeometry;
use crate::error::Result;
use crate::host::HostBuffer;
use crate::storage::{with_reads, Storage};
use crate::tensor::Tensor;

fn geometry(x: &Tensor) -> NormGeometry {
    let shape = x.shape();
    NormGeometry {
        n: shape.first().copied().unwrap_or(1),
        c: shape.get(1).copied().unwrap_or(1),
        s: shape.iter().skip(2).product(),
    }
}

/// `(y, mean, var)` of [`crate::nn::functional::batch_norm_composite`] as one fused op, or
/// `None` where the kernels do not take these operands. Shapes are checked by the caller.
pub(crate) fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let geo = geometry(x);
    if let Some(out) = on_gpu(x, weight, bias, &geo, eps)? {
        return Ok(Some(out));
    }
    let Some((y, stats)) = on_host([x, weight, bias], |[x, w, b]| {
        crate::cpu::norm::batch_norm_forward(&geo, x, w, b, eps)
    }) else {
        return Ok(None);
    };
    let c = geo.c;
    // Copies for the caller (the running statistics), so that nothing it does to them
    // touches what the backward rule reads.
    let mean = host_tensor(stats[..c].to_vec(), &[c]);
    let var = host_tensor(stats[c..2 * c].to_vec(), &[c]);
    let stats = host_tensor(stats, &[3, c]);
    let y = Tensor::from_op(
        Storage::Cpu(HostBuffer::F32(y)),
        x.shape(),
        || BackwardOp::BatchNorm { stats, eps },
        &[x, weight, bias],
    )?;
    Ok(Some((y, mean, var)))
}

/// The gradients of the input, the weight and the bias from the output's.
pub(crate) fn batch_norm_backward(
    grad: &Tensor,
    inputs: &[Tensor],
    stats: &Tensor,
    eps: f64,
) -> Result<Vec<Option<Tensor>>> {
    let (x, w, b) = (&inputs[0], &inputs[1], &inputs[2]);
    if !is_grad_enabled() {
        let grad = grad.contiguous()?;
        let need = [x.requires_grad(), w.requires_grad(), b.requires_grad()];
        let geo = geometry(x);
        if let Some(grads) = gpu_backward(x, w, stats, &grad, need, &geo)? {
            return Ok(grads);
        }
        if let Some([dx, dw, db]) = on_host([x, w, stats, &grad], |[x, w, stats, dy]| {
            crate::cpu::norm::batch_norm_backward(&geo, x, w, stats, dy, need)
        }) {
            return Ok(vec![
                dx.map(|v| host_tensor(v, x.shape())),
                dw.map(|v| host_tensor(v, w.shape())),
                db.map(|v| host_tensor(v, b.shape())),
            ]);
        }
    }
    composite_backward(grad, inputs, |ins| {
        Ok(crate::nn::functional::batch_norm_composite(&ins[0], &ins[1], &ins[2], eps)?.0)
    })
}

/// Elements a channel has at most for the GPU kernels, which give each channel one
/// workgroup: past this, few channels of many elements would leave most of a GPU idle,
/// where the composite's reductions split each channel across workgroups. (LeNet's first
/// layer at batch 128 has 74k a channel.)
const CHANNEL_MAX: usize = 1 << 18;

/// [`batch_norm`] by the GPU's kernel, where it takes the operands.
fn on_gpu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    geo: &NormGeometry,
    eps: f64,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let count = geo.n * geo.s;
    if !gpu_takes(&[x, weight, bias]) || count == 0 || count > CHANNEL_MAX || geo.c == 0 {
        return Ok(None);
    }
    let cells = [x, weight, bias].map(|t| Some(t.storage()));
    let Some([y, stats, mean, var]) = with_reads(cells, |[xs, ws, bs]| match (xs, ws, bs) {
        (Some(Storage::Gpu(xs)), Some(Storage::Gpu(ws)), Some(Storage::Gpu(bs))) => {
            xs.batch_norm(geo, ws, bs, eps).map(Some)
        }
        // A failed operand: the composite reports it.
        _ => Ok(None),
    })?
    else {
        return Ok(None);
    };
    let c = geo.c;
    let stats = Tensor::from_storage(Storage::Gpu(stats), &[3, c]);
    let mean = Tensor::from_storage(Storage::Gpu(mean), &[c]);
    let var = Tensor::from_storage(Storage::Gpu(var), &[c]);
    let y = Tensor::from_op(
        Storage::Gpu(y),
        x.shape(),
        || BackwardOp::BatchNorm { stats, eps },
        &[x, weight, bias],
    )?;
    Ok(Some((y, mean, var)))
}

/// [`batch_norm_backward`] by the GPU's kernel, where it takes the operands.
fn gpu_backward(
    x: &Tensor,
    w: &Tensor,
    stats: &Tensor,
    grad: &Tensor,
    need: [bool; 3],
    geo: &NormGeometry,
) -> Result<Option<Vec<Option<Tensor>>>> {
    if !gpu_takes(&[x, w, stats]) {
        return Ok(None);
    }
    let grad = from_buffer_start(grad)?;
    let cells = [x, w, stats, &grad].map(|t| Some(t.storage()));
    let grads = with_reads(cells, |[xs, ws, ss, gs]| match (xs, ws, ss, gs) {
        (
            Some(Storage::Gpu(xs)),
            Some(Storage::Gpu(ws)),
            Some(Storage::Gpu(ss)),
            Some(Storage::Gpu(gs)),
        ) => xs.batch_norm_backward(geo, ws, ss, gs).map(Some),
        _ => Ok(None),
    })?;
    let Some([dx, dw, db]) = grads else {
        return Ok(None);
    };
    let shapes = [x.shape(), w.shape(), w.shape()];
    Ok(Some(
        [dx, dw, db]
            .into_iter()
            .zip(shapes)
            .zip(need)
            .map(|((g, shape), needed)| {
                needed.then(|| Tensor::from_storage(Storage::Gpu(g), shape))
            })
            .collect(),
    ))
}
