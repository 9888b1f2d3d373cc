//! Bind groups: each kernel's layout, and a cache of the groups built for it.
//!
//! Creating a bind group was most of the host time of a small dispatch. A training loop binds
//! the same few buffers step after step (buffers come back from the pool, the parameter
//! arenas rotate), so groups are kept, keyed by the kernel and the buffers they bind. The
//! kernel parameters, which change every dispatch, are bound at a dynamic offset into the
//! batch's arena and do not take part in the key beyond the arena itself.

use super::kernels::Kernel;
use std::collections::HashMap;

/// Groups kept per device before the cache starts again from empty (a training step binds a
/// few hundred; the bound keeps groups of buffers that nothing binds any more from piling up).
const MAX_GROUPS: usize = 4096;

/// The layout of a kernel's group 0, read from its WGSL: binding 0, the parameters, is
/// read-only storage at a dynamic offset; every other `@group(0) @binding(i) var<storage,
/// read|read_write>` is storage of its declared access.
pub(crate) fn layout_entries(source: &str) -> Vec<wgpu::BindGroupLayoutEntry> {
    let mut entries: Vec<wgpu::BindGroupLayoutEntry> = source
        .lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("@group(0) @binding(")?;
            let (index, rest) = rest.split_once(')')?;
            let binding: u32 = index.parse().ok()?;
            let read_only = rest.contains("var<storage, read>");
            Some(wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset: binding == 0,
                    min_binding_size: None,
                },
                count: None,
            })
        })
        .collect();
    entries.sort_by_key(|e| e.binding);
    entries
}

/// What a cached group binds: the kernel, the parameter arena and the size of its window,
/// and the kernel's buffers in binding order.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    kernel: Kernel,
    arena: wgpu::Buffer,
    window: u64,
    buffers: Vec<wgpu::Buffer>,
}

/// The bind groups of one device.
#[derive(Default)]
pub(crate) struct BindGroupCache {
    groups: HashMap<Key, wgpu::BindGroup>,
}

impl BindGroupCache {
    /// The group binding `window` bytes of `arena` (at a dynamic offset) and `buffers` for
    /// `kernel`, built on first use; `true` when it was built now.
    pub(crate) fn get(
        &mut self,
        device: &wgpu::Device,
        layout: &wgpu::BindGroupLayout,
        kernel: Kernel,
        arena: &wgpu::Buffer,
        window: u64,
        buffers: &[&wgpu::Buffer],
    ) -> (wgpu::BindGroup, bool) {
        let key = Key {
            kernel,
            arena: arena.clone(),
            window,
            buffers: buffers.iter().map(|&b| b.clone()).collect(),
        };
        if let Some(g) = self.groups.get(&key) {
            return (g.clone(), false);
        }
        let group = build(device, layout, arena, window, buffers);
        if self.groups.len() >= MAX_GROUPS {
            self.groups.clear();
        }
        self.groups.insert(key, group.clone());
        (group, true)
    }

    /// Forget every group (and with them the references they hold to buffers, so that
    /// `empty_cache` can give the memory back).
    pub(crate) fn clear(&mut self) {
        self.groups.clear();
    }
}

/// A new group: `window` bytes of `arena` at binding 0, the buffers whole after it.
pub(crate) fn build(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    arena: &wgpu::Buffer,
    window: u64,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: arena,
            offset: 0,
            size: std::num::NonZeroU64::new(window),
        }),
    }];
    for (i, b) in buffers.iter().enumerate() {
        entries.push(wgpu::BindGroupEntry {
            binding: i as u32 + 1,
            resource: b.as_entire_binding(),
        });
    }
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel's layout has the parameters at a dynamic offset, then its buffers with
    /// the access its WGSL declares.
    #[test]
    fn layouts_follow_the_declared_access() -> crate::Result<()> {
        for kernel in super::super::kernels::all_variants() {
            let source = kernel.source()?;
            let entries = layout_entries(&source);
            let declared = source.matches("@group(0) @binding(").count();
            assert_eq!(entries.len(), declared, "{kernel:?}");
            for (i, e) in entries.iter().enumerate() {
                assert_eq!(e.binding, i as u32, "{kernel:?}");
                let wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset,
                    ..
                } = e.ty
                else {
                    return Err(crate::Error::invalid("test", format!("{kernel:?}: {e:?}")));
                };
                assert_eq!(has_dynamic_offset, i == 0, "{kernel:?}");
                assert!(i != 0 || read_only, "{kernel:?}: parameters are read-only");
            }
            // The outputs are written.
            assert!(
                entries.iter().any(|e| matches!(
                    e.ty,
                    wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        ..
                    }
                )),
                "{kernel:?}"
            );
        }
        Ok(())
    }
}
