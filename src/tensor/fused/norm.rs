//! Batch normalisation with the batch's statistics (training mode) as one op where its
//! operands are contiguous f32 CPU tensors without tangents (the kernels of `cpu/norm.rs`),
//! composed from primitives elsewhere (`nn::functional::batch_norm_composite`). The
//! statistics the forward pass computed are kept for the backward rule, which runs the
//! fused gradient kernel or, under `create_graph`, differentiates the composite.

use super::{composite_backward, host_tensor, on_host};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::cpu::norm::NormGeometry;
use crate::error::Result;
use crate::host::HostBuffer;
use crate::storage::Storage;
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
