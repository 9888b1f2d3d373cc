//! The CPU backend's one allocation policy: a result the machine cannot hold is
//! `Err(OutOfMemory)`, never an abort. Every CPU op asks `room` before it allocates its output.

use crate::dtype::DType;
use crate::error::{Error, Result};

/// Room in CPU memory for a result of `n` elements of `dtype`, so that a size the machine
/// cannot hold (say, an op on a view expanded to 2^40 elements) is an `Err`, not an abort:
/// more than the machine's RAM and swap is refused, and an allocation of 1 GiB or more is
/// tried first (where the system says up front that it cannot be had).
#[inline]
pub fn room(op: &'static str, n: usize, dtype: DType) -> Result<()> {
    match n.checked_mul(dtype.size_in_bytes()) {
        Some(bytes) if bytes < 1 << 30 => Ok(()),
        _ => large_room(op, n, dtype),
    }
}

#[cold]
fn large_room(op: &'static str, n: usize, dtype: DType) -> Result<()> {
    let bytes = crate::shape::addressable_bytes(op, &[n], dtype.size_in_bytes())?;
    let out_of_memory = Error::OutOfMemory {
        op,
        bytes: bytes as u64,
        device: "cpu",
    };
    if system_memory().is_some_and(|total| bytes as u64 > total) {
        return Err(out_of_memory);
    }
    Vec::<u8>::new()
        .try_reserve_exact(bytes)
        .map_err(|_| out_of_memory)
}

/// RAM plus swap in bytes, where the system reports it (Linux's /proc/meminfo).
fn system_memory() -> Option<u64> {
    static TOTAL: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = |key: &str| -> Option<u64> {
            let line = info.lines().find(|l| l.starts_with(key))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)) * 1024)
    })
}
