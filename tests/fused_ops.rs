//! The ops that run as one fused kernel on the CPU (convolution, batch normalisation,
//! average pooling, recurrent layers, softmax and log-softmax, layer normalisation) or on
//! both backends (cross-entropy against class labels), each against its composite form,
//! which a GPU runs and which
//! `create_graph` differentiates: gradients agree with finite differences and with each
//! other, second-order gradients agree across devices, and an input computed from another
//! gets each of its paths counted once. The values against PyTorch are the golden cases.

mod common;

use wgrad::nn::functional::{self as F, ConvArgs};
use wgrad::nn::{self, Forward};
use wgrad::{gradcheck, Device, GradcheckOptions, Result, Tensor};

fn close(actual: &Tensor, expected: &Tensor, what: &str) -> Result<()> {
    let e: Vec<f64> = common::floats(expected).iter().map(|&v| v as f64).collect();
    common::assert_close(&common::floats(actual), &e, 1e-4, 1e-5, what);
    Ok(())
}

/// Within `1e-3` of the largest magnitude in `expected`: second-order gradients are sums
/// of products of f32 sums, taken in other orders on each device, so a small element
/// carries the rounding of the large ones.
fn close_in_scale(actual: &Tensor, expected: &Tensor, what: &str) -> Result<()> {
    let e: Vec<f64> = common::floats(expected).iter().map(|&v| v as f64).collect();
    let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    common::assert_close(
        &common::floats(actual),
        &e,
        0.0,
        1e-3 * scale.max(1e-2),
        what,
    );
    Ok(())
}

/// `op` over random inputs of `shapes` on every device: gradcheck; the fused gradient of
/// `sum(op^2)` against the one recorded under `create_graph`; and the gradient of the
/// penalty `sum(g^2)` over those gradients `g`, CPU against GPU.
fn check(
    name: &str,
    seed: u64,
    shapes: &[&[usize]],
    op: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<()> {
    let mut second_order = Vec::new();
    for dev in common::devices() {
        let inputs = wgrad::seeded(seed, || -> Result<Vec<Tensor>> {
            shapes
                .iter()
                .map(|s| Tensor::randn_on(*s, &dev)?.requires_grad_(true))
                .collect()
        })?;
        gradcheck(&op, &inputs, GradcheckOptions::default())?;
        let wanted: Vec<&Tensor> = inputs.iter().collect();
        let loss = || op(&inputs)?.square()?.sum();
        let fused = wgrad::grad(&loss()?, &wanted, false)?;
        let composed = wgrad::grad(&loss()?, &wanted, true)?;
        for (i, (c, f)) in composed.iter().zip(&fused).enumerate() {
            close(
                c,
                f,
                &format!("{name} input {i}: create_graph vs fused, {dev:?}"),
            )?;
        }
        let mut penalty = composed[0].square()?.sum()?;
        for g in &composed[1..] {
            penalty = penalty.add(&g.square()?.sum()?)?;
        }
        let grads = wgrad::grad(&penalty, &wanted, false)?;
        second_order.push(
            grads
                .iter()
                .map(|g| g.to_device(&Device::Cpu))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    if let [cpu, gpu] = &second_order[..] {
        for (i, (c, g)) in cpu.iter().zip(gpu).enumerate() {
            close_in_scale(c, g, &format!("{name} input {i}: second order, CPU vs GPU"))?;
        }
    }
    Ok(())
}

#[test]
fn fused_convolution_agrees_with_finite_differences_and_the_composite() -> Result<()> {
    let args = |stride, padding, dilation, groups| ConvArgs {
        stride,
        padding,
        dilation,
        groups,
    };
    // Strides, padding wider than the kernel's reach, dilation, groups, a pointwise kernel
    // with and without stride; with and without a bias.
    let cases: [(&[usize], &[usize], bool, ConvArgs); 5] = [
        (&[2, 3, 6, 5], &[4, 3, 3, 3], true, args(1, 1, 1, 1)),
        (&[2, 4, 7, 7], &[6, 2, 3, 2], false, args(2, 2, 1, 2)),
        (&[1, 2, 6, 6], &[2, 2, 2, 3], true, args(1, 3, 2, 1)),
        (&[2, 4, 4, 5], &[3, 4, 1, 1], true, args(1, 0, 1, 1)),
        (&[2, 4, 5, 5], &[4, 1, 1, 1], false, args(2, 0, 1, 4)),
    ];
    for (k, (xs, ws, bias, args)) in cases.into_iter().enumerate() {
        let bias_shape = [ws[0]];
        let shapes: Vec<&[usize]> = if bias {
            vec![xs, ws, &bias_shape]
        } else {
            vec![xs, ws]
        };
        check(&format!("conv2d case {k}"), 20 + k as u64, &shapes, |t| {
            F::conv2d(&t[0], &t[1], t.get(2), args)?.tanh()
        })?;
    }
    Ok(())
}

#[test]
fn fused_batch_norm_agrees_with_finite_differences_and_the_composite() -> Result<()> {
    for (k, shape) in [&[4usize, 3, 2, 3][..], &[5, 4]].into_iter().enumerate() {
        let c = shape[1];
        check(
            &format!("batch norm {shape:?}"),
            40 + k as u64,
            &[shape, &[c], &[c]],
            |t| {
                let mut bn = if shape.len() == 4 {
                    nn::BatchNorm2d::new(c, t[0].device())?
                } else {
                    nn::BatchNorm1d::new(c, t[0].device())?
                };
                bn.weight = t[1].clone();
                bn.bias = t[2].clone();
                // Not linear in x: the statistics are the batch's.
                bn.forward(&t[0])?.sin()
            },
        )?;
    }
    Ok(())
}

/// Batch normalisation in training on a GPU (one kernel forward, one backward) gives the
/// CPU's outputs, running statistics and gradients, for rows of one value per channel,
/// images, and channels longer than a workgroup.
#[test]
fn batch_norm_on_a_gpu_equals_the_cpu() -> Result<()> {
    use wgrad::nn::Module;
    for shape in [&[7usize, 3][..], &[4, 5, 3, 3], &[2, 3, 1, 700]] {
        let x = wgrad::seeded(5, || Tensor::randn(shape))?
            .mul_scalar(2.0)?
            .add_scalar(1.0)?;
        let g = wgrad::seeded(6, || Tensor::randn(shape))?;
        let run = |dev: &Device| -> Result<Vec<Tensor>> {
            let bn = if shape.len() == 2 {
                nn::BatchNorm1d::new(shape[1], dev)?
            } else {
                nn::BatchNorm2d::new(shape[1], dev)?
            };
            let p = bn.parameters();
            wgrad::no_grad_scope(|| -> Result<()> {
                p[0].mul_(1.5)?;
                p[1].add_(0.25)?;
                Ok(())
            })?;
            let x = x.to_device(dev)?.detach().requires_grad_(true)?;
            let y = bn.forward(&x)?;
            y.mul(&g.to_device(dev)?)?.sum()?.backward()?;
            let mut out = vec![y.detach(), x.grad().expect("dx")];
            out.extend(p.iter().map(|t| t.grad().expect("parameter grad")));
            out.extend(bn.named_buffers().into_iter().map(|(_, t)| t));
            out.iter().map(|t| t.to_device(&Device::Cpu)).collect()
        };
        let cpu = run(&Device::Cpu)?;
        for dev in common::devices().iter().filter(|d| !d.is_cpu()) {
            for (k, (a, b)) in run(dev)?.iter().zip(&cpu).enumerate() {
                if a.dtype().is_float() {
                    close(a, b, &format!("batch norm {shape:?} output {k} on {dev}"))?;
                } else {
                    assert_eq!(a.to_vec::<i64>()?, b.to_vec::<i64>()?, "{shape:?} {k}");
                }
            }
        }
    }
    Ok(())
}

/// Layer normalisation on a GPU (a workgroup per row) gives the CPU's output and
/// gradients, with and without the weight and the bias, over one trailing dim or two, rows
/// shorter and longer than a workgroup.
#[test]
fn layer_norm_on_a_gpu_equals_the_cpu() -> Result<()> {
    let cases: [(&[usize], usize, bool, bool); 4] = [
        (&[6, 100], 1, true, true),
        (&[2, 3, 5, 7], 2, true, false),
        (&[4, 3], 1, false, false),
        (&[3, 130], 1, false, true),
    ];
    for (k, (shape, dims, has_w, has_b)) in cases.into_iter().enumerate() {
        let normalized = &shape[shape.len() - dims..];
        let seeded = |seed: u64, s: &[usize]| wgrad::seeded(seed, || Tensor::randn(s));
        let (x, g) = (seeded(k as u64, shape)?, seeded(10 + k as u64, shape)?);
        let (w, b) = (seeded(20, normalized)?, seeded(21, normalized)?);
        let run = |dev: &Device| -> Result<Vec<Tensor>> {
            let leaf = |t: &Tensor| t.to_device(dev)?.detach().requires_grad_(true);
            let (x, w, b) = (leaf(&x)?, leaf(&w)?, leaf(&b)?);
            let y = F::layer_norm(
                &x,
                normalized,
                has_w.then_some(&w),
                has_b.then_some(&b),
                1e-5,
            )?;
            y.mul(&g.to_device(dev)?)?.sum()?.backward()?;
            let mut out = vec![y.detach(), x.grad().expect("dx")];
            out.extend(has_w.then(|| w.grad().expect("dw")));
            out.extend(has_b.then(|| b.grad().expect("db")));
            out.iter().map(|t| t.to_device(&Device::Cpu)).collect()
        };
        let cpu = run(&Device::Cpu)?;
        for dev in common::devices().iter().filter(|d| !d.is_cpu()) {
            for (i, (a, b)) in run(dev)?.iter().zip(&cpu).enumerate() {
                close(a, b, &format!("layer norm {shape:?} output {i} on {dev}"))?;
            }
        }
    }
    Ok(())
}

/// Softmax and log-softmax on a GPU (a workgroup per row) give the CPU's values and
/// gradients, for rows shorter and longer than a workgroup and rows holding NaN, an
/// infinity or only -inf (the composite's NaN and -inf where PyTorch has them).
#[test]
fn softmax_on_a_gpu_equals_the_cpu() -> Result<()> {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let special = Tensor::new([
        [1.0, nan, 3.0],
        [inf, 1.0, 2.0],
        [-inf, 1.0, 2.0],
        [-inf, -inf, -inf],
    ])?;
    let inputs = [
        wgrad::seeded(30, || Tensor::randn([5, 7]))?,
        wgrad::seeded(31, || Tensor::randn([2, 3, 150]))?.mul_scalar(4.0)?,
        special,
    ];
    for (k, x) in inputs.iter().enumerate() {
        let g = wgrad::seeded(40 + k as u64, || Tensor::randn(x.shape()))?;
        for log in [false, true] {
            let run = |dev: &Device| -> Result<Vec<Tensor>> {
                let x = x.to_device(dev)?.detach().requires_grad_(true)?;
                let y = if log {
                    x.log_softmax(-1)?
                } else {
                    x.softmax(-1)?
                };
                y.mul(&g.to_device(dev)?)?.sum()?.backward()?;
                [y.detach(), x.grad().expect("dx")]
                    .iter()
                    .map(|t| t.to_device(&Device::Cpu))
                    .collect()
            };
            let cpu = run(&Device::Cpu)?;
            for dev in common::devices().iter().filter(|d| !d.is_cpu()) {
                for (i, (a, b)) in run(dev)?.iter().zip(&cpu).enumerate() {
                    let (av, bv) = (common::floats(a), common::floats(b));
                    for (j, (p, q)) in av.iter().zip(&bv).enumerate() {
                        let same = (p.is_nan() && q.is_nan())
                            || p == q
                            || (p - q).abs() <= 1e-4 * (1.0 + q.abs());
                        assert!(
                            same,
                            "input {k} log {log} output {i} [{j}] on {dev}: {p} vs {q}"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn fused_average_pooling_agrees_with_finite_differences_and_the_composite() -> Result<()> {
    for (k, (shape, window, stride)) in [
        (&[2usize, 3, 6, 6][..], 2, 2),
        (&[1, 2, 7, 5], 3, 1),
        (&[2, 1, 8, 7], 2, 3),
    ]
    .into_iter()
    .enumerate()
    {
        check(
            &format!("avg_pool2d {shape:?} k {window} s {stride}"),
            50 + k as u64,
            &[shape],
            |t| F::avg_pool2d(&t[0], window, stride)?.tanh(),
        )?;
    }
    Ok(())
}

#[test]
fn fused_softmax_and_log_softmax_agree_with_finite_differences_and_the_composite() -> Result<()> {
    // Few rows: gradcheck's f32 finite differences of a weighted sum of 120 log-probabilities
    // were off by 2% (against f64 differences that agree with the gradient to 1e-5).
    for (k, shape) in [&[3usize, 7][..], &[2, 3, 6], &[5, 1]]
        .into_iter()
        .enumerate()
    {
        // Scaled so that the outputs spread (a softmax of similar logits is nearly flat).
        check(
            &format!("softmax {shape:?}"),
            60 + k as u64,
            &[shape],
            |t| t[0].mul_scalar(2.0)?.softmax(-1),
        )?;
        check(
            &format!("log_softmax {shape:?}"),
            70 + k as u64,
            &[shape],
            |t| t[0].mul_scalar(2.0)?.log_softmax(-1),
        )?;
    }
    Ok(())
}

/// Cross-entropy against labels, one of them ignored, for each reduction.
fn labelled_losses() -> Vec<(String, nn::CrossEntropyLoss)> {
    [nn::Reduction::Mean, nn::Reduction::Sum, nn::Reduction::None]
        .into_iter()
        .map(|r| {
            (
                format!("cross_entropy {r:?}"),
                nn::CrossEntropyLoss::new().reduction(r).ignore_index(1),
            )
        })
        .collect()
}

#[test]
fn fused_cross_entropy_agrees_with_finite_differences_and_the_composite() -> Result<()> {
    for (k, (name, loss)) in labelled_losses().into_iter().enumerate() {
        check(&name, 80 + k as u64, &[&[4, 5]], |t| {
            let labels = Tensor::new([3i64, 1, 0, 4])?.to_device(t[0].device())?;
            loss.forward(&t[0].mul_scalar(2.0)?, &labels)
        })?;
    }
    Ok(())
}

/// The fused loss and its gradient equal `nll_loss(log_softmax(x))` (the composite) on
/// every device, for rows longer than a GPU workgroup, transposed logits and a row of
/// ignored labels; a label out of range is an `Err` before anything runs.
#[test]
fn fused_cross_entropy_equals_the_composite_on_every_device() -> Result<()> {
    for dev in common::devices() {
        for (rows, classes) in [(3usize, 1usize), (37, 10), (5, 300)] {
            let x = wgrad::seeded(rows as u64, || Tensor::randn_on([rows, classes], &dev))?
                .mul_scalar(3.0)?;
            let labels: Vec<i64> = (0..rows)
                .map(|r| {
                    if r % 4 == 1 {
                        -7
                    } else {
                        ((r * 7) % classes) as i64
                    }
                })
                .collect();
            let labels = Tensor::new(labels)?.to_device(&dev)?;
            for transposed in [false, true] {
                let logits = if transposed {
                    x.t()?.contiguous()?.t()?.detach()
                } else {
                    x.clone()
                }
                .requires_grad_(true)?;
                for (name, reduction) in [
                    ("mean", nn::Reduction::Mean),
                    ("sum", nn::Reduction::Sum),
                    ("none", nn::Reduction::None),
                ] {
                    let what =
                        format!("{name} [{rows}, {classes}] transposed {transposed} {dev:?}");
                    let fused = nn::CrossEntropyLoss::new()
                        .reduction(reduction)
                        .ignore_index(-7)
                        .forward(&logits, &labels)?;
                    let composite = nn::NLLLoss::new()
                        .reduction(reduction)
                        .ignore_index(-7)
                        .forward(&logits.log_softmax(1)?, &labels)?;
                    assert_eq!(fused.shape(), composite.shape(), "{what}");
                    close(&fused, &composite, &what)?;
                    let weights = Tensor::randn_on(fused.shape(), &dev)?;
                    let grad = |loss: &Tensor| -> Result<Tensor> {
                        let g = wgrad::grad(&loss.mul(&weights)?.sum()?, &[&logits], false)?;
                        Ok(g[0].clone())
                    };
                    close(&grad(&fused)?, &grad(&composite)?, &format!("grad {what}"))?;
                }
            }
            let bad = Tensor::new(vec![classes as i64; rows])?.to_device(&dev)?;
            let err = nn::cross_entropy(&x, &bad).expect_err("label out of range");
            assert!(err.to_string().contains("cross_entropy"), "{err}");
        }
    }
    Ok(())
}

/// The labels are saved for backward: overwriting them in place is an `Err` there, as
/// for any saved index, rather than a gradient for other labels. (A GPU composes the loss
/// with `WGRAD_NO_FUSION=1`; the composite's gradient reads a copy of the labels.)
#[test]
fn fused_cross_entropy_refuses_labels_changed_before_backward() -> Result<()> {
    let fusion_off = std::env::var_os("WGRAD_NO_FUSION").is_some_and(|v| v != "0");
    for dev in common::devices() {
        if fusion_off && !dev.is_cpu() {
            continue;
        }
        let logits = Tensor::randn_on([4, 3], &dev)?.requires_grad_(true)?;
        let labels = Tensor::new([0i64, 1, 2, 1])?.to_device(&dev)?;
        let loss = nn::cross_entropy(&logits, &labels)?;
        assert_eq!(loss.grad_fn_name().as_deref(), Some("NllLossBackward0"));
        labels.fill_(0)?;
        assert!(loss.backward().is_err(), "{dev:?}");
    }
    Ok(())
}

#[test]
fn fused_layer_norm_agrees_with_finite_differences_and_the_composite() -> Result<()> {
    // With the weight and bias, without them, and over two trailing dims.
    check("layer_norm affine", 80, &[&[4, 6], &[6], &[6]], |t| {
        F::layer_norm(&t[0], &[6], Some(&t[1]), Some(&t[2]), 1e-5)?.tanh()
    })?;
    check("layer_norm plain", 81, &[&[2, 3, 5]], |t| {
        F::layer_norm(&t[0], &[5], None, None, 1e-5)?.tanh()
    })?;
    check(
        "layer_norm weight only, 2 dims",
        82,
        &[&[3, 2, 4], &[2, 4]],
        |t| F::layer_norm(&t[0], &[2, 4], Some(&t[1]), None, 1e-5)?.tanh(),
    )?;
    Ok(())
}

/// One direction of each recurrent cell over a short sequence, forward and reversed, with
/// and without biases: every step's output and the final states, so that the gradients
/// carried from step to step and the final cell state's count.
#[test]
fn fused_recurrent_layers_agree_with_finite_differences_and_the_composite() -> Result<()> {
    let (t, b, i, h) = (3usize, 2, 3, 4);
    let cases = [
        (nn::CellKind::Lstm, false, true),
        (nn::CellKind::Lstm, true, false),
        (nn::CellKind::Gru, false, true),
        (nn::CellKind::Gru, true, true),
        (nn::CellKind::Tanh, true, true),
        (nn::CellKind::Relu, false, true),
    ];
    for (k, (kind, reverse, bias)) in cases.into_iter().enumerate() {
        let g = match kind {
            nn::CellKind::Tanh | nn::CellKind::Relu => 1,
            nn::CellKind::Gru => 3,
            nn::CellKind::Lstm => 4,
        } * h;
        let mut owned = vec![
            vec![t, b, i],
            vec![b, h],
            vec![b, h],
            vec![g, i],
            vec![g, h],
        ];
        if bias {
            owned.extend([vec![g], vec![g]]);
        }
        let shapes: Vec<&[usize]> = owned.iter().map(Vec::as_slice).collect();
        check(
            &format!("{kind:?} reverse {reverse} bias {bias}"),
            60 + k as u64,
            &shapes,
            |v| {
                let w = nn::Direction {
                    weight_ih: v[3].clone(),
                    weight_hh: v[4].clone(),
                    bias_ih: v.get(5).cloned(),
                    bias_hh: v.get(6).cloned(),
                };
                let c0 = (kind == nn::CellKind::Lstm).then_some(&v[2]);
                let (out, h, c) = nn::run_direction(kind, &v[0], &v[1], c0, &w, reverse)?;
                let mut parts = vec![out.reshape([-1isize])?, h.reshape([-1isize])?];
                match c {
                    Some(c) => parts.push(c.reshape([-1isize])?),
                    // The unused cell state still joins the graph, with a zero gradient.
                    None => parts.push((&v[2] * 0.0).reshape([-1isize])?),
                }
                Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)
            },
        )?;
    }
    Ok(())
}

/// `conv2d(x w.sum(), w)`: the input depends on the weight, so the weight's gradient has
/// two paths. The fused rule, the composite one under `create_graph` and the GPU's agree.
#[test]
fn an_input_computed_from_the_weight_counts_both_paths_once() -> Result<()> {
    let mut grads = Vec::new();
    for dev in common::devices() {
        let (x, w) = wgrad::seeded(31, || -> Result<_> {
            Ok((
                Tensor::randn_on([2, 2, 5, 5], &dev)?,
                Tensor::randn_on([3, 2, 3, 3], &dev)?.requires_grad_(true)?,
            ))
        })?;
        let loss = || -> Result<Tensor> {
            let scaled = x.mul(&w.sum()?)?;
            F::conv2d(&scaled, &w, None, ConvArgs::default())?
                .square()?
                .sum()
        };
        let fused = wgrad::grad(&loss()?, &[&w], false)?.remove(0);
        let composed = wgrad::grad(&loss()?, &[&w], true)?.remove(0);
        close(
            &composed,
            &fused,
            &format!("create_graph vs fused, {dev:?}"),
        )?;
        grads.push(fused.to_device(&Device::Cpu)?);
    }
    if let [cpu, gpu] = &grads[..] {
        close(cpu, gpu, "CPU vs GPU")?;
    }
    Ok(())
}

#[test]
fn convolution_refuses_a_bias_of_the_wrong_shape() -> Result<()> {
    for dev in common::devices() {
        let x = Tensor::zeros_on([1, 2, 4, 4], (wgrad::DType::F32, &dev))?;
        let w = Tensor::zeros_on([3, 2, 3, 3], (wgrad::DType::F32, &dev))?;
        for b in [[2usize].as_slice(), &[3, 1]] {
            let b = Tensor::zeros_on(b, (wgrad::DType::F32, &dev))?;
            let err = F::conv2d(&x, &w, Some(&b), ConvArgs::default()).unwrap_err();
            assert!(err.to_string().contains("conv2d"), "{err}");
        }
    }
    Ok(())
}
