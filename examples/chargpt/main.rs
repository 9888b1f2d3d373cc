//! A character-level GPT on 280 KB of quotations (data/quotes.txt.gz): token and position
//! embeddings, pre-norm blocks of causal self-attention and a GELU MLP, AdamW with weight
//! decay, a warm-up and cosine schedule, gradient clipping; the held-out loss in bits per
//! character, a checkpoint, the training curve, and text sampled with temperature and top-k.
//!
//! cargo run --release --example chargpt -- [--steps 1000] [--layers 4] [--width 128]
//!     [--heads 4] [--context 64] [--batch 32] [--device auto|cpu|gpu] [--seed 0]
//!     [--precision f32|bf16|f16]
//!
//! `--precision bf16` (or `f16`, with dynamic loss scaling) runs the forward passes in mixed
//! precision (autocast: the matmuls in the 16-bit type; softmax, norms and the loss in f32)
//! with f32 weights and optimizer.
//!
//! PyTorch with this configuration (the defaults): held-out loss 1.949 nats per character
//! (2.81 bits) after 1,000 steps, seeds 0 and 1.

mod model;
#[path = "../support/mod.rs"]
mod support;

use model::{corpus, loss_of, sample, schedule, windows, Gpt, Sampling};
use wgrad::nn::Module;
use wgrad::optim::{clip_grad_norm, Adam, GradScaler, Optimizer};
use wgrad::{DType, Result, Tensor};

fn main() -> Result<()> {
    let opts = support::Options::parse(
        "chargpt [--steps 1000] [--layers 4] [--width 128] [--heads 4] [--context 64] [--batch 32] [--device auto|cpu|gpu] [--seed 0] [--out target/chargpt] [--precision f32|bf16|f16]",
        &["steps", "layers", "width", "heads", "context", "batch", "device", "seed", "out", "precision"],
    );
    let precision = opts.precision();
    let mut scaler = (precision == Some(DType::F16)).then(GradScaler::new);
    let steps = opts.number("steps", 1000usize);
    let (layers, width, heads) = (
        opts.number("layers", 4usize),
        opts.number("width", 128usize),
        opts.number("heads", 4usize),
    );
    let (context, batch, seed) = (
        opts.number("context", 64usize),
        opts.number("batch", 32usize),
        opts.number("seed", 0u64),
    );
    let out = std::path::PathBuf::from(opts.get("out", "target/chargpt"));
    let dev = opts.device()?;
    wgrad::manual_seed(seed);

    let (ids, chars) = corpus()?;
    let cut = ids.len() * 9 / 10;
    let train = Tensor::from_vec_on(ids[..cut].to_vec(), [cut], &dev)?;
    let held_out = Tensor::from_vec_on(ids[cut..].to_vec(), [ids.len() - cut], &dev)?;
    let model = Gpt::new(chars.len(), context, width, layers, heads, &dev)?;
    let mut opt = Adam::adamw(model.parameters(), 1e-3).weight_decay(0.1);
    println!(
        "a GPT of {} parameters ({layers} layers, width {width}, {heads} heads, context {context}) on {dev} ({}): {} characters ({} distinct), {steps} steps of {batch}",
        model.num_parameters(),
        precision.map_or("f32".to_string(), |d| format!("mixed precision, {d:?}")),
        ids.len(),
        chars.len()
    );

    let bar = support::epoch_bar(0, steps);
    let mut losses = Vec::new();
    let start = std::time::Instant::now();
    for step in 0..steps {
        opt.set_lr(schedule(step, steps, 100.min(steps / 10).max(1), 1e-3));
        let (x, y) = windows(&train, batch, context)?;
        opt.zero_grad();
        let loss = {
            let _amp = support::autocast(precision)?;
            loss_of(&model, &x, &y)?
        };
        match &mut scaler {
            // Gradients are clipped after unscaling, as PyTorch's recipe has it.
            Some(s) => {
                s.scale(&loss)?.backward()?;
                s.unscale_(&opt)?;
                clip_grad_norm(&model.parameters(), 1.0)?;
                s.step(&mut opt)?;
                s.update();
            }
            None => {
                loss.backward()?;
                clip_grad_norm(&model.parameters(), 1.0)?;
                opt.step()?;
            }
        }
        if step % 50 == 0 || step + 1 == steps {
            let l = loss.item::<f64>()?;
            losses.push(l);
            bar.set_message(format!("loss {l:.3}"));
        }
        bar.inc(1);
    }
    // The held-out loss over 20 batches of the last tenth of the text.
    let held_loss = {
        let _no_grad = wgrad::no_grad();
        let _amp = support::autocast(precision)?;
        model.eval();
        let mut total = 0.0;
        for _ in 0..20 {
            let (x, y) = windows(&held_out, batch, context)?;
            total += loss_of(&model, &x, &y)?.item::<f64>()?;
        }
        model.train(true);
        total / 20.0
    };
    support::finish(
        &bar,
        0,
        format!("trained in {:.1} s", start.elapsed().as_secs_f64()),
    );
    println!(
        "held-out loss {held_loss:.3} nats = {:.3} bits per character (PyTorch, same configuration: 1.949 nats)",
        held_loss / std::f64::consts::LN_2
    );

    support::create_dir(&out)?;
    let checkpoint = out.join("chargpt.safetensors");
    wgrad::io::save_checkpoint(&checkpoint, &model, &opt, None)?;
    println!("checkpoint: {}", checkpoint.display());
    let curve = out.join("chargpt_loss.svg");
    match support::plot_loss(&curve, &losses, 50) {
        Ok(()) => println!("training curve: {}", curve.display()),
        Err(e) => eprintln!("could not draw the training curve: {e}"),
    }
    println!("--- sampled (temperature 0.8, top-k 10):");
    println!(
        "{}",
        sample(
            &model,
            &chars,
            "A ",
            Sampling {
                len: 300,
                temperature: 0.8,
                top_k: 10
            }
        )?
    );
    Ok(())
}
