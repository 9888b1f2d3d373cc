//! The built-in layers, declared like a user's modules (`#[derive(Module)]`), with
//! PyTorch's constructor defaults and builder methods for its keyword options.
//! Public fields carry the PyTorch attribute names (`weight`, `bias`, `stride`, ...).
#![allow(missing_docs)]

use super::functional::{self as F, ConvArgs};
use super::init;
use super::module::{join, Forward, Item, ItemMut, Layer, Module, Training};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use wgrad_derive::Module;

/// A trainable leaf.
fn param(t: Tensor) -> Result<Tensor> {
    t.requires_grad_(true)
}

/// `U(-bound, bound)` of `shape` on `device`, from the default generator (what
/// `manual_seed` and [`crate::seeded`] control), as a trainable leaf.
pub(crate) fn uniform_param(shape: &[usize], bound: f64, device: &Device) -> Result<Tensor> {
    param(crate::rng::with_default(|g| {
        init::uniform(shape, -bound, bound, g, device)
    })?)
}

/// `y = x W^T + b`, initialised like PyTorch (`U(-1/sqrt(in), 1/sqrt(in))`).
#[derive(Module)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer from `in_features` to `out_features`, with a bias (`.bias(false)` drops it).
    pub fn new(in_features: usize, out_features: usize, device: &Device) -> Result<Linear> {
        let (weight, bias) = fan_in_params(
            &[out_features, in_features],
            in_features,
            out_features,
            device,
        )?;
        Ok(Linear {
            weight,
            bias: Some(bias),
        })
    }

    /// With or without the bias (PyTorch's `bias=`).
    pub fn bias(mut self, on: bool) -> Self {
        if !on {
            self.bias = None;
        }
        self
    }
}

impl Forward for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::linear(x, &self.weight, self.bias.as_ref())
    }
}

/// Modules applied in order; parameters are named by position (`0.weight`, `2.bias`).
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Append a layer.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Layer) -> Self {
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

    /// The layer at `index` as its concrete type (`seq.get::<nn::Linear>(0)`), if it is one.
    pub fn get<T: 'static>(&self, index: usize) -> Option<&T> {
        // `**`: the boxed layer itself (a `Box<dyn Layer>` is a `Layer` too).
        let layer: &dyn Layer = &**self.layers.get(index)?;
        layer.as_any().downcast_ref()
    }
}

impl Module for Sequential {
    // Positions name the layers directly (`0.weight`), as PyTorch's Sequential does.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        for (i, l) in self.layers.iter().enumerate() {
            l.visit(&join(prefix, &i.to_string()), f);
        }
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit_mut(&join(prefix, &i.to_string()), f);
        }
        f(prefix, ItemMut::Module(self));
    }
}

impl Forward for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.layers {
            x = l.forward(&x)?;
        }
        Ok(x)
    }
}

macro_rules! activation {
    ($($(#[$doc:meta])* $name:ident => |$x:ident| $body:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, Module)]
        pub struct $name;
        impl Forward for $name {
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
#[derive(Debug, Clone, Copy, Module)]
pub struct Softmax(pub isize);

impl Forward for Softmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.softmax(self.0)
    }
}

/// Flatten all dims after the first (the batch).
#[derive(Debug, Clone, Copy, Default, Module)]
pub struct Flatten;

impl Forward for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.ndim() < 2 {
            return Ok(x.clone());
        }
        x.flatten(1, -1)
    }
}

/// Zeroes elements with probability `p` in training mode; the identity in eval mode.
#[derive(Module)]
pub struct Dropout {
    pub p: f64,
    training: Training,
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
            training: Training::default(),
        })
    }
}

impl Forward for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.training.get() {
            F::dropout(x, self.p)
        } else {
            Ok(x.clone())
        }
    }
}

/// 2-D convolution with square kernels (im2col over `Tensor::unfold` windows, one batched
/// matmul), initialised like PyTorch.
/// `Conv2d::new(1, 6, 5, &dev)?.padding(2)`; options: `stride`, `padding`, `dilation`,
/// `groups`, `bias`.
#[derive(Module)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Conv2d {
    /// `in_channels -> out_channels` with a `kernel_size x kernel_size` kernel: stride 1,
    /// no padding, dilation 1, one group, a bias.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        device: &Device,
    ) -> Result<Conv2d> {
        let (weight, bias) = conv_params(in_channels, out_channels, kernel_size, 1, device)?;
        Ok(Conv2d {
            weight,
            bias: Some(bias),
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        })
    }

    /// Step between windows.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Zeros added on every side of the input.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// Spacing between kernel taps.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }

    /// Split the channels into `groups` independent convolutions (both channel counts must
    /// be divisible by it). The weight is drawn again for its new shape.
    pub fn groups(mut self, groups: usize) -> Result<Self> {
        let (o, c, k) = (
            self.weight.shape()[0],
            self.weight.shape()[1] * self.groups,
            self.weight.shape()[2],
        );
        if groups == 0 || c % groups != 0 || o % groups != 0 {
            return Err(Error::invalid(
                "Conv2d",
                format!("groups {groups} must divide in_channels {c} and out_channels {o}"),
            ));
        }
        let (weight, bias) = conv_params(c, o, k, groups, self.weight.device())?;
        self.weight = weight;
        self.bias = self.bias.map(|_| bias);
        self.groups = groups;
        Ok(self)
    }

    /// With or without the bias (PyTorch's `bias=`).
    pub fn bias(mut self, on: bool) -> Self {
        if !on {
            self.bias = None;
        }
        self
    }
}

/// A convolution's weight `[out, in / groups, k, k]` and bias.
fn conv_params(
    c: usize,
    o: usize,
    k: usize,
    groups: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let per_group = c / groups.max(1);
    // Saturating: a fan-in past usize only sets the bound; the shape itself is refused.
    let fan_in = per_group.saturating_mul(k).saturating_mul(k);
    fan_in_params(&[o, per_group, k, k], fan_in, o, device)
}

/// A weight of `shape` and a bias of `bias_len`, both `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`:
/// PyTorch's initialisation of linear and convolution layers.
pub(crate) fn fan_in_params(
    shape: &[usize],
    fan_in: usize,
    bias_len: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Ok((
        uniform_param(shape, bound, device)?,
        uniform_param(&[bias_len], bound, device)?,
    ))
}

impl Forward for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let args = ConvArgs {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        };
        F::conv2d(x, &self.weight, self.bias.as_ref(), args)
    }
}

/// Max pooling over `k x k` windows (stride `k` unless set).
#[derive(Debug, Clone, Copy, Module)]
pub struct MaxPool2d {
    pub kernel_size: usize,
    pub stride: usize,
}

impl MaxPool2d {
    /// Windows of `kernel_size`, stride `kernel_size` (PyTorch's default).
    pub fn new(kernel_size: usize) -> MaxPool2d {
        MaxPool2d {
            kernel_size,
            stride: kernel_size,
        }
    }

    /// Step between windows.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }
}

impl Forward for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::max_pool2d(x, self.kernel_size, self.stride)
    }
}

/// Average pooling over `k x k` windows (stride `k` unless set).
#[derive(Debug, Clone, Copy, Module)]
pub struct AvgPool2d {
    pub kernel_size: usize,
    pub stride: usize,
}

impl AvgPool2d {
    /// Windows of `kernel_size`, stride `kernel_size` (PyTorch's default).
    pub fn new(kernel_size: usize) -> AvgPool2d {
        AvgPool2d {
            kernel_size,
            stride: kernel_size,
        }
    }

    /// Step between windows.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }
}

impl Forward for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::avg_pool2d(x, self.kernel_size, self.stride)
    }
}

/// Batch normalisation over the batch (and spatial) dims of `[N, C]` or `[N, C, H, W]`
/// inputs, with running statistics for evaluation (momentum 0.1, as PyTorch). Made by
/// [`BatchNorm1d::new`] or [`BatchNorm2d::new`]; its state has PyTorch's names
/// (`weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`).
#[derive(Module)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    #[module(buffer)]
    pub running_mean: Tensor,
    #[module(buffer)]
    pub running_var: Tensor,
    #[module(buffer)]
    pub num_batches_tracked: Tensor,
    pub eps: f64,
    pub momentum: f64,
    spatial: bool,
    training: Training,
}

/// `nn.BatchNorm1d`: a [`BatchNorm`] for `[N, C]` inputs.
pub struct BatchNorm1d;

impl BatchNorm1d {
    /// Over `num_features` channels.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(num_features: usize, device: &Device) -> Result<BatchNorm> {
        BatchNorm::new(num_features, false, device)
    }
}

/// `nn.BatchNorm2d`: a [`BatchNorm`] for `[N, C, H, W]` inputs.
pub struct BatchNorm2d;

impl BatchNorm2d {
    /// Over `num_features` channels.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(num_features: usize, device: &Device) -> Result<BatchNorm> {
        BatchNorm::new(num_features, true, device)
    }
}

impl BatchNorm {
    fn new(c: usize, spatial: bool, device: &Device) -> Result<BatchNorm> {
        let f = crate::DType::F32;
        Ok(BatchNorm {
            weight: param(Tensor::ones_on([c], (f, device))?)?,
            bias: param(Tensor::zeros_on([c], (f, device))?)?,
            running_mean: Tensor::zeros_on([c], (f, device))?,
            running_var: Tensor::ones_on([c], (f, device))?,
            num_batches_tracked: Tensor::zeros_on(
                Vec::<usize>::new(),
                (crate::DType::I64, device),
            )?,
            eps: 1e-5,
            momentum: 0.1,
            spatial,
            training: Training::default(),
        })
    }
}

impl Forward for BatchNorm {
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
        if self.training.get() {
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
            let (y, mean, var) = F::batch_norm_train(x, &self.weight, &self.bias, self.eps)?;
            crate::no_grad_scope(|| -> Result<()> {
                super::running_stats::update(
                    &self.running_mean,
                    &self.running_var,
                    (&mean, &var),
                    self.momentum,
                    count,
                )?;
                self.num_batches_tracked.add_(1)?;
                Ok(())
            })?;
            return Ok(y);
        }
        x.sub(&self.running_mean.reshape(shape.clone())?)?
            .div(
                &self
                    .running_var
                    .reshape(shape.clone())?
                    .add_scalar(self.eps)?
                    .sqrt()?,
            )?
            .mul(&self.weight.reshape(shape.clone())?)?
            .add(&self.bias.reshape(shape)?)
    }
}

/// Layer normalisation over the last dims, with an elementwise affine transform.
#[derive(Module)]
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
            weight: param(Tensor::ones_on(normalized_shape.to_vec(), (f, device))?)?,
            bias: param(Tensor::zeros_on(normalized_shape.to_vec(), (f, device))?)?,
            eps: 1e-5,
        })
    }
}

impl Forward for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let shape = self.weight.shape().to_vec();
        F::layer_norm(x, &shape, Some(&self.weight), Some(&self.bias), self.eps)
    }
}

/// Group normalisation of `[N, C, ...]` over groups of channels, with a per-channel affine
/// transform (`nn.GroupNorm(num_groups, num_channels)`).
#[derive(Module)]
pub struct GroupNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub num_groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    /// `num_channels` in `num_groups` groups (which must divide them), eps 1e-5.
    pub fn new(num_groups: usize, num_channels: usize, device: &Device) -> Result<GroupNorm> {
        if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
            return Err(Error::invalid(
                "GroupNorm",
                format!("num_groups {num_groups} must divide num_channels {num_channels}"),
            ));
        }
        Ok(GroupNorm {
            weight: param(Tensor::ones_on([num_channels], device)?)?,
            bias: param(Tensor::zeros_on([num_channels], device)?)?,
            num_groups,
            eps: 1e-5,
        })
    }
}

impl Forward for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::group_norm(
            x,
            self.num_groups,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
        )
    }
}

/// A lookup table of `num` vectors of size `dim`, indexed by I64 tensors of any shape.
#[derive(Module)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    /// `N(0, 1)` initial vectors, as PyTorch.
    pub fn new(num_embeddings: usize, embedding_dim: usize, device: &Device) -> Result<Embedding> {
        let w = crate::rng::with_default(|g| {
            init::normal(&[num_embeddings, embedding_dim], 0.0, 1.0, g, device)
        })?;
        Ok(Embedding { weight: param(w)? })
    }
}

impl Forward for Embedding {
    fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        let mut shape = idx.shape().to_vec();
        shape.push(self.weight.shape()[1]);
        self.weight
            .index_select(0, &idx.reshape([-1isize])?)?
            .reshape(shape)
    }
}
