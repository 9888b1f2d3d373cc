//! The GPU's normalisation kernels. Batch norm (`shaders/batch_norm*.wgsl`) gives each
//! channel a workgroup: the forward pass computes the channel's statistics and normalises
//! it in one dispatch, the backward pass sums its gradients and computes the input's in one
//! more. Layer norm (`shaders/layer_norm*.wgsl`) and softmax (`shaders/softmax*.wgsl`) give
//! each row a workgroup, forward and for the input's gradient. The tensor sides are
//! `tensor/fused/norm.rs`, `tensor/fused/layer_norm.rs` and `tensor/fused/softmax.rs`.

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

impl GpuStorage {
    /// `[y, stats]` for contiguous f32 rows `x` (this, `rows` of `d`) with the weight and the
    /// bias `[d]` where given: the output and each row's mean and `1 / sqrt(var + eps)` as
    /// `[rows, 2]`.
    pub(crate) fn layer_norm(
        &self,
        (rows, d): (usize, usize),
        weight: Option<&GpuStorage>,
        bias: Option<&GpuStorage>,
        eps: f64,
    ) -> Result<[GpuStorage; 2]> {
        const OP: &str = "layer_norm";
        let ctx = self.ctx().clone();
        u32_of(OP, rows * d)?;
        let p = [
            u32_of(OP, rows)?,
            u32_of(OP, d)?,
            (eps as f32).to_bits(),
            weight.is_some() as u32,
            bias.is_some() as u32,
        ];
        let y = GpuStorage::alloc(&ctx, OP, rows * d, DType::F32)?;
        let stats = GpuStorage::alloc(&ctx, OP, 2 * rows, DType::F32)?;
        let (w, b) = (weight.unwrap_or(self), bias.unwrap_or(self));
        let (gx, gy) = ctx.grid(rows as u64, true)?;
        ctx.dispatch(
            Kernel::LayerNorm,
            &p,
            &[
                y.buf.raw(),
                stats.buf.raw(),
                self.buf.raw(),
                w.buf.raw(),
                b.buf.raw(),
            ],
            (gx, gy, 1),
        )?;
        let inputs = [self, w, b];
        Ok([y, stats].map(|s| s.with_lineage_of(inputs)))
    }

    /// The input's gradient of [`GpuStorage::layer_norm`] from contiguous f32 `dy`, this
    /// `x`, the weight where given and the forward pass's `stats`.
    pub(crate) fn layer_norm_backward(
        &self,
        (rows, d): (usize, usize),
        weight: Option<&GpuStorage>,
        stats: &GpuStorage,
        dy: &GpuStorage,
    ) -> Result<GpuStorage> {
        const OP: &str = "layer_norm backward";
        let ctx = self.ctx().clone();
        u32_of(OP, rows * d)?;
        let p = [u32_of(OP, rows)?, u32_of(OP, d)?, weight.is_some() as u32];
        let dx = GpuStorage::alloc(&ctx, OP, rows * d, DType::F32)?;
        let w = weight.unwrap_or(self);
        let (gx, gy) = ctx.grid(rows as u64, true)?;
        ctx.dispatch(
            Kernel::LayerNormBackward,
            &p,
            &[
                dx.buf.raw(),
                self.buf.raw(),
                dy.buf.raw(),
                stats.buf.raw(),
                w.buf.raw(),
            ],
            (gx, gy, 1),
        )?;
        Ok(dx.with_lineage_of([self, w, stats, dy]))
    }
}

impl GpuStorage {
    /// Softmax (`log` false) or log-softmax of contiguous f32 rows (this, `rows` of `n`).
    pub(crate) fn softmax(&self, (rows, n): (usize, usize), log: bool) -> Result<GpuStorage> {
        self.row_kernel(Kernel::Softmax, (rows, n), log, &[])
    }

    /// The input's gradient of [`GpuStorage::softmax`] from its output (this) and the
    /// output's contiguous gradient `g`.
    pub(crate) fn softmax_backward(
        &self,
        (rows, n): (usize, usize),
        log: bool,
        g: &GpuStorage,
    ) -> Result<GpuStorage> {
        self.row_kernel(Kernel::SoftmaxBackward, (rows, n), log, &[g])
    }

    /// One of the softmax kernels over `rows` of `n`: a workgroup per row reading this and
    /// `more`, writing a buffer like this.
    fn row_kernel(
        &self,
        kernel: Kernel,
        (rows, n): (usize, usize),
        log: bool,
        more: &[&GpuStorage],
    ) -> Result<GpuStorage> {
        const OP: &str = "softmax";
        let ctx = self.ctx().clone();
        u32_of(OP, rows * n)?;
        let p = [u32_of(OP, rows)?, u32_of(OP, n)?, log as u32];
        let out = GpuStorage::alloc(&ctx, OP, rows * n, DType::F32)?;
        let mut buffers = vec![out.buf.raw(), self.buf.raw()];
        buffers.extend(more.iter().map(|s| s.buf.raw()));
        let (gx, gy) = ctx.grid(rows as u64, true)?;
        ctx.dispatch(kernel, &p, &buffers, (gx, gy, 1))?;
        Ok(out.with_lineage_of(std::iter::once(self).chain(more.iter().copied())))
    }
}
