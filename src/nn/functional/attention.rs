//! Scaled dot-product attention (`F.scaled_dot_product_attention`), composed from matmul,
//! masking and softmax.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What an attention mask holds.
#[derive(Debug, Clone, Copy)]
pub enum AttentionMask<'a> {
    /// True where a query may attend to a key (PyTorch's boolean `attn_mask`).
    Allow(&'a Tensor),
    /// Added to the scores before the softmax (`-inf` hides a key).
    Add(&'a Tensor),
}

/// `softmax(q k^T * scale + mask) v` over `q [.., L, E]`, `k [.., S, E]`, `v [.., S, Ev]`;
/// `is_causal` hides the keys after each query (the upper triangle), `scale` defaults to
/// `1 / sqrt(E)`. A bool tensor given as the mask is `Allow`, a float one `Add`.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<AttentionMask<'_>>,
    is_causal: bool,
    scale: Option<f64>,
) -> Result<Tensor> {
    const OP: &str = "scaled_dot_product_attention";
    if q.ndim() < 2 || k.ndim() < 2 || v.ndim() < 2 {
        return Err(Error::shapes(
            OP,
            q.shape(),
            k.shape(),
            "q, k and v need at least 2 dims",
        ));
    }
    let e = q.shape()[q.ndim() - 1];
    let scale = scale.unwrap_or(1.0 / (e.max(1) as f64).sqrt());
    let mut scores = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(scale)?;
    let (l, s) = (
        scores.shape()[scores.ndim() - 2],
        scores.shape()[scores.ndim() - 1],
    );
    if is_causal {
        let allowed = Tensor::ones_on([l, s], (DType::Bool, q.device()))?.tril(0)?;
        scores = scores.masked_fill(&allowed.logical_not()?, f64::NEG_INFINITY)?;
    }
    match mask {
        Some(AttentionMask::Allow(m)) => {
            if m.dtype() != DType::Bool {
                return Err(Error::UnsupportedDType {
                    op: OP,
                    dtype: m.dtype(),
                    shape: m.shape().to_vec(),
                    expected: "Bool for an Allow mask",
                });
            }
            scores = Tensor::where_cond(m, &scores, f64::NEG_INFINITY)?;
        }
        Some(AttentionMask::Add(m)) => scores = scores.add(m)?,
        None => {}
    }
    scores.softmax(-1)?.matmul(v)
}
