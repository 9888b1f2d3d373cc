//! The op tables (`wgrad::op`) as a whole: every op on every dtype runs on every backend, the
//! backends agree (or refuse alike), numbers are kernel operands, and every op has reference
//! cases. A new table entry is covered here without a change to this file.

mod common;

use std::mem::discriminant;
use wgrad::op::{BinaryOp, CmpOp, ReduceOp, UnaryOp};
use wgrad::{DType, Device, Result, Scalar, Source, Tensor};

/// The GPU tests of this file take turns: the dispatch counts are the device's, so another
/// test running beside them would add its own.
static GPU_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gpu_turn() -> std::sync::MutexGuard<'static, ()> {
    GPU_TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small tensor of `dtype` with the values where ops have edges: negatives, zero, ones,
/// fractions, large values.
fn sample(dtype: DType, shift: usize) -> Tensor {
    let f = [-2.5f32, -1.0, -0.25, 0.0, 0.5, 1.0, 3.0, 10.0];
    let i = [-3i64, -1, 0, 1, 2, 5, 7, 100];
    let b = [true, false, true, true, false, false, true, false];
    let rot = |k: usize| (k + shift) % 8;
    let t = match dtype {
        DType::F32 => Tensor::from_vec((0..8).map(|k| f[rot(k)]).collect::<Vec<_>>(), [2, 4]),
        DType::I64 => Tensor::from_vec((0..8).map(|k| i[rot(k)]).collect::<Vec<_>>(), [2, 4]),
        DType::Bool => Tensor::from_vec((0..8).map(|k| b[rot(k)]).collect::<Vec<_>>(), [2, 4]),
        // The float values are exact in both 16-bit types (and in f64).
        DType::F16 | DType::BF16 | DType::F64 => {
            Tensor::from_vec((0..8).map(|k| f[rot(k)]).collect::<Vec<_>>(), [2, 4])
                .and_then(|t| t.to_dtype(dtype))
        }
    };
    t.unwrap()
}

fn numbers() -> [Scalar; 4] {
    [
        Scalar::Int(2),
        Scalar::Int(-1),
        Scalar::Float(0.5),
        Scalar::Bool(true),
    ]
}

/// Whether two results agree: both Ok with the same dtype, shape and values (floats within
/// a few ulps, NaN with NaN), or both Err of the same kind.
fn agree(what: &str, cpu: Result<Tensor>, gpu: Result<Tensor>) -> std::result::Result<(), String> {
    match (cpu, gpu) {
        (Ok(c), Ok(g)) => {
            if c.dtype() != g.dtype() || c.shape() != g.shape() {
                return Err(format!(
                    "{what}: cpu {:?} {:?}, gpu {:?} {:?}",
                    c.dtype(),
                    c.shape(),
                    g.dtype(),
                    g.shape()
                ));
            }
            let g = g
                .to_device(&Device::Cpu)
                .map_err(|e| format!("{what}: {e}"))?;
            let same = match c.dtype() {
                DType::F32 => {
                    let (a, b) = (c.to_vec::<f32>().unwrap(), g.to_vec::<f32>().unwrap());
                    a.iter().zip(&b).all(|(&x, &y)| {
                        (x.is_nan() && y.is_nan())
                            || x == y
                            || (x - y).abs() <= 1e-5 * x.abs().max(y.abs()) + 1e-6
                    })
                }
                DType::I64 => c.to_vec::<i64>().unwrap() == g.to_vec::<i64>().unwrap(),
                // A GPU computes F64 on the host: the CPU's bits.
                DType::F64 => {
                    let (a, b) = (c.to_vec::<f64>().unwrap(), g.to_vec::<f64>().unwrap());
                    a.iter()
                        .zip(&b)
                        .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
                }
                DType::Bool => c.to_vec::<bool>().unwrap() == g.to_vec::<bool>().unwrap(),
                // Both backends compute in f32 and round once: within an ulp of each other
                // (the f32 results may differ by an ulp and round apart).
                DType::F16 | DType::BF16 => {
                    let wide =
                        |t: &Tensor| t.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
                    let ulp = if c.dtype() == DType::F16 { 1e-3 } else { 8e-3 };
                    wide(&c).iter().zip(&wide(&g)).all(|(&x, &y)| {
                        (x.is_nan() && y.is_nan())
                            || x == y
                            || (x - y).abs() <= ulp * x.abs().max(y.abs())
                    })
                }
            };
            if same {
                Ok(())
            } else {
                Err(format!("{what}: cpu {c} and gpu {g} differ"))
            }
        }
        (Err(a), Err(b)) if discriminant(&a) == discriminant(&b) => Ok(()),
        (a, b) => Err(format!(
            "{what}: cpu {:?}, gpu {:?}",
            a.map(|t| t.dtype()),
            b.map(|t| t.dtype())
        )),
    }
}

/// Every program of the tables: (label, function of the device).
#[allow(clippy::type_complexity)]
fn programs() -> Vec<(String, Box<dyn Fn(&Device) -> Result<Tensor>>)> {
    let on = |d: DType, shift: usize, dev: &Device| sample(d, shift).to_device(dev);
    let mut v: Vec<(String, Box<dyn Fn(&Device) -> Result<Tensor>>)> = Vec::new();
    for &d in &DType::ALL {
        for &op in UnaryOp::ALL {
            v.push((
                format!("{}({d:?})", op.name()),
                Box::new(move |dev| on(d, 0, dev)?.unary_op(op)),
            ));
        }
        for &op in ReduceOp::ALL {
            v.push((
                format!("{}({d:?}) over dim 1", op.name()),
                Box::new(move |dev| reduce(op, &on(d, 0, dev)?)),
            ));
        }
        for &e in &DType::ALL {
            for &op in BinaryOp::ALL {
                v.push((
                    format!("{}({d:?}, {e:?})", op.name()),
                    Box::new(move |dev| Tensor::binary_op(op, &on(d, 0, dev)?, &on(e, 3, dev)?)),
                ));
            }
            for &op in CmpOp::ALL {
                v.push((
                    format!("{}({d:?}, {e:?})", op.name()),
                    Box::new(move |dev| on(d, 0, dev)?.compare_op(op, &on(e, 3, dev)?)),
                ));
            }
            v.push((
                format!("where(bool, {d:?}, {e:?})"),
                Box::new(move |dev| {
                    Tensor::where_cond(&on(DType::Bool, 1, dev)?, &on(d, 0, dev)?, &on(e, 3, dev)?)
                }),
            ));
            v.push((
                format!("{d:?}.to_dtype({e:?})"),
                Box::new(move |dev| on(d, 0, dev)?.to_dtype(e)),
            ));
        }
        for s in numbers() {
            for &op in BinaryOp::ALL {
                v.push((
                    format!("{}({d:?}, {s:?})", op.name()),
                    Box::new(move |dev| Tensor::binary_op(op, &on(d, 0, dev)?, s)),
                ));
                v.push((
                    format!("{}({s:?}, {d:?})", op.name()),
                    Box::new(move |dev| Tensor::binary_op(op, s, &on(d, 0, dev)?)),
                ));
                v.push((
                    format!("{}_({d:?}, {s:?}) in place", op.name()),
                    Box::new(move |dev| in_place(op, on(d, 0, dev)?, s.into())),
                ));
            }
            for &op in CmpOp::ALL {
                v.push((
                    format!("{}({d:?}, {s:?})", op.name()),
                    Box::new(move |dev| on(d, 0, dev)?.compare_op(op, s)),
                ));
            }
            v.push((
                format!("where(bool, {s:?}, {d:?})"),
                Box::new(move |dev| {
                    Tensor::where_cond(&on(DType::Bool, 1, dev)?, s, &on(d, 0, dev)?)
                }),
            ));
            v.push((
                format!("masked_fill({d:?}, {s:?})"),
                Box::new(move |dev| on(d, 0, dev)?.masked_fill(&on(DType::Bool, 1, dev)?, s)),
            ));
            v.push((
                format!("fill_({d:?}, {s:?}) of a strided view"),
                Box::new(move |dev| {
                    let t = on(d, 0, dev)?;
                    t.t()?.narrow(0, 1, 2)?.fill_(s)?;
                    Ok(t)
                }),
            ));
        }
        for &e in &DType::ALL {
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
                v.push((
                    format!("{}_({d:?}, {e:?} tensor) in place", op.name()),
                    Box::new(move |dev| in_place(op, on(d, 0, dev)?, on(e, 3, dev)?.into())),
                ));
            }
        }
    }
    v
}

/// The in-place forms that exist (`add_`, `sub_`, `mul_`, `div_`); the others are computed
/// out of place, so that every op gets a comparable result.
fn in_place(op: BinaryOp, t: Tensor, other: Source) -> Result<Tensor> {
    match op {
        BinaryOp::Add => t.add_(other)?,
        BinaryOp::Sub => t.sub_(other)?,
        BinaryOp::Mul => t.mul_(other)?,
        BinaryOp::Div => t.div_(other)?,
        BinaryOp::Pow
        | BinaryOp::Atan2
        | BinaryOp::Remainder
        | BinaryOp::FloorDivide
        | BinaryOp::Maximum
        | BinaryOp::Minimum
        | BinaryOp::ClampMin
        | BinaryOp::ClampMax => return Tensor::binary_op(op, &t, other),
    };
    Ok(t)
}

fn reduce(op: ReduceOp, t: &Tensor) -> Result<Tensor> {
    match op {
        ReduceOp::Sum => t.sum_dims([1], false),
        ReduceOp::Prod => t.prod_dims([1], false),
        ReduceOp::Max => t.max_dims([1], false),
        ReduceOp::Min => t.min_dims([1], false),
        ReduceOp::ArgMax => t.argmax_dim(1, false),
        ReduceOp::ArgMin => t.argmin_dim(1, false),
    }
}

#[test]
fn every_op_on_every_dtype_agrees_between_the_backends() {
    let _turn = gpu_turn();
    let devices = common::devices();
    let programs = programs();
    assert!(programs.len() > 500, "only {} programs", programs.len());
    let mut failures = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for (label, f) in &programs {
        let cpu = f(&Device::Cpu);
        // A refusal is a clear error of its own kind, never a panic or a silent result.
        if let Err(e) = &cpu {
            refused += 1;
            assert!(!e.to_string().is_empty(), "{label}: empty message");
        } else {
            ok += 1;
        }
        for dev in devices.iter().filter(|d| !d.is_cpu()) {
            let gpu = f(dev);
            if let Err(e) = agree(label, f(&Device::Cpu), gpu) {
                failures.push(e);
            }
        }
    }
    eprintln!(
        "{} programs: {ok} ran, {refused} refused alike",
        programs.len()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn numbers_follow_pytorchs_wrapped_number_rule() -> Result<()> {
    let f = Tensor::new([1.0f32, 2.0])?;
    let i = Tensor::new([1i64, 2])?;
    let b = Tensor::new([true, false])?;
    assert_eq!((&f * 2.0).check()?.dtype(), DType::F32);
    assert_eq!((&i * 2.5).check()?.dtype(), DType::F32);
    assert_eq!((&i * 2).check()?.dtype(), DType::I64);
    assert_eq!((&i / 2).check()?.dtype(), DType::F32);
    assert_eq!(b.add_scalar(1)?.dtype(), DType::I64);
    assert_eq!(b.add_scalar(true)?.dtype(), DType::Bool);
    assert_eq!((1.0 - &f).to_vec::<f32>()?, vec![0.0, -1.0]);
    assert_eq!((&i * 2.5).to_vec::<f32>()?, vec![2.5, 5.0]);
    // An in-place op keeps the dtype, so a result of another dtype is refused.
    assert!(i.mul_(2.5).is_err());
    assert_eq!(i.mul_(3)?.to_vec::<i64>()?, vec![3, 6]);
    Ok(())
}

#[test]
fn a_number_in_an_expression_is_one_dispatch_on_the_gpu() -> Result<()> {
    let _turn = gpu_turn();
    for dev in common::devices() {
        let Device::Gpu(gpu) = &dev else { continue };
        let x = Tensor::randn([64])?.to_device(&dev)?;
        // Dispatches until the result is computed (a flush computes pending fused values).
        let count = |f: &dyn Fn() -> Result<Tensor>| -> Result<u64> {
            let before = gpu.stats().dispatches;
            let _result = f()?;
            dev.flush();
            Ok(gpu.stats().dispatches - before)
        };
        assert_eq!(count(&|| (&x * 2.0).check())?, 1, "x * 2.0");
        assert_eq!(count(&|| (1.0 - &x).check())?, 1, "1.0 - x");
        // Three ops, fused into one kernel unless fusion is off.
        let fused = std::env::var_os("WGRAD_NO_FUSION").is_none_or(|v| v == "0");
        assert_eq!(
            count(&|| (&x * 2.0).add_scalar(1.0)?.relu())?,
            if fused { 1 } else { 3 },
            "(x * 2 + 1).relu()"
        );
        assert_eq!(count(&|| x.clamp_min(0.0))?, 1, "clamp_min");
        assert_eq!(count(&|| x.gt_scalar(0.5))?, 1, "x > 0.5");
        let mask = x.gt_scalar(0.0)?;
        assert_eq!(count(&|| x.masked_fill(&mask, 0.0))?, 1, "masked_fill");
        assert_eq!(count(&|| x.mul_(2.0).cloned())?, 1, "x *= 2");
        // The numbers reach the kernel: the results equal the CPU's.
        let cpu = x.to_device(&Device::Cpu)?;
        let expect = ((&cpu * 2.0).add_scalar(1.0)?.relu()?).to_vec::<f32>()?;
        assert_eq!(
            ((&x * 2.0).add_scalar(1.0)?.relu()?).to_vec::<f32>()?,
            expect
        );
    }
    Ok(())
}

#[test]
fn log1p_and_expm1_are_accurate_near_zero() -> Result<()> {
    let _turn = gpu_turn();
    let xs = [
        1e-8f32, -3e-8, 1e-6, -5e-6, 1e-4, -1e-3, 0.1, -0.2, 0.24, -0.26, 1.0, 5.0,
    ];
    for dev in common::devices() {
        let x = Tensor::new(xs)?.to_device(&dev)?;
        for (name, got, exact) in [
            ("log1p", x.log1p()?, (|v: f64| v.ln_1p()) as fn(f64) -> f64),
            ("expm1", x.expm1()?, |v: f64| v.exp_m1()),
        ] {
            for (&v, g) in xs.iter().zip(got.to_vec::<f32>()?) {
                let e = exact(v as f64);
                let rel = ((g as f64 - e) / e).abs();
                assert!(
                    rel < 1e-6,
                    "{name}({v}) on {dev}: {g}, exact {e} (relative error {rel:e})"
                );
            }
        }
    }
    Ok(())
}

/// Every op of the tables has reference cases from PyTorch, so a new op without them fails
/// here (the generator, `tests/golden/generate.py`, writes them).
#[test]
fn every_table_op_has_golden_cases() {
    let mut ops = std::collections::HashSet::new();
    for file in [
        include_str!("data/torch_ops.json"),
        include_str!("data/wgrad_ops.json"),
        include_str!("data/torch_ops_v2.json"),
    ] {
        let root: serde_json::Value = serde_json::from_str(&file.replace("NaN", "null")).unwrap();
        for c in root["cases"].as_array().unwrap() {
            ops.insert(c["op"].as_str().unwrap().to_string());
        }
    }
    // The reductions' golden names are PyTorch's functions.
    let reduce_name = |op: ReduceOp| match op {
        ReduceOp::Max => "amax",
        ReduceOp::Min => "amin",
        ReduceOp::Sum | ReduceOp::Prod | ReduceOp::ArgMax | ReduceOp::ArgMin => op.name(),
    };
    let names = UnaryOp::ALL
        .iter()
        .map(|o| o.name())
        .chain(BinaryOp::ALL.iter().map(|o| o.name()))
        .chain(CmpOp::ALL.iter().map(|o| o.name()))
        .chain(ReduceOp::ALL.iter().map(|&o| reduce_name(o)));
    let missing: Vec<&str> = names.filter(|n| !ops.contains(*n)).collect();
    assert!(missing.is_empty(), "ops without golden cases: {missing:?}");
}

/// PyTorch's edges of the softmax family, on every device: an infinite logit makes softmax
/// NaN (not [NaN, 0]), logsumexp over an empty dim is -inf, softmax over one is empty.
#[test]
fn softmax_edges_follow_pytorch() -> Result<()> {
    let _turn = gpu_turn();
    for dev in common::devices() {
        let x = Tensor::new([f32::INFINITY, 1.0])?.to_device(&dev)?;
        assert!(
            x.softmax(0)?.to_vec::<f32>()?.iter().all(|v| v.is_nan()),
            "on {dev}"
        );
        assert_eq!(x.logsumexp([0], false)?.item::<f64>()?, f64::INFINITY);
        let empty = Tensor::zeros([3, 0])?.to_device(&dev)?;
        assert_eq!(
            empty.logsumexp([1], false)?.to_vec::<f32>()?,
            vec![f32::NEG_INFINITY; 3]
        );
        assert_eq!(empty.softmax(1)?.shape(), &[3, 0]);
        assert_eq!(empty.log_softmax(0)?.shape(), &[3, 0]);
        let masked = Tensor::new([f32::NEG_INFINITY, 0.0])?.to_device(&dev)?;
        assert_eq!(masked.softmax(0)?.to_vec::<f32>()?, vec![0.0, 1.0]);
    }
    Ok(())
}
