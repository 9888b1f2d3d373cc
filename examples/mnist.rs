//! The first thing to run: a small CNN learns to read handwritten digits.
//!
//! 5,000 real MNIST digits ship with wgrad (data/mnist_5k.csv.gz); 4,000 train the network
//! and 1,000 it never sees measure it. A progress bar per epoch, the held-out accuracy
//! (PyTorch reaches 96.2-96.8% with this network and these settings), a checkpoint to
//! resume from, the training curves, and a picture of held-out digits with the network's
//! answers, mistakes in red.
//!
//! With `--precision bf16` (or `f16`) the forward passes run in mixed precision (autocast:
//! convolutions and the linear layer in the 16-bit type, the loss in f32) with f32 weights;
//! f16 adds dynamic loss scaling.
//!
//! cargo run --release --example mnist -- [--epochs 15] [--device auto|cpu|gpu] [--out target/mnist] [--precision f32|bf16|f16]

#[path = "support/mod.rs"]
mod support;

use wgrad::data::{load_mnist, DataLoader, Dataset, TensorDataset};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, GradScaler, Optimizer};
use wgrad::{DType, Device, Result, Tensor};

/// Two 3x3 convolutions with ReLU and 2x2 max-pooling, then a linear layer.
fn cnn(dev: &Device) -> Result<nn::Sequential> {
    Ok(nn::Sequential::new()
        .add(nn::Conv2d::new(1, 16, 3, dev)?)
        .add(nn::ReLU)
        .add(nn::MaxPool2d::new(2))
        .add(nn::Conv2d::new(16, 32, 3, dev)?)
        .add(nn::ReLU)
        .add(nn::MaxPool2d::new(2))
        .add(nn::Flatten)
        .add(nn::Linear::new(32 * 5 * 5, 10, dev)?))
}

/// Predicted labels of `x`, in evaluation mode and without a graph.
fn predict(model: &nn::Sequential, x: &Tensor, precision: Option<DType>) -> Result<Tensor> {
    let _no_grad = wgrad::no_grad();
    let _amp = support::autocast(precision)?;
    model.eval();
    let pred = model.forward(x)?.argmax_dim(1, false);
    model.train(true);
    pred
}

fn main() -> Result<()> {
    let opts = support::Options::parse(
        "mnist [--epochs 15] [--device auto|cpu|gpu] [--out target/mnist] [--seed 0] [--precision f32|bf16|f16]",
        &["epochs", "device", "out", "seed", "precision"],
    );
    let precision = opts.precision();
    // f16's small range needs the loss scaled (bf16 has f32's range).
    let mut scaler = (precision == Some(DType::F16)).then(GradScaler::new);
    let (epochs, seed) = (opts.number("epochs", 15usize), opts.number("seed", 0u64));
    let out = std::path::PathBuf::from(opts.get("out", "target/mnist"));
    let dev = opts.device()?;
    wgrad::manual_seed(seed);

    // Pixels in [0, 1] as [N, 1, 28, 28]; the file is in label order, so shuffle, then split.
    let (x, y) = load_mnist(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist_5k.csv.gz"))?;
    let order = Tensor::randperm(y.numel())?;
    let x = x.index_select(0, &order)?.reshape([-1, 1, 28, 28])?;
    let all = TensorDataset::new(x, y.index_select(0, &order)?)?;
    let (train, test) = (all.range(0, 4000)?, all.range(4000, all.len())?);

    let model = cnn(&dev)?;
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let loader = DataLoader::new(&train, 64)?.shuffle(seed).device(&dev);
    let (test_x, test_y) = (
        test.inputs().to_device(&dev)?,
        test.targets().to_device(&dev)?,
    );
    println!(
        "a CNN of {} parameters on {dev} ({}): {} training and {} held-out digits, {epochs} epochs",
        model.num_parameters(),
        precision.map_or("f32".to_string(), |d| format!("mixed precision, {d:?}")),
        train.len(),
        test.len()
    );

    let (mut losses, mut accuracies) = (Vec::new(), Vec::new());
    let start = std::time::Instant::now();
    for epoch in 0..epochs {
        let bar = support::epoch_bar(epoch, loader.num_batches());
        let mut total = Tensor::zeros_on([], &dev)?;
        for batch in loader.epoch(epoch as u64) {
            let (xb, yb) = batch?;
            opt.zero_grad();
            let loss = {
                let _amp = support::autocast(precision)?;
                nn::cross_entropy(&model.forward(&xb)?, &yb)?
            };
            match &mut scaler {
                Some(s) => {
                    s.scale(&loss)?.backward()?;
                    s.step(&mut opt)?;
                    s.update();
                }
                None => {
                    loss.backward()?;
                    opt.step()?;
                }
            }
            // Summed where it lives: no readback inside the epoch.
            total = &total + &loss.detach();
            bar.inc(1);
        }
        let loss = total.item::<f64>()? / loader.num_batches() as f64;
        let correct = predict(&model, &test_x, precision)?
            .eq(&test_y)?
            .sum()?
            .item::<f64>()?;
        let accuracy = correct / test.len() as f64;
        support::finish(
            &bar,
            epoch,
            format!("loss {loss:.4}  held-out accuracy {:.2}%", 100.0 * accuracy),
        );
        losses.push(loss);
        accuracies.push(accuracy);
    }
    let accuracy = accuracies.last().copied().unwrap_or(0.0);
    println!(
        "trained in {:.1} s: held-out accuracy {:.2}% (PyTorch, same network: 96.2-96.8%)",
        start.elapsed().as_secs_f64(),
        100.0 * accuracy
    );

    support::create_dir(&out)?;
    let checkpoint = out.join("mnist_cnn.safetensors");
    wgrad::io::save_checkpoint(&checkpoint, &model, &opt, None)?;
    println!("checkpoint (model and optimizer): {}", checkpoint.display());
    let curves = out.join("mnist_curves.svg");
    match support::plot_curves(&curves, &losses, &accuracies) {
        Ok(()) => println!("training curves: {}", curves.display()),
        Err(e) => eprintln!("could not draw the training curves: {e}"),
    }

    // The first 60 held-out digits with the network's answers, mistakes in red.
    let shown = 60.min(test.len());
    let pred = predict(&model, &test_x.narrow(0, 0, shown)?, precision)?.to_vec::<i64>()?;
    let truth = test.targets().narrow(0, 0, shown)?.to_vec::<i64>()?;
    let pixels = test
        .inputs()
        .narrow(0, 0, shown)?
        .reshape([shown, 784])?
        .to_vec2::<f32>()?;
    let captions: Vec<String> = pred
        .iter()
        .zip(&truth)
        .map(|(p, t)| {
            if p == t {
                p.to_string()
            } else {
                format!("{p} (is {t})")
            }
        })
        .collect();
    let wrong: Vec<bool> = pred.iter().zip(&truth).map(|(p, t)| p != t).collect();
    let picture = out.join("mnist_predictions.svg");
    support::write_file(
        &picture,
        &support::image_grid(&pixels, 28, &captions, &wrong),
    )?;
    println!(
        "held-out digits with their predicted labels ({} of {shown} wrong, in red): {}",
        wrong.iter().filter(|&&w| w).count(),
        picture.display()
    );
    Ok(())
}
