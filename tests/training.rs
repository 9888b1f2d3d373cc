//! Training end to end: the MLP on the digits reaches the target accuracy on the CPU, a
//! short run on the GPU lowers the loss as on the CPU, and checkpoints round-trip.

mod common;

use wgrad::data::{load_digits, DataLoader, Dataset, TensorDataset};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, Optimizer, Sgd};
use wgrad::{Device, Generator, Result, Tensor};

/// The fixed 80/20 split of the digits used by the example.
fn split() -> (TensorDataset, TensorDataset) {
    let (x, y) = load_digits(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv.gz")).unwrap();
    let perm = Tensor::randperm_with(x.shape()[0], &mut Generator::new(0)).unwrap();
    let (x, y) = (
        x.index_select(0, &perm).unwrap(),
        y.index_select(0, &perm).unwrap(),
    );
    let all = TensorDataset::new(x, y).unwrap();
    let cut = all.len() * 4 / 5;
    (
        all.range(0, cut).unwrap(),
        all.range(cut, all.len()).unwrap(),
    )
}

fn mlp(device: &Device) -> nn::Sequential {
    wgrad::seeded(1, || {
        nn::Sequential::new()
            .add(nn::Linear::new(64, 128, device).unwrap())
            .add(nn::ReLU)
            .add(nn::Linear::new(128, 10, device).unwrap())
    })
}

fn accuracy(model: &dyn nn::Layer, data: &TensorDataset, device: &Device) -> f64 {
    let _g = wgrad::no_grad();
    let logits = model
        .forward(&data.inputs().to_device(device).unwrap())
        .unwrap();
    let pred = logits.argmax_dim(1, false).unwrap();
    let correct = pred
        .eq(data.targets().to_device(device).unwrap())
        .unwrap()
        .sum()
        .unwrap();
    correct.item::<f64>().unwrap() / data.len() as f64
}

fn train_epochs(
    model: &dyn nn::Layer,
    opt: &mut dyn Optimizer,
    data: &TensorDataset,
    epochs: u64,
    device: &Device,
) -> Vec<f64> {
    let loader = DataLoader::new(data, 64).unwrap().shuffle(3).device(device);
    let mut losses = Vec::new();
    for epoch in 0..epochs {
        let mut total = Tensor::zeros_on([0usize; 0], (wgrad::DType::F32, device)).unwrap();
        for batch in loader.epoch(epoch) {
            let (x, y) = batch.unwrap();
            opt.zero_grad();
            let loss = nn::cross_entropy(&model.forward(&x).unwrap(), &y).unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
            total = total.add(loss.detach()).unwrap();
        }
        losses.push(total.item::<f64>().unwrap() / loader.num_batches() as f64);
    }
    losses
}

#[test]
fn mlp_reaches_97_percent_on_held_out_digits() {
    let (train, test) = split();
    let model = mlp(&Device::Cpu);
    let mut opt = Adam::new(model.parameters(), 3e-3);
    let losses = train_epochs(&model, &mut opt, &train, 25, &Device::Cpu);
    let acc = accuracy(&model, &test, &Device::Cpu);
    eprintln!("losses {losses:?}, held-out accuracy {acc:.4}");
    assert!(acc >= 0.97, "held-out accuracy {acc}");
    assert!(losses.last().unwrap() < &losses[0]);
}

#[test]
fn short_gpu_run_lowers_the_loss_like_the_cpu() {
    let (train, _) = split();
    let small = train.range(0, 512).unwrap();
    let run = |device: &Device| {
        let model = mlp(device);
        let mut opt = Sgd::new(model.parameters(), 0.2).momentum(0.9);
        train_epochs(&model, &mut opt, &small, 3, device)
    };
    let cpu = run(&Device::Cpu);
    for dev in common::devices().into_iter().filter(|d| !d.is_cpu()) {
        let gpu = run(&dev);
        eprintln!("cpu {cpu:?} gpu {gpu:?}");
        assert!(gpu[2] < gpu[0] * 0.7, "GPU loss did not fall: {gpu:?}");
        for (c, g) in cpu.iter().zip(&gpu) {
            assert!(
                (c - g).abs() < 1e-2 * c.abs().max(1.0),
                "CPU {cpu:?} vs GPU {gpu:?}"
            );
        }
    }
}

fn cnn(device: &Device, seed: u64) -> Result<nn::Sequential> {
    wgrad::seeded(seed, || {
        Ok(nn::Sequential::new()
            .add(nn::Conv2d::new(1, 4, 3, device)?.padding(1))
            .add(nn::BatchNorm2d::new(4, device)?)
            .add(nn::ReLU)
            .add(nn::MaxPool2d::new(2))
            .add(nn::Flatten)
            .add(nn::Dropout::new(0.1)?)
            .add(nn::Linear::new(64, 10, device)?))
    })
}

#[test]
fn checkpoints_round_trip_and_reject_bad_files() {
    let dir = std::env::temp_dir().join(format!("wgrad-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let model = cnn(&Device::Cpu, 2).unwrap();
    let x = Tensor::rand_with([3, 1, 8, 8], &mut Generator::new(5)).unwrap();
    // A training step moves the batch-norm statistics, so buffers are saved too.
    nn::cross_entropy(
        &model.forward(&x).unwrap(),
        &Tensor::new([1, 2, 3]).unwrap(),
    )
    .unwrap()
    .backward()
    .unwrap();
    model.train(false);
    let before = model.forward(&x).unwrap().to_vec::<f32>().unwrap();
    wgrad::io::save_module(&model, &path).unwrap();
    let names: Vec<String> = wgrad::io::load(&path)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"0.weight".to_string())
            && names.contains(&"1.running_mean".to_string())
            && names.contains(&"6.bias".to_string()),
        "{names:?}"
    );

    let restored = cnn(&Device::Cpu, 99).unwrap();
    restored.train(false);
    assert_ne!(
        restored.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        before
    );
    wgrad::io::load_module(&restored, &path).unwrap();
    assert_eq!(
        restored.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        before,
        "identical outputs after a round trip"
    );

    // A truncated file is rejected.
    let bytes = std::fs::read(&path).unwrap();
    let bad = dir.join("truncated.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        wgrad::io::load_module(&restored, &bad).unwrap_err(),
        wgrad::Error::Io { .. }
    ));
    std::fs::write(&bad, b"not a checkpoint at all").unwrap();
    assert!(wgrad::io::load(&bad).is_err());

    // A file whose shapes do not fit leaves the module unchanged.
    let wrong = nn::Sequential::new().add(nn::Linear::new(64, 10, &Device::Cpu).unwrap());
    wgrad::io::save_module(&wrong, &bad).unwrap();
    let lin = nn::Sequential::new().add(nn::Linear::new(64, 11, &Device::Cpu).unwrap());
    let w_before = lin.parameters()[0].to_vec::<f32>().unwrap();
    assert!(wgrad::io::load_module(&lin, &bad).is_err());
    assert_eq!(lin.parameters()[0].to_vec::<f32>().unwrap(), w_before);

    // Optimizer state round-trips too.
    let p = Tensor::ones([3]).unwrap().requires_grad_(true).unwrap();
    let mut adam = Adam::new(vec![p.clone()], 0.1);
    p.square().unwrap().sum().unwrap().backward().unwrap();
    adam.step().unwrap();
    let opt_path = dir.join("adam.safetensors");
    wgrad::io::save(&opt_path, &adam.state()).unwrap();
    let mut fresh = Adam::new(vec![p.clone()], 0.1);
    fresh
        .load_state(&wgrad::io::load(&opt_path).unwrap())
        .unwrap();
    assert_eq!(fresh.state().len(), adam.state().len());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn layers_forward_shapes_and_modes() {
    let dev = Device::Cpu;
    let mut g = Generator::new(8);
    let x = Tensor::randn_with([4, 6], &mut g).unwrap();
    let ln = nn::LayerNorm::new(&[6], &dev).unwrap();
    let y = ln.forward(&x).unwrap();
    let mean = y
        .mean_dims([1], false)
        .unwrap()
        .abs()
        .unwrap()
        .max()
        .unwrap()
        .item::<f64>()
        .unwrap();
    assert!(mean < 1e-5);
    let bn = nn::BatchNorm1d::new(6, &dev).unwrap();
    let z = bn.forward(&x).unwrap();
    assert!(
        z.mean_dims([0], false)
            .unwrap()
            .abs()
            .unwrap()
            .max()
            .unwrap()
            .item::<f64>()
            .unwrap()
            < 1e-5
    );
    assert!(
        bn.running_mean
            .abs()
            .unwrap()
            .sum()
            .unwrap()
            .item::<f64>()
            .unwrap()
            > 0.0,
        "running mean updated"
    );
    let emb = nn::Embedding::new(10, 3, &dev).unwrap();
    assert_eq!(
        emb.forward(&Tensor::new([[1, 2], [3, 9]]).unwrap())
            .unwrap()
            .shape(),
        &[2, 2, 3]
    );
    let drop = nn::Dropout::new(0.5).unwrap();
    let ones = Tensor::ones([1000]).unwrap();
    let kept = drop
        .forward(&ones)
        .unwrap()
        .gt_scalar(0.0)
        .unwrap()
        .sum()
        .unwrap()
        .item::<i64>()
        .unwrap();
    assert!((400..600).contains(&kept), "{kept}");
    drop.train(false);
    assert_eq!(
        drop.forward(&ones)
            .unwrap()
            .sum()
            .unwrap()
            .item::<f64>()
            .unwrap(),
        1000.0
    );
    let gelu = nn::GELU
        .forward(&Tensor::new([-1.0, 0.0, 1.0]).unwrap())
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    common::assert_close(&gelu, &[-0.15865529, 0.0, 0.8413447], 1e-5, 1e-6, "gelu");
    let sm = nn::Softmax(1)
        .forward(&x)
        .unwrap()
        .sum_dims([1], false)
        .unwrap();
    common::assert_close(
        &sm.to_vec::<f32>().unwrap(),
        &[1.0; 4],
        1e-5,
        1e-6,
        "softmax rows",
    );
    assert!(nn::Dropout::new(1.0).is_err());
    assert!(nn::functional::conv2d(
        &Tensor::zeros([1, 2, 5, 5]).unwrap(),
        &Tensor::zeros([3, 1, 3, 3]).unwrap(),
        None,
        Default::default()
    )
    .is_err());
}

/// The README's first run, shortened: the bundled MNIST digits load, the example's CNN
/// trains on them and reads held-out digits well after two epochs (the full 15 epochs of
/// `examples/mnist.rs` reach 96%; that run takes a minute in release mode).
#[test]
fn mnist_cnn_learns_the_bundled_digits() -> Result<()> {
    let dev = Device::Cpu;
    let (x, y) =
        wgrad::data::load_mnist(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist_5k.csv.gz"))?;
    assert_eq!((x.shape(), y.shape()), (&[5000, 784][..], &[5000][..]));
    let counts = (0..10)
        .map(|c| {
            y.eq_scalar(c)
                .unwrap()
                .sum()
                .unwrap()
                .item::<i64>()
                .unwrap()
        })
        .collect::<Vec<_>>();
    assert_eq!(counts, vec![500; 10], "500 digits per class");
    let model = wgrad::seeded(0, || -> Result<nn::Sequential> {
        Ok(nn::Sequential::new()
            .add(nn::Conv2d::new(1, 16, 3, &dev)?)
            .add(nn::ReLU)
            .add(nn::MaxPool2d::new(2))
            .add(nn::Conv2d::new(16, 32, 3, &dev)?)
            .add(nn::ReLU)
            .add(nn::MaxPool2d::new(2))
            .add(nn::Flatten)
            .add(nn::Linear::new(32 * 5 * 5, 10, &dev)?))
    })?;
    let order = Tensor::randperm_with(5000, &mut Generator::new(0))?;
    let x = x.index_select(0, &order)?.reshape([-1, 1, 28, 28])?;
    let all = TensorDataset::new(x, y.index_select(0, &order)?)?;
    let (train, test) = (all.range(0, 4000)?, all.range(4000, 5000)?);
    let mut opt = wgrad::optim::Adam::new(model.parameters(), 1e-3);
    let loader = DataLoader::new(&train, 64)?.shuffle(0);
    for epoch in 0..2 {
        for batch in loader.epoch(epoch) {
            let (xb, yb) = batch?;
            opt.zero_grad();
            nn::cross_entropy(&model.forward(&xb)?, &yb)?.backward()?;
            opt.step()?;
        }
    }
    let _g = wgrad::no_grad();
    model.eval();
    let pred = model.forward(test.inputs())?.argmax_dim(1, false)?;
    let acc = pred.eq(test.targets())?.sum()?.item::<f64>()? / 1000.0;
    // Chance is 10%; this network, split and seed reach 90.0% here.
    assert!(acc > 0.85, "held-out accuracy after two epochs: {acc}");
    Ok(())
}
