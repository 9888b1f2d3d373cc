//! Memory that a backward pass releases, measured alone in its binary (the live-byte count
//! is process-wide, so no other test may run beside it).

use wgrad::{Result, Tensor};

/// A backward pass that does not retain the graph frees the values only the graph kept.
#[test]
fn backward_frees_the_saved_values() -> Result<()> {
    let x = Tensor::randn([1 << 20])?.requires_grad_(true)?;
    let loss = x.exp()?.exp()?.sum()?;
    let before = wgrad::Device::Cpu.memory_stats().live_bytes;
    loss.backward()?;
    let after = wgrad::Device::Cpu.memory_stats().live_bytes;
    // The first exp's 4 MiB result was kept only as the second exp's saved input. (x's 4 MiB
    // gradient arrives meanwhile.)
    assert!(
        after + (2 << 20) < before + (4 << 20),
        "live bytes {before} -> {after}"
    );
    assert!(loss.backward().is_err());
    Ok(())
}
