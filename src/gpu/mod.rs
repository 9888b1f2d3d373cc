//! The wgpu backend: WGSL compute kernels (templates in `shaders/`) on any Vulkan, Metal or
//! DX12 adapter. Work is recorded into a shared command encoder and submitted in batches;
//! only a readback waits for the GPU.

mod bindings;
pub(crate) mod capture;
mod context;
mod interop;
pub(crate) mod kernels;
pub(crate) mod lazy;
mod loss;
mod norm;
mod ops;
mod tensor_cores;

pub(crate) use context::GpuContext;
pub use context::GpuStats;
pub use interop::GpuBufferView;
pub(crate) use ops::{GpuStorage, MatmulPlan};

use crate::error::{Error, Result};
use std::sync::{Arc, OnceLock};

/// A GPU that wgrad computes on: a handle to its wgpu device, queue and wgrad's state.
/// Clones refer to the same device.
#[derive(Clone)]
pub struct GpuDevice(pub(crate) Arc<GpuContext>);

impl PartialEq for GpuDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for GpuDevice {}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuDevice(gpu:{}, {:?}, {:?})",
            self.0.ordinal, self.0.info.name, self.0.info.device_type
        )
    }
}

impl GpuDevice {
    /// The adapter's name and type as wgpu reports them.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.0.info
    }

    /// The order in which this process opened the device, counting from 0: the `N` of
    /// `gpu:N` in messages. Two devices opened on one adapter have different ordinals.
    pub fn ordinal(&self) -> usize {
        self.0.ordinal
    }

    /// Whether the adapter is a software rasteriser (such as lavapipe).
    pub fn is_software(&self) -> bool {
        self.0.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Counters: allocations, pool reuses, live bytes, submits, readbacks, dispatches.
    pub fn stats(&self) -> GpuStats {
        self.0.stats()
    }

    /// Whether reductions use the adapter's subgroup operations (else a workgroup tree).
    /// `WGRAD_NO_SUBGROUPS=1` forces the tree, to test the fallback.
    pub fn uses_subgroups(&self) -> bool {
        self.0.subgroups
    }

    /// Whether F16 matmul runs on tensor cores (WGSL cooperative matrices) on this device:
    /// the adapter has them and the kernel passed its self-test here (see
    /// `WGRAD_NO_TENSOR_CORES` in the README). The first call may run that test.
    pub fn uses_tensor_cores(&self) -> bool {
        self.0.tensor_cores()
    }

    /// The largest buffer a kernel can bind on this device, in bytes.
    pub fn max_storage_binding(&self) -> u64 {
        self.0.max_binding()
    }

    /// Submit all recorded work to the queue now, fused elementwise values not computed yet
    /// included (`storage/lazy.rs`).
    pub fn flush(&self) {
        crate::storage::lazy::settle_all();
        self.0.flush()
    }
}

/// The adapters wgpu finds, hardware GPUs first (`Device::gpus`).
pub(crate) fn adapter_infos() -> Vec<wgpu::AdapterInfo> {
    context::adapters().iter().map(|a| a.get_info()).collect()
}

/// A new device on the adapter at `index` of `adapter_infos()` (`Device::gpu_at`).
pub(crate) fn open_at(index: usize) -> Result<GpuDevice> {
    let mut adapters = context::adapters();
    if index >= adapters.len() {
        return Err(Error::NoAdapter(format!(
            "Device::gpu_at({index}): wgpu finds {} adapter(s)",
            adapters.len()
        )));
    }
    GpuContext::open(&adapters.swap_remove(index)).map(GpuDevice)
}

/// The process-wide default GPU, opened on first use.
pub(crate) fn default_gpu() -> Result<GpuDevice> {
    static DEFAULT: OnceLock<std::result::Result<GpuDevice, Error>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| GpuContext::new().map(GpuDevice))
        .clone()
}
