//! The primitive ops on GPU buffers: metadata packing and one dispatch per op.

use super::context::{GpuBuffer, GpuContext, GroupUse};
use super::kernels::{
    gpu_size, partial_size, subgroup_capable, unary_output, Indexing, Kernel, MapOp, ReduceStage,
};
use crate::backend::{Arg, Backend};
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::host::HostBuffer;
use crate::layout::{split_reduced, Layout, Merged};
use crate::op::{BinaryOp, CmpOp, FillKind, ReduceOp, ScalarSide, UnaryOp};
use crate::rng::Generator;
use std::sync::Arc;

/// Where a reduction reads its input.
pub(crate) enum ReduceInput<'a> {
    /// A buffer, through the reduction's layout.
    Buffer(&'a wgpu::Buffer),
    /// Fused program `program` (`kernels/lazy.rs`), computed as it is read from `reads`
    /// with `metadata` (elementwise metadata over the reduction's input shape).
    Fused {
        program: u32,
        reads: Vec<&'a wgpu::Buffer>,
        metadata: Vec<u32>,
    },
}

impl<'a> ReduceInput<'a> {
    /// The kernel of a reduction stage reading this input into `out`, its parameters (the
    /// reduction's `p`, then a program's metadata) and its buffers.
    fn reading(
        &self,
        op: ReduceOp,
        dtype: DType,
        stage: ReduceStage,
        subgroups: bool,
        mut p: Vec<u32>,
        out: &'a wgpu::Buffer,
    ) -> (Kernel, Vec<u32>, Vec<&'a wgpu::Buffer>) {
        match self {
            ReduceInput::Buffer(b) => {
                (Kernel::Reduce(op, dtype, stage, subgroups), p, vec![out, b])
            }
            ReduceInput::Fused {
                program,
                reads,
                metadata,
            } => {
                p.extend_from_slice(metadata);
                let mut buffers = vec![out];
                buffers.extend(reads.iter().copied());
                (
                    Kernel::ReduceFused(op, stage, subgroups, *program),
                    p,
                    buffers,
                )
            }
        }
    }
}

/// Elements per workgroup slice of a long reduction.
const SLICE: usize = 8192;

/// A tensor buffer on a GPU: elements of `dtype` (`gpu_size` bytes each: 8 for I64, 4 else).
#[derive(Debug)]
pub struct GpuStorage {
    pub(crate) buf: GpuBuffer,
    pub(crate) dtype: DType,
    /// The index kernels this buffer's values come from whose out-of-range check is not
    /// known clean yet (see `context::IndexChecks`); usually empty.
    pub(crate) checks: Vec<u64>,
}

pub(super) fn u32_of(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::BufferTooLarge {
        op,
        bytes: v as u64 * 4,
        limit: u32::MAX as u64,
    })
}

/// Elementwise metadata: count, rank, merged shape, then offset and strides per buffer
/// operand (operand 0 is the output), then the words of the scalar operands.
pub(super) fn elementwise_params(
    op: &'static str,
    shape: &[usize],
    layouts: &[&Layout],
    scalars: &[u32],
) -> Result<Vec<u32>> {
    fn merged<const K: usize>(shape: &[usize], layouts: &[&Layout]) -> Merged<K> {
        let strides: [&[usize]; K] = std::array::from_fn(|k| layouts[k].strides.as_slice());
        let offsets: [usize; K] = std::array::from_fn(|k| layouts[k].offset);
        Merged::new(shape, strides, offsets)
    }
    let (sizes, operands): (Vec<usize>, Vec<(usize, Vec<usize>)>) = match layouts.len() {
        1 => merged::<1>(shape, layouts).into_parts(),
        2 => merged::<2>(shape, layouts).into_parts(),
        3 => merged::<3>(shape, layouts).into_parts(),
        4 => merged::<4>(shape, layouts).into_parts(),
        5 => merged::<5>(shape, layouts).into_parts(),
        6 => merged::<6>(shape, layouts).into_parts(),
        7 => merged::<7>(shape, layouts).into_parts(),
        8 => merged::<8>(shape, layouts).into_parts(),
        9 => merged::<9>(shape, layouts).into_parts(),
        n => {
            return Err(Error::invalid(
                op,
                format!("an elementwise kernel takes one to nine buffers, not {n}"),
            ))
        }
    };
    let n: usize = shape.iter().product();
    let mut p = vec![u32_of(op, n)?, sizes.len() as u32];
    for &s in &sizes {
        p.push(u32_of(op, s)?);
    }
    for (offset, strides) in operands {
        p.push(u32_of(op, offset)?);
        for s in strides {
            p.push(u32_of(op, s)?);
        }
    }
    p.extend_from_slice(scalars);
    Ok(p)
}

/// The size an index kernel checks its indices against. Only a broadcast dim (stride 0,
/// nothing stored per index) can pass u32; saturated, its indices up to 2^32 - 2 stay valid,
/// where truncation made a dim of 2^32 hold none (index 0 of a [2, 2^32] view read as out
/// of range).
fn index_bound(size: usize) -> u32 {
    u32::try_from(size).unwrap_or(u32::MAX)
}

/// Bytes of a buffer of `len` elements of `dtype`: whole words (two 16-bit values to a word,
/// the last one padded), as storage bindings and copies need.
fn buffer_bytes(len: usize, dtype: DType) -> u64 {
    // Saturating: a size past u64 is refused by the limit checks, never wrapped.
    (len as u64)
        .saturating_mul(gpu_size(dtype))
        .checked_next_multiple_of(4)
        .unwrap_or(u64::MAX)
}

/// Little-endian bytes padded to whole words.
fn whole_words(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.resize(bytes.len().next_multiple_of(4), 0);
    out
}

/// The words of a scalar in the GPU representation of `dtype` (I64: low word, high word).
pub(crate) fn scalar_words(value: Scalar, dtype: DType) -> Vec<u32> {
    match dtype {
        DType::F32 => vec![(value.to_f64() as f32).to_bits()],
        DType::I64 => i64_words(value.to_i64()).to_vec(),
        DType::Bool => vec![value.to_bool() as u32],
        DType::F64 => {
            let bits = value.to_f64().to_bits();
            vec![bits as u32, (bits >> 32) as u32]
        }
        // The number rounded once to the 16-bit type, as the f32 that holds it exactly.
        DType::F16 => vec![half::f16::from_f64(value.to_f64()).to_f32().to_bits()],
        DType::BF16 => vec![half::bf16::from_f64(value.to_f64()).to_f32().to_bits()],
    }
}

pub(crate) fn i64_words(v: i64) -> [u32; 2] {
    [v as u32, (v >> 32) as u32]
}

/// The contiguous kernel when every operand (the output and the inputs) is contiguous from
/// the start of its buffer (and so element `i` is at `i` in each), the strided one otherwise.
fn indexing<'a>(mut operands: impl Iterator<Item = &'a Layout>) -> Indexing {
    if operands.all(|l| l.offset == 0 && l.is_contiguous()) {
        Indexing::Contiguous
    } else {
        Indexing::Strided
    }
}

/// Products of at least this many multiply-adds copy a transposed f32 operand row-major
/// (see `GpuStorage::matmul`); below it the extra dispatch is not worth it.
const MATMUL_COPY_MIN_FLOPS: usize = 1 << 21;

/// The vec4 matmul kernel, unless `WGRAD_NO_VEC4_MATMUL` is set at start-up (to compare the
/// kernels); read once, not per product.
fn vec4_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("WGRAD_NO_VEC4_MATMUL").is_none())
}

/// How the vec4 kernel reads a matmul operand, if it can: `Some(false)` row by row (the
/// rows contiguous, a multiple of 4 long), `Some(true)` column by column (the columns
/// contiguous, a multiple of 4 long: a transposed row-major matrix), with the offset and
/// the other strides in whole vec4s either way. Rows first where both hold.
fn vec4_mode(l: &Layout) -> Option<bool> {
    let r = l.rank();
    let whole = |dim: usize| {
        l.strides[dim] == 1
            && l.shape[dim].is_multiple_of(4)
            && l.offset.is_multiple_of(4)
            && (0..r)
                .filter(|&d| d != dim)
                .all(|d| l.strides[d].is_multiple_of(4))
    };
    if whole(r - 1) {
        Some(false)
    } else if whole(r - 2) {
        Some(true)
    } else {
        None
    }
}

/// Whether a matmul operand repeats itself along a batch dim (stride 0).
fn broadcasts_batch(l: &Layout) -> bool {
    let r = l.rank();
    l.shape[..r - 2]
        .iter()
        .zip(&l.strides[..r - 2])
        .any(|(&d, &s)| d > 1 && s == 0)
}

/// A product's kernel, parameters and grid, made when the product is asked for; a product
/// computed lazily (`storage/lazy.rs`) is dispatched later, with an epilogue.
#[derive(Debug)]
pub(crate) struct MatmulPlan {
    /// `Kernel::Matmul(d)`, `Kernel::MatmulVec4(..)` or `Kernel::MatmulCoop`.
    pub(crate) kernel: Kernel,
    /// The parameters up to the index of the dispatch's first matrix (see the shaders).
    params: Vec<u32>,
    /// Matrices in the batch.
    batch: usize,
    /// Workgroups along N and M.
    grid: (u32, u32),
}

impl MatmulPlan {
    /// The plan of the product of A (as `la`) and B (as `lb`) by `kernel`.
    fn new(kernel: Kernel, la: &Layout, lb: &Layout) -> Result<MatmulPlan> {
        let r = la.rank();
        let (m, k, n) = (la.shape[r - 2], la.shape[r - 1], lb.shape[r - 1]);
        let batch_shape = &la.shape[..r - 2];
        let mut p = vec![
            u32_of("matmul", m)?,
            u32_of("matmul", n)?,
            u32_of("matmul", k)?,
            batch_shape.len() as u32,
        ];
        for &s in batch_shape {
            p.push(u32_of("matmul", s)?);
        }
        // The vec4 kernel counts offsets and strides in vec4s.
        let vec4 = matches!(kernel, Kernel::MatmulVec4(..));
        let unit = if vec4 { 4 } else { 1 };
        for &s in la.strides[..r - 2].iter().chain(&lb.strides[..r - 2]) {
            p.push(u32_of("matmul", s / unit)?);
        }
        let (block, tail) = if let Kernel::MatmulVec4(a_columns, b_columns) = kernel {
            // The stride between the rows, or between the columns, each operand is read by.
            let across = |l: &Layout, columns: bool| l.strides[r - 2 + columns as usize];
            let tail = [
                la.offset,
                across(la, a_columns),
                lb.offset,
                across(lb, b_columns),
            ];
            (128, tail.to_vec())
        } else {
            let tail = [
                la.offset,
                la.strides[r - 2],
                la.strides[r - 1],
                lb.offset,
                lb.strides[r - 2],
                lb.strides[r - 1],
            ];
            (64, tail.to_vec())
        };
        for v in tail {
            p.push(u32_of("matmul", v / unit)?);
        }
        Ok(MatmulPlan {
            kernel,
            params: p,
            batch: batch_shape.iter().product(),
            grid: (
                u32_of("matmul", n.div_ceil(block))?,
                u32_of("matmul", m.div_ceil(block))?,
            ),
        })
    }

    /// The vec4 kernel's operand modes, `None` for the strided kernel.
    pub(crate) fn vec4_modes(&self) -> Option<(bool, bool)> {
        match self.kernel {
            Kernel::MatmulVec4(a_columns, b_columns) => Some((a_columns, b_columns)),
            _ => None,
        }
    }

    /// Dispatch `kernel` (the plan's, or its fused form) over `buffers` (A, B, then the
    /// kernel's outputs and reads), with `extra` parameters after the plan's: one workgroup
    /// layer per matrix of the batch, in dispatches of at most the adapter's limit of
    /// workgroups per dimension.
    pub(crate) fn dispatch(
        &self,
        ctx: &Arc<GpuContext>,
        kernel: Kernel,
        buffers: &[&wgpu::Buffer],
        extra: &[u32],
    ) -> Result<()> {
        let max = ctx.limits.max_compute_workgroups_per_dimension as usize;
        for first in (0..self.batch).step_by(max.max(1)) {
            let mut p = self.params.clone();
            p.push(first as u32);
            p.extend_from_slice(extra);
            let layers = (self.batch - first).min(max) as u32;
            ctx.dispatch(kernel, &p, buffers, (self.grid.0, self.grid.1, layers))?;
        }
        Ok(())
    }
}

impl GpuStorage {
    /// This result with the open index checks of the buffers it was computed from.
    pub(super) fn with_lineage_of<'a>(
        mut self,
        inputs: impl IntoIterator<Item = &'a GpuStorage>,
    ) -> GpuStorage {
        let lineage: Vec<u64> = inputs
            .into_iter()
            .flat_map(|s| s.checks.iter().copied())
            .collect();
        if !lineage.is_empty() {
            self.checks = self
                .ctx()
                .open_checks(self.checks.iter().copied().chain(lineage));
        }
        self
    }

    pub fn ctx(&self) -> &Arc<GpuContext> {
        self.buf.ctx_ref()
    }

    pub(super) fn alloc(
        ctx: &Arc<GpuContext>,
        op: &'static str,
        len: usize,
        dtype: DType,
    ) -> Result<GpuStorage> {
        Ok(GpuStorage {
            buf: ctx.alloc(op, buffer_bytes(len, dtype))?,
            dtype,
            checks: Vec::new(),
        })
    }

    /// Upload CPU data (I64 keeps its 8 little-endian bytes: see `shaders/int64.wgsl`).
    pub fn upload(ctx: &Arc<GpuContext>, s: &HostBuffer) -> Result<GpuStorage> {
        let bytes: Vec<u8> = match s {
            HostBuffer::F32(v) => bytemuck::cast_slice(v).to_vec(),
            HostBuffer::I64(v) => bytemuck::cast_slice(v).to_vec(),
            HostBuffer::Bool(v) => v.iter().flat_map(|&b| (b as u32).to_le_bytes()).collect(),
            HostBuffer::F64(v) => bytemuck::cast_slice(v).to_vec(),
            HostBuffer::F16(v) => whole_words(bytemuck::cast_slice(v)),
            HostBuffer::BF16(v) => whole_words(bytemuck::cast_slice(v)),
        };
        Ok(GpuStorage {
            buf: ctx.upload("to_device", &bytes)?,
            dtype: s.dtype(),
            checks: Vec::new(),
        })
    }

    /// Read the elements of `l` back to the CPU.
    fn download(&self, l: &Layout) -> Result<HostBuffer> {
        let ctx = self.ctx().clone();
        let contiguous;
        let (src, n) = if l.is_contiguous() && l.offset == 0 {
            (self, l.numel())
        } else {
            contiguous = self.copy_strided(l)?;
            (&contiguous, l.numel())
        };
        let bytes = ctx.read(src.buf.raw(), buffer_bytes(n, self.dtype), &self.checks)?;
        Ok(match self.dtype {
            DType::F32 => HostBuffer::F32(bytemuck::pod_collect_to_vec(&bytes)),
            DType::I64 => HostBuffer::I64(bytemuck::pod_collect_to_vec(&bytes)),
            DType::Bool => HostBuffer::Bool(
                bytemuck::pod_collect_to_vec::<u8, u32>(&bytes)
                    .into_iter()
                    .map(|x| x != 0)
                    .collect(),
            ),
            DType::F64 => HostBuffer::F64(bytemuck::pod_collect_to_vec(&bytes)),
            DType::F16 => HostBuffer::F16(bytemuck::pod_collect_to_vec(&bytes[..2 * n])),
            DType::BF16 => HostBuffer::BF16(bytemuck::pod_collect_to_vec(&bytes[..2 * n])),
        })
    }

    /// Run a map kernel writing a fresh contiguous output of `shape`. Scalar inputs travel
    /// as parameters, in `scalar_dtype`.
    fn map(
        kernel: MapOp,
        op: &'static str,
        out_dtype: DType,
        shape: &[usize],
        inputs: &[Arg<'_, GpuStorage>],
        scalar_dtype: DType,
    ) -> Result<GpuStorage> {
        let ctx = inputs
            .iter()
            .find_map(|a| match a {
                Arg::Buf(s, _) => Some(s.ctx().clone()),
                Arg::Scalar(_) => None,
            })
            .ok_or_else(|| {
                Error::invalid(op, "an elementwise op needs at least one tensor operand")
            })?;
        let n: usize = shape.iter().product();
        let buffers = || {
            inputs.iter().filter_map(|a| match a {
                Arg::Buf(s, _) => Some(*s),
                Arg::Scalar(_) => None,
            })
        };
        let out = GpuStorage::alloc(&ctx, op, n, out_dtype)?.with_lineage_of(buffers());
        if n == 0 {
            return Ok(out);
        }
        let ol = Layout::contiguous(shape);
        let mut layouts = vec![&ol];
        let mut bufs = vec![out.buf.raw()];
        let mut scalars = Vec::new();
        for input in inputs {
            match *input {
                Arg::Buf(s, l) => {
                    layouts.push(l);
                    bufs.push(s.buf.raw());
                }
                Arg::Scalar(v) => scalars.extend(scalar_words(v, scalar_dtype)),
            }
        }
        let params = elementwise_params(op, shape, &layouts, &scalars)?;
        let (indexing, threads) = match indexing(layouts.into_iter()) {
            // The output is fresh: whole words, two values per thread.
            Indexing::Contiguous if out_dtype.is_half() => (Indexing::Pairs, n.div_ceil(2)),
            other => (other, n),
        };
        let kernel = Kernel::Map(kernel, indexing);
        let (x, y) = ctx.grid(threads as u64, false)?;
        ctx.dispatch(kernel, &params, &bufs, (x, y, 1))?;
        Ok(out)
    }

    /// Run an in-place map kernel through the strided view `dst` of this buffer.
    fn update(
        &mut self,
        kernel: MapOp,
        op: &'static str,
        dst: &Layout,
        src: Arg<'_, GpuStorage>,
    ) -> Result<()> {
        let n = dst.numel();
        if n == 0 {
            return Ok(());
        }
        let ctx = self.ctx().clone();
        let (params, bufs, indexing) = match src {
            Arg::Buf(s, sl) => (
                elementwise_params(op, &dst.shape, &[dst, sl], &[])?,
                vec![self.buf.raw(), s.buf.raw()],
                indexing([dst, sl].into_iter()),
            ),
            Arg::Scalar(v) => (
                elementwise_params(op, &dst.shape, &[dst], &scalar_words(v, self.dtype))?,
                vec![self.buf.raw()],
                indexing(std::iter::once(dst)),
            ),
        };
        let (x, y) = ctx.grid(n as u64, false)?;
        ctx.dispatch(Kernel::Map(kernel, indexing), &params, &bufs, (x, y, 1))?;
        // The destination now holds values computed from the source.
        if let Arg::Buf(s, _) = src {
            if !s.checks.is_empty() {
                self.checks = ctx.open_checks(self.checks.iter().chain(&s.checks).copied());
            }
        }
        Ok(())
    }

    fn reduce_kernel(&self, op: ReduceOp, l: &Layout, dims: &[usize]) -> Result<GpuStorage> {
        let input = ReduceInput::Buffer(self.buf.raw());
        GpuStorage::reduce_with(self.ctx(), op, self.dtype, l, dims, &input)
    }

    /// Reduce the `dtype` elements of `l` over `dims`, read from `input`.
    pub(super) fn reduce_with(
        ctx: &Arc<GpuContext>,
        op: ReduceOp,
        dtype: DType,
        l: &Layout,
        dims: &[usize],
        input: &ReduceInput<'_>,
    ) -> Result<GpuStorage> {
        let (outer, inner) = split_reduced(l, dims);
        let n_out = outer.numel();
        let out_dtype = if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
            DType::I64
        } else {
            dtype
        };
        let out = GpuStorage::alloc(ctx, op.name(), n_out, out_dtype)?;
        if n_out == 0 {
            return Ok(out);
        }
        let mut p = vec![u32_of(op.name(), n_out)?, outer.sizes.len() as u32];
        for &s in &outer.sizes {
            p.push(s as u32);
        }
        p.push(u32_of(op.name(), l.offset)?);
        for &s in &outer.strides[0] {
            p.push(u32_of(op.name(), s)?);
        }
        p.push(inner.sizes.len() as u32);
        for &s in &inner.sizes {
            p.push(u32_of(op.name(), s)?);
        }
        for &s in &inner.strides[0] {
            p.push(u32_of(op.name(), s)?);
        }
        // Long reductions with few outputs are split across workgroups, then combined: one
        // workgroup per output would leave most of the GPU idle (and loop too long).
        let n_in = inner.numel();
        let slices = if n_out < 1024 && n_in > SLICE {
            n_in.div_ceil(SLICE).min(4096)
        } else {
            1
        };
        let subgroups = ctx.subgroups && subgroup_capable(op, dtype);
        if slices == 1 {
            let (x, y) = ctx.grid(n_out as u64, true)?;
            let (kernel, p, buffers) =
                input.reading(op, dtype, ReduceStage::Direct, subgroups, p, out.buf.raw());
            ctx.dispatch(kernel, &p, &buffers, (x, y, 1))?;
            return Ok(out);
        }
        let slice_len = n_in.div_ceil(slices);
        p.push(slices as u32);
        p.push(slice_len as u32);
        // One Partial (value, index, flag) per slice.
        let partials = ctx.alloc(op.name(), (n_out * slices) as u64 * partial_size(dtype))?;
        let (x, y) = ctx.grid((n_out * slices) as u64, true)?;
        let (kernel, p, buffers) =
            input.reading(op, dtype, ReduceStage::Split, subgroups, p, partials.raw());
        ctx.dispatch(kernel, &p, &buffers, (x, y, 1))?;
        let (x, y) = ctx.grid(n_out as u64, true)?;
        ctx.dispatch(
            Kernel::Reduce(op, dtype, ReduceStage::Combine, false),
            &[n_out as u32, slices as u32],
            &[out.buf.raw(), partials.raw()],
            (x, y, 1),
        )?;
        Ok(out)
    }

    fn cumsum_kernel(&self, l: &Layout, dim: usize) -> Result<GpuStorage> {
        if l.numel() == 0 || l.rank() == 0 {
            return self.copy_strided(l);
        }
        let src = self.copy_strided(l)?;
        let len = l.shape[dim];
        let inner: usize = l.shape[dim + 1..].iter().product();
        src.scan_lines(l.numel() / len, len, inner)
    }

    /// Inclusive scan of each line of a contiguous [outer, len, inner] buffer (lines =
    /// outer * inner): chunk scans, a scan of the chunk totals (recursively), then the
    /// totals added back.
    fn scan_lines(&self, lines: usize, len: usize, inner: usize) -> Result<GpuStorage> {
        let ctx = self.ctx().clone();
        let wg = super::kernels::WG as usize;
        let chunks = len.div_ceil(wg);
        let out = GpuStorage::alloc(&ctx, "cumsum", lines * len, self.dtype)?;
        let totals = GpuStorage::alloc(&ctx, "cumsum", lines * chunks, self.dtype)?;
        let p = [
            u32_of("cumsum", lines)?,
            u32_of("cumsum", len)?,
            u32_of("cumsum", inner)?,
            chunks as u32,
        ];
        let (x, y) = ctx.grid((lines * chunks) as u64, true)?;
        ctx.dispatch(
            Kernel::Cumsum(self.dtype),
            &p,
            &[out.buf.raw(), self.buf.raw(), totals.buf.raw()],
            (x, y, 1),
        )?;
        if chunks > 1 {
            // The totals form a contiguous [lines, chunks] tensor: scan along its rows.
            let prefix = totals.scan_lines(lines, chunks, 1)?;
            let (x, y) = ctx.grid((lines * len) as u64, false)?;
            ctx.dispatch(
                Kernel::ScanAdd(self.dtype),
                &p,
                &[out.buf.raw(), prefix.buf.raw()],
                (x, y, 1),
            )?;
        }
        Ok(out)
    }

    fn matmul_kernel(&self, la: &Layout, b: &GpuStorage, lb: &Layout) -> Result<GpuStorage> {
        if self.copies_first(la, lb) {
            // 16-bit operands are widened on the way: the vec4 kernel is f32's (and the fastest
            // here, 3x the strided kernel on lavapipe).
            let row_major = |s: &GpuStorage, l: &Layout| -> Result<Option<GpuStorage>> {
                Ok(if s.dtype.is_half() {
                    Some(s.cast(l, DType::F32)?)
                } else if vec4_mode(l).is_some() {
                    None
                } else {
                    Some(s.copy_strided(l)?)
                })
            };
            let (ca, cb) = (row_major(self, la)?, row_major(b, lb)?);
            let (a, la) = match &ca {
                Some(c) => (c, Layout::contiguous(&la.shape)),
                None => (self, la.clone()),
            };
            let (b, lb) = match &cb {
                Some(c) => (c, Layout::contiguous(&lb.shape)),
                None => (b, lb.clone()),
            };
            return a.matmul_kernel(&la, b, &lb);
        }
        self.matmul_with(self.direct_kernel(la, b, lb), la, b, lb)
    }

    /// Whether an operand of this product is first copied row-major: an f32 operand of a
    /// large product that the vec4 kernel cannot read (other strides), where the copy reads
    /// each element once and the strided kernel would reload it from every block row or
    /// column; and 16-bit operands of such products, widened. Broadcast batch dims stay
    /// views (a copy would repeat them).
    fn copies_first(&self, la: &Layout, lb: &Layout) -> bool {
        let r = la.rank();
        let (m, k, n) = (la.shape[r - 2], la.shape[r - 1], lb.shape[r - 1]);
        matches!(self.dtype, DType::F32 | DType::F16 | DType::BF16)
            && !self.tensor_cores()
            && vec4_enabled()
            && k.is_multiple_of(4)
            && n.is_multiple_of(4)
            && m.saturating_mul(n).saturating_mul(k) >= MATMUL_COPY_MIN_FLOPS
            && ![la, lb].iter().any(|l| broadcasts_batch(l))
            && (self.dtype.is_half() || vec4_mode(la).is_none() || vec4_mode(lb).is_none())
    }

    /// Whether this product's F16 operands run on tensor cores (they read any strides).
    fn tensor_cores(&self) -> bool {
        self.dtype == DType::F16 && self.ctx().tensor_cores()
    }

    /// The kernel that computes this product from the operands as they are: operands read
    /// as whole vec4s, row by row or column by column, into a product whose rows are whole
    /// vec4s take the vec4 kernel.
    fn direct_kernel(&self, la: &Layout, b: &GpuStorage, lb: &Layout) -> Kernel {
        let n = lb.shape[lb.rank() - 1];
        let modes = (vec4_mode(la), vec4_mode(lb));
        let vec4 = self.dtype == DType::F32
            && n.is_multiple_of(4)
            && [self.buf.raw().size(), b.buf.raw().size()]
                .iter()
                .all(|&s| s % 16 == 0)
            && vec4_enabled();
        if let (true, (Some(a_columns), Some(b_columns))) = (vec4, modes) {
            Kernel::MatmulVec4(a_columns, b_columns)
        } else if self.tensor_cores() {
            Kernel::MatmulCoop
        } else {
            Kernel::Matmul(self.dtype)
        }
    }

    /// The plan of an f32 product of `self` (as `la`) and `b` (as `lb`) that one of the
    /// kernels taking an epilogue (`Kernel::MatmulFused`) computes from the operands as
    /// they are; `None` where the product runs otherwise (operands copied first, other
    /// dtypes, empty, or sizes the kernel's parameters cannot hold: the eager product
    /// reports those).
    pub(crate) fn fusable_product(
        &self,
        la: &Layout,
        b: &GpuStorage,
        lb: &Layout,
    ) -> Option<MatmulPlan> {
        let r = la.rank();
        let (m, k, n) = (la.shape[r - 2], la.shape[r - 1], lb.shape[r - 1]);
        let count = la.shape[..r - 2]
            .iter()
            .try_fold(m.checked_mul(n)?, |c, &d| c.checked_mul(d))?;
        let fits = (count as u64).checked_mul(4)? <= self.ctx().max_binding();
        if self.dtype != DType::F32 || b.dtype != DType::F32 || count == 0 || k == 0 || !fits {
            return None;
        }
        if self.copies_first(la, lb) {
            return None;
        }
        match self.direct_kernel(la, b, lb) {
            kernel @ (Kernel::MatmulVec4(..) | Kernel::Matmul(DType::F32)) => {
                MatmulPlan::new(kernel, la, lb).ok()
            }
            _ => None,
        }
    }

    /// The product of `self` (viewed as `la`) and `b` (as `lb`) by `kernel`, which must take
    /// their dtype and layouts (`Kernel::MatmulVec4`: F32 operands in its `vec4_mode`s). 16-bit
    /// operands give the f32 product (the storage layer rounds it once).
    pub(super) fn matmul_with(
        &self,
        kernel: Kernel,
        la: &Layout,
        b: &GpuStorage,
        lb: &Layout,
    ) -> Result<GpuStorage> {
        let ctx = self.ctx().clone();
        let r = la.rank();
        let (m, k, n) = (la.shape[r - 2], la.shape[r - 1], lb.shape[r - 1]);
        let batch: usize = la.shape[..r - 2].iter().product();
        let out_dtype = self.dtype.compute_dtype();
        let out = GpuStorage::alloc(&ctx, "matmul", batch * m * n, out_dtype)?;
        if batch * m * n == 0 {
            return Ok(out);
        }
        if k == 0 {
            let zero = [0, 0];
            return GpuStorage::fill(&ctx, FillKind::Constant, out_dtype, batch * m * n, &zero);
        }
        let plan = MatmulPlan::new(kernel, la, lb)?;
        plan.dispatch(
            &ctx,
            kernel,
            &[self.buf.raw(), b.buf.raw(), out.buf.raw()],
            &[],
        )?;
        Ok(out)
    }

    /// index_select (`index` 1-D contiguous) or gather (`index` of the output's shape).
    fn gather_kernel(
        &self,
        l: &Layout,
        dim: usize,
        index: &GpuStorage,
        il: &Layout,
        out_shape: &[usize],
        is_gather: bool,
    ) -> Result<GpuStorage> {
        let ctx = self.ctx().clone();
        let n: usize = out_shape.iter().product();
        let out = GpuStorage::alloc(&ctx, "gather", n, self.dtype)?;
        if n == 0 {
            // No kernel runs to check the index values: check them here (an empty result is
            // rare, and the index is read back only then), so that an out-of-range index is
            // an Err as on the CPU.
            if il.numel() > 0 {
                let size = l.shape[dim];
                if let HostBuffer::I64(values) = index.download(il)? {
                    if let Some(&bad) = values.iter().find(|&&i| i < 0 || i >= size as i64) {
                        return Err(Error::IndexOutOfRange {
                            op: if is_gather { "gather" } else { "index_select" },
                            index: bad,
                            dim,
                            size,
                            shape: l.shape.clone(),
                        });
                    }
                }
            }
            return Ok(out);
        }
        let r = out_shape.len();
        let mut p = vec![n as u32, r as u32];
        p.extend(out_shape.iter().map(|&s| s as u32));
        p.push(u32_of("gather", l.offset)?);
        p.extend(l.strides.iter().map(|&s| s as u32));
        p.push(u32_of("gather", il.offset)?);
        if is_gather {
            p.extend(il.strides.iter().map(|&s| s as u32));
        } else {
            p.extend(std::iter::repeat_n(0, r));
        }
        p.push(dim as u32);
        p.push(index_bound(l.shape[dim]));
        let (x, y) = ctx.grid(n as u64, false)?;
        let (id, flag) = ctx.index_flag();
        ctx.dispatch_with(
            Kernel::Gather(self.dtype, is_gather),
            &p,
            &[out.buf.raw(), self.buf.raw(), index.buf.raw(), &flag],
            (x, y, 1),
            GroupUse::Once,
        )?;
        let mut out = out.with_lineage_of([self, index]);
        out.checks.push(id);
        Ok(out)
    }

    /// The adjoint of sliding windows over `dim` (`Tensor::fold_windows`): a contiguous f32
    /// buffer of `shape` summing this f32 tensor's windows (`l`: `shape`'s dims with `dim`
    /// counting the windows, then the taps), in one kernel (`shaders/fold.wgsl`).
    pub(crate) fn fold_windows(
        &self,
        l: &Layout,
        shape: &[usize],
        (dim, size, step): (usize, usize, usize),
    ) -> Result<GpuStorage> {
        const OP: &str = "fold_windows";
        let ctx = self.ctx().clone();
        let n: usize = shape.iter().product();
        let out = GpuStorage::alloc(&ctx, OP, n, DType::F32)?;
        if n == 0 {
            return Ok(out);
        }
        let windows = l.shape.get(dim).copied().unwrap_or(0);
        let mut p = vec![u32_of(OP, n)?, shape.len() as u32];
        for &extent in shape {
            p.push(u32_of(OP, extent)?);
        }
        p.push(u32_of(OP, l.offset)?);
        for &stride in &l.strides {
            p.push(u32_of(OP, stride)?);
        }
        for v in [dim, size, step, windows] {
            p.push(u32_of(OP, v)?);
        }
        let (x, y) = ctx.grid(n as u64, false)?;
        ctx.dispatch(
            Kernel::FoldWindows,
            &p,
            &[out.buf.raw(), self.buf.raw()],
            (x, y, 1),
        )?;
        Ok(out.with_lineage_of([self]))
    }

    fn scatter_add_kernel(
        &self,
        l: &Layout,
        dim: usize,
        index: &GpuStorage,
        il: &Layout,
        src: &GpuStorage,
        sl: &Layout,
    ) -> Result<GpuStorage> {
        let ctx = self.ctx().clone();
        let out = self.copy_strided(l)?;
        let n = il.numel();
        if n == 0 {
            return Ok(out);
        }
        let shape = &il.shape;
        let src_view = Layout {
            shape: shape.clone(),
            strides: sl.strides.clone(),
            offset: sl.offset,
        };
        let r = shape.len();
        let mut p = vec![n as u32, r as u32];
        p.extend(shape.iter().map(|&s| s as u32));
        for lay in [&src_view, il] {
            p.push(u32_of("scatter_add", lay.offset)?);
            p.extend(lay.strides.iter().map(|&s| s as u32));
        }
        p.push(dim as u32);
        p.push(index_bound(l.shape[dim]));
        p.extend(
            crate::shape::contiguous_strides(&l.shape)
                .iter()
                .map(|&s| s as u32),
        );
        let (x, y) = ctx.grid(n as u64, false)?;
        let (id, flag) = ctx.index_flag();
        ctx.dispatch_with(
            Kernel::ScatterAdd(self.dtype),
            &p,
            &[out.buf.raw(), src.buf.raw(), index.buf.raw(), &flag],
            (x, y, 1),
            GroupUse::Once,
        )?;
        let mut out = out.with_lineage_of([src, index]);
        out.checks.push(id);
        Ok(out)
    }

    /// A contiguous buffer of `n` values from a fill kernel with parameters `extra`.
    pub fn fill(
        ctx: &Arc<GpuContext>,
        kind: FillKind,
        dtype: DType,
        n: usize,
        extra: &[u32],
    ) -> Result<GpuStorage> {
        let op = kind.op_name();
        let out = GpuStorage::alloc(ctx, op, n, dtype)?;
        if n == 0 {
            return Ok(out);
        }
        let mut p = vec![u32_of(op, n)?];
        p.extend_from_slice(extra);
        let (x, y) = ctx.grid(n as u64, false)?;
        ctx.dispatch(Kernel::Fill(kind, dtype), &p, &[out.buf.raw()], (x, y, 1))?;
        Ok(out)
    }
}

/// Which operand of a binary op is a number (both numbers: not an op of this backend).
fn scalar_side(
    op: &'static str,
    a: &Arg<'_, GpuStorage>,
    b: &Arg<'_, GpuStorage>,
) -> Result<Option<ScalarSide>> {
    match (a, b) {
        (Arg::Buf(..), Arg::Buf(..)) => Ok(None),
        (Arg::Scalar(_), Arg::Buf(..)) => Ok(Some(ScalarSide::Lhs)),
        (Arg::Buf(..), Arg::Scalar(_)) => Ok(Some(ScalarSide::Rhs)),
        (Arg::Scalar(_), Arg::Scalar(_)) => Err(Error::invalid(
            op,
            "an elementwise op needs at least one tensor operand",
        )),
    }
}

fn is_scalar(a: &Arg<'_, GpuStorage>) -> bool {
    matches!(a, Arg::Scalar(_))
}

impl Backend for GpuStorage {
    type Device = Arc<GpuContext>;

    fn full(ctx: &Arc<GpuContext>, n: usize, value: Scalar, dtype: DType) -> Result<Self> {
        if dtype.is_half() || dtype == DType::F64 {
            // A fill of the words would need a 16-bit value twice per word (and the fill
            // kernel computes in its dtype, which F64 has none of here); a copy kernel with
            // the number as its parameter writes each element's bits.
            let mut out = GpuStorage::alloc(ctx, "full", n, dtype)?;
            out.update(
                MapOp::Copy(dtype, true),
                "full",
                &Layout::contiguous(&[n]),
                Arg::Scalar(value),
            )?;
            return Ok(out);
        }
        GpuStorage::fill(
            ctx,
            FillKind::Constant,
            dtype,
            n,
            &scalar_words(value, dtype),
        )
    }

    fn arange(
        ctx: &Arc<GpuContext>,
        n: usize,
        start: Scalar,
        step: Scalar,
        dtype: DType,
    ) -> Result<Self> {
        if dtype == DType::Bool {
            return Err(Error::Unsupported {
                op: "arange",
                dtype,
                backend: "gpu",
            });
        }
        if dtype.is_half() {
            let values = GpuStorage::arange(ctx, n, start, step, DType::F32)?;
            return values.cast(&Layout::contiguous(&[n]), dtype);
        }
        if dtype == DType::F64 {
            // No f64 arithmetic in WGSL: the values are made on the host.
            return GpuStorage::upload(ctx, &HostBuffer::arange(&(), n, start, step, dtype)?);
        }
        let words = [scalar_words(start, dtype), scalar_words(step, dtype)].concat();
        GpuStorage::fill(ctx, FillKind::Arange, dtype, n, &words)
    }

    fn random(
        ctx: &Arc<GpuContext>,
        kind: FillKind,
        n: usize,
        gen: &mut Generator,
        range: (i64, i64),
    ) -> Result<Self> {
        let dtype = match kind {
            FillKind::RandInt => DType::I64,
            FillKind::Uniform | FillKind::Normal => DType::F32,
            FillKind::Constant | FillKind::Arange => {
                return Err(Error::invalid(
                    "random",
                    format!("{kind:?} is not a random fill"),
                ))
            }
        };
        let span = range.1.wrapping_sub(range.0);
        let (seed, start) = (gen.seed(), gen.advance(n));
        let params = [
            i64_words(seed as i64),
            i64_words(start as i64),
            i64_words(range.0),
            i64_words(span),
        ]
        .concat();
        GpuStorage::fill(ctx, kind, dtype, n, &params)
    }

    fn from_host(ctx: &Arc<GpuContext>, data: HostBuffer) -> Result<Self> {
        GpuStorage::upload(ctx, &data)
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn to_host(&self, l: &Layout) -> Result<HostBuffer> {
        self.download(l)
    }

    fn copy_strided(&self, l: &Layout) -> Result<Self> {
        let d = self.dtype;
        GpuStorage::map(
            MapOp::Copy(d, false),
            "contiguous",
            d,
            &l.shape,
            &[Arg::Buf(self, l)],
            d,
        )
    }

    fn write(&mut self, dst: &Layout, src: Arg<'_, Self>) -> Result<()> {
        self.update(MapOp::Copy(self.dtype, is_scalar(&src)), "assign", dst, src)
    }

    fn unary(&self, op: UnaryOp, l: &Layout) -> Result<Self> {
        let out = unary_output(op, self.dtype)?;
        GpuStorage::map(
            MapOp::Unary(op, self.dtype),
            op.name(),
            out,
            &l.shape,
            &[Arg::Buf(self, l)],
            self.dtype,
        )
    }

    fn binary(
        op: BinaryOp,
        shape: &[usize],
        dtype: DType,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
    ) -> Result<Self> {
        let side = scalar_side(op.name(), &a, &b)?;
        GpuStorage::map(
            MapOp::Binary(op, dtype, side),
            op.name(),
            dtype,
            shape,
            &[a, b],
            dtype,
        )
    }

    fn binary_inplace(&mut self, op: BinaryOp, dst: &Layout, src: Arg<'_, Self>) -> Result<()> {
        self.update(
            MapOp::BinaryInplace(op, self.dtype, is_scalar(&src)),
            op.name(),
            dst,
            src,
        )
    }

    fn cmp(
        op: CmpOp,
        shape: &[usize],
        dtype: DType,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
    ) -> Result<Self> {
        let side = scalar_side(op.name(), &a, &b)?;
        GpuStorage::map(
            MapOp::Cmp(op, dtype, side),
            op.name(),
            DType::Bool,
            shape,
            &[a, b],
            dtype,
        )
    }

    fn where_cond(
        shape: &[usize],
        dtype: DType,
        (c, lc): (&Self, &Layout),
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
    ) -> Result<Self> {
        let kernel = MapOp::Where(dtype, is_scalar(&a), is_scalar(&b));
        GpuStorage::map(
            kernel,
            "where",
            dtype,
            shape,
            &[Arg::Buf(c, lc), a, b],
            dtype,
        )
    }

    fn cast(&self, l: &Layout, to: DType) -> Result<Self> {
        if to == self.dtype {
            return self.copy_strided(l);
        }
        GpuStorage::map(
            MapOp::Cast(self.dtype, to),
            "to_dtype",
            to,
            &l.shape,
            &[Arg::Buf(self, l)],
            self.dtype,
        )
    }

    fn reduce(&self, op: ReduceOp, l: &Layout, dims: &[usize]) -> Result<Self> {
        Ok(self.reduce_kernel(op, l, dims)?.with_lineage_of([self]))
    }

    fn cumsum(&self, l: &Layout, dim: usize) -> Result<Self> {
        Ok(self.cumsum_kernel(l, dim)?.with_lineage_of([self]))
    }

    fn matmul(&self, l: &Layout, rhs: &Self, rl: &Layout) -> Result<Self> {
        Ok(self.matmul_kernel(l, rhs, rl)?.with_lineage_of([self, rhs]))
    }

    fn index_select(&self, l: &Layout, dim: usize, index: &Self, il: &Layout) -> Result<Self> {
        Ok(self
            .index_select_kernel(l, dim, index, il)?
            .with_lineage_of([self, index]))
    }

    fn gather(&self, l: &Layout, dim: usize, index: &Self, il: &Layout) -> Result<Self> {
        Ok(self
            .gather_kernel(l, dim, index, il, &il.shape, true)?
            .with_lineage_of([self, index]))
    }

    fn scatter_add(
        &self,
        l: &Layout,
        dim: usize,
        index: &Self,
        il: &Layout,
        src: &Self,
        sl: &Layout,
    ) -> Result<Self> {
        Ok(self
            .scatter_add_kernel(l, dim, index, il, src, sl)?
            .with_lineage_of([self, index, src]))
    }
}

impl GpuStorage {
    fn index_select_kernel(
        &self,
        l: &Layout,
        dim: usize,
        index: &Self,
        il: &Layout,
    ) -> Result<Self> {
        let mut shape = l.shape.clone();
        shape[dim] = il.numel();
        let copy = if il.is_contiguous() {
            None
        } else {
            Some(index.copy_strided(il)?)
        };
        let (i, il) = match &copy {
            Some(c) => (c, Layout::contiguous(&il.shape)),
            None => (index, il.clone()),
        };
        self.gather_kernel(l, dim, i, &il, &shape, false)
    }
}
