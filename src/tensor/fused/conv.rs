//! A 2-D convolution as one op where its operands are contiguous f32 CPU tensors without
//! tangents (the kernels of `cpu/conv.rs`), composed from primitives elsewhere (a GPU,
//! views, dual tensors: `nn::functional::conv2d_composite`). The backward rule runs the
//! fused gradient kernel, or, under `create_graph`, differentiates the composite so that
//! the gradient can be differentiated again.

use super::{composite_backward, host_tensor, on_host};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::cpu::conv::ConvGeometry;
use crate::error::Result;
use crate::host::HostBuffer;
use crate::nn::functional::ConvArgs;
use crate::storage::Storage;
use crate::tensor::Tensor;

/// `x` convolved with `w` plus `b` as one fused op, or `None` where the kernels do not
/// take these operands (the caller composes it). Shapes are checked by the caller.
pub(crate) fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    geometry: ConvGeometry,
    args: ConvArgs,
) -> Result<Option<Tensor>> {
    let g = geometry;
    if [g.n, g.c, g.o, g.oh, g.ow].contains(&0) || !matches!(x.device(), crate::Device::Cpu) {
        return Ok(None);
    }
    // The output (and a thread's columns) must fit in host memory: an error, not an abort.
    let out_len = [g.o, g.oh, g.ow]
        .iter()
        .try_fold(g.n, |acc, &d| acc.checked_mul(d));
    let cols_len = [g.kh, g.kw, g.oh, g.ow]
        .iter()
        .try_fold(g.c / g.groups.max(1), |acc, &d| acc.checked_mul(d));
    for len in [out_len, cols_len] {
        let len = len.ok_or_else(|| {
            crate::error::Error::shapes(
                "conv2d",
                x.shape(),
                w.shape(),
                "the output's size overflows",
            )
        })?;
        crate::storage::host_room("conv2d", len, crate::dtype::DType::F32)?;
    }
    let y = match b {
        Some(b) => on_host([x, w, b], |[x, w, b]| {
            crate::cpu::conv::conv2d_forward(&g, x, w, Some(b))
        }),
        None => on_host([x, w], |[x, w]| {
            crate::cpu::conv::conv2d_forward(&g, x, w, None)
        }),
    };
    let Some(y) = y else {
        return Ok(None);
    };
    let inputs: Vec<&Tensor> = [x, w].into_iter().chain(b).collect();
    Tensor::from_op(
        Storage::Cpu(HostBuffer::F32(y)),
        &[g.n, g.o, g.oh, g.ow],
        || BackwardOp::Conv2d { geometry, args },
        &inputs,
    )
    .map(Some)
}

/// The gradients of the input, the weight and (where given) the bias from the output's.
pub(crate) fn conv2d_backward(
    grad: &Tensor,
    inputs: &[Tensor],
    geometry: &ConvGeometry,
    args: ConvArgs,
) -> Result<Vec<Option<Tensor>>> {
    let (x, w, b) = (&inputs[0], &inputs[1], inputs.get(2));
    if !is_grad_enabled() {
        let grad = grad.contiguous()?;
        let need = [
            x.requires_grad(),
            w.requires_grad(),
            b.is_some_and(|b| b.requires_grad()),
        ];
        if let Some([dx, dw, db]) = on_host([x, w, &grad], |[x, w, dy]| {
            crate::cpu::conv::conv2d_backward(geometry, x, w, dy, need)
        }) {
            let mut grads = vec![
                dx.map(|v| host_tensor(v, x.shape())),
                dw.map(|v| host_tensor(v, w.shape())),
            ];
            if let Some(b) = b {
                grads.push(db.map(|v| host_tensor(v, b.shape())));
            }
            return Ok(grads);
        }
    }
    composite_backward(grad, inputs, |ins| {
        crate::nn::functional::conv2d_composite(&ins[0], &ins[1], ins.get(2), args)
    })
}
