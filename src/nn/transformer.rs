//! `nn.TransformerEncoderLayer` and `nn.TransformerDecoderLayer`, with PyTorch's
//! submodule names (`self_attn`, `linear1`, `norm1`, ...), post-norm by default or pre-norm
//! (`norm_first`), ReLU or GELU. Public fields carry PyTorch's attribute names.
#![allow(missing_docs)]

use super::attention::{AttentionMasks, MultiheadAttention};
use super::functional as F;
use super::layers::{Dropout, LayerNorm, Linear};
use super::module::Forward;
use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;
use wgrad_derive::Module;

/// The feed-forward block's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// PyTorch's default.
    #[default]
    Relu,
    /// Exact GELU.
    Gelu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => F::gelu(x, false),
        }
    }
}

/// The options both layers share, with PyTorch's defaults.
#[derive(Debug, Clone, Copy)]
pub struct LayerOptions {
    /// Width of the feed-forward block (2048).
    pub dim_feedforward: usize,
    /// Dropout probability (0.1).
    pub dropout: f64,
    /// ReLU (default) or GELU.
    pub activation: Activation,
    /// `[B, T, E]` inputs (false: `[T, B, E]`).
    pub batch_first: bool,
    /// LayerNorm before each block instead of after (false).
    pub norm_first: bool,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: Activation::Relu,
            batch_first: false,
            norm_first: false,
        }
    }
}

/// Self-attention and a feed-forward block, each with a residual and a LayerNorm.
#[derive(Module)]
pub struct TransformerEncoderLayer {
    pub self_attn: MultiheadAttention,
    pub linear1: Linear,
    pub dropout: Dropout,
    pub linear2: Linear,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    pub dropout1: Dropout,
    pub dropout2: Dropout,
    #[module(skip)]
    pub activation: Activation,
    pub norm_first: bool,
}

/// What the feed-forward block of both layers is made of.
fn feed_forward(
    x: &Tensor,
    l1: &Linear,
    drop: &Dropout,
    l2: &Linear,
    act: Activation,
) -> Result<Tensor> {
    l2.forward(&drop.forward(&act.apply(&l1.forward(x)?)?)?)
}

impl TransformerEncoderLayer {
    /// `d_model` wide with `nhead` heads and PyTorch's defaults (see [`LayerOptions`]).
    pub fn new(d_model: usize, nhead: usize, device: &Device) -> Result<TransformerEncoderLayer> {
        TransformerEncoderLayer::with(d_model, nhead, LayerOptions::default(), device)
    }

    /// Any options.
    pub fn with(
        d_model: usize,
        nhead: usize,
        o: LayerOptions,
        device: &Device,
    ) -> Result<TransformerEncoderLayer> {
        Ok(TransformerEncoderLayer {
            self_attn: MultiheadAttention::new(d_model, nhead, device)?.batch_first(o.batch_first),
            linear1: Linear::new(d_model, o.dim_feedforward, device)?,
            dropout: Dropout::new(o.dropout)?,
            linear2: Linear::new(o.dim_feedforward, d_model, device)?,
            norm1: LayerNorm::new(&[d_model], device)?,
            norm2: LayerNorm::new(&[d_model], device)?,
            dropout1: Dropout::new(o.dropout)?,
            dropout2: Dropout::new(o.dropout)?,
            activation: o.activation,
            norm_first: o.norm_first,
        })
    }

    /// The layer on `src` with its masks.
    pub fn forward_masked(&self, src: &Tensor, masks: AttentionMasks<'_>) -> Result<Tensor> {
        let sa = |x: &Tensor| {
            self.dropout1
                .forward(&self.self_attn.forward(x, x, x, masks)?)
        };
        let ff = |x: &Tensor| -> Result<Tensor> {
            self.dropout2.forward(&feed_forward(
                x,
                &self.linear1,
                &self.dropout,
                &self.linear2,
                self.activation,
            )?)
        };
        if self.norm_first {
            let x = src + sa(&self.norm1.forward(src)?)?;
            Ok(&x + ff(&self.norm2.forward(&x)?)?)
        } else {
            let x = self.norm1.forward(&(src + sa(src)?))?;
            self.norm2.forward(&(&x + ff(&x)?))
        }
    }
}

impl Forward for TransformerEncoderLayer {
    fn forward(&self, src: &Tensor) -> Result<Tensor> {
        self.forward_masked(src, AttentionMasks::default())
    }
}

/// Self-attention over the target, attention to the encoder's memory, and a feed-forward
/// block, each with a residual and a LayerNorm.
#[derive(Module)]
pub struct TransformerDecoderLayer {
    pub self_attn: MultiheadAttention,
    pub multihead_attn: MultiheadAttention,
    pub linear1: Linear,
    pub dropout: Dropout,
    pub linear2: Linear,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    pub norm3: LayerNorm,
    pub dropout1: Dropout,
    pub dropout2: Dropout,
    pub dropout3: Dropout,
    #[module(skip)]
    pub activation: Activation,
    pub norm_first: bool,
}

impl TransformerDecoderLayer {
    /// `d_model` wide with `nhead` heads and PyTorch's defaults.
    pub fn new(d_model: usize, nhead: usize, device: &Device) -> Result<TransformerDecoderLayer> {
        TransformerDecoderLayer::with(d_model, nhead, LayerOptions::default(), device)
    }

    /// Any options.
    pub fn with(
        d_model: usize,
        nhead: usize,
        o: LayerOptions,
        device: &Device,
    ) -> Result<TransformerDecoderLayer> {
        Ok(TransformerDecoderLayer {
            self_attn: MultiheadAttention::new(d_model, nhead, device)?.batch_first(o.batch_first),
            multihead_attn: MultiheadAttention::new(d_model, nhead, device)?
                .batch_first(o.batch_first),
            linear1: Linear::new(d_model, o.dim_feedforward, device)?,
            dropout: Dropout::new(o.dropout)?,
            linear2: Linear::new(o.dim_feedforward, d_model, device)?,
            norm1: LayerNorm::new(&[d_model], device)?,
            norm2: LayerNorm::new(&[d_model], device)?,
            norm3: LayerNorm::new(&[d_model], device)?,
            dropout1: Dropout::new(o.dropout)?,
            dropout2: Dropout::new(o.dropout)?,
            dropout3: Dropout::new(o.dropout)?,
            activation: o.activation,
            norm_first: o.norm_first,
        })
    }

    /// The layer on `tgt` attending to `memory`, with the target's and the memory's masks.
    pub fn forward(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        tgt_masks: AttentionMasks<'_>,
        memory_masks: AttentionMasks<'_>,
    ) -> Result<Tensor> {
        let sa = |x: &Tensor| {
            self.dropout1
                .forward(&self.self_attn.forward(x, x, x, tgt_masks)?)
        };
        let ca = |x: &Tensor| {
            self.dropout2.forward(
                &self
                    .multihead_attn
                    .forward(x, memory, memory, memory_masks)?,
            )
        };
        let ff = |x: &Tensor| -> Result<Tensor> {
            self.dropout3.forward(&feed_forward(
                x,
                &self.linear1,
                &self.dropout,
                &self.linear2,
                self.activation,
            )?)
        };
        if self.norm_first {
            let x = tgt + sa(&self.norm1.forward(tgt)?)?;
            let x = &x + ca(&self.norm2.forward(&x)?)?;
            Ok(&x + ff(&self.norm3.forward(&x)?)?)
        } else {
            let x = self.norm1.forward(&(tgt + sa(tgt)?))?;
            let x = self.norm2.forward(&(&x + ca(&x)?))?;
            self.norm3.forward(&(&x + ff(&x)?))
        }
    }
}
