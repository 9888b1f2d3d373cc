//! PyTorch's results, forward values and gradients, on every available device:
//! tests/data/torch_ops.json (234 cases, the shared reference set), tests/data/wgrad_ops.json
//! (the project's own cases, written by `tests/golden/generate.py`), and the cases of
//! tests/data/torch_ops_v2.json for the ops wgrad has so far. Another file of the same format
//! can be checked too (every op of the file is in scope):
//! `WGRAD_GOLDEN_OPS=path cargo test --test golden`.
//!
//! Ops of the op tables (`wgrad::op`) are found by their PyTorch name, so a new table op
//! needs no change here: only its cases in the generator.

mod common;

use serde_json::Value;
use wgrad::nn::{self, functional as F};
use wgrad::op::{BinaryOp, CmpOp, UnaryOp};
use wgrad::{func, DType, Device, Result, Scalar, Source, Tensor};

fn tensor_from(v: &Value, device: &Device) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"].as_array().unwrap();
    let t = match v["dtype"].as_str().unwrap() {
        // NaN is written as null.
        "f32" => Tensor::from_vec(
            data.iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                .collect::<Vec<f32>>(),
            shape,
        ),
        "i64" => Tensor::from_vec(
            data.iter()
                .map(|x| x.as_i64().unwrap())
                .collect::<Vec<i64>>(),
            shape,
        ),
        "bool" => Tensor::from_vec(
            data.iter()
                .map(|x| x.as_bool().unwrap())
                .collect::<Vec<bool>>(),
            shape,
        ),
        // The values are exact values of the 16-bit type, so the f32 tensor converts exactly.
        "f16" | "bf16" => Tensor::from_vec(
            data.iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                .collect::<Vec<f32>>(),
            shape,
        )
        .and_then(|t| t.to_dtype(dtype_named(v["dtype"].as_str().unwrap()))),
        other => panic!("unknown dtype {other}"),
    }
    .unwrap();
    t.to_device(device).unwrap()
}

fn dtype_named(name: &str) -> DType {
    DType::ALL
        .into_iter()
        .find(|d| d.name() == name)
        .unwrap_or_else(|| panic!("unknown dtype {name}"))
}

fn ints(v: &Value) -> Vec<isize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as isize)
        .collect()
}

fn int(v: &Value) -> isize {
    v.as_i64().unwrap() as isize
}

/// A JSON number as a Rust number of the same kind (PyTorch's wrapped-number rule depends on
/// whether it is an int or a float).
fn number(v: &Value) -> Scalar {
    match v {
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) if n.is_i64() => Scalar::Int(n.as_i64().unwrap()),
        other => Scalar::Float(other.as_f64().unwrap()),
    }
}

/// An op of the op tables, by its PyTorch name; `attrs.scalar` makes one operand a number.
fn run_table_op(op: &str, attrs: &Value, x: &[Tensor]) -> Option<Result<Tensor>> {
    let operands = || -> (Source, Source) {
        match attrs.get("scalar") {
            Some(s) if attrs["scalar_side"] == "lhs" => (number(s).into(), (&x[0]).into()),
            Some(s) => ((&x[0]).into(), number(s).into()),
            None => ((&x[0]).into(), (&x[1]).into()),
        }
    };
    // A case with attributes of its own (gelu's `approximate`) is the functional form's.
    let plain = attrs
        .as_object()
        .is_none_or(|a| a.keys().all(|k| k == "scalar" || k == "scalar_side"));
    if !plain {
        return None;
    }
    if let Some(&u) = UnaryOp::ALL.iter().find(|u| u.name() == op) {
        return Some(x[0].unary_op(u));
    }
    if let Some(&b) = BinaryOp::ALL.iter().find(|b| b.name() == op) {
        let (l, r) = operands();
        return Some(Tensor::binary_op(b, l, r));
    }
    if let Some(&c) = CmpOp::ALL.iter().find(|c| c.name() == op) {
        return Some(match operands() {
            (Source::Tensor(l), r) => l.compare_op(c, r),
            (l @ Source::Scalar(_), Source::Tensor(r)) => r.compare_op(c.swapped(), l),
            (Source::Scalar(_), Source::Scalar(_)) => unreachable!("a case has a tensor"),
        });
    }
    None
}

/// Run one case's op. `None`: the op is unknown to this runner.
fn run_op(op: &str, attrs: &Value, x: &[Tensor]) -> Option<Result<Tensor>> {
    if let Some(r) = run_table_op(op, attrs, x) {
        return Some(r);
    }
    let dims = || -> Vec<isize> {
        match &attrs["dim"] {
            Value::Array(_) => ints(&attrs["dim"]),
            Value::Number(_) => vec![int(&attrs["dim"])],
            _ => vec![],
        }
    };
    let keepdim = attrs["keepdim"].as_bool().unwrap_or(false);
    let has_dim = !attrs["dim"].is_null();
    Some(match op {
        "pow_scalar" => x[0].pow_scalar(attrs["exponent"].as_f64().unwrap()),
        "to" => x[0].to_dtype(dtype_named(attrs["dtype"].as_str().unwrap())),
        "sum" if has_dim => x[0].sum_dims(dims(), keepdim),
        "prod" if has_dim => x[0].prod_dims(dims(), keepdim),
        "prod" => x[0].prod(),
        "sum" => x[0].sum(),
        "mean" if has_dim => x[0].mean_dims(dims(), keepdim),
        "mean" => x[0].mean(),
        "amax" => x[0].max_dims(dims(), keepdim),
        "max" => x[0].max(),
        "amin" => x[0].min_dims(dims(), keepdim),
        "argmax" if has_dim => x[0].argmax_dim(int(&attrs["dim"]), keepdim),
        "argmax" => x[0].argmax(),
        "argmin" if has_dim => x[0].argmin_dim(int(&attrs["dim"]), keepdim),
        "argmin" => x[0].argmin(),
        "cumsum" => x[0].cumsum(int(&attrs["dim"])),
        "softmax" => x[0].softmax(int(&attrs["dim"])),
        "log_softmax" => x[0].log_softmax(int(&attrs["dim"])),
        "logsumexp" => x[0].logsumexp(dims(), keepdim),
        "norm" => x[0].norm(),
        "dot" => x[0].dot(&x[1]),
        "mv" => x[0].mv(&x[1]),
        "mm" => x[0].mm(&x[1]),
        "matmul" => x[0].matmul(&x[1]),
        "reshape" => x[0].reshape(ints(&attrs["shape"])),
        "t" => x[0].t(),
        "permute" => x[0].permute(ints(&attrs["dims"])),
        "permute_reshape" => x[0]
            .permute(ints(&attrs["dims"]))
            .and_then(|t| t.reshape(ints(&attrs["shape"]))),
        "cat" => Tensor::cat(&x.iter().collect::<Vec<_>>(), int(&attrs["dim"])),
        "stack" => Tensor::stack(&x.iter().collect::<Vec<_>>(), int(&attrs["dim"])),
        "slice" => {
            let mut t = x[0].clone();
            for (d, r) in attrs["ranges"].as_array().unwrap().iter().enumerate() {
                let r = ints(r);
                t = match t.slice(d as isize, Some(r[0]), Some(r[1]), r[2]) {
                    Ok(t) => t,
                    Err(e) => return Some(Err(e)),
                };
            }
            Ok(t)
        }
        "select" => x[0].select(int(&attrs["dim"]), int(&attrs["index"])),
        "expand" => x[0].expand(ints(&attrs["shape"])),
        "unsqueeze" => x[0].unsqueeze(int(&attrs["dim"])),
        "squeeze" => x[0].squeeze_dim(int(&attrs["dim"])),
        "index_select" => x[0].index_select(int(&attrs["dim"]), &x[1]),
        "gather" => x[0].gather(int(&attrs["dim"]), &x[1]),
        "where" => Tensor::where_cond(&x[0], &x[1], &x[2]),
        "mse_loss" => nn::mse_loss(&x[0], &x[1]),
        "l1_loss" => nn::l1_loss(&x[0], &x[1]),
        "huber_loss" => nn::HuberLoss::new()
            .delta(attrs["delta"].as_f64().unwrap_or(1.0))
            .forward(&x[0], &x[1]),
        "cross_entropy" => nn::CrossEntropyLoss::new()
            .reduction(reduction_of(attrs))
            .ignore_index(
                attrs
                    .get("ignore_index")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(-100),
            )
            .label_smoothing(
                attrs
                    .get("label_smoothing")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(0.0),
            )
            .forward(&x[0], &x[1]),
        "binary_cross_entropy_with_logits" => nn::binary_cross_entropy_with_logits(&x[0], &x[1]),
        "linear" => F::linear(&x[0], &x[1], x.get(2)),
        "max_pool2d" => F::max_pool2d(
            &x[0],
            attrs["kernel"].as_u64().unwrap() as usize,
            attrs["stride"].as_u64().unwrap() as usize,
        ),
        "avg_pool2d" => F::avg_pool2d(
            &x[0],
            attrs["kernel"].as_u64().unwrap() as usize,
            attrs["stride"].as_u64().unwrap() as usize,
        ),
        "softplus" => F::softplus(
            &x[0],
            attrs["beta"].as_f64().unwrap_or(1.0),
            attrs["threshold"].as_f64().unwrap_or(20.0),
        ),
        "leaky_relu" => F::leaky_relu(&x[0], attrs["negative_slope"].as_f64().unwrap_or(0.01)),
        "elu" => F::elu(&x[0], attrs["alpha"].as_f64().unwrap_or(1.0)),
        "hardtanh" => F::hardtanh(
            &x[0],
            attrs["min_val"].as_f64().unwrap_or(-1.0),
            attrs["max_val"].as_f64().unwrap_or(1.0),
        ),
        "gelu" => F::gelu(&x[0], attrs["approximate"] == "tanh"),
        "mish" => F::mish(&x[0]),
        "logsigmoid" => F::logsigmoid(&x[0]),
        "var" | "std" => {
            let correction = attrs["correction"].as_u64().unwrap_or(1) as usize;
            if op == "var" {
                x[0].var(dims(), correction, keepdim)
            } else {
                x[0].std(dims(), correction, keepdim)
            }
        }
        "flip" => x[0].flip(ints(&attrs["dims"])),
        "roll" => x[0].roll(
            ints(&attrs["shifts"]),
            if attrs["dims"].is_null() {
                vec![]
            } else {
                ints(&attrs["dims"])
            },
        ),
        "repeat" => x[0].repeat(ints(&attrs["sizes"])),
        "tile" => x[0].tile(ints(&attrs["dims"])),
        "repeat_interleave" => x[0].repeat_interleave(
            attrs["repeats"].as_u64().unwrap() as usize,
            int(&attrs["dim"]),
        ),
        "tril" => x[0].tril(attrs["diagonal"].as_i64().unwrap_or(0)),
        "triu" => x[0].triu(attrs["diagonal"].as_i64().unwrap_or(0)),
        "outer" => x[0].outer(&x[1]),
        "index_add" => x[0].index_add(
            int(&attrs["dim"]),
            &x[1],
            &x[2],
            attrs["alpha"].as_f64().unwrap_or(1.0),
        ),
        "masked_select" => x[0].masked_select(&x[1]),
        "nonzero" => x[0].nonzero(),
        "one_hot" => F::one_hot(
            &x[0],
            attrs["num_classes"]
                .as_i64()
                .filter(|&c| c >= 0)
                .map(|c| c as usize),
        ),
        "pad" => {
            let mode = match attrs["mode"].as_str().unwrap_or("constant") {
                "reflect" => F::PadMode::Reflect,
                "replicate" => F::PadMode::Replicate,
                "circular" => F::PadMode::Circular,
                _ => F::PadMode::Constant(attrs["value"].as_f64().unwrap_or(0.0)),
            };
            F::pad(&x[0], &ints(&attrs["pad"]), mode)
        }
        "interpolate" => {
            let mode = match attrs["mode"].as_str().unwrap_or("nearest") {
                "nearest" => F::Interpolation::Nearest,
                _ => F::Interpolation::Linear {
                    align_corners: attrs["align_corners"].as_bool().unwrap_or(false),
                },
            };
            let size = if attrs["size"].is_null() {
                match F::scaled_size(&x[0], attrs["scale_factor"].as_f64().unwrap()) {
                    Ok(s) => s,
                    Err(e) => return Some(Err(e)),
                }
            } else {
                ints(&attrs["size"])
                    .into_iter()
                    .map(|v| v as usize)
                    .collect()
            };
            F::interpolate(&x[0], &size, mode)
        }
        "adaptive_avg_pool2d" | "adaptive_max_pool2d" => {
            let o = ints(&attrs["output_size"]);
            let size = (o[0] as usize, o[1] as usize);
            if op == "adaptive_avg_pool2d" {
                F::adaptive_avg_pool2d(&x[0], size)
            } else {
                F::adaptive_max_pool2d(&x[0], size)
            }
        }
        "group_norm" => F::group_norm(
            &x[0],
            attrs["num_groups"].as_u64().unwrap() as usize,
            x.get(1),
            x.get(2),
            attrs["eps"].as_f64().unwrap_or(1e-5),
        ),
        "layer_norm" => {
            let shape: Vec<usize> = ints(&attrs["normalized_shape"])
                .into_iter()
                .map(|v| v as usize)
                .collect();
            F::layer_norm(
                &x[0],
                &shape,
                x.get(1),
                x.get(2),
                attrs["eps"].as_f64().unwrap_or(1e-5),
            )
        }
        "scaled_dot_product_attention" => {
            let mask = x.get(3).map(|m| {
                if m.dtype() == DType::Bool {
                    F::AttentionMask::Allow(m)
                } else {
                    F::AttentionMask::Add(m)
                }
            });
            F::scaled_dot_product_attention(
                &x[0],
                &x[1],
                &x[2],
                mask,
                attrs["is_causal"].as_bool().unwrap_or(false),
                attrs["scale"].as_f64(),
            )
        }
        "cosine_similarity" => F::cosine_similarity(
            &x[0],
            &x[1],
            int(&attrs["dim"]),
            attrs["eps"].as_f64().unwrap_or(1e-8),
        ),
        "kl_div" => {
            let reduction = match attrs["reduction"].as_str().unwrap_or("batchmean") {
                "sum" => nn::KlReduction::Sum,
                "mean" => nn::KlReduction::Mean,
                "none" => nn::KlReduction::None,
                _ => nn::KlReduction::BatchMean,
            };
            nn::KLDivLoss::new()
                .reduction(reduction)
                .log_target(attrs["log_target"].as_bool().unwrap_or(false))
                .forward(&x[0], &x[1])
        }
        "binary_cross_entropy" => nn::BCELoss::new()
            .reduction(reduction_of(attrs))
            .forward(&x[0], &x[1]),
        "smooth_l1_loss" => nn::SmoothL1Loss::new()
            .beta(attrs["beta"].as_f64().unwrap_or(1.0))
            .reduction(reduction_of(attrs))
            .forward(&x[0], &x[1]),
        "rnn_output" | "rnn_hidden" | "gru_output" | "gru_hidden" | "lstm_output"
        | "lstm_hidden" | "lstm_cell" => return Some(recurrent_case(op, attrs, x)),
        "multi_head_attention_forward" => {
            let out_proj = nn::Linear {
                weight: x[5].clone(),
                bias: Some(x[6].clone()),
            };
            let masks = nn::AttentionMasks {
                is_causal: attrs["causal"].as_bool().unwrap_or(false),
                ..Default::default()
            };
            nn::multi_head_attention_forward(
                &x[0],
                &x[1],
                &x[2],
                attrs["num_heads"].as_u64().unwrap() as usize,
                &x[3],
                Some(&x[4]),
                &out_proj,
                masks,
                attrs["batch_first"].as_bool().unwrap_or(false),
            )
        }
        "sort_values" | "sort_indices" => {
            let desc = attrs["descending"].as_bool().unwrap_or(false);
            x[0].sort(int(&attrs["dim"]), desc)
                .map(|(v, i)| if op == "sort_values" { v } else { i })
        }
        "argsort" => x[0].argsort(
            int(&attrs["dim"]),
            attrs["descending"].as_bool().unwrap_or(false),
        ),
        "topk_values" | "topk_indices" => {
            let largest = attrs["largest"].as_bool().unwrap_or(true);
            x[0].topk(
                attrs["k"].as_u64().unwrap() as usize,
                int(&attrs["dim"]),
                largest,
            )
            .map(|(v, i)| if op == "topk_values" { v } else { i })
        }
        "conv1d" | "conv2d" | "conv_transpose2d" => {
            let int = |k: &str, default: u64| {
                attrs.get(k).and_then(|v| v.as_u64()).unwrap_or(default) as usize
            };
            let args = F::ConvArgs {
                stride: int("stride", 1),
                padding: int("padding", 0),
                dilation: int("dilation", 1),
                groups: int("groups", 1),
            };
            if op == "conv1d" {
                F::conv1d(&x[0], &x[1], x.get(2), args)
            } else if op == "conv2d" {
                F::conv2d(&x[0], &x[1], x.get(2), args)
            } else {
                F::conv_transpose2d(&x[0], &x[1], x.get(2), args, int("output_padding", 0))
            }
        }
        "vector_norm" => x[0].vector_norm(attrs["ord"].as_f64().unwrap_or(2.0), dims(), keepdim),
        "cumprod" => x[0].cumprod(int(&attrs["dim"])),
        "logcumsumexp" => x[0].logcumsumexp(int(&attrs["dim"])),
        "einsum" => Tensor::einsum(
            attrs["equation"].as_str().unwrap(),
            &x.iter().collect::<Vec<_>>(),
        ),
        "composite_cube" => x[0].mul(&x[0]).and_then(|y| y.mul(&x[0])),
        "composite_detach" => x[0].mul(&x[0]).and_then(|y| y.detach().mul(&x[0])),
        "composite_2dot" => x[0].dot(&x[0]).and_then(|y| y.mul_scalar(2.0)),
        _ => return None,
    })
}

/// One layer of RNN/GRU/LSTM from explicit weights (the cases' inputs: x [B, T, I], h0,
/// c0 for the LSTM, then w_ih, w_hh, b_ih, b_hh), batch first.
fn recurrent_case(op: &str, attrs: &Value, x: &[Tensor]) -> Result<Tensor> {
    let kind = match op.split('_').next() {
        Some("gru") => nn::CellKind::Gru,
        Some("lstm") => nn::CellKind::Lstm,
        _ if attrs["nonlinearity"] == "relu" => nn::CellKind::Relu,
        _ => nn::CellKind::Tanh,
    };
    let lstm = kind == nn::CellKind::Lstm;
    let w = &x[if lstm { 3 } else { 2 }..];
    let weights = nn::Direction {
        weight_ih: w[0].clone(),
        weight_hh: w[1].clone(),
        bias_ih: w.get(2).cloned(),
        bias_hh: w.get(3).cloned(),
    };
    let c0 = if lstm { Some(x[2].select(0, 0)?) } else { None };
    let (out, h, c) = nn::run_direction(
        kind,
        &x[0].transpose(0, 1)?,
        &x[1].select(0, 0)?,
        c0.as_ref(),
        &weights,
        false,
    )?;
    match op.rsplit('_').next() {
        Some("output") => out.transpose(0, 1),
        Some("hidden") => h.unsqueeze(0),
        _ => match c {
            Some(c) => c.unsqueeze(0),
            None => panic!("{op}: an LSTM returns a cell state"),
        },
    }
}

/// A case's `reduction` attribute (mean when absent).
fn reduction_of(attrs: &Value) -> nn::Reduction {
    match attrs.get("reduction").and_then(|v| v.as_str()) {
        Some("sum") => nn::Reduction::Sum,
        Some("none") => nn::Reduction::None,
        _ => nn::Reduction::Mean,
    }
}

/// Tolerances from the golden README: 1e-3 relative for ops that sum many terms.
fn rtol(op: &str) -> f64 {
    const SUMMING: &[&str] = &[
        "sum",
        "mean",
        "norm",
        "dot",
        "mv",
        "mm",
        "matmul",
        "cumsum",
        "softmax",
        "log_softmax",
        "logsumexp",
        "composite_2dot",
        "prod",
    ];
    if SUMMING.contains(&op) {
        1e-3
    } else {
        1e-4
    }
}

fn check_values(actual: &Tensor, expected: &Value, op: &str, what: &str) {
    let shape: Vec<usize> = expected["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(actual.shape(), shape.as_slice(), "{what}: shape");
    let data = expected["data"].as_array().unwrap();
    match expected["dtype"].as_str().unwrap() {
        "f32" => {
            assert_eq!(actual.dtype(), DType::F32, "{what}: dtype");
            let e: Vec<f64> = data
                .iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN))
                .collect();
            common::assert_close(&actual.to_vec::<f32>().unwrap(), &e, rtol(op), 1e-5, what);
        }
        "i64" => {
            let e: Vec<i64> = data.iter().map(|x| x.as_i64().unwrap()).collect();
            assert_eq!(actual.to_vec::<i64>().unwrap(), e, "{what}");
        }
        // The reference's tolerances for PyTorch's own half outputs; a cast is one rounding,
        // and must match exactly (up to the last digit of the file's decimals: a wrong
        // rounding is off by an ulp of the 16-bit type, 1e-3 relative or more).
        name @ ("f16" | "bf16") => {
            let dtype = dtype_named(name);
            assert_eq!(actual.dtype(), dtype, "{what}: dtype");
            let (rtol, atol) = match (op, dtype) {
                ("to", _) => (1e-12, 0.0),
                (_, DType::F16) => (2e-3, 1e-3),
                _ => (1.6e-2, 1e-2),
            };
            let e: Vec<f64> = data
                .iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN))
                .collect();
            let got = actual
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            common::assert_close(&got, &e, rtol, atol, what);
        }
        "bool" => {
            let e: Vec<bool> = data.iter().map(|x| x.as_bool().unwrap()).collect();
            assert_eq!(actual.to_vec::<bool>().unwrap(), e, "{what}");
        }
        other => panic!("{what}: unknown dtype {other}"),
    }
}

fn run_case(case: &Value, device: &Device) -> std::result::Result<(), String> {
    let name = case["name"].as_str().unwrap();
    let op = case["op"].as_str().unwrap();
    let has_grads = case.get("grads").is_some_and(|g| !g.is_null());
    let inputs: Vec<Tensor> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let t = tensor_from(v, device);
            if has_grads && t.dtype() == DType::F32 {
                t.requires_grad_(true).unwrap()
            } else {
                t
            }
        })
        .collect();
    let what = format!("{name} on {device}");
    let out = match run_op(op, &case["attrs"], &inputs) {
        None => {
            return Err(format!(
                "{what}: op {op:?} is not known to the golden runner"
            ))
        }
        Some(Err(e)) => return Err(format!("{what}: {e}")),
        Some(Ok(t)) => t,
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_values(&out, &case["output"], op, &what)
    }))
    .map_err(|e| panic_message(e, &what))?;
    if has_grads {
        let g = tensor_from(&case["grad_output"], device);
        out.backward_with(&g)
            .map_err(|e| format!("{what}: backward: {e}"))?;
        for (i, (t, expected)) in inputs
            .iter()
            .zip(case["grads"].as_array().unwrap())
            .enumerate()
        {
            if expected.is_null() {
                continue;
            }
            let grad = t
                .grad()
                .ok_or_else(|| format!("{what}: input {i} got no gradient"))?;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check_values(&grad, expected, op, &format!("{what}: grad of input {i}"))
            }))
            .map_err(|e| panic_message(e, &what))?;
        }
    }
    if check_jvp(case, device, &what)? {
        JVP_CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// How many forward-mode derivatives were compared (reported beside the case count).
static JVP_CHECKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Forward mode: the op on dual inputs (the case's tangents) carries the case's `jvp`.
fn check_jvp(case: &Value, device: &Device, what: &str) -> std::result::Result<bool, String> {
    let (Some(tangents), Some(expected)) = (case["tangents"].as_array(), case.get("jvp")) else {
        return Ok(false);
    };
    let op = case["op"].as_str().unwrap();
    let duals: Vec<Tensor> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(tangents)
        .map(|(v, t)| {
            let x = tensor_from(v, device);
            if t.is_null() {
                Ok(x)
            } else {
                func::make_dual(&x, &tensor_from(t, device))
            }
        })
        .collect::<Result<_>>()
        .map_err(|e| format!("{what}: make_dual: {e}"))?;
    let out = match run_op(op, &case["attrs"], &duals) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return Err(format!("{what}: on dual inputs: {e}")),
        None => {
            return Err(format!(
                "{what}: op {op:?} is not known to the golden runner"
            ))
        }
    };
    let tangent = out
        .tangent()
        .ok_or_else(|| format!("{what}: the result carries no tangent"))?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_values(&tangent, expected, op, &format!("{what}: jvp"))
    }))
    .map_err(|e| panic_message(e, what))?;
    Ok(true)
}

fn panic_message(e: Box<dyn std::any::Any + Send>, what: &str) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| format!("{what}: panic"))
}

fn run_file(json: &str, source: &str) {
    run_cases(json, source, |_| true)
}

/// Run the cases of a file that `select` keeps. The v2 format writes NaN as a bare token,
/// which strict JSON (serde_json) rejects: it is read as null, as the v1 files write it.
fn run_cases(json: &str, source: &str, select: impl Fn(&Value) -> bool) {
    let json = json.replace("NaN", "null");
    let root: Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{source}: not valid JSON: {e}"));
    let cases: Vec<&Value> = root["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{source}: no \"cases\" array"))
        .iter()
        .filter(|c| select(c))
        .collect();
    assert!(!cases.is_empty(), "{source}: no cases");
    let mut failures = Vec::new();
    let mut passed = 0;
    for device in common::devices() {
        for &case in &cases {
            match run_case(case, &device) {
                Ok(()) => passed += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    eprintln!(
        "{source}: {passed} case runs passed, {} failed (forward-mode derivatives compared so far in this binary: {})",
        failures.len(),
        JVP_CHECKS.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "{source}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passed > 0, "{source}: no case ran");
}

#[test]
fn pytorch_golden_cases() {
    run_file(
        include_str!("data/torch_ops.json"),
        "tests/data/torch_ops.json",
    );
}

#[test]
fn wgrad_generated_golden_cases() {
    run_file(
        include_str!("data/wgrad_ops.json"),
        "tests/data/wgrad_ops.json",
    );
}

/// Every case of the second reference file, half precision included: a case whose op the
/// runner does not know fails the run.
#[test]
fn pytorch_v2_golden_cases() {
    run_file(
        include_str!("data/torch_ops_v2.json"),
        "tests/data/torch_ops_v2.json",
    );
}

#[test]
fn golden_cases_from_environment() {
    let Ok(path) = std::env::var("WGRAD_GOLDEN_OPS") else {
        eprintln!("WGRAD_GOLDEN_OPS not set: no extra reference file");
        return;
    };
    let json =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("WGRAD_GOLDEN_OPS={path}: {e}"));
    run_file(&json, &path);
}
