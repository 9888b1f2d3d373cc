//! The sequence layers (RNN, GRU, LSTM, multi-head attention) as modules: PyTorch's
//! parameter names, stacked and bidirectional shapes, initial states, masks; and the new
//! tensor calls' errors. Their values and gradients against PyTorch are in the golden cases
//! (`rnn_*`, `gru_*`, `lstm_*`, `multi_head_attention_forward`, and the ops).

mod common;

use wgrad::nn::{self, functional as F, Forward, Module};
use wgrad::{DType, Device, Error, Result, Tensor};

/// Assert two tensors agree to float rounding.
fn close(actual: &Tensor, expected: &Tensor, what: &str) -> Result<()> {
    let e: Vec<f64> = expected
        .to_vec::<f32>()?
        .iter()
        .map(|&v| v as f64)
        .collect();
    common::assert_close(&actual.to_vec::<f32>()?, &e, 1e-5, 1e-5, what);
    Ok(())
}

#[test]
fn recurrent_layers_have_pytorch_names_and_shapes() -> Result<()> {
    for dev in common::devices() {
        let lstm = wgrad::seeded(0, || {
            nn::Recurrent::new(nn::CellKind::Lstm, 4, 3, 2, true, true, &dev)
        })?
        .batch_first(true)
        .dropout(0.1)?;
        let names: Vec<String> = lstm
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            &names[..4],
            ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
        );
        assert_eq!(names[4], "weight_ih_l0_reverse");
        assert_eq!(names.len(), 16);
        assert_eq!(
            lstm.get("weight_ih_l1").unwrap().shape(),
            &[12, 6],
            "layer 2 reads both directions"
        );
        let x = wgrad::seeded(1, || Tensor::randn_on([5, 7, 4], &dev))?;
        let (out, state) = lstm.forward(&x, None)?;
        assert_eq!(out.shape(), &[5, 7, 6]);
        assert_eq!(state.h.shape(), &[4, 5, 3]);
        assert_eq!(state.c.as_ref().unwrap().shape(), &[4, 5, 3]);
        // Continuing from a state is the same as running the joined sequence (eval: no dropout).
        lstm.eval();
        let gru = wgrad::seeded(2, || nn::Recurrent::gru(4, 3, &dev))?.batch_first(true);
        let (whole, _) = gru.forward(&x, None)?;
        let (first, mid) = gru.forward(&x.narrow(1, 0, 3)?, None)?;
        let (second, _) = gru.forward(&x.narrow(1, 3, 4)?, Some(&mid))?;
        let joined = Tensor::cat(&[&first, &second], 1)?;
        close(&joined, &whole, "GRU from a state")?;
        // Gradients reach every weight.
        whole.sum()?.backward()?;
        assert!(gru.parameters().iter().all(|p| p.grad().is_some()));
        // A state of the wrong shape names both.
        let bad = nn::State {
            h: Tensor::zeros_on([2, 5, 3], &dev)?,
            c: None,
        };
        assert!(matches!(
            gru.forward(&x, Some(&bad)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(gru.forward(&Tensor::zeros_on([5, 4], &dev)?, None).is_err());
    }
    Ok(())
}

#[test]
fn multihead_attention_masks_act_like_pytorch() -> Result<()> {
    for dev in common::devices() {
        let mha = wgrad::seeded(3, || nn::MultiheadAttention::new(8, 2, &dev))?.batch_first(true);
        let names: Vec<String> = mha.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "in_proj_weight",
                "in_proj_bias",
                "out_proj.weight",
                "out_proj.bias"
            ]
        );
        let x = wgrad::seeded(4, || Tensor::randn_on([2, 4, 8], &dev))?;
        let plain = mha.forward(&x, &x, &x, Default::default())?;
        assert_eq!(plain.shape(), &[2, 4, 8]);
        // A causal call equals a boolean mask that blocks the upper triangle.
        let causal = mha.forward(
            &x,
            &x,
            &x,
            nn::AttentionMasks {
                is_causal: true,
                ..Default::default()
            },
        )?;
        let blocked = Tensor::ones_on([4, 4], (DType::Bool, &dev))?.triu(1)?;
        let masked = mha.forward(
            &x,
            &x,
            &x,
            nn::AttentionMasks {
                attn_mask: Some(&blocked),
                ..Default::default()
            },
        )?;
        close(&masked, &causal, "causal vs a blocking mask")?;
        // A padded key changes nothing when it is masked out.
        let pad = Tensor::new_on(
            [[false, false, false, true], [false, false, false, false]],
            &dev,
        )?;
        let noise = x.narrow(1, 3, 1)? * 100.0;
        let changed = Tensor::cat(&[&x.narrow(1, 0, 3)?, &noise], 1)?;
        let a = mha.forward(
            &x,
            &x,
            &x,
            nn::AttentionMasks {
                key_padding_mask: Some(&pad),
                ..Default::default()
            },
        )?;
        let b = mha.forward(
            &x,
            &changed,
            &changed,
            nn::AttentionMasks {
                key_padding_mask: Some(&pad),
                ..Default::default()
            },
        )?;
        close(&b.narrow(0, 0, 1)?, &a.narrow(0, 0, 1)?, "a masked key")?;
        assert!(nn::MultiheadAttention::new(8, 3, &dev).is_err());
    }
    Ok(())
}

#[test]
fn the_new_tensor_calls_refuse_bad_arguments() -> Result<()> {
    let x = Tensor::randn([2, 3, 4])?;
    assert!(
        x.roll([1, 2], [0]).is_err(),
        "shifts and dims of two lengths"
    );
    assert!(x.repeat([2, 2]).is_err(), "fewer repeats than dims");
    assert!(x.flip([3]).is_err());
    assert!(Tensor::randn([3])?.tril(0).is_err(), "tril needs 2 dims");
    assert!(x
        .index_add(1, &Tensor::new([0, 1])?, &Tensor::ones([2, 3, 4])?, 1.0)
        .is_err());
    assert!(x
        .masked_select(&Tensor::ones([5])?.gt_scalar(0.0)?)
        .is_err());
    assert!(
        F::pad(&x, &[1], F::PadMode::Reflect).is_err(),
        "an odd pad list"
    );
    assert!(
        F::pad(&x, &[4, 0], F::PadMode::Reflect).is_err(),
        "reflect as wide as the dim"
    );
    assert!(
        F::pad(&x, &[-1, 0], F::PadMode::Replicate).is_err(),
        "negative pads crop only in constant mode"
    );
    assert_eq!(
        F::pad(&x, &[-1, -1], F::PadMode::Constant(0.0))?.shape(),
        &[2, 3, 2]
    );
    assert!(F::interpolate(&x, &[0], F::Interpolation::Nearest).is_err());
    assert!(
        F::one_hot(&Tensor::new([0, 3])?, Some(3)).is_err(),
        "a label past the classes"
    );
    assert!(F::one_hot(&Tensor::new([-1])?, None).is_err());
    assert!(
        F::group_norm(&x, 2, None, None, 1e-5).is_err(),
        "3 channels in 2 groups"
    );
    assert!(F::layer_norm(&x, &[3], None, None, 1e-5).is_err());
    assert!(F::adaptive_avg_pool2d(&x, (1, 1)).is_err(), "a 3-D input");
    Ok(())
}

#[test]
fn sampling_draws_the_same_numbers_on_every_device() -> Result<()> {
    // Draws with replacement, without, coin flips, and a normal_ fill.
    type Draws = (Vec<i64>, Vec<i64>, Vec<f32>, Vec<f32>);
    let draw = |dev: &Device| -> Result<Draws> {
        wgrad::seeded(9, || {
            let w = Tensor::new_on([[0.1f32, 0.0, 0.6, 0.3], [1.0, 1.0, 1.0, 1.0]], dev)?;
            let with = w.multinomial(6, true)?.to_vec::<i64>()?;
            let without = w.multinomial(4, false)?.to_vec::<i64>()?;
            let coins = Tensor::full_on([8], 0.5, dev)?
                .bernoulli()?
                .to_vec::<f32>()?;
            let t = Tensor::zeros_on([6], dev)?;
            t.normal_(2.0, 0.5)?;
            Ok((with, without, coins, t.to_vec::<f32>()?))
        })
    };
    let devices = common::devices();
    let first = draw(&devices[0])?;
    // A class of weight 0 is never drawn; without replacement each row is a permutation.
    assert!(first.0[..6].iter().all(|&c| c != 1), "{:?}", first.0);
    let mut row = first.1[4..].to_vec();
    row.sort();
    assert_eq!(row, [0, 1, 2, 3]);
    assert!(first.2.iter().all(|&v| v == 0.0 || v == 1.0));
    for dev in &devices[1..] {
        let other = draw(dev)?;
        assert_eq!(
            (&other.0, &other.1, &other.2),
            (&first.0, &first.1, &first.2),
            "{dev}"
        );
        common::assert_close(
            &other.3,
            &first.3.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            1e-5,
            1e-5,
            "normal_",
        );
    }
    // Frequencies follow the weights.
    let counts = wgrad::seeded(1, || Tensor::new([0.2f32, 0.8])?.multinomial(20_000, true))?
        .to_vec::<i64>()?
        .iter()
        .filter(|&&c| c == 1)
        .count();
    assert!((counts as f64 / 20_000.0 - 0.8).abs() < 0.02, "{counts}");
    let u = Tensor::zeros([10_000])?;
    wgrad::seeded(2, || u.uniform_(-1.0, 3.0))?;
    let v = u.to_vec::<f32>()?;
    assert!(v.iter().all(|&x| (-1.0..3.0).contains(&x)));
    assert!((u.mean()?.item::<f64>()? - 1.0).abs() < 0.05);
    // Bad weights and too many draws without replacement are errors.
    assert!(Tensor::new([0.0f32, 0.0])?.multinomial(1, true).is_err());
    assert!(Tensor::new([-1.0f32, 2.0])?.multinomial(1, true).is_err());
    assert!(Tensor::new([1.0f32, 2.0])?.multinomial(3, false).is_err());
    Ok(())
}

#[test]
fn transformer_layers_have_pytorch_names_and_compose_their_blocks() -> Result<()> {
    for dev in common::devices() {
        let opts = nn::LayerOptions {
            dim_feedforward: 16,
            batch_first: true,
            ..Default::default()
        };
        let enc = wgrad::seeded(5, || nn::TransformerEncoderLayer::with(8, 2, opts, &dev))?;
        let names: Vec<String> = enc.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "self_attn.in_proj_weight",
                "self_attn.in_proj_bias",
                "self_attn.out_proj.weight",
                "self_attn.out_proj.bias",
                "linear1.weight",
                "linear1.bias",
                "linear2.weight",
                "linear2.bias",
                "norm1.weight",
                "norm1.bias",
                "norm2.weight",
                "norm2.bias",
            ]
        );
        enc.eval();
        let x = wgrad::seeded(6, || Tensor::randn_on([2, 5, 8], &dev))?;
        // Post-norm: norm2(h + ff(h)) with h = norm1(x + sa(x)).
        let sa = enc.self_attn.forward(&x, &x, &x, Default::default())?;
        let h = enc.norm1.forward(&(&x + &sa))?;
        let ff = enc.linear2.forward(&enc.linear1.forward(&h)?.relu()?)?;
        let want = enc.norm2.forward(&(&h + &ff))?;
        close(&enc.forward(&x)?, &want, "encoder layer")?;
        let dec = wgrad::seeded(7, || {
            nn::TransformerDecoderLayer::with(
                8,
                2,
                nn::LayerOptions {
                    norm_first: true,
                    activation: nn::Activation::Gelu,
                    ..opts
                },
                &dev,
            )
        })?;
        assert_eq!(dec.named_parameters().len(), 18, "as PyTorch's state_dict");
        dec.eval();
        let y = dec.forward(
            &x.narrow(1, 0, 3)?,
            &x,
            nn::AttentionMasks {
                is_causal: true,
                ..Default::default()
            },
            Default::default(),
        )?;
        assert_eq!(y.shape(), &[2, 3, 8]);
        // The spatial layers and GroupNorm.
        let conv = wgrad::seeded(8, || nn::Conv1d::new(4, 6, 3, &dev))?;
        assert_eq!(
            conv.forward(&Tensor::randn_on([2, 4, 10], &dev)?)?.shape(),
            &[2, 6, 8]
        );
        let args = F::ConvArgs {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let up = wgrad::seeded(9, || {
            nn::ConvTranspose2d::with(4, 2, 3, args, 1, true, &dev)
        })?;
        assert_eq!(up.weight.shape(), &[4, 2, 3, 3]);
        assert_eq!(
            up.forward(&Tensor::randn_on([1, 4, 5, 5], &dev)?)?.shape(),
            &[1, 2, 10, 10]
        );
        let pooled =
            nn::AdaptiveAvgPool2d::new((2, 3)).forward(&Tensor::ones_on([1, 1, 5, 7], &dev)?)?;
        assert_eq!(pooled.to_vec::<f32>()?, vec![1.0; 6]);
        let big = nn::Upsample::new(2.0).forward(&Tensor::ones_on([1, 1, 2, 3], &dev)?)?;
        assert_eq!(big.shape(), &[1, 1, 4, 6]);
        let gn = nn::GroupNorm::new(2, 4, &dev)?;
        let z = gn.forward(&(Tensor::randn_on([3, 4, 5], &dev)? * 3.0 + 1.0))?;
        assert!(z.mean()?.item::<f64>()?.abs() < 1e-5);
        assert!(nn::GroupNorm::new(3, 4, &dev).is_err());
        assert!(nn::Conv1d::with(
            4,
            6,
            3,
            F::ConvArgs {
                groups: 4,
                ..Default::default()
            },
            true,
            &dev
        )
        .is_err());
    }
    Ok(())
}

#[test]
fn negative_slice_steps_walk_backwards_like_python() -> Result<()> {
    for dev in common::devices() {
        let x = Tensor::arange_on(0, 5, 1, &dev)?;
        let walk = |start: Option<isize>, end: Option<isize>, step: isize| -> Result<Vec<i64>> {
            x.slice(0, start, end, step)?.to_vec::<i64>()
        };
        // Python: x[::-1], x[::-2], x[3:0:-1], x[1:4:-1], x[-1:-4:-2], x[10:-10:-3]
        assert_eq!(walk(None, None, -1)?, [4, 3, 2, 1, 0]);
        assert_eq!(walk(None, None, -2)?, [4, 2, 0]);
        assert_eq!(walk(Some(3), Some(0), -1)?, [3, 2, 1]);
        assert_eq!(walk(Some(1), Some(4), -1)?, Vec::<i64>::new());
        assert_eq!(walk(Some(-1), Some(-4), -2)?, [4, 2]);
        assert_eq!(walk(Some(10), Some(-10), -3)?, [4, 1]);
        assert_eq!(x.i(wgrad::s![..;-1])?.to_vec::<i64>()?, [4, 3, 2, 1, 0]);
        assert!(x.slice(0, None, None, 0).is_err());
        // The gradient goes back to where each element came from.
        let w = Tensor::arange_on(0.0, 4.0, 1.0, &dev)?.requires_grad_(true)?;
        (w.slice(0, None, None, -2)? * Tensor::new_on([10.0, 1.0], &dev)?)
            .sum()?
            .backward()?;
        assert_eq!(w.grad().unwrap().to_vec::<f32>()?, [0.0, 1.0, 0.0, 10.0]);
    }
    Ok(())
}

/// On the CPU an LSTM or GRU step is one fused op with a fused gradient kernel; under
/// `create_graph` its backward pass is composed from primitives instead, so that it can be
/// differentiated again. Both agree with finite differences and with each other, and the
/// second-order gradient agrees with the GPU's (composed throughout).
#[test]
fn fused_recurrent_cells_agree_with_finite_differences_and_the_composed_step() -> Result<()> {
    use wgrad::{gradcheck, GradcheckOptions};
    for lstm in [false, true] {
        let mut second_order = Vec::new();
        for dev in common::devices() {
            let layer = wgrad::seeded(11, || {
                if lstm {
                    nn::Recurrent::lstm(3, 4, &dev)
                } else {
                    nn::Recurrent::gru(3, 4, &dev)
                }
            })?;
            let x =
                wgrad::seeded(12, || Tensor::randn_on([5, 2, 3], &dev))?.requires_grad_(true)?;
            let run = |x: &Tensor| -> Result<Tensor> {
                let (out, state) = layer.forward(x, None)?;
                let last = match &state.c {
                    Some(c) => state.h.add(c)?,
                    None => state.h.clone(),
                };
                out.sum_dims([0], false)?.add(&last.squeeze_dim(0)?)
            };
            gradcheck(
                |xs| run(&xs[0]),
                std::slice::from_ref(&x),
                GradcheckOptions::default(),
            )?;
            let loss = run(&x)?.square()?.sum()?;
            let fused = wgrad::grad(&loss, &[&x], false)?.remove(0);
            let loss = run(&x)?.square()?.sum()?;
            let composed = wgrad::grad(&loss, &[&x], true)?.remove(0);
            close(&composed, &fused, "create_graph gradient vs fused")?;
            // A gradient penalty: d/dx |dL/dx|^2.
            let penalty = wgrad::grad(&composed.square()?.sum()?, &[&x], false)?.remove(0);
            second_order.push(penalty.to_device(&wgrad::Device::Cpu)?);
        }
        if let [cpu, gpu] = &second_order[..] {
            let e: Vec<f64> = common::floats(gpu).iter().map(|&v| v as f64).collect();
            common::assert_close(
                &common::floats(cpu),
                &e,
                1e-4,
                1e-5,
                "second order, CPU vs GPU",
            );
        }
    }
    Ok(())
}
