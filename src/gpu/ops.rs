//! The primitive ops on GPU buffers: metadata packing and one dispatch per op.

use super::context::{GpuBuffer, GpuContext};
use super::kernels::{
    gpu_size, partial_size, subgroup_capable, FillKind, Indexing, Kernel, MapOp, ReduceStage,
};
use crate::cpu::walk::{split_reduced, Merged};
use crate::cpu::CpuStorage;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::op::{BinaryOp, CmpOp, ReduceOp, UnaryOp};
use std::sync::Arc;

/// Elements per workgroup slice of a long reduction.
const SLICE: usize = 8192;

/// A tensor buffer on a GPU: elements of `dtype` (`gpu_size` bytes each: 8 for I64, 4 else).
#[derive(Debug)]
pub struct GpuStorage {
    pub(crate) buf: GpuBuffer,
    pub(crate) dtype: DType,
}

fn u32_of(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::BufferTooLarge {
        op,
        bytes: v as u64 * 4,
        limit: u32::MAX as u64,
    })
}

/// Elementwise metadata: count, rank, merged shape, then offset and strides per operand
/// (operand 0 is the output).
fn elementwise_params<const K: usize>(
    op: &'static str,
    shape: &[usize],
    layouts: [&Layout; K],
) -> Result<Vec<u32>> {
    let strides: [&[usize]; K] = std::array::from_fn(|k| layouts[k].strides.as_slice());
    let offsets: [usize; K] = std::array::from_fn(|k| layouts[k].offset);
    let m = Merged::new(shape, strides, offsets);
    let n: usize = shape.iter().product();
    let mut p = vec![u32_of(op, n)?, m.sizes.len() as u32];
    for &s in &m.sizes {
        p.push(u32_of(op, s)?);
    }
    for k in 0..K {
        p.push(u32_of(op, m.offsets[k])?);
        for &s in &m.strides[k] {
            p.push(u32_of(op, s)?);
        }
    }
    Ok(p)
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

/// A matmul operand the vec4 kernel reads: row-major, with its rows (whose length, the
/// last dim, must be a multiple of 4), offset and batch strides in whole vec4s.
fn vec4_layout(l: &Layout) -> bool {
    let r = l.rank();
    l.strides[r - 1] == 1
        && l.shape[r - 1].is_multiple_of(4)
        && l.offset.is_multiple_of(4)
        && l.strides[..r - 1].iter().all(|s| s.is_multiple_of(4))
}

/// Whether a matmul operand repeats itself along a batch dim (stride 0).
fn broadcasts_batch(l: &Layout) -> bool {
    let r = l.rank();
    l.shape[..r - 2]
        .iter()
        .zip(&l.strides[..r - 2])
        .any(|(&d, &s)| d > 1 && s == 0)
}

impl GpuStorage {
    pub fn ctx(&self) -> &Arc<GpuContext> {
        self.buf.ctx_ref()
    }

    fn alloc(
        ctx: &Arc<GpuContext>,
        op: &'static str,
        len: usize,
        dtype: DType,
    ) -> Result<GpuStorage> {
        Ok(GpuStorage {
            buf: ctx.alloc(op, len as u64 * gpu_size(dtype))?,
            dtype,
        })
    }

    /// Upload CPU data (I64 keeps its 8 little-endian bytes: see `shaders/int64.wgsl`).
    pub fn from_cpu(ctx: &Arc<GpuContext>, s: &CpuStorage) -> Result<GpuStorage> {
        let bytes: Vec<u8> = match s {
            CpuStorage::F32(v) => bytemuck::cast_slice(v).to_vec(),
            CpuStorage::I64(v) => bytemuck::cast_slice(v).to_vec(),
            CpuStorage::Bool(v) => v.iter().flat_map(|&b| (b as u32).to_le_bytes()).collect(),
        };
        Ok(GpuStorage {
            buf: ctx.upload("to_device", &bytes)?,
            dtype: s.dtype(),
        })
    }

    /// Read the elements of `l` back to the CPU.
    pub fn to_cpu(&self, l: &Layout) -> Result<CpuStorage> {
        let ctx = self.ctx().clone();
        let contiguous;
        let (src, n) = if l.is_contiguous() && l.offset == 0 {
            (self, l.numel())
        } else {
            contiguous = self.copy_strided(l)?;
            (&contiguous, l.numel())
        };
        let bytes = ctx.read(src.buf.raw(), n as u64 * gpu_size(self.dtype))?;
        Ok(match self.dtype {
            DType::F32 => CpuStorage::F32(bytemuck::pod_collect_to_vec(&bytes)),
            DType::I64 => CpuStorage::I64(bytemuck::pod_collect_to_vec(&bytes)),
            DType::Bool => CpuStorage::Bool(
                bytemuck::pod_collect_to_vec::<u8, u32>(&bytes)
                    .into_iter()
                    .map(|x| x != 0)
                    .collect(),
            ),
        })
    }

    /// Run a map kernel writing a fresh contiguous output of `shape`.
    fn map(
        &self,
        kernel: MapOp,
        op: &'static str,
        out_dtype: DType,
        shape: &[usize],
        inputs: &[(&GpuStorage, &Layout)],
    ) -> Result<GpuStorage> {
        let ctx = self.ctx().clone();
        let n: usize = shape.iter().product();
        let out = GpuStorage::alloc(&ctx, op, n, out_dtype)?;
        if n == 0 {
            return Ok(out);
        }
        let ol = Layout::contiguous(shape);
        let params = match inputs {
            [a] => elementwise_params(op, shape, [&ol, a.1])?,
            [a, b] => elementwise_params(op, shape, [&ol, a.1, b.1])?,
            [a, b, c] => elementwise_params(op, shape, [&ol, a.1, b.1, c.1])?,
            _ => unreachable!("map kernels take one to three inputs"),
        };
        let mut bufs = vec![out.buf.raw()];
        bufs.extend(inputs.iter().map(|(s, _)| s.buf.raw()));
        let operands = std::iter::once(&ol).chain(inputs.iter().map(|(_, l)| *l));
        let kernel = Kernel::Map(kernel, indexing(operands));
        let (x, y) = ctx.grid(n as u64, false)?;
        ctx.dispatch(kernel, &params, &bufs, (x, y, 1))?;
        Ok(out)
    }

    pub fn unary(&self, op: UnaryOp, l: &Layout) -> Result<GpuStorage> {
        let out = if op.returns_bool() {
            DType::Bool
        } else {
            self.dtype
        };
        self.map(
            MapOp::Unary(op, self.dtype),
            op.name(),
            out,
            &l.shape,
            &[(self, l)],
        )
    }

    pub fn binary(
        &self,
        op: BinaryOp,
        l: &Layout,
        rhs: &GpuStorage,
        rl: &Layout,
    ) -> Result<GpuStorage> {
        self.map(
            MapOp::Binary(op, self.dtype),
            op.name(),
            self.dtype,
            &l.shape,
            &[(self, l), (rhs, rl)],
        )
    }

    pub fn cmp(&self, op: CmpOp, l: &Layout, rhs: &GpuStorage, rl: &Layout) -> Result<GpuStorage> {
        self.map(
            MapOp::Cmp(op, self.dtype),
            op.name(),
            DType::Bool,
            &l.shape,
            &[(self, l), (rhs, rl)],
        )
    }

    pub fn where_cond(
        &self,
        l: &Layout,
        a: &GpuStorage,
        la: &Layout,
        b: &GpuStorage,
        lb: &Layout,
    ) -> Result<GpuStorage> {
        self.map(
            MapOp::Where(a.dtype),
            "where",
            a.dtype,
            &l.shape,
            &[(self, l), (a, la), (b, lb)],
        )
    }

    pub fn cast(&self, l: &Layout, to: DType) -> Result<GpuStorage> {
        if to == self.dtype {
            return self.copy_strided(l);
        }
        self.map(
            MapOp::Cast(self.dtype, to),
            "to_dtype",
            to,
            &l.shape,
            &[(self, l)],
        )
    }

    pub fn copy_strided(&self, l: &Layout) -> Result<GpuStorage> {
        self.map(
            MapOp::Copy(self.dtype),
            "contiguous",
            self.dtype,
            &l.shape,
            &[(self, l)],
        )
    }

    /// Write `src` (broadcast to `dst`'s shape) through the strided view `dst` of this buffer.
    pub fn write(&mut self, dst: &Layout, src: &GpuStorage, sl: &Layout) -> Result<()> {
        self.update(MapOp::Copy(self.dtype), "assign", dst, src, sl)
    }

    /// `self[dst] = self[dst] (op) src` in place.
    pub fn binary_inplace(
        &mut self,
        op: BinaryOp,
        dst: &Layout,
        src: &GpuStorage,
        sl: &Layout,
    ) -> Result<()> {
        self.update(
            MapOp::BinaryInplace(op, self.dtype),
            op.name(),
            dst,
            src,
            sl,
        )
    }

    fn update(
        &mut self,
        kernel: MapOp,
        op: &'static str,
        dst: &Layout,
        src: &GpuStorage,
        sl: &Layout,
    ) -> Result<()> {
        let n = dst.numel();
        if n == 0 {
            return Ok(());
        }
        let ctx = self.ctx().clone();
        let params = elementwise_params(op, &dst.shape, [dst, sl])?;
        let kernel = Kernel::Map(kernel, indexing([dst, sl].into_iter()));
        let (x, y) = ctx.grid(n as u64, false)?;
        ctx.dispatch(kernel, &params, &[self.buf.raw(), src.buf.raw()], (x, y, 1))
    }

    pub fn reduce(&self, op: ReduceOp, l: &Layout, dims: &[usize]) -> Result<GpuStorage> {
        let ctx = self.ctx().clone();
        let (outer, inner) = split_reduced(l, dims);
        let n_out = outer.numel();
        let out_dtype = if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
            DType::I64
        } else {
            self.dtype
        };
        let out = GpuStorage::alloc(&ctx, op.name(), n_out, out_dtype)?;
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
        if slices == 1 {
            let (x, y) = ctx.grid(n_out as u64, true)?;
            ctx.dispatch(
                Kernel::Reduce(
                    op,
                    self.dtype,
                    ReduceStage::Direct,
                    ctx.subgroups && subgroup_capable(op, self.dtype),
                ),
                &p,
                &[out.buf.raw(), self.buf.raw()],
                (x, y, 1),
            )?;
            return Ok(out);
        }
        let slice_len = n_in.div_ceil(slices);
        p.push(slices as u32);
        p.push(slice_len as u32);
        // One Partial (value, index, flag) per slice.
        let partials = ctx.alloc(
            op.name(),
            (n_out * slices) as u64 * partial_size(self.dtype),
        )?;
        let (x, y) = ctx.grid((n_out * slices) as u64, true)?;
        ctx.dispatch(
            Kernel::Reduce(
                op,
                self.dtype,
                ReduceStage::Split,
                ctx.subgroups && subgroup_capable(op, self.dtype),
            ),
            &p,
            &[partials.raw(), self.buf.raw()],
            (x, y, 1),
        )?;
        let (x, y) = ctx.grid(n_out as u64, true)?;
        ctx.dispatch(
            Kernel::Reduce(op, self.dtype, ReduceStage::Combine, false),
            &[n_out as u32, slices as u32],
            &[out.buf.raw(), partials.raw()],
            (x, y, 1),
        )?;
        Ok(out)
    }

    pub fn cumsum(&self, l: &Layout, dim: usize) -> Result<GpuStorage> {
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

    pub fn matmul(&self, la: &Layout, b: &GpuStorage, lb: &Layout) -> Result<GpuStorage> {
        let ctx = self.ctx().clone();
        let r = la.rank();
        let (m, k, n) = (la.shape[r - 2], la.shape[r - 1], lb.shape[r - 1]);
        let batch_shape = &la.shape[..r - 2];
        let batch: usize = batch_shape.iter().product();
        // A transposed f32 operand of a large product (`x @ w.T` in a linear layer, `g.T @ x`
        // in its backward pass) is first copied row-major so that the vec4 kernel takes it:
        // the copy reads each element once, where the strided kernel would reload it from
        // every block row or column. Broadcast batch dims stay views (a copy would repeat
        // them).
        let worth_copying = self.dtype == DType::F32
            && vec4_enabled()
            && k.is_multiple_of(4)
            && n.is_multiple_of(4)
            && m.saturating_mul(n).saturating_mul(k) >= MATMUL_COPY_MIN_FLOPS
            && ![la, lb].iter().any(|l| broadcasts_batch(l))
            && !(vec4_layout(la) && vec4_layout(lb));
        if worth_copying {
            let row_major = |s: &GpuStorage, l: &Layout| -> Result<Option<GpuStorage>> {
                Ok(if vec4_layout(l) {
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
            return a.matmul(&la, b, &lb);
        }
        let out = GpuStorage::alloc(&ctx, "matmul", batch * m * n, self.dtype)?;
        if batch * m * n == 0 {
            return Ok(out);
        }
        if k == 0 {
            let zero = [0, 0];
            return GpuStorage::fill(&ctx, FillKind::Constant, self.dtype, batch * m * n, &zero);
        }
        // Row-major operands whose rows and offsets are whole vec4s take the vec4 kernel.
        let vec4 = self.dtype == DType::F32
            && vec4_layout(la)
            && vec4_layout(lb)
            && [
                self.buf.raw().size(),
                b.buf.raw().size(),
                out.buf.raw().size(),
            ]
            .iter()
            .all(|&s| s % 16 == 0)
            && vec4_enabled();
        let mut p = vec![m as u32, n as u32, k as u32, batch_shape.len() as u32];
        p.extend(batch_shape.iter().map(|&s| s as u32));
        // The vec4 kernel counts offsets and strides in vec4s.
        let unit = if vec4 { 4 } else { 1 };
        for &s in la.strides[..r - 2].iter().chain(&lb.strides[..r - 2]) {
            p.push(u32_of("matmul", s / unit)?);
        }
        let (kernel, block, tail) = if vec4 {
            let tail = [la.offset, la.strides[r - 2], lb.offset, lb.strides[r - 2]];
            (Kernel::MatmulVec4, 128, tail.to_vec())
        } else {
            let tail = [
                la.offset,
                la.strides[r - 2],
                la.strides[r - 1],
                lb.offset,
                lb.strides[r - 2],
                lb.strides[r - 1],
            ];
            (Kernel::Matmul(self.dtype), 64, tail.to_vec())
        };
        for v in tail {
            p.push(u32_of("matmul", v / unit)?);
        }
        // One workgroup layer per matrix of the batch, in dispatches of at most the
        // adapter's limit of workgroups per dimension; the last parameter is the first
        // matrix of each dispatch.
        let max = ctx.limits.max_compute_workgroups_per_dimension as usize;
        for first in (0..batch).step_by(max) {
            let mut pc = p.clone();
            pc.push(first as u32);
            ctx.dispatch(
                kernel,
                &pc,
                &[out.buf.raw(), self.buf.raw(), b.buf.raw()],
                (
                    n.div_ceil(block) as u32,
                    m.div_ceil(block) as u32,
                    (batch - first).min(max) as u32,
                ),
            )?;
        }
        Ok(out)
    }

    /// index_select (`index` 1-D contiguous) or gather (`index` of the output's shape).
    pub fn gather(
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
        p.push(l.shape[dim] as u32);
        let (x, y) = ctx.grid(n as u64, false)?;
        ctx.dispatch(
            Kernel::Gather(self.dtype, is_gather),
            &p,
            &[out.buf.raw(), self.buf.raw(), index.buf.raw()],
            (x, y, 1),
        )?;
        Ok(out)
    }

    pub fn scatter_add(
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
        p.push(l.shape[dim] as u32);
        p.extend(
            crate::shape::contiguous_strides(&l.shape)
                .iter()
                .map(|&s| s as u32),
        );
        let (x, y) = ctx.grid(n as u64, false)?;
        ctx.dispatch(
            Kernel::ScatterAdd(self.dtype),
            &p,
            &[out.buf.raw(), src.buf.raw(), index.buf.raw()],
            (x, y, 1),
        )?;
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
        let out = GpuStorage::alloc(ctx, "fill", n, dtype)?;
        if n == 0 {
            return Ok(out);
        }
        let mut p = vec![u32_of("fill", n)?];
        p.extend_from_slice(extra);
        let (x, y) = ctx.grid(n as u64, false)?;
        ctx.dispatch(Kernel::Fill(kind, dtype), &p, &[out.buf.raw()], (x, y, 1))?;
        Ok(out)
    }
}
