//! BatchNorm's running statistics, updated in training by one fused program
//! (`gpu/kernels/fused.rs`) instead of six ops: one kernel on a GPU, one pass on the CPU,
//! with the same f32 operations in the same order as the ops, so the values are the ops'.

use crate::error::Result;
use crate::gpu::kernels::fused::{Node, Operand, Program};
use crate::op::BinaryOp::*;
use crate::tensor::Tensor;

/// `mean_r = mean_r (1 - m) + mean m; var_r = var_r (1 - m) + (var unbias) m`. Operands:
/// mean_r, var_r, mean, var (the batch's biased variance); parameters: 1 - m, m, unbias
/// (`n / (n - 1)`).
pub(crate) static RUNNING_STATS: Program = Program {
    name: "batch_norm_running_stats",
    operands: &[
        Operand::Write(6),
        Operand::Write(13),
        Operand::Read,
        Operand::Read,
    ],
    params: 3,
    nodes: &[
        Node::Load(0),
        Node::Param(0),
        Node::Binary(Mul, 0, 1),
        Node::Load(2),
        Node::Param(1),
        Node::Binary(Mul, 3, 4),
        Node::Binary(Add, 2, 5),
        Node::Load(1),
        Node::Binary(Mul, 7, 1),
        Node::Load(3),
        Node::Param(2),
        Node::Binary(Mul, 9, 10),
        Node::Binary(Mul, 11, 4),
        Node::Binary(Add, 8, 12),
    ],
};

/// Move the running statistics toward the batch's `mean` and biased `var` of `count`
/// values per channel, with `momentum`, in place (PyTorch's rule: the running variance
/// takes the unbiased estimate).
pub(crate) fn update(
    running_mean: &Tensor,
    running_var: &Tensor,
    (mean, var): (&Tensor, &Tensor),
    momentum: f64,
    count: usize,
) -> Result<()> {
    let m = momentum;
    let unbias = count as f64 / (count.max(2) - 1) as f64;
    let params = [(1.0 - m) as f32, m as f32, unbias as f32];
    let operands = [running_mean, running_var, mean, var];
    if crate::storage::fused::run(&RUNNING_STATS, &operands, &params)? {
        return Ok(());
    }
    // Other dtypes, views, fusion off: the ops the program stands for.
    let unbiased = var.mul_scalar(unbias)?;
    running_mean.mul_(1.0 - m)?.add_(&mean.mul_scalar(m)?)?;
    running_var.mul_(1.0 - m)?.add_(&unbiased.mul_scalar(m)?)?;
    Ok(())
}
