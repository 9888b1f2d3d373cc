//! Where a tensor's data lives.

use std::fmt;

/// A compute device. The CPU backend is always available; the wgpu backend plugs in here as a
/// second variant, and every primitive dispatches on the storage it holds (`storage.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// The pure-Rust backend: strided kernels, rayon threads, `gemm` for matmul.
    #[default]
    Cpu,
}

impl Device {
    /// The CPU device.
    pub fn cpu() -> Device {
        Device::Cpu
    }

    /// The best device available: a hardware GPU when the wgpu backend finds one, else the
    /// CPU. `WGRAD_DEVICE=cpu|gpu|auto` overrides the choice. This build has the CPU backend
    /// only, so `auto` is the CPU and `gpu` is an error.
    pub fn auto() -> crate::Result<Device> {
        match std::env::var("WGRAD_DEVICE").as_deref() {
            Ok("gpu") => Device::gpu(),
            Ok("cpu") | Ok("auto") | Ok("") | Err(_) => Ok(Device::Cpu),
            Ok(other) => Err(crate::Error::invalid(
                "Device::auto",
                format!("WGRAD_DEVICE must be cpu, gpu or auto, got {other:?}"),
            )),
        }
    }

    /// A GPU device through wgpu.
    pub fn gpu() -> crate::Result<Device> {
        Err(crate::Error::NoAdapter(
            "this build of wgrad has no wgpu backend yet".into(),
        ))
    }

    /// Counters of the tensor buffers on this device (live bytes, live buffers,
    /// allocations), for tests and benchmarks.
    pub fn memory_stats(&self) -> crate::storage::MemoryStats {
        match self {
            Device::Cpu => crate::storage::memory_stats(),
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
        }
    }
}
