//! Captured steps on a GPU: the commands one run of a closure recorded (dispatches, copies,
//! uploads), kept with their pipelines, bind groups, parameters and buffers, and replayed
//! without running the closure's Rust code again.
//!
//! While a capture records, each command also runs as usual (the capture is a real step).
//! At the end, the parameters of every dispatch move to a buffer of the capture's own and
//! each dispatch gets its bind group once. Every buffer a command touched is held: it never
//! goes back to the pool while the capture lives (a later tensor would get it and a replay
//! would write over it), so the tensors the step computed keep the values of the latest
//! replay.

use super::bindings;
use super::context::{param_window, GpuContext, Pipeline};
use super::kernels::Kernel;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;

/// One recorded command.
pub(crate) enum Command {
    Dispatch {
        pipeline: Arc<Pipeline>,
        buffers: Vec<wgpu::Buffer>,
        /// Where the parameters start in the capture's parameter buffer, and the window the
        /// kernel binds.
        params_at: u64,
        window: u64,
        groups: (u32, u32, u32),
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    },
    /// Data written from the host (`queue.write_buffer`); replayed as a copy from the
    /// capture's upload buffer, where it is kept from `at`.
    Upload {
        dst: wgpu::Buffer,
        at: u64,
        bytes: u64,
    },
    /// An index kernel's flag, zeroed before the kernel runs again.
    ClearFlag(wgpu::Buffer),
}

/// A capture in progress on one device (one at a time, on the thread that started it).
pub(crate) struct Recording {
    pub(crate) thread: std::thread::ThreadId,
    pub(crate) commands: Vec<Command>,
    /// Parameters of the recorded dispatches, at offsets aligned for dynamic binding.
    pub(crate) params: Vec<u8>,
    /// The alignment of a dynamic offset into the parameters.
    align: u64,
    /// Host data of the recorded uploads.
    pub(crate) uploads: Vec<u8>,
}

impl Recording {
    pub(crate) fn new(align: u64) -> Recording {
        Recording {
            thread: std::thread::current().id(),
            commands: Vec::new(),
            params: Vec::new(),
            align,
            uploads: Vec::new(),
        }
    }

    /// Record a dispatch of `pipeline` with `params`.
    pub(crate) fn dispatch(
        &mut self,
        kernel: Kernel,
        pipeline: &Arc<Pipeline>,
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        if matches!(kernel, Kernel::Fill(kind, _) if kind.is_random()) {
            return Err(Error::invalid(
                "capture",
                "a random op (rand, randn, randint, dropout, multinomial) in a captured step \
                 would draw the same numbers at every replay; draw them outside the capture \
                 and copy them into a tensor the step reads",
            ));
        }
        let at = (self.params.len() as u64).div_ceil(self.align) * self.align;
        self.params.resize(at as usize, 0);
        self.params.extend_from_slice(bytemuck::cast_slice(params));
        self.commands.push(Command::Dispatch {
            pipeline: pipeline.clone(),
            buffers: buffers.iter().map(|&b| b.clone()).collect(),
            params_at: at,
            window: param_window(params),
            groups,
        });
        Ok(())
    }

    pub(crate) fn upload(&mut self, dst: &wgpu::Buffer, data: &[u8]) {
        // Copies between buffers move whole multiples of 4 bytes.
        let at = self.uploads.len().div_ceil(4) * 4;
        self.uploads.resize(at, 0);
        self.uploads.extend_from_slice(data);
        self.uploads.resize(self.uploads.len().div_ceil(4) * 4, 0);
        self.commands.push(Command::Upload {
            dst: dst.clone(),
            at: at as u64,
            bytes: (data.len() as u64).div_ceil(4) * 4,
        });
    }

    /// Every buffer the commands touch, once.
    // wgpu hashes a buffer by its id, which never changes.
    #[allow(clippy::mutable_key_type)]
    fn buffers(&self) -> Vec<wgpu::Buffer> {
        let mut seen = std::collections::HashSet::new();
        let mut all = Vec::new();
        let mut add = |b: &wgpu::Buffer| {
            if seen.insert(b.clone()) {
                all.push(b.clone());
            }
        };
        for c in &self.commands {
            match c {
                Command::Dispatch { buffers, .. } => buffers.iter().for_each(&mut add),
                Command::Copy { src, dst, .. } => {
                    add(src);
                    add(dst);
                }
                Command::Upload { dst, .. } => add(dst),
                Command::ClearFlag(b) => add(b),
            }
        }
        all
    }
}

/// A recorded step, ready to replay (see `crate::capture`).
pub(crate) struct Replayable {
    ctx: Arc<GpuContext>,
    commands: Vec<Command>,
    groups: Vec<Option<wgpu::BindGroup>>,
    /// Keeps the parameter and upload buffers alive (the groups and copies use them).
    _params: wgpu::Buffer,
    uploads: Option<wgpu::Buffer>,
    /// Every buffer the commands touch, held away from the pool while this lives.
    held: Vec<wgpu::Buffer>,
    flags: Vec<wgpu::Buffer>,
}

impl Replayable {
    /// Seal a finished recording: upload its parameters and data, build its bind groups,
    /// hold its buffers.
    pub(crate) fn new(ctx: &Arc<GpuContext>, rec: Recording) -> Result<Replayable> {
        ctx.flush();
        let buffer = |label: &str, data: &[u8], usage: wgpu::BufferUsages| {
            let b = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (data.len() as u64).max(4).div_ceil(4) * 4,
                usage: usage | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            if !data.is_empty() {
                ctx.queue.write_buffer(&b, 0, data);
            }
            b
        };
        // Room past the last parameters for the widest window a kernel binds.
        let mut params = rec.params.clone();
        let widest = rec
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Dispatch {
                    params_at, window, ..
                } => Some(params_at + window),
                _ => None,
            })
            .max()
            .unwrap_or(4);
        params.resize((widest as usize).max(params.len()), 0);
        for (op, bytes) in [
            ("capture (the parameters of its dispatches)", params.len()),
            ("capture (the data it uploaded)", rec.uploads.len()),
        ] {
            if bytes as u64 > ctx.limits.max_buffer_size {
                return Err(Error::BufferTooLarge {
                    op,
                    bytes: bytes as u64,
                    limit: ctx.limits.max_buffer_size,
                });
            }
        }
        let params = buffer(
            "wgrad captured params",
            &params,
            wgpu::BufferUsages::STORAGE,
        );
        let uploads = (!rec.uploads.is_empty()).then(|| {
            buffer(
                "wgrad captured uploads",
                &rec.uploads,
                wgpu::BufferUsages::COPY_SRC,
            )
        });
        let groups = rec
            .commands
            .iter()
            .map(|c| match c {
                Command::Dispatch {
                    pipeline,
                    buffers,
                    window,
                    ..
                } => {
                    let refs: Vec<&wgpu::Buffer> = buffers.iter().collect();
                    ctx.count_bind_group();
                    Some(bindings::build(
                        &ctx.device,
                        &pipeline.bind_group_layout,
                        &params,
                        *window,
                        &refs,
                    ))
                }
                _ => None,
            })
            .collect();
        let flags = rec
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::ClearFlag(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        // Checked before the buffers are held: a failed capture holds nothing.
        ctx.check()?;
        let held = rec.buffers();
        ctx.hold(&held);
        Ok(Replayable {
            ctx: ctx.clone(),
            commands: rec.commands,
            groups,
            _params: params,
            uploads,
            held,
            flags,
        })
    }

    /// Record every command again into the device's current batch and submit it.
    pub(crate) fn replay(&self) -> Result<()> {
        self.ctx.check()?;
        self.ctx.replay(|encoder_or_pass| {
            for (c, g) in self.commands.iter().zip(&self.groups) {
                match (c, g) {
                    (
                        Command::Dispatch {
                            pipeline,
                            params_at,
                            groups,
                            ..
                        },
                        Some(group),
                    ) => {
                        let pass = encoder_or_pass.pass();
                        pass.set_pipeline(&pipeline.pipeline);
                        pass.set_bind_group(0, group, &[*params_at as u32]);
                        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
                    }
                    (
                        Command::Copy {
                            src,
                            src_offset,
                            dst,
                            dst_offset,
                            bytes,
                        },
                        _,
                    ) => encoder_or_pass.encoder().copy_buffer_to_buffer(
                        src,
                        *src_offset,
                        dst,
                        *dst_offset,
                        *bytes,
                    ),
                    (Command::Upload { dst, at, bytes }, _) => {
                        if let Some(u) = &self.uploads {
                            encoder_or_pass
                                .encoder()
                                .copy_buffer_to_buffer(u, *at, dst, 0, *bytes);
                        }
                    }
                    (Command::ClearFlag(f), _) => {
                        encoder_or_pass.encoder().clear_buffer(f, 0, None)
                    }
                    (Command::Dispatch { .. }, None) => {}
                }
            }
        });
        self.ctx.replayed_flags(&self.flags);
        Ok(())
    }

    /// Dispatches one replay records.
    pub(crate) fn dispatches(&self) -> usize {
        self.groups.iter().filter(|g| g.is_some()).count()
    }
}

impl Drop for Replayable {
    fn drop(&mut self) {
        self.ctx.release_held(&self.held);
    }
}

/// Reference counts of the buffers held by live captures of one device.
#[derive(Default)]
pub(crate) struct Held(HashMap<wgpu::Buffer, usize>);

impl Held {
    pub(crate) fn contains(&self, b: &wgpu::Buffer) -> bool {
        self.0.contains_key(b)
    }

    pub(crate) fn add(&mut self, buffers: &[wgpu::Buffer]) {
        for b in buffers {
            *self.0.entry(b.clone()).or_default() += 1;
        }
    }

    pub(crate) fn remove(&mut self, buffers: &[wgpu::Buffer]) {
        for b in buffers {
            if let Some(n) = self.0.get_mut(b) {
                *n -= 1;
                if *n == 0 {
                    self.0.remove(b);
                }
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
