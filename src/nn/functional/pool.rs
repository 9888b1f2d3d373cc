//! Adaptive pooling: output cell `i` of a dim of size `n` pooled to `o` covers the inputs
//! `floor(i n / o) .. ceil((i + 1) n / o)`, as PyTorch's adaptive pools.

use super::check_4d;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn cell(i: usize, n: usize, o: usize) -> (usize, usize) {
    (i * n / o, ((i + 1) * n).div_ceil(o))
}

fn check(op: &'static str, x: &Tensor, out: (usize, usize)) -> Result<(usize, usize)> {
    let (_, _, h, w) = check_4d(op, x)?;
    if out.0 == 0 || out.1 == 0 || h == 0 || w == 0 {
        return Err(Error::bad_shape(
            op,
            x.shape(),
            format!("output size {out:?} and the input's spatial sizes must be positive"),
        ));
    }
    Ok((h, w))
}

/// The averaging matrix `[o, n]` of one dim: row `i` is `1 / len` over cell `i`.
fn averaging(n: usize, o: usize) -> Result<Tensor> {
    const OP: &str = "adaptive_avg_pool2d";
    let len = o
        .checked_mul(n)
        .ok_or_else(|| Error::invalid(OP, format!("output size {o} is too large")))?;
    crate::storage::host_room(OP, len, crate::DType::F32)?;
    let mut m = vec![0f32; len];
    for i in 0..o {
        let (a, b) = cell(i, n, o);
        for j in a..b {
            m[i * n + j] = 1.0 / (b - a) as f32;
        }
    }
    Tensor::from_vec(m, [o, n])
}

/// Average over adaptive cells of `x [N, C, H, W]` to `[N, C, oh, ow]`
/// (`F.adaptive_avg_pool2d`): two small matmuls, `A_h x A_w^T`.
pub fn adaptive_avg_pool2d(x: &Tensor, output_size: (usize, usize)) -> Result<Tensor> {
    let (h, w) = check("adaptive_avg_pool2d", x, output_size)?;
    let ah = averaging(h, output_size.0)?.to_device(x.device())?;
    let aw = averaging(w, output_size.1)?.to_device(x.device())?;
    ah.matmul(x)?.matmul(&aw.t()?)
}

/// The maximum over adaptive cells (`F.adaptive_max_pool2d`, values).
pub fn adaptive_max_pool2d(x: &Tensor, output_size: (usize, usize)) -> Result<Tensor> {
    let (h, w) = check("adaptive_max_pool2d", x, output_size)?;
    let (oh, ow) = output_size;
    let mut rows = Vec::with_capacity(oh);
    for i in 0..oh {
        let (a, b) = cell(i, h, oh);
        let band = x.narrow(2, a, b - a)?.max_dims([2], true)?;
        let mut cells = Vec::with_capacity(ow);
        for j in 0..ow {
            let (c, d) = cell(j, w, ow);
            cells.push(band.narrow(3, c, d - c)?.max_dims([3], true)?);
        }
        rows.push(Tensor::cat(&cells.iter().collect::<Vec<_>>(), 3)?);
    }
    Tensor::cat(&rows.iter().collect::<Vec<_>>(), 2)
}
