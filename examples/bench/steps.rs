//! Training steps of the five small models of the CPU-speed issue, median milliseconds per
//! step (forward, loss, zero_grad, backward, clipping where named, optimizer step, reading
//! the loss) on random data. `benches/compare.py` runs PyTorch twins of the same five.
//!
//! - `lenet_step_ms`: d2l's LeNet with BatchNorm, batch 128 of 1x28x28, SGD 0.1.
//! - `resnet_step_ms`: a stem conv, two residual blocks (the second 16 -> 32 with a 1x1
//!   projection and stride 2), global average pool and a linear head; batch 64 of 1x28x28,
//!   SGD 0.05 with momentum 0.9.
//! - `gru_step_ms`, `lstm_step_ms`: Embedding 64 -> 32, a one-layer batch-first GRU or LSTM
//!   32 -> 128, linear 128 -> 64 at every step; batch 64 x 32 tokens, Adam 1e-3, clip 1.0.
//! - `chargpt_step_ms`: examples/chargpt's model (vocabulary 92, 4 pre-LayerNorm blocks,
//!   width 128, 4 heads, context 64), batch 32, AdamW 1e-3 with weight decay 0.1, clip 1.0.

use super::{model, Bench};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{clip_grad_norm, Adam, Optimizer, Sgd};
use wgrad::{Device, Result, Tensor};

/// One timed step: zero the gradients, compute the loss, backward, clip (when `clip` is
/// set), step, read the loss.
fn step(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    clip: Option<f64>,
    loss: &dyn Fn() -> Result<Tensor>,
) -> Result<()> {
    opt.zero_grad();
    let l = loss()?;
    l.backward()?;
    if let Some(max) = clip {
        clip_grad_norm(&model.parameters(), max)?;
    }
    opt.step()?;
    l.item::<f32>().map(drop)
}

/// d2l's LeNet with BatchNorm after every convolution and hidden linear layer.
pub fn lenet(dev: &Device) -> Result<nn::Sequential> {
    Ok(nn::Sequential::new()
        .add(nn::Conv2d::new(1, 6, 5, dev)?)
        .add(nn::BatchNorm2d::new(6, dev)?)
        .add(nn::Sigmoid)
        .add(nn::AvgPool2d::new(2))
        .add(nn::Conv2d::new(6, 16, 5, dev)?)
        .add(nn::BatchNorm2d::new(16, dev)?)
        .add(nn::Sigmoid)
        .add(nn::AvgPool2d::new(2))
        .add(nn::Flatten)
        .add(nn::Linear::new(256, 120, dev)?)
        .add(nn::BatchNorm1d::new(120, dev)?)
        .add(nn::Sigmoid)
        .add(nn::Linear::new(120, 84, dev)?)
        .add(nn::BatchNorm1d::new(84, dev)?)
        .add(nn::Sigmoid)
        .add(nn::Linear::new(84, 10, dev)?))
}

/// d2l's residual block: two 3x3 convolutions with BatchNorm, and a 1x1 projection of the
/// input where the channels or the stride change.
#[derive(Module)]
struct Residual {
    conv1: nn::Conv2d,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2d,
    bn2: nn::BatchNorm,
    project: Option<nn::Conv2d>,
}

impl Residual {
    fn new(c_in: usize, c_out: usize, stride: usize, dev: &Device) -> Result<Residual> {
        let project = if c_in != c_out || stride != 1 {
            Some(nn::Conv2d::new(c_in, c_out, 1, dev)?.stride(stride))
        } else {
            None
        };
        Ok(Residual {
            conv1: nn::Conv2d::new(c_in, c_out, 3, dev)?
                .padding(1)
                .stride(stride),
            bn1: nn::BatchNorm2d::new(c_out, dev)?,
            conv2: nn::Conv2d::new(c_out, c_out, 3, dev)?.padding(1),
            bn2: nn::BatchNorm2d::new(c_out, dev)?,
            project,
        })
    }
}

impl Forward for Residual {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.bn1.forward(&self.conv1.forward(x)?)?.relu()?;
        let y = self.bn2.forward(&self.conv2.forward(&y)?)?;
        let shortcut = match &self.project {
            Some(p) => p.forward(x)?,
            None => x.clone(),
        };
        y.add(&shortcut)?.relu()
    }
}

/// The small ResNet of `resnet_step_ms`.
#[derive(Module)]
struct SmallResNet {
    stem: nn::Conv2d,
    stem_bn: nn::BatchNorm,
    block1: Residual,
    block2: Residual,
    head: nn::Linear,
}

impl Forward for SmallResNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.stem_bn.forward(&self.stem.forward(x)?)?.relu()?;
        let x = self.block2.forward(&self.block1.forward(&x)?)?;
        // Global average pooling: the mean over the spatial dims.
        self.head.forward(&x.mean_dims([2, 3], false)?)
    }
}

/// The recurrent language model of `gru_step_ms` and `lstm_step_ms`.
#[derive(Module)]
struct CharRnn {
    embed: nn::Embedding,
    rnn: nn::Recurrent,
    head: nn::Linear,
}

/// The conv nets' steps: a fixed random batch, cross-entropy against random labels.
fn conv_step(
    b: &Bench,
    name: &str,
    model: &dyn Forward,
    module: &dyn Module,
    opt: &mut dyn Optimizer,
    batch: usize,
    dev: &Device,
) -> Result<()> {
    let x = Tensor::randn_on([batch, 1, 28, 28], dev)?;
    let y = Tensor::randint_on(0, 10, [batch], dev)?;
    let loss = || nn::cross_entropy(&model.forward(&x)?, &y);
    let t = b.time(7, 1, || step(module, opt, None, &loss))?;
    b.report(name, t * 1e3, "ms");
    Ok(())
}

/// Run the five steps.
pub fn run(b: &Bench, dev: &Device) -> Result<()> {
    if b.wants_step("lenet_step_ms") {
        let net = wgrad::seeded(3, || lenet(dev))?;
        let mut opt = Sgd::new(net.parameters(), 0.1);
        wgrad::seeded(4, || {
            conv_step(b, "lenet_step_ms", &net, &net, &mut opt, 128, dev)
        })?;
    }
    if b.wants_step("resnet_step_ms") {
        resnet(b, dev)?;
    }
    for (name, lstm) in [("gru_step_ms", false), ("lstm_step_ms", true)] {
        if b.wants_step(name) {
            char_rnn(b, name, lstm, dev)?;
        }
    }
    if b.wants_step("chargpt_step_ms") {
        chargpt(b, dev)?;
    }
    Ok(())
}

/// `resnet_step_ms`.
fn resnet(b: &Bench, dev: &Device) -> Result<()> {
    let net = wgrad::seeded(5, || -> Result<SmallResNet> {
        Ok(SmallResNet {
            stem: nn::Conv2d::new(1, 16, 3, dev)?.padding(1),
            stem_bn: nn::BatchNorm2d::new(16, dev)?,
            block1: Residual::new(16, 16, 1, dev)?,
            block2: Residual::new(16, 32, 2, dev)?,
            head: nn::Linear::new(32, 10, dev)?,
        })
    })?;
    let mut opt = Sgd::new(net.parameters(), 0.05).momentum(0.9);
    wgrad::seeded(6, || {
        conv_step(b, "resnet_step_ms", &net, &net, &mut opt, 64, dev)
    })
}

/// `gru_step_ms` or `lstm_step_ms`.
fn char_rnn(b: &Bench, name: &str, lstm: bool, dev: &Device) -> Result<()> {
    let vocab = 64;
    let tokens = wgrad::seeded(7, || Tensor::randint_on(0, vocab as i64, [100_000], dev))?;
    let net = wgrad::seeded(8, || -> Result<CharRnn> {
        let rnn = if lstm {
            nn::Recurrent::lstm(32, 128, dev)?
        } else {
            nn::Recurrent::gru(32, 128, dev)?
        };
        Ok(CharRnn {
            embed: nn::Embedding::new(vocab, 32, dev)?,
            rnn: rnn.batch_first(true),
            head: nn::Linear::new(128, vocab, dev)?,
        })
    })?;
    let mut opt = Adam::new(net.parameters(), 1e-3);
    let loss = || -> Result<Tensor> {
        let (x, y) = model::windows(&tokens, 64, 32)?;
        let (h, _) = net.rnn.forward(&net.embed.forward(&x)?, None)?;
        let logits = net.head.forward(&h)?;
        nn::cross_entropy(
            &logits.reshape([-1, vocab as isize])?,
            &y.reshape([-1isize])?,
        )
    };
    let t = b.time(7, 1, || step(&net, &mut opt, Some(1.0), &loss))?;
    b.report(name, t * 1e3, "ms");
    Ok(())
}

/// `chargpt_step_ms`.
fn chargpt(b: &Bench, dev: &Device) -> Result<()> {
    let vocab = 92;
    let text = wgrad::seeded(0, || Tensor::randint_on(0, vocab as i64, [100_000], dev))?;
    let gpt = wgrad::seeded(1, || model::Gpt::new(vocab, 64, 128, 4, 4, dev))?;
    let mut opt = Adam::adamw(gpt.parameters(), 1e-3).weight_decay(0.1);
    let loss = || -> Result<Tensor> {
        let (x, y) = model::windows(&text, 32, 64)?;
        model::loss_of(&gpt, &x, &y)
    };
    let t = b.time(7, 1, || step(&gpt, &mut opt, Some(1.0), &loss))?;
    b.report("chargpt_step_ms", t * 1e3, "ms");
    Ok(())
}
