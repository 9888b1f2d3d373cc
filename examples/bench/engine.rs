//! The GPU engine's costs per training step (`--only engine`, GPU devices only): dispatches,
//! bind groups created, the calling thread's CPU time and the wall time, for the MLP
//! (784-256-10, batch 256, cross-entropy, SGD), LeNet (the `steps` section's, batch 128) and
//! chargpt (the `steps` section's, batch 32), each run eagerly (`engine_<model>_step_*`) and
//! as a captured step replayed (`engine_<model>_replay_*`; `wgrad::capture`). Steps run
//! without reading the loss, as a training loop does between its logging points; each
//! figure is the median over the measured steps after three warm-up steps.

use super::{model, steps, thread_cpu_ns, Bench};
use std::time::Instant;
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{clip_grad_norm, Adam, Optimizer, Sgd};
use wgrad::{Device, Result, Tensor};

/// Per-step figures of `step` over `reps` samples of `inner` steps each (after a warm-up),
/// reported under `name_*`: dispatches and bind groups per step, the calling thread's CPU
/// time per step (Linux schedstat; a sample of several steps, since a replay takes less
/// than the counter's resolution) and the wall time with the GPU work.
fn measure(
    b: &Bench,
    name: &str,
    dev: &Device,
    (reps, inner): (usize, usize),
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
    let per = |x: f64| x / inner as f64;
    let (mut cpu, mut wall) = (vec![], vec![]);
    let (mut dispatches, mut groups) = (vec![], vec![]);
    for _ in 0..reps {
        let before = g.stats();
        let (c0, t0) = (thread_cpu_ns(), Instant::now());
        for _ in 0..inner {
            step()?;
        }
        let c1 = thread_cpu_ns();
        dev.synchronize()?;
        wall.push(per(t0.elapsed().as_secs_f64() * 1e3));
        let after = g.stats();
        dispatches.push(per((after.dispatches - before.dispatches) as f64));
        groups.push(per((after.bind_groups - before.bind_groups) as f64));
        if let (Some(c0), Some(c1)) = (c0, c1) {
            cpu.push(per((c1 - c0) as f64 / 1e3));
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
    let mut step = || -> Result<()> {
        opt.zero_grad();
        nn::cross_entropy(&model.forward(&x)?, &y)?.backward()?;
        opt.step()
    };
    measure(b, "engine_mlp_step", dev, (20, 1), &mut step)?;
    let (captured, ()) = wgrad::capture(dev, &mut step)?;
    measure(b, "engine_mlp_replay", dev, (20, 10), || captured.replay())?;

    let net = wgrad::seeded(3, || steps::lenet(dev))?;
    let mut opt = Sgd::new(net.parameters(), 0.1);
    let x = Tensor::randn_on([128, 1, 28, 28], dev)?;
    let y = Tensor::randint_on(0, 10, [128], dev)?;
    let mut step = || -> Result<()> {
        opt.zero_grad();
        nn::cross_entropy(&net.forward(&x)?, &y)?.backward()?;
        opt.step()
    };
    measure(b, "engine_lenet_step", dev, (10, 1), &mut step)?;
    let (captured, ()) = wgrad::capture(dev, &mut step)?;
    measure(b, "engine_lenet_replay", dev, (5, 4), || captured.replay())?;

    let vocab = 92;
    let text = wgrad::seeded(0, || Tensor::randint_on(0, vocab as i64, [100_000], dev))?;
    let gpt = wgrad::seeded(1, || model::Gpt::new(vocab, 64, 128, 4, 4, dev))?;
    let mut opt = Adam::adamw(gpt.parameters(), 1e-3).weight_decay(0.1);
    // The windows are drawn outside the step (a captured step cannot draw random numbers)
    // and copied into the step's inputs.
    let (x, y) = model::windows(&text, 32, 64)?;
    let mut step = || -> Result<()> {
        opt.zero_grad();
        model::loss_of(&gpt, &x, &y)?.backward()?;
        clip_grad_norm(&gpt.parameters(), 1.0)?;
        opt.step()
    };
    measure(b, "engine_chargpt_step", dev, (5, 1), || {
        let (bx, by) = model::windows(&text, 32, 64)?;
        x.copy_(&bx)?;
        y.copy_(&by)?;
        step()
    })?;
    let (captured, ()) = wgrad::capture(dev, &mut step)?;
    measure(b, "engine_chargpt_replay", dev, (3, 2), || {
        let (bx, by) = model::windows(&text, 32, 64)?;
        captured.replay_with(&[(&x, &bx), (&y, &by)])
    })
}
