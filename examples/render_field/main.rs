//! wgrad inside a graphics application: the application owns the wgpu device and queue,
//! wgrad trains a small network on that same device to fit a 2-D field, evaluates it on the
//! pixel grid in one batched forward pass, and the application's render pipeline draws the
//! output tensor's buffer directly (no copy, no readback) into an offscreen image, saved as
//! a PNG. With `--window` (build with `--features window`) the picture is shown in a window
//! and updates as training goes on.
//!
//! cargo run --release --example render_field -- [--size 128] [--steps 600] [--out FILE]
//! cargo run --release --example render_field --features window -- --window [--exit-when-done]

mod field_renderer;
#[cfg(feature = "window")]
mod window;

use field_renderer::FieldRenderer;
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, Optimizer};
use wgrad::{s, Device, Result, Tensor};

/// The field to learn on [-1, 1]^2: rings modulated by a wave, in [0, 1].
fn target(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let r = (x.square()? + y.square()?).sqrt()?;
    let wave = (x * 3.0).sin()? * 0.5 + 0.5;
    Ok(((r * 9.0).cos()? * wave) * 0.5 + 0.5)
}

/// The network, its optimizer and the pixel grid it is drawn on.
pub struct Field {
    model: nn::Sequential,
    opt: Adam,
    grid: Tensor,
    dev: Device,
    pub steps: usize,
}

impl Field {
    pub fn new(dev: &Device, size: usize) -> Result<Field> {
        wgrad::manual_seed(0);
        let model = nn::Sequential::new()
            .add(nn::Linear::new(2, 64, dev)?)
            .add(nn::Tanh)
            .add(nn::Linear::new(64, 64, dev)?)
            .add(nn::Tanh)
            .add(nn::Linear::new(64, 1, dev)?)
            .add(nn::Sigmoid);
        let opt = Adam::new(model.parameters(), 1e-2);
        // Pixel centres, rows from the top (y = 1) down.
        let coords = Tensor::linspace(-1.0, 1.0, size)?.to_device(dev)?;
        let xs = coords.reshape([1, size])?.expand([size, size])?;
        let ys = coords.neg()?.reshape([size, 1])?.expand([size, size])?;
        let grid = Tensor::stack(&[&xs, &ys], 2)?.reshape([size * size, 2])?;
        Ok(Field {
            model,
            opt,
            grid,
            dev: dev.clone(),
            steps: 0,
        })
    }

    /// Some optimisation steps on random points; returns the last loss (a tensor on the
    /// device: reading it is the caller's choice).
    pub fn train(&mut self, steps: usize) -> Result<Tensor> {
        let mut last = Tensor::zeros_on([], &self.dev)?;
        for _ in 0..steps {
            let p = Tensor::rand_on([512, 2], &self.dev)? * 2.0 - 1.0;
            let want = target(&p.i(s![.., 0])?, &p.i(s![.., 1])?)?;
            self.opt.zero_grad();
            let loss = nn::mse_loss(&self.model.forward(&p)?.squeeze_dim(1)?, &want)?;
            loss.backward()?;
            self.opt.step()?;
            self.steps += 1;
            last = loss.detach();
        }
        Ok(last)
    }

    /// The network on every pixel: one batched forward pass, a contiguous GPU tensor.
    pub fn image(&self) -> Result<Tensor> {
        let n = self.grid.shape()[0];
        wgrad::no_grad_scope(|| self.model.forward(&self.grid)?.reshape([n])?.contiguous())
    }

    /// Mean absolute error against the true field over the grid.
    pub fn error(&self) -> Result<f64> {
        let _g = wgrad::no_grad();
        let want = target(&self.grid.i(s![.., 0])?, &self.grid.i(s![.., 1])?)?;
        (self.image()? - want).abs()?.mean()?.item::<f64>()
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let size: u32 = arg("--size", "128").parse()?;
    let steps: usize = arg("--steps", "600").parse()?;
    let out = std::path::PathBuf::from(arg("--out", "target/render_field.png"));
    if args.iter().any(|a| a == "--window") {
        #[cfg(feature = "window")]
        return window::run(size, steps, args.iter().any(|a| a == "--exit-when-done"));
        #[cfg(not(feature = "window"))]
        return Err("--window needs the `window` feature: cargo run --release --example render_field --features window -- --window".into());
    }

    // The application's own device and queue, as a renderer would create them.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    println!("adapter: {}", adapter.get_info().name);

    // wgrad on the same device.
    let dev = Device::from_wgpu(device.clone(), queue.clone())?;
    let mut field = Field::new(&dev, size as usize)?;
    for _ in 0..steps.div_ceil(100) {
        let loss = field.train(100.min(steps - field.steps))?;
        println!("step {:>4}  loss {:.5}", field.steps, loss.item::<f64>()?);
    }

    let image = field.image()?;
    let view = image.wgpu_buffer()?;
    // wgrad's recorded work goes to the shared queue before the application's draw.
    dev.flush();
    let renderer = FieldRenderer::new(&device, size, size);
    renderer.draw(&device, &queue, view.binding());
    let pixels = renderer.read_pixels(&device, &queue);

    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut encoder = png::Encoder::new(
        std::io::BufWriter::new(std::fs::File::create(&out)?),
        size,
        size,
    );
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    println!("mean absolute error over the grid: {:.4}", field.error()?);
    println!("wrote {}", out.display());
    Ok(())
}
