//! Layers over spatial dims beyond Conv2d and the 2-D pools: `Conv1d`, `ConvTranspose2d`,
//! `AdaptiveAvgPool2d` and `Upsample`, with PyTorch's defaults and names.

use super::functional::{self as F, ConvArgs, Interpolation};
use super::layers::fan_in_params as drawn;
use super::module::Forward;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use wgrad_derive::Module;

fn check_groups(op: &'static str, c: usize, o: usize, groups: usize) -> Result<()> {
    if groups == 0 || !c.is_multiple_of(groups) || !o.is_multiple_of(groups) {
        return Err(Error::invalid(
            op,
            format!("groups {groups} must divide in_channels {c} and out_channels {o}"),
        ));
    }
    Ok(())
}

/// `nn.Conv1d(in, out, k)` on `[N, C, L]`; options as [`super::Conv2d`]'s.
#[derive(Module)]
pub struct Conv1d {
    /// `[out, in / groups, k]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// The step, zero padding, tap spacing and channel groups.
    #[module(skip)]
    pub args: ConvArgs,
}

impl Conv1d {
    /// Stride 1, no padding, dilation 1, one group, a bias.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        device: &Device,
    ) -> Result<Conv1d> {
        Conv1d::with(
            in_channels,
            out_channels,
            kernel_size,
            ConvArgs::default(),
            true,
            device,
        )
    }

    /// Any options (`groups` must divide both channel counts).
    pub fn with(
        c: usize,
        o: usize,
        k: usize,
        args: ConvArgs,
        bias: bool,
        device: &Device,
    ) -> Result<Conv1d> {
        check_groups("Conv1d", c, o, args.groups)?;
        let (weight, b) = drawn(&[o, c / args.groups, k], c / args.groups * k, o, device)?;
        Ok(Conv1d {
            weight,
            bias: bias.then_some(b),
            args,
        })
    }
}

impl Forward for Conv1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::conv1d(x, &self.weight, self.bias.as_ref(), self.args)
    }
}

/// `nn.ConvTranspose2d(in, out, k)`: the weight is `[in, out / groups, k, k]`, as PyTorch's.
#[derive(Module)]
pub struct ConvTranspose2d {
    /// `[in, out / groups, k, k]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// Stride, padding (removed from the output), dilation and groups.
    #[module(skip)]
    pub args: ConvArgs,
    /// Extra rows and columns on one side of the output (below the stride).
    pub output_padding: usize,
}

impl ConvTranspose2d {
    /// Stride 1, no padding, one group, a bias.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        device: &Device,
    ) -> Result<ConvTranspose2d> {
        ConvTranspose2d::with(
            in_channels,
            out_channels,
            kernel_size,
            ConvArgs::default(),
            0,
            true,
            device,
        )
    }

    /// Any options.
    pub fn with(
        c: usize,
        o: usize,
        k: usize,
        args: ConvArgs,
        output_padding: usize,
        bias: bool,
        device: &Device,
    ) -> Result<ConvTranspose2d> {
        check_groups("ConvTranspose2d", c, o, args.groups)?;
        // PyTorch's fan-in of a transposed weight [in, out/g, k, k] is its dim 1 times k^2.
        let (weight, b) = drawn(
            &[c, o / args.groups, k, k],
            o / args.groups * k * k,
            o,
            device,
        )?;
        Ok(ConvTranspose2d {
            weight,
            bias: bias.then_some(b),
            args,
            output_padding,
        })
    }
}

impl Forward for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::conv_transpose2d(
            x,
            &self.weight,
            self.bias.as_ref(),
            self.args,
            self.output_padding,
        )
    }
}

/// `nn.AdaptiveAvgPool2d((oh, ow))`.
#[derive(Debug, Clone, Copy, Module)]
pub struct AdaptiveAvgPool2d {
    /// The output's height and width.
    pub output_size: (usize, usize),
}

impl AdaptiveAvgPool2d {
    /// Pool to `output_size`.
    pub fn new(output_size: (usize, usize)) -> AdaptiveAvgPool2d {
        AdaptiveAvgPool2d { output_size }
    }
}

impl Forward for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::adaptive_avg_pool2d(x, self.output_size)
    }
}

/// `nn.Upsample(scale_factor=, mode=)`: resize the spatial dims by a factor.
#[derive(Debug, Clone, Copy, Module)]
pub struct Upsample {
    /// The factor on every spatial dim.
    pub scale_factor: f64,
    /// Nearest or (bi)linear.
    #[module(skip)]
    pub mode: Interpolation,
}

impl Upsample {
    /// Nearest-neighbour upsampling by `scale_factor`.
    pub fn new(scale_factor: f64) -> Upsample {
        Upsample {
            scale_factor,
            mode: Interpolation::Nearest,
        }
    }

    /// How new samples are computed.
    pub fn mode(mut self, mode: Interpolation) -> Self {
        self.mode = mode;
        self
    }
}

impl Forward for Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        F::interpolate(x, &F::scaled_size(x, self.scale_factor)?, self.mode)
    }
}
