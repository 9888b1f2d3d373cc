//! Running a fused elementwise expression (`storage/lazy.rs`, `kernels/lazy.rs`): one
//! dispatch computing every output from the tensor operands, or a reduction reading the
//! expression's value as it computes it.

use super::context::GpuContext;
use super::kernels::lazy::LazyProgram;
use super::kernels::Kernel;
use super::ops::{elementwise_params, scalar_words, GpuStorage, MatmulPlan, ReduceInput};
use crate::dtype::{DType, Scalar};
use crate::error::Result;
use crate::layout::Layout;
use crate::op::ReduceOp;
use std::sync::Arc;

/// A tensor operand of a fused kernel: its buffer, the view read, and the open index checks
/// of its values.
pub(crate) struct FusedRead {
    pub buffer: wgpu::Buffer,
    pub layout: Layout,
    pub checks: Vec<u64>,
}

/// A program's input: the shape it runs over, its tensor reads (its `Load(k)` reads
/// `reads[k]`) and its numbers (its `Param(k)` is `scalars[k]`).
pub(crate) type ProgramInput<'a> = (&'a [usize], &'a [FusedRead], &'a [(Scalar, DType)]);

/// Compute `program` and return its outputs, fresh and contiguous.
pub(crate) fn run(
    ctx: &Arc<GpuContext>,
    program: LazyProgram,
    (shape, reads, scalars): ProgramInput<'_>,
) -> Result<Vec<GpuStorage>> {
    const OP: &str = "fused elementwise";
    let n: usize = shape.iter().product();
    let outputs = allocate(ctx, OP, &program, n, reads)?;
    if n == 0 {
        return Ok(outputs);
    }
    let params = metadata(OP, shape, reads, scalars)?;
    let mut buffers: Vec<&wgpu::Buffer> = outputs.iter().map(|o| o.buf.raw()).collect();
    buffers.extend(reads.iter().map(|r| &r.buffer));
    let kernel = Kernel::Lazy(program.intern());
    let (x, y) = ctx.grid(n as u64, false)?;
    ctx.dispatch(kernel, &params, &buffers, (x, y, 1))?;
    Ok(outputs)
}

/// Compute `program`, a matmul's epilogue, in the matmul kernel of `plan` over
/// `operands` (A and B), and return its outputs, fresh and contiguous.
pub(crate) fn run_product(
    ctx: &Arc<GpuContext>,
    program: LazyProgram,
    (shape, reads, scalars): ProgramInput<'_>,
    operands: &[FusedRead; 2],
    plan: &MatmulPlan,
) -> Result<Vec<GpuStorage>> {
    const OP: &str = "matmul";
    let n: usize = shape.iter().product();
    let all: Vec<&FusedRead> = operands.iter().chain(reads).collect();
    let outputs = allocate(ctx, OP, &program, n, all)?;
    let mut buffers: Vec<&wgpu::Buffer> = operands.iter().map(|r| &r.buffer).collect();
    buffers.extend(outputs.iter().map(|o| o.buf.raw()));
    if program.is_bare_product() {
        // The product alone: the plain kernel stores it, four lanes at a time.
        plan.dispatch(ctx, plan.kernel, &buffers, &[])?;
        return Ok(outputs);
    }
    let params = metadata(OP, shape, reads, scalars)?;
    buffers.extend(reads.iter().map(|r| &r.buffer));
    let kernel = Kernel::MatmulFused(plan.vec4_modes(), program.intern());
    plan.dispatch(ctx, kernel, &buffers, &params)?;
    Ok(outputs)
}

/// The fresh outputs of `program` over `n` elements, with the open index checks of what
/// it reads.
fn allocate<'a>(
    ctx: &Arc<GpuContext>,
    op: &'static str,
    program: &LazyProgram,
    n: usize,
    reads: impl IntoIterator<Item = &'a FusedRead>,
) -> Result<Vec<GpuStorage>> {
    let checks = lineage(ctx, reads);
    let mut outputs = Vec::with_capacity(program.outputs.len());
    for &node in &program.outputs {
        let dtype = program.nodes[node as usize].1;
        let mut out = GpuStorage::alloc(ctx, op, n, dtype)?;
        out.checks = checks.clone();
        outputs.push(out);
    }
    Ok(outputs)
}

/// Reduce the value of `program` (its first output, over `shape`) over `dims` with `op`,
/// computing each element as the reduction reads it: the value is never stored.
pub(crate) fn reduce(
    ctx: &Arc<GpuContext>,
    program: LazyProgram,
    (shape, reads, scalars): (&[usize], &[FusedRead], &[(Scalar, DType)]),
    op: ReduceOp,
    dims: &[usize],
) -> Result<GpuStorage> {
    const OP: &str = "fused reduction";
    let input = ReduceInput::Fused {
        program: program.intern(),
        reads: reads.iter().map(|r| &r.buffer).collect(),
        metadata: metadata(OP, shape, reads, scalars)?,
    };
    let layout = Layout::contiguous(shape);
    let mut out = GpuStorage::reduce_with(ctx, op, DType::F32, &layout, dims, &input)?;
    out.checks = lineage(ctx, reads);
    Ok(out)
}

/// A program's parameters over `shape`: the elementwise metadata (operand 0 for its
/// contiguous outputs, then its reads) and its numbers' words.
fn metadata(
    op: &'static str,
    shape: &[usize],
    reads: &[FusedRead],
    scalars: &[(Scalar, DType)],
) -> Result<Vec<u32>> {
    let out = Layout::contiguous(shape);
    let mut layouts = vec![&out];
    layouts.extend(reads.iter().map(|r| &r.layout));
    let words: Vec<u32> = scalars
        .iter()
        .flat_map(|&(v, d)| scalar_words(v, d))
        .collect();
    elementwise_params(op, shape, &layouts, &words)
}

/// The open index checks of the values a program reads: those of what it computes.
fn lineage<'a>(ctx: &Arc<GpuContext>, reads: impl IntoIterator<Item = &'a FusedRead>) -> Vec<u64> {
    let lineage: Vec<u64> = reads
        .into_iter()
        .flat_map(|r| r.checks.iter().copied())
        .collect();
    if lineage.is_empty() {
        return lineage;
    }
    ctx.open_checks(lineage.into_iter())
}
