//! The wgpu device and everything shared by its kernels: the pipeline cache, the buffer
//! pool, command batching, readback, error capture and statistics.

use super::capture::{Held, Recording};
use super::kernels::{Kernel, WG};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Dispatches recorded before a batch is submitted without waiting for a readback.
const MAX_BATCH: usize = 256;

/// Counters of a GPU device, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// Buffers created with wgpu.
    pub allocations: u64,
    /// Buffer requests served from the pool.
    pub reuses: u64,
    /// Bytes in buffers held by tensors (or in flight), pooled buffers excluded.
    pub live_bytes: u64,
    /// Command buffers submitted.
    pub submits: u64,
    /// Reads of GPU data back to the CPU.
    pub readbacks: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Bind groups created (the rest of the dispatches reused a kept one).
    pub bind_groups: u64,
    /// Bytes in freed buffers kept for reuse (released by `Device::empty_cache`).
    pub pooled_bytes: u64,
}

#[derive(Default)]
struct Counters {
    allocations: AtomicU64,
    reuses: AtomicU64,
    live_bytes: AtomicU64,
    submits: AtomicU64,
    readbacks: AtomicU64,
    dispatches: AtomicU64,
    bind_groups: AtomicU64,
    pooled_bytes: AtomicU64,
}

/// Bytes of kernel parameters one batch can hold.
const ARENA_BYTES: u64 = 256 << 10;

/// The smallest window of the arena a kernel binds (most parameter lists fit in it).
const PARAM_WINDOW_MIN: u64 = 256;

struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    /// The open compute pass: consecutive dispatches share one (wgpu still orders each
    /// dispatch after the ones whose outputs it reads).
    pass: Option<wgpu::ComputePass<'static>>,
    dispatches: usize,
    /// Buffers released since the last submit. Later commands of this batch may write them
    /// (commands run in order), but `queue.write_buffer` may not: it runs before the whole
    /// batch, so uploads take buffers only from the pool, which they join at submit.
    released: Vec<(u64, wgpu::Buffer)>,
    /// The kernel parameters of this batch, written into `arena` in one upload at submit.
    params: Vec<u8>,
    arena: Option<wgpu::Buffer>,
}

/// A built kernel and its bind group layout (asked for once, not per dispatch).
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) bind_group_layout: wgpu::BindGroupLayout,
}

impl Batch {
    /// The batch's command encoder, with any open compute pass ended (copies and clears are
    /// recorded between passes).
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgrad batch"),
            })
        })
    }

    /// The open compute pass, begun if there is none.
    fn pass(&mut self, device: &wgpu::Device) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self
                .encoder(device)
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        self.pass.as_mut().expect("begun above")
    }
}

/// A wgpu device, its queue and wgrad's state for it.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    /// The order in which this process opened the device (0 first): `gpu:0`, `gpu:1`, ...
    pub(crate) ordinal: usize,
    pipelines: Mutex<HashMap<Kernel, Arc<Pipeline>>>,
    pool: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    batch: Mutex<Batch>,
    counters: Counters,
    uncaptured: Arc<Mutex<Option<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// The index kernels' flags not yet read (see `IndexChecks`).
    checks: Mutex<IndexChecks>,
    /// Parameter arenas of submitted batches, ready for reuse.
    spare_arenas: Mutex<Vec<wgpu::Buffer>>,
    /// Whether the device has subgroup operations (used by reductions; the tree otherwise).
    pub(crate) subgroups: bool,
    /// Bind groups kept for reuse (see `bindings.rs`).
    bind_groups: Mutex<super::bindings::BindGroupCache>,
    /// The capture being recorded, if any (`capture.rs`), and whether there is one (read
    /// by every dispatch without taking the lock).
    recording: Mutex<Option<Recording>>,
    recording_active: AtomicBool,
    /// Buffers held by live captures: never pooled (`capture.rs`).
    held: Mutex<Held>,
    any_held: AtomicBool,
    /// F16 matmul on tensor cores (see `tensor_cores.rs`).
    pub(super) tensor_cores: super::tensor_cores::TensorCores,
}

/// Out-of-range indices met by GPU index kernels, which cannot stop. Each index kernel gets
/// a flag of its own (a fresh, zeroed buffer) and an id; its result, and every result
/// computed from it, carries the id (`GpuStorage::checks`). A readback reads every pending
/// flag at once: the set ones become `bad`, the rest are known clean and dropped from the
/// lists as they are next passed on. A readback fails exactly when its tensor's lineage met a
/// bad index; other tensors, on any thread, read as usual.
#[derive(Default)]
pub(crate) struct IndexChecks {
    next: u64,
    pending: Vec<(u64, wgpu::Buffer)>,
    /// Ids of flags set again by replayed captures (no tensor carries them).
    replayed: std::collections::HashSet<u64>,
    /// Every id below this has been read.
    resolved_below: u64,
    bad: std::collections::HashSet<u64>,
}

impl IndexChecks {
    /// Whether a result carrying `id` may still be spoiled (not read yet, or read as bad).
    pub(crate) fn open(&self, id: u64) -> bool {
        id >= self.resolved_below || self.bad.contains(&id)
    }
}

/// A buffer owned by a tensor; returned to its device's pool when dropped.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    ctx: Arc<GpuContext>,
    /// A buffer the application created and lent to a tensor: never pooled or counted.
    external: bool,
}

impl GpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }

    pub fn ctx_ref(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Whether the application lent this buffer (`Tensor::from_wgpu_buffer`): it may write
    /// it between wgrad's ops.
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// Wrap an application's buffer: used in place, never returned to the pool.
    pub fn external(ctx: &Arc<GpuContext>, buffer: wgpu::Buffer) -> GpuBuffer {
        GpuBuffer {
            class: buffer.size(),
            buffer: Some(buffer),
            ctx: ctx.clone(),
            external: true,
        }
    }
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} bytes)", self.class)
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if self.external {
            return;
        }
        if let Some(b) = self.buffer.take() {
            self.ctx
                .counters
                .live_bytes
                .fetch_sub(self.class, Ordering::Relaxed);
            // A buffer a capture replays into stays with the capture (a recording in
            // progress may still reuse it, as its replays will).
            if self.ctx.any_held.load(Ordering::Acquire)
                && self
                    .ctx
                    .held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&b)
            {
                return;
            }
            self.ctx
                .batch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .released
                .push((self.class, b));
        }
    }
}

/// The bytes of the parameter buffer a kernel with `params` binds: their size rounded up
/// to a power of two, so that groups are shared by dispatches of different parameter counts.
pub(super) fn param_window(params: &[u32]) -> u64 {
    (4 * params.len() as u64)
        .max(4)
        .next_power_of_two()
        .max(PARAM_WINDOW_MIN)
}

/// Whether a dispatch's bind group is kept for later dispatches on the same buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupUse {
    Kept,
    /// Built and dropped: the dispatch binds a buffer no later one binds (an index
    /// kernel's fresh flag).
    Once,
}

/// Of the free buffers that fit (the flag), the position of the first in wgpu's order of
/// buffers. Taking the first rather than the last freed makes the buffers an allocation gets
/// depend only on which are free, not on the order they were freed in: a training step that
/// allocates as the one before it did gets the same buffers, and so binds the same bind
/// groups (`bindings.rs`), where the order of frees would shuffle them from step to step.
fn first_free<'a>(free: impl Iterator<Item = (&'a wgpu::Buffer, bool)>) -> Option<usize> {
    free.enumerate()
        .filter(|(_, (_, fits))| *fits)
        .min_by(|(_, (a, _)), (_, (b, _))| a.cmp(b))
        .map(|(i, _)| i)
}

/// Size classes: powers of two from 256 bytes, so freed buffers fit later requests.
fn size_class(bytes: u64) -> u64 {
    bytes.max(256).next_power_of_two()
}

/// Mesa's device-select Vulkan layer prints `XDG_RUNTIME_DIR is invalid or not set` twice when
/// there is no desktop session (CI, SSH, containers), which reads like a failure on a user's
/// first run. The layer only reorders adapters to pick a default; wgrad asks wgpu for the
/// high-performance adapter itself, so where the layer can only make noise (no
/// `XDG_RUNTIME_DIR`) it is turned off with its own switch, `NODEVICE_SELECT=1`, unless the
/// user set that variable. Done once, before the first Vulkan instance exists.
fn quiet_device_select_layer() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("NODEVICE_SELECT").is_none()
            && std::env::var_os("XDG_RUNTIME_DIR").is_none()
        {
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    });
}

/// A wgpu instance on the backends `WGPU_BACKEND` allows (all compiled in by default).
pub(crate) fn instance() -> wgpu::Instance {
    quiet_device_select_layer();
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter wgpu finds, hardware GPUs before virtual and software ones (wgpu's order
/// within each kind).
pub(crate) fn adapters() -> Vec<wgpu::Adapter> {
    let mut all = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    all.sort_by_key(|a| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    });
    all
}

impl GpuContext {
    /// Open the best adapter (a hardware GPU when there is one).
    pub fn new() -> Result<Arc<GpuContext>> {
        let adapter =
            pollster::block_on(instance().request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            }))
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        GpuContext::open(&adapter)
    }

    /// Open a new device on `adapter`, with the adapter's own limits and the features wgrad
    /// uses where it has them.
    pub fn open(adapter: &wgpu::Adapter) -> Result<Arc<GpuContext>> {
        // The adapter's own limits, not the defaults: the default storage binding cap is 128 MiB.
        let limits = adapter.limits();
        // Subgroup operations speed up reductions where the adapter has them; cooperative
        // matrices run F16 matmul on tensor cores.
        let tensor_cores = super::tensor_cores::features_to_request(adapter);
        let experimental_features = if tensor_cores.is_empty() {
            wgpu::ExperimentalFeatures::disabled()
        } else {
            // SAFETY: wgpu marks cooperative matrices experimental (they may have bugs);
            // wgrad uses them in one kernel only after it passed a self-test on this device
            // (`tensor_cores.rs`), and `WGRAD_NO_TENSOR_CORES=1` keeps them unrequested.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgrad"),
            required_features: (adapter.features() & wgpu::Features::SUBGROUP) | tensor_cores,
            required_limits: limits.clone(),
            experimental_features,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::NoAdapter(format!("request_device failed: {e}")))?;
        Ok(GpuContext::from_parts(
            device,
            queue,
            adapter.get_info(),
            limits,
        ))
    }

    pub fn from_parts(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        limits: wgpu::Limits,
    ) -> Arc<GpuContext> {
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lost_sink.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("{reason:?}: {msg}"));
        });
        let subgroups = device.features().contains(wgpu::Features::SUBGROUP)
            && std::env::var("WGRAD_NO_SUBGROUPS").is_err();
        let tensor_cores = super::tensor_cores::TensorCores::new(&device, &info);
        static OPENED: AtomicUsize = AtomicUsize::new(0);
        Arc::new(GpuContext {
            device,
            queue,
            info,
            limits,
            ordinal: OPENED.fetch_add(1, Ordering::Relaxed),
            pipelines: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            batch: Mutex::new(Batch {
                encoder: None,
                pass: None,
                dispatches: 0,
                released: Vec::new(),
                params: Vec::new(),
                arena: None,
            }),
            spare_arenas: Mutex::new(Vec::new()),
            subgroups,
            tensor_cores,
            bind_groups: Mutex::new(Default::default()),
            recording: Mutex::new(None),
            recording_active: AtomicBool::new(false),
            held: Mutex::new(Held::default()),
            any_held: AtomicBool::new(false),
            counters: Counters::default(),
            uncaptured,
            lost,
            checks: Mutex::new(IndexChecks::default()),
        })
    }

    pub fn stats(&self) -> GpuStats {
        let c = &self.counters;
        GpuStats {
            allocations: c.allocations.load(Ordering::Relaxed),
            reuses: c.reuses.load(Ordering::Relaxed),
            live_bytes: c.live_bytes.load(Ordering::Relaxed),
            submits: c.submits.load(Ordering::Relaxed),
            readbacks: c.readbacks.load(Ordering::Relaxed),
            dispatches: c.dispatches.load(Ordering::Relaxed),
            bind_groups: c.bind_groups.load(Ordering::Relaxed),
            pooled_bytes: c.pooled_bytes.load(Ordering::Relaxed),
        }
    }

    /// Give the buffers kept for reuse back to the driver (PyTorch's `empty_cache`).
    pub fn empty_cache(&self) {
        self.flush();
        // The kept bind groups hold references to pooled buffers.
        self.bind_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.clear();
        self.counters.pooled_bytes.store(0, Ordering::Relaxed);
    }

    /// An `Err` if the device was lost or wgpu reported an error since the last check.
    pub fn check(&self) -> Result<()> {
        let lost = || self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(msg) = lost() {
            return Err(Error::DeviceLost(msg));
        }
        let reported = self
            .uncaptured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(msg) = reported {
            // Work on a lost device fails validation (its buffers are invalid) before wgpu
            // runs the lost callback, which it does when polled: poll once, so that the
            // loss is what is reported rather than its symptom.
            let _ = self.device.poll(wgpu::PollType::Poll);
            if let Some(lost) = lost() {
                return Err(Error::DeviceLost(lost));
            }
            return Err(Error::invalid(
                "gpu",
                format!("wgpu reported an error: {msg}"),
            ));
        }
        Ok(())
    }

    /// The largest buffer a kernel can bind.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// A buffer of at least `bytes` bytes for a kernel to write (usable as storage, copy
    /// source and destination).
    pub fn alloc(self: &Arc<Self>, op: &'static str, bytes: u64) -> Result<GpuBuffer> {
        self.alloc_inner(op, bytes, true)
    }

    fn alloc_inner(
        self: &Arc<Self>,
        op: &'static str,
        bytes: u64,
        written_by_commands: bool,
    ) -> Result<GpuBuffer> {
        self.check()?;
        let limit = self.max_binding();
        if bytes > limit {
            return Err(Error::BufferTooLarge { op, bytes, limit });
        }
        let class = size_class(bytes);
        // A class may round past the limit; such a buffer is allocated at the exact size.
        let class = if class > limit {
            bytes.div_ceil(4) * 4
        } else {
            class
        };
        let mut reused = None;
        // While a capture records, what it does not record gets a new buffer: set-up that its
        // replays skip (`capture::unrecorded`) and other threads' work. A pooled buffer may be
        // an intermediate of the recorded commands, which every replay writes over.
        let unrecorded = self.recording_active.load(Ordering::Acquire)
            && (crate::capture::paused() || !self.recording_here());
        if written_by_commands && !unrecorded {
            let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = first_free(batch.released.iter().map(|(c, b)| (b, *c == class))) {
                reused = Some(batch.released.swap_remove(i).1);
            }
        }
        if reused.is_none() && !unrecorded {
            // The count changes under the pool's lock, so `empty_cache` never sees it
            // half-updated.
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            reused = pool
                .get_mut(&class)
                .and_then(|v| first_free(v.iter().map(|b| (b, true))).map(|i| v.swap_remove(i)));
            if reused.is_some() {
                self.counters
                    .pooled_bytes
                    .fetch_sub(class, Ordering::Relaxed);
            }
        }
        let buffer = match reused {
            Some(b) => {
                self.counters.reuses.fetch_add(1, Ordering::Relaxed);
                b
            }
            None => self.create_buffer(op, class)?,
        };
        self.counters.live_bytes.fetch_add(class, Ordering::Relaxed);
        Ok(GpuBuffer {
            buffer: Some(buffer),
            class,
            ctx: self.clone(),
            external: false,
        })
    }

    /// A new buffer of `bytes`. When the driver is out of memory, the buffers kept for reuse
    /// are given back and the allocation is tried once more; then it is `Err(OutOfMemory)`.
    fn create_buffer(&self, op: &'static str, bytes: u64) -> Result<wgpu::Buffer> {
        for attempt in 0..2 {
            if attempt == 1 {
                self.empty_cache();
            }
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            if pollster::block_on(scope.pop()).is_none() {
                self.counters.allocations.fetch_add(1, Ordering::Relaxed);
                return Ok(buffer);
            }
        }
        Err(Error::OutOfMemory {
            op,
            bytes,
            device: "gpu",
        })
    }

    /// A buffer holding `data`.
    pub fn upload(self: &Arc<Self>, op: &'static str, data: &[u8]) -> Result<GpuBuffer> {
        let buf = self.alloc_inner(op, data.len() as u64, false)?;
        if !data.is_empty() {
            self.record(|rec| rec.upload(buf.raw(), data));
            self.queue.write_buffer(buf.raw(), 0, data);
        }
        Ok(buf)
    }

    fn pipeline(&self, kernel: Kernel) -> Result<Arc<Pipeline>> {
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&kernel)
        {
            return Ok(p.clone());
        }
        let source = kernel.source()?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some(&kernel.label()),
            source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
        };
        let module = if kernel.in_bounds_by_construction() && !checked_shaders() {
            // SAFETY: `in_bounds_by_construction` lists the kernels whose every buffer and
            // array access is guarded by an explicit bounds test or in range by
            // construction, whose loops all terminate and whose divisors are nonzero
            // constants or nonzero sizes; tensor layouts never reach past their buffers.
            // Dropping wgpu's own checks made the 512^3 f32 matmul about 4x faster on
            // lavapipe (2.1 to 8.8 GFLOP/s, `examples/bench`); `WGRAD_CHECKED_SHADERS=1`
            // keeps them.
            unsafe {
                self.device.create_shader_module_trusted(
                    descriptor,
                    wgpu::ShaderRuntimeChecks::unchecked(),
                )
            }
        } else {
            self.device.create_shader_module(descriptor)
        };
        // An explicit layout: the parameters sit at a dynamic offset, so a bind group
        // serves every dispatch on the same buffers (`bindings.rs`).
        let bind_group_layout =
            self.device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(&kernel.label()),
                    entries: &super::bindings::layout_entries(&source),
                });
        let layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&kernel.label()),
                bind_group_layouts: &[Some(&bind_group_layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&kernel.label()),
                layout: Some(&layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::invalid(
                "gpu",
                format!("pipeline {} failed to build: {e}", kernel.label()),
            ));
        }
        let p = Arc::new(Pipeline {
            bind_group_layout,
            pipeline,
        });
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kernel, p.clone());
        Ok(p)
    }

    /// Workgroups for `n` invocations of `WG` threads (or `n` workgroups when `per_group`),
    /// folded into a second dimension past the per-dimension limit.
    pub fn grid(&self, n: u64, per_group: bool) -> Result<(u32, u32)> {
        let groups = if per_group { n } else { n.div_ceil(WG as u64) }.max(1);
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        if groups <= max {
            return Ok((groups as u32, 1));
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(Error::BufferTooLarge {
                op: "dispatch",
                bytes: n * 4,
                limit: max * max * WG as u64 * 4,
            });
        }
        Ok((max as u32, y as u32))
    }

    /// Record one dispatch of `kernel` with `params` at binding 0 and `buffers` at 1, 2, ...
    pub fn dispatch(
        self: &Arc<Self>,
        kernel: Kernel,
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        self.dispatch_with(kernel, params, buffers, groups, GroupUse::Kept)
    }

    /// [`GpuContext::dispatch`], saying whether the bind group is worth keeping.
    pub fn dispatch_with(
        self: &Arc<Self>,
        kernel: Kernel,
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
        group_use: GroupUse,
    ) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if [groups.0, groups.1, groups.2].iter().any(|&g| g > max) {
            return Err(Error::invalid(
                "gpu",
                format!(
                    "{} needs a grid of {groups:?} workgroups; the adapter allows {max} per dimension",
                    kernel.label()
                ),
            ));
        }
        let pipeline = self.pipeline(kernel)?;
        // One lock from staging the parameters to recording the pass, so that no other
        // thread can submit the batch in between.
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        if self.recording_active.load(Ordering::Acquire) && !crate::capture::paused() {
            let mut rec = self.recording.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(rec) = rec
                .as_mut()
                .filter(|r| r.thread == std::thread::current().id())
            {
                rec.dispatch(kernel, &pipeline, params, buffers, groups)?;
            }
        }
        let (arena, offset, window) = self.stage_params(&mut batch, params);
        let (bind_group, built) = if group_use == GroupUse::Kept {
            self.bind_groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(
                    &self.device,
                    &pipeline.bind_group_layout,
                    kernel,
                    &arena,
                    window,
                    buffers,
                )
        } else {
            let group = super::bindings::build(
                &self.device,
                &pipeline.bind_group_layout,
                &arena,
                window,
                buffers,
            );
            (group, true)
        };
        if built {
            self.counters.bind_groups.fetch_add(1, Ordering::Relaxed);
        }
        let pass = batch.pass(&self.device);
        pass.set_pipeline(&pipeline.pipeline);
        // `offset` is a multiple of the adapter's storage offset alignment (`stage_params`).
        pass.set_bind_group(0, &bind_group, &[offset as u32]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        batch.dispatches += 1;
        self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
        if batch.dispatches >= MAX_BATCH {
            self.flush_locked(&mut batch);
        }
        Ok(())
    }

    /// The alignment of a dynamic offset into a parameter buffer.
    fn param_align(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment.max(4) as u64
    }

    /// Place kernel parameters in this batch's arena: (arena, offset, window), where the
    /// kernel binds `window` bytes from `offset` (see `param_window`). A full arena submits
    /// the batch first.
    fn stage_params(&self, batch: &mut Batch, params: &[u32]) -> (wgpu::Buffer, u64, u64) {
        let bytes: &[u8] = bytemuck::cast_slice(params);
        let size = (bytes.len() as u64).max(4);
        let window = param_window(params);
        let align = self.param_align();
        let mut offset = (batch.params.len() as u64).div_ceil(align) * align;
        if offset + window > ARENA_BYTES {
            self.flush_locked(batch);
            offset = 0;
        }
        if batch.arena.is_none() {
            let spare = self
                .spare_arenas
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            batch.arena = Some(spare.unwrap_or_else(|| {
                self.counters.allocations.fetch_add(1, Ordering::Relaxed);
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgrad params"),
                    size: ARENA_BYTES,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }));
        }
        batch.params.resize(offset as usize, 0);
        batch.params.extend_from_slice(bytes);
        batch.params.resize((offset + size) as usize, 0);
        (
            batch.arena.clone().expect("arena set above"),
            offset,
            window,
        )
    }

    /// Record a buffer-to-buffer copy in the current batch.
    pub fn copy(
        &self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    ) {
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        self.record(|rec| {
            rec.commands.push(super::capture::Command::Copy {
                src: src.clone(),
                src_offset,
                dst: dst.clone(),
                dst_offset,
                bytes,
            })
        });
        batch
            .encoder(&self.device)
            .copy_buffer_to_buffer(src, src_offset, dst, dst_offset, bytes);
    }

    /// Submit the recorded work. Buffers released before now become reusable.
    pub fn flush(&self) {
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        self.flush_locked(&mut batch);
    }

    fn flush_locked(&self, batch: &mut Batch) {
        batch.dispatches = 0;
        if let Some(arena) = batch.arena.take() {
            // Runs before the batch's commands, which read the parameters.
            self.queue.write_buffer(&arena, 0, &batch.params);
            batch.params.clear();
            self.spare_arenas
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(arena);
        }
        batch.pass = None;
        if let Some(encoder) = batch.encoder.take() {
            self.queue.submit([encoder.finish()]);
            self.counters.submits.fetch_add(1, Ordering::Relaxed);
        }
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        for (class, b) in batch.released.drain(..) {
            self.counters
                .pooled_bytes
                .fetch_add(class, Ordering::Relaxed);
            pool.entry(class).or_default().push(b);
        }
    }

    /// Submit the recorded work and wait until the GPU has finished it.
    pub fn synchronize(&self) -> Result<()> {
        self.flush();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(format!("poll failed: {e}")))?;
        self.check()
    }

    /// A fresh flag for one index kernel (new buffers are zeroed), bound after its operands,
    /// and its id for the result's lineage.
    pub fn index_flag(&self) -> (u64, wgpu::Buffer) {
        let flag = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad index check"),
            size: 4,
            // COPY_DST: a replayed capture clears it before the kernel runs again.
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.record(|rec| {
            rec.commands
                .push(super::capture::Command::ClearFlag(flag.clone()))
        });
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let id = checks.next;
        checks.next += 1;
        checks.pending.push((id, flag.clone()));
        (id, flag)
    }

    /// The ids of `lineage` that may still be spoiled (the clean ones are dropped).
    pub(crate) fn open_checks(&self, lineage: impl Iterator<Item = u64>) -> Vec<u64> {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let mut open: Vec<u64> = lineage.filter(|&id| checks.open(id)).collect();
        open.sort_unstable();
        open.dedup();
        open
    }

    /// Copy `bytes` bytes of `src` to the CPU, waiting for all recorded work. The pending
    /// index flags are read with it; `lineage` (the ids the tensor carries) decides whether
    /// an out-of-range index spoiled this result, which is then an `Err`.
    pub fn read(&self, src: &wgpu::Buffer, bytes: u64, lineage: &[u64]) -> Result<Vec<u8>> {
        self.check()?;
        if self.recording_here() {
            return Err(Error::invalid(
                "capture",
                "a captured step cannot read GPU data back (item, to_vec, printing, or an op \
                 the GPU runs on the host such as an F64 op): a replay would not run it; read \
                 the step's results after replaying it",
            ));
        }
        self.counters.readbacks.fetch_add(1, Ordering::Relaxed);
        let pending = std::mem::take(
            &mut self
                .checks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending,
        );
        let flag_bytes = 4 * pending.len() as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad readback"),
            size: (bytes + flag_bytes).max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if bytes > 0 {
            self.copy(src, 0, &staging, 0, bytes);
        }
        // The data's size is a multiple of 4 (every element is 4 or 8 bytes on the GPU).
        for (k, (_, flag)) in pending.iter().enumerate() {
            self.copy(flag, 0, &staging, bytes + 4 * k as u64, 4);
        }
        self.flush();
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(format!("poll failed: {e}")))?;
        match pollster::block_on(rx.receive()) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::DeviceLost(format!("readback failed: {e}"))),
            None => return Err(Error::DeviceLost("readback channel closed".into())),
        }
        let data = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::DeviceLost(format!("mapping the readback failed: {e}")))?
            .to_vec();
        staging.unmap();
        self.check()?;
        let spoiled = {
            let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
            for (k, (id, _)) in pending.iter().enumerate() {
                let at = (bytes + 4 * k as u64) as usize;
                if data[at..at + 4] != [0, 0, 0, 0] {
                    checks.bad.insert(*id);
                }
                checks.resolved_below = checks.resolved_below.max(id + 1);
            }
            let replayed_bad: Vec<u64> = pending
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| checks.replayed.contains(id) && checks.bad.contains(id))
                .collect();
            for (id, _) in &pending {
                checks.replayed.remove(id);
            }
            if !replayed_bad.is_empty() {
                return Err(Error::invalid(
                    "gather/index_select/scatter_add (GPU, a replayed captured step)",
                    "an index of a replayed step was out of range for its dimension: the \
                     step's results are invalid (no tensor records which replay they came \
                     from, so the next readback after the replay reports it)",
                ));
            }
            lineage.iter().any(|id| checks.bad.contains(id))
        };
        if spoiled {
            return Err(Error::invalid(
                "gather/index_select/scatter_add (GPU)",
                "an index was out of range for its dimension (PyTorch's index ops take indices in 0..size): this result, computed from that index op, is invalid",
            ));
        }
        Ok(data[..bytes as usize].to_vec())
    }
}

/// `WGRAD_CHECKED_SHADERS=1` keeps wgpu's runtime checks in every kernel (for debugging).
fn checked_shaders() -> bool {
    std::env::var_os("WGRAD_CHECKED_SHADERS").is_some()
}

/// Captures (see `capture.rs`): the device side of `wgrad::capture`.
impl GpuContext {
    /// Start recording the commands of the calling thread.
    pub(crate) fn begin_capture(&self) -> Result<()> {
        let mut rec = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        if rec.is_some() {
            return Err(Error::invalid(
                "capture",
                "this device is already capturing a step (captures do not nest)",
            ));
        }
        *rec = Some(Recording::new(self.param_align()));
        self.recording_active.store(true, Ordering::Release);
        Ok(())
    }

    /// Stop recording; the recording, if one was in progress.
    pub(crate) fn end_capture(&self) -> Option<Recording> {
        let mut rec = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        self.recording_active.store(false, Ordering::Release);
        rec.take()
    }

    /// Whether the calling thread is recording a capture on this device.
    pub(super) fn recording_here(&self) -> bool {
        self.recording_active.load(Ordering::Acquire)
            && self
                .recording
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|r| r.thread == std::thread::current().id())
    }

    /// Let the calling thread's recording, if any, record something.
    fn record(&self, f: impl FnOnce(&mut Recording)) {
        if self.recording_active.load(Ordering::Acquire) && !crate::capture::paused() {
            let mut rec = self.recording.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(rec) = rec
                .as_mut()
                .filter(|r| r.thread == std::thread::current().id())
            {
                f(rec);
            }
        }
    }

    pub(crate) fn count_bind_group(&self) {
        self.counters.bind_groups.fetch_add(1, Ordering::Relaxed);
    }

    /// Keep `buffers` from the pool while a capture needs them: taken out of it (and out of
    /// the buffers released in this batch) now, never put back by a dropped tensor.
    pub(crate) fn hold(&self, buffers: &[wgpu::Buffer]) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.add(buffers);
        self.any_held.store(true, Ordering::Release);
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        batch.released.retain(|(_, b)| !held.contains(b));
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        for (&class, list) in pool.iter_mut() {
            let before = list.len();
            list.retain(|b| !held.contains(b));
            let taken = (before - list.len()) as u64;
            self.counters
                .pooled_bytes
                .fetch_sub(taken * class, Ordering::Relaxed);
        }
    }

    /// A capture is gone: its buffers may be pooled again once their tensors drop (those
    /// only the capture held are freed with it).
    pub(crate) fn release_held(&self, buffers: &[wgpu::Buffer]) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(buffers);
        self.any_held.store(!held.is_empty(), Ordering::Release);
    }

    /// Record commands into the current batch through `f`, count them as dispatches, and
    /// submit.
    pub(crate) fn replay(&self, f: impl FnOnce(&mut ReplayTarget<'_>)) {
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        let mut target = ReplayTarget {
            batch: &mut batch,
            device: &self.device,
            dispatches: 0,
        };
        f(&mut target);
        let n = target.dispatches;
        self.counters.dispatches.fetch_add(n, Ordering::Relaxed);
        self.flush_locked(&mut batch);
    }

    /// The flags of a replay's index kernels: read with the next readback, which fails if
    /// one is set.
    pub(crate) fn replayed_flags(&self, flags: &[wgpu::Buffer]) {
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        for f in flags {
            let id = checks.next;
            checks.next += 1;
            checks.pending.push((id, f.clone()));
            checks.replayed.insert(id);
        }
    }
}

/// Where a replay records: the batch's compute pass, or its encoder for copies.
pub(crate) struct ReplayTarget<'a> {
    batch: &'a mut Batch,
    device: &'a wgpu::Device,
    dispatches: u64,
}

impl ReplayTarget<'_> {
    pub(crate) fn pass(&mut self) -> &mut wgpu::ComputePass<'static> {
        self.dispatches += 1;
        self.batch.pass(self.device)
    }

    pub(crate) fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.batch.encoder(self.device)
    }
}
