//! The fused CPU convolution (one op with its own gradient kernel) against the composite
//! one that a GPU runs and that `create_graph` differentiates: values and gradients agree
//! with finite differences and with each other, second-order gradients agree across
//! devices, and an input computed from the weight gets each of its paths counted once.
//! The values against PyTorch are the golden cases.

mod common;

use wgrad::nn::functional::{self as F, ConvArgs};
use wgrad::{gradcheck, Device, GradcheckOptions, Result, Tensor};

fn close_to(actual: &Tensor, expected: &Tensor, rtol: f64, what: &str) -> Result<()> {
    let e: Vec<f64> = common::floats(expected).iter().map(|&v| v as f64).collect();
    common::assert_close(&common::floats(actual), &e, rtol, 1e-5, what);
    Ok(())
}

fn close(actual: &Tensor, expected: &Tensor, what: &str) -> Result<()> {
    close_to(actual, expected, 1e-4, what)
}

/// (x shape, weight shape, bias, args): strides, padding wider than the kernel's reach,
/// dilation, groups, a pointwise kernel with and without stride.
fn cases() -> Vec<([usize; 4], [usize; 4], bool, ConvArgs)> {
    let args = |stride, padding, dilation, groups| ConvArgs {
        stride,
        padding,
        dilation,
        groups,
    };
    vec![
        ([2, 3, 6, 5], [4, 3, 3, 3], true, args(1, 1, 1, 1)),
        ([2, 4, 7, 7], [6, 2, 3, 2], false, args(2, 2, 1, 2)),
        ([1, 2, 6, 6], [2, 2, 2, 3], true, args(1, 3, 2, 1)),
        ([2, 4, 4, 5], [3, 4, 1, 1], true, args(1, 0, 1, 1)),
        ([2, 4, 5, 5], [4, 1, 1, 1], false, args(2, 0, 1, 4)),
    ]
}

#[test]
fn fused_convolution_agrees_with_finite_differences_and_the_composite() -> Result<()> {
    for (k, (xs, ws, bias, args)) in cases().into_iter().enumerate() {
        let mut second_order = Vec::new();
        for dev in common::devices() {
            let (x, w, b) = wgrad::seeded(20 + k as u64, || -> Result<_> {
                Ok((
                    Tensor::randn_on(xs, &dev)?.requires_grad_(true)?,
                    Tensor::randn_on(ws, &dev)?.requires_grad_(true)?,
                    Tensor::randn_on([ws[0]], &dev)?.requires_grad_(true)?,
                ))
            })?;
            let conv =
                |x: &Tensor, w: &Tensor, b: Option<&Tensor>| F::conv2d(x, w, b, args)?.tanh();
            let inputs = [x.clone(), w.clone(), b.clone()];
            let count = if bias { 3 } else { 2 };
            gradcheck(
                |t| conv(&t[0], &t[1], t.get(2)),
                &inputs[..count],
                GradcheckOptions::default(),
            )?;
            let wanted: Vec<&Tensor> = inputs[..count].iter().collect();
            let loss = || conv(&x, &w, bias.then_some(&b))?.square()?.sum();
            let fused = wgrad::grad(&loss()?, &wanted, false)?;
            let composed = wgrad::grad(&loss()?, &wanted, true)?;
            for (i, (c, f)) in composed.iter().zip(&fused).enumerate() {
                close(
                    c,
                    f,
                    &format!("case {k} input {i}: create_graph vs fused, {dev:?}"),
                )?;
            }
            // A gradient penalty: d/d(x, w) of |dL/dx|^2 + |dL/dw|^2.
            let penalty = composed[0]
                .square()?
                .sum()?
                .add(&composed[1].square()?.sum()?)?;
            for g in wgrad::grad(&penalty, &wanted[..2], false)? {
                second_order.push(g.to_device(&Device::Cpu)?);
            }
        }
        if let [cpu_x, cpu_w, gpu_x, gpu_w] = &second_order[..] {
            // Sums of products of f32 sums, in other orders on each device.
            close_to(
                cpu_x,
                gpu_x,
                1e-3,
                &format!("case {k}: second order in x, CPU vs GPU"),
            )?;
            close_to(
                cpu_w,
                gpu_w,
                1e-3,
                &format!("case {k}: second order in w, CPU vs GPU"),
            )?;
        }
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
