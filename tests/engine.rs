//! The GPU engine's bookkeeping: what a training step costs the host beyond its kernels.

mod common;

use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, Optimizer};
use wgrad::{Device, Result, Tensor};

/// An MLP step (Adam, MSE) on `dev`.
fn mlp_step(model: &nn::Sequential, opt: &mut Adam, x: &Tensor, y: &Tensor) -> Result<()> {
    opt.zero_grad();
    nn::mse_loss(&model.forward(x)?, y)?.backward()?;
    opt.step()
}

/// Bind groups are kept per kernel and buffers, and the pool hands out buffers by which are
/// free, not by the order they were freed in, and the optimizers update their state in
/// place: once a few steps have run, the same step binds only groups built before (an index
/// kernel's fresh flag aside, which MSE does not use).
#[test]
fn a_repeated_training_step_builds_no_new_bind_groups() -> Result<()> {
    for dev in common::devices() {
        let Device::Gpu(gpu) = &dev else { continue };
        let model = nn::Sequential::new()
            .add(nn::Linear::new(12, 16, &dev)?)
            .add(nn::Tanh)
            .add(nn::Linear::new(16, 3, &dev)?);
        let mut opt = Adam::new(model.parameters(), 1e-2);
        let x = Tensor::randn_on([8, 12], &dev)?;
        let y = Tensor::randn_on([8, 3], &dev)?;
        // Steps that end alike (here by waiting; a training loop reading its loss does too):
        // the pool is in the same state at each step's start once the optimizer's state
        // exists.
        for _ in 0..5 {
            mlp_step(&model, &mut opt, &x, &y)?;
            dev.synchronize()?;
        }
        let before = gpu.stats();
        for _ in 0..5 {
            mlp_step(&model, &mut opt, &x, &y)?;
            dev.synchronize()?;
        }
        let after = gpu.stats();
        assert!(after.dispatches - before.dispatches >= 5 * 20);
        assert_eq!(
            after.bind_groups - before.bind_groups,
            0,
            "bind groups built by 5 repeated steps on {dev}"
        );
        // Giving the pooled memory back drops the kept groups too (they hold the buffers);
        // the next step builds its groups again and computes as before.
        dev.empty_cache();
        let loss = nn::mse_loss(&model.forward(&x)?, &y)?.item::<f32>()?;
        assert!(loss.is_finite());
        assert!(gpu.stats().bind_groups > after.bind_groups);
    }
    Ok(())
}
