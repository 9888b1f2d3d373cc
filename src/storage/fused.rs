//! Running a fused elementwise program (`gpu/kernels/fused.rs`) over tensors in place: one
//! dispatch on a GPU, one pass on the CPU (`cpu/fused.rs`), for what would be a dozen ops.
//! Only where it computes exactly what those ops would: F32 tensors of one device,
//! contiguous from their buffer's start, of one element count (one-element tensors for the
//! program's scalar loads), each with a storage of its own. Anything else is left to the ops
//! (`Ok(false)`); so is everything when `WGRAD_NO_FUSION=1`.

use super::{Storage, StorageCell};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::kernels::fused::{Node, Operand, Program};
use crate::gpu::kernels::Kernel;
use crate::host::HostBuffer;
use crate::tensor::Tensor;
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};

/// Whether fusion is off: `WGRAD_NO_FUSION=1` (read once), or inside [`without_fusion`]
/// on this thread; to compare with the ops.
pub(crate) fn fusion_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("WGRAD_NO_FUSION").is_some_and(|v| v != "0"))
        || OFF_HERE.with(|off| off.get())
}

thread_local! {
    static OFF_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with fusion off on this thread (every op its own kernel, as with
/// `WGRAD_NO_FUSION=1`), to compare fused and unfused results in one process.
pub fn without_fusion<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            OFF_HERE.with(|off| off.set(self.0));
        }
    }
    let _restore = Restore(OFF_HERE.with(|off| off.replace(true)));
    f()
}

enum Guard<'a> {
    Read(RwLockReadGuard<'a, Storage>),
    Write(RwLockWriteGuard<'a, Storage>),
}

impl Guard<'_> {
    fn storage(&self) -> &Storage {
        match self {
            Guard::Read(g) => g,
            Guard::Write(g) => g,
        }
    }
}

/// Run `program` over `tensors` (its operands, in order) with `params`, writing its results
/// in place; `Ok(false)` when these tensors are not ones it takes (nothing ran).
pub(crate) fn run(program: &'static Program, tensors: &[&Tensor], params: &[f32]) -> Result<bool> {
    if tensors.len() != program.operands.len() || params.len() != program.params as usize {
        return Err(crate::error::Error::invalid(
            program.name,
            format!(
                "a fused program of {} operands and {} parameters was given {} and {}",
                program.operands.len(),
                program.params,
                tensors.len(),
                params.len()
            ),
        ));
    }
    if fusion_disabled() {
        return Ok(false);
    }
    let scalar_operand = |k: usize| {
        program
            .nodes
            .iter()
            .any(|n| matches!(n, Node::LoadScalar(j) if *j as usize == k))
    };
    let Some(n) = tensors
        .iter()
        .enumerate()
        .find(|(k, _)| !scalar_operand(*k))
        .map(|(_, t)| t.numel())
    else {
        return Ok(false);
    };
    let device = tensors[0].device();
    for (k, t) in tensors.iter().enumerate() {
        t.live()?;
        let l = t.layout();
        let fits = t.dtype() == DType::F32
            && t.device() == device
            && l.is_contiguous()
            && l.offset == 0
            && t.numel() == if scalar_operand(k) { 1 } else { n };
        if !fits {
            return Ok(false);
        }
    }
    let mut cells: Vec<(usize, &Arc<StorageCell>)> =
        tensors.iter().map(|t| t.storage()).enumerate().collect();
    // One storage per operand: a buffer bound twice, once writable, is refused by wgpu.
    let mut ids: Vec<*const StorageCell> = cells.iter().map(|(_, c)| Arc::as_ptr(c)).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != cells.len() {
        return Ok(false);
    }
    // Locks in address order, as everywhere two storages are locked (no deadlock with an
    // in-place op on another thread).
    cells.sort_by_key(|(_, c)| Arc::as_ptr(c));
    // Pending values are computed before any lock is held (see `with_reads`).
    for &(k, c) in &cells {
        match program.operands[k] {
            Operand::Read => c.settle(),
            Operand::Write(_) => c.settle_for_write(),
        }
    }
    let mut guards: Vec<(usize, Guard<'_>)> = cells
        .iter()
        .map(|&(k, c)| {
            let g = match program.operands[k] {
                Operand::Read => Guard::Read(c.read_settled()),
                Operand::Write(_) => Guard::Write(c.write_settled()),
            };
            (k, g)
        })
        .collect();
    guards.sort_by_key(|(k, _)| *k);
    if device.is_cpu() {
        if !crate::cpu::fused::supports(program) {
            return Ok(false);
        }
        let mut slices = Vec::with_capacity(guards.len());
        for (_, g) in &mut guards {
            slices.push(match g {
                Guard::Read(r) => match &**r {
                    Storage::Cpu(HostBuffer::F32(v)) => crate::cpu::fused::Slice::Read(v),
                    _ => return Ok(false),
                },
                Guard::Write(w) => match &mut **w {
                    Storage::Cpu(HostBuffer::F32(v)) => crate::cpu::fused::Slice::Write(v),
                    _ => return Ok(false),
                },
            });
        }
        crate::cpu::fused::run(program, slices, n, params);
        return Ok(true);
    }
    let mut buffers = Vec::with_capacity(guards.len());
    let mut ctx = None;
    // The open index checks of every operand: the written ones are computed from them all.
    let mut lineage = Vec::new();
    for (_, g) in &guards {
        let Storage::Gpu(s) = g.storage() else {
            return Ok(false);
        };
        ctx.get_or_insert_with(|| s.ctx().clone());
        buffers.push(s.buf.raw().clone());
        lineage.extend_from_slice(&s.checks);
    }
    let Some(ctx) = ctx else {
        return Ok(false);
    };
    if n == 0 {
        return Ok(true);
    }
    let mut words = vec![
        u32::try_from(n).map_err(|_| crate::error::Error::BufferTooLarge {
            op: program.name,
            bytes: 4 * n as u64,
            limit: 4 * u32::MAX as u64,
        })?,
    ];
    words.extend(params.iter().map(|p| p.to_bits()));
    let (x, y) = ctx.grid(n as u64, false)?;
    let bound: Vec<&wgpu::Buffer> = buffers.iter().collect();
    ctx.dispatch(Kernel::Fused(program), &words, &bound, (x, y, 1))?;
    if !lineage.is_empty() {
        let open = ctx.open_checks(lineage.into_iter());
        for (_, g) in &mut guards {
            if let Guard::Write(w) = g {
                if let Storage::Gpu(s) = &mut **w {
                    s.checks = open.clone();
                }
            }
        }
    }
    Ok(true)
}
