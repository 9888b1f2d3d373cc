//! Long runs: a small transformer (embeddings, causal self-attention, LayerNorm, a GELU MLP,
//! cross-entropy, AdamW with clipping) trained for 10,000 steps on the CPU and 2,000 on a
//! GPU, with live tensor bytes and the process's resident memory flat.

mod common;

use wgrad::nn::{self, functional as F, Forward, Module};
use wgrad::optim::{self, Adam, Optimizer};
use wgrad::{Device, Generator, Result, Tensor};

#[derive(Module)]
struct Tiny {
    embed: nn::Embedding,
    qkv: nn::Linear,
    out: nn::Linear,
    norm: nn::LayerNorm,
    up: nn::Linear,
    down: nn::Linear,
    head: nn::Linear,
    /// Not state: rebuilt from the sequence length.
    #[module(skip)]
    mask: Tensor,
}

const VOCAB: usize = 16;
const WIDTH: usize = 16;
const SEQ: usize = 8;
const BATCH: usize = 4;

impl Tiny {
    fn new(dev: &Device) -> Result<Tiny> {
        let causal = Tensor::arange_on(0i64, SEQ as i64, 1, dev)?;
        wgrad::seeded(3, || {
            Ok(Tiny {
                embed: nn::Embedding::new(VOCAB, WIDTH, dev)?,
                qkv: nn::Linear::new(WIDTH, 3 * WIDTH, dev)?,
                out: nn::Linear::new(WIDTH, WIDTH, dev)?,
                norm: nn::LayerNorm::new(&[WIDTH], dev)?,
                up: nn::Linear::new(WIDTH, 2 * WIDTH, dev)?,
                down: nn::Linear::new(2 * WIDTH, WIDTH, dev)?,
                head: nn::Linear::new(WIDTH, VOCAB, dev)?,
                // Key j is hidden from query i when j > i.
                mask: causal.unsqueeze(0)?.gt(&causal.unsqueeze(1)?)?,
            })
        })
    }

    fn loss(&self, tokens: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let x = self
            .embed
            .forward(&tokens.reshape([-1isize])?)?
            .reshape([BATCH, SEQ, WIDTH])?;
        let qkv = self.qkv.forward(&x)?;
        let (q, k, v) = (
            qkv.narrow(-1, 0, WIDTH)?,
            qkv.narrow(-1, WIDTH, WIDTH)?,
            qkv.narrow(-1, 2 * WIDTH, WIDTH)?,
        );
        let scores = q
            .matmul(&k.transpose(-1, -2)?)?
            .div_scalar((WIDTH as f64).sqrt())?;
        let attention = scores
            .masked_fill(&self.mask, f64::NEG_INFINITY)?
            .softmax(-1)?;
        let x = x.add(&self.out.forward(&attention.matmul(&v)?)?)?;
        let h = self.norm.forward(&x)?;
        let x = x.add(&self.down.forward(&F::gelu(&self.up.forward(&h)?, true)?)?)?;
        let logits = self.head.forward(&x)?.reshape([BATCH * SEQ, VOCAB])?;
        nn::cross_entropy(&logits, &targets.reshape([-1isize])?)
    }
}

/// Resident memory of the process in bytes (Linux), or 0 where unknown.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn soak(dev: &Device, steps: usize) -> Result<()> {
    let model = Tiny::new(dev)?;
    let params = model.parameters();
    let mut opt = Adam::adamw(params.clone(), 1e-2);
    let mut g = Generator::new(9);
    // A learnable task: predict the next token of a repeating sequence.
    let tokens = Tensor::randint_with(0, VOCAB as i64, [BATCH, SEQ + 1], &mut g)?.to_device(dev)?;
    let (x, y) = (tokens.narrow(1, 0, SEQ)?, tokens.narrow(1, 1, SEQ)?);
    let (mut first, mut last) = (0.0, 0.0);
    let mut marks = None;
    for step in 0..steps {
        let loss = model.loss(&x, &y)?;
        opt.zero_grad();
        loss.backward()?;
        optim::clip_grad_norm(&params, 1.0)?;
        opt.step()?;
        if step % 500 == 0 || step + 1 == steps {
            last = loss.item::<f64>()?;
            if step == 0 {
                first = last;
            }
        }
        if step == steps / 10 {
            dev.synchronize()?;
            marks = Some((dev.memory_stats().live_bytes, rss()));
        }
    }
    dev.synchronize()?;
    let (live0, rss0) = marks.unwrap();
    let (live1, rss1) = (dev.memory_stats().live_bytes, rss());
    eprintln!("{dev}: {steps} steps, loss {first:.3} -> {last:.3}, live {live0} -> {live1} B, rss {rss0} -> {rss1} B");
    assert!(last < first, "the loss went down");
    assert!(
        live1 <= live0 + 64 * 1024,
        "live bytes grew from {live0} to {live1}"
    );
    assert!(
        rss1 <= rss0 + 64 * 1024 * 1024,
        "resident memory grew from {rss0} to {rss1}"
    );
    Ok(())
}

#[test]
fn ten_thousand_cpu_steps_and_two_thousand_gpu_steps_stay_flat() -> Result<()> {
    for dev in common::devices() {
        soak(&dev, if dev.is_cpu() { 10_000 } else { 2_000 })?;
    }
    Ok(())
}
