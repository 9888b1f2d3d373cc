//! The `Module` trait and the layers.
//! Public fields carry the PyTorch attribute names (`weight`, `bias`, `stride`, ...).
#![allow(missing_docs)]

use super::functional as F;
use super::init;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::rng::Generator;
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicBool, Ordering};

/// A layer or model: a function of a tensor with named parameters and a train/eval mode.
pub trait Module {
    /// Apply the module.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Trainable parameters with PyTorch-style dotted names (`0.weight`, `fc.bias`).
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// State that is saved but not trained (BatchNorm's running statistics).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Switch between training (`true`) and evaluation mode (dropout, batch norm).
    fn train(&self, _training: bool) {}

    /// The trainable parameters.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Parameters and buffers: what a checkpoint holds (PyTorch's `state_dict`).
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = self.named_parameters();
        s.extend(self.named_buffers());
        s
    }

    /// Forget the parameters' gradients.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }
}

fn prefixed(prefix: &str, items: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    items
        .into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
}

/// A trainable leaf on `device`.
fn param(t: Tensor) -> Result<Tensor> {
    t.requires_grad_(true)
}

/// `y = x W^T + b`, initialised like PyTorch (`U(-1/sqrt(in), 1/sqrt(in))`).
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer from `inputs` to `outputs` features.
    pub fn new(
        inputs: usize,
        outputs: usize,
        bias: bool,
        g: &mut Generator,
        device: &Device,
    ) -> Result<Linear> {
        let bound = 1.0 / (inputs.max(1) as f64).sqrt();
        Ok(Linear {
            weight: param(init::uniform(&[outputs, inputs], -bound, bound, g, device)?)?,
            bias: if bias {
                Some(param(init::uniform(&[outputs], -bound, bound, g, device)?)?)
            } else {
                None
            },
        })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::linear(x, &self.weight, self.bias.as_ref())
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".into(), b.clone()));
        }
        v
    }
}

/// Modules applied in order; parameters are named by position (`0.weight`, `2.bias`).
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module + Send + Sync>>,
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Append a layer.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Module + Send + Sync + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.layers {
            x = l.forward(&x)?;
        }
        Ok(x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| prefixed(&i.to_string(), l.named_parameters()))
            .collect()
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| prefixed(&i.to_string(), l.named_buffers()))
            .collect()
    }
    fn train(&self, training: bool) {
        for l in &self.layers {
            l.train(training);
        }
    }
}

macro_rules! activation {
    ($($(#[$doc:meta])* $name:ident => |$x:ident| $body:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;
        impl Module for $name {
            fn forward(&self, $x: &Tensor) -> Result<Tensor> {
                $body
            }
        }
    )*};
}
activation! {
    /// `max(x, 0)`.
    ReLU => |x| x.relu();
    /// `1 / (1 + e^-x)`.
    Sigmoid => |x| x.sigmoid();
    /// `tanh(x)`.
    Tanh => |x| x.tanh();
    /// `x * Phi(x)` (exact).
    GELU => |x| F::gelu(x, false);
}

/// Softmax along a dim.
#[derive(Debug, Clone, Copy)]
pub struct Softmax(pub isize);

impl Module for Softmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.softmax(self.0)
    }
}

/// Flatten all dims after the first (the batch).
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.ndim() < 2 {
            return Ok(x.clone());
        }
        x.flatten(1, -1)
    }
}

/// Zeroes elements with probability `p` in training mode; the identity in eval mode.
pub struct Dropout {
    p: f64,
    training: AtomicBool,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1)`.
    pub fn new(p: f64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "Dropout",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            training: AtomicBool::new(true),
        })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.training.load(Ordering::Relaxed) {
            F::dropout(x, self.p)
        } else {
            Ok(x.clone())
        }
    }
    fn train(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
}

/// 2-D convolution with square kernels, stride and zero padding (im2col + matmul).
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    /// `inputs -> outputs` channels with a `k x k` kernel, initialised like PyTorch.
    pub fn new(
        inputs: usize,
        outputs: usize,
        k: usize,
        stride: usize,
        padding: usize,
        g: &mut Generator,
        device: &Device,
    ) -> Result<Conv2d> {
        let bound = 1.0 / ((inputs * k * k).max(1) as f64).sqrt();
        Ok(Conv2d {
            weight: param(init::uniform(
                &[outputs, inputs, k, k],
                -bound,
                bound,
                g,
                device,
            )?)?,
            bias: Some(param(init::uniform(&[outputs], -bound, bound, g, device)?)?),
            stride,
            padding,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::conv2d(
            x,
            &self.weight,
            self.bias.as_ref(),
            self.stride,
            self.padding,
        )
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".into(), b.clone()));
        }
        v
    }
}

/// Max pooling over `k x k` windows.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    pub kernel: usize,
    pub stride: usize,
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::max_pool2d(x, self.kernel, self.stride)
    }
}

/// Average pooling over `k x k` windows.
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    pub kernel: usize,
    pub stride: usize,
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::avg_pool2d(x, self.kernel, self.stride)
    }
}

/// Batch normalisation over the batch (and spatial) dims of `[N, C]` or `[N, C, H, W]`
/// inputs, with running statistics for evaluation (momentum 0.1, as PyTorch).
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub eps: f64,
    pub momentum: f64,
    spatial: bool,
    training: AtomicBool,
}

impl BatchNorm {
    /// For `[N, C]` inputs (`BatchNorm1d`).
    pub fn new_1d(channels: usize, device: &Device) -> Result<BatchNorm> {
        BatchNorm::new(channels, false, device)
    }

    /// For `[N, C, H, W]` inputs (`BatchNorm2d`).
    pub fn new_2d(channels: usize, device: &Device) -> Result<BatchNorm> {
        BatchNorm::new(channels, true, device)
    }

    fn new(c: usize, spatial: bool, device: &Device) -> Result<BatchNorm> {
        let f = crate::DType::F32;
        Ok(BatchNorm {
            weight: param(Tensor::ones_on([c], f, device)?)?,
            bias: param(Tensor::zeros_on([c], f, device)?)?,
            running_mean: Tensor::zeros_on([c], f, device)?,
            running_var: Tensor::ones_on([c], f, device)?,
            eps: 1e-5,
            momentum: 0.1,
            spatial,
            training: AtomicBool::new(true),
        })
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.weight.numel();
        let (dims, shape): (Vec<isize>, Vec<usize>) = match (self.spatial, x.shape()) {
            (false, &[_, ch]) if ch == c => (vec![0], vec![1, c]),
            (true, &[_, ch, _, _]) if ch == c => (vec![0, 2, 3], vec![1, c, 1, 1]),
            _ => {
                return Err(Error::bad_shape(
                    "BatchNorm",
                    x.shape(),
                    format!(
                        "expected {} with {c} channels",
                        if self.spatial {
                            "[N, C, H, W]"
                        } else {
                            "[N, C]"
                        }
                    ),
                ))
            }
        };
        let y = if self.training.load(Ordering::Relaxed) {
            let count: usize = dims.iter().map(|&d| x.shape()[d as usize]).product();
            // PyTorch refuses these: the batch statistics would be NaN (and the running
            // statistics NaN forever after) or carry no information.
            if count <= 1 {
                return Err(Error::bad_shape(
                    "BatchNorm",
                    x.shape(),
                    format!("expected more than 1 value per channel when training, got {count}"),
                ));
            }
            let (y, mean, var) = F::normalize(x, &dims, self.eps)?;
            crate::no_grad_scope(|| -> Result<()> {
                let m = self.momentum;
                let unbiased = var
                    .mul_scalar(count as f64 / (count.max(2) - 1) as f64)?
                    .reshape([c])?;
                self.running_mean
                    .mul_(1.0 - m)?
                    .add_(&mean.reshape([c])?.mul_scalar(m)?)?;
                self.running_var
                    .mul_(1.0 - m)?
                    .add_(&unbiased.mul_scalar(m)?)?;
                Ok(())
            })?;
            y
        } else {
            x.sub(&self.running_mean.reshape(shape.clone())?)?.div(
                &self
                    .running_var
                    .reshape(shape.clone())?
                    .add_scalar(self.eps)?
                    .sqrt()?,
            )?
        };
        y.mul(&self.weight.reshape(shape.clone())?)?
            .add(&self.bias.reshape(shape)?)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".into(), self.running_mean.clone()),
            ("running_var".into(), self.running_var.clone()),
        ]
    }
    fn train(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
}

/// Layer normalisation over the last dims, with an elementwise affine transform.
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    /// Normalise over trailing dims of shape `normalized_shape`.
    pub fn new(normalized_shape: &[usize], device: &Device) -> Result<LayerNorm> {
        let f = crate::DType::F32;
        Ok(LayerNorm {
            weight: param(Tensor::ones_on(normalized_shape.to_vec(), f, device)?)?,
            bias: param(Tensor::zeros_on(normalized_shape.to_vec(), f, device)?)?,
            eps: 1e-5,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.weight.ndim();
        if x.ndim() < k || x.shape()[x.ndim() - k..] != *self.weight.shape() {
            return Err(Error::shapes(
                "LayerNorm",
                x.shape(),
                self.weight.shape(),
                "the input must end with the normalized shape",
            ));
        }
        let dims: Vec<isize> = (x.ndim() - k..x.ndim()).map(|d| d as isize).collect();
        F::normalize(x, &dims, self.eps)?
            .0
            .mul(&self.weight)?
            .add(&self.bias)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
}

/// A lookup table of `num` vectors of size `dim`, indexed by I64 tensors of any shape.
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    /// `N(0, 1)` initial vectors, as PyTorch.
    pub fn new(num: usize, dim: usize, g: &mut Generator, device: &Device) -> Result<Embedding> {
        Ok(Embedding {
            weight: param(init::normal(&[num, dim], 0.0, 1.0, g, device)?)?,
        })
    }
}

impl Module for Embedding {
    fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        let mut shape = idx.shape().to_vec();
        shape.push(self.weight.shape()[1]);
        self.weight
            .index_select(0, &idx.reshape([-1isize])?)?
            .reshape(shape)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".into(), self.weight.clone())]
    }
}
