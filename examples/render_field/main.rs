//! wgrad inside a graphics application: the application owns the wgpu device and queue,
//! wgrad trains a small network on that same device to fit a 2-D field, evaluates it on the
//! pixel grid in one batched forward pass, and the application's render pipeline draws the
//! output tensor's buffer directly (no copy, no readback) into an offscreen image, saved as
//! a PNG.
//!
//! cargo run --release --example render_field -- [--size 128] [--steps 600] [--out FILE]

mod field_renderer;

use field_renderer::FieldRenderer;
use wgrad::nn::{self, Module, Reduction};
use wgrad::optim::{Adam, Optimizer};
use wgrad::{Device, Generator, Result, Tensor};

/// The field to learn on [-1, 1]^2: rings modulated by a wave, in [0, 1].
fn target(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let r = x.square()?.add(&y.square()?)?.sqrt()?;
    r.mul_scalar(9.0)?
        .cos()?
        .mul(&x.mul_scalar(3.0)?.sin()?.mul_scalar(0.5)?.add_scalar(0.5)?)?
        .mul_scalar(0.5)?
        .add_scalar(0.5)
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
    let mut g = Generator::new(0);
    let model = nn::Sequential::new()
        .add(nn::Linear::new(2, 64, true, &mut g, &dev)?)
        .add(nn::Tanh)
        .add(nn::Linear::new(64, 64, true, &mut g, &dev)?)
        .add(nn::Tanh)
        .add(nn::Linear::new(64, 1, true, &mut g, &dev)?)
        .add(nn::Sigmoid);
    let mut opt = Adam::new(model.parameters(), 1e-2);
    for step in 0..steps {
        let p = Tensor::rand_on([512, 2], &dev)?
            .mul_scalar(2.0)?
            .sub_scalar(1.0)?;
        let (x, y) = (p.i(wgrad::s![.., 0])?, p.i(wgrad::s![.., 1])?);
        let want = target(&x, &y)?;
        opt.zero_grad();
        let loss = nn::mse_loss(&model.forward(&p)?.squeeze_dim(1)?, &want, Reduction::Mean)?;
        loss.backward()?;
        opt.step()?;
        if step % 100 == 0 || step + 1 == steps {
            println!("step {step:>4}  loss {:.5}", loss.item()?.to_f64());
        }
    }

    // One batched forward pass over the pixel grid, rows from the top (y = 1) down.
    let n = size as usize;
    let coords = Tensor::linspace(-1.0, 1.0, n)?.to_device(&dev)?;
    let xs = coords.reshape([1, n])?.expand([n, n])?;
    let ys = coords.neg()?.reshape([n, 1])?.expand([n, n])?;
    let grid = Tensor::stack(&[&xs, &ys], 2)?.reshape([n * n, 2])?;
    let image = wgrad::no_grad_scope(|| model.forward(&grid)?.reshape([n * n])?.contiguous())?;
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
    let err = wgrad::no_grad_scope(|| {
        image
            .sub(&target(
                &grid.i(wgrad::s![.., 0])?,
                &grid.i(wgrad::s![.., 1])?,
            )?)?
            .abs()?
            .mean()
    })?;
    println!(
        "mean absolute error over the grid: {:.4}",
        err.item()?.to_f64()
    );
    println!("wrote {}", out.display());
    Ok(())
}
