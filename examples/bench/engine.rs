//! The GPU engine's costs per training step (`--only engine`, GPU devices only): dispatches,
//! bind groups created, the calling thread's CPU time and the wall time, for the MLP
//! (784-256-10, batch 256, cross-entropy, SGD), LeNet (the `steps` section's, batch 128) and
//! chargpt (the `steps` section's, batch 32). Steps run without reading the loss, as a
//! training loop does between its logging points; each figure is the median over the
//! measured steps after three warm-up steps.

use super::{model, steps, thread_cpu_ns, Bench};
use std::time::Instant;
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{clip_grad_norm, Adam, Optimizer, Sgd};
use wgrad::{Device, Result, Tensor};

/// Per-step figures of `step` run `reps` times after a warm-up, reported under `name_*`.
fn measure(
    b: &Bench,
    name: &str,
    dev: &Device,
    reps: usize,
    mut step: impl FnMut() -> Result<()>,
) -> Result<()> {
    let Device::Gpu(g) = dev else {
        return Ok(());
    };
    for _ in 0..3 {
        step()?;
    }
    dev.synchronize()?;
    let reps = if b.quick { reps.min(3) } else { reps };
    let (mut cpu, mut wall, mut dispatches, mut groups) = (vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        let before = g.stats();
        let (c0, t0) = (thread_cpu_ns(), Instant::now());
        step()?;
        let c1 = thread_cpu_ns();
        dev.synchronize()?;
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        let after = g.stats();
        dispatches.push((after.dispatches - before.dispatches) as f64);
        groups.push((after.bind_groups - before.bind_groups) as f64);
        if let (Some(c0), Some(c1)) = (c0, c1) {
            cpu.push((c1 - c0) as f64 / 1e3);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[v.len() / 2]
    };
    b.report(
        &format!("{name}_dispatches"),
        median(&mut dispatches),
        "per step",
    );
    b.report(
        &format!("{name}_bind_groups"),
        median(&mut groups),
        "per step",
    );
    // Some kernels keep the schedstat file but never advance it: no figure then.
    if !cpu.is_empty() && median(&mut cpu.clone()) > 0.0 {
        b.report(&format!("{name}_thread_cpu"), median(&mut cpu), "us");
    }
    b.report(&format!("{name}_wall"), median(&mut wall), "ms");
    Ok(())
}

pub fn run(b: &Bench, dev: &Device) -> Result<()> {
    // MLP: the reference step.
    let model = wgrad::seeded(0, || -> Result<nn::Sequential> {
        Ok(nn::Sequential::new()
            .add(nn::Linear::new(784, 256, dev)?)
            .add(nn::ReLU)
            .add(nn::Linear::new(256, 10, dev)?))
    })?;
    let mut opt = Sgd::new(model.parameters(), 0.1);
    let x = Tensor::randn_on([256, 784], dev)?;
    let y = Tensor::randint_on(0, 10, [256], dev)?;
    measure(b, "engine_mlp_step", dev, 20, || {
        opt.zero_grad();
        nn::cross_entropy(&model.forward(&x)?, &y)?.backward()?;
        opt.step()
    })?;

    let net = wgrad::seeded(3, || steps::lenet(dev))?;
    let mut opt = Sgd::new(net.parameters(), 0.1);
    let x = Tensor::randn_on([128, 1, 28, 28], dev)?;
    let y = Tensor::randint_on(0, 10, [128], dev)?;
    measure(b, "engine_lenet_step", dev, 10, || {
        opt.zero_grad();
        nn::cross_entropy(&net.forward(&x)?, &y)?.backward()?;
        opt.step()
    })?;

    let vocab = 92;
    let text = wgrad::seeded(0, || Tensor::randint_on(0, vocab as i64, [100_000], dev))?;
    let gpt = wgrad::seeded(1, || model::Gpt::new(vocab, 64, 128, 4, 4, dev))?;
    let mut opt = Adam::adamw(gpt.parameters(), 1e-3).weight_decay(0.1);
    measure(b, "engine_chargpt_step", dev, 5, || {
        opt.zero_grad();
        let (x, y) = model::windows(&text, 32, 64)?;
        model::loss_of(&gpt, &x, &y)?.backward()?;
        clip_grad_norm(&gpt.parameters(), 1.0)?;
        opt.step()
    })
}
