//! Where an op's operands go when their dtype has no compute kernels of its own on their
//! device, and how the result comes back. This is the one place where that happens:
//!
//! - The 16-bit floats (`F16`, `BF16`) are storage types: every compute op reads them
//!   widened to f32, runs the f32 kernel and rounds its float result once to the 16-bit type
//!   (PyTorch's CPU kernels do the same: `opmath` is f32 for them).
//! - F64 on a GPU (WGSL has no f64) is computed by the CPU backend: the operands are read
//!   back, the result uploaded to the GPU again.
//!
//! Moves and conversions (copies, writes, casts between the 16-bit types and f32,
//! readbacks) are native on each backend.

use super::{Storage, StorageArg};
use crate::backend::Arg;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// An operand moved to where it is computed, contiguous (`None`: it stays as it is).
pub(super) type Moved = Option<(Storage, Layout)>;

/// A way to compute a dtype that its device has no kernels for.
#[derive(Debug, Clone)]
pub(super) enum Detour {
    /// Widen the 16-bit operands to f32 and round a float result back to this dtype.
    Widen(DType),
    /// Compute on the host, and upload the result to this device.
    Host(Device),
}

impl Detour {
    /// The detour of an op computing in `dtype` on the device of `first`, if it needs one.
    #[inline]
    pub(super) fn of(dtype: DType, first: &Storage) -> Option<Detour> {
        if dtype.is_half() {
            Some(Detour::Widen(dtype))
        } else if dtype == DType::F64 && matches!(first, Storage::Gpu(_)) {
            Some(Detour::Host(first.device()))
        } else {
            None
        }
    }

    /// [`Detour::of`] for an elementwise op: the first buffer operand decides the device.
    #[inline]
    pub(super) fn of_args(dtype: DType, args: [StorageArg<'_>; 2]) -> Option<Detour> {
        // Every other dtype computes where it is: decided before looking at the operands,
        // since every elementwise op asks.
        if !dtype.is_half() && dtype != DType::F64 {
            return None;
        }
        let first = args.iter().find_map(|a| match a {
            Arg::Buf(s, _) => Some(*s),
            Arg::Scalar(_) => None,
        })?;
        Detour::of(dtype, first)
    }

    /// `s` seen through `l`, moved for computing: a 16-bit buffer widened, any GPU buffer
    /// (an index, a condition too) read back to the host.
    pub(super) fn take(&self, s: &Storage, l: &Layout) -> Result<Moved> {
        if let Some(e) = s.failure() {
            return Err(e.clone());
        }
        let contiguous = || Layout::contiguous(&l.shape);
        Ok(match self {
            Detour::Widen(_) if s.dtype().is_half() => Some((s.cast(l, DType::F32)?, contiguous())),
            Detour::Widen(_) => None,
            // Every operand comes from the op's device: on the host they would meet silently.
            Detour::Host(device) if s.device() != *device => {
                return Err(Error::DeviceMismatch {
                    op: "an F64 op",
                    lhs: device.to_string(),
                    rhs: s.device().to_string(),
                })
            }
            Detour::Host(_) => Some((Storage::Cpu(s.to_host(l)?), contiguous())),
        })
    }

    /// [`Detour::take`] for an operand that may be a number (numbers stay: kernels take them
    /// in their compute dtype).
    pub(super) fn take_arg(&self, a: StorageArg<'_>) -> Result<Moved> {
        match a {
            Arg::Buf(s, l) => self.take(s, l),
            Arg::Scalar(_) => Ok(None),
        }
    }

    /// An elementwise op over `shape`: `op` of the moved operands (numbers as they are), its
    /// result brought back.
    pub(super) fn elementwise(
        &self,
        shape: &[usize],
        [a, b]: [StorageArg<'_>; 2],
        op: impl FnOnce([StorageArg<'_>; 2]) -> Result<Storage>,
    ) -> Result<Storage> {
        let (ma, mb) = (self.take_arg(a)?, self.take_arg(b)?);
        let r = op([computed(a, &ma), computed(b, &mb)])?;
        self.back(r, shape.iter().product())
    }

    /// The result of `n` elements brought back: rounded to the 16-bit type (a float result;
    /// bools and indices stay), or uploaded to the device.
    pub(super) fn back(&self, result: Storage, n: usize) -> Result<Storage> {
        match (self, result) {
            (Detour::Widen(d), r) if r.dtype() == DType::F32 => {
                r.cast(&Layout::contiguous(&[n]), *d)
            }
            (Detour::Host(device), Storage::Cpu(h)) => Storage::from_host(device, h),
            (_, r) => Ok(r),
        }
    }
}

/// The operand to compute with: its moved copy when it has one.
pub(super) fn computed<'a>(a: StorageArg<'a>, moved: &'a Moved) -> StorageArg<'a> {
    match moved {
        Some((s, l)) => Arg::Buf(s, l),
        None => a,
    }
}

/// The buffer to compute with, and its layout.
pub(super) fn computed_buf<'a>(
    s: &'a Storage,
    l: &'a Layout,
    moved: &'a Moved,
) -> (&'a Storage, &'a Layout) {
    match moved {
        Some((w, wl)) => (w, wl),
        None => (s, l),
    }
}
