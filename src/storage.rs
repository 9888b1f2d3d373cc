//! A tensor's buffer on its device, shared by every view of it, and the dispatch of each
//! primitive op to the backend that owns the buffer. Adding a backend means adding a variant
//! here and an arm to each function below.

use crate::cpu::{self, CpuStorage};
use crate::device::Device;
use crate::dtype::{DType, Scalar};
use crate::error::Result;
use crate::layout::Layout;
use crate::op::{BinaryOp, CmpOp, ReduceOp, UnaryOp};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Data on a device.
#[derive(Debug, Clone)]
pub enum Storage {
    Cpu(CpuStorage),
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
        match std::mem::replace(data, Storage::Cpu(CpuStorage::F32(Vec::new()))) {
            Storage::Cpu(s) => s.recycle(),
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
}

/// Current storage counters.
pub fn memory_stats() -> MemoryStats {
    MemoryStats {
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        live_buffers: LIVE_BUFFERS.load(Ordering::Relaxed),
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
    }
}

impl StorageCell {
    pub fn new(s: Storage) -> Self {
        let bytes = s.size_in_bytes();
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

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
        }
    }

    /// Size of the buffer in bytes.
    pub fn size_in_bytes(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len() * s.dtype().size_in_bytes(),
        }
    }

    pub fn full(device: &Device, n: usize, value: Scalar, dtype: DType) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuStorage::full(n, value, dtype))),
        }
    }

    /// The CPU copy of the elements of `l`, row-major (a readback on a GPU).
    pub fn to_cpu(&self, l: &Layout) -> Result<CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s.copy_strided(l)),
        }
    }

    /// Upload CPU data to `device`.
    pub fn from_cpu(device: &Device, s: CpuStorage) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(s)),
        }
    }

    pub fn copy_strided(&self, l: &Layout) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(s.copy_strided(l))),
        }
    }

    /// Overwrite the elements of `dst` with `src` (same dtype, broadcast to `dst`'s shape).
    pub fn write(&mut self, dst: &Layout, src: &Storage, sl: &Layout) -> Result<()> {
        match (self, src) {
            (Storage::Cpu(d), Storage::Cpu(s)) => d.write(dst, s, sl),
        }
        Ok(())
    }

    pub fn unary(&self, op: UnaryOp, l: &Layout) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::unary(op, s, l))),
        }
    }

    pub fn binary(&self, op: BinaryOp, l: &Layout, rhs: &Storage, rl: &Layout) -> Result<Storage> {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Ok(Storage::Cpu(cpu::binary(op, a, l, b, rl))),
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
        }
        Ok(())
    }

    pub fn cmp(&self, op: CmpOp, l: &Layout, rhs: &Storage, rl: &Layout) -> Result<Storage> {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Ok(Storage::Cpu(cpu::cmp(op, a, l, b, rl))),
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
                Ok(Storage::Cpu(cpu::where_cond(c, l, a, la, b, lb)))
            }
            _ => unreachable!("where: condition dtype is checked by the caller"),
        }
    }

    pub fn cast(&self, l: &Layout, to: DType) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::cast(s, l, to))),
        }
    }

    pub fn reduce(&self, op: ReduceOp, l: &Layout, dims: &[usize]) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::reduce(op, s, l, dims))),
        }
    }

    pub fn cumsum(&self, l: &Layout, dim: usize) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::cumsum(s, l, dim))),
        }
    }

    pub fn matmul(&self, l: &Layout, rhs: &Storage, rl: &Layout) -> Result<Storage> {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Ok(Storage::Cpu(cpu::matmul(a, l, b, rl))),
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
            _ => unreachable!("index_select: index dtype is checked by the caller"),
        }
    }

    pub fn gather(&self, l: &Layout, dim: usize, index: &Storage, il: &Layout) -> Result<Storage> {
        match (self, index) {
            (Storage::Cpu(s), Storage::Cpu(CpuStorage::I64(i))) => {
                Ok(Storage::Cpu(cpu::gather(s, l, dim, i, il)?))
            }
            _ => unreachable!("gather: index dtype is checked by the caller"),
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
            _ => unreachable!("scatter_add: index dtype is checked by the caller"),
        }
    }
}
