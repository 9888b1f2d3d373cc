//! The GPU's cross-entropy kernels (`shaders/cross_entropy*.wgsl`): the operands' layouts
//! as metadata, the dispatches, and the label check's flag. The tensor side is
//! `tensor/fused/cross_entropy.rs`.

use super::context::GroupUse;
use super::kernels::Kernel;
use super::ops::{u32_of, GpuStorage};
use crate::dtype::DType;
use crate::error::Result;
use crate::layout::Layout;

const OP: &str = "cross_entropy";

/// Offset, row stride and (where `columns`) the column stride of a 2-D or 1-D layout, as
/// kernel metadata.
fn strided(l: &Layout, columns: bool) -> Result<Vec<u32>> {
    let mut words = vec![u32_of(OP, l.offset)?];
    let count = if columns { 2 } else { 1 };
    for d in 0..count {
        words.push(u32_of(OP, l.strides.get(d).copied().unwrap_or(0))?);
    }
    Ok(words)
}

impl GpuStorage {
    /// The forward pass over these f32 logits `[N, C]` (layout `l`) and I64 `labels` `[N]`:
    /// a contiguous buffer of three rows of N values (loss, keep, log-sum-exp). A label out
    /// of range is reported by the index check at the next readback of the result, as a
    /// gather's index is.
    pub(crate) fn cross_entropy(
        &self,
        l: &Layout,
        labels: &GpuStorage,
        ll: &Layout,
        ignore_index: i64,
    ) -> Result<GpuStorage> {
        let ctx = self.ctx().clone();
        let (n, c) = (l.shape[0], l.shape[1]);
        let out = GpuStorage::alloc(&ctx, OP, 3 * n, DType::F32)?;
        let mut p = vec![u32_of(OP, n)?, u32_of(OP, c)?];
        p.extend(strided(l, true)?);
        p.extend(strided(ll, false)?);
        let words = ignore_index as u64;
        p.extend([words as u32, (words >> 32) as u32]);
        let (x, y) = ctx.grid(n as u64, true)?;
        let (id, flag) = ctx.index_flag();
        ctx.dispatch_with(
            Kernel::CrossEntropy,
            &p,
            &[out.buf.raw(), self.buf.raw(), labels.buf.raw(), &flag],
            (x, y, 1),
            GroupUse::Once,
        )?;
        let mut out = out.with_lineage_of([self, labels]);
        out.checks.push(id);
        Ok(out)
    }

    /// The logits' gradient, contiguous `[N, C]`: these logits (`l`), their labels, the
    /// forward pass's rows `saved` (contiguous), each row's upstream gradient in `g` (`gl`: a
    /// 0-d or 1-D layout) and, for a mean, the count to divide by (a buffer and the offset of
    /// its value).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn cross_entropy_backward(
        &self,
        l: &Layout,
        (labels, ll): (&GpuStorage, &Layout),
        saved: &GpuStorage,
        (g, gl): (&GpuStorage, &Layout),
        divisor: Option<(&GpuStorage, usize)>,
    ) -> Result<GpuStorage> {
        let ctx = self.ctx().clone();
        let (n, c) = (l.shape[0], l.shape[1]);
        let count = n * c;
        let dx = GpuStorage::alloc(&ctx, OP, count, DType::F32)?;
        if count == 0 {
            return Ok(dx);
        }
        let mut p = vec![u32_of(OP, count)?, u32_of(OP, c)?, u32_of(OP, n)?];
        p.extend(strided(l, true)?);
        p.extend(strided(ll, false)?);
        p.extend(strided(gl, false)?);
        let (by, divisor_buf, at) = match divisor {
            Some((d, at)) => (1, d, at),
            None => (0, g, 0),
        };
        p.extend([by, u32_of(OP, at)?]);
        let (x, y) = ctx.grid(count as u64, false)?;
        ctx.dispatch(
            Kernel::CrossEntropyBackward,
            &p,
            &[
                dx.buf.raw(),
                self.buf.raw(),
                labels.buf.raw(),
                saved.buf.raw(),
                g.buf.raw(),
                divisor_buf.buf.raw(),
            ],
            (x, y, 1),
        )?;
        Ok(dx.with_lineage_of([self, labels, saved, g, divisor_buf]))
    }
}
