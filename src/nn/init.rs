//! Parameter initialisers, drawing from a seeded generator (PyTorch's `torch.nn.init`).

use crate::device::Device;
use crate::error::Result;
use crate::rng::Generator;
use crate::tensor::Tensor;

/// Uniform in `[low, high)`.
pub fn uniform(
    shape: &[usize],
    low: f64,
    high: f64,
    g: &mut Generator,
    device: &Device,
) -> Result<Tensor> {
    // A zero-element tensor draws nothing (PyTorch: a no-op), whatever its bound.
    if !shape.contains(&0) {
        crate::tensor::sampling::check_uniform("init::uniform", low, high, crate::DType::F32)?;
    }
    Tensor::rand_with(shape.to_vec(), g)?
        .mul_scalar(high - low)?
        .add_scalar(low)?
        .to_device(device)
}

/// Normal with `mean` and `std`.
pub fn normal(
    shape: &[usize],
    mean: f64,
    std: f64,
    g: &mut Generator,
    device: &Device,
) -> Result<Tensor> {
    if !shape.contains(&0) {
        crate::tensor::sampling::check_normal("init::normal", std)?;
    }
    Tensor::randn_with(shape.to_vec(), g)?
        .mul_scalar(std)?
        .add_scalar(mean)?
        .to_device(device)
}

/// (fan_in, fan_out) of a weight: `[out, in, k...]`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let receptive: usize = shape.iter().skip(2).product();
    let fan_in = shape.get(1).copied().unwrap_or(1) * receptive;
    let fan_out = shape.first().copied().unwrap_or(1) * receptive;
    (fan_in, fan_out)
}

/// Xavier/Glorot uniform: `U(-a, a)`, `a = gain * sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_uniform(
    shape: &[usize],
    gain: f64,
    g: &mut Generator,
    device: &Device,
) -> Result<Tensor> {
    let (i, o) = fans(shape);
    let a = gain * (6.0 / (i + o) as f64).sqrt();
    uniform(shape, -a, a, g, device)
}

/// Xavier/Glorot normal: `N(0, gain^2 * 2 / (fan_in + fan_out))`.
pub fn xavier_normal(
    shape: &[usize],
    gain: f64,
    g: &mut Generator,
    device: &Device,
) -> Result<Tensor> {
    let (i, o) = fans(shape);
    normal(shape, 0.0, gain * (2.0 / (i + o) as f64).sqrt(), g, device)
}

/// Kaiming/He uniform for ReLU: `U(-b, b)`, `b = sqrt(6 / fan_in)`.
pub fn kaiming_uniform(shape: &[usize], g: &mut Generator, device: &Device) -> Result<Tensor> {
    let b = (6.0 / fans(shape).0 as f64).sqrt();
    uniform(shape, -b, b, g, device)
}

/// Kaiming/He normal for ReLU: `N(0, 2 / fan_in)`.
pub fn kaiming_normal(shape: &[usize], g: &mut Generator, device: &Device) -> Result<Tensor> {
    normal(shape, 0.0, (2.0 / fans(shape).0 as f64).sqrt(), g, device)
}
