//! Neural-network functions built from tensor primitives, so they run on every backend and
//! differentiate without backward code of their own: `linear`, convolution through im2col
//! (the windows as a `Tensor::unfold` view, copied into columns, times the weight), pooling
//! (a reduction over the same windows), normalisation, GELU, dropout. On the CPU the
//! convolution, average pooling, layer normalisation and batch normalisation's training
//! pass run as fused ops (`tensor/fused/`) where their operands allow; the composites here
//! are their reference and what `create_graph` differentiates.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

mod attention;
mod conv;
mod norm;
mod pool;
mod resample;

pub use attention::{scaled_dot_product_attention, AttentionMask};
pub use conv::{conv1d, conv_transpose2d};
pub(crate) use norm::{batch_norm_composite, batch_norm_train, layer_norm_composite};
pub use norm::{group_norm, layer_norm};
pub use pool::{adaptive_avg_pool2d, adaptive_max_pool2d};
pub use resample::{interpolate, one_hot, pad, scaled_size, Interpolation, PadMode};

/// `x @ w.T + b` (`torch.nn.functional.linear`); `x` may have any leading dims.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    // One op under autocast, as PyTorch's: the bias joins in the 16-bit type too.
    if let Some((x, w, b)) = crate::autocast::lowered_with_bias(x, w, b)? {
        return linear(&x, &w, b.as_ref());
    }
    let y = x.matmul(&w.t()?)?;
    match b {
        Some(b) => y.add(b),
        None => Ok(y),
    }
}

pub(crate) fn check_4d(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match x.shape() {
        &[n, c, h, w] => Ok((n, c, h, w)),
        s => Err(Error::bad_shape(op, s, "expected a 4-D input [N, C, H, W]")),
    }
}

/// Zero padding of the last two dims by `p` on every side.
pub fn pad2d(x: &Tensor, p: usize) -> Result<Tensor> {
    check_4d("pad2d", x)?;
    let p = isize::try_from(p)
        .map_err(|_| Error::invalid("pad2d", format!("padding {p} is too large")))?;
    pad(x, &[p, p, p, p], PadMode::Constant(0.0))
}

/// Output size of a sliding window of `k` taps `dilation` apart.
fn out_size(
    op: &'static str,
    size: usize,
    k: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<usize> {
    if stride == 0 || k == 0 || dilation == 0 {
        return Err(Error::invalid(
            op,
            "kernel size, stride and dilation must be positive",
        ));
    }
    let span = (k - 1)
        .checked_mul(dilation)
        .and_then(|s| s.checked_add(1))
        .ok_or_else(|| Error::invalid(op, format!("dilation {dilation} is too large")))?;
    let padded = padding
        .checked_mul(2)
        .and_then(|p| p.checked_add(size))
        .ok_or_else(|| Error::invalid(op, format!("padding {padding} is too large")))?;
    if padded < span {
        return Err(Error::invalid(
            op,
            format!("kernel {k} (dilation {dilation}) is larger than the padded input {padded}"),
        ));
    }
    Ok((padded - span) / stride + 1)
}

/// The arguments of a convolution after the tensors, with PyTorch's defaults (stride 1,
/// padding 0, dilation 1, groups 1): `ConvArgs { padding: 2, ..Default::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvArgs {
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on every side.
    pub padding: usize,
    /// Spacing between kernel taps.
    pub dilation: usize,
    /// Channel groups: input and output channels split into `groups` independent convolutions.
    pub groups: usize,
}

impl Default for ConvArgs {
    fn default() -> Self {
        ConvArgs {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// The sliding `kh x kw` windows of `x [N, C, H, W]` as a view `[N, C, OH, OW, kh, kw]`
/// into the (padded) input: two [`Tensor::unfold`]s, whose gradient sums the windows back.
fn windows(x: &Tensor, kh: usize, kw: usize, args: ConvArgs) -> Result<Tensor> {
    let ConvArgs {
        stride,
        padding,
        dilation,
        ..
    } = args;
    let (_, _, h, w) = check_4d("unfold", x)?;
    out_size("unfold", h, kh, stride, padding, dilation)?;
    out_size("unfold", w, kw, stride, padding, dilation)?;
    let xp = if padding > 0 {
        pad2d(x, padding)?
    } else {
        x.clone()
    };
    // A dilated window spans (k - 1) d + 1 elements, of which every d-th is a tap.
    let span = |k: usize| (k - 1) * dilation + 1;
    let win = xp
        .unfold(2, span(kh), stride)?
        .unfold(3, span(kw), stride)?;
    if dilation == 1 {
        return Ok(win);
    }
    let d = dilation as isize;
    win.slice(4, None, None, d)?.slice(5, None, None, d)
}

/// The sliding `kh x kw` windows of `x [N, C, H, W]` as `[N, C, OH * OW, kh * kw]` (im2col,
/// `F.unfold` before its final flatten), with the output height and width.
pub fn unfold(x: &Tensor, kh: usize, kw: usize, args: ConvArgs) -> Result<(Tensor, usize, usize)> {
    let win = windows(x, kh, kw, args)?;
    let &[n, c, oh, ow, _, _] = win.shape() else {
        return Err(Error::bad_shape("unfold", win.shape(), "expected 6 dims"));
    };
    Ok((win.reshape([n, c, oh * ow, kh * kw])?, oh, ow))
}

/// 2-D convolution (cross-correlation, as PyTorch): `x [N, C, H, W]`,
/// `w [O, C / groups, kh, kw]`, `b [O]`. One fused op on the CPU (`tensor/fused/conv.rs`), the
/// windows times the weight elsewhere (`conv2d_composite`).
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, args: ConvArgs) -> Result<Tensor> {
    if let Some((x, w, b)) = crate::autocast::lowered_with_bias(x, w, b)? {
        return conv2d(&x, &w, b.as_ref(), args);
    }
    if let Some(y) = crate::tensor::fused::through_f32([Some(x), Some(w), b], |[x, w, b]| {
        let given = crate::tensor::fused::given;
        conv2d(given("conv2d", x)?, given("conv2d", w)?, b, args)
    })? {
        return Ok(y);
    }
    let (n, c, h, wd) = check_4d("conv2d", x)?;
    let (o, cw, kh, kw) = check_4d("conv2d", w)?;
    let g = args.groups;
    if g == 0 || c % g != 0 || o % g != 0 || cw * g != c {
        return Err(Error::shapes(
            "conv2d",
            x.shape(),
            w.shape(),
            format!(
                "input has {c} channels and weight {o} x {cw} with groups {g}: expected both channel counts divisible by groups and weight.shape[1] == {c} / groups"
            ),
        ));
    }
    if let Some(b) = b {
        if b.shape() != [o] {
            return Err(Error::shapes(
                "conv2d",
                w.shape(),
                b.shape(),
                format!("expected a bias of shape [{o}] for weight {:?}", w.shape()),
            ));
        }
    }
    let (stride, padding, dilation) = (args.stride, args.padding, args.dilation);
    let geometry = crate::cpu::conv::ConvGeometry {
        n,
        c,
        h,
        w: wd,
        o,
        kh,
        kw,
        oh: out_size("conv2d", h, kh, stride, padding, dilation)?,
        ow: out_size("conv2d", wd, kw, stride, padding, dilation)?,
        stride,
        padding,
        dilation,
        groups: g,
    };
    if let Some(y) = crate::tensor::fused::conv::conv2d(x, w, b, geometry, args)? {
        return Ok(y);
    }
    conv2d_composite(x, w, b, args)
}

/// [`conv2d`] composed from primitives (shapes checked by it): the windows as a view,
/// copied into columns, times the weight.
pub(crate) fn conv2d_composite(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    args: ConvArgs,
) -> Result<Tensor> {
    let (n, _, _, _) = check_4d("conv2d", x)?;
    let (o, cw, kh, kw) = check_4d("conv2d", w)?;
    let g = args.groups;
    let win = windows(x, kh, kw, args)?;
    let (oh, ow) = (win.shape()[2], win.shape()[3]);
    // Columns [N, G, C/G * kh * kw, OH * OW], whose copy from the windows runs along the
    // input's rows; the weight [G, O/G, C/G * kh * kw] on the left, so the product comes out
    // [N, G, O/G, OH * OW]: already NCHW, no transpose after.
    let ck = cw * kh * kw;
    let cols = win
        .permute([0, 1, 4, 5, 2, 3])?
        .reshape([n, g, ck, oh * ow])?;
    let y = w
        .reshape([g, o / g, ck])?
        .matmul(&cols)?
        .reshape([n, o, oh * ow])?;
    let y = match b {
        Some(b) => y.add(&b.reshape([o, 1])?)?,
        None => y,
    };
    y.reshape([n, o, oh, ow])
}

/// Max over `k x k` windows with `stride` (`torch.nn.functional.max_pool2d`).
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize) -> Result<Tensor> {
    let args = ConvArgs {
        stride,
        ..ConvArgs::default()
    };
    windows(x, k, k, args)?.max_dims([4, 5], false)
}

/// Mean over `k x k` windows with `stride` (`torch.nn.functional.avg_pool2d`). One fused
/// op on the CPU (`tensor/fused/pool.rs`), the windows' mean elsewhere.
pub fn avg_pool2d(x: &Tensor, k: usize, stride: usize) -> Result<Tensor> {
    let (n, c, h, w) = check_4d("avg_pool2d", x)?;
    let geometry = crate::cpu::pooling::PoolGeometry {
        planes: n * c,
        h,
        w,
        k,
        stride,
        oh: out_size("avg_pool2d", h, k, stride, 0, 1)?,
        ow: out_size("avg_pool2d", w, k, stride, 0, 1)?,
    };
    if geometry.planes > 0 {
        if let Some(y) = crate::tensor::fused::pool::avg_pool2d(x, geometry)? {
            return Ok(y);
        }
    }
    avg_pool2d_composite(x, k, stride)
}

/// [`avg_pool2d`] composed from primitives: the mean of the windows view.
pub(crate) fn avg_pool2d_composite(x: &Tensor, k: usize, stride: usize) -> Result<Tensor> {
    let args = ConvArgs {
        stride,
        ..ConvArgs::default()
    };
    windows(x, k, k, args)?.mean_dims([4, 5], false)
}

/// The error function (a primitive: [`Tensor::erf`]).
pub fn erf(x: &Tensor) -> Result<Tensor> {
    x.erf()
}

/// `log(1 + e^(beta x)) / beta`, or `x` where `beta x > threshold` (`F.softplus`). The
/// exponent is clamped at the threshold, so no branch overflows.
pub fn softplus(x: &Tensor, beta: f64, threshold: f64) -> Result<Tensor> {
    let bx = x.mul_scalar(beta)?;
    let smooth = bx.clamp_max(threshold)?.exp()?.log1p()?.div_scalar(beta)?;
    Tensor::where_cond(&bx.gt_scalar(threshold)?, x, &smooth)
}

/// `x` where `x > 0`, `negative_slope * x` elsewhere (`F.leaky_relu`).
pub fn leaky_relu(x: &Tensor, negative_slope: f64) -> Result<Tensor> {
    Tensor::where_cond(&x.gt_scalar(0.0)?, x, &x.mul_scalar(negative_slope)?)
}

/// `x` where `x > 0`, `alpha (e^x - 1)` elsewhere (`F.elu`).
pub fn elu(x: &Tensor, alpha: f64) -> Result<Tensor> {
    let negative = x.clamp_max(0.0)?.expm1()?.mul_scalar(alpha)?;
    Tensor::where_cond(&x.gt_scalar(0.0)?, x, &negative)
}

/// `x` clamped to `[min_val, max_val]` (`F.hardtanh`).
pub fn hardtanh(x: &Tensor, min_val: f64, max_val: f64) -> Result<Tensor> {
    x.clamp(min_val, max_val)
}

/// `x tanh(softplus(x))` (`F.mish`).
pub fn mish(x: &Tensor) -> Result<Tensor> {
    x.mul(&softplus(x, 1.0, 20.0)?.tanh()?)
}

/// `log(sigmoid(x))`, computed as `min(x, 0) - log(1 + e^-|x|)` so that neither side
/// overflows (`F.logsigmoid`).
pub fn logsigmoid(x: &Tensor) -> Result<Tensor> {
    x.clamp_max(0.0)?.sub(&x.abs()?.neg()?.exp()?.log1p()?)
}

/// `x sigmoid(x)` (`F.silu`, a primitive: [`Tensor::silu`]).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    x.silu()
}

/// GELU: `x * Phi(x)` (exact, through `erf`), or the tanh approximation.
pub fn gelu(x: &Tensor, tanh_approximation: bool) -> Result<Tensor> {
    if tanh_approximation {
        let inner = x
            .add(&x.pow_scalar(3.0)?.mul_scalar(0.044715)?)?
            .mul_scalar((2.0 / std::f64::consts::PI).sqrt())?;
        return x.mul(&inner.tanh()?.add_scalar(1.0)?)?.mul_scalar(0.5);
    }
    x.gelu()
}

/// Zero each element with probability `p` and scale the rest by `1 / (1 - p)`; the mask
/// comes from the global generator, drawn on the tensor's device.
pub fn dropout(x: &Tensor, p: f64) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::invalid(
            "dropout",
            format!("p must be in [0, 1), got {p}"),
        ));
    }
    if p == 0.0 {
        return Ok(x.clone());
    }
    let keep = Tensor::rand_on(x.shape(), x.device())?
        .ge_scalar(p)?
        .to_dtype(DType::F32)?;
    x.mul(&keep)?.div_scalar(1.0 - p)
}

/// Normalise over `dims` (keeping them), with the biased variance as PyTorch's norm layers.
pub fn normalize(x: &Tensor, dims: &[isize], eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let mean = x.mean_dims(dims, true)?;
    let centered = x.sub(&mean)?;
    let var = centered.square()?.mean_dims(dims, true)?;
    Ok((centered.div(&var.add_scalar(eps)?.sqrt()?)?, mean, var))
}

/// Cosine similarity along `dim` of two broadcastable tensors
/// (`F.cosine_similarity`): `sum(a b) / sqrt(max(sum(a^2) sum(b^2), eps^2))`.
pub fn cosine_similarity(a: &Tensor, b: &Tensor, dim: isize, eps: f64) -> Result<Tensor> {
    let dot = a.mul(b)?.sum_dims([dim], false)?;
    let na = a.square()?.sum_dims([dim], false)?;
    let nb = b.square()?.sum_dims([dim], false)?;
    dot.div(&na.mul(&nb)?.clamp_min(eps * eps)?.sqrt()?)
}
