//! What the training examples share: command-line options, the device, a progress bar per
//! epoch, and the training curves as an SVG chart. Not part of the library.
#![allow(dead_code)]

use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use wgrad::{DType, Device, Result};

/// `--name value` options, with `--help` printing `usage`.
pub struct Options {
    values: Vec<(String, String)>,
}

impl Options {
    /// Parse the process's arguments; each of `names` takes one value.
    pub fn parse(usage: &str, names: &[&str]) -> Options {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let mut values = Vec::new();
        let mut i = 0;
        while i < argv.len() {
            let arg = argv[i].as_str();
            if arg == "--help" || arg == "-h" {
                println!("usage: {usage}");
                std::process::exit(0);
            }
            match (arg.strip_prefix("--"), argv.get(i + 1)) {
                (Some(name), Some(value)) if names.contains(&name) => {
                    values.push((name.to_string(), value.clone()));
                    i += 2;
                }
                _ => {
                    eprintln!("unknown or incomplete argument {arg:?}; usage: {usage}");
                    std::process::exit(2);
                }
            }
        }
        Options { values }
    }

    /// The value of `--name`, or `default`.
    pub fn get(&self, name: &str, default: &str) -> String {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(default.to_string(), |(_, v)| v.clone())
    }

    /// A number option; a value that does not parse stops with a message.
    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.values.iter().rev().find(|(n, _)| n == name) {
            None => default,
            Some((_, v)) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name} {v:?} is not a number");
                std::process::exit(2);
            }),
        }
    }

    /// `--device auto|cpu|gpu` (auto: a GPU when there is one).
    pub fn device(&self) -> Result<Device> {
        match self.get("device", "auto").as_str() {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Device::gpu(),
            _ => Device::auto(),
        }
    }

    /// `--precision f32|bf16|f16`: the autocast dtype of the forward passes (none for f32).
    pub fn precision(&self) -> Option<DType> {
        match self.get("precision", "f32").as_str() {
            "f32" => None,
            "bf16" => Some(DType::BF16),
            "f16" => Some(DType::F16),
            other => {
                eprintln!("--precision takes f32, bf16 or f16, not {other}");
                std::process::exit(2);
            }
        }
    }
}

/// Open an autocast scope when `precision` names a 16-bit dtype (mixed precision).
pub fn autocast(precision: Option<DType>) -> Result<Option<wgrad::AutocastGuard>> {
    precision.map(wgrad::autocast).transpose()
}

/// A bar for one epoch of `batches` steps; on a pipe or a log it stays hidden and
/// [`finish`] prints a plain line instead.
pub fn epoch_bar(epoch: usize, batches: usize) -> ProgressBar {
    let bar = ProgressBar::new(batches as u64);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix((epoch + 1).to_string());
    bar
}

/// End an epoch's bar with `line`.
pub fn finish(bar: &ProgressBar, epoch: usize, line: String) {
    if bar.is_hidden() {
        println!("epoch {:>3}  {line}", epoch + 1);
    } else {
        bar.finish_with_message(line);
    }
}

/// Create `dir` (and its parents), as an error that names it.
pub fn create_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| wgrad::Error::Io {
        op: "create_dir",
        msg: format!("{}: {e}", dir.display()),
    })
}

/// Write `text` to `path`, as an error that names it.
pub fn write_file(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| wgrad::Error::Io {
        op: "write",
        msg: format!("{}: {e}", path.display()),
    })
}

/// Training loss and held-out accuracy per epoch, side by side, as an SVG chart.
pub fn plot_curves(
    path: &std::path::Path,
    losses: &[f64],
    accuracies: &[f64],
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
    let lo = accuracies.iter().cloned().fold(1.0, f64::min).min(0.9);
    let mut c = ChartBuilder::on(&right)
        .caption("held-out accuracy", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(1.0..n, lo..1.0)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(
        accuracies
            .iter()
            .enumerate()
            .map(|(i, &a)| (i as f64 + 1.0, a)),
        &BLUE,
    ))?;
    root.present()?;
    Ok(())
}

/// A training loss recorded every `every` steps, as an SVG chart.
pub fn plot_loss(
    path: &std::path::Path,
    losses: &[f64],
    every: usize,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (600, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = ((losses.len().max(2) - 1) * every) as f64;
    let max_loss = losses.iter().cloned().fold(0.0, f64::max) * 1.05;
    let mut c = ChartBuilder::on(&root)
        .caption("training loss (nats per character)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..last, 0.0..max_loss)?;
    c.configure_mesh().x_desc("step").draw()?;
    c.draw_series(LineSeries::new(
        losses
            .iter()
            .enumerate()
            .map(|(i, &l)| ((i * every) as f64, l)),
        &RED,
    ))?;
    root.present()?;
    Ok(())
}

/// A grid of grey-scale images (`side x side` pixels in [0, 1], row-major) with a caption
/// under each, as SVG; `marked` images get a red frame and a red caption.
pub fn image_grid(
    images: &[Vec<f32>],
    side: usize,
    captions: &[String],
    marked: &[bool],
) -> String {
    let (cols, scale, pad) = (10, 3, 6);
    let cell = side * scale + 2 * pad;
    let rows = images.len().div_ceil(cols);
    let (w, h) = (cols * cell, rows * (cell + 14));
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n"
    );
    for (k, img) in images.iter().enumerate() {
        let (x0, y0) = ((k % cols) * cell + pad, (k / cols) * (cell + 14) + pad);
        let colour = if marked[k] { "#d00" } else { "#222" };
        // One dark rectangle per inked pixel, on white: small, and readable as text.
        svg += &format!("<g transform=\"translate({x0},{y0}) scale({scale})\">");
        for (p, &v) in img.iter().enumerate() {
            if v > 0.05 {
                let grey = (255.0 * (1.0 - v.min(1.0))) as u8;
                svg += &format!(
                    "<rect x=\"{}\" y=\"{}\" width=\"1\" height=\"1\" fill=\"rgb({grey},{grey},{grey})\"/>",
                    p % side,
                    p / side
                );
            }
        }
        svg += "</g>\n";
        if marked[k] {
            svg += &format!(
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\n",
                x0 - 2,
                y0 - 2,
                side * scale + 4,
                side * scale + 4
            );
        }
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{colour}\">{}</text>\n",
            x0 + side * scale / 2,
            y0 + side * scale + 14,
            captions[k]
        );
    }
    svg + "</svg>\n"
}
