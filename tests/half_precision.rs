//! The 16-bit float dtypes (F16, BF16) on every device: each op computes in f32 and rounds
//! its result once, as PyTorch's CPU kernels do, so a half result must be exactly the f32
//! result of the same (half) inputs rounded to the half type. Also: gradients, promotion,
//! printing, files written by PyTorch, odd lengths and strided writes on the GPU (two values
//! share each 32-bit word there), and optimizers on half parameters.

mod common;

use wgrad::nn::{self, Forward, Module};
use wgrad::op::{BinaryOp, ReduceOp, Unary, UnaryOp};
use wgrad::optim::{Adam, Optimizer};
use wgrad::{half, DType, Device, Result, Tensor};

const HALVES: [DType; 2] = [DType::F16, DType::BF16];

/// The values of a tensor of any float dtype, as f32 (exact for the 16-bit types).
fn wide(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap()
}

/// Bitwise equality of two float tensors' values (NaN equal to NaN).
fn assert_same(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    if got.dtype() == DType::Bool || got.dtype() == DType::I64 {
        assert_eq!(got.to_string(), want.to_string(), "{what}");
        return;
    }
    for (i, (a, b)) in wide(got).iter().zip(wide(want)).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "{what}: element {i}: {a} vs {b}"
        );
    }
}

/// A half tensor of `shape` with values of every sign and size, and the same values in f32.
fn sample(dtype: DType, shape: &[usize], seed: u64, dev: &Device) -> (Tensor, Tensor) {
    let g = &mut wgrad::Generator::new(seed);
    let x = Tensor::randn_with(shape.to_vec(), g)
        .unwrap()
        .mul_scalar(3.0)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
        .to_device(dev)
        .unwrap();
    let f = x.to_dtype(DType::F32).unwrap();
    (x, f)
}

#[test]
fn every_table_op_on_a_half_tensor_is_the_f32_op_rounded_once() {
    for dev in common::devices() {
        for d in HALVES {
            let (x, xf) = sample(d, &[3, 5], 1, &dev);
            let (y, yf) = sample(d, &[3, 5], 2, &dev);
            for &op in UnaryOp::ALL {
                if matches!(op.def().f32, Unary::Refused(_)) {
                    continue;
                }
                let want = xf.unary_op(op).unwrap();
                let want = if want.dtype() == DType::F32 {
                    want.to_dtype(d).unwrap()
                } else {
                    want
                };
                let what = format!("{}({d:?}) on {dev}", op.name());
                assert_same(&x.unary_op(op).unwrap(), &want, &what);
            }
            for &op in BinaryOp::ALL {
                let what = format!("{}({d:?}) on {dev}", op.name());
                let want = Tensor::binary_op(op, &xf, &yf)
                    .unwrap()
                    .to_dtype(d)
                    .unwrap();
                assert_same(&Tensor::binary_op(op, &x, &y).unwrap(), &want, &what);
                // A Rust number meets the values in f32, as PyTorch's opmath does.
                let want = Tensor::binary_op(op, &xf, 0.3)
                    .unwrap()
                    .to_dtype(d)
                    .unwrap();
                assert_same(&Tensor::binary_op(op, &x, 0.3).unwrap(), &want, &what);
            }
            for &op in ReduceOp::ALL {
                let what = format!("{}({d:?}) on {dev}", op.name());
                let reduce = |t: &Tensor| match op {
                    ReduceOp::Sum => t.sum_dims([1], false),
                    ReduceOp::Prod => t.prod_dims([1], false),
                    ReduceOp::Max => t.max_dims([1], false),
                    ReduceOp::Min => t.min_dims([1], false),
                    ReduceOp::ArgMax => t.argmax_dim(1, false),
                    ReduceOp::ArgMin => t.argmin_dim(1, false),
                };
                let want = reduce(&xf).unwrap();
                let want = if want.dtype() == DType::F32 {
                    want.to_dtype(d).unwrap()
                } else {
                    want
                };
                assert_same(&reduce(&x).unwrap(), &want, &what);
            }
            let what = format!("matmul, cumsum, gather, where ({d:?}) on {dev}");
            let round = |t: Tensor| t.to_dtype(d).unwrap();
            assert_same(
                &x.matmul(&y.t().unwrap()).unwrap(),
                &round(xf.matmul(&yf.t().unwrap()).unwrap()),
                &what,
            );
            assert_same(&x.cumsum(1).unwrap(), &round(xf.cumsum(1).unwrap()), &what);
            let index = Tensor::new([[2i64, 0], [1, 1], [4, 3]])
                .unwrap()
                .to_device(&dev)
                .unwrap();
            assert_same(
                &x.gather(1, &index).unwrap(),
                &round(xf.gather(1, &index).unwrap()),
                &what,
            );
            let mask = xf.gt(&yf).unwrap();
            assert_same(
                &Tensor::where_cond(&mask, &x, &y).unwrap(),
                &round(Tensor::where_cond(&mask, &xf, &yf).unwrap()),
                &what,
            );
        }
    }
}

#[test]
fn promotion_follows_pytorch() -> Result<()> {
    let h = Tensor::new([1.0f32, 2.0])?.to_dtype(DType::F16)?;
    let b = Tensor::new([1.0f32, 2.0])?.to_dtype(DType::BF16)?;
    let f = Tensor::new([1.0f32, 2.0])?;
    let i = Tensor::new([1i64, 2])?;
    assert_eq!((&h + &b).dtype(), DType::F32);
    assert_eq!((&h + &f).dtype(), DType::F32);
    assert_eq!((&i + &b).dtype(), DType::BF16);
    assert_eq!(h.mul_scalar(2.5)?.dtype(), DType::F16);
    assert_eq!(
        (f.half()?.dtype(), f.bfloat16()?.dtype(), h.float()?.dtype()),
        (DType::F16, DType::BF16, DType::F32)
    );
    assert_eq!(i.to_dtype(DType::F16)?.dtype(), DType::F16);
    // A number past a 16-bit type's range is refused where it would be stored.
    assert!(Tensor::full_on([2], 1e6, (DType::F16, &Device::Cpu)).is_err());
    assert_eq!(wide(&h.mul_scalar(1e6)?), vec![f32::INFINITY; 2]);
    Ok(())
}

#[test]
fn half_tensors_print_as_pytorch_prints_them() -> Result<()> {
    let h = Tensor::new([1.0f32, 2.5, -0.125])?.to_dtype(DType::F16)?;
    assert_eq!(
        h.to_string(),
        "tensor([ 1.0000,  2.5000, -0.1250], dtype=torch.float16)"
    );
    let b = Tensor::new([[1.0f32, 2.0]])?.to_dtype(DType::BF16)?;
    assert_eq!(b.to_string(), "tensor([[1., 2.]], dtype=torch.bfloat16)");
    let r = b.requires_grad_(true)?;
    assert_eq!(
        r.to_string(),
        "tensor([[1., 2.]], dtype=torch.bfloat16, requires_grad=True)"
    );
    Ok(())
}

#[test]
fn a_half_leaf_gets_a_half_gradient() -> Result<()> {
    for dev in common::devices() {
        for d in HALVES {
            let (x, xf) = sample(d, &[4, 3], 3, &dev);
            let (w, wf) = sample(d, &[3, 2], 4, &dev);
            let (x, w) = (x.requires_grad_(true)?, w.requires_grad_(true)?);
            let (xf, wf) = (xf.requires_grad_(true)?, wf.requires_grad_(true)?);
            x.matmul(&w)?.tanh()?.sum()?.backward()?;
            xf.matmul(&wf)?.tanh()?.sum()?.backward()?;
            for (h, f, name) in [(&x, &xf, "x"), (&w, &wf, "w")] {
                let g = h.grad().expect("a gradient");
                assert_eq!(g.dtype(), d, "{name}'s gradient on {dev}");
                let (rtol, atol) = if d == DType::F16 {
                    (1e-2, 1e-2)
                } else {
                    (6e-2, 6e-2)
                };
                let want: Vec<f64> = wide(&f.grad().unwrap()).iter().map(|&v| v as f64).collect();
                common::assert_close(&wide(&g), &want, rtol, atol, &format!("{name} {d:?} {dev}"));
            }
        }
    }
    Ok(())
}

#[test]
fn odd_lengths_views_and_in_place_writes_keep_each_half_of_a_word() -> Result<()> {
    for dev in common::devices() {
        for d in HALVES {
            for n in [1usize, 3, 5, 1023] {
                // Exact in both types (bf16 has 8 significand bits).
                let values: Vec<f32> = (0..n).map(|i| (i % 64) as f32 * 0.5 - 7.0).collect();
                let t = Tensor::from_vec(values.clone(), [n])?
                    .to_dtype(d)?
                    .to_device(&dev)?;
                assert_eq!(wide(&t), values, "{n} values of {d:?} on {dev}");
                let full = Tensor::full_on([n], 1.5, (d, &dev))?;
                assert_eq!(wide(&full), vec![1.5; n]);
                if n > 2 {
                    // A view starting in the high half of a word, and a write through it that
                    // leaves its neighbours alone.
                    let v = t.narrow(0, 1, n - 2)?;
                    assert_eq!(wide(&v), values[1..n - 1].to_vec());
                    v.add_(1.0)?;
                    let mut want = values.clone();
                    for x in &mut want[1..n - 1] {
                        *x += 1.0;
                    }
                    assert_eq!(wide(&t), want, "add_ through a view of {d:?} on {dev}");
                }
            }
            // A write through a transposed view: every word gets two writers.
            let m = Tensor::zeros_on([5, 7], (d, &dev))?;
            let src = Tensor::arange(0.0, 35.0, 1.0)?
                .reshape([7, 5])?
                .to_dtype(d)?;
            m.t()?.copy_(&src.to_device(&dev)?)?;
            let want = Tensor::arange(0.0, 35.0, 1.0)?
                .reshape([7, 5])?
                .t()?
                .contiguous()?;
            assert_eq!(wide(&m), wide(&want), "transposed write of {d:?} on {dev}");
            m.t()?.narrow(0, 1, 3)?.fill_(-2.0)?;
            let want = want.t()?.contiguous()?;
            want.narrow(0, 1, 3)?.fill_(-2.0)?;
            assert_eq!(
                wide(&m),
                wide(&want.t()?.contiguous()?),
                "fill_ of {d:?} on {dev}"
            );
        }
    }
    Ok(())
}

#[test]
fn casts_round_to_nearest_even_on_every_device() -> Result<()> {
    // Ties, a subnormal, the largest finite values, overflow to infinity, and NaN.
    let x = [
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-11),
        1.0 + 2f32.powi(-8),
        1e-5,
        5.96e-8,
        2.9e-8,
        65504.0,
        65519.0,
        65520.0,
        3.3895e38,
        f32::INFINITY,
        -0.0,
        f32::NAN,
    ];
    let want_f16: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let want_bf16: Vec<f32> = x
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect();
    for dev in common::devices() {
        let t = Tensor::from_vec(x.to_vec(), [x.len()])?.to_device(&dev)?;
        for (d, want) in [(DType::F16, &want_f16), (DType::BF16, &want_bf16)] {
            let got = wide(&t.to_dtype(d)?);
            for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{d:?} of {} on {dev}: {a} vs {b} (element {i})",
                    x[i]
                );
            }
            // Integers and bools convert through f32, as PyTorch's do.
            let ints = Tensor::new([3i64, -2049, 70000])?.to_device(&dev)?;
            let want_ints: Vec<f32> = [3.0f32, -2049.0, 70000.0]
                .iter()
                .map(|&v| {
                    if d == DType::F16 {
                        half::f16::from_f32(v).to_f32()
                    } else {
                        half::bf16::from_f32(v).to_f32()
                    }
                })
                .collect();
            assert_eq!(wide(&ints.to_dtype(d)?), want_ints);
            assert_eq!(
                t.to_dtype(d)?.to_dtype(DType::Bool)?.to_vec::<bool>()?,
                want.iter().map(|&v| v != 0.0).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}

#[test]
fn safetensors_files_keep_half_dtypes_and_read_pytorchs() -> Result<()> {
    // Written by tests/golden/half_safetensors.py with PyTorch: the same values in f32, f16
    // and bf16 (PyTorch's own rounding).
    let file = wgrad::io::load("tests/data/torch_half.safetensors")?;
    let get = |name: &str| {
        file.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{name} in the file"))
    };
    let (f32s, f16s, bf16s) = (get("x_f32"), get("x_f16"), get("x_bf16"));
    assert_eq!((f16s.dtype(), bf16s.dtype()), (DType::F16, DType::BF16));
    assert_eq!(f16s.shape(), &[3, 4]);
    assert_same(&f32s.to_dtype(DType::F16)?, &f16s, "PyTorch's f16 rounding");
    assert_same(
        &f32s.to_dtype(DType::BF16)?,
        &bf16s,
        "PyTorch's bf16 rounding",
    );
    // And back: the file wgrad writes reads back bit for bit.
    let dir = std::env::temp_dir().join(format!("wgrad_half_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("half.safetensors");
    wgrad::io::save(
        &path,
        &[
            ("a".to_string(), f16s.clone()),
            ("b".to_string(), bf16s.clone()),
        ],
    )?;
    let back = wgrad::io::load(&path)?;
    assert_same(&back[0].1, &f16s, "f16 round trip");
    assert_same(&back[1].1, &bf16s, "bf16 round trip");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn a_bf16_model_trains_with_f32_optimizer_state() -> Result<()> {
    for dev in common::devices() {
        wgrad::manual_seed(7);
        let mut net = nn::Sequential::new()
            .add(nn::Linear::new(4, 16, &dev)?)
            .add(nn::Tanh)
            .add(nn::Linear::new(16, 1, &dev)?);
        net.to_dtype(DType::BF16)?;
        assert!(net
            .parameters()
            .iter()
            .all(|p| p.dtype() == DType::BF16 && p.requires_grad()));
        let g = &mut wgrad::Generator::new(3);
        let x = Tensor::randn_with([64, 4], g)?.to_device(&dev)?;
        let y = x.sum_dims([1], true)?.sin()?;
        let (x, y) = (x.to_dtype(DType::BF16)?, y.to_dtype(DType::BF16)?);
        let mut opt = Adam::new(net.parameters(), 0.03);
        let mut losses = Vec::new();
        for _ in 0..60 {
            opt.zero_grad();
            let loss = nn::mse_loss(&net.forward(&x)?, &y)?;
            assert_eq!(loss.dtype(), DType::BF16);
            loss.backward()?;
            opt.step()?;
            losses.push(loss.to_dtype(DType::F32)?.item::<f32>()?);
        }
        assert!(
            losses[59] < 0.25 * losses[0],
            "bf16 training on {dev}: loss {} -> {}",
            losses[0],
            losses[59]
        );
        assert!(net.parameters().iter().all(|p| p.dtype() == DType::BF16));
        let state = opt.state();
        assert!(state.iter().any(|(_, t)| t.dtype() == DType::F32));
        assert!(
            state.iter().all(|(_, t)| !t.dtype().is_half()),
            "Adam's state is f32"
        );
    }
    Ok(())
}

#[test]
fn autocast_runs_matmuls_in_the_half_type_and_reductions_in_f32() -> Result<()> {
    use wgrad::nn::functional as F;
    for dev in common::devices() {
        for d in HALVES {
            let g = &mut wgrad::Generator::new(5);
            let x = Tensor::randn_with([4, 3, 6, 6], g)?.to_device(&dev)?;
            let w = Tensor::randn_with([5, 3, 3, 3], g)?
                .to_device(&dev)?
                .requires_grad_(true)?;
            let lw = Tensor::randn_with([10, 5 * 16], g)?
                .to_device(&dev)?
                .requires_grad_(true)?;
            let labels = Tensor::new([1i64, 0, 9, 3])?.to_device(&dev)?;
            let forward = || -> Result<(Tensor, Tensor, Tensor)> {
                let h = F::conv2d(&x, &w, None, F::ConvArgs::default())?.relu()?;
                let logits = F::linear(&h.flatten(1, -1)?, &lw, None)?;
                let loss = nn::cross_entropy(&logits, &labels)?;
                Ok((h, logits, loss))
            };
            let (h, logits, loss) = {
                let _amp = wgrad::autocast(d)?;
                assert_eq!(wgrad::autocast_dtype(), Some(d));
                let out = forward()?;
                // The f32 list: softmax and exp of a 16-bit tensor come out in f32.
                assert_eq!(out.1.softmax(1)?.dtype(), DType::F32);
                assert_eq!(out.1.exp()?.dtype(), DType::F32);
                assert_eq!(out.1.tanh()?.dtype(), d, "tanh runs in its input's dtype");
                // linear is one op: an f32 bias joins in the 16-bit type.
                let bias = Tensor::zeros_on([10], &dev)?;
                let flat = x.flatten(1, -1)?.narrow(1, 0, 80)?;
                assert_eq!(F::linear(&flat, &lw, Some(&bias))?.dtype(), d);
                out
            };
            assert_eq!(wgrad::autocast_dtype(), None, "the scope closed");
            assert_eq!(
                (h.dtype(), logits.dtype(), loss.dtype()),
                (d, d, DType::F32),
                "{dev}"
            );
            loss.backward()?;
            let (gw, glw) = (w.grad().unwrap(), lw.grad().unwrap());
            assert_eq!(
                (gw.dtype(), glw.dtype()),
                (DType::F32, DType::F32),
                "master gradients"
            );
            // The same step in f32: gradients agree to the half type's precision.
            let (w32, lw32) = (
                w.detach().requires_grad_(true)?,
                lw.detach().requires_grad_(true)?,
            );
            let h = F::conv2d(&x, &w32, None, F::ConvArgs::default())?.relu()?;
            let loss32 = nn::cross_entropy(&F::linear(&h.flatten(1, -1)?, &lw32, None)?, &labels)?;
            loss32.backward()?;
            let tol = if d == DType::F16 { 0.02 } else { 0.1 };
            for (got, want) in [(gw, w32.grad().unwrap()), (glw, lw32.grad().unwrap())] {
                let want = common::floats(&want);
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
                common::assert_close(
                    &common::floats(&got),
                    &want,
                    0.0,
                    tol * scale,
                    "autocast grad",
                );
            }
        }
    }
    assert!(wgrad::autocast(DType::F32).is_err());
    // Scopes nest and restore.
    let outer = wgrad::autocast(DType::BF16)?;
    {
        let _inner = wgrad::autocast(DType::F16)?;
        assert_eq!(wgrad::autocast_dtype(), Some(DType::F16));
    }
    assert_eq!(wgrad::autocast_dtype(), Some(DType::BF16));
    drop(outer);
    assert_eq!(wgrad::autocast_dtype(), None);
    Ok(())
}

#[test]
fn the_grad_scaler_skips_an_overflowing_step_and_halves_its_scale() -> Result<()> {
    use wgrad::optim::{GradScaler, Sgd};
    for dev in common::devices() {
        let w = Tensor::ones_on([3], (DType::F16, &dev))?.requires_grad_(true)?;
        let mut opt = Sgd::new(vec![w.clone()], 0.5);
        let mut scaler = GradScaler::new().growth(2.0, 2)?;
        // 65536 * 1.5 overflows f16 (largest 65504): the step is skipped, the scale halves.
        let loss = w.sum()?.mul_scalar(1.5)?;
        scaler.scale(&loss)?.backward()?;
        assert!(
            !scaler.step(&mut opt)?,
            "an inf gradient skips the step on {dev}"
        );
        scaler.update();
        assert_eq!(scaler.get_scale(), 32768.0);
        assert_eq!(wide(&w), vec![1.0; 3], "the parameters did not move");
        // 32768 * 1.5 fits: the unscaled gradient is 1.5, the step is taken.
        opt.zero_grad();
        scaler.scale(&w.sum()?.mul_scalar(1.5)?)?.backward()?;
        assert!(scaler.step(&mut opt)?);
        scaler.update();
        assert_eq!(wide(&w), vec![0.25; 3], "w - 0.5 * 1.5 on {dev}");
        // A second good step in a row doubles the scale (growth interval 2).
        opt.zero_grad();
        scaler.scale(&w.sum()?)?.backward()?;
        assert!(scaler.step(&mut opt)?);
        scaler.update();
        assert_eq!(scaler.get_scale(), 65536.0);
    }
    assert!(wgrad::optim::GradScaler::new().backoff(1.5).is_err());
    Ok(())
}

#[test]
fn host_side_ops_take_half_tensors() -> Result<()> {
    for dev in common::devices() {
        for d in HALVES {
            let (x, xf) = sample(d, &[3, 6], 9, &dev);
            let (v, i) = x.sort(1, true)?;
            let (vf, i_f) = xf.sort(1, true)?;
            assert_same(&v, &vf.to_dtype(d)?, "sort values");
            assert_same(&i, &i_f, "sort indices");
            let (v, i) = x.topk(2, 0, false)?;
            assert_same(&v, &xf.topk(2, 0, false)?.0.to_dtype(d)?, "topk values");
            assert_same(
                &i,
                &xf.argsort(0, false)?.narrow(0, 0, 2)?.contiguous()?,
                "topk",
            );
            let picked = x.masked_select(&xf.gt_scalar(0.0)?)?;
            assert_same(
                &picked,
                &xf.masked_select(&xf.gt_scalar(0.0)?)?.to_dtype(d)?,
                "select",
            );
            assert_eq!(x.abs()?.multinomial(4, true)?.shape(), &[3, 4]);
        }
    }
    Ok(())
}

#[test]
fn half_matmuls_of_every_layout_match_the_f32_product() -> Result<()> {
    for dev in common::devices() {
        for d in HALVES {
            let (a, af) = sample(d, &[2, 71, 34], 11, &dev);
            let (b, bf) = sample(d, &[65, 33], 12, &dev);
            // Views starting in the high half of a word, a transposed operand, and a batch.
            let cases = [
                (a.narrow(2, 1, 33)?, b.t()?, af.narrow(2, 1, 33)?, bf.t()?),
                (
                    a.select(0, 1)?.narrow(1, 1, 33)?,
                    b.t()?.contiguous()?,
                    af.select(0, 1)?.narrow(1, 1, 33)?,
                    bf.t()?.contiguous()?,
                ),
            ];
            // A product large enough for the vec4 kernel, which takes 16-bit operands widened.
            let (c, cf) = sample(d, &[128, 64], 13, &dev);
            let (e, ef) = sample(d, &[256, 64], 14, &dev);
            let cases = cases.into_iter().chain([(c, e.t()?, cf, ef.t()?)]);
            for (x, y, xf, yf) in cases {
                let got = wide(&x.matmul(&y)?);
                let want = xf.matmul(&yf)?;
                // One rounding of f32 sums taken in another order: within an ulp of the type.
                let want_h: Vec<f64> = wide(&want.to_dtype(d)?).iter().map(|&v| v as f64).collect();
                let ulp = if d == DType::F16 { 1e-3 } else { 8e-3 };
                common::assert_close(&got, &want_h, ulp, 1e-3, &format!("{d:?} matmul on {dev}"));
                assert_eq!(x.matmul(&y)?.dtype(), d);
            }
        }
    }
    Ok(())
}

#[test]
fn statistics_of_half_tensors_accumulate_in_f32() -> Result<()> {
    for dev in common::devices() {
        // 60000 fits f16; the sum of four does not, the mean does (PyTorch: 60000).
        let big = Tensor::full_on([4], 60000.0, (DType::F16, &dev))?;
        assert_eq!(wide(&big.mean()?), vec![60000.0]);
        assert_eq!(wide(&big.mean_dims([0], false)?), vec![60000.0]);
        // 2000^2 overflows f16; the norm (3464.1) does not.
        let g = Tensor::full_on([3], 2000.0, (DType::F16, &dev))?;
        assert_eq!(
            wide(&g.norm()?),
            vec![half::f16::from_f32(3464.1016).to_f32()]
        );
        let x = Tensor::new([300.0f32, 310.0, 320.0])?
            .to_dtype(DType::F16)?
            .to_device(&dev)?;
        assert_eq!(wide(&x.var([0], 1, false)?), vec![100.0]);
        // Clipping 16-bit gradients: the norm is taken in f32, the gradients are scaled, not
        // zeroed by an infinite norm.
        let w = g.requires_grad_(true)?;
        w.mul_scalar(1000.0)?.sum()?.backward()?;
        let norm = wgrad::optim::clip_grad_norm(std::slice::from_ref(&w), 1.0)?.expect("a norm");
        let n = wide(&norm)[0];
        assert!((n - 1732.05).abs() < 1.0, "norm {n} on {dev}");
        let clipped = wide(&w.grad().unwrap());
        assert!(
            clipped.iter().all(|&v| (v - 0.57735).abs() < 1e-3),
            "{clipped:?} on {dev}"
        );
    }
    Ok(())
}

#[test]
fn an_f32_state_dict_loads_into_a_half_model() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wgrad_half_load_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f32.safetensors");
    let f32_model = nn::Linear::new(3, 2, &Device::Cpu)?;
    wgrad::io::save_module(&f32_model, &path)?;
    let mut bf16_model = nn::Linear::new(3, 2, &Device::Cpu)?;
    bf16_model.to_dtype(DType::BF16)?;
    wgrad::io::load_module(&bf16_model, &path)?;
    assert_eq!(bf16_model.weight.dtype(), DType::BF16);
    assert_same(
        &bf16_model.weight,
        &f32_model.weight.to_dtype(DType::BF16)?,
        "converted",
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// F16 matmul takes tensor cores (WGSL cooperative matrices) only where the device has them
/// and the kernel passed its self-test there; a software adapter has none, so on lavapipe the
/// tiled kernel runs (the matmul tests above check it), and on a GPU with tensor cores the
/// same tests check the cooperative kernel.
#[test]
fn tensor_cores_only_where_the_device_has_them() {
    for dev in common::devices() {
        if let Device::Gpu(g) = &dev {
            let uses = g.uses_tensor_cores();
            eprintln!("{dev}: F16 matmul on tensor cores: {uses}");
            if g.is_software() {
                assert!(!uses, "{dev} has no cooperative matrices");
            }
        }
    }
}
