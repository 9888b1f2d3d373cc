//! Training end to end: the MLP on the digits reaches the target accuracy on the CPU, a
//! short run on the GPU lowers the loss as on the CPU, and checkpoints round-trip.

mod common;

use wgrad::data::{load_digits, DataLoader, Dataset, TensorDataset};
use wgrad::nn::{self, Module, Reduction};
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
    let mut g = Generator::new(1);
    nn::Sequential::new()
        .add(nn::Linear::new(64, 128, true, &mut g, device).unwrap())
        .add(nn::ReLU)
        .add(nn::Linear::new(128, 10, true, &mut g, device).unwrap())
}

fn accuracy(model: &dyn Module, data: &TensorDataset, device: &Device) -> f64 {
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
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    data: &TensorDataset,
    epochs: u64,
    device: &Device,
) -> Vec<f64> {
    let loader = DataLoader::new(data, 64).unwrap().shuffle(3).device(device);
    let mut losses = Vec::new();
    for epoch in 0..epochs {
        let mut total = Tensor::zeros_on([0usize; 0], wgrad::DType::F32, device).unwrap();
        for batch in loader.epoch(epoch) {
            let (x, y) = batch.unwrap();
            opt.zero_grad();
            let loss =
                nn::cross_entropy(&model.forward(&x).unwrap(), &y, 0.0, Reduction::Mean).unwrap();
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
    let mut g = Generator::new(seed);
    Ok(nn::Sequential::new()
        .add(nn::Conv2d::new(1, 4, 3, 1, 1, &mut g, device)?)
        .add(nn::BatchNorm::new_2d(4, device)?)
        .add(nn::ReLU)
        .add(nn::MaxPool2d {
            kernel: 2,
            stride: 2,
        })
        .add(nn::Flatten)
        .add(nn::Dropout::new(0.1)?)
        .add(nn::Linear::new(64, 10, true, &mut g, device)?))
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
        0.0,
        Reduction::Mean,
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
    let mut g = Generator::new(4);
    let wrong =
        nn::Sequential::new().add(nn::Linear::new(64, 10, true, &mut g, &Device::Cpu).unwrap());
    wgrad::io::save_module(&wrong, &bad).unwrap();
    let lin =
        nn::Sequential::new().add(nn::Linear::new(64, 11, true, &mut g, &Device::Cpu).unwrap());
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
    let bn = nn::BatchNorm::new_1d(6, &dev).unwrap();
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
    let emb = nn::Embedding::new(10, 3, &mut g, &dev).unwrap();
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
        1,
        0
    )
    .is_err());
}
