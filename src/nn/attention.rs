//! Multi-head attention (`nn.MultiheadAttention`, `F.multi_head_attention_forward`) with
//! PyTorch's parameter layout: `in_proj_weight [3E, E]` holding the q, k and v projections
//! as blocks, `in_proj_bias [3E]`, and `out_proj` (a Linear).

use super::functional::{self as F, AttentionMask};
use super::layers::Linear;
use super::module::Forward;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use wgrad_derive::Module;

/// The masks of one attention call, as PyTorch's MultiheadAttention takes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttentionMasks<'a> {
    /// `[B, S]`, true at padding keys, which no query attends to.
    pub key_padding_mask: Option<&'a Tensor>,
    /// `[L, S]` (or `[B * heads, L, S]`): bool, true where attention is *not* allowed; or
    /// float, added to the scores.
    pub attn_mask: Option<&'a Tensor>,
    /// Hide the keys after each query (L = S).
    pub is_causal: bool,
}

/// `nn.MultiheadAttention(embed_dim, num_heads)` with PyTorch's names (`in_proj_weight`,
/// `in_proj_bias`, `out_proj.weight`, `out_proj.bias`).
#[derive(Module)]
pub struct MultiheadAttention {
    /// `[3E, E]`: the query, key and value projections, stacked.
    pub in_proj_weight: Tensor,
    /// `[3E]`.
    pub in_proj_bias: Option<Tensor>,
    /// The output projection.
    pub out_proj: Linear,
    /// Heads the embedding splits into.
    pub num_heads: usize,
    /// Inputs and output are `[B, L, E]` instead of `[L, B, E]`.
    pub batch_first: bool,
}

impl MultiheadAttention {
    /// `embed_dim` split into `num_heads` (which must divide it), with biases; the input
    /// projection Xavier-uniform and its bias zero, as PyTorch initialises them.
    pub fn new(embed_dim: usize, num_heads: usize, device: &Device) -> Result<MultiheadAttention> {
        if num_heads == 0 || !embed_dim.is_multiple_of(num_heads) {
            return Err(Error::invalid(
                "MultiheadAttention",
                format!("num_heads {num_heads} must divide embed_dim {embed_dim}"),
            ));
        }
        let w = crate::rng::with_default(|g| {
            super::init::xavier_uniform(&[3 * embed_dim, embed_dim], 1.0, g, device)
        })?;
        let out_proj = Linear::new(embed_dim, embed_dim, device)?;
        if let Some(b) = &out_proj.bias {
            let _g = crate::no_grad();
            b.zero_()?;
        }
        Ok(MultiheadAttention {
            in_proj_weight: w.requires_grad_(true)?,
            in_proj_bias: Some(Tensor::zeros_on([3 * embed_dim], device)?.requires_grad_(true)?),
            out_proj,
            num_heads,
            batch_first: false,
        })
    }

    /// `[B, L, E]` inputs and output.
    pub fn batch_first(mut self, on: bool) -> Self {
        self.batch_first = on;
        self
    }

    /// Attend from `query` to `key`/`value` (self-attention: the same tensor three times).
    pub fn forward(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        masks: AttentionMasks<'_>,
    ) -> Result<Tensor> {
        multi_head_attention_forward(
            query,
            key,
            value,
            self.num_heads,
            &self.in_proj_weight,
            self.in_proj_bias.as_ref(),
            &self.out_proj,
            masks,
            self.batch_first,
        )
    }
}

/// The computation of [`MultiheadAttention`] (`F.multi_head_attention_forward`), on
/// `[L, B, E]` query and `[S, B, E]` key and value (or batch first).
#[allow(clippy::too_many_arguments)]
pub fn multi_head_attention_forward(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    num_heads: usize,
    in_proj_weight: &Tensor,
    in_proj_bias: Option<&Tensor>,
    out_proj: &Linear,
    masks: AttentionMasks<'_>,
    batch_first: bool,
) -> Result<Tensor> {
    const OP: &str = "multi_head_attention";
    let time_first = |t: &Tensor| {
        if batch_first {
            t.transpose(0, 1)
        } else {
            Ok(t.clone())
        }
    };
    let (q, k, v) = (time_first(query)?, time_first(key)?, time_first(value)?);
    if q.ndim() != 3 || k.ndim() != 3 || v.ndim() != 3 {
        return Err(Error::shapes(
            OP,
            query.shape(),
            key.shape(),
            "expected 3-D query, key and value",
        ));
    }
    let (l, b, e) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let s = k.shape()[0];
    if num_heads == 0 || e % num_heads != 0 || in_proj_weight.shape() != [3 * e, e] {
        return Err(Error::shapes(
            OP,
            &[3 * e, e],
            in_proj_weight.shape(),
            format!("in_proj_weight must be [3E, E] with num_heads {num_heads} dividing E {e}"),
        ));
    }
    let dh = e / num_heads;
    let w = in_proj_weight.chunk(3, 0)?;
    let bias = in_proj_bias.map(|b| b.chunk(3, 0)).transpose()?;
    let project = |x: &Tensor, i: usize, len: usize| -> Result<Tensor> {
        let y = F::linear(x, &w[i], bias.as_ref().map(|b| &b[i]))?;
        // [len, B, E] -> [B, heads, len, Dh]
        y.reshape([len, b, num_heads, dh])?.permute([1, 2, 0, 3])
    };
    let (qh, kh, vh) = (project(&q, 0, l)?, project(&k, 1, s)?, project(&v, 2, s)?);
    // One additive mask [B, heads or 1, L, S] from the padding and attention masks.
    let mut additive: Option<Tensor> = None;
    let mut add = |m: Tensor| -> Result<()> {
        additive = Some(match additive.take() {
            Some(a) => a.add(&m)?,
            None => m,
        });
        Ok(())
    };
    let hide = |blocked: &Tensor| -> Result<Tensor> {
        Tensor::zeros_on(blocked.shape(), (DType::F32, blocked.device()))?
            .masked_fill(blocked, f64::NEG_INFINITY)
    };
    if let Some(pad) = masks.key_padding_mask {
        if pad.shape() != [b, s] || pad.dtype() != DType::Bool {
            return Err(Error::shapes(
                OP,
                &[b, s],
                pad.shape(),
                "key_padding_mask must be Bool [B, S]",
            ));
        }
        add(hide(pad)?.reshape([b, 1, 1, s])?)?;
    }
    if let Some(m) = masks.attn_mask {
        let m = if m.dtype() == DType::Bool {
            hide(m)?
        } else {
            m.clone()
        };
        let m = match m.ndim() {
            2 => m.reshape([1, 1, l, s])?,
            3 => m.reshape([b, num_heads, l, s])?,
            _ => {
                return Err(Error::bad_shape(
                    OP,
                    m.shape(),
                    "attn_mask must be [L, S] or [B * heads, L, S]",
                ))
            }
        };
        add(m)?;
    }
    let mask = additive.as_ref().map(AttentionMask::Add);
    let heads = F::scaled_dot_product_attention(&qh, &kh, &vh, mask, masks.is_causal, None)?;
    // [B, heads, L, Dh] -> [L, B, E]
    let merged = heads.permute([2, 0, 1, 3])?.reshape([l, b, e])?;
    let out = out_proj.forward(&merged)?;
    if batch_first {
        out.transpose(0, 1)
    } else {
        Ok(out)
    }
}
