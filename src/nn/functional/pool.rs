//! Adaptive pooling: output cell `i` of a dim of size `n` pooled to `o` covers the inputs
//! `floor(i n / o) .. ceil((i + 1) n / o)`, as PyTorch's adaptive pools.

use super::check_4d;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::Tensor;

fn cell(i: usize, n: usize, o: usize) -> (usize, usize) {
    // In u128: `(i + 1) n` passes usize for a large output of a large (expanded) input.
    let (i, n, o) = (i as u128, n as u128, o as u128);
    ((i * n / o) as usize, ((i + 1) * n).div_ceil(o) as usize)
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

/// The maximum over adaptive cells (`F.adaptive_max_pool2d`, values): per spatial dim, one
/// gather of every cell's window (a window shorter than the longest repeats its last row,
/// which leaves its maximum alone) and a maximum over the window: two gathers and two
/// maxima whatever the output size, where a narrow and a max per cell made millions of ops
/// of a large output.
pub fn adaptive_max_pool2d(x: &Tensor, output_size: (usize, usize)) -> Result<Tensor> {
    const OP: &str = "adaptive_max_pool2d";
    let (h, w) = check(OP, x, output_size)?;
    let (oh, ow) = output_size;
    let out = Shape::from([x.shape()[0], x.shape()[1], oh, ow]).numel();
    crate::storage::room_on(x.device(), OP, out, x.dtype())?;
    let rows = window_max(x, 2, h, oh)?;
    window_max(&rows, 3, w, ow)
}

/// The maximum over each adaptive cell of `dim` (size `n`, pooled to `o`).
fn window_max(x: &Tensor, dim: usize, n: usize, o: usize) -> Result<Tensor> {
    const OP: &str = "adaptive_max_pool2d";
    // A cell is at most ceil(n / o) + 1 long: room for that many indices per cell first.
    let bound = o.checked_mul(n.div_ceil(o) + 1);
    crate::storage::host_room(OP, bound.unwrap_or(usize::MAX), crate::DType::I64)?;
    let cells: Vec<(usize, usize)> = (0..o).map(|i| cell(i, n, o)).collect();
    let longest = cells.iter().map(|&(a, b)| b - a).max().unwrap_or(1);
    let len = o * longest;
    let index: Vec<i64> = cells
        .iter()
        .flat_map(|&(a, b)| (0..longest).map(move |r| (a + r).min(b - 1) as i64))
        .collect();
    let index = Tensor::from_vec(index, [len])?.to_device(x.device())?;
    let mut shape = x.shape().to_vec();
    shape.splice(dim..=dim, [o, longest]);
    x.index_select(dim as isize, &index)?
        .reshape(&shape)?
        .max_dims([dim as isize + 1], false)
}
