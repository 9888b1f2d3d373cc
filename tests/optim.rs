//! Optimizer trajectories against PyTorch's (tests/data/torch_optim.json): six steps of
//! zero_grad, backward, step on `sum(0.5 * w * p^2 + c * p)`, within 1e-5 relative, on every
//! device. `WGRAD_GOLDEN_OPTIM=path` checks another file of the same format too.

mod common;

use serde_json::Value;
use wgrad::optim::{Adagrad, Adam, Optimizer, RmsProp, Sgd};
use wgrad::{Device, Tensor};

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn optimizer(name: &str, h: &Value, p: Tensor) -> Box<dyn Optimizer> {
    let lr = h["lr"].as_f64().unwrap();
    let f = |k: &str, d: f64| h[k].as_f64().unwrap_or(d);
    let betas = |o: Adam| match h["betas"].as_array() {
        Some(b) => o.betas(b[0].as_f64().unwrap(), b[1].as_f64().unwrap()),
        None => o,
    };
    match name {
        "sgd" => Box::new(
            Sgd::new(vec![p], lr)
                .momentum(f("momentum", 0.0))
                .dampening(f("dampening", 0.0))
                .weight_decay(f("weight_decay", 0.0))
                .nesterov(h["nesterov"].as_bool().unwrap_or(false)),
        ),
        "adam" => Box::new(
            betas(Adam::new(vec![p], lr))
                .eps(f("eps", 1e-8))
                .weight_decay(f("weight_decay", 0.0)),
        ),
        "adamw" => Box::new(
            betas(Adam::adamw(vec![p], lr))
                .eps(f("eps", 1e-8))
                .weight_decay(f("weight_decay", 0.01)),
        ),
        "rmsprop" => Box::new(
            RmsProp::new(vec![p], lr)
                .alpha(f("alpha", 0.99))
                .eps(f("eps", 1e-8))
                .weight_decay(f("weight_decay", 0.0))
                .momentum(f("momentum", 0.0)),
        ),
        "adagrad" => Box::new(
            Adagrad::new(vec![p], lr)
                .weight_decay(f("weight_decay", 0.0))
                .lr_decay(f("lr_decay", 0.0)),
        ),
        other => panic!("optimizer {other:?} is not known to the runner"),
    }
}

fn run_file(json: &str, source: &str) {
    let root: Value = serde_json::from_str(json).unwrap();
    let shape: Vec<usize> = root["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let mut ran = 0;
    for device in common::devices() {
        let on = |v: &Value| {
            Tensor::from_vec(floats(v), shape.clone())
                .unwrap()
                .to_device(&device)
                .unwrap()
        };
        let (w, c) = (on(&root["w"]), on(&root["c"]));
        for case in root["cases"].as_array().unwrap() {
            let name = case["optimizer"].as_str().unwrap();
            let what = format!("{source}: {name} {} on {device}", case["hyper"]);
            let p = on(&root["p0"]).requires_grad_(true).unwrap();
            let mut opt = optimizer(name, &case["hyper"], p.clone());
            for (step, expected) in case["trajectory"].as_array().unwrap().iter().enumerate() {
                opt.zero_grad();
                let loss = p
                    .square()
                    .unwrap()
                    .mul(&w)
                    .unwrap()
                    .mul_scalar(0.5)
                    .unwrap()
                    .add(c.mul(&p).unwrap())
                    .unwrap()
                    .sum()
                    .unwrap();
                loss.backward().unwrap();
                opt.step().unwrap();
                let e: Vec<f64> = floats(expected).iter().map(|&x| x as f64).collect();
                let got = p.to_device(&Device::Cpu).unwrap().to_vec::<f32>().unwrap();
                common::assert_close(&got, &e, 1e-5, 1e-6, &format!("{what}, step {}", step + 1));
            }
            ran += 1;
        }
    }
    assert!(ran > 0);
}

#[test]
fn pytorch_optimizer_trajectories() {
    run_file(
        include_str!("data/torch_optim.json"),
        "tests/data/torch_optim.json",
    );
}

#[test]
fn optimizer_trajectories_from_environment() {
    let Ok(path) = std::env::var("WGRAD_GOLDEN_OPTIM") else {
        eprintln!("WGRAD_GOLDEN_OPTIM not set: no extra reference file");
        return;
    };
    run_file(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        &path,
    );
}

/// Optimizers update their state in place (as PyTorch's do), so `load_state` keeps a copy:
/// stepping after a load leaves the caller's tensors as they were, and the state then
/// differs from them.
#[test]
fn loaded_state_is_copied_before_it_is_updated_in_place() -> wgrad::Result<()> {
    for dev in common::devices() {
        let p = Tensor::new([1.0f32, -2.0, 3.0])?
            .to_device(&dev)?
            .requires_grad_(true)?;
        let step = |opt: &mut Adam| -> wgrad::Result<()> {
            opt.zero_grad();
            p.square()?.sum()?.backward()?;
            opt.step()
        };
        let mut first = Adam::new(vec![p.clone()], 0.1);
        step(&mut first)?;
        let saved = first.state();
        let before: Vec<Vec<f32>> = saved
            .iter()
            .map(|(_, t)| {
                t.to_vec::<f32>()
                    .or_else(|_| Ok(vec![t.item::<i64>()? as f32]))
            })
            .collect::<wgrad::Result<_>>()?;
        let mut second = Adam::new(vec![p.clone()], 0.1);
        second.load_state(&saved)?;
        step(&mut second)?;
        for ((name, t), was) in saved.iter().zip(&before) {
            let now = t
                .to_vec::<f32>()
                .or_else(|_| Ok(vec![t.item::<i64>()? as f32]))?;
            assert_eq!(&now, was, "{name} changed under the caller on {dev}");
        }
        let (_, m) = second
            .state()
            .into_iter()
            .find(|(n, _)| n == "0.exp_avg")
            .expect("Adam keeps exp_avg");
        assert_ne!(m.to_vec::<f32>()?, before[0], "exp_avg moved on {dev}");
    }
    Ok(())
}

/// A learning rate changed between steps reaches the next update on every device, and
/// changed back, the one after it: the fused updates keep their one-element tensors only
/// while the value stays.
#[test]
fn a_changed_learning_rate_reaches_the_next_step() -> wgrad::Result<()> {
    for dev in common::devices() {
        let p = Tensor::new([1.0f32, 2.0])?
            .to_device(&dev)?
            .requires_grad_(true)?;
        let mut opt = Sgd::new(vec![p.clone()], 0.5);
        let mut values = Vec::new();
        for lr in [0.5, 0.5, 0.25, 0.0, 0.5] {
            opt.set_lr(lr);
            opt.zero_grad();
            p.sum()?.backward()?;
            opt.step()?;
            values.push(p.to_vec::<f32>()?[0]);
        }
        assert_eq!(values, vec![0.5, 0.0, -0.25, -0.25, -0.75], "{dev:?}");
    }
    Ok(())
}
