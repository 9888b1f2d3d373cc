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
use crate::error::{Error, Result};

/// One dispatch of a kernel that gives each of `groups` rows or channels a workgroup
/// (`shaders/groups.wgsl`): fresh f32 outputs of `lens` elements, bound first, then
/// `inputs`. The outputs carry the inputs' open index checks.
fn per_group<const N: usize>(
    (op, kernel): (&'static str, Kernel),
    params: &[u32],
    groups: usize,
    lens: [usize; N],
    inputs: &[&GpuStorage],
) -> Result<[GpuStorage; N]> {
    let ctx = inputs
        .first()
        .ok_or_else(|| Error::invalid(op, "a kernel without operands"))?
        .ctx()
        .clone();
    let mut outputs = Vec::with_capacity(N);
    for len in lens {
        outputs.push(GpuStorage::alloc(&ctx, op, len, DType::F32)?);
    }
    let buffers: Vec<&wgpu::Buffer> = outputs
        .iter()
        .chain(inputs.iter().copied())
        .map(|s| s.buf.raw())
        .collect();
    let (x, y) = ctx.grid(groups as u64, true)?;
    ctx.dispatch(kernel, params, &buffers, (x, y, 1))?;
    let outputs: Vec<GpuStorage> = outputs
        .into_iter()
        .map(|s| s.with_lineage_of(inputs.iter().copied()))
        .collect();
    outputs
        .try_into()
        .map_err(|_| Error::invalid(op, "the kernel's outputs were miscounted"))
}

/// The metadata's geometry words of a batch norm kernel (every element's index checked to
/// fit the kernels' u32 arithmetic).
fn geometry(geo: &NormGeometry) -> Result<Vec<u32>> {
    const OP: &str = "batch_norm";
    u32_of(OP, geo.n * geo.c * geo.s)?;
    Ok(vec![
        u32_of(OP, geo.n)?,
        u32_of(OP, geo.c)?,
        u32_of(OP, geo.s)?,
    ])
}

/// The metadata's first words of a row kernel: the rows and their length (every element's
/// index checked to fit the kernels' u32 arithmetic).
fn rows_words(op: &'static str, (rows, d): (usize, usize)) -> Result<[u32; 2]> {
    u32_of(op, rows * d)?;
    Ok([u32_of(op, rows)?, u32_of(op, d)?])
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
        let mut p = geometry(geo)?;
        p.push((eps as f32).to_bits());
        let c = geo.c;
        per_group(
            ("batch_norm", Kernel::BatchNorm),
            &p,
            c,
            [geo.n * c * geo.s, 3 * c, c, c],
            &[self, weight, bias],
        )
    }

    /// `[dx, dw, db]` from contiguous f32 `dy` and the forward pass's `x` (this), `weight`
    /// and `stats`.
    pub(crate) fn batch_norm_backward(
        &self,
        geo: &NormGeometry,
        weight: &GpuStorage,
        stats: &GpuStorage,
        dy: &GpuStorage,
    ) -> Result<[GpuStorage; 3]> {
        let c = geo.c;
        per_group(
            ("batch_norm backward", Kernel::BatchNormBackward),
            &geometry(geo)?,
            c,
            [geo.n * c * geo.s, c, c],
            &[self, dy, stats, weight],
        )
    }

    /// `[y, stats]` for contiguous f32 rows `x` (this, `rows` of `d`) with the weight and the
    /// bias `[d]` where given: the output and each row's mean and `1 / sqrt(var + eps)` as
    /// `[rows, 2]`. A missing weight or bias binds `x`, unread.
    pub(crate) fn layer_norm(
        &self,
        (rows, d): (usize, usize),
        weight: Option<&GpuStorage>,
        bias: Option<&GpuStorage>,
        eps: f64,
    ) -> Result<[GpuStorage; 2]> {
        const OP: &str = "layer_norm";
        let mut p = rows_words(OP, (rows, d))?.to_vec();
        p.extend([
            (eps as f32).to_bits(),
            weight.is_some() as u32,
            bias.is_some() as u32,
        ]);
        let inputs = [self, weight.unwrap_or(self), bias.unwrap_or(self)];
        per_group(
            (OP, Kernel::LayerNorm),
            &p,
            rows,
            [rows * d, 2 * rows],
            &inputs,
        )
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
        let mut p = rows_words(OP, (rows, d))?.to_vec();
        p.push(weight.is_some() as u32);
        let inputs = [self, dy, stats, weight.unwrap_or(self)];
        let [dx] = per_group(
            (OP, Kernel::LayerNormBackward),
            &p,
            rows,
            [rows * d],
            &inputs,
        )?;
        Ok(dx)
    }

    /// Softmax (`log` false) or log-softmax of contiguous f32 rows (this, `rows` of `n`).
    pub(crate) fn softmax(&self, (rows, n): (usize, usize), log: bool) -> Result<GpuStorage> {
        const OP: &str = "softmax";
        let [w0, w1] = rows_words(OP, (rows, n))?;
        let p = [w0, w1, log as u32];
        let [y] = per_group((OP, Kernel::Softmax), &p, rows, [rows * n], &[self])?;
        Ok(y)
    }

    /// The input's gradient of [`GpuStorage::softmax`] from its output (this) and the
    /// output's contiguous gradient `g`.
    pub(crate) fn softmax_backward(
        &self,
        (rows, n): (usize, usize),
        log: bool,
        g: &GpuStorage,
    ) -> Result<GpuStorage> {
        const OP: &str = "softmax backward";
        let [w0, w1] = rows_words(OP, (rows, n))?;
        let p = [w0, w1, log as u32];
        let kernel = (OP, Kernel::SoftmaxBackward);
        let [dx] = per_group(kernel, &p, rows, [rows * n], &[self, g])?;
        Ok(dx)
    }
}
