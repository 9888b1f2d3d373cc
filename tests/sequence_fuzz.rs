//! Random arguments to the sequence-model ops (random ranks and sizes, 0-d and empty
//! tensors, dims and sizes that do not exist): no panic, and the CPU and the GPU agree
//! (both fail, or both give the same shape and values).

mod common;

use wgrad::nn::{self, functional as F};
use wgrad::{DType, Generator, Result, Tensor};

/// A result's shape and values.
type Outcome = Result<(Vec<usize>, Vec<f64>)>;

/// The op `which` with the drawn arguments `r`, on `x`: its shape and values.
fn run(which: i64, x: &Tensor, r: &[i64]) -> Outcome {
    let shape = x.shape().to_vec();
    let (d, k) = (r[5] as isize, r[6]);
    let modes = [
        F::PadMode::Reflect,
        F::PadMode::Replicate,
        F::PadMode::Circular,
        F::PadMode::Constant(1.0),
    ];
    let equations = ["ij->ji", "ii->i", "i,i->", "ijk->k", "ij,jk->ik", "abc->"];
    let out = match which {
        0 => x.var([d], k.max(0) as usize, r[8] > 0),
        1 => x.flip([d, r[8] as isize]),
        2 => x.roll([k as isize], [d]),
        3 => x.repeat(vec![
            r[8].max(0) as isize;
            shape.len() + r[9].rem_euclid(2) as usize
        ]),
        4 => x.tile([k as isize]),
        5 => x.repeat_interleave(k.max(0) as usize, d),
        6 => x.tril(k),
        7 => x.cumprod(d),
        8 => x.logcumsumexp(d),
        9 => x.sort(d, k > 0).map(|t| t.0),
        10 => x.topk(k.max(0) as usize, d, r[8] > 0).map(|t| t.1),
        11 => x.masked_select(&x.gt_scalar(0.0)?),
        12 => x.nonzero(),
        13 => F::pad(
            x,
            &[k as isize, r[8] as isize],
            modes[r[9].rem_euclid(4) as usize],
        ),
        14 => {
            let mode = if r[8] > 0 {
                F::Interpolation::Nearest
            } else {
                F::Interpolation::Linear {
                    align_corners: r[9] > 0,
                }
            };
            F::interpolate(
                x,
                &vec![k.max(0) as usize; shape.len().saturating_sub(2)],
                mode,
            )
        }
        15 => F::adaptive_max_pool2d(x, (k.max(0) as usize, r[8].max(0) as usize)),
        16 => F::group_norm(x, k.max(0) as usize, None, None, 1e-5),
        17 => F::layer_norm(x, &shape[shape.len().saturating_sub(1)..], None, None, 1e-5),
        18 => F::scaled_dot_product_attention(x, x, x, None, k > 0, None),
        19 => Tensor::einsum(
            equations[r[8].rem_euclid(6) as usize],
            &[x, x][..1 + r[9].rem_euclid(2) as usize],
        ),
        20 => x.slice(d, Some(k as isize), Some(r[8] as isize), r[9] as isize),
        21 => x.index_add(d, &Tensor::new_on([k], x.device())?, x, 1.0),
        22 => F::cosine_similarity(x, x, d, 1e-8),
        23 => x.std([d], 1, false),
        24 | 25 => {
            // Class labels (some out of range) or probabilities, with random options.
            let mut label_shape = shape.clone();
            let classes = if label_shape.len() >= 2 {
                label_shape.remove(1)
            } else {
                1
            };
            let target = if which == 24 {
                wgrad::seeded(r[8].unsigned_abs(), || {
                    Tensor::randint_on(-1, classes as i64 + 1, label_shape, x.device())
                })?
            } else {
                x.softmax(1.min(x.ndim().saturating_sub(1)) as isize)?
            };
            let mut loss = nn::CrossEntropyLoss::new()
                .ignore_index(k)
                .label_smoothing(r[9].rem_euclid(3) as f64 / 4.0)
                .reduction(
                    [nn::Reduction::Mean, nn::Reduction::Sum, nn::Reduction::None]
                        [r[8].rem_euclid(3) as usize],
                );
            if r[10] > 3 {
                loss = loss.weight(&Tensor::ones_on([classes], x.device())?);
            }
            loss.forward(x, &target)
        }
        26 => nn::binary_cross_entropy(&x.sigmoid()?, &x.neg()?.sigmoid()?),
        27 => nn::smooth_l1_loss(x, &x.flip([0])?),
        28 => nn::kl_div(&x.log_softmax(d)?, &x.softmax(d)?),
        29 => nn::HuberLoss::new().delta(k as f64).forward(x, &x.neg()?),
        _ => nn::nll_loss(
            &x.log_softmax(1)?,
            &Tensor::zeros_on(&shape[..shape.len().min(1)], (DType::I64, x.device()))?,
        ),
    }?;
    let values = match out.dtype() {
        DType::I64 => out.to_vec::<i64>()?.into_iter().map(|v| v as f64).collect(),
        DType::Bool => out
            .to_vec::<bool>()?
            .into_iter()
            .map(|v| v as u8 as f64)
            .collect(),
        _ => out.to_vec::<f32>()?.into_iter().map(|v| v as f64).collect(),
    };
    Ok((out.shape().to_vec(), values))
}

#[test]
fn random_arguments_never_panic_and_the_devices_agree() {
    let devices = common::devices();
    let mut g = Generator::new(7);
    let mut checked = 0;
    for case in 0..1000 {
        let r = g.int_range(12, -3, 6);
        let shape: Vec<usize> = (0..r[0].rem_euclid(4) as usize)
            .map(|k| r[1 + k].rem_euclid(4) as usize)
            .collect();
        let which = r[7].rem_euclid(31);
        let data = wgrad::seeded(case, || Tensor::randn(shape.clone())).unwrap();
        let results: Vec<std::result::Result<Outcome, String>> = devices
            .iter()
            .map(|dev| {
                let x = data.to_device(dev).unwrap();
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(which, &x, &r)))
                    .map_err(|_| format!("case {case}: op {which} on {dev}, shape {shape:?}, args {r:?}: panicked"))
            })
            .collect();
        let first = match &results[0] {
            Ok(r) => r,
            Err(panic) => panic!("{panic}"),
        };
        for (dev, other) in devices.iter().zip(&results).skip(1) {
            let other = other.as_ref().unwrap_or_else(|p| panic!("{p}"));
            match (first, other) {
                (Ok((s1, v1)), Ok((s2, v2))) => {
                    assert_eq!(s1, s2, "case {case}: op {which} on {dev}: shape");
                    common::assert_close(&v2.iter().map(|&v| v as f32).collect::<Vec<_>>(), v1, 1e-4, 1e-4, &format!("case {case}: op {which} on {dev}"));
                    checked += 1;
                }
                (Err(_), Err(_)) => {}
                (a, b) => panic!("case {case}: op {which}, shape {shape:?}, args {r:?}: the CPU gives {:?}, {dev} {:?}", a.as_ref().map(|t| &t.0), b.as_ref().map(|t| &t.0)),
            }
        }
    }
    assert!(
        devices.len() == 1 || checked > 100,
        "only {checked} cases compared values"
    );
}
