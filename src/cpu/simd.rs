//! Our own CPU loops compiled for the widest vector instructions the machine has. The crate
//! targets baseline x86-64 (SSE2, four f32 lanes) so that one binary runs anywhere; a loop
//! run through [`vectorized`] is compiled again inside functions that enable AVX2 and FMA,
//! or AVX-512, and the one the CPU supports is picked at run time (pulp's dispatch, as gemm
//! does for its kernels). Rust never fuses `a * b + c` into an FMA on its own, so every
//! version computes the same values; only the lane count changes.

use std::sync::OnceLock;

static ARCH: OnceLock<pulp::Arch> = OnceLock::new();

/// `f()`, compiled for this CPU's widest vectors. Pass the closure marked
/// `#[inline(always)]` (`vectorized(#[inline(always)] || ..)`), and let it call only
/// `#[inline(always)]` functions: whatever is not inlined into the dispatching function runs
/// its baseline code. Unmarked, a closure with a few transcendental functions in its loop
/// was left out of line, and the LSTM cell ran 3.6x slower.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    ARCH.get_or_init(pulp::Arch::new).dispatch(f)
}
