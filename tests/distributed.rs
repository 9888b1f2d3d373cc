//! Several devices: listing and opening adapters, keeping their tensors apart, and
//! data-parallel training that reaches one device's parameters (MLP, CNN, chargpt), with
//! DDP's buffers and errors that reach every replica instead of a hang.

mod common;

#[path = "../examples/chargpt/model.rs"]
mod model;

use std::time::Duration;
use wgrad::distributed::{Collective, DataParallel, DistributedDataParallel, ThreadGroup};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, Optimizer, Sgd};
use wgrad::{Device, Error, Result, Tensor};

/// Two devices opened on the first adapter (lavapipe in CI), or None where there is no GPU
/// (a failure with `WGRAD_REQUIRE_GPU=1`).
fn two_gpus() -> Option<(Device, Device)> {
    match (Device::gpu_at(0), Device::gpu_at(0)) {
        (Ok(a), Ok(b)) => Some((a, b)),
        (Err(e), _) | (_, Err(e)) => {
            if std::env::var("WGRAD_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("WGRAD_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("note: no GPU adapter ({e}); the two-GPU tests are skipped");
            None
        }
    }
}

#[test]
fn adapters_are_listed_hardware_first_and_open_as_separate_devices() -> Result<()> {
    let listed = Device::gpus();
    let rank = |t: wgpu::DeviceType| t == wgpu::DeviceType::Cpu;
    assert!(
        listed
            .windows(2)
            .all(|w| rank(w[0].device_type) <= rank(w[1].device_type)),
        "software adapters after hardware ones: {listed:?}"
    );
    let missing = Device::gpu_at(listed.len()).unwrap_err();
    assert!(matches!(missing, Error::NoAdapter(_)), "{missing}");
    let Some((a, b)) = two_gpus() else {
        return Ok(());
    };
    assert!(!listed.is_empty());
    assert_ne!(a, b, "two opens are two devices");
    assert_ne!(a.to_string(), b.to_string(), "messages tell them apart");
    let (Device::Gpu(ga), Device::Gpu(gb)) = (&a, &b) else {
        panic!("gpu_at gave a CPU device");
    };
    assert_eq!(ga.adapter_info().name, listed[0].name);
    assert_ne!(ga.ordinal(), gb.ordinal());

    // Tensors of the two never mix: the error names both devices, eagerly and through a
    // fused (pending) value.
    let x = Tensor::new_on([1.0f32, 2.0, 3.0], &a)?;
    let y = Tensor::new_on([1.0f32, 2.0, 3.0], &b)?;
    for e in [
        (&x + &y).check().unwrap_err(),
        (&(&x * 2.0).exp()? + &(&y * 2.0)).check().unwrap_err(),
        x.matmul(&y).unwrap_err(),
    ] {
        let msg = e.to_string();
        assert!(matches!(e.root(), Error::DeviceMismatch { .. }), "{e}");
        assert!(
            msg.contains(&a.to_string()) && msg.contains(&b.to_string()),
            "{msg}"
        );
    }

    // Moving between the two works both ways, with gradients.
    let w = Tensor::new_on([0.5f32, -1.0, 2.0], &a)?.requires_grad_(true)?;
    let on_b = (&w * 3.0).to_device(&b)?;
    assert_eq!(on_b.device(), &b);
    let loss = (&on_b * &y).sum()?;
    loss.backward()?;
    let g = w.grad().expect("a gradient across devices");
    assert_eq!(g.device(), &a);
    assert_eq!(g.to_vec::<f32>()?, vec![3.0, 6.0, 9.0]);
    assert_eq!(on_b.to_device(&a)?.to_vec::<f32>()?, vec![1.5, -3.0, 6.0]);

    // copy_ takes its source from any device, as PyTorch's does (broadcast, converted).
    let src = Tensor::new_on([1i64, 2, 3], &b)?;
    let dst = Tensor::zeros_on([2, 3], &a)?;
    dst.copy_(&src)?;
    assert_eq!(dst.to_vec::<f32>()?, vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    dst.copy_(&Tensor::new([7.0f32, 8.0, 9.0])?)?;
    let back = Tensor::zeros([3])?;
    back.copy_(&dst.narrow(0, 1, 1)?.reshape([3])?)?;
    assert_eq!(back.to_vec::<f32>()?, vec![7.0, 8.0, 9.0]);
    Ok(())
}

/// Train `steps` steps on one device with the whole batch and with `DataParallel` over
/// `devices`, from the same initial parameters; the largest parameter difference.
fn one_vs_many<M: Module, O: Optimizer + Send>(
    devices: &[Device],
    steps: usize,
    build: impl Fn(&Device) -> Result<M>,
    opt: impl Fn(Vec<Tensor>) -> O,
    batch: &[Tensor],
    loss: impl Fn(&M, &[Tensor]) -> Result<Tensor> + Sync,
) -> Result<f64> {
    let one_dev = &devices[0];
    let single = wgrad::seeded(7, || build(one_dev))?;
    let mut single_opt = opt(single.parameters());
    let on_one: Vec<Tensor> = batch
        .iter()
        .map(|t| t.to_device(one_dev))
        .collect::<Result<_>>()?;
    let mut dp = wgrad::seeded(7, || DataParallel::new(devices, &build, &opt))?;
    let refs: Vec<&Tensor> = batch.iter().collect();
    for _ in 0..steps {
        single_opt.zero_grad();
        let l = loss(&single, &on_one)?;
        l.backward()?;
        single_opt.step()?;
        let report = dp.step(&refs, &loss)?;
        let expected = l.item::<f64>()?;
        assert!(
            (report.loss - expected).abs() <= 1e-4 * (1.0 + expected.abs()),
            "global loss {} vs one device's {expected}",
            report.loss
        );
    }
    let wide = |t: &Tensor| -> Result<Vec<f64>> { t.to_dtype(wgrad::DType::F64)?.to_vec::<f64>() };
    let mut worst = 0.0f64;
    for replica in dp.replicas() {
        for (p, q) in replica.parameters().iter().zip(single.parameters()) {
            for (a, b) in wide(p)?.iter().zip(wide(&q)?) {
                worst = worst.max((a - b).abs() / (1.0 + b.abs()));
            }
        }
    }
    Ok(worst)
}

/// Every parameter's values, in order.
fn values(m: &impl Module) -> Vec<Vec<f32>> {
    m.parameters().iter().map(common::floats).collect()
}

fn mlp(dev: &Device) -> Result<nn::Sequential> {
    Ok(nn::Sequential::new()
        .add(nn::Linear::new(20, 32, dev)?)
        .add(nn::ReLU)
        .add(nn::Linear::new(32, 5, dev)?))
}

fn classify<M: Forward>(m: &M, batch: &[Tensor]) -> Result<Tensor> {
    nn::cross_entropy(&m.forward(&batch[0])?, &batch[1])
}

/// The device sets the MLP is trained on: two CPU replicas with an uneven batch always;
/// with a GPU, two lavapipe devices and a CPU + GPU pair.
fn device_sets() -> Vec<Vec<Device>> {
    let mut sets = vec![vec![Device::Cpu, Device::Cpu, Device::Cpu]];
    if let Some((a, b)) = two_gpus() {
        sets.push(vec![a.clone(), b]);
        sets.push(vec![Device::Cpu, a]);
    }
    sets
}

/// Train a classifier `steps` steps on every set of `device_sets`; it must reach one
/// device's parameters within 1e-5.
fn classifier_matches_one_device<M: Module + Forward, O: Optimizer + Send>(
    build: impl Fn(&Device) -> Result<M>,
    opt: impl Fn(Vec<Tensor>) -> O,
    (x, y): (Tensor, Tensor),
    steps: usize,
) -> Result<()> {
    for devices in device_sets() {
        let batch = [x.clone(), y.clone()];
        let worst = one_vs_many(&devices, steps, &build, &opt, &batch, classify)?;
        assert!(worst < 1e-5, "{devices:?}: parameters differ by {worst}");
    }
    Ok(())
}

#[test]
fn the_mlp_trains_to_one_devices_parameters() -> Result<()> {
    let x = wgrad::seeded(1, || Tensor::randn([25, 20]))?;
    let y = wgrad::seeded(2, || Tensor::randint(0, 5, [25]))?;
    classifier_matches_one_device(mlp, |p| Sgd::new(p, 0.2).momentum(0.9), (x, y), 5)
}

#[test]
fn a_cnn_trains_to_one_devices_parameters() -> Result<()> {
    let cnn = |dev: &Device| -> Result<nn::Sequential> {
        Ok(nn::Sequential::new()
            .add(nn::Conv2d::new(1, 4, 3, dev)?)
            .add(nn::Sigmoid)
            .add(nn::AvgPool2d::new(2))
            .add(nn::Flatten)
            .add(nn::Linear::new(4 * 3 * 3, 10, dev)?))
    };
    let x = wgrad::seeded(3, || Tensor::randn([12, 1, 8, 8]))?;
    let y = wgrad::seeded(4, || Tensor::randint(0, 10, [12]))?;
    classifier_matches_one_device(cnn, |p| Sgd::new(p, 0.5), (x, y), 4)
}

#[test]
fn chargpt_trains_to_one_devices_parameters() -> Result<()> {
    let vocab = 11;
    let text = wgrad::seeded(5, || Tensor::randint(0, vocab as i64, [400]))?;
    let (x, y) = wgrad::seeded(6, || model::windows(&text, 6, 8))?;
    let mut sets = vec![vec![Device::Cpu, Device::Cpu]];
    if let Some((a, b)) = two_gpus() {
        sets.push(vec![a, b]);
    }
    for devices in sets {
        let train = |opt: &dyn Fn(Vec<Tensor>) -> Box<dyn Optimizer + Send>| {
            one_vs_many(
                &devices,
                3,
                |dev| model::Gpt::new(vocab, 8, 16, 1, 2, dev),
                opt,
                &[x.clone(), y.clone()],
                |m, b| model::loss_of(m, &b[0], &b[1]),
            )
        };
        // SGD moves by the gradient itself, so a wrong average shows.
        let worst = train(&|p| Box::new(Sgd::new(p, 0.5)))?;
        assert!(
            worst < 1e-5,
            "{devices:?}, SGD: parameters differ by {worst}"
        );
        // Adam (chargpt's optimizer) divides by the gradients' own size: blind to their
        // scale, and rounding differences of tiny gradients grow to a few 1e-4.
        let worst = train(&|p| Box::new(Adam::adamw(p, 1e-2).weight_decay(0.1)))?;
        assert!(
            worst < 1e-3,
            "{devices:?}, AdamW: parameters differ by {worst}"
        );
    }
    Ok(())
}

#[test]
fn batch_norm_buffers_are_the_first_replicas_as_in_ddp() -> Result<()> {
    let net = |dev: &Device| -> Result<nn::Sequential> {
        Ok(nn::Sequential::new()
            .add(nn::Linear::new(6, 4, dev)?)
            .add(nn::BatchNorm1d::new(4, dev)?))
    };
    let x = wgrad::seeded(8, || Tensor::randn([10, 6]))?;
    let mut devices = vec![Device::Cpu, Device::Cpu];
    if let Some((a, _)) = two_gpus() {
        devices[1] = a;
    }
    let mut dp = wgrad::seeded(9, || DataParallel::new(&devices, net, |p| Sgd::new(p, 0.0)))?;
    // With lr 0 the parameters stay the initial ones, so rank 0's statistics are those of
    // a copy of the model that sees only the first shard (rows 0..5).
    let alone = wgrad::seeded(9, || net(&Device::Cpu))?;
    for _ in 0..3 {
        dp.step(&[&x], |m, b| m.forward(&b[0])?.square()?.mean())?;
        alone.forward(&x.narrow(0, 0, 5)?)?;
    }
    let expected = alone.named_buffers();
    for replica in dp.replicas() {
        for ((name, got), (_, want)) in replica.named_buffers().iter().zip(&expected) {
            let got = got.to_device(&Device::Cpu)?.to_dtype(wgrad::DType::F64)?;
            let want = want.to_dtype(wgrad::DType::F64)?;
            let (got, want) = (got.to_vec::<f64>()?, want.to_vec::<f64>()?);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{name}: {got:?} vs {want:?}");
            }
        }
    }
    Ok(())
}

#[test]
fn a_failing_replica_is_an_error_everywhere_and_changes_nothing() -> Result<()> {
    let mut devices = vec![Device::Cpu, Device::Cpu];
    if let Some((a, b)) = two_gpus() {
        devices = vec![a, b];
    }
    let mut dp = wgrad::seeded(10, || {
        DataParallel::new(&devices, mlp, |p| Sgd::new(p, 0.1))
    })?;
    let before = values(dp.module());
    let x = Tensor::randn([8, 20])?;
    // A label out of range in the second shard only.
    let bad = Tensor::new([0i64, 1, 2, 3, 4, 0, 9, 1])?;
    let e = dp.step(&[&x, &bad], classify).unwrap_err();
    assert!(matches!(e.root(), Error::IndexOutOfRange { .. }), "{e}");
    // A panic in one replica's loss.
    let good = Tensor::new([0i64, 1, 2, 3, 4, 0, 1, 1])?;
    let e = dp
        .step(&[&x, &good], |m, b| {
            if b[0].device() == &devices[1] {
                panic!("replica 1 fails");
            }
            classify(m, b)
        })
        .unwrap_err();
    assert!(e.to_string().contains("replica 1 fails"), "{e}");
    // A batch whose tensors do not line up.
    assert!(dp.step(&[&x, &good.narrow(0, 0, 7)?], classify).is_err());
    for replica in dp.replicas() {
        let now = values(replica);
        assert_eq!(now, before, "a failed step changed a replica");
    }
    // The group is still usable.
    dp.step(&[&x, &good], classify)?;
    let after = values(dp.module());
    assert_ne!(after, before);
    Ok(())
}

#[test]
fn ranks_with_different_models_fail_instead_of_hanging() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ranks = ThreadGroup::ranks(2).unwrap();
        let outcomes: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .into_iter()
                .map(|rank| {
                    s.spawn(move || {
                        let width = 3 + rank.rank();
                        let m = nn::Linear::new(width, 2, &Device::Cpu).unwrap();
                        let o = Sgd::new(m.parameters(), 0.1);
                        DistributedDataParallel::new(rank, m, o).is_err()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        tx.send(outcomes).unwrap();
    });
    let outcomes = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the ranks hung");
    assert_eq!(outcomes, vec![true, true]);
}

#[test]
fn a_lost_device_fails_every_replica_instead_of_hanging() -> Result<()> {
    let Some((first, _)) = two_gpus() else {
        return Ok(());
    };
    // The second replica's device is one this test can destroy, as a driver reset would.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("an adapter (two_gpus found one)");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("request_device");
    let second = Device::from_wgpu(device.clone(), queue)?;
    let devices = [first, second];
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = (|| -> Result<(bool, Error)> {
            let mut dp = DataParallel::new(&devices, mlp, |p| Sgd::new(p, 0.1))?;
            let x = Tensor::randn([8, 20])?;
            let y = Tensor::randint(0, 5, [8])?;
            dp.step(&[&x, &y], classify)?;
            let before = values(dp.module());
            device.destroy();
            let e = dp.step(&[&x, &y], classify).unwrap_err();
            let after = values(dp.module());
            Ok((before == after, e))
        })();
        tx.send(outcome.map_err(|e| e.to_string())).unwrap();
    });
    let (unchanged, e) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the replicas hung")
        .expect("the steps before the loss");
    assert!(matches!(e.root(), Error::DeviceLost(_)), "{e}");
    assert!(unchanged, "the surviving replica stepped");
    Ok(())
}

/// A one-rank group that notes, at each exchange, how many parameters had a gradient.
struct Watch {
    rank: wgrad::distributed::ThreadRank,
    params: Vec<Tensor>,
    seen: std::sync::Mutex<Vec<usize>>,
}

impl Collective for Watch {
    fn rank(&self) -> usize {
        self.rank.rank()
    }
    fn world_size(&self) -> usize {
        self.rank.world_size()
    }
    fn all_reduce_sum(&self, data: &mut [f64]) -> Result<()> {
        let with_grad = self.params.iter().filter(|p| p.grad().is_some()).count();
        self.seen.lock().unwrap().push(with_grad);
        self.rank.all_reduce_sum(data)
    }
}

#[test]
fn buckets_are_exchanged_while_backward_runs() -> Result<()> {
    // The last layer's bias is a bucket of its own (the first bucket is at most 1 MiB and
    // the last weight does not fit), complete at the start of backward; the first layer's
    // weight gradient, a 2048 x 2048 x 2048 product, comes tenths of a second later.
    let net = wgrad::seeded(11, || -> Result<nn::Sequential> {
        Ok(nn::Sequential::new()
            .add(nn::Linear::new(2048, 2048, &Device::Cpu)?)
            .add(nn::ReLU)
            .add(nn::Linear::new(2048, 512, &Device::Cpu)?))
    })?;
    let params = net.parameters();
    let rank = ThreadGroup::ranks(1)?.remove(0);
    let watch = Watch {
        rank,
        params: params.clone(),
        seen: Default::default(),
    };
    let opt = Sgd::new(params.clone(), 0.1);
    let mut ddp = DistributedDataParallel::new(watch, net, opt)?;
    ddp.group().seen.lock().unwrap().clear();
    let x = Tensor::randn([2048, 2048])?;
    let report = ddp.step(2048, |m| m.forward(&x)?.square()?.mean())?;
    let seen = ddp.group().seen.lock().unwrap().clone();
    assert_eq!(report.buckets, 2);
    assert_eq!(report.overlapped, 2);
    // Two buckets, then the closing exchange with every gradient there.
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen[0] < params.len(),
        "the first bucket waited for all of backward: {seen:?}"
    );
    assert_eq!(seen[2], params.len());
    Ok(())
}

/// A model with a layer its forward pass never uses, and a frozen one.
#[derive(Module)]
struct Partly {
    frozen: nn::Linear,
    used: nn::Linear,
    unused: nn::Linear,
}

impl Forward for Partly {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.used.forward(&self.frozen.forward(x)?.relu()?)
    }
}

#[test]
fn frozen_unused_and_missing_shards_train_as_on_one_device() -> Result<()> {
    let partly = |dev: &Device| -> Result<Partly> {
        let m = Partly {
            frozen: nn::Linear::new(20, 16, dev)?,
            used: nn::Linear::new(16, 5, dev)?,
            unused: nn::Linear::new(3, 3, dev)?,
        };
        for p in m.frozen.parameters() {
            p.requires_grad_(false)?;
        }
        Ok(m)
    };
    // Weight decay and momentum would move a parameter that got a zero gradient; one
    // that got none stays, on one device as on several.
    let sgd = |p| Sgd::new(p, 0.1).momentum(0.9).weight_decay(0.01);
    let x = wgrad::seeded(12, || Tensor::randn([9, 20]))?;
    let y = wgrad::seeded(13, || Tensor::randint(0, 5, [9]))?;
    for devices in device_sets() {
        let worst = one_vs_many(&devices, 3, partly, sgd, &[x.clone(), y.clone()], classify)?;
        assert!(worst < 1e-5, "{devices:?}: parameters differ by {worst}");
        // One row for three replicas: two take no shard.
        let one = [x.narrow(0, 0, 1)?, y.narrow(0, 0, 1)?];
        let worst = one_vs_many(&devices, 2, partly, sgd, &one, classify)?;
        assert!(
            worst < 1e-5,
            "{devices:?}, one row: parameters differ by {worst}"
        );
    }
    let initial = wgrad::seeded(7, || partly(&Device::Cpu))?;
    let mut dp = wgrad::seeded(7, || {
        DataParallel::new(&[Device::Cpu, Device::Cpu], partly, sgd)
    })?;
    dp.step(&[&x, &y], classify)?;
    for (m, name) in [
        (&dp.module().frozen, "frozen"),
        (&dp.module().unused, "unused"),
    ] {
        let was = if name == "frozen" {
            &initial.frozen
        } else {
            &initial.unused
        };
        assert_eq!(values(m), values(was), "the {name} layer moved");
        assert!(m.weight.grad().is_none(), "the {name} layer got a gradient");
    }
    let empty = Tensor::zeros([0, 20])?;
    let e = dp.step(
        &[&empty, &Tensor::zeros([0])?.to_dtype(wgrad::DType::I64)?],
        classify,
    );
    assert!(e.is_err(), "an empty batch is an error");
    Ok(())
}

#[test]
fn f64_models_exchange_gradients_at_f64_precision() -> Result<()> {
    let mlp64 = |dev: &Device| -> Result<nn::Sequential> {
        let mut m = mlp(dev)?;
        m.to_dtype(wgrad::DType::F64)?;
        Ok(m)
    };
    let x = wgrad::seeded(14, || Tensor::randn([10, 20]))?.to_dtype(wgrad::DType::F64)?;
    let y = wgrad::seeded(15, || Tensor::randint(0, 5, [10]))?;
    let devices = [Device::Cpu, Device::Cpu];
    let worst = one_vs_many(&devices, 3, mlp64, |p| Sgd::new(p, 0.2), &[x, y], classify)?;
    // Through f32 the gradients would be rounded to about 1e-8.
    assert!(worst < 1e-13, "parameters differ by {worst}");
    Ok(())
}
