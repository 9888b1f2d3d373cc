//! Average pooling as one op where its input is a contiguous f32 CPU tensor without a
//! tangent (the kernels of `cpu/pooling.rs`), the windows' mean elsewhere
//! (`nn::functional::avg_pool2d_composite`). Backward the fused kernel, or under
//! `create_graph` the composite's gradient.

use super::{composite_backward, host_tensor, on_host};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::cpu::pooling::PoolGeometry;
use crate::error::Result;
use crate::host::HostBuffer;
use crate::storage::Storage;
use crate::tensor::Tensor;

/// The mean of `x [N, C, H, W]` over each window, or `None` where the kernel does not take
/// `x`. The geometry is checked by the caller.
pub(crate) fn avg_pool2d(x: &Tensor, geometry: PoolGeometry) -> Result<Option<Tensor>> {
    let Some(y) = on_host([x], |[x]| {
        crate::cpu::pooling::avg_pool2d_forward(&geometry, x)
    }) else {
        return Ok(None);
    };
    let mut shape = x.shape().to_vec();
    shape[2..].copy_from_slice(&[geometry.oh, geometry.ow]);
    Tensor::from_op(
        Storage::Cpu(HostBuffer::F32(y)),
        &shape,
        || BackwardOp::AvgPool2d { geometry },
        &[x],
    )
    .map(Some)
}

/// The input's gradient from the output's.
pub(crate) fn avg_pool2d_backward(
    grad: &Tensor,
    inputs: &[Tensor],
    geometry: &PoolGeometry,
) -> Result<Vec<Option<Tensor>>> {
    if !is_grad_enabled() {
        let grad = grad.contiguous()?;
        if let Some(dx) = on_host([&grad], |[dy]| {
            crate::cpu::pooling::avg_pool2d_backward(geometry, dy)
        }) {
            return Ok(vec![Some(host_tensor(dx, inputs[0].shape()))]);
        }
    }
    composite_backward(grad, inputs, |ins| {
        crate::nn::functional::avg_pool2d_composite(&ins[0], geometry.k, geometry.stride)
    })
}
