//! A tensor's buffer on its device, shared by every view of it, and the dispatch of each
//! primitive op to the backend that owns the buffer. Adding a backend means adding a variant
//! here and an arm to each function below.

use crate::cpu::{self, CpuStorage};
use crate::device::Device;
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::gpu::kernels::FillKind;
use crate::gpu::GpuStorage;
use crate::layout::Layout;
use crate::op::{BinaryOp, CmpOp, ReduceOp, UnaryOp};
use crate::rng::Generator;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Data on a device.
#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Gpu(GpuStorage),
}

/// The shared buffer of a tensor and its views. `version` counts in-place writes, so autograd
/// can tell that a tensor it saved has since been modified.
#[derive(Debug)]
pub struct StorageCell {
    data: RwLock<Storage>,
    version: AtomicU64,
    bytes: usize,
}

impl Drop for StorageCell {
    fn drop(&mut self) {
        let data = self.data.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Storage::Cpu(s) = std::mem::replace(data, Storage::Cpu(CpuStorage::F32(Vec::new())))
        {
            s.recycle();
        }
        LIVE_BYTES.fetch_sub(self.bytes as u64, Ordering::Relaxed);
        LIVE_BUFFERS.fetch_sub(1, Ordering::Relaxed);
    }
}

static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
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
}

/// Current storage counters.
pub fn memory_stats() -> MemoryStats {
    MemoryStats {
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        live_buffers: LIVE_BUFFERS.load(Ordering::Relaxed),
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        cached_bytes: crate::cpu::pool::cached_bytes() as u64,
    }
}

impl StorageCell {
    pub fn new(s: Storage) -> Self {
        let bytes = s.cpu_bytes();
        LIVE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
        LIVE_BUFFERS.fetch_add(1, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        StorageCell {
            data: RwLock::new(s),
            version: AtomicU64::new(0),
            bytes,
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Storage> {
        // A poisoned lock only means another thread panicked mid-write; the data is plain
        // numbers, so keep going rather than propagate the panic.
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Storage> {
        self.version.fetch_add(1, Ordering::Relaxed);
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }
}

fn mismatch(op: &'static str) -> Error {
    Error::DeviceMismatch {
        op,
        lhs: "cpu".into(),
        rhs: "gpu".into(),
    }
}

/// The words of a scalar in the GPU representation of `dtype` (I64: low word, high word).
fn gpu_words(value: Scalar, dtype: DType) -> Vec<u32> {
    match dtype {
        DType::F32 => vec![(value.to_f64() as f32).to_bits()],
        DType::I64 => i64_words(value.to_i64()).to_vec(),
        DType::Bool => vec![value.to_bool() as u32],
    }
}

fn i64_words(v: i64) -> [u32; 2] {
    [v as u32, (v >> 32) as u32]
}

/// Room in CPU memory for a result of `n` elements of `dtype`, so that a size the machine
/// cannot hold (say, an op on a view expanded to 2^40 elements) is an `Err`, not an abort:
/// more than the machine's RAM and swap is refused, and an allocation of 1 GiB or more is
/// tried first (where the system says up front that it cannot be had).
fn cpu_room(op: &'static str, n: usize, dtype: DType) -> Result<()> {
    let bytes = crate::shape::addressable_bytes(op, &[n], dtype.size_in_bytes())?;
    if bytes < 1 << 30 {
        return Ok(());
    }
    let out_of_memory = Error::OutOfMemory {
        op,
        bytes: bytes as u64,
        device: "cpu",
    };
    if system_memory().is_some_and(|total| bytes as u64 > total) {
        return Err(out_of_memory);
    }
    Vec::<u8>::new()
        .try_reserve_exact(bytes)
        .map_err(|_| out_of_memory)
}

/// RAM plus swap in bytes, where the system reports it (Linux's /proc/meminfo).
fn system_memory() -> Option<u64> {
    static TOTAL: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = |key: &str| -> Option<u64> {
            let line = info.lines().find(|l| l.starts_with(key))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)) * 1024)
    })
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(g) => Device::Gpu(crate::gpu::GpuDevice(g.ctx().clone())),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Gpu(g) => g.dtype,
        }
    }

    /// Bytes of CPU memory held (GPU buffers are counted by their device).
    pub fn cpu_bytes(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len() * s.dtype().size_in_bytes(),
            Storage::Gpu(_) => 0,
        }
    }

    /// An address identifying the buffer, stable for its lifetime.
    pub fn data_ptr(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.data_ptr(),
            Storage::Gpu(g) => &g.buf as *const _ as usize,
        }
    }

    pub fn full(device: &Device, n: usize, value: Scalar, dtype: DType) -> Result<Storage> {
        match device {
            Device::Cpu => {
                cpu_room("full", n, dtype)?;
                Ok(Storage::Cpu(CpuStorage::full(n, value, dtype)))
            }
            Device::Gpu(g) => Ok(Storage::Gpu(GpuStorage::fill(
                &g.0,
                FillKind::Constant,
                dtype,
                n,
                &gpu_words(value, dtype),
            )?)),
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
            Device::Cpu => Ok(Storage::Cpu(match dtype {
                DType::I64 => {
                    let (s, st) = (start.to_i64(), step.to_i64());
                    CpuStorage::I64((0..n as i64).map(|i| s + i * st).collect())
                }
                _ => {
                    let (s, st) = (start.to_f64(), step.to_f64());
                    CpuStorage::F32((0..n).map(|i| (s + i as f64 * st) as f32).collect())
                }
            })),
            Device::Gpu(g) => {
                let words = [gpu_words(start, dtype), gpu_words(step, dtype)].concat();
                Ok(Storage::Gpu(GpuStorage::fill(
                    &g.0,
                    FillKind::Arange,
                    dtype,
                    n,
                    &words,
                )?))
            }
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
            Device::Cpu => Ok(Storage::Cpu(match kind {
                FillKind::Uniform => CpuStorage::F32(gen.uniform(n)),
                FillKind::Normal => CpuStorage::F32(gen.normal(n)),
                _ => CpuStorage::I64(gen.int_range(n, range.0, range.1)),
            })),
            Device::Gpu(g) => {
                let span = range.1.wrapping_sub(range.0);
                let (seed, start) = (gen.seed(), gen.advance(n));
                let params = [
                    i64_words(seed as i64),
                    i64_words(start as i64),
                    i64_words(range.0),
                    i64_words(span),
                ]
                .concat();
                let dtype = if kind == FillKind::RandInt {
                    DType::I64
                } else {
                    DType::F32
                };
                Ok(Storage::Gpu(GpuStorage::fill(
                    &g.0, kind, dtype, n, &params,
                )?))
            }
        }
    }

    /// The CPU copy of the elements of `l`, row-major (a readback on a GPU).
    pub fn to_cpu(&self, l: &Layout) -> Result<CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s.copy_strided(l)),
            Storage::Gpu(g) => g.to_cpu(l),
        }
    }

    /// Upload CPU data to `device`.
    pub fn from_cpu(device: &Device, s: CpuStorage) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(s)),
            Device::Gpu(g) => Ok(Storage::Gpu(GpuStorage::from_cpu(&g.0, &s)?)),
        }
    }

    pub fn copy_strided(&self, l: &Layout) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => {
                cpu_room("contiguous", l.numel(), s.dtype())?;
                Ok(Storage::Cpu(s.copy_strided(l)))
            }
            Storage::Gpu(g) => Ok(Storage::Gpu(g.copy_strided(l)?)),
        }
    }

    /// Overwrite the elements of `dst` with `src` (same dtype, broadcast to `dst`'s shape).
    pub fn write(&mut self, dst: &Layout, src: &Storage, sl: &Layout) -> Result<()> {
        match (self, src) {
            (Storage::Cpu(d), Storage::Cpu(s)) => d.write(dst, s, sl),
            (Storage::Gpu(d), Storage::Gpu(s)) => d.write(dst, s, sl)?,
            _ => return Err(mismatch("assign")),
        }
        Ok(())
    }

    pub fn unary(&self, op: UnaryOp, l: &Layout) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => {
                cpu_room(op.name(), l.numel(), s.dtype())?;
                Ok(Storage::Cpu(cpu::unary(op, s, l)))
            }
            Storage::Gpu(g) => Ok(Storage::Gpu(g.unary(op, l)?)),
        }
    }

    pub fn binary(&self, op: BinaryOp, l: &Layout, rhs: &Storage, rl: &Layout) -> Result<Storage> {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                cpu_room(op.name(), l.numel(), a.dtype())?;
                Ok(Storage::Cpu(cpu::binary(op, a, l, b, rl)))
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => Ok(Storage::Gpu(a.binary(op, l, b, rl)?)),
            _ => Err(mismatch(op.name())),
        }
    }

    /// `self[dst] = self[dst] (op) rhs` in place; `rhs` is another buffer of the same dtype.
    pub fn binary_inplace(
        &mut self,
        op: BinaryOp,
        dst: &Layout,
        rhs: &Storage,
        rl: &Layout,
    ) -> Result<()> {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => cpu::binary_inplace(op, a, dst, b, rl),
            (Storage::Gpu(a), Storage::Gpu(b)) => a.binary_inplace(op, dst, b, rl)?,
            _ => return Err(mismatch(op.name())),
        }
        Ok(())
    }

    pub fn cmp(&self, op: CmpOp, l: &Layout, rhs: &Storage, rl: &Layout) -> Result<Storage> {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                cpu_room(op.name(), l.numel(), DType::Bool)?;
                Ok(Storage::Cpu(cpu::cmp(op, a, l, b, rl)))
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => Ok(Storage::Gpu(a.cmp(op, l, b, rl)?)),
            _ => Err(mismatch(op.name())),
        }
    }

    pub fn where_cond(
        &self,
        l: &Layout,
        a: &Storage,
        la: &Layout,
        b: &Storage,
        lb: &Layout,
    ) -> Result<Storage> {
        match (self, a, b) {
            (Storage::Cpu(CpuStorage::Bool(c)), Storage::Cpu(a), Storage::Cpu(b)) => {
                cpu_room("where", l.numel(), a.dtype())?;
                Ok(Storage::Cpu(cpu::where_cond(c, l, a, la, b, lb)))
            }
            (Storage::Gpu(c), Storage::Gpu(a), Storage::Gpu(b)) => {
                Ok(Storage::Gpu(c.where_cond(l, a, la, b, lb)?))
            }
            _ => Err(mismatch("where")),
        }
    }

    pub fn cast(&self, l: &Layout, to: DType) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => {
                cpu_room("to_dtype", l.numel(), to)?;
                Ok(Storage::Cpu(cpu::cast(s, l, to)))
            }
            Storage::Gpu(g) => Ok(Storage::Gpu(g.cast(l, to)?)),
        }
    }

    pub fn reduce(&self, op: ReduceOp, l: &Layout, dims: &[usize]) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::reduce(op, s, l, dims))),
            Storage::Gpu(g) => Ok(Storage::Gpu(g.reduce(op, l, dims)?)),
        }
    }

    pub fn cumsum(&self, l: &Layout, dim: usize) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::cumsum(s, l, dim))),
            Storage::Gpu(g) => Ok(Storage::Gpu(g.cumsum(l, dim)?)),
        }
    }

    pub fn matmul(&self, l: &Layout, rhs: &Storage, rl: &Layout) -> Result<Storage> {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                let r = l.rank();
                let n = l.shape[..r - 1]
                    .iter()
                    .product::<usize>()
                    .saturating_mul(rl.shape[r - 1]);
                cpu_room("matmul", n, a.dtype())?;
                Ok(Storage::Cpu(cpu::matmul(a, l, b, rl)))
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => Ok(Storage::Gpu(a.matmul(l, b, rl)?)),
            _ => Err(mismatch("matmul")),
        }
    }

    pub fn index_select(
        &self,
        l: &Layout,
        dim: usize,
        index: &Storage,
        il: &Layout,
    ) -> Result<Storage> {
        match (self, index) {
            (Storage::Cpu(s), Storage::Cpu(CpuStorage::I64(i))) => Ok(Storage::Cpu(
                cpu::index_select(s, l, dim, &cpu::contiguous_cow(i, il))?,
            )),
            (Storage::Gpu(s), Storage::Gpu(i)) => {
                let mut shape = l.shape.clone();
                shape[dim] = il.numel();
                let idx = if il.is_contiguous() {
                    None
                } else {
                    Some(i.copy_strided(il)?)
                };
                let (i, il) = match &idx {
                    Some(c) => (c, Layout::contiguous(&il.shape)),
                    None => (i, il.clone()),
                };
                Ok(Storage::Gpu(s.gather(l, dim, i, &il, &shape, false)?))
            }
            _ => Err(mismatch("index_select")),
        }
    }

    pub fn gather(&self, l: &Layout, dim: usize, index: &Storage, il: &Layout) -> Result<Storage> {
        match (self, index) {
            (Storage::Cpu(s), Storage::Cpu(CpuStorage::I64(i))) => {
                Ok(Storage::Cpu(cpu::gather(s, l, dim, i, il)?))
            }
            (Storage::Gpu(s), Storage::Gpu(i)) => {
                Ok(Storage::Gpu(s.gather(l, dim, i, il, &il.shape, true)?))
            }
            _ => Err(mismatch("gather")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn scatter_add(
        &self,
        l: &Layout,
        dim: usize,
        index: &Storage,
        il: &Layout,
        src: &Storage,
        sl: &Layout,
    ) -> Result<Storage> {
        match (self, index, src) {
            (Storage::Cpu(b), Storage::Cpu(CpuStorage::I64(i)), Storage::Cpu(s)) => {
                Ok(Storage::Cpu(cpu::scatter_add(b, l, dim, i, il, s, sl)?))
            }
            (Storage::Gpu(b), Storage::Gpu(i), Storage::Gpu(s)) => {
                Ok(Storage::Gpu(b.scatter_add(l, dim, i, il, s, sl)?))
            }
            _ => Err(mismatch("scatter_add")),
        }
    }
}
