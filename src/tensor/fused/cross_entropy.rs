//! Cross-entropy of f32 logits `[N, C]` against I64 class labels as one op: one kernel
//! forward and one backward (`cpu/cross_entropy.rs`, `shaders/cross_entropy*.wgsl`), where
//! the composite (log-softmax, gather, masks, their gradients) is about eighteen kernels on
//! a GPU and as many passes over memory on the CPU. `nn::CrossEntropyLoss` takes this path
//! without class weights or label smoothing, for logits without a tangent; elsewhere it
//! composes the loss from primitives, which is also what the backward pass differentiates
//! under `create_graph`.
//!
//! The forward kernel writes three rows of N values: each row's loss (0 where the label is
//! ignored), 1 or 0 for a label that counts, and the row's log-sum-exp. The loss is the
//! first row, its sum, or that sum over the sum of the second (the mean over the labels
//! that count, as PyTorch divides); the backward rule reads the logits and the other rows.

use super::{composite_backward, host_tensor};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::host::HostBuffer;
use crate::nn::Reduction;
use crate::storage::{with_reads, Storage};
use crate::tensor::Tensor;

/// What the backward rule keeps besides the logits (`BackwardOp::CrossEntropy`).
#[derive(Debug, Clone)]
pub struct Saved {
    /// The labels `[N]`.
    pub labels: Tensor,
    pub ignore_index: i64,
    pub reduction: Reduction,
    /// The forward kernel's rows `[3, N]`: loss, keep, log-sum-exp.
    pub rows: Tensor,
    /// For a mean: the sums of the first two rows `[2]` (the second divides).
    pub totals: Option<Tensor>,
}

/// Whether the kernels take these operands: 2-D f32 logits without a tangent and I64 labels
/// `[N]`, on one device, neither empty; on the CPU both contiguous. A GPU composes the loss
/// while fusion is off (`WGRAD_NO_FUSION=1`), as its other fused kernels do.
fn takes(logits: &Tensor, labels: &Tensor) -> bool {
    let [n, c] = logits.shape() else {
        return false;
    };
    let on_cpu = matches!(logits.device(), Device::Cpu);
    if !on_cpu && crate::storage::fused::fusion_disabled() {
        return false;
    }
    logits.dtype() == DType::F32
        && logits.0.tangent.is_none()
        && labels.dtype() == DType::I64
        && labels.shape() == [*n]
        && logits.device() == labels.device()
        && *n > 0
        && *c > 0
        && (!on_cpu || (logits.is_contiguous() && labels.is_contiguous()))
}

/// The loss of `logits` against `labels` reduced by `reduction` as one op, or `None` where
/// the kernels do not take the operands (the caller composes it). The labels are checked
/// by the caller (their range on the host); a GPU kernel checks them again, for captured
/// steps, which cannot read them back.
pub(crate) fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Option<Tensor>> {
    if !takes(logits, labels) {
        return Ok(None);
    }
    let _no_graph = crate::no_grad();
    let Some(rows) = forward_rows(logits, labels, ignore_index)? else {
        return Ok(None);
    };
    let first = rows.select(0, 0)?;
    let (value, totals) = match reduction {
        // A copy: the rows the rule reads are not the caller's to modify.
        Reduction::None => (first.deep_clone()?, None),
        Reduction::Sum => (first.sum()?, None),
        Reduction::Mean => {
            let totals = rows.narrow(0, 0, 2)?.sum_dims([1], false)?;
            let mean = totals.select(0, 0)?.div(&totals.select(0, 1)?)?;
            (mean, Some(totals))
        }
    };
    drop(_no_graph);
    Tensor::made_by(
        value.storage().clone(),
        value.layout().clone(),
        DType::F32,
        logits.device().clone(),
        || {
            BackwardOp::CrossEntropy(Box::new(Saved {
                labels: labels.clone(),
                ignore_index,
                reduction,
                rows,
                totals,
            }))
        },
        &[logits],
    )
    .map(Some)
}

/// The forward kernel's rows `[3, N]`, without a graph.
fn forward_rows(logits: &Tensor, labels: &Tensor, ignore_index: i64) -> Result<Option<Tensor>> {
    let (n, c) = (logits.shape()[0], logits.shape()[1]);
    crate::storage::host_room("cross_entropy", 3 * n, DType::F32)?;
    let (xl, ll) = (logits.layout(), labels.layout());
    let storage = with_reads(
        [Some(logits.storage()), Some(labels.storage())],
        |[x, t]| -> Result<Option<Storage>> {
            match (x, t) {
                (Some(Storage::Gpu(x)), Some(Storage::Gpu(t))) => Ok(Some(Storage::Gpu(
                    x.cross_entropy(xl, t, ll, ignore_index)?,
                ))),
                (
                    Some(Storage::Cpu(HostBuffer::F32(x))),
                    Some(Storage::Cpu(HostBuffer::I64(t))),
                ) => {
                    let (Some(x), Some(t)) = (
                        x.get(xl.offset..xl.offset + n * c),
                        t.get(ll.offset..ll.offset + n),
                    ) else {
                        return Ok(None);
                    };
                    let rows = crate::cpu::cross_entropy::forward(x, c, t, ignore_index).map_err(
                        |bad| Error::IndexOutOfRange {
                            op: "cross_entropy",
                            index: bad,
                            dim: 1,
                            size: c,
                            shape: vec![n, c],
                        },
                    )?;
                    Ok(Some(Storage::Cpu(HostBuffer::F32(rows))))
                }
                // A failed operand, or one the kernels do not take: the composite reports it.
                _ => Ok(None),
            }
        },
    )?;
    Ok(storage.map(|s| Tensor::from_storage(s, &[3, n])))
}

/// The logits' gradient for upstream `g` (inputs: the logits).
pub(crate) fn cross_entropy_backward(
    g: &Tensor,
    inputs: &[Tensor],
    saved: &Saved,
) -> Result<Vec<Option<Tensor>>> {
    let x = &inputs[0];
    g.live()?;
    if is_grad_enabled() {
        // create_graph: differentiate the composite, whose gradient is differentiable.
        let s = saved.clone();
        return composite_backward(g, inputs, move |ins| {
            crate::nn::loss::cross_entropy_composite(
                &ins[0],
                &s.labels,
                s.ignore_index,
                s.reduction,
            )
        });
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    crate::storage::host_room("cross_entropy backward", n * c, DType::F32)?;
    let dx = match x.device() {
        Device::Cpu => cpu_backward(g, x, saved)?,
        Device::Gpu(_) => gpu_backward(g, x, saved)?,
    };
    Ok(vec![Some(dx)])
}

fn cpu_backward(g: &Tensor, x: &Tensor, saved: &Saved) -> Result<Tensor> {
    let (n, c) = (x.shape()[0], x.shape()[1]);
    // Each row's upstream gradient: the loss's per row, or the scalar's (over the count).
    let mut per_row = g.to_vec::<f32>()?;
    if per_row.len() == 1 {
        let mut value = per_row[0];
        if let Some(totals) = &saved.totals {
            value /= totals.select(0, 1)?.item::<f32>()?;
        }
        per_row = vec![value; n];
    }
    let (xl, ll) = (x.layout(), saved.labels.layout());
    let dx = with_reads(
        [
            Some(x.storage()),
            Some(saved.labels.storage()),
            Some(saved.rows.storage()),
        ],
        |[xs, ts, rs]| {
            let (
                Some(Storage::Cpu(HostBuffer::F32(xs))),
                Some(Storage::Cpu(HostBuffer::I64(ts))),
                Some(Storage::Cpu(HostBuffer::F32(rs))),
            ) = (xs, ts, rs)
            else {
                return None;
            };
            let xs = xs.get(xl.offset..xl.offset + n * c)?;
            let ts = ts.get(ll.offset..ll.offset + n)?;
            let rs = rs.get(..3 * n)?;
            Some(crate::cpu::cross_entropy::backward(xs, c, ts, rs, &per_row))
        },
    )
    .ok_or_else(|| Error::invalid("cross_entropy backward", "the saved operands moved"))?;
    Ok(host_tensor(dx, &[n, c]))
}

fn gpu_backward(g: &Tensor, x: &Tensor, saved: &Saved) -> Result<Tensor> {
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let labels = &saved.labels;
    let totals = saved.totals.as_ref().unwrap_or(g);
    let (xl, ll, gl) = (x.layout(), labels.layout(), g.layout());
    let divisor_at = saved
        .totals
        .as_ref()
        .map(|t| t.layout().offset + t.stride()[0]);
    let dx = with_reads(
        [
            Some(x.storage()),
            Some(labels.storage()),
            Some(saved.rows.storage()),
            Some(g.storage()),
            Some(totals.storage()),
        ],
        |[xs, ts, rs, gs, ds]| -> Result<Option<Storage>> {
            let (
                Some(Storage::Gpu(xs)),
                Some(Storage::Gpu(ts)),
                Some(Storage::Gpu(rs)),
                Some(Storage::Gpu(gs)),
                Some(Storage::Gpu(ds)),
            ) = (xs, ts, rs, gs, ds)
            else {
                return Ok(None);
            };
            let divisor = divisor_at.map(|at| (ds, at));
            Ok(Some(Storage::Gpu(xs.cross_entropy_backward(
                xl,
                (ts, ll),
                rs,
                (gs, gl),
                divisor,
            )?)))
        },
    )?
    .ok_or_else(|| Error::invalid("cross_entropy backward", "the saved operands moved"))?;
    Ok(Tensor::from_storage(dx, &[n, c]))
}
