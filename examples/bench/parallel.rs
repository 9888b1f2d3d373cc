//! Data parallelism's cost (`--only parallel`): one step of the MLP (784-256-10, batch 256,
//! cross-entropy, SGD) on one device, and the same global batch with `DataParallel` over
//! two replicas (two CPU replicas with `--device cpu`; two devices opened on the first
//! adapter with `--device gpu`), with the time of the gradient exchange. Medians over the
//! measured steps after two warm-up steps.

use super::Bench;
use std::time::Instant;
use wgrad::distributed::DataParallel;
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::{Device, Result, Tensor};

fn mlp(dev: &Device) -> Result<nn::Sequential> {
    Ok(nn::Sequential::new()
        .add(nn::Linear::new(784, 256, dev)?)
        .add(nn::ReLU)
        .add(nn::Linear::new(256, 10, dev)?))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(b: &Bench, dev: &Device) -> Result<()> {
    let reps = if b.quick { 3 } else { 15 };
    let x = Tensor::randn([256, 784])?;
    let y = Tensor::randint(0, 10, [256])?;

    // One replica, the plain loop (the loss read back each step, as the data-parallel
    // step does).
    let model = mlp(dev)?;
    let mut opt = Sgd::new(model.parameters(), 0.1);
    let (xd, yd) = (x.to_device(dev)?, y.to_device(dev)?);
    let mut one = vec![];
    for i in 0..reps + 2 {
        let t = Instant::now();
        opt.zero_grad();
        let loss = nn::cross_entropy(&model.forward(&xd)?, &yd)?;
        loss.backward()?;
        opt.step()?;
        loss.item::<f32>()?;
        if i >= 2 {
            one.push(t.elapsed().as_secs_f64());
        }
    }
    b.report("parallel_1_replica_step", median(one) * 1e3, "ms");

    let devices = match dev {
        Device::Cpu => vec![Device::Cpu, Device::Cpu],
        Device::Gpu(_) => vec![Device::gpu_at(0)?, Device::gpu_at(0)?],
    };
    let mut dp = DataParallel::new(&devices, mlp, |p| Sgd::new(p, 0.1))?;
    let (mut step, mut exchange) = (vec![], vec![]);
    for i in 0..reps + 2 {
        let t = Instant::now();
        let report = dp.step(&[&x, &y], |m, batch| {
            nn::cross_entropy(&m.forward(&batch[0])?, &batch[1])
        })?;
        if i >= 2 {
            step.push(t.elapsed().as_secs_f64());
            exchange.push(report.exchange.as_secs_f64());
        }
    }
    b.report("parallel_2_replicas_step", median(step) * 1e3, "ms");
    b.report("parallel_2_replicas_exchange", median(exchange) * 1e3, "ms");
    Ok(())
}
