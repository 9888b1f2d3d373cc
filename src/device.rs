//! Where a tensor's data lives.

use std::fmt;

/// A compute device: the CPU, always available, or a GPU through wgpu. Tensors live on one
/// device; every primitive runs on the backend that owns its operands' storage
/// (`backend.rs`, `storage.rs`), and tensors of two devices never mix silently.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// The pure-Rust backend: strided kernels, rayon threads, `gemm` for matmul.
    #[default]
    Cpu,
    /// A GPU through wgpu: WGSL compute kernels.
    Gpu(crate::gpu::GpuDevice),
}

impl Device {
    /// The CPU device.
    pub fn cpu() -> Device {
        Device::Cpu
    }

    /// The best device available: a hardware GPU when wgpu finds one, else the CPU (a
    /// software adapter such as lavapipe is slower than the CPU backend).
    /// `WGRAD_DEVICE=cpu|gpu|auto` overrides the choice.
    pub fn auto() -> crate::Result<Device> {
        match std::env::var("WGRAD_DEVICE").as_deref() {
            Ok("gpu") => Device::gpu(),
            Ok("cpu") => Ok(Device::Cpu),
            Ok("auto") | Ok("") | Err(_) => Ok(match crate::gpu::default_gpu() {
                Ok(g) if !g.is_software() => Device::Gpu(g),
                _ => Device::Cpu,
            }),
            Ok(other) => Err(crate::Error::invalid(
                "Device::auto",
                format!("WGRAD_DEVICE must be cpu, gpu or auto, got {other:?}"),
            )),
        }
    }

    /// The default GPU through wgpu (any adapter, software ones included), or
    /// `Err(NoAdapter)` with wgpu's reason when there is none. The device is opened once per
    /// process; later calls return the same one.
    pub fn gpu() -> crate::Result<Device> {
        crate::gpu::default_gpu().map(Device::Gpu)
    }

    /// Every GPU adapter wgpu finds (on the backends `WGPU_BACKEND` allows), hardware GPUs
    /// before virtual and software ones such as lavapipe; empty when there is none. The
    /// index of an adapter here is the one [`Device::gpu_at`] takes.
    ///
    /// ```no_run
    /// for (i, adapter) in wgrad::Device::gpus().iter().enumerate() {
    ///     println!("{i}: {} ({:?})", adapter.name, adapter.device_type);
    /// }
    /// ```
    pub fn gpus() -> Vec<wgpu::AdapterInfo> {
        crate::gpu::adapter_infos()
    }

    /// Open a new device on the adapter at `index` of [`Device::gpus`]; `Err(NoAdapter)` when
    /// there is no such adapter. Every call opens another device, so two calls with one
    /// index give two devices on one adapter (tensors of the two never mix, as on two GPUs);
    /// keep the `Device` and clone it to share one. [`Device::gpu`] is the process-wide
    /// default device and is not among the devices this opens.
    pub fn gpu_at(index: usize) -> crate::Result<Device> {
        crate::gpu::open_at(index).map(Device::Gpu)
    }

    /// Wait until all work recorded for this device has finished (for timing; a no-op on the
    /// CPU, whose ops finish before they return).
    pub fn synchronize(&self) -> crate::Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(g) => {
                crate::storage::lazy::settle_all();
                g.0.synchronize()
            }
        }
    }

    /// Submit the work recorded for this device (a no-op on the CPU), fused elementwise
    /// values not computed yet included.
    pub fn flush(&self) {
        if let Device::Gpu(g) = self {
            g.flush()
        }
    }

    /// Give the memory of freed tensor buffers, which wgrad keeps for reuse, back to the
    /// system or the driver (PyTorch's `torch.cuda.empty_cache()`). Live tensors keep theirs.
    pub fn empty_cache(&self) {
        match self {
            Device::Cpu => crate::cpu::pool::clear(),
            Device::Gpu(g) => g.0.empty_cache(),
        }
    }

    /// Counters of the tensor buffers on this device (live bytes, live buffers,
    /// allocations, bytes cached for reuse), for tests and benchmarks.
    pub fn memory_stats(&self) -> crate::storage::MemoryStats {
        match self {
            Device::Cpu => crate::storage::memory_stats(),
            Device::Gpu(g) => {
                let s = g.stats();
                crate::storage::MemoryStats {
                    live_bytes: s.live_bytes,
                    live_buffers: 0,
                    allocations: s.allocations,
                    cached_bytes: s.pooled_bytes,
                    peak_bytes: s.live_bytes,
                }
            }
        }
    }

    /// Start `memory_stats().peak_bytes` again from the bytes live now (PyTorch's
    /// `torch.cuda.reset_peak_memory_stats`; the CPU's count is process-wide).
    pub fn reset_peak_memory_stats(&self) {
        if self.is_cpu() {
            crate::storage::reset_peak_memory_stats();
        }
    }

    /// Whether this is the CPU.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(g) => write!(f, "gpu:{} ({})", g.ordinal(), g.adapter_info().name),
        }
    }
}
