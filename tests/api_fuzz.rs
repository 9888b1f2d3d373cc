//! Random programs through the public API: random ops with random (sometimes invalid)
//! arguments on random shapes, dtypes and views. Every program must finish within a time
//! limit without a panic, and the CPU and the GPU must agree: both fail, or both give the
//! same dtype, shape and values.

mod common;

use std::sync::mpsc;
use std::time::Duration;
use wgrad::op::{BinaryOp, CmpOp, UnaryOp};
use wgrad::{DType, Device, Result, Scalar, Tensor};

use common::Rng;

/// One step of a program: an op with its arguments drawn beforehand, so that the CPU and
/// the GPU run the same thing.
#[derive(Clone, Debug)]
enum Step {
    Unary(UnaryOp),
    Binary(BinaryOp, bool, Scalar),
    Cmp(CmpOp, Scalar),
    Sum(isize, bool),
    Max(isize),
    ArgMax(isize),
    Softmax(isize),
    Cumsum(isize),
    Transpose(isize, isize),
    Narrow(isize, usize, usize),
    Flatten,
    Cast(DType),
    Select(isize, usize),
    MatmulT,
    Cat(isize),
    Clamp(f64, f64),
    MaskedFill(f64),
    IndexSelect(isize, Vec<i64>),
    LogSoftmax(isize),
    Mean(isize, bool),
    Var(isize),
    Norm,
    Sort(isize, bool),
    Flip(isize),
    Cumprod(isize),
    Expand,
    LayerNorm,
    /// `x (op) y` with `y` the same values in another dtype (promotion).
    Mixed(BinaryOp, DType),
    Gather(isize),
    Pad(usize, usize, bool),
    Roll(isize, isize),
    Repeat,
    TopK(usize, isize, bool),
    Tril(isize),
    Prod(isize),
    ArgMin(isize),
}

fn draw(r: &mut Rng) -> Step {
    let scalars = [
        Scalar::Float(0.5),
        Scalar::Int(2),
        Scalar::Int(-3),
        Scalar::Bool(true),
        Scalar::Float(-1e30),
    ];
    let s = scalars[r.below(scalars.len())];
    match r.below(36) {
        0 => Step::Unary(UnaryOp::ALL[r.below(UnaryOp::ALL.len())]),
        1 => Step::Binary(
            BinaryOp::ALL[r.below(BinaryOp::ALL.len())],
            r.below(2) == 0,
            s,
        ),
        2 => Step::Cmp(CmpOp::ALL[r.below(CmpOp::ALL.len())], s),
        3 => Step::Sum(r.dim(), r.below(2) == 0),
        4 => Step::Max(r.dim()),
        5 => Step::ArgMax(r.dim()),
        6 => Step::Softmax(r.dim()),
        7 => Step::Cumsum(r.dim()),
        8 => Step::Transpose(r.dim(), r.dim()),
        9 => Step::Narrow(r.dim(), r.below(4), r.below(4)),
        10 => Step::Flatten,
        11 => Step::Cast(DType::ALL[r.below(DType::ALL.len())]),
        12 => Step::Select(r.dim(), r.below(4)),
        13 => Step::MatmulT,
        14 => Step::Cat(r.dim()),
        15 => Step::Clamp(r.below(5) as f64 - 2.0, r.below(5) as f64 - 1.0),
        16 => Step::MaskedFill(r.below(5) as f64 - 2.0),
        17 => Step::LogSoftmax(r.dim()),
        18 => Step::Mean(r.dim(), r.below(2) == 0),
        19 => Step::Var(r.dim()),
        20 => Step::Norm,
        21 => Step::Sort(r.dim(), r.below(2) == 0),
        22 => Step::Flip(r.dim()),
        23 => Step::Cumprod(r.dim()),
        24 => Step::Expand,
        25 => Step::LayerNorm,
        26 => Step::Mixed(
            BinaryOp::ALL[r.below(BinaryOp::ALL.len())],
            DType::ALL[r.below(DType::ALL.len())],
        ),
        27 => Step::Gather(r.dim()),
        28 => Step::Pad(r.below(3), r.below(3), r.below(2) == 0),
        29 => Step::Roll(r.below(7) as isize - 3, r.dim()),
        30 => Step::Repeat,
        31 => Step::TopK(r.below(3), r.dim(), r.below(2) == 0),
        32 => Step::Tril(r.below(3) as isize - 1),
        33 => Step::Prod(r.dim()),
        34 => Step::ArgMin(r.dim()),
        _ => Step::IndexSelect(
            r.dim(),
            (0..r.below(4)).map(|_| r.below(6) as i64 - 1).collect(),
        ),
    }
}

fn apply(step: &Step, x: &Tensor) -> Result<Tensor> {
    match step {
        Step::Unary(op) => x.unary_op(*op),
        Step::Binary(op, with_self, s) => {
            if *with_self {
                Tensor::binary_op(*op, x, &x.flatten_all()?.reshape(x.shape())?)
            } else {
                Tensor::binary_op(*op, x, *s)
            }
        }
        Step::Cmp(op, s) => x.compare_op(*op, *s),
        Step::Sum(d, keep) => x.sum_dims([*d], *keep),
        Step::Max(d) => x.max_dims([*d], false),
        Step::ArgMax(d) => x.argmax_dim(*d, false),
        Step::Softmax(d) => x.softmax(*d),
        Step::Cumsum(d) => x.cumsum(*d),
        Step::Transpose(a, b) => x.transpose(*a, *b),
        Step::Narrow(d, start, len) => x.narrow(*d, *start, *len),
        Step::Flatten => x.reshape([-1isize]),
        Step::Cast(d) => x.to_dtype(*d),
        Step::Select(d, i) => x.select(*d, *i as isize),
        Step::MatmulT => x.matmul(&x.transpose(-1, -2)?),
        Step::Cat(d) => Tensor::cat(&[x, x], *d),
        Step::Clamp(lo, hi) => x.clamp(*lo, *hi),
        Step::MaskedFill(v) => x.masked_fill(&x.lt_scalar(0.0)?, *v),
        Step::IndexSelect(d, idx) => {
            // Indices in range: an out-of-range one is refused by the CPU at once and by a
            // GPU at the readback of what depends on it (tests/reliability.rs), so the two
            // cannot be compared step by step.
            // (A dim of size 0 takes no index.)
            let size = x.size(*d).unwrap_or(1) as i64;
            let idx: Vec<i64> = if size == 0 {
                Vec::new()
            } else {
                idx.iter().map(|i| i.rem_euclid(size)).collect()
            };
            x.index_select(*d, &Tensor::new(idx)?.to_device(x.device())?)
        }
        Step::LogSoftmax(d) => x.log_softmax(*d),
        Step::Mean(d, keep) => x.mean_dims([*d], *keep),
        Step::Var(d) => x.var([*d], 1, false),
        Step::Norm => x.norm(),
        Step::Sort(d, descending) => Ok(x.sort(*d, *descending)?.0),
        Step::Flip(d) => x.flip([*d]),
        Step::Cumprod(d) => x.cumprod(*d),
        // A new leading dim of 2 through a stride-0 view.
        Step::Expand => {
            let mut shape = vec![2];
            shape.extend_from_slice(x.shape());
            x.unsqueeze(0)?.expand(shape)
        }
        Step::LayerNorm => {
            let last = x.shape().last().copied().unwrap_or(1);
            wgrad::nn::functional::layer_norm(x, &[last], None, None, 1e-5)
        }
        Step::Mixed(op, d) => {
            Tensor::binary_op(*op, x, &x.flatten_all()?.reshape(x.shape())?.to_dtype(*d)?)
        }
        // Indices in range, as for IndexSelect: each position takes its mirror along `d`.
        Step::Gather(d) => {
            let rank = x.ndim() as isize;
            if rank == 0 || *d < -rank || *d >= rank {
                // Only the dim can be wrong: the index (zeros of x's shape) is in range.
                let zeros = Tensor::zeros_on(x.shape(), (DType::I64, x.device()))?;
                return x.gather(*d, &zeros);
            }
            let k = d.rem_euclid(rank) as usize;
            let n = x.shape()[k] as i64;
            let idx = Tensor::arange_on(n - 1, -1i64, -1, x.device())?;
            let mut view = vec![1isize; x.ndim()];
            view[k] = -1;
            let idx = idx.reshape(view)?.expand(x.shape())?.contiguous()?;
            x.gather(*d, &idx)
        }
        Step::Pad(left, right, reflect) => {
            let mode = if *reflect {
                wgrad::nn::functional::PadMode::Reflect
            } else {
                wgrad::nn::functional::PadMode::Constant(1.5)
            };
            wgrad::nn::functional::pad(x, &[*left as isize, *right as isize], mode)
        }
        Step::Roll(shift, d) => x.roll([*shift], [*d]),
        Step::Repeat => {
            let mut times = vec![1usize; x.ndim()];
            if let Some(first) = times.first_mut() {
                *first = 2;
            }
            x.repeat(times)
        }
        Step::TopK(k, d, largest) => Ok(x.topk(*k, *d, *largest)?.0),
        Step::Tril(diagonal) => x.tril(*diagonal as i64),
        Step::Prod(d) => x.prod_dims([*d], false),
        Step::ArgMin(d) => x.argmin_dim(*d, false),
    }
}

trait FlattenAll {
    fn flatten_all(&self) -> Result<Tensor>;
}
impl FlattenAll for Tensor {
    /// The elements in reverse order: another tensor of the same shape and dtype.
    fn flatten_all(&self) -> Result<Tensor> {
        let n = self.numel() as i64;
        let idx = Tensor::arange_on(n - 1, -1i64, -1, self.device())?;
        self.reshape([-1isize])?.index_select(0, &idx)
    }
}

/// A random base tensor of a random dtype and rank, maybe seen through a view.
fn base(r: &mut Rng) -> Tensor {
    let rank = r.below(4);
    let shape: Vec<usize> = (0..rank)
        .map(|_| r.below(4) + usize::from(r.below(5) != 0))
        .collect();
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| (r.below(13) as f32 - 6.0) * 0.5).collect();
    let t = Tensor::from_vec(values, shape).unwrap();
    let t = match r.below(6) {
        0 => t.to_dtype(DType::I64).unwrap(),
        1 => t.gt_scalar(0.0).unwrap(),
        2 => t.to_dtype(DType::F16).unwrap(),
        3 => t.to_dtype(DType::BF16).unwrap(),
        4 => t.to_dtype(DType::F64).unwrap(),
        _ => t,
    };
    if t.ndim() >= 2 && r.below(2) == 0 {
        t.transpose(0, 1).unwrap()
    } else {
        t
    }
}

/// The outcome a device reached, as text: an error (of any kind) or the values.
type Outcome = std::result::Result<(DType, Vec<usize>, Vec<f64>), String>;

fn outcome(t: Result<Tensor>) -> Outcome {
    let t = t.map_err(|e| e.to_string())?;
    let err = |e: wgrad::Error| e.to_string();
    let values = match t.dtype() {
        DType::F32 => t
            .to_vec::<f32>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        DType::I64 => t
            .to_vec::<i64>()
            .map_err(err)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        DType::Bool => t
            .to_vec::<bool>()
            .map_err(err)?
            .into_iter()
            .map(|v| v as u8 as f64)
            .collect(),
        DType::F16 | DType::BF16 => t
            .to_dtype(DType::F32)
            .and_then(|t| t.to_vec::<f32>())
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        DType::F64 => t.to_vec::<f64>().map_err(err)?,
    };
    Ok((t.dtype(), t.shape().to_vec(), values))
}

/// Equal within the dtype's precision: f32 results of the two backends may differ in the
/// last bits, and a 16-bit result rounded from them by an ulp of the 16-bit type.
fn close(dtype: DType, a: &[f64], b: &[f64]) -> bool {
    let rtol = match dtype {
        DType::F16 => 2e-3,
        DType::BF16 => 1.6e-2,
        DType::F32 | DType::I64 | DType::Bool | DType::F64 => 1e-4,
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(&x, &y)| {
            (x.is_nan() && y.is_nan())
                || x == y
                || (x - y).abs() <= rtol * x.abs().max(y.abs()).max(1.0)
        })
}

const PROGRAMS: usize = 2000;

#[test]
fn random_programs_never_panic_and_agree() {
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(|| {
            let devices = common::devices();
            // WGRAD_FUZZ_SEED=n replays another sequence of programs.
            let seed = std::env::var("WGRAD_FUZZ_SEED")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0x9E37_79B9_7F4A_7C15);
            let mut r = Rng(seed | 1);
            let (mut failures, mut ran, mut refused) = (Vec::new(), 0, 0);
            for program in 0..PROGRAMS {
                let start = base(&mut r);
                let steps: Vec<Step> = (0..4).map(|_| draw(&mut r)).collect();
                let run = |dev: &Device| -> Result<Tensor> {
                    let mut x = start.to_device(dev)?;
                    for s in &steps {
                        x = apply(s, &x)?;
                    }
                    Ok(x)
                };
                let cpu = outcome(run(&Device::Cpu));
                if cpu.is_ok() {
                    ran += 1
                } else {
                    refused += 1
                }
                for dev in devices.iter().filter(|d| !d.is_cpu()) {
                    let gpu = outcome(run(dev));
                    let same = match (&cpu, &gpu) {
                        (Err(_), Err(_)) => true,
                        (Ok((da, sa, va)), Ok((db, sb, vb))) => {
                            da == db && sa == sb && close(*da, va, vb)
                        }
                        _ => false,
                    };
                    if !same {
                        failures.push(format!(
                            "program {program} ({:?} {:?}, {steps:?}): cpu {cpu:?}, gpu {gpu:?}",
                            start.dtype(),
                            start.shape()
                        ));
                    }
                }
            }
            eprintln!("{PROGRAMS} programs: {ran} ran on the CPU, {refused} were refused");
            failures
        });
        let _ = done.send(result);
    });
    match wait.recv_timeout(Duration::from_secs(300)) {
        Ok(Ok(failures)) => assert!(failures.is_empty(), "{}", failures.join("\n")),
        Ok(Err(_)) => panic!("a random program panicked"),
        Err(_) => panic!("the random programs did not finish within 300 s: a hang"),
    }
}
