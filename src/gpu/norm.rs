//! The GPU's batch normalisation kernels (`shaders/batch_norm*.wgsl`), one workgroup per
//! channel: the forward pass computes the channel's statistics and normalises it in one
//! dispatch, the backward pass sums its gradients and computes the input's in one more.
//! The tensor side is `tensor/fused/norm.rs`.

use super::kernels::Kernel;
use super::ops::{u32_of, GpuStorage};
use crate::cpu::norm::NormGeometry;
use crate::dtype::DType;
use crate::error::Result;

const OP: &str = "batch_norm";

/// The metadata's geometry words, and the workgroup grid (one per channel).
fn geometry(s: &GpuStorage, geo: &NormGeometry) -> Result<(Vec<u32>, (u32, u32))> {
    let words = vec![u32_of(OP, geo.n)?, u32_of(OP, geo.c)?, u32_of(OP, geo.s)?];
    // Every element's index must fit the kernels' u32 arithmetic.
    u32_of(OP, geo.n * geo.c * geo.s)?;
    let grid = s.ctx().grid(geo.c as u64, true)?;
    Ok((words, grid))
}

impl GpuStorage {
    /// `[y, stats, mean, var]` for contiguous f32 `x` (this, of `geo`), `weight` and
    /// `bias` `[C]`: the output, each channel's mean, biased variance and
    /// `1 / sqrt(var + eps)` as `[3, C]`, and the mean and the variance `[C]` each in a
    /// buffer of its own.
    pub(crate) fn batch_norm(
        &self,
        geo: &NormGeometry,
        weight: &GpuStorage,
        bias: &GpuStorage,
        eps: f64,
    ) -> Result<[GpuStorage; 4]> {
        let ctx = self.ctx().clone();
        let (mut p, (x, y)) = geometry(self, geo)?;
        p.push((eps as f32).to_bits());
        let out = GpuStorage::alloc(&ctx, OP, geo.n * geo.c * geo.s, DType::F32)?;
        let stats = GpuStorage::alloc(&ctx, OP, 3 * geo.c, DType::F32)?;
        let mean = GpuStorage::alloc(&ctx, OP, geo.c, DType::F32)?;
        let var = GpuStorage::alloc(&ctx, OP, geo.c, DType::F32)?;
        ctx.dispatch(
            Kernel::BatchNorm,
            &p,
            &[
                out.buf.raw(),
                stats.buf.raw(),
                mean.buf.raw(),
                var.buf.raw(),
                self.buf.raw(),
                weight.buf.raw(),
                bias.buf.raw(),
            ],
            (x, y, 1),
        )?;
        let inputs = [self, weight, bias];
        Ok([out, stats, mean, var].map(|s| s.with_lineage_of(inputs)))
    }

    /// `(dx, dw, db)` from contiguous f32 `dy` and the forward pass's `x` (this), `weight`
    /// and `stats`.
    pub(crate) fn batch_norm_backward(
        &self,
        geo: &NormGeometry,
        weight: &GpuStorage,
        stats: &GpuStorage,
        dy: &GpuStorage,
    ) -> Result<[GpuStorage; 3]> {
        let ctx = self.ctx().clone();
        let (p, (x, y)) = geometry(self, geo)?;
        let dx = GpuStorage::alloc(&ctx, OP, geo.n * geo.c * geo.s, DType::F32)?;
        let dw = GpuStorage::alloc(&ctx, OP, geo.c, DType::F32)?;
        let db = GpuStorage::alloc(&ctx, OP, geo.c, DType::F32)?;
        ctx.dispatch(
            Kernel::BatchNormBackward,
            &p,
            &[
                dx.buf.raw(),
                dw.buf.raw(),
                db.buf.raw(),
                self.buf.raw(),
                dy.buf.raw(),
                stats.buf.raw(),
                weight.buf.raw(),
            ],
            (x, y, 1),
        )?;
        let inputs = [self, weight, stats, dy];
        Ok([dx, dw, db].map(|s| s.with_lineage_of(inputs)))
    }
}
