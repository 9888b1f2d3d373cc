//! Sharing a GPU with a graphics application: wgrad on the application's own
//! `wgpu::Device` and `Queue`, tensors read from the application's buffers with no copy, and
//! tensor buffers bound in the application's own pipelines.
//!
//! Ordering: wgrad records its work into a command encoder of its own and submits it to the
//! shared queue in batches. Call [`Device::flush`] before the application submits work that
//! reads a tensor's buffer: submissions on one queue run in order, so the application's next
//! submission sees the results. wgrad never waits on the GPU except for a readback
//! (`to_vec`, `item`, printing, `Device::synchronize`), so it does not block a frame.

use super::context::GpuBuffer;
use super::kernels::gpu_size;
use super::{GpuContext, GpuDevice, GpuStorage};
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::storage::Storage;
use crate::tensor::Tensor;

/// What wgrad's kernels need of a device, checked by [`Device::from_wgpu`].
fn check_limits(limits: &wgpu::Limits) -> Result<()> {
    let need = |name: &str, have: u64, want: u64| -> Result<()> {
        if have < want {
            return Err(Error::invalid(
                "Device::from_wgpu",
                format!("the device's limit {name} is {have}; wgrad needs at least {want}"),
            ));
        }
        Ok(())
    };
    need(
        "max_storage_buffers_per_shader_stage",
        limits.max_storage_buffers_per_shader_stage as u64,
        5,
    )?;
    need(
        "max_compute_invocations_per_workgroup",
        limits.max_compute_invocations_per_workgroup as u64,
        super::kernels::WG as u64,
    )?;
    need(
        "max_compute_workgroup_size_x",
        limits.max_compute_workgroup_size_x as u64,
        super::kernels::WG as u64,
    )?;
    need(
        "max_compute_workgroup_storage_size",
        limits.max_compute_workgroup_storage_size as u64,
        // The I64 matmul's two 16 x 64 tiles of 8-byte elements (WebGPU's default limit).
        16384,
    )?;
    need("max_bind_groups", limits.max_bind_groups as u64, 1)?;
    Ok(())
}

impl Device {
    /// Compute on an application's own wgpu device and queue, with the limits and features
    /// it was created with. An `Err` names a limit that is too low for wgrad's kernels
    /// (five storage buffers per stage, 256 invocations per workgroup, 16 KiB of workgroup
    /// memory). The application keeps using the device and queue as before.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Result<Device> {
        let limits = device.limits();
        check_limits(&limits)?;
        let info = device.adapter_info();
        Ok(Device::Gpu(GpuDevice(GpuContext::from_parts(
            device, queue, info, limits,
        ))))
    }
}

/// A contiguous GPU tensor's buffer, for binding in the application's pipelines: the
/// tensor's elements are `size` bytes at `offset` (f32; I64 as little-endian i64, i.e. two u32
/// words, low first; u32 0/1 for Bool). The view
/// keeps the tensor, and so the buffer, alive.
pub struct GpuBufferView {
    tensor: Tensor,
    buffer: wgpu::Buffer,
    /// Byte offset of the first element.
    pub offset: u64,
    /// Bytes of the tensor's elements.
    pub size: u64,
}

impl GpuBufferView {
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    /// The tensor the view belongs to.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }
    /// A binding resource for the tensor's bytes, for `BindGroupEntry::resource`.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.size.max(4)),
        })
    }
}

impl Tensor {
    /// The GPU buffer of a contiguous GPU tensor (call `contiguous()` first for a view).
    /// Call `device.flush()` before the application submits work that reads it.
    pub fn wgpu_buffer(&self) -> Result<GpuBufferView> {
        if !self.is_contiguous() {
            return Err(Error::bad_shape(
                "wgpu_buffer",
                self.shape(),
                format!(
                    "the tensor is a strided view (strides {:?}); call contiguous() first",
                    self.stride()
                ),
            ));
        }
        // The application may write the buffer: values that read it are computed first.
        crate::storage::lazy::settle_all();
        let buffer = match &*self.storage().read() {
            Storage::Gpu(g) => g.buf.raw().clone(),
            Storage::Failed(e) => return Err(e.clone()),
            Storage::Cpu(_) => {
                return Err(Error::invalid(
                    "wgpu_buffer",
                    format!(
                        "the tensor (shape {:?}) is on the CPU; move it with to_device",
                        self.shape()
                    ),
                ))
            }
        };
        let offset = self.storage_offset() as u64 * gpu_size(self.dtype());
        // A binding's offset must be a multiple of the device's alignment (256 bytes on most
        // GPUs), or wgpu rejects the bind group later, far from here.
        let align = match &*self.storage().read() {
            Storage::Gpu(g) => g.ctx().limits.min_storage_buffer_offset_alignment as u64,
            Storage::Cpu(_) | Storage::Failed(_) => 1,
        };
        if !offset.is_multiple_of(align.max(1)) {
            return Err(Error::invalid(
                "wgpu_buffer",
                format!(
                    "the view starts {offset} bytes into its buffer, not a multiple of the device's storage offset alignment ({align} bytes); call contiguous() for a buffer of its own"
                ),
            ));
        }
        Ok(GpuBufferView {
            tensor: self.clone(),
            buffer,
            offset,
            // Bindings come in whole words: an odd count of 16-bit values ends with the
            // padding half of its last word.
            size: (self.numel() as u64 * gpu_size(self.dtype())).next_multiple_of(4),
        })
    }

    /// A tensor over an application's storage buffer, with no copy: `shape` elements of
    /// `dtype` from the buffer's start (f32; little-endian i64 for I64; u32 0/1 for Bool;
    /// little-endian 16-bit values for F16 and BF16, two to a word). The buffer must
    /// have been created on `device`'s wgpu device with `STORAGE` usage (and `COPY_SRC` to be
    /// read back), and be large enough. Writes by the application become visible to wgrad in
    /// queue order; wgrad's in-place ops write into it.
    pub fn from_wgpu_buffer(
        buffer: &wgpu::Buffer,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let Device::Gpu(gpu) = device else {
            return Err(Error::invalid(
                "from_wgpu_buffer",
                "the device must be a GPU device (see Device::from_wgpu)",
            ));
        };
        let usage = buffer.usage();
        for (flag, name) in [
            (wgpu::BufferUsages::STORAGE, "STORAGE"),
            (wgpu::BufferUsages::COPY_SRC, "COPY_SRC"),
        ] {
            if !usage.contains(flag) {
                return Err(Error::invalid(
                    "from_wgpu_buffer",
                    format!("the buffer lacks the {name} usage (it has {usage:?})"),
                ));
            }
        }
        let bytes = (shape.numel() as u64)
            .checked_mul(gpu_size(dtype))
            .ok_or_else(|| {
                Error::bad_shape("from_wgpu_buffer", &shape, "the element count overflows")
            })?;
        if buffer.size() < bytes {
            return Err(Error::bad_shape(
                "from_wgpu_buffer",
                &shape,
                format!("needs {bytes} bytes but the buffer holds {}", buffer.size()),
            ));
        }
        // Every kernel binds the whole buffer: one over the binding limit could never be read.
        let limit = gpu.0.max_binding();
        if buffer.size() > limit {
            return Err(Error::BufferTooLarge {
                op: "from_wgpu_buffer",
                bytes: buffer.size(),
                limit,
            });
        }
        let storage = GpuStorage {
            buf: GpuBuffer::external(&gpu.0, buffer.clone()),
            dtype,
            checks: Vec::new(),
        };
        Ok(Tensor::from_storage(Storage::Gpu(storage), &shape))
    }
}
