//! The GPU engine's bookkeeping: what a training step costs the host beyond its kernels.

mod common;

use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adagrad, Adam, Optimizer, RmsProp, Sgd};
use wgrad::{Device, Result, Tensor};

/// The tests of this file read the device's counters, which every test's work moves: one
/// at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

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
    let _serial = serial();
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
        assert!(after.dispatches - before.dispatches >= 5 * 10);
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

/// The GPU device of this run, if any (the CPU has nothing to capture).
fn gpu_device() -> Option<(Device, wgrad::gpu::GpuDevice)> {
    common::devices().into_iter().find_map(|d| match &d {
        Device::Gpu(g) => Some((d.clone(), g.clone())),
        Device::Cpu => None,
    })
}

fn mlp(dev: &Device, seed: u64) -> Result<nn::Sequential> {
    wgrad::seeded(seed, || {
        Ok(nn::Sequential::new()
            .add(nn::Linear::new(10, 32, dev)?)
            .add(nn::ReLU)
            .add(nn::Linear::new(32, 4, dev)?))
    })
}

fn flat_params(model: &nn::Sequential) -> Result<Vec<f32>> {
    let mut all = Vec::new();
    for p in model.parameters() {
        all.extend(p.to_vec::<f32>()?);
    }
    Ok(all)
}

/// The same training run eagerly and captured: one warm-up step each (it creates the
/// optimizer's state), then the capture's own step, then 100 replays against 100 eager steps
/// on the same batches.
fn eager_and_captured(
    make_opt: impl Fn(Vec<Tensor>) -> Box<dyn Optimizer>,
) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
    let Some((dev, _)) = gpu_device() else {
        return Ok(None);
    };
    let (eager, captured) = (mlp(&dev, 5)?, mlp(&dev, 5)?);
    let (mut eager_opt, mut captured_opt) = (
        make_opt(eager.parameters()),
        make_opt(captured.parameters()),
    );
    let mut g = wgrad::Generator::new(9);
    let batches: Vec<(Tensor, Tensor)> = (0..102)
        .map(|_| {
            Ok((
                Tensor::randn_with([16, 10], &mut g)?,
                Tensor::randn_with([16, 4], &mut g)?,
            ))
        })
        .collect::<Result<_>>()?;
    let x = Tensor::zeros_on([16, 10], &dev)?;
    let y = Tensor::zeros_on([16, 4], &dev)?;
    let step = |model: &nn::Sequential, opt: &mut dyn Optimizer| -> Result<Tensor> {
        opt.zero_grad();
        let loss = nn::mse_loss(&model.forward(&x)?, &y)?;
        loss.backward()?;
        opt.step()?;
        Ok(loss)
    };
    // Warm-up and the captured step, the same on both.
    for (model, opt) in [(&eager, &mut eager_opt), (&captured, &mut captured_opt)] {
        x.copy_(&batches[0].0.to_device(&dev)?)?;
        y.copy_(&batches[0].1.to_device(&dev)?)?;
        step(model, opt.as_mut())?;
    }
    x.copy_(&batches[1].0.to_device(&dev)?)?;
    y.copy_(&batches[1].1.to_device(&dev)?)?;
    step(&eager, eager_opt.as_mut())?;
    let (captured_step, loss) = wgrad::capture(&dev, || step(&captured, captured_opt.as_mut()))?;
    for (bx, by) in &batches[2..] {
        x.copy_(&bx.to_device(&dev)?)?;
        y.copy_(&by.to_device(&dev)?)?;
        step(&eager, eager_opt.as_mut())?;
        captured_step.replay_with(&[(&x, bx), (&y, by)])?;
    }
    assert!(loss.item::<f32>()?.is_finite());
    Ok(Some((flat_params(&eager)?, flat_params(&captured)?)))
}

/// SGD with momentum: the replayed kernels are the eager ones (the learning rate read from
/// a tensor instead of a parameter), so the parameters agree to the bit.
#[test]
fn a_captured_sgd_step_replayed_100_times_equals_100_eager_steps() -> Result<()> {
    let _serial = serial();
    let run = eager_and_captured(|p| Box::new(Sgd::new(p, 0.05).momentum(0.9)))?;
    if let Some((eager, captured)) = run {
        assert_eq!(eager, captured);
    }
    Ok(())
}

/// AdamW: the bias corrections come from the step count on the device (exp(t ln beta) in
/// f32 where the eager step takes beta^t in f64), so the parameters agree within 1e-5.
#[test]
fn a_captured_adamw_step_replayed_100_times_matches_100_eager_steps() -> Result<()> {
    let _serial = serial();
    let run = eager_and_captured(|p| Box::new(Adam::adamw(p, 1e-2).weight_decay(0.1)))?;
    if let Some((eager, captured)) = run {
        let expected: Vec<f64> = eager.iter().map(|&v| v as f64).collect();
        common::assert_close(&captured, &expected, 1e-5, 1e-6, "AdamW, captured vs eager");
        assert_ne!(
            eager,
            flat_params(&mlp(&Device::Cpu, 5)?)?,
            "the run trained"
        );
    }
    Ok(())
}

/// A replay creates no buffer, bind group or pipeline: its dispatches are the only work, and
/// tensors made between replays keep their values (the capture's buffers never reach
/// them through the pool).
#[test]
fn a_replay_creates_nothing_and_touches_only_its_own_buffers() -> Result<()> {
    let _serial = serial();
    let Some((dev, gpu)) = gpu_device() else {
        return Ok(());
    };
    let model = mlp(&dev, 1)?;
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let x = Tensor::randn_on([16, 10], &dev)?;
    let labels = Tensor::randint_on(0, 4, [16], &dev)?;
    let step = |opt: &mut Adam| -> Result<Tensor> {
        opt.zero_grad();
        let loss = nn::cross_entropy(&model.forward(&x)?, &labels)?;
        loss.backward()?;
        opt.step()?;
        Ok(loss)
    };
    step(&mut opt)?;
    let (captured, loss) = wgrad::capture(&dev, || step(&mut opt))?;
    let first = loss.item::<f32>()?;
    // Made after the capture, from the pool the capture's intermediates were freed into.
    let bystanders: Vec<Tensor> = (0..8)
        .map(|i| Tensor::full_on([16, 32], i as f64, &dev))
        .collect::<Result<_>>()?;
    dev.synchronize()?;
    let before = gpu.stats();
    for _ in 0..20 {
        captured.replay()?;
    }
    dev.synchronize()?;
    let after = gpu.stats();
    assert_eq!(
        after.allocations, before.allocations,
        "buffers created by replays"
    );
    assert_eq!(
        after.bind_groups, before.bind_groups,
        "bind groups created by replays"
    );
    assert_eq!(
        after.dispatches - before.dispatches,
        20 * captured.dispatches() as u64
    );
    // The whole step: products, loss and gradients, and the four parameters' updates.
    assert!(captured.dispatches() >= 15, "{}", captured.dispatches());
    assert!(loss.item::<f32>()? < first, "the replays trained the model");
    for (i, t) in bystanders.iter().enumerate() {
        assert!(
            t.to_vec::<f32>()?.iter().all(|&v| v == i as f32),
            "tensor {i} overwritten"
        );
    }
    // Without the capture its buffers go back to the pool, and work goes on as usual.
    drop(captured);
    let again = step(&mut opt)?.item::<f32>()?;
    assert!(again.is_finite());
    Ok(())
}

/// What a replay could not repeat is refused while capturing, and a refused capture leaves
/// the device working as before.
#[test]
fn a_capture_refuses_what_a_replay_could_not_repeat() -> Result<()> {
    let _serial = serial();
    let x = Tensor::ones([2, 2])?;
    let err = wgrad::capture(&Device::Cpu, || x.sum())
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("GPU")), "CPU capture");
    let Some((dev, _)) = gpu_device() else {
        return Ok(());
    };
    let x = Tensor::ones_on([2, 2], &dev)?;
    let refused = |what: &str, r: Result<()>| {
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!e.is_empty(), "{what} was not refused");
        eprintln!("{what}: {e}");
        e
    };
    let e = refused(
        "a readback",
        wgrad::capture(&dev, || x.sum()?.item::<f32>()).map(drop),
    );
    assert!(e.contains("read"));
    let e = refused(
        "random numbers",
        wgrad::capture(&dev, || Tensor::rand_on([3], &dev)).map(drop),
    );
    assert!(e.contains("random"));
    let e = refused(
        "a nested capture",
        wgrad::capture(&dev, || wgrad::capture(&dev, || x.sum()).map(drop)).map(drop),
    );
    assert!(e.contains("nest"));
    // An optimizer's first step creates its state, which a replay could not repeat.
    let w = Tensor::ones_on([2], &dev)?.requires_grad_(true)?;
    let mut opt = Adam::new(vec![w.clone()], 0.1);
    let e = refused(
        "a first optimizer step",
        wgrad::capture(&dev, || {
            w.square()?.sum()?.backward()?;
            opt.step()
        })
        .map(drop),
    );
    assert!(e.contains("state"));
    // Nothing of that stays: ops run and read as usual.
    assert_eq!(x.sum()?.item::<f32>()?, 4.0);
    let (step, out) = wgrad::capture(&dev, || x.mul_scalar(2.0))?;
    let e = refused(
        "an input of another shape",
        step.replay_with(&[(&x, &Tensor::ones([3, 2])?)]),
    );
    assert!(e.contains("[3, 2]"));
    step.replay_with(&[(&x, &Tensor::full([2, 2], 5.0)?)])?;
    assert_eq!(out.to_vec::<f32>()?, vec![10.0; 4]);
    Ok(())
}

/// Numbers that change between steps reach the replays: `set_lr` (here to 0, which stops
/// the parameters) and Adam's step count (checked through its state).
#[test]
fn set_lr_and_the_step_count_reach_the_replays() -> Result<()> {
    let _serial = serial();
    let Some((dev, _)) = gpu_device() else {
        return Ok(());
    };
    let w = Tensor::new([1.0f32, -2.0, 3.0])?
        .to_device(&dev)?
        .requires_grad_(true)?;
    let mut opt = Adam::new(vec![w.clone()], 0.1);
    let step = |opt: &mut Adam| -> Result<()> {
        opt.zero_grad();
        w.square()?.sum()?.backward()?;
        opt.step()
    };
    step(&mut opt)?;
    let (captured, ()) = wgrad::capture(&dev, || step(&mut opt))?;
    for _ in 0..3 {
        captured.replay()?;
    }
    let count = |opt: &Adam| -> Result<i64> {
        let state = opt.state();
        let (_, t) = state
            .iter()
            .find(|(n, _)| n == "step")
            .expect("Adam counts steps");
        t.item::<i64>()
    };
    assert_eq!(count(&opt)?, 5);
    opt.set_lr(0.0);
    let frozen = w.to_vec::<f32>()?;
    captured.replay()?;
    assert_eq!(w.to_vec::<f32>()?, frozen);
    opt.set_lr(0.1);
    captured.replay()?;
    assert_ne!(w.to_vec::<f32>()?, frozen);
    assert_eq!(count(&opt)?, 7);
    Ok(())
}

/// An out-of-range label fed to a replay cannot stop the kernel; the next readback fails.
#[test]
fn a_replayed_out_of_range_index_fails_the_next_readback() -> Result<()> {
    let _serial = serial();
    let Some((dev, _)) = gpu_device() else {
        return Ok(());
    };
    let logits = Tensor::randn_on([4, 3], &dev)?;
    let labels = Tensor::new([0i64, 1, 2, 1])?.to_device(&dev)?;
    let (step, loss) = wgrad::capture(&dev, || nn::cross_entropy(&logits, &labels))?;
    step.replay()?;
    assert!(loss.item::<f32>()?.is_finite());
    step.replay_with(&[(&labels, &Tensor::new([0i64, 1, 7, 1])?)])?;
    let e = loss
        .item::<f32>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("out of range"), "{e}");
    // Reported once: good labels read normally again.
    step.replay_with(&[(&labels, &Tensor::new([0i64, 1, 2, 1])?)])?;
    assert!(loss.item::<f32>()?.is_finite());
    Ok(())
}

/// A capture ends however its closure does (after a panic inside it the device works and
/// captures again), and another thread's work during a capture is neither recorded nor
/// given the capture's buffers.
#[test]
fn a_capture_survives_a_panic_and_other_threads() -> Result<()> {
    let _serial = serial();
    let Some((dev, _)) = gpu_device() else {
        return Ok(());
    };
    let x = Tensor::ones_on([64], &dev)?;
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = wgrad::capture(&dev, || -> Result<()> {
            x.mul_scalar(3.0)?;
            panic!("inside a capture")
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(x.sum()?.item::<f32>()?, 64.0);

    // Another thread allocates while the capture's intermediates lie freed in the pool:
    // its tensors must not share a buffer with them, or every replay would overwrite them.
    let mut kept = Vec::new();
    let (step, out) = wgrad::capture(&dev, || {
        let mut y = x.clone();
        for _ in 0..50 {
            y = y.mul_scalar(1.0)?.add_scalar(1.0)?;
        }
        kept = std::thread::scope(|s| {
            s.spawn(|| {
                (0..8)
                    .map(|i| Tensor::full_on([64], i as f64, &dev))
                    .collect::<Result<Vec<_>>>()
            })
            .join()
            .expect("the other thread")
        })?;
        Ok(y)
    })?;
    for _ in 0..20 {
        step.replay()?;
    }
    for (i, t) in kept.iter().enumerate() {
        assert_eq!(
            t.to_vec::<f32>()?,
            vec![i as f32; 64],
            "the other thread's tensor {i}"
        );
    }
    assert_eq!(out.to_vec::<f32>()?, vec![51.0; 64]);
    Ok(())
}

/// On a GPU the optimizers' updates run as one fused kernel per parameter (`optim/fused.rs`)
/// and give what the ops give on the CPU; a gradient computed through an index kernel
/// (cross-entropy's labels) does not keep them from fusing.
#[test]
fn optimizer_updates_are_fused_and_match_the_ops() -> Result<()> {
    let _serial = serial();
    for line in optimizer_runs()? {
        // Read by `without_fusion_the_ops_run` from a child process.
        println!("{line}");
    }
    Ok(())
}

/// Every optimizer for four cross-entropy steps on the CPU and the GPU: checks the GPU's
/// dispatches and that both devices agree, and returns the CPU's parameters as
/// `cpu bits <optimizer>: <bits>` lines.
fn optimizer_runs() -> Result<Vec<String>> {
    let Some((dev, gpu)) = gpu_device() else {
        return Ok(Vec::new());
    };
    type MakeOpt = fn(Vec<Tensor>) -> Box<dyn Optimizer>;
    let optimizers: [(&str, MakeOpt, u64); 8] = [
        ("sgd", |p| Box::new(Sgd::new(p, 0.1)), 0),
        (
            "sgd momentum",
            |p| Box::new(Sgd::new(p, 0.1).momentum(0.9).dampening(0.1)),
            0,
        ),
        (
            "sgd nesterov",
            |p| Box::new(Sgd::new(p, 0.1).momentum(0.9).nesterov(true)),
            0,
        ),
        ("adam", |p| Box::new(Adam::new(p, 1e-2)), 2),
        (
            "adamw",
            |p| Box::new(Adam::adamw(p, 1e-2).weight_decay(0.1)),
            2,
        ),
        ("rmsprop", |p| Box::new(RmsProp::new(p, 1e-2)), 0),
        (
            "rmsprop momentum",
            |p| Box::new(RmsProp::new(p, 1e-2).momentum(0.5)),
            0,
        ),
        (
            "adagrad",
            |p| Box::new(Adagrad::new(p, 1e-1).lr_decay(0.01)),
            1,
        ),
    ];
    let x = wgrad::seeded(11, || Tensor::randn([16, 10]))?;
    let labels = wgrad::seeded(12, || Tensor::randint(0, 4, [16]))?;
    let mut lines = Vec::new();
    for (name, make, step_scalars) in optimizers {
        let mut runs = Vec::new();
        for d in [Device::Cpu, dev.clone()] {
            let model = mlp(&d, 3)?;
            let mut opt = make(model.parameters());
            let (x, labels) = (x.to_device(&d)?, labels.to_device(&d)?);
            let (mut fused_dispatches, mut cpu_buffers) = (0, 0);
            for step in 0..4 {
                opt.zero_grad();
                nn::cross_entropy(&model.forward(&x)?, &labels)?.backward()?;
                // The gradients computed (the weights' are lazy products), so that only
                // the step is counted.
                d.synchronize()?;
                let before = (
                    gpu.stats().dispatches,
                    Device::Cpu.memory_stats().allocations,
                );
                opt.step()?;
                if step > 0 {
                    fused_dispatches = gpu.stats().dispatches - before.0;
                    cpu_buffers = Device::Cpu.memory_stats().allocations - before.1;
                }
            }
            if d.is_cpu() {
                // Fused, the CPU makes only the step's scalars that changed since the step
                // before (Adam's bias corrections, Adagrad's decayed rate); the ops make one
                // or more buffers per parameter.
                if std::env::var_os("WGRAD_NO_FUSION").is_none_or(|v| v == "0") {
                    assert_eq!(cpu_buffers, step_scalars, "{name} CPU buffers per step");
                } else {
                    assert!(cpu_buffers >= 4, "{name} ran fused with WGRAD_NO_FUSION");
                }
            }
            if !d.is_cpu() {
                if std::env::var_os("WGRAD_NO_FUSION").is_none_or(|v| v == "0") {
                    // One kernel per parameter and the step's scalars, once the state exists.
                    assert_eq!(
                        fused_dispatches,
                        4 + step_scalars,
                        "{name} dispatches per step"
                    );
                } else {
                    // At least two ops per parameter.
                    assert!(
                        fused_dispatches >= 8,
                        "{name} ran fused with WGRAD_NO_FUSION"
                    );
                }
            }
            runs.push(flat_params(&model)?);
        }
        let expected: Vec<f64> = runs[0].iter().map(|&v| v as f64).collect();
        common::assert_close(&runs[1], &expected, 1e-5, 1e-6, name);
        let bits: Vec<String> = runs[0]
            .iter()
            .map(|v| format!("{:08x}", v.to_bits()))
            .collect();
        lines.push(format!("cpu bits {name}: {}", bits.join(" ")));
    }
    Ok(lines)
}

/// `WGRAD_NO_FUSION=1` runs the ops instead: the test above, in a child process with it set,
/// checks that the GPU then makes more dispatches and still agrees with the CPU, and its CPU
/// parameters, computed by the ops, equal the fused CPU pass's here to the bit.
#[test]
fn without_fusion_the_ops_run() -> Result<()> {
    if std::env::var_os("WGRAD_NO_FUSION").is_some() || gpu_device().is_none() {
        return Ok(());
    }
    let fused = {
        let _serial = serial();
        optimizer_runs()?
    };
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "optimizer_updates_are_fused_and_match_the_ops",
            "--nocapture",
        ])
        .env("WGRAD_NO_FUSION", "1")
        .output()
        .expect("running the test binary");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unfused: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("cpu bits "))
        .collect();
    assert_eq!(unfused.len(), fused.len());
    for (a, b) in fused.iter().zip(&unfused) {
        assert_eq!(a, b, "the fused CPU update differs from the ops");
    }
    Ok(())
}
