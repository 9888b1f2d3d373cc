//! The character-level GPT of the `chargpt` example and its data: the model, the corpus,
//! random training windows, the loss and the learning-rate schedule (shared with the test
//! that trains a small one).
#![allow(dead_code)]

use std::io::Read;
use wgrad::nn::{self, functional as F, Forward, Module};
use wgrad::{Device, Result, Tensor};

/// Causal self-attention and an MLP, each after a LayerNorm and added back.
#[derive(Module)]
pub struct Block {
    ln1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    ln2: nn::LayerNorm,
    up: nn::Linear,
    down: nn::Linear,
    heads: usize,
}

impl Block {
    pub fn new(width: usize, heads: usize, dev: &Device) -> Result<Block> {
        Ok(Block {
            ln1: nn::LayerNorm::new(&[width], dev)?,
            qkv: nn::Linear::new(width, 3 * width, dev)?,
            proj: nn::Linear::new(width, width, dev)?,
            ln2: nn::LayerNorm::new(&[width], dev)?,
            up: nn::Linear::new(width, 4 * width, dev)?,
            down: nn::Linear::new(4 * width, width, dev)?,
            heads,
        })
    }
}

impl Forward for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let split = |y: &Tensor| {
            y.reshape([b, t, self.heads, c / self.heads])?
                .transpose(1, 2)
        };
        let qkv = self.qkv.forward(&self.ln1.forward(x)?)?.chunk(3, -1)?;
        let (q, k, v) = (split(&qkv[0])?, split(&qkv[1])?, split(&qkv[2])?);
        let att = F::scaled_dot_product_attention(&q, &k, &v, None, true, None)?;
        let x = x + self
            .proj
            .forward(&att.transpose(1, 2)?.reshape([b, t, c])?)?;
        let mlp = self
            .down
            .forward(&F::gelu(&self.up.forward(&self.ln2.forward(&x)?)?, false)?)?;
        Ok(x + mlp)
    }
}

#[derive(Module)]
pub struct Gpt {
    tokens: nn::Embedding,
    positions: nn::Embedding,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    head: nn::Linear,
}

impl Gpt {
    pub fn new(
        vocab: usize,
        context: usize,
        width: usize,
        layers: usize,
        heads: usize,
        dev: &Device,
    ) -> Result<Gpt> {
        Ok(Gpt {
            tokens: nn::Embedding::new(vocab, width, dev)?,
            positions: nn::Embedding::new(context, width, dev)?,
            blocks: (0..layers)
                .map(|_| Block::new(width, heads, dev))
                .collect::<Result<_>>()?,
            ln_f: nn::LayerNorm::new(&[width], dev)?,
            head: nn::Linear::new(width, vocab, dev)?,
        })
    }
}

impl Forward for Gpt {
    /// Token ids `[B, T]` to next-token logits `[B, T, vocab]`.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let t = ids.shape()[1];
        let positions = Tensor::arange_on(0, t as i64, 1, ids.device())?;
        let mut x = self.tokens.forward(ids)? + self.positions.forward(&positions)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.head.forward(&self.ln_f.forward(&x)?)
    }
}

/// The corpus as character ids, and the characters.
pub fn corpus() -> Result<(Vec<i64>, Vec<char>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/quotes.txt.gz");
    let io = |e: std::io::Error| wgrad::Error::Io {
        op: "chargpt",
        msg: format!("{path}: {e}"),
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).map_err(io)?)
        .read_to_string(&mut text)
        .map_err(io)?;
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let ids = text
        .chars()
        .map(|ch| chars.binary_search(&ch).unwrap_or(0) as i64)
        .collect();
    Ok((ids, chars))
}

/// `batch` random windows of `context + 1` characters of `data`: inputs and next-character
/// targets `[batch, context]`.
pub fn windows(data: &Tensor, batch: usize, context: usize) -> Result<(Tensor, Tensor)> {
    let n = data.numel() - context - 1;
    let starts = Tensor::randint_on(0, n as i64, [batch, 1], data.device())?;
    let offsets = Tensor::arange_on(0, context as i64 + 1, 1, data.device())?;
    let idx = (&starts + &offsets).reshape([-1isize])?;
    let w = data.index_select(0, &idx)?.reshape([batch, context + 1])?;
    Ok((w.narrow(1, 0, context)?, w.narrow(1, 1, context)?))
}

pub fn loss_of(model: &Gpt, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let logits = model.forward(x)?;
    let v = logits.shape()[2];
    nn::cross_entropy(&logits.reshape([-1, v as isize])?, &y.reshape([-1isize])?)
}

/// The learning rate at `step`: linear warm-up, then cosine to 0.
pub fn schedule(step: usize, steps: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// How [`sample`] draws: `len` characters, each from the `top_k` likeliest at
/// `temperature`.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub len: usize,
    pub temperature: f64,
    pub top_k: usize,
}

/// Text after `prompt`, drawn from the default generator (the same on every device).
pub fn sample(model: &Gpt, chars: &[char], prompt: &str, how: Sampling) -> Result<String> {
    let _no_grad = wgrad::no_grad();
    let was_training = model.is_training();
    model.eval();
    let dev = model.head.weight.device().clone();
    let context = model.positions.weight.shape()[0];
    let mut ids: Vec<i64> = prompt
        .chars()
        .map(|c| chars.binary_search(&c).unwrap_or(0) as i64)
        .collect();
    for _ in 0..how.len {
        let window = &ids[ids.len().saturating_sub(context)..];
        let x = Tensor::from_vec_on(window.to_vec(), [1, window.len()], &dev)?;
        let logits = model.forward(&x)?.select(1, -1)?.squeeze_dim(0)? / how.temperature;
        let (top, index) = logits.topk(how.top_k.min(chars.len()), -1, true)?;
        let pick = top.softmax(-1)?.multinomial(1, true)?;
        ids.push(index.gather(0, &pick)?.item::<i64>()?);
    }
    model.train(was_training);
    Ok(ids.iter().map(|&i| chars[i as usize]).collect())
}
