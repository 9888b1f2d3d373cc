//! Layer and group normalisation (`F.layer_norm`, `F.group_norm`) and batch normalisation
//! with the batch's statistics (what `nn::BatchNorm` trains with), with the biased
//! variance PyTorch uses, and the elementwise affine transform.

use super::normalize;
use crate::error::{Error, Result};
use crate::tensor::fused::{given, through_f32};
use crate::tensor::Tensor;

/// Normalise over the trailing dims of shape `normalized_shape`, then `* weight + bias`.
/// One fused op on contiguous CPU tensors (`tensor/fused/layer_norm.rs`).
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    if let Some([x]) = crate::autocast::widened([x])? {
        return layer_norm(&x, normalized_shape, weight, bias, eps);
    }
    if let Some(y) = through_f32([Some(x), weight, bias], |[x, w, b]| {
        layer_norm(given("layer_norm", x)?, normalized_shape, w, b, eps)
    })? {
        return Ok(y);
    }
    let k = normalized_shape.len();
    if k == 0 || x.ndim() < k || x.shape()[x.ndim() - k..] != *normalized_shape {
        return Err(Error::shapes(
            "layer_norm",
            x.shape(),
            normalized_shape,
            "the input must end with the normalized shape",
        ));
    }
    if let Some(y) = crate::tensor::fused::layer_norm::layer_norm(x, k, weight, bias, eps)? {
        return Ok(y);
    }
    layer_norm_composite(x, k, weight, bias, eps)
}

/// [`layer_norm`] over the last `k` dims composed from primitives (shapes checked by it).
pub(crate) fn layer_norm_composite(
    x: &Tensor,
    k: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let dims: Vec<isize> = (x.ndim() - k..x.ndim()).map(|d| d as isize).collect();
    affine(normalize(x, &dims, eps)?.0, weight, bias)
}

/// Normalise `x [N, C, ...]` over groups of `C / num_groups` channels (and the rest of
/// the dims), then `* weight[c] + bias[c]`.
pub fn group_norm(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    if let Some([x]) = crate::autocast::widened([x])? {
        return group_norm(&x, num_groups, weight, bias, eps);
    }
    if let Some(y) = through_f32([Some(x), weight, bias], |[x, w, b]| {
        group_norm(given("group_norm", x)?, num_groups, w, b, eps)
    })? {
        return Ok(y);
    }
    if x.ndim() < 2 || num_groups == 0 || !x.shape()[1].is_multiple_of(num_groups) {
        return Err(Error::bad_shape(
            "group_norm",
            x.shape(),
            format!("expected [N, C, ...] with C divisible by num_groups {num_groups}"),
        ));
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    // Sizes given in full: `-1` cannot be inferred from an empty batch.
    let per_group = x.shape()[1..].iter().product::<usize>() / num_groups;
    let y = normalize(&x.reshape([n, num_groups, per_group])?, &[2], eps)?
        .0
        .reshape(x.shape())?;
    // The per-channel affine, broadcast over the spatial dims.
    let mut channel = vec![1usize; x.ndim()];
    channel[1] = c;
    let shaped = |t: Option<&Tensor>| t.map(|t| t.reshape(channel.clone())).transpose();
    affine(y, shaped(weight)?.as_ref(), shaped(bias)?.as_ref())
}

fn affine(y: Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = match weight {
        Some(w) => y.mul(w)?,
        None => y,
    };
    match bias {
        Some(b) => y.add(b),
        None => Ok(y),
    }
}

/// Batch normalisation of `x [N, C, ...]` with the batch's own statistics (training mode):
/// normalised over every dim but the channels, then `* weight[c] + bias[c]`. Returns the
/// output with each channel's mean and biased variance (`[C]`, without a graph: what the
/// running statistics are updated from). One fused op on the CPU
/// (`tensor/fused/norm.rs`), composed from primitives elsewhere.
pub(crate) fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = x.shape().get(1).copied().unwrap_or(0);
    if x.ndim() < 2 || weight.shape() != [c] || bias.shape() != [c] {
        return Err(Error::shapes(
            "batch_norm",
            x.shape(),
            weight.shape(),
            format!(
                "expected x [N, C, ...] with weight and bias [C] (bias {:?})",
                bias.shape()
            ),
        ));
    }
    if let Some(out) = crate::tensor::fused::norm::batch_norm(x, weight, bias, eps)? {
        return Ok(out);
    }
    batch_norm_composite(x, weight, bias, eps)
}

/// [`batch_norm_train`] composed from primitives (shapes checked by it).
pub(crate) fn batch_norm_composite(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = weight.numel();
    let dims: Vec<isize> = (0..x.ndim() as isize).filter(|&d| d != 1).collect();
    let mut shape = vec![1; x.ndim()];
    shape[1] = c;
    let (y, mean, var) = normalize(x, &dims, eps)?;
    let y = y
        .mul(&weight.reshape(shape.clone())?)?
        .add(&bias.reshape(shape)?)?;
    Ok((y, mean.reshape([c])?.detach(), var.reshape([c])?.detach()))
}
