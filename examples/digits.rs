//! Train a classifier on the handwritten digits that ship with wgrad (data/digits.csv.gz,
//! 1797 8x8 images) with a fixed 80/20 split: a progress bar per epoch, loss and held-out
//! accuracy per epoch, a checkpoint, and the training curves as an SVG image.
//!
//! cargo run --release --example digits -- [--model mlp|cnn|softmax] [--epochs N]
//!     [--device auto|cpu|gpu] [--out DIR]

#[path = "support/mod.rs"]
mod support;

use wgrad::data::{load_digits, DataLoader, Dataset, TensorDataset};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, CosineAnnealingLr, LrScheduler, Optimizer};
use wgrad::{Device, Generator, Result, Tensor};

fn build(kind: &str, device: &Device) -> Result<(nn::Sequential, bool, usize, f64)> {
    wgrad::manual_seed(1);
    // (model, expects images, default epochs, learning rate)
    Ok(match kind {
        "softmax" => (
            nn::Sequential::new().add(nn::Linear::new(64, 10, device)?),
            false,
            60,
            2e-2,
        ),
        "mlp" => (
            nn::Sequential::new()
                .add(nn::Linear::new(64, 128, device)?)
                .add(nn::ReLU)
                .add(nn::Linear::new(128, 10, device)?),
            false,
            30,
            3e-3,
        ),
        "cnn" => (
            nn::Sequential::new()
                .add(nn::Conv2d::new(1, 16, 3, device)?.padding(1))
                .add(nn::ReLU)
                .add(nn::MaxPool2d::new(2))
                .add(nn::Conv2d::new(16, 32, 3, device)?.padding(1))
                .add(nn::ReLU)
                .add(nn::MaxPool2d::new(2))
                .add(nn::Flatten)
                .add(nn::Linear::new(32 * 2 * 2, 10, device)?),
            true,
            40,
            3e-3,
        ),
        other => {
            return Err(wgrad::Error::InvalidArgument {
                op: "digits",
                msg: format!("unknown model {other:?}: use mlp, cnn or softmax"),
            })
        }
    })
}

/// Held-out accuracy, in evaluation mode and without a graph.
fn accuracy(
    model: &nn::Sequential,
    data: &TensorDataset,
    images: bool,
    device: &Device,
) -> Result<f64> {
    let _no_grad = wgrad::no_grad();
    model.eval();
    let mut x = data.inputs().to_device(device)?;
    if images {
        x = x.reshape([-1, 1, 8, 8])?;
    }
    let pred = model.forward(&x)?.argmax_dim(1, false)?;
    let correct = pred
        .eq(&data.targets().to_device(device)?)?
        .sum()?
        .item::<f64>()?;
    model.train(true);
    Ok(correct / data.len() as f64)
}

fn main() -> Result<()> {
    let opts = support::Options::parse(
        "digits [--model mlp|cnn|softmax] [--epochs N] [--device auto|cpu|gpu] [--out DIR]",
        &["model", "epochs", "device", "out"],
    );
    let kind = opts.get("model", "mlp");
    let out = std::path::PathBuf::from(opts.get("out", "target/digits"));
    let device = opts.device()?;
    let data_path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv.gz");
    let (x, y) = load_digits(data_path)?;
    // The fixed 80/20 split: a permutation from seed 0.
    let perm = Tensor::randperm_with(x.shape()[0], &mut Generator::new(0))?;
    let all = TensorDataset::new(x.index_select(0, &perm)?, y.index_select(0, &perm)?)?;
    let cut = all.len() * 4 / 5;
    let (train, test) = (all.range(0, cut)?, all.range(cut, all.len())?);

    let (model, images, default_epochs, lr) = build(&kind, &device)?;
    let epochs = opts.number("epochs", default_epochs);
    println!(
        "{kind} model on {device}: {} training and {} held-out digits, {epochs} epochs",
        train.len(),
        test.len()
    );
    let mut opt = Adam::new(model.parameters(), lr);
    let mut schedule = CosineAnnealingLr::new(&opt, epochs, lr * 0.05);
    let loader = DataLoader::new(&train, 64)?.shuffle(3).device(&device);
    let (mut losses, mut accs) = (Vec::new(), Vec::new());
    let start = std::time::Instant::now();
    for epoch in 0..epochs {
        let bar = support::epoch_bar(epoch, loader.num_batches());
        let mut total = Tensor::zeros_on([], &device)?;
        for batch in loader.epoch(epoch as u64) {
            let (mut xb, yb) = batch?;
            if images {
                xb = xb.reshape([-1, 1, 8, 8])?;
            }
            opt.zero_grad();
            let loss = nn::cross_entropy(&model.forward(&xb)?, &yb)?;
            loss.backward()?;
            opt.step()?;
            // Summed on the device: no readback inside the epoch.
            total = &total + &loss.detach();
            bar.inc(1);
        }
        schedule.step(&mut opt);
        let loss = total.item::<f64>()? / loader.num_batches() as f64;
        let acc = accuracy(&model, &test, images, &device)?;
        support::finish(
            &bar,
            epoch,
            format!("loss {loss:.4}  held-out accuracy {:.2}%", acc * 100.0),
        );
        losses.push(loss);
        accs.push(acc);
    }
    println!(
        "trained in {:.1} s; final held-out accuracy {:.2}%",
        start.elapsed().as_secs_f64(),
        accs.last().unwrap_or(&0.0) * 100.0
    );

    support::create_dir(&out)?;
    let ckpt = out.join(format!("digits_{kind}.safetensors"));
    wgrad::io::save_checkpoint(&ckpt, &model, &opt, Some(&schedule))?;
    println!("checkpoint: {}", ckpt.display());
    let chart = out.join(format!("digits_{kind}.svg"));
    match support::plot_curves(&chart, &losses, &accs) {
        Ok(()) => println!("training curves: {}", chart.display()),
        Err(e) => eprintln!("could not draw the training curves: {e}"),
    }
    Ok(())
}
