//! Lazy elementwise fusion on the GPU (`storage/lazy.rs`): random elementwise programs
//! (random ops, shapes, broadcasts, views, numbers, dtypes, in-place writes and reads in
//! between) give the same values fused, unfused and on the CPU, and every kernel generated
//! for them validates with naga.

mod common;

use wgrad::{DType, Device, Result, Tensor};

/// The tests of this file count the device's dispatches, which every test's work moves: one
/// at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether fusion is on in this run (`WGRAD_NO_FUSION=1` turns it off: the suite runs both
/// ways, and then "fused" results are unfused ones).
fn fusion_on() -> bool {
    std::env::var_os("WGRAD_NO_FUSION").is_none_or(|v| v == "0")
}

use common::Rng;

/// A value of a program: where it comes from, and whether only exact float operations (which
/// every backend rounds alike) lead to it. Comparisons, casts to bool and `where`'s condition
/// take exact values only, so that an ulp between the backends cannot flip a bool.
#[derive(Clone, Debug)]
enum Step {
    /// Input `k` read through view `v` (see `view`).
    Input(usize, usize),
    Unary(&'static str, usize),
    Binary(&'static str, usize, usize),
    Scalar(&'static str, usize, f32),
    Cmp(&'static str, usize, usize),
    Where(usize, usize, usize),
    WhereScalar(usize, usize, f32),
    ToBool(usize),
    ToFloat(usize),
    /// `logical_and` of two bools.
    Logical(usize, usize),
    /// Through I64 and back (an eager op between fused ones).
    ViaInt(usize),
    /// Half the sum over the last dim, kept and broadcast back (a reduction between fused
    /// ops, and a pending value read broadcast).
    RowSum(usize),
    /// The transpose of a square value (a fused value read through a view).
    Transpose(usize),
    /// Input `k` += number, in place (the fused values made before must not see it).
    AddInPlace(usize, f32),
    /// Read value `k` back now (its kernel runs in the middle of the program).
    Read(usize),
    /// Value `k` times a fixed square matrix (transposed or not): a product whose kernel
    /// computes the ops that read it (an epilogue).
    Product(usize, bool),
}

const EXACT_UNARY: &[&str] = &["neg", "abs", "relu"];
const APPROX_UNARY: &[&str] = &["exp", "tanh", "sigmoid", "sin", "sqrt"];
const EXACT_BINARY: &[&str] = &["add", "sub", "mul", "maximum", "minimum"];
const CMP: &[&str] = &["gt", "le", "eq", "ne"];

struct Program {
    shape: Vec<usize>,
    inputs: Vec<Vec<f32>>,
    steps: Vec<Step>,
}

fn generate(seed: u64) -> Program {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let a = 1 + r.below(6);
    let b = if r.below(2) == 0 { a } else { 1 + r.below(40) };
    let shape = vec![a, b];
    let inputs: Vec<Vec<f32>> = (0..3)
        .map(|_| {
            (0..(a + 2) * (b + 2))
                .map(|_| match r.below(40) {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => -0.0,
                    3 => 0.0,
                    _ => (r.unit() * 6.0 - 3.0).round() / 4.0 + r.unit() * 0.01,
                })
                .collect()
        })
        .collect();
    // (step, dtype is float, exact)
    let mut values: Vec<(Step, bool, bool)> = Vec::new();
    for k in 0..3 {
        values.push((Step::Input(k, r.below(5)), true, true));
    }
    let count = 4 + r.below(14);
    let mut steps: Vec<Step> = values.iter().map(|v| v.0.clone()).collect();
    for _ in 0..count {
        let pick = |r: &mut Rng, want: &dyn Fn(&(Step, bool, bool)) -> bool| {
            let ok: Vec<usize> = (0..values.len()).filter(|&i| want(&values[i])).collect();
            ok[r.below(ok.len())]
        };
        let float = |v: &(Step, bool, bool)| v.1;
        let exact_float = |v: &(Step, bool, bool)| v.1 && v.2;
        let boolean = |v: &(Step, bool, bool)| !v.1;
        let has_bool = values.iter().any(boolean);
        let (step, is_float, exact) = match r.below(18) {
            0 => {
                let x = pick(&mut r, &float);
                let op = EXACT_UNARY[r.below(EXACT_UNARY.len())];
                (Step::Unary(op, x), true, values[x].2)
            }
            1 => {
                let x = pick(&mut r, &float);
                let op = APPROX_UNARY[r.below(APPROX_UNARY.len())];
                (Step::Unary(op, x), true, false)
            }
            2 | 3 => {
                let (x, y) = (pick(&mut r, &float), pick(&mut r, &float));
                let op = EXACT_BINARY[r.below(EXACT_BINARY.len())];
                (Step::Binary(op, x, y), true, values[x].2 && values[y].2)
            }
            4 => {
                let x = pick(&mut r, &float);
                let op = EXACT_BINARY[r.below(EXACT_BINARY.len())];
                let v = (r.below(9) as f32 - 4.0) / 2.0;
                (Step::Scalar(op, x, v), true, values[x].2)
            }
            5 => {
                let (x, y) = (pick(&mut r, &exact_float), pick(&mut r, &exact_float));
                (Step::Cmp(CMP[r.below(CMP.len())], x, y), false, true)
            }
            6 if has_bool => {
                let c = pick(&mut r, &boolean);
                let (x, y) = (pick(&mut r, &float), pick(&mut r, &float));
                (Step::Where(c, x, y), true, values[x].2 && values[y].2)
            }
            7 if has_bool => {
                let c = pick(&mut r, &boolean);
                let x = pick(&mut r, &float);
                (Step::WhereScalar(c, x, -1.5), true, values[x].2)
            }
            8 => (Step::ToBool(pick(&mut r, &exact_float)), false, true),
            9 if has_bool => (Step::ToFloat(pick(&mut r, &boolean)), true, true),
            10 => {
                let x = pick(&mut r, &exact_float);
                (Step::ViaInt(x), true, true)
            }
            11 => {
                let x = pick(&mut r, &float);
                (Step::RowSum(x), true, false)
            }
            12 if a == b => {
                let x = pick(&mut r, &|v: &(Step, bool, bool)| v.1);
                (Step::Transpose(x), true, values[x].2)
            }
            13 => {
                steps.push(Step::AddInPlace(r.below(3), 0.25));
                continue;
            }
            14 if has_bool => {
                let (x, y) = (pick(&mut r, &boolean), pick(&mut r, &boolean));
                (Step::Logical(x, y), false, true)
            }
            // Sums of products round differently on the CPU: not exact.
            15 | 16 => (
                Step::Product(pick(&mut r, &float), r.below(2) == 0),
                true,
                false,
            ),
            _ => {
                steps.push(Step::Read(r.below(values.len())));
                continue;
            }
        };
        steps.push(step.clone());
        values.push((step, is_float, exact));
    }
    Program {
        shape,
        inputs,
        steps,
    }
}

/// Input data viewed as the program's shape: whole, broadcast along either dim, transposed
/// (square shapes), or a window of a larger tensor.
fn view(data: &[f32], shape: &[usize], v: usize, dev: &Device) -> Result<Tensor> {
    let (a, b) = (shape[0], shape[1]);
    let big = Tensor::from_vec(data.to_vec(), [a + 2, b + 2])?.to_device(dev)?;
    match v {
        0 => big.narrow(0, 0, a)?.narrow(1, 0, b)?.contiguous(),
        1 => big.narrow(0, 1, 1)?.narrow(1, 0, b)?.expand([a, b]),
        2 => big.narrow(0, 0, a)?.narrow(1, 2, 1)?.expand([a, b]),
        3 if a == b => big.narrow(0, 1, a)?.narrow(1, 1, b)?.t(),
        _ => big.narrow(0, 1, a)?.narrow(1, 2, b),
    }
}

fn unary(op: &str, x: &Tensor) -> Result<Tensor> {
    match op {
        "neg" => x.neg(),
        "abs" => x.abs(),
        "relu" => x.relu(),
        "exp" => x.exp(),
        "tanh" => x.tanh(),
        "sigmoid" => x.sigmoid(),
        "sin" => x.sin(),
        _ => x.sqrt(),
    }
}

fn binary(op: &str, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    match op {
        "add" => x.add(y),
        "sub" => x.sub(y),
        "mul" => x.mul(y),
        "maximum" => x.maximum(y),
        _ => x.minimum(y),
    }
}

fn scalar(op: &str, x: &Tensor, v: f32) -> Result<Tensor> {
    match op {
        "add" => x.add_scalar(v),
        "sub" => x.sub_scalar(v),
        "mul" => x.mul_scalar(v),
        "maximum" => x.clamp_min(v),
        _ => x.clamp_max(v),
    }
}

fn compare(op: &str, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    match op {
        "gt" => x.gt(y),
        "le" => x.le(y),
        "eq" => x.eq(y),
        _ => x.ne(y),
    }
}

/// Every value of the program on `dev` (the bools as 0/1), and the reads made during it.
fn run(p: &Program, dev: &Device) -> Result<Vec<Vec<f32>>> {
    let inputs: Vec<Tensor> = p
        .inputs
        .iter()
        .map(|d| {
            Tensor::from_vec(d[..p.shape[0] * p.shape[1]].to_vec(), p.shape.clone())?.to_device(dev)
        })
        .collect::<Result<_>>()?;
    let mut values: Vec<Tensor> = Vec::new();
    let mut out = Vec::new();
    for step in &p.steps {
        let v = |k: usize| -> &Tensor { &values[k] };
        let t = match *step {
            Step::Input(k, vw) => {
                // In-place writes go to the program's own inputs; views of other data
                // exercise strided and broadcast reads.
                if vw == 0 {
                    inputs[k].clone()
                } else {
                    view(&p.inputs[k], &p.shape, vw, dev)?
                }
            }
            Step::Unary(op, x) => unary(op, v(x))?,
            Step::Binary(op, x, y) => binary(op, v(x), v(y))?,
            Step::Scalar(op, x, s) => scalar(op, v(x), s)?,
            Step::Cmp(op, x, y) => compare(op, v(x), v(y))?,
            Step::Where(c, x, y) => Tensor::where_cond(v(c), v(x), v(y))?,
            Step::WhereScalar(c, x, s) => Tensor::where_cond(v(c), v(x), s)?,
            Step::ToBool(x) => v(x).to_dtype(DType::Bool)?,
            Step::ToFloat(x) => v(x).to_dtype(DType::F32)?,
            Step::ViaInt(x) => v(x)
                .clamp(-100.0, 100.0)?
                .to_dtype(DType::I64)?
                .to_dtype(DType::F32)?,
            Step::RowSum(x) => v(x)
                .sum_dims([1isize], true)?
                .mul_scalar(0.5)?
                .expand(&p.shape)?,
            Step::Logical(x, y) => v(x).logical_and(v(y))?,
            Step::Transpose(x) => v(x).t()?,
            Step::Product(x, transposed) => {
                let b = p.shape[1];
                let data = (0..b * b)
                    .map(|i| (i * 7 % 13) as f32 / 4.0 - 1.5)
                    .collect();
                let w = Tensor::from_vec(data, [b, b])?.to_device(dev)?;
                v(x).matmul(&if transposed { w.t()? } else { w })?
            }
            Step::AddInPlace(k, s) => {
                inputs[k].add_(s)?;
                continue;
            }
            Step::Read(k) => {
                out.push(floats_of(v(k))?);
                continue;
            }
        };
        values.push(t);
    }
    // Computed together (as a training step's values are: its loss is read, or the next
    // step's writes compute them), then read.
    dev.flush();
    for t in &values {
        out.push(floats_of(t)?);
    }
    for t in &inputs {
        out.push(floats_of(t)?);
    }
    Ok(out)
}

fn floats_of(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.to_vec::<f32>()
}

fn same_bits(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

#[test]
fn random_elementwise_programs_agree_fused_unfused_and_on_the_cpu() -> Result<()> {
    let _serial = serial();
    let Some(gpu) = common::devices().into_iter().find(|d| !d.is_cpu()) else {
        return Ok(());
    };
    let Device::Gpu(g) = &gpu else {
        return Ok(());
    };
    let (mut fused_dispatches, mut unfused_dispatches) = (0, 0);
    for seed in 0..150u64 {
        let p = generate(seed);
        let cpu = run(&p, &Device::Cpu)?;
        let before = g.stats().dispatches;
        let unfused = wgrad::without_fusion(|| run(&p, &gpu))?;
        let middle = g.stats().dispatches;
        let fused = run(&p, &gpu)?;
        unfused_dispatches += middle - before;
        fused_dispatches += g.stats().dispatches - middle;
        let what = |k: usize| format!("seed {seed}, value {k} of {:?}", p.steps);
        for (k, ((f, u), c)) in fused.iter().zip(&unfused).zip(&cpu).enumerate() {
            // Fused and unfused run the same float operations in the same order on one
            // device: the same bits.
            for (i, (x, y)) in f.iter().zip(u).enumerate() {
                assert!(
                    same_bits(*x, *y),
                    "{}: element {i}: fused {x}, unfused {y}",
                    what(k)
                );
            }
            // The CPU: within the ulps of the transcendental functions.
            for (i, (x, y)) in f.iter().zip(c).enumerate() {
                let close =
                    same_bits(*x, *y) || (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1.0);
                assert!(close, "{}: element {i}: GPU {x}, CPU {y}", what(k));
            }
        }
    }
    // Fewer kernels fused than one per op (every value of these programs is kept and read,
    // so each is stored: see the test below for chains whose intermediates are not).
    assert!(
        !fusion_on() || fused_dispatches < unfused_dispatches,
        "fused {fused_dispatches} vs unfused {unfused_dispatches} dispatches"
    );
    // Every kernel generated on the way is valid WGSL.
    let lazy: Vec<(String, String)> = wgrad::wgsl_variants()?
        .into_iter()
        .filter(|(label, _)| label.contains("Fused["))
        .collect();
    assert!(
        !fusion_on() || lazy.len() > 20,
        "{} fused kernels",
        lazy.len()
    );
    for (label, source) in &lazy {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(source)));
    }
    Ok(())
}

fn gpu() -> Option<(Device, wgrad::gpu::GpuDevice)> {
    let dev = common::devices().into_iter().find(|d| !d.is_cpu())?;
    match &dev {
        Device::Gpu(g) => {
            let g = g.clone();
            Some((dev, g))
        }
        Device::Cpu => None,
    }
}

/// A chain of elementwise ops is one kernel, which stores its result and nothing else; the
/// intermediates a tensor still holds are stored by that kernel too, and none computed twice.
#[test]
fn a_chain_is_one_kernel_that_stores_only_what_is_held() -> Result<()> {
    let _serial = serial();
    let Some((dev, g)) = gpu() else {
        return Ok(());
    };
    let x = Tensor::randn_on([1000], &dev)?;
    let b = Tensor::randn_on([1000], &dev)?;
    let cost = |f: &dyn Fn() -> Result<Vec<Tensor>>| cost(&dev, &g, f);
    let chain = || -> Result<Tensor> {
        ((&x * 2.0 + &b).relu()?.exp()? - &x)
            .check()?
            .sigmoid()?
            .clamp(0.1, 0.9)
    };
    let expect = {
        let (xc, bc) = (x.to_device(&Device::Cpu)?, b.to_device(&Device::Cpu)?);
        ((&xc * 2.0 + &bc).relu()?.exp()? - &xc)
            .check()?
            .sigmoid()?
            .clamp(0.1, 0.9)?
            .to_vec::<f32>()?
    };
    let got = chain()?.to_vec::<f32>()?;
    for (a, e) in got.iter().zip(&expect) {
        assert!((a - e).abs() <= 1e-6, "{a} vs {e}");
    }
    if !fusion_on() {
        return Ok(());
    }
    assert_eq!(
        cost(&|| Ok(vec![chain()?]))?,
        (1, 1),
        "the chain, result kept"
    );
    // A held intermediate: one kernel still, two outputs.
    assert_eq!(
        cost(&|| {
            let h = (&x * 2.0 + &b).relu()?;
            let y = h.exp()?.neg()?;
            Ok(vec![h, y])
        })?,
        (1, 2),
        "an intermediate kept"
    );
    Ok(())
}

/// A pending value keeps the values of what it reads at the time it was made: writes in
/// place, on this thread or another, come after it.
#[test]
fn pending_values_do_not_see_later_writes() -> Result<()> {
    let _serial = serial();
    let Some((dev, _)) = gpu() else {
        return Ok(());
    };
    let x = Tensor::full_on([256], 1.0, &dev)?;
    let y = x.mul_scalar(3.0)?.add_scalar(1.0)?;
    x.add_(10.0)?;
    assert_eq!(y.to_vec::<f32>()?, vec![4.0; 256]);
    // Made on one thread, written on another, read on a third.
    let z = x.mul_scalar(2.0)?;
    std::thread::scope(|s| s.spawn(|| x.mul_(0.0).map(|_| ())).join())
        .map_err(|_| wgrad::Error::DeviceLost("thread".into()))??;
    let read = std::thread::scope(|s| s.spawn(|| z.to_vec::<f32>()).join())
        .map_err(|_| wgrad::Error::DeviceLost("thread".into()))??;
    assert_eq!(read, vec![22.0; 256]);
    assert_eq!(x.to_vec::<f32>()?, vec![0.0; 256]);
    // A pending value written in place is computed first, then written.
    let w = x.add_scalar(5.0)?;
    w.mul_(2.0)?;
    assert_eq!(w.to_vec::<f32>()?, vec![10.0; 256]);
    Ok(())
}

/// Many threads reading one pending value and values built on it: each computed once, no
/// deadlock, every thread sees the same numbers.
#[test]
fn threads_share_pending_values() -> Result<()> {
    let _serial = serial();
    let Some((dev, _)) = gpu() else {
        return Ok(());
    };
    let x = Tensor::randn_on([4096], &dev)?;
    let base = x.tanh()?.mul_scalar(0.5)?;
    let expect = base.to_device(&Device::Cpu)?.to_vec::<f32>()?;
    for _ in 0..20 {
        let shared = x.tanh()?.mul_scalar(0.5)?;
        let results: Vec<Result<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|k| {
                    let shared = &shared;
                    s.spawn(move || {
                        let other = shared.add_scalar(k as f64)?.sub_scalar(k as f64)?;
                        if k % 2 == 0 {
                            other.to_vec::<f32>()
                        } else {
                            shared.to_vec::<f32>()
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Ok(Vec::new())))
                .collect()
        });
        for r in results {
            let r = r?;
            assert_eq!(r.len(), expect.len());
            for (a, e) in r.iter().zip(&expect) {
                assert!((a - e).abs() <= 1e-5, "{a} vs {e}");
            }
        }
    }
    Ok(())
}

/// A reduction of a fused value computes it as it reads it, one workgroup per output or
/// split across workgroups for a long one, and stores only its result; softmax,
/// log-softmax and a layer norm composed from ops, and MSE, take three kernels or fewer.
#[test]
fn reductions_compute_their_fused_input_as_they_read_it() -> Result<()> {
    let _serial = serial();
    let Some((dev, g)) = gpu() else {
        return Ok(());
    };
    let x = Tensor::randn_on([300_000], &dev)?;
    let rows = Tensor::randn_on([64, 100], &dev)?;
    let other = Tensor::randn_on([64, 100], &dev)?;
    let (w, b) = (
        Tensor::randn_on([100], &dev)?,
        Tensor::randn_on([100], &dev)?,
    );
    type Program<'a> = (&'a str, usize, Box<dyn Fn() -> Result<Tensor> + 'a>);
    let programs: Vec<Program<'_>> = vec![
        ("long sum", 2, Box::new(|| x.mul_scalar(0.01)?.exp()?.sum())),
        ("long max", 2, Box::new(|| x.abs()?.neg()?.max())),
        (
            "row sums",
            1,
            Box::new(|| rows.tanh()?.sum_dims([1isize], false)),
        ),
        // Softmax and log-softmax composed from ops (a GPU's `softmax` and `log_softmax` are
        // one kernel each of their own, `tests/fused_ops.rs`).
        (
            "softmax composed",
            3,
            Box::new(|| {
                let e = rows.sub(&rows.max_dims([1isize], true)?)?.exp()?;
                e.div(&e.sum_dims([1isize], true)?)
            }),
        ),
        (
            "log_softmax composed",
            3,
            Box::new(|| rows.sub(&rows.logsumexp([1isize], true)?)),
        ),
        // Layer norm composed from ops (a GPU's `layer_norm` is one kernel of its own,
        // `tests/fused_ops.rs`): the variance's reduction computes the centring as it reads.
        (
            "layer norm composed",
            3,
            Box::new(|| {
                let c = rows.sub(&rows.mean_dims([1isize], true)?)?;
                let var = c.square()?.mean_dims([1isize], true)?;
                c.div(&var.add_scalar(1e-5)?.sqrt()?)?.mul(&w)?.add(&b)
            }),
        ),
        (
            "mse_loss",
            2,
            Box::new(|| wgrad::nn::mse_loss(&rows, &other)),
        ),
    ];
    for (name, kernels, f) in &programs {
        dev.synchronize()?;
        let before = g.stats().dispatches;
        let fused = f()?;
        dev.flush();
        let dispatched = g.stats().dispatches - before;
        let unfused = wgrad::without_fusion(f)?;
        let (fv, uv) = (fused.to_vec::<f32>()?, unfused.to_vec::<f32>()?);
        for (i, (a, u)) in fv.iter().zip(&uv).enumerate() {
            assert_eq!(a.to_bits(), u.to_bits(), "{name}: element {i}: {a} vs {u}");
        }
        if fusion_on() {
            println!("{name}: {dispatched} kernels");
            assert_eq!(dispatched, *kernels as u64, "{name}: kernels");
        }
    }
    Ok(())
}

/// Dispatches and buffers requested (new or reused) by `f` and the flush after it.
fn cost(
    dev: &Device,
    g: &wgrad::gpu::GpuDevice,
    f: &dyn Fn() -> Result<Vec<Tensor>>,
) -> Result<(u64, u64)> {
    dev.synchronize()?;
    let before = g.stats();
    let kept = f()?;
    dev.flush();
    let after = g.stats();
    drop(kept);
    let requests = |s: wgrad::gpu::GpuStats| s.allocations + s.reuses;
    Ok((
        after.dispatches - before.dispatches,
        requests(after) - requests(before),
    ))
}

/// `got` has the bits of `unfused` and is within float rounding of `cpu`.
fn agrees(what: &str, got: &Tensor, unfused: &[f32], cpu: &[f32]) -> Result<()> {
    let got = got.to_vec::<f32>()?;
    assert_eq!(got.len(), cpu.len(), "{what}");
    for (i, ((x, u), c)) in got.iter().zip(unfused).zip(cpu).enumerate() {
        assert!(
            same_bits(*x, *u),
            "{what}: element {i}: fused {x}, unfused {u}"
        );
        assert!(
            (x - c).abs() <= 1e-4 * c.abs().max(1.0),
            "{what}: element {i}: GPU {x}, CPU {c}"
        );
    }
    Ok(())
}

/// A matrix product is computed by one kernel together with the elementwise ops that read
/// it whole (an epilogue: a linear layer's bias and activation, a gradient's mask), with
/// the bits of the ops one by one. A product that something reads alone is computed once,
/// one expression holds one product, and a write to an operand after the product does not
/// reach it.
#[test]
fn matmul_epilogues_run_in_the_product_kernel() -> Result<()> {
    let _serial = serial();
    let Some((dev, g)) = gpu() else {
        return Ok(());
    };
    let x = Tensor::randn([33, 64])?;
    // N = 48 takes the vec4 kernel, N = 10 the strided one.
    let weights = [Tensor::randn([48, 64])?, Tensor::randn([10, 64])?];
    let biases = [Tensor::randn([48])?, Tensor::randn([10])?];
    let layer = |x: &Tensor, w: &Tensor, b: &Tensor| -> Result<Tensor> {
        x.matmul(&w.t()?)?.add(b)?.relu()
    };
    let xg = x.to_device(&dev)?;
    for (w, b) in weights.iter().zip(&biases) {
        let (wg, bg) = (w.to_device(&dev)?, b.to_device(&dev)?);
        let want = layer(&x, w, b)?.to_vec::<f32>()?;
        let unfused = wgrad::without_fusion(|| layer(&xg, &wg, &bg)?.to_vec::<f32>())?;
        let what = format!("linear layer to {}", b.numel());
        agrees(&what, &layer(&xg, &wg, &bg)?, &unfused, &want)?;
        // The product's gradient through the relu's mask: g @ w, then `where`.
        let mask = x.gt(0.0)?;
        let grad_in = |o: &Tensor, w: &Tensor, m: &Tensor| -> Result<Tensor> {
            Tensor::where_cond(m, &o.matmul(w)?, 0.0)
        };
        let o = Tensor::ones([33, b.numel()])?;
        let (og, mg) = (o.to_device(&dev)?, mask.to_device(&dev)?);
        let want = grad_in(&o, w, &mask)?.to_vec::<f32>()?;
        let unfused = wgrad::without_fusion(|| grad_in(&og, &wg, &mg)?.to_vec::<f32>())?;
        agrees("masked gradient", &grad_in(&og, &wg, &mg)?, &unfused, &want)?;
    }
    // Products past the adapter's workgroups per dimension take several dispatches, each
    // with the epilogue's parameters after the product's.
    for (sa, sb) in [
        ([70_000, 1, 4], [70_000, 4, 4]),
        ([70_000, 2, 3], [70_000, 3, 2]),
    ] {
        let (a, b) = (Tensor::randn(sa)?, Tensor::randn(sb)?);
        let f = |a: &Tensor, b: &Tensor| a.matmul(b)?.mul_scalar(2.0)?.add_scalar(1.0);
        let (ag, bg) = (a.to_device(&dev)?, b.to_device(&dev)?);
        let unfused = wgrad::without_fusion(|| f(&ag, &bg)?.to_vec::<f32>())?;
        agrees(
            "a batch of 70,000",
            &f(&ag, &bg)?,
            &unfused,
            &f(&a, &b)?.to_vec::<f32>()?,
        )?;
    }
    // An expression reading a product as another shape, computed after the product was
    // computed alone: it reads the stored product in order.
    let reread = |x: &Tensor, w: &Tensor| -> Result<Vec<Vec<f32>>> {
        let h = x.matmul(&w.t()?)?;
        let y = h.reshape([48, 33])?.add_scalar(1.0)?;
        let s = h.sum()?;
        Ok(vec![y.to_vec::<f32>()?, s.reshape([1])?.to_vec::<f32>()?])
    };
    let want = reread(&x, &weights[0])?;
    let got = reread(&xg, &weights[0].to_device(&dev)?)?;
    for (g, e) in got.concat().iter().zip(&want.concat()) {
        assert!(
            (g - e).abs() <= 1e-3 * e.abs().max(1.0),
            "reread: {g} vs {e}"
        );
    }
    // A product written over before it is computed keeps its operands' earlier values.
    let own = x.to_device(&dev)?;
    let w = weights[0].to_device(&dev)?;
    let h = own.matmul(&w.t()?)?;
    own.mul_(0.0)?;
    let want = x.matmul(&weights[0].t()?)?.to_vec::<f32>()?;
    for (a, e) in h.to_vec::<f32>()?.iter().zip(&want) {
        assert!((a - e).abs() <= 1e-4 * e.abs().max(1.0), "{a} vs {e}");
    }
    if !fusion_on() {
        return Ok(());
    }
    let (w, b) = (weights[0].to_device(&dev)?, biases[0].to_device(&dev)?);
    assert_eq!(
        cost(&dev, &g, &|| Ok(vec![layer(&xg, &w, &b)?]))?,
        (1, 1),
        "a linear layer with its bias and relu"
    );
    // Over a sequence ([batch, seq, features] through one 2-D product): still one kernel.
    let x3 = xg.reshape([3, 11, 64])?;
    let seq_layer = || x3.matmul(&w.t()?)?.add(&b)?.relu();
    let want = layer(&x, &weights[0], &biases[0])?.to_vec::<f32>()?;
    let unfused = wgrad::without_fusion(|| seq_layer()?.to_vec::<f32>())?;
    agrees("a layer over a sequence", &seq_layer()?, &unfused, &want)?;
    assert_eq!(
        cost(&dev, &g, &|| Ok(vec![seq_layer()?]))?,
        (1, 1),
        "a linear layer over a sequence"
    );
    // A held product whose squares are summed (a gradient's norm): the product is stored
    // alone and the sum computes the squares as it reads them, never storing them.
    let squares = cost(&dev, &g, &|| {
        let h = xg.matmul(&w.t()?)?;
        let s = h.square()?.sum()?;
        Ok(vec![h, s])
    })?;
    let plain = cost(&dev, &g, &|| {
        let h = xg.matmul(&w.t()?)?;
        let s = h.sum()?;
        Ok(vec![h, s])
    })?;
    assert_eq!(squares, plain, "a held product's squares summed");
    // The product held too: stored by the same kernel.
    assert_eq!(
        cost(&dev, &g, &|| {
            let h = xg.matmul(&w.t()?)?;
            let y = h.add(&b)?.relu()?;
            Ok(vec![h, y])
        })?,
        (1, 2),
        "the product kept"
    );
    // Read alone first (by a reduction), then by an elementwise op: computed once, the op's
    // kernel reads it.
    let summed = cost(&dev, &g, &|| {
        let h = xg.matmul(&w.t()?)?;
        Ok(vec![h.sum()?, h])
    })?;
    let then_added = cost(&dev, &g, &|| {
        let h = xg.matmul(&w.t()?)?;
        let s = h.sum()?;
        Ok(vec![s, h.add(&b)?])
    })?;
    assert_eq!(then_added.0, summed.0 + 1, "a product computed twice");
    // Two products in one expression: one runs alone, the other with the sum as epilogue.
    let w2 = weights[0].flip([0])?.to_device(&dev)?;
    assert_eq!(
        cost(&dev, &g, &|| Ok(vec![xg
            .matmul(&w.t()?)?
            .add(&xg.matmul(&w2.t()?)?)?]))?
        .0,
        2,
        "two products added"
    );
    Ok(())
}

/// A result larger than the device can bind is an error from the op that asks for it, as
/// without fusion, not from the later read that would have computed it.
#[test]
fn a_result_too_large_to_bind_fails_at_its_op() -> Result<()> {
    let _serial = serial();
    let Some((dev, g)) = gpu() else {
        return Ok(());
    };
    let n = (g.max_storage_binding() / 4 + 1) as usize;
    let x = Tensor::ones_on([1], &dev)?.expand([n])?;
    let e = (&x * 2.0).check().unwrap_err();
    assert!(
        matches!(e.root(), wgrad::Error::BufferTooLarge { .. }),
        "{e}"
    );
    let e = x.exp().unwrap_err();
    assert!(
        matches!(e.root(), wgrad::Error::BufferTooLarge { .. }),
        "{e}"
    );
    Ok(())
}

/// BatchNorm's running statistics are one fused program in training, with the values of
/// the six ops it stands for, to the bit, on every device; on a GPU that is fewer
/// dispatches per forward pass.
#[test]
fn batch_norm_running_statistics_are_fused_with_the_ops_values() -> Result<()> {
    use wgrad::nn::{self, Forward, Module};
    let _serial = serial();
    for dev in common::devices() {
        let run = || -> Result<(Vec<Vec<u32>>, u64)> {
            let mut bn = nn::BatchNorm2d::new(5, &dev)?;
            bn.momentum = 0.3;
            let before = match &dev {
                Device::Gpu(g) => {
                    dev.synchronize()?;
                    g.stats().dispatches
                }
                Device::Cpu => 0,
            };
            for seed in 0..3 {
                // Halves in [-2, 2] over 16 elements a channel: every sum and quotient of
                // the batch statistics is exact, so the fused batch-norm kernel and the
                // composite ops (without fusion) give them to the bit, and the running
                // statistics compare the fused update with the ops alone.
                let x = wgrad::seeded(seed, || Tensor::randint_on(-4, 5, [4, 5, 2, 2], &dev))?;
                bn.forward(&(x.to_dtype(wgrad::DType::F32)? * 0.5))?;
            }
            dev.flush();
            let dispatches = match &dev {
                Device::Gpu(g) => g.stats().dispatches - before,
                Device::Cpu => 0,
            };
            let bits = bn
                .named_buffers()
                .iter()
                .filter(|(_, t)| t.dtype() == wgrad::DType::F32)
                .map(|(_, t)| Ok(floats_of(t)?.iter().map(|v| v.to_bits()).collect()))
                .collect::<Result<_>>()?;
            Ok((bits, dispatches))
        };
        let (fused, fused_dispatches) = run()?;
        let (ops, ops_dispatches) = wgrad::without_fusion(run)?;
        assert_eq!(fused, ops, "{dev}: running statistics differ from the ops'");
        if !dev.is_cpu() && fusion_on() {
            assert!(
                fused_dispatches + 3 * 4 <= ops_dispatches,
                "{dev}: {fused_dispatches} dispatches fused, {ops_dispatches} unfused"
            );
        }
    }
    Ok(())
}
