//! A BF16 model's parameters take half the bytes of the F32 one, by the device's own
//! counters. Alone in its test binary: `memory_stats` counts every tensor of the process.

mod common;

use wgrad::nn::{self, Module};
use wgrad::{DType, Result};

#[test]
fn a_bf16_models_parameters_take_half_the_bytes() -> Result<()> {
    for dev in common::devices() {
        let live = || dev.memory_stats().live_bytes;
        let before = live();
        let mut net = nn::Sequential::new()
            .add(nn::Linear::new(256, 256, &dev)?)
            .add(nn::ReLU)
            .add(nn::Linear::new(256, 128, &dev)?);
        let f32_bytes = live() - before;
        let elements = net.num_parameters() as u64;
        assert_eq!(f32_bytes, 4 * elements, "f32 parameters on {dev}");
        net.to_dtype(DType::BF16)?;
        let bf16_bytes = live() - before;
        assert_eq!(bf16_bytes, 2 * elements, "bf16 parameters on {dev}");
        drop(net);
        assert_eq!(live(), before, "everything freed on {dev}");
    }
    Ok(())
}
