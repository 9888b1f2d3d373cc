//! The convolutions beyond `conv2d`: `conv1d` (a conv2d over a height of one) and
//! `conv_transpose2d` (zeros inserted between the inputs, then a conv2d with the kernel
//! flipped and its channel roles swapped), so both reuse conv2d's kernels and gradients.

use super::{conv2d, pad, ConvArgs, PadMode};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// 1-D convolution: `x [N, C, L]`, `w [O, C / groups, k]`, `b [O]` (`F.conv1d`).
pub fn conv1d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, args: ConvArgs) -> Result<Tensor> {
    if x.ndim() != 3 || w.ndim() != 3 {
        return Err(Error::shapes(
            "conv1d",
            x.shape(),
            w.shape(),
            "expected x [N, C, L] and w [O, C / groups, k]",
        ));
    }
    // Padding only along L: the height of one must stay one.
    let p = args.padding as isize;
    let xp = pad(x, &[p, p], PadMode::Constant(0.0))?;
    let flat = ConvArgs { padding: 0, ..args };
    conv2d(&xp.unsqueeze(2)?, &w.unsqueeze(2)?, b, flat)?.squeeze_dim(2)
}

/// Transposed 2-D convolution (`F.conv_transpose2d`): `x [N, Cin, H, W]`,
/// `w [Cin, Cout / groups, kh, kw]`; the output is `(H - 1) s - 2 p + d (k - 1) +
/// output_padding + 1` high (and likewise wide).
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    args: ConvArgs,
    output_padding: usize,
) -> Result<Tensor> {
    if let Some((x, w, b)) = crate::autocast::lowered_with_bias(x, w, b)? {
        return conv_transpose2d(&x, &w, b.as_ref(), args, output_padding);
    }
    const OP: &str = "conv_transpose2d";
    let ConvArgs {
        stride,
        padding,
        dilation,
        groups,
    } = args;
    let (&[_, cin, h, wd], &[cw, cout_g, kh, kw]) = (x.shape(), w.shape()) else {
        return Err(Error::shapes(
            OP,
            x.shape(),
            w.shape(),
            "expected x [N, Cin, H, W] and w [Cin, Cout / groups, kh, kw]",
        ));
    };
    if stride == 0
        || dilation == 0
        || groups == 0
        || cw != cin
        || cin % groups != 0
        || output_padding >= stride.max(dilation)
    {
        return Err(Error::shapes(
            OP,
            x.shape(),
            w.shape(),
            format!("weight.shape[0] must be the input's channels, groups {groups} must divide them, stride and dilation positive and output_padding {output_padding} below stride or dilation"),
        ));
    }
    // The output is (n - 1) s - 2 p + d (k - 1) + output_padding + 1 along each spatial dim:
    // in i128 (no argument can overflow it), at least 1, and with room on the device.
    let too_large = || Error::invalid(OP, format!("{args:?} give an output too large"));
    let size = |n: usize, k: usize| -> Result<usize> {
        let [n, k, s, p, d, o] =
            [n, k, stride, padding, dilation, output_padding].map(|v| v as i128);
        let out = (n - 1) * s - 2 * p + d * (k - 1) + o + 1;
        if k == 0 || out < 1 {
            return Err(Error::shapes(
                OP,
                x.shape(),
                w.shape(),
                format!("{args:?} and output_padding {output_padding} give an empty output"),
            ));
        }
        usize::try_from(out).map_err(|_| too_large())
    };
    let channels = groups.saturating_mul(cout_g);
    let out = crate::Shape::from([x.shape()[0], channels, size(h, kh)?, size(wd, kw)?]);
    crate::storage::room_on(x.device(), OP, out.numel(), x.dtype())?;
    // Zeros between the inputs: [.., H, W] -> [.., (H - 1) s + 1, (W - 1) s + 1].
    let spread = |t: &Tensor, dim: isize, len: usize| -> Result<Tensor> {
        if stride == 1 || len <= 1 {
            return Ok(t.clone());
        }
        let d = (dim + t.ndim() as isize) as usize;
        let mut zeros_shape = t.shape().to_vec();
        zeros_shape.insert(d + 1, stride - 1);
        let zeros = Tensor::zeros_on(zeros_shape, (t.dtype(), t.device()))?;
        let mut merged = t.shape().to_vec();
        merged[d] = len * stride;
        Tensor::cat(&[&t.unsqueeze(d as isize + 1)?, &zeros], d as isize + 1)?
            .reshape(merged)?
            .narrow(d as isize, 0, (len - 1) * stride + 1)
    };
    let xs = spread(&spread(x, -1, wd)?, -2, h)?;
    // The pads d (k - 1) - p before and that plus output_padding after: negative ones crop.
    let edge = |k: usize, extra: usize| {
        let e = (dilation as i128) * (k as i128 - 1) - padding as i128 + extra as i128;
        isize::try_from(e).map_err(|_| too_large())
    };
    let pads = [
        edge(kw, 0)?,
        edge(kw, output_padding)?,
        edge(kh, 0)?,
        edge(kh, output_padding)?,
    ];
    let xp = pad(&xs, &pads, PadMode::Constant(0.0))?;
    // [Cin, Cout/g, kh, kw] -> flipped, per group [Cout/g, Cin/g] -> [Cout, Cin/g, kh, kw].
    let wt = w
        .flip([2, 3])?
        .reshape([groups, cin / groups, cout_g, kh, kw])?
        .transpose(1, 2)?
        .reshape([groups * cout_g, cin / groups, kh, kw])?;
    conv2d(
        &xp,
        &wt,
        b,
        ConvArgs {
            stride: 1,
            padding: 0,
            dilation,
            groups,
        },
    )
}
