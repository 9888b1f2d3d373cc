//! Train a classifier on the handwritten digits that ship with wgrad (data/digits.csv.gz,
//! 1797 8x8 images) with a fixed 80/20 split: a progress bar per epoch, loss and held-out
//! accuracy per epoch, a checkpoint, and the training curves as an SVG image.
//!
//! cargo run --release --example digits -- [--model mlp|cnn|softmax] [--epochs N]
//!     [--device auto|cpu|gpu] [--out DIR]

use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use wgrad::data::{load_digits, DataLoader, Dataset, TensorDataset};
use wgrad::nn::{self, Module, Reduction};
use wgrad::optim::{Adam, CosineAnnealingLr, LrScheduler, Optimizer};
use wgrad::{Device, Generator, Result, Tensor};

struct Args {
    model: String,
    epochs: usize,
    device: String,
    out: std::path::PathBuf,
}

fn parse_args() -> Args {
    let mut a = Args {
        model: "mlp".into(),
        epochs: 0,
        device: "auto".into(),
        out: "target/digits".into(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--model" => a.model = value,
            "--epochs" => a.epochs = value.parse().unwrap_or(0),
            "--device" => a.device = value,
            "--out" => a.out = value.into(),
            "--help" | "-h" => {
                println!("usage: digits [--model mlp|cnn|softmax] [--epochs N] [--device auto|cpu|gpu] [--out DIR]");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}; try --help");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

fn build(kind: &str, device: &Device) -> Result<(nn::Sequential, bool, usize, f64)> {
    let mut g = Generator::new(1);
    // (model, expects images, default epochs, learning rate)
    Ok(match kind {
        "softmax" => (
            nn::Sequential::new().add(nn::Linear::new(64, 10, true, &mut g, device)?),
            false,
            60,
            2e-2,
        ),
        "mlp" => (
            nn::Sequential::new()
                .add(nn::Linear::new(64, 128, true, &mut g, device)?)
                .add(nn::ReLU)
                .add(nn::Linear::new(128, 10, true, &mut g, device)?),
            false,
            30,
            3e-3,
        ),
        "cnn" => (
            nn::Sequential::new()
                .add(nn::Conv2d::new(1, 16, 3, 1, 1, &mut g, device)?)
                .add(nn::ReLU)
                .add(nn::MaxPool2d {
                    kernel: 2,
                    stride: 2,
                })
                .add(nn::Conv2d::new(16, 32, 3, 1, 1, &mut g, device)?)
                .add(nn::ReLU)
                .add(nn::MaxPool2d {
                    kernel: 2,
                    stride: 2,
                })
                .add(nn::Flatten)
                .add(nn::Linear::new(32 * 2 * 2, 10, true, &mut g, device)?),
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

fn accuracy(
    model: &dyn Module,
    data: &TensorDataset,
    images: bool,
    device: &Device,
) -> Result<f64> {
    let _g = wgrad::no_grad();
    model.train(false);
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

fn plot(
    path: &std::path::Path,
    losses: &[f64],
    accs: &[f64],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (800, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(400);
    let n = losses.len().max(2) as f64;
    let max_loss = losses.iter().cloned().fold(0.0, f64::max) * 1.05;
    let mut c = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(1.0..n, 0.0..max_loss)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(
        losses.iter().enumerate().map(|(i, &l)| (i as f64 + 1.0, l)),
        &RED,
    ))?;
    let lo = accs.iter().cloned().fold(1.0, f64::min).min(0.9);
    let mut c = ChartBuilder::on(&right)
        .caption("held-out accuracy", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(1.0..n, lo..1.0)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(
        accs.iter().enumerate().map(|(i, &a)| (i as f64 + 1.0, a)),
        &BLUE,
    ))?;
    root.present()?;
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args();
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "gpu" => Device::gpu()?,
        _ => Device::auto()?,
    };
    let data_path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv.gz");
    let (x, y) = load_digits(data_path)?;
    // The fixed 80/20 split: a permutation from seed 0.
    let perm = Tensor::randperm_with(x.shape()[0], &mut Generator::new(0))?;
    let all = TensorDataset::new(x.index_select(0, &perm)?, y.index_select(0, &perm)?)?;
    let cut = all.len() * 4 / 5;
    let (train, test) = (all.range(0, cut)?, all.range(cut, all.len())?);

    let (model, images, default_epochs, lr) = build(&args.model, &device)?;
    let epochs = if args.epochs > 0 {
        args.epochs
    } else {
        default_epochs
    };
    println!(
        "{} model on {device}: {} training and {} held-out digits, {epochs} epochs",
        args.model,
        train.len(),
        test.len()
    );
    let mut opt = Adam::new(model.parameters(), lr);
    let mut schedule = CosineAnnealingLr::new(&opt, epochs, lr * 0.05);
    let loader = DataLoader::new(&train, 64)?.shuffle(3).device(&device);
    let (mut losses, mut accs) = (Vec::new(), Vec::new());
    let start = std::time::Instant::now();
    for epoch in 0..epochs {
        let bar = ProgressBar::new(loader.num_batches() as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix((epoch + 1).to_string());
        let mut total = Tensor::zeros_on([0usize; 0], wgrad::DType::F32, &device)?;
        for batch in loader.epoch(epoch as u64) {
            let (mut xb, yb) = batch?;
            if images {
                xb = xb.reshape([-1, 1, 8, 8])?;
            }
            opt.zero_grad();
            let loss = nn::cross_entropy(&model.forward(&xb)?, &yb, 0.0, Reduction::Mean)?;
            loss.backward()?;
            opt.step()?;
            // Summed on the device: no readback inside the epoch.
            total = total.add(loss.detach())?;
            bar.inc(1);
        }
        schedule.step(&mut opt);
        let loss = total.item::<f64>()? / loader.num_batches() as f64;
        let acc = accuracy(&model, &test, images, &device)?;
        let line = format!("loss {loss:.4}  held-out accuracy {:.2}%", acc * 100.0);
        if bar.is_hidden() {
            // Not a terminal (a log, a pipe): plain lines instead of the bar.
            println!("epoch {:>3}  {line}", epoch + 1);
        } else {
            bar.finish_with_message(line);
        }
        losses.push(loss);
        accs.push(acc);
    }
    println!(
        "trained in {:.1} s; final held-out accuracy {:.2}%",
        start.elapsed().as_secs_f64(),
        accs.last().unwrap_or(&0.0) * 100.0
    );

    std::fs::create_dir_all(&args.out).map_err(|e| wgrad::Error::Io {
        op: "digits",
        msg: e.to_string(),
    })?;
    let ckpt = args.out.join(format!("digits_{}.safetensors", args.model));
    wgrad::io::save_module(&model, &ckpt)?;
    println!("checkpoint: {}", ckpt.display());
    let chart = args.out.join(format!("digits_{}.svg", args.model));
    match plot(&chart, &losses, &accs) {
        Ok(()) => println!("training curves: {}", chart.display()),
        Err(e) => eprintln!("could not draw the training curves: {e}"),
    }
    Ok(())
}
