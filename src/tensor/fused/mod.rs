//! Ops that run as one fused kernel on the CPU (`cpu/recurrent.rs`, `cpu/conv.rs`,
//! `cpu/norm.rs`, `cpu/layer_norm.rs`, `cpu/softmax.rs`, `cpu/pooling.rs`) where their
//! operands allow, composed from primitives elsewhere. What they share lives here: the
//! test for operands a fused kernel takes, its results as tensors, and the backward pass
//! under `create_graph`, which differentiates the op's composite form so that its gradient
//! can be differentiated again.

pub(crate) mod conv;
pub(crate) mod cross_entropy;
pub(crate) mod layer_norm;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod recurrent;
pub(crate) mod softmax;

use crate::autograd::BackwardOp;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::Result;
use crate::host::HostBuffer;
use crate::storage::{with_reads, Storage};
use crate::tensor::Tensor;

/// `f` over the f32 elements of `ts` when all are contiguous f32 CPU tensors without
/// tangents (`None` otherwise, and the caller composes the op from primitives).
pub(crate) fn on_host<const N: usize, R>(
    ts: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Option<R> {
    let fusable = ts.iter().all(|t| {
        matches!(t.device(), Device::Cpu)
            && t.dtype() == DType::F32
            && t.layout().is_contiguous()
            && t.0.tangent.is_none()
    });
    if !fusable {
        return None;
    }
    with_reads(ts.map(|t| Some(t.storage())), |storages| {
        let mut slices: [&[f32]; N] = [&[]; N];
        for (k, s) in storages.iter().enumerate() {
            let Some(Storage::Cpu(HostBuffer::F32(v))) = s else {
                return None;
            };
            let l = ts[k].layout();
            slices[k] = v.get(l.offset..l.offset + l.numel())?;
        }
        Some(f(slices))
    })
}

/// Whether the GPU's norm and softmax kernels (`gpu/norm.rs`) take `ts`: f32 GPU tensors
/// without tangents, each contiguous from the start of its buffer, while fusion is on
/// (`WGRAD_NO_FUSION=1` composes the op, as for the GPU's other fused kernels).
pub(crate) fn gpu_takes(ts: &[&Tensor]) -> bool {
    !crate::storage::fused::fusion_disabled()
        && ts.iter().all(|t| {
            matches!(t.device(), Device::Gpu(_))
                && t.dtype() == DType::F32
                && t.is_contiguous()
                && t.storage_offset() == 0
                && t.0.tangent.is_none()
        })
}

/// `t` as an operand of those kernels, which read it from the start of its buffer: `t`
/// itself where they take it, else a contiguous copy (a gradient that arrives as a view).
pub(crate) fn from_buffer_start(t: &Tensor) -> Result<Tensor> {
    if gpu_takes(&[t]) {
        Ok(t.clone())
    } else {
        t.deep_clone()
    }
}

/// A fused op on 16-bit float operands (all of one dtype): the f32 op on the operands
/// widened, its result rounded once to their dtype. PyTorch's kernels compute these ops in
/// f32 (opmath) and round once, and one f32 kernel is faster and more accurate than a
/// composite of 16-bit ops each rounding its own result. `None` when no operand is 16-bit
/// or their float dtypes differ (the op then reports the mismatch itself). The casts are
/// ordinary ops, so gradients flow back in the operands' dtype.
pub(crate) fn through_f32<const N: usize>(
    operands: [Option<&Tensor>; N],
    op: impl FnOnce([Option<&Tensor>; N]) -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    let mut floats = operands
        .iter()
        .flatten()
        .map(|t| t.dtype())
        .filter(|d| d.is_float());
    let Some(dtype) = floats.next().filter(|d| d.is_half()) else {
        return Ok(None);
    };
    if floats.any(|d| d != dtype) {
        return Ok(None);
    }
    let mut wide: [Option<Tensor>; N] = std::array::from_fn(|_| None);
    for (w, t) in wide.iter_mut().zip(operands) {
        *w = match t {
            Some(t) if t.dtype() == dtype => Some(t.to_dtype(DType::F32)?),
            Some(t) => Some(t.clone()),
            None => None,
        };
    }
    // The f32 op is the 16-bit op's implementation: autocast, which may have chosen the
    // 16-bit type for it, must not turn it back.
    let result = {
        let _as_written = crate::autocast::suspended();
        op(std::array::from_fn(|k| wide[k].as_ref()))?
    };
    result.to_dtype(dtype).map(Some)
}

/// The operand `through_f32` was given as `Some` (an `Err` naming `op` otherwise).
pub(crate) fn given<'a>(op: &'static str, t: Option<&'a Tensor>) -> Result<&'a Tensor> {
    t.ok_or_else(|| crate::error::Error::invalid(op, "an operand is missing"))
}

/// A result of a fused kernel as a tensor without a graph (a gradient, a workspace).
pub(crate) fn host_tensor(v: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_storage(Storage::Cpu(HostBuffer::F32(v)), shape)
}

/// The gradients of `composite(inputs)` for upstream `g`, recorded (this runs under
/// `create_graph`), for the inputs that require grad (`None` for the others).
///
/// The composite runs on aliases of the inputs, one new node each, so that the pass stops
/// at them: taken at the inputs themselves it would also follow an input's own history
/// into another input it was computed from, adding a path the outer pass counts already.
pub(crate) fn composite_backward(
    g: &Tensor,
    inputs: &[Tensor],
    composite: impl FnOnce(&[Tensor]) -> Result<Tensor>,
) -> Result<Vec<Option<Tensor>>> {
    let aliases: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.view_op(t.layout().clone(), || BackwardOp::Reshape))
        .collect::<Result<_>>()?;
    let out = composite(&aliases)?;
    let wanted: Vec<&Tensor> = aliases.iter().filter(|t| t.requires_grad()).collect();
    let mut grads =
        crate::autograd::gradients_of(&out, g.clone(), &wanted, true, true, true)?.into_iter();
    Ok(aliases
        .iter()
        .map(|t| {
            if t.requires_grad() {
                grads.next()
            } else {
                None
            }
        })
        .collect())
}
