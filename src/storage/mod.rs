//! A tensor's buffer on its device, shared by every view of it, and the dispatch of each
//! primitive op to the backend that owns the buffers (the [`Backend`] seam). Adding a
//! backend means a variant here, an arm in `on_backend!` and `pair!`, and an
//! implementation of `Backend`.

mod detour;
pub(crate) mod fused;
pub(crate) mod lazy;

use crate::backend::{Arg, Backend};
use crate::device::Device;
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::gpu::GpuStorage;
use crate::host::HostBuffer;
use crate::layout::{split_reduced, Layout};
use crate::op::{BinaryOp, CmpOp, FillKind, ReduceOp, UnaryOp};
use crate::rng::Generator;
use detour::{computed, computed_buf, Detour};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Data on a device.
#[derive(Debug)]
pub enum Storage {
    Cpu(HostBuffer),
    Gpu(GpuStorage),
    /// The result of an operator expression that failed (`&a + &b` with shapes that do not
    /// broadcast): it holds the error instead of data, and every kernel, readback or write
    /// that touches it returns that error, so it can never be read as a value.
    Failed(Error),
}

/// The shared buffer of a tensor and its views. `version` counts in-place writes, so autograd
/// can tell that a tensor it saved has since been modified.
#[derive(Debug)]
pub struct StorageCell {
    data: RwLock<Storage>,
    version: AtomicU64,
    bytes: usize,
    /// Whether this holds a failed expression's error ([`Storage::Failed`]); set once (when
    /// the cell is made, or when its pending value fails), so ops check it without the lock.
    failed: AtomicBool,
    /// A value not computed yet (`lazy.rs`): computed before the data is read or written.
    lazy: lazy::Slot,
    /// Whether a pending expression may read this cell: a write computes those first.
    read_lazily: AtomicBool,
}

impl Drop for StorageCell {
    fn drop(&mut self) {
        let data = self.data.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Storage::Cpu(s) = std::mem::replace(data, Storage::Cpu(HostBuffer::F32(Vec::new())))
        {
            s.recycle();
        }
        LIVE_BYTES.fetch_sub(self.bytes as u64, Ordering::Relaxed);
        LIVE_BUFFERS.fetch_sub(1, Ordering::Relaxed);
    }
}

static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE_BUFFERS: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Counters of tensor storage, for tests and benchmarks (CPU backend: process-wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by live tensor buffers.
    pub live_bytes: u64,
    /// Number of live tensor buffers.
    pub live_buffers: u64,
    /// Buffers allocated since the process started.
    pub allocations: u64,
    /// Bytes in freed buffers kept for reuse (see `Device::empty_cache`).
    pub cached_bytes: u64,
    /// The most `live_bytes` since the process started or the last
    /// `Device::reset_peak_memory_stats` (CPU; a GPU reports its live bytes).
    pub peak_bytes: u64,
}

/// Current storage counters.
pub fn memory_stats() -> MemoryStats {
    MemoryStats {
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        live_buffers: LIVE_BUFFERS.load(Ordering::Relaxed),
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        cached_bytes: crate::cpu::pool::cached_bytes() as u64,
        peak_bytes: PEAK_BYTES.load(Ordering::Relaxed),
    }
}

/// Start the peak count again from the bytes live now.
pub fn reset_peak_memory_stats() {
    PEAK_BYTES.store(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
}

impl StorageCell {
    pub fn new(s: Storage) -> Self {
        let bytes = s.cpu_bytes();
        let live = LIVE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        LIVE_BUFFERS.fetch_add(1, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        let failed = s.failure().is_some();
        StorageCell {
            data: RwLock::new(s),
            version: AtomicU64::new(0),
            bytes,
            failed: AtomicBool::new(failed),
            lazy: lazy::Slot::default(),
            read_lazily: AtomicBool::new(false),
        }
    }

    /// A cell whose value a fused expression will compute (`lazy.rs`).
    fn pending(slot: lazy::Slot) -> Self {
        LIVE_BUFFERS.fetch_add(1, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        StorageCell {
            // Never seen: every access computes the value first.
            data: RwLock::new(Storage::Cpu(HostBuffer::F32(Vec::new()))),
            version: AtomicU64::new(0),
            bytes: 0,
            failed: AtomicBool::new(false),
            lazy: slot,
            read_lazily: AtomicBool::new(false),
        }
    }

    /// Whether this holds an error instead of data.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The error of a failed expression, if this cell holds one.
    pub fn failure(&self) -> Option<Error> {
        if !self.failed() {
            return None;
        }
        self.read().failure().cloned()
    }

    /// Compute the value if it is pending (`lazy.rs`); a no-op otherwise.
    pub fn settle(&self) {
        if self.lazy.is_pending() {
            let mut slot = self.lazy.lock();
            lazy::settle(self, &mut slot);
        }
    }

    /// Make ready for a write: the value computed, and so is every pending expression that
    /// may read it (they were made before the write and must not see it).
    fn settle_for_write(&self) {
        self.settle();
        if self.read_lazily.load(Ordering::Acquire) {
            lazy::settle_all();
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Storage> {
        self.settle();
        self.read_settled()
    }

    /// The read lock of a cell whose value is not pending (see [`with_reads`]).
    fn read_settled(&self) -> RwLockReadGuard<'_, Storage> {
        // A poisoned lock only means another thread panicked mid-write; the data is plain
        // numbers, so keep going rather than propagate the panic.
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Storage> {
        self.settle_for_write();
        self.write_settled()
    }

    /// The write lock of a cell made ready with `settle_for_write`.
    fn write_settled(&self) -> RwLockWriteGuard<'_, Storage> {
        self.version.fetch_add(1, Ordering::Relaxed);
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }
}

/// Room in host memory for `n` elements of `dtype` that the tensor layer builds itself
/// (a permutation, parsed data): the CPU backend's allocation policy, so that a size the
/// machine cannot hold is `Err(OutOfMemory)`.
pub fn host_room(op: &'static str, n: usize, dtype: DType) -> Result<()> {
    crate::cpu::room(op, n, dtype)
}

/// Room for a result of `n` elements of `dtype` on `device`, asked before an op builds
/// intermediate results toward it: host memory on the CPU, the largest buffer a kernel can
/// bind on a GPU (`Err(BufferTooLarge)` past it).
pub fn room_on(device: &crate::Device, op: &'static str, n: usize, dtype: DType) -> Result<()> {
    match device {
        crate::Device::Cpu => host_room(op, n, dtype),
        crate::Device::Gpu(g) => {
            let limit = g.max_storage_binding();
            match (n as u64).checked_mul(dtype.size_in_bytes() as u64) {
                Some(bytes) if bytes <= limit => Ok(()),
                bytes => Err(crate::Error::BufferTooLarge {
                    op,
                    bytes: bytes.unwrap_or(u64::MAX),
                    limit,
                }),
            }
        }
    }
}

/// Read-lock `cells` (the `None`s are skipped) and call `f` with their storages, by position.
/// Each distinct cell is locked once (an op on `x` and `x` must not take one lock twice: a
/// writer waiting in between would deadlock) and in address order, so that two threads
/// locking the same cells never wait on each other. No allocation: tiny ops are dominated
/// by such costs.
pub fn with_reads<R, const N: usize>(
    cells: [Option<&Arc<StorageCell>>; N],
    f: impl FnOnce([Option<&Storage>; N]) -> R,
) -> R {
    let address: [usize; N] =
        std::array::from_fn(|k| cells[k].map_or(0, |c| Arc::as_ptr(c) as usize));
    // The first position holding each cell owns its guard; the others borrow it.
    let owner: [usize; N] = std::array::from_fn(|k| {
        (0..k)
            .find(|&j| address[j] != 0 && address[j] == address[k])
            .unwrap_or(k)
    });
    let mut order: [usize; N] = std::array::from_fn(|k| k);
    order.sort_unstable_by_key(|&k| address[k]);
    // Pending values are computed before any lock is held: computing one reads other cells.
    for c in cells.iter().flatten() {
        c.settle();
    }
    let mut guards: [Option<RwLockReadGuard<'_, Storage>>; N] = std::array::from_fn(|_| None);
    for k in order {
        if owner[k] == k {
            guards[k] = cells[k].map(|c| c.read_settled());
        }
    }
    f(std::array::from_fn(|k| guards[owner[k]].as_deref()))
}

/// Write-lock `dst` and read-lock `src` (another cell), in address order (see
/// [`with_reads`]): `a.mul_(&b)` on one thread and `b.mul_(&a)` on another cannot deadlock.
pub fn with_write_read<R>(
    dst: &Arc<StorageCell>,
    src: &Arc<StorageCell>,
    f: impl FnOnce(&mut Storage, &Storage) -> R,
) -> R {
    // Pending values are computed before any lock is held (see `with_reads`).
    dst.settle_for_write();
    src.settle();
    if Arc::as_ptr(dst) < Arc::as_ptr(src) {
        let mut d = dst.write_settled();
        let s = src.read_settled();
        f(&mut d, &s)
    } else {
        let s = src.read_settled();
        let mut d = dst.write_settled();
        f(&mut d, &s)
    }
}

fn mismatch(op: &'static str, lhs: &Storage, rhs: &Storage) -> Error {
    Error::DeviceMismatch {
        op,
        lhs: lhs.device().to_string(),
        rhs: rhs.device().to_string(),
    }
}

/// An operand of the storage layer: a buffer of either backend, or a number.
pub type StorageArg<'a> = Arg<'a, Storage>;

/// The operand as one of the CPU backend; a buffer elsewhere is a `DeviceMismatch` with the
/// op's device, `here` (made only then).
fn on_cpu<'a>(
    op: &'static str,
    a: StorageArg<'a>,
    here: impl FnOnce() -> Device,
) -> Result<Arg<'a, HostBuffer>> {
    match a {
        Arg::Buf(Storage::Cpu(s), l) => Ok(Arg::Buf(s, l)),
        Arg::Buf(Storage::Failed(e), _) => Err(e.clone()),
        Arg::Buf(s @ Storage::Gpu(_), _) => Err(device_mismatch(op, &here(), &s.device())),
        Arg::Scalar(v) => Ok(Arg::Scalar(v)),
    }
}

/// The operand as one of the GPU device `ctx`.
fn on_gpu<'a>(
    op: &'static str,
    ctx: &Arc<crate::gpu::GpuContext>,
    a: StorageArg<'a>,
) -> Result<Arg<'a, GpuStorage>> {
    match a {
        Arg::Buf(Storage::Gpu(s), l) if Arc::ptr_eq(s.ctx(), ctx) => Ok(Arg::Buf(s, l)),
        Arg::Buf(Storage::Failed(e), _) => Err(e.clone()),
        Arg::Buf(s, _) => {
            let here = Device::Gpu(crate::gpu::GpuDevice(ctx.clone()));
            Err(device_mismatch(op, &here, &s.device()))
        }
        Arg::Scalar(v) => Ok(Arg::Scalar(v)),
    }
}

/// The first buffer among `args`: it decides the backend of an elementwise op.
fn first_buffer<'a>(op: &'static str, args: &[StorageArg<'a>]) -> Result<&'a Storage> {
    args.iter()
        .find_map(|a| match a {
            Arg::Buf(s, _) => Some(*s),
            Arg::Scalar(_) => None,
        })
        .ok_or_else(|| Error::invalid(op, "an elementwise op needs at least one tensor operand"))
}

/// Run `$body` with `$s` bound to the backend buffer of `$storage`, wrapping a new buffer.
macro_rules! on_backend {
    ($storage:expr, |$s:ident| $body:expr) => {
        match $storage {
            Storage::Cpu($s) => $body.map(Storage::Cpu),
            Storage::Gpu($s) => $body.map(Storage::Gpu),
            Storage::Failed(e) => Err(e.clone()),
        }
    };
}

/// Run `$body` on two buffers of one backend; buffers of two devices are a `DeviceMismatch`.
macro_rules! pair {
    ($op:expr, $a:expr, $b:expr, |$x:ident, $y:ident| $body:expr) => {
        match ($a, $b) {
            (Storage::Cpu($x), Storage::Cpu($y)) => $body.map(Storage::Cpu),
            (Storage::Gpu($x), Storage::Gpu($y)) => $body.map(Storage::Gpu),
            (Storage::Failed(e), _) | (_, Storage::Failed(e)) => Err(e.clone()),
            (a @ Storage::Cpu(_), b @ Storage::Gpu(_))
            | (a @ Storage::Gpu(_), b @ Storage::Cpu(_)) => Err(mismatch($op, a, b)),
        }
    };
}

/// Run the backend function `$method($pre.., a, b)` of the backend that owns the first buffer
/// among the operands `a` and `b`; a buffer of another device is a `DeviceMismatch`.
macro_rules! elementwise {
    ($name:expr, $a:expr, $b:expr, $method:ident($($pre:expr),*)) => {{
        let (name, a, b) = ($name, $a, $b);
        let first = first_buffer(name, &[a, b])?;
        match first {
            Storage::Cpu(_) => HostBuffer::$method($($pre,)* on_cpu(name, a, || Device::Cpu)?, on_cpu(name, b, || Device::Cpu)?)
                .map(Storage::Cpu),
            Storage::Gpu(g) => GpuStorage::$method($($pre,)* on_gpu(name, g.ctx(), a)?, on_gpu(name, g.ctx(), b)?)
                .map(Storage::Gpu),
            Storage::Failed(e) => Err(e.clone()),
        }
    }};
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(g) => Device::Gpu(crate::gpu::GpuDevice(g.ctx().clone())),
            Storage::Failed(_) => Device::Cpu,
        }
    }

    /// The error a failed expression holds, if this is one.
    pub fn failure(&self) -> Option<&Error> {
        match self {
            Storage::Failed(e) => Some(e),
            Storage::Cpu(_) | Storage::Gpu(_) => None,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => Backend::dtype(s),
            Storage::Gpu(g) => Backend::dtype(g),
            Storage::Failed(_) => DType::F32,
        }
    }

    /// Bytes of CPU memory held (GPU buffers are counted by their device).
    pub fn cpu_bytes(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len() * s.dtype().size_in_bytes(),
            Storage::Gpu(_) | Storage::Failed(_) => 0,
        }
    }

    /// An address identifying the buffer, stable for its lifetime.
    pub fn data_ptr(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.data_ptr(),
            Storage::Gpu(g) => &g.buf as *const _ as usize,
            Storage::Failed(_) => 0,
        }
    }

    pub fn full(device: &Device, n: usize, value: Scalar, dtype: DType) -> Result<Storage> {
        match device {
            Device::Cpu => HostBuffer::full(&(), n, value, dtype).map(Storage::Cpu),
            Device::Gpu(g) => GpuStorage::full(&g.0, n, value, dtype).map(Storage::Gpu),
        }
    }

    /// `start + i * step` for `i < n`, computed on the device.
    pub fn arange(
        device: &Device,
        n: usize,
        start: Scalar,
        step: Scalar,
        dtype: DType,
    ) -> Result<Storage> {
        match device {
            Device::Cpu => HostBuffer::arange(&(), n, start, step, dtype).map(Storage::Cpu),
            Device::Gpu(g) => GpuStorage::arange(&g.0, n, start, step, dtype).map(Storage::Gpu),
        }
    }

    /// Random numbers from `gen`'s stream: the same values on every device.
    pub fn random(
        device: &Device,
        kind: FillKind,
        n: usize,
        gen: &mut Generator,
        range: (i64, i64),
    ) -> Result<Storage> {
        match device {
            Device::Cpu => HostBuffer::random(&(), kind, n, gen, range).map(Storage::Cpu),
            Device::Gpu(g) => GpuStorage::random(&g.0, kind, n, gen, range).map(Storage::Gpu),
        }
    }

    /// Host data moved to `device` (an upload on a GPU).
    pub fn from_host(device: &Device, data: HostBuffer) -> Result<Storage> {
        match device {
            Device::Cpu => HostBuffer::from_host(&(), data).map(Storage::Cpu),
            Device::Gpu(g) => GpuStorage::from_host(&g.0, data).map(Storage::Gpu),
        }
    }

    /// The elements of `l`, row-major, in host memory (a readback on a GPU).
    pub fn to_host(&self, l: &Layout) -> Result<HostBuffer> {
        match self {
            Storage::Cpu(s) => s.to_host(l),
            Storage::Gpu(g) => g.to_host(l),
            Storage::Failed(e) => Err(e.clone()),
        }
    }

    pub fn copy_strided(&self, l: &Layout) -> Result<Storage> {
        on_backend!(self, |s| s.copy_strided(l))
    }

    /// Overwrite the elements of `dst` with `src` (same dtype, broadcast to `dst`'s shape,
    /// or a number).
    pub fn write(&mut self, dst: &Layout, src: StorageArg<'_>) -> Result<()> {
        match self {
            Storage::Cpu(d) => d.write(dst, on_cpu("assign", src, || Device::Cpu)?),
            Storage::Gpu(d) => {
                let ctx = d.ctx().clone();
                d.write(dst, on_gpu("assign", &ctx, src)?)
            }
            Storage::Failed(e) => Err(e.clone()),
        }
    }

    pub fn unary(&self, op: UnaryOp, l: &Layout) -> Result<Storage> {
        if let Some(d) = Detour::of(self.dtype(), self) {
            let moved = d.take(self, l)?;
            let (s, sl) = computed_buf(self, l, &moved);
            return d.back(s.unary(op, sl)?, l.numel());
        }
        on_backend!(self, |s| s.unary(op, l))
    }

    /// `a (op) b` over `shape` in `dtype`; operands already of `dtype` and broadcast.
    pub fn binary(
        op: BinaryOp,
        shape: &[usize],
        dtype: DType,
        a: StorageArg<'_>,
        b: StorageArg<'_>,
    ) -> Result<Storage> {
        if let Some(d) = Detour::of_args(dtype, [a, b]) {
            return d.elementwise(shape, [a, b], |[a, b]| {
                Storage::binary(op, shape, dtype.compute_dtype(), a, b)
            });
        }
        elementwise!(op.name(), a, b, binary(op, shape, dtype))
    }

    /// `self[dst] = self[dst] (op) src` in place; `src` is another buffer or a number.
    pub fn binary_inplace(
        &mut self,
        op: BinaryOp,
        dst: &Layout,
        src: StorageArg<'_>,
    ) -> Result<()> {
        if Detour::of(self.dtype(), self).is_some() {
            // Computed where the dtype computes, then written through the view.
            let dtype = self.dtype();
            let r = Storage::binary(op, &dst.shape, dtype, Arg::Buf(self, dst), src)?;
            return self.write(dst, Arg::Buf(&r, &Layout::contiguous(&dst.shape)));
        }
        match self {
            Storage::Cpu(d) => d.binary_inplace(op, dst, on_cpu(op.name(), src, || Device::Cpu)?),
            Storage::Gpu(d) => {
                let ctx = d.ctx().clone();
                d.binary_inplace(op, dst, on_gpu(op.name(), &ctx, src)?)
            }
            Storage::Failed(e) => Err(e.clone()),
        }
    }

    pub fn cmp(
        op: CmpOp,
        shape: &[usize],
        dtype: DType,
        a: StorageArg<'_>,
        b: StorageArg<'_>,
    ) -> Result<Storage> {
        if let Some(d) = Detour::of_args(dtype, [a, b]) {
            return d.elementwise(shape, [a, b], |[a, b]| {
                Storage::cmp(op, shape, dtype.compute_dtype(), a, b)
            });
        }
        elementwise!(op.name(), a, b, cmp(op, shape, dtype))
    }

    pub fn where_cond(
        shape: &[usize],
        dtype: DType,
        cond: (&Storage, &Layout),
        a: StorageArg<'_>,
        b: StorageArg<'_>,
    ) -> Result<Storage> {
        if let Some(d) = Detour::of(dtype, cond.0) {
            let (ma, mb) = (d.take_arg(a)?, d.take_arg(b)?);
            let mc = d.take(cond.0, cond.1)?;
            let (a, b) = (computed(a, &ma), computed(b, &mb));
            let cond = computed_buf(cond.0, cond.1, &mc);
            let r = Storage::where_cond(shape, dtype.compute_dtype(), cond, a, b)?;
            return d.back(r, shape.iter().product());
        }
        let (c, lc) = cond;
        match c {
            Storage::Cpu(cs) => HostBuffer::where_cond(
                shape,
                dtype,
                (cs, lc),
                on_cpu("where", a, || Device::Cpu)?,
                on_cpu("where", b, || Device::Cpu)?,
            )
            .map(Storage::Cpu),
            Storage::Gpu(cs) => GpuStorage::where_cond(
                shape,
                dtype,
                (cs, lc),
                on_gpu("where", cs.ctx(), a)?,
                on_gpu("where", cs.ctx(), b)?,
            )
            .map(Storage::Gpu),
            Storage::Failed(e) => Err(e.clone()),
        }
    }

    pub fn cast(&self, l: &Layout, to: DType) -> Result<Storage> {
        // A conversion from or to F64 on a GPU runs on the host.
        let involves_f64 = self.dtype() != to && (self.dtype() == DType::F64 || to == DType::F64);
        if involves_f64 && matches!(self, Storage::Gpu(_)) {
            let d = Detour::Host(self.device());
            let moved = d.take(self, l)?;
            let (s, sl) = computed_buf(self, l, &moved);
            return d.back(s.cast(sl, to)?, l.numel());
        }
        on_backend!(self, |s| s.cast(l, to))
    }

    pub fn reduce(&self, op: ReduceOp, l: &Layout, dims: &[usize]) -> Result<Storage> {
        // The extremum over a broadcast dim is the extremum of its one stored element: read
        // once, not once per repeat (a max over a row expanded to 2^20 x 2^20 was 2^40 reads
        // on a GPU, hours on lavapipe, before softmax's next op refused the size). Over one
        // dim, its first extremum is at index 0 too; over several, an index counts the
        // repeats, so those keep the full walk.
        let extremum = match op {
            ReduceOp::Max | ReduceOp::Min => true,
            ReduceOp::ArgMax | ReduceOp::ArgMin => dims.len() == 1,
            ReduceOp::Sum | ReduceOp::Prod => false,
        };
        let shrunk;
        let l = if extremum && dims.iter().any(|&d| l.strides[d] == 0 && l.shape[d] > 1) {
            let mut once = l.clone();
            for &d in dims {
                if once.strides[d] == 0 {
                    once.shape[d] = once.shape[d].min(1);
                }
            }
            shrunk = once;
            &shrunk
        } else {
            l
        };
        if let Some(d) = Detour::of(self.dtype(), self) {
            let moved = d.take(self, l)?;
            let (s, sl) = computed_buf(self, l, &moved);
            return d.back(s.reduce(op, sl, dims)?, split_reduced(l, dims).0.numel());
        }
        on_backend!(self, |s| s.reduce(op, l, dims))
    }

    pub fn cumsum(&self, l: &Layout, dim: usize) -> Result<Storage> {
        if let Some(d) = Detour::of(self.dtype(), self) {
            let moved = d.take(self, l)?;
            let (s, sl) = computed_buf(self, l, &moved);
            return d.back(s.cumsum(sl, dim)?, l.numel());
        }
        on_backend!(self, |s| s.cumsum(l, dim))
    }

    pub fn matmul(&self, l: &Layout, rhs: &Storage, rl: &Layout) -> Result<Storage> {
        if let Some(d) = Detour::of(self.dtype(), self) {
            let r_dims = l.rank();
            let n = l.shape[..r_dims - 1]
                .iter()
                .product::<usize>()
                .saturating_mul(rl.shape[r_dims - 1]);
            // A GPU reads 16-bit operands in its matmul kernel and gives the f32 product.
            if let (Detour::Widen(_), Storage::Gpu(a), Storage::Gpu(b)) = (&d, self, rhs) {
                if a.dtype == b.dtype && Arc::ptr_eq(a.ctx(), b.ctx()) {
                    return d.back(Storage::Gpu(a.matmul(l, b, rl)?), n);
                }
            }
            let (ma, mb) = (d.take(self, l)?, d.take(rhs, rl)?);
            let (a, al) = computed_buf(self, l, &ma);
            let (b, bl) = computed_buf(rhs, rl, &mb);
            return d.back(a.matmul(al, b, bl)?, n);
        }
        pair!("matmul", self, rhs, |a, b| a.matmul(l, b, rl))
    }

    pub fn index_select(
        &self,
        l: &Layout,
        dim: usize,
        index: &Storage,
        il: &Layout,
    ) -> Result<Storage> {
        if let Some(d) = Detour::of(self.dtype(), self) {
            let (ms, mi) = (d.take(self, l)?, d.take(index, il)?);
            let (s, sl) = computed_buf(self, l, &ms);
            let (i, il) = computed_buf(index, il, &mi);
            let r = s.index_select(sl, dim, i, il)?;
            let rows: usize = (0..l.rank())
                .filter(|&k| k != dim)
                .map(|k| l.shape[k])
                .product();
            return d.back(r, rows * il.numel());
        }
        pair!("index_select", self, index, |s, i| s
            .index_select(l, dim, i, il))
    }

    pub fn gather(&self, l: &Layout, dim: usize, index: &Storage, il: &Layout) -> Result<Storage> {
        if let Some(d) = Detour::of(self.dtype(), self) {
            let (ms, mi) = (d.take(self, l)?, d.take(index, il)?);
            let (s, sl) = computed_buf(self, l, &ms);
            let (i, il) = computed_buf(index, il, &mi);
            return d.back(s.gather(sl, dim, i, il)?, il.numel());
        }
        pair!("gather", self, index, |s, i| s.gather(l, dim, i, il))
    }

    pub fn scatter_add(
        &self,
        l: &Layout,
        dim: usize,
        index: &Storage,
        il: &Layout,
        src: &Storage,
        sl: &Layout,
    ) -> Result<Storage> {
        if let Some(d) = Detour::of(self.dtype(), self) {
            let (mb, ms, mi) = (d.take(self, l)?, d.take(src, sl)?, d.take(index, il)?);
            let (b, bl) = computed_buf(self, l, &mb);
            let (s, sl) = computed_buf(src, sl, &ms);
            let (i, il) = computed_buf(index, il, &mi);
            return d.back(b.scatter_add(bl, dim, i, il, s, sl)?, l.numel());
        }
        match (self, index, src) {
            (Storage::Cpu(b), Storage::Cpu(i), Storage::Cpu(s)) => {
                b.scatter_add(l, dim, i, il, s, sl).map(Storage::Cpu)
            }
            (Storage::Gpu(b), Storage::Gpu(i), Storage::Gpu(s)) => {
                b.scatter_add(l, dim, i, il, s, sl).map(Storage::Gpu)
            }
            (Storage::Failed(e), _, _)
            | (_, Storage::Failed(e), _)
            | (_, _, Storage::Failed(e)) => Err(e.clone()),
            (b, i, s) => {
                let other = if i.device() != b.device() { i } else { s };
                Err(mismatch("scatter_add", b, other))
            }
        }
    }
}

fn device_mismatch(op: &'static str, a: &Device, b: &Device) -> Error {
    Error::DeviceMismatch {
        op,
        lhs: a.to_string(),
        rhs: b.to_string(),
    }
}
