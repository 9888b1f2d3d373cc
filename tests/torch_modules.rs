//! PyTorch checkpoints load: each file of tests/data/torch_modules/ is a PyTorch module's
//! `state_dict` as `safetensors.torch.save_file` writes it (made by
//! tests/golden/torch_modules.py). wgrad's module of the same configuration loads it
//! strictly (every name and shape must match) and gives PyTorch's output, on every device.

mod common;

use std::collections::HashMap;
use wgrad::nn::{self, functional as F, Forward, Module};
use wgrad::{Device, Result, Tensor};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/torch_modules");

/// Load `<name>.safetensors` into `module` strictly; the input/output tensors by name.
fn fixture(name: &str, module: &mut dyn Module, dev: &Device) -> Result<HashMap<String, Tensor>> {
    wgrad::io::load_module(module, format!("{DIR}/{name}.safetensors"))?;
    module.eval();
    let io = wgrad::io::load(format!("{DIR}/{name}_io.safetensors"))?;
    io.into_iter()
        .map(|(k, t)| Ok((k, t.to_device(dev)?)))
        .collect()
}

fn close(what: &str, actual: &Tensor, expected: &Tensor) -> Result<()> {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    let e: Vec<f64> = expected
        .to_vec::<f32>()?
        .iter()
        .map(|&v| v as f64)
        .collect();
    common::assert_close(&actual.to_vec::<f32>()?, &e, 1e-4, 1e-5, what);
    Ok(())
}

#[test]
fn recurrent_checkpoints_from_pytorch() -> Result<()> {
    for dev in common::devices() {
        let mut gru =
            nn::Recurrent::new(nn::CellKind::Gru, 8, 6, 2, true, true, &dev)?.batch_first(true);
        let io = fixture("gru", &mut gru, &dev)?;
        let state = nn::State {
            h: io["h0"].clone(),
            c: None,
        };
        let (y, s) = gru.forward(&io["input"], Some(&state))?;
        close(&format!("GRU output on {dev}"), &y, &io["output"])?;
        close(&format!("GRU h_n on {dev}"), &s.h, &io["h_n"])?;

        let mut lstm = nn::Recurrent::new(nn::CellKind::Lstm, 8, 6, 2, false, true, &dev)?;
        let io = fixture("lstm", &mut lstm, &dev)?;
        let (y, s) = lstm.forward(&io["input"], None)?;
        close(&format!("LSTM output on {dev}"), &y, &io["output"])?;
        close(&format!("LSTM h_n on {dev}"), &s.h, &io["h_n"])?;
        close(
            &format!("LSTM c_n on {dev}"),
            s.c.as_ref().unwrap(),
            &io["c_n"],
        )?;

        let mut rnn =
            nn::Recurrent::new(nn::CellKind::Relu, 8, 6, 1, false, true, &dev)?.batch_first(true);
        let io = fixture("rnn_relu", &mut rnn, &dev)?;
        let (y, s) = rnn.forward(&io["input"], None)?;
        close(&format!("RNN output on {dev}"), &y, &io["output"])?;
        close(&format!("RNN h_n on {dev}"), &s.h, &io["h_n"])?;
    }
    Ok(())
}

#[test]
fn attention_and_transformer_checkpoints_from_pytorch() -> Result<()> {
    for dev in common::devices() {
        let mut mha = nn::MultiheadAttention::new(8, 2, &dev)?.batch_first(true);
        let io = fixture("mha", &mut mha, &dev)?;
        let x = &io["input"];
        let masks = nn::AttentionMasks {
            key_padding_mask: Some(&io["key_padding_mask"]),
            ..Default::default()
        };
        close(
            &format!("MultiheadAttention on {dev}"),
            &mha.forward(x, x, x, masks)?,
            &io["output"],
        )?;

        let opts = nn::LayerOptions {
            dim_feedforward: 16,
            dropout: 0.0,
            activation: nn::Activation::Gelu,
            batch_first: true,
            norm_first: true,
        };
        let mut enc = nn::TransformerEncoderLayer::with(8, 2, opts, &dev)?;
        let io = fixture("encoder", &mut enc, &dev)?;
        close(
            &format!("TransformerEncoderLayer on {dev}"),
            &enc.forward(&io["input"])?,
            &io["output"],
        )?;

        let opts = nn::LayerOptions {
            dim_feedforward: 16,
            dropout: 0.0,
            batch_first: true,
            ..Default::default()
        };
        let mut dec = nn::TransformerDecoderLayer::with(8, 2, opts, &dev)?;
        let io = fixture("decoder", &mut dec, &dev)?;
        let causal = nn::AttentionMasks {
            is_causal: true,
            ..Default::default()
        };
        let y = dec.forward(&io["input"], &io["memory"], causal, Default::default())?;
        close(
            &format!("TransformerDecoderLayer on {dev}"),
            &y,
            &io["output"],
        )?;
    }
    Ok(())
}

#[test]
fn convolution_and_norm_checkpoints_from_pytorch() -> Result<()> {
    for dev in common::devices() {
        let args = F::ConvArgs {
            stride: 2,
            padding: 1,
            dilation: 1,
            groups: 2,
        };
        let mut conv = nn::Conv1d::with(4, 6, 3, args, true, &dev)?;
        let io = fixture("conv1d", &mut conv, &dev)?;
        close(
            &format!("Conv1d on {dev}"),
            &conv.forward(&io["input"])?,
            &io["output"],
        )?;

        let args = F::ConvArgs {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let mut up = nn::ConvTranspose2d::with(4, 2, 3, args, 1, true, &dev)?;
        let io = fixture("conv_transpose2d", &mut up, &dev)?;
        close(
            &format!("ConvTranspose2d on {dev}"),
            &up.forward(&io["input"])?,
            &io["output"],
        )?;

        let mut gn = nn::GroupNorm::new(2, 4, &dev)?;
        let io = fixture("group_norm", &mut gn, &dev)?;
        close(
            &format!("GroupNorm on {dev}"),
            &gn.forward(&io["input"])?,
            &io["output"],
        )?;
    }
    Ok(())
}
