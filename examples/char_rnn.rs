//! The course's recurrent language model on the bundled quotations: a character-level RNN
//! written from scratch (the RNN chapter's first program), or the same with `nn::Recurrent`
//! as an RNN, GRU or LSTM (the concise version and the modern cells). Reports the held-out
//! perplexity and samples text.
//!
//! cargo run --release --example char_rnn -- [--cell scratch|rnn|gru|lstm] [--steps 1500]
//!     [--hidden 256] [--device auto|cpu|gpu]

#[path = "chargpt/model.rs"]
mod model;
#[path = "support/mod.rs"]
mod support;

use model::{corpus, windows};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{clip_grad_norm, Adam, Optimizer};
use wgrad::{Device, Result, Tensor};

/// An RNN from the primitives: `H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)`, outputs
/// `H_t W_hq + b_q`, on one-hot characters (the course's notation).
#[derive(Module)]
struct Scratch {
    w_xh: Tensor,
    w_hh: Tensor,
    b_h: Tensor,
    w_hq: Tensor,
    b_q: Tensor,
}

impl Scratch {
    fn new(vocab: usize, hidden: usize, dev: &Device) -> Result<Scratch> {
        let normal = |shape: [usize; 2]| -> Result<Tensor> {
            (Tensor::randn_on(shape, dev)? * 0.01).requires_grad_(true)
        };
        Ok(Scratch {
            w_xh: normal([vocab, hidden])?,
            w_hh: normal([hidden, hidden])?,
            b_h: Tensor::zeros_on([hidden], dev)?.requires_grad_(true)?,
            w_hq: normal([hidden, vocab])?,
            b_q: Tensor::zeros_on([vocab], dev)?.requires_grad_(true)?,
        })
    }

    /// Logits `[B, T, vocab]` for ids `[B, T]`.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let vocab = self.w_xh.shape()[0];
        let x = nn::functional::one_hot(ids, Some(vocab))?.to_dtype(wgrad::DType::F32)?;
        let (b, t) = (ids.shape()[0], ids.shape()[1]);
        let mut h = Tensor::zeros_on([b, self.w_hh.shape()[0]], ids.device())?;
        let mut outs = Vec::with_capacity(t);
        for step in 0..t {
            let xt = x.select(1, step as isize)?;
            h = (xt.matmul(&self.w_xh)? + h.matmul(&self.w_hh)? + &self.b_h).tanh()?;
            outs.push(h.matmul(&self.w_hq)? + &self.b_q);
        }
        Tensor::stack(&outs.iter().collect::<Vec<_>>(), 1)
    }
}

/// The concise model: an embedding, an `nn::Recurrent` and a linear read-out.
#[derive(Module)]
struct Concise {
    embed: nn::Embedding,
    rnn: nn::Recurrent,
    head: nn::Linear,
}

impl Forward for Concise {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (h, _) = self.rnn.forward(&self.embed.forward(ids)?, None)?;
        self.head.forward(&h)
    }
}

enum Model {
    Scratch(Scratch),
    Concise(Concise),
}

impl Model {
    fn logits(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Model::Scratch(m) => m.forward(ids),
            Model::Concise(m) => m.forward(ids),
        }
    }

    fn module(&self) -> &dyn Module {
        match self {
            Model::Scratch(m) => m,
            Model::Concise(m) => m,
        }
    }

    fn loss(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let logits = self.logits(x)?;
        let v = logits.shape()[2] as isize;
        nn::cross_entropy(&logits.reshape([-1, v])?, &y.reshape([-1isize])?)
    }
}

fn main() -> Result<()> {
    let opts = support::Options::parse(
        "char_rnn [--cell scratch|rnn|gru|lstm] [--steps 1500] [--hidden 256] [--device auto|cpu|gpu] [--seed 0]",
        &["cell", "steps", "hidden", "device", "seed"],
    );
    let cell = opts.get("cell", "gru");
    let (steps, hidden) = (
        opts.number("steps", 1500usize),
        opts.number("hidden", 256usize),
    );
    let dev = opts.device()?;
    wgrad::manual_seed(opts.number("seed", 0u64));
    let (ids, chars) = corpus()?;
    let cut = ids.len() * 9 / 10;
    let train = Tensor::from_vec_on(ids[..cut].to_vec(), [cut], &dev)?;
    let held_out = Tensor::from_vec_on(ids[cut..].to_vec(), [ids.len() - cut], &dev)?;
    let vocab = chars.len();
    let concise = |rnn: nn::Recurrent| -> Result<Model> {
        Ok(Model::Concise(Concise {
            embed: nn::Embedding::new(vocab, 64, &dev)?,
            rnn: rnn.batch_first(true),
            head: nn::Linear::new(hidden, vocab, &dev)?,
        }))
    };
    let model = match cell.as_str() {
        "scratch" => Model::Scratch(Scratch::new(vocab, hidden, &dev)?),
        "rnn" => concise(nn::Recurrent::rnn(64, hidden, &dev)?)?,
        "lstm" => concise(nn::Recurrent::lstm(64, hidden, &dev)?)?,
        _ => concise(nn::Recurrent::gru(64, hidden, &dev)?)?,
    };
    let mut opt = Adam::new(model.module().parameters(), 2e-3);
    let (batch, context) = (32, 35);
    println!("{cell} language model of {} parameters on {dev}, {steps} steps of {batch} x {context} characters", model.module().num_parameters());
    let bar = support::epoch_bar(0, steps);
    let start = std::time::Instant::now();
    for step in 0..steps {
        let (x, y) = windows(&train, batch, context)?;
        opt.zero_grad();
        let loss = model.loss(&x, &y)?;
        loss.backward()?;
        clip_grad_norm(&model.module().parameters(), 1.0)?;
        opt.step()?;
        if step % 100 == 0 {
            bar.set_message(format!("perplexity {:.2}", loss.item::<f64>()?.exp()));
        }
        bar.inc(1);
    }
    let _no_grad = wgrad::no_grad();
    let mut held = 0.0;
    for _ in 0..20 {
        let (x, y) = windows(&held_out, batch, context)?;
        held += model.loss(&x, &y)?.item::<f64>()? / 20.0;
    }
    support::finish(
        &bar,
        0,
        format!("trained in {:.1} s", start.elapsed().as_secs_f64()),
    );
    println!(
        "held-out perplexity {:.2} ({held:.3} nats per character)",
        held.exp()
    );

    // Greedy continuation of a prompt, as the course's predict function.
    let mut text: Vec<i64> = "The "
        .chars()
        .map(|c| chars.binary_search(&c).unwrap_or(0) as i64)
        .collect();
    for _ in 0..80 {
        let x = Tensor::from_vec_on(text.clone(), [1, text.len()], &dev)?;
        let next = model
            .logits(&x)?
            .select(1, -1)?
            .argmax_dim(-1, false)?
            .item::<i64>()?;
        text.push(next);
    }
    println!(
        "{}",
        text.iter().map(|&i| chars[i as usize]).collect::<String>()
    );
    Ok(())
}
