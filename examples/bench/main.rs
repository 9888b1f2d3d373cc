//! Micro-benchmarks with stable names, one JSON object per line with `--json`:
//! `{"name": "matmul_f32_2048", "value": 312.5, "unit": "GFLOP/s"}`.
//!
//! cargo run --release --example bench -- --device cpu --json [--quick] [--only SECTION]
//!
//! Each figure is the median of several timed repetitions after a warm-up.

mod engine;
#[path = "../chargpt/model.rs"]
mod model;
mod parallel;
mod steps;

use std::time::Instant;
use wgrad::{DType, Device, Result, Tensor};

struct Bench {
    json: bool,
    quick: bool,
    /// `--only SECTION`: run one section (matmul, elementwise, tiny, mlp, steps, engine,
    /// parallel)
    /// or one step by name (`--only lstm_step_ms`).
    only: Option<String>,
}

impl Bench {
    fn wants(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|s| s == section)
    }

    /// Whether `--only` selects this step of the `steps` section (the section, or the name).
    fn wants_step(&self, name: &str) -> bool {
        self.wants("steps") || self.only.as_deref() == Some(name)
    }

    fn report(&self, name: &str, value: f64, unit: &str) {
        if self.json {
            println!("{{\"name\": \"{name}\", \"value\": {value:.4}, \"unit\": \"{unit}\"}}");
        } else {
            println!("{name:<28} {value:>12.3} {unit}");
        }
    }

    /// Report the median GB/s of `f`, which moves `gigabytes` per call (9 runs).
    fn bandwidth(&self, name: &str, gigabytes: f64, f: impl FnMut() -> Result<()>) -> Result<()> {
        let t = self.time(9, 1, f)?;
        self.report(name, gigabytes / t, "GB/s");
        Ok(())
    }

    /// Median seconds of one call of `f`, run in batches of `inner` calls.
    fn time(&self, reps: usize, inner: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
        let reps = if self.quick { reps.min(3) } else { reps };
        f()?;
        let mut samples = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            for _ in 0..inner {
                f()?;
            }
            samples.push(t.elapsed().as_secs_f64() / inner as f64);
        }
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Ok(samples[samples.len() / 2])
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let device = match args
        .iter()
        .position(|a| a == "--device")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        Some("gpu") => Device::gpu()?,
        Some("auto") | None => Device::auto()?,
        Some(_) => Device::Cpu,
    };
    let b = Bench {
        json: args.iter().any(|a| a == "--json"),
        quick: args.iter().any(|a| a == "--quick"),
        only: args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .cloned(),
    };
    if !b.json {
        println!(
            "device: {device}, threads: {}",
            rayon::current_num_threads()
        );
    }
    let on = |t: Tensor| t.to_device(&device);

    // Full sizes on a hardware GPU; the CPU's sizes on the CPU and on software adapters
    // (lavapipe binds at most 128 MiB and multiplies matrices at about 1 GFLOP/s).
    let gpu = matches!(&device, Device::Gpu(g) if !g.is_software());
    // Held until the synchronization, a result is computed there: a GPU computes elementwise
    // results and products when they are needed (`storage/lazy.rs`), and never one dropped
    // first.
    let sync = || device.synchronize();
    // The GPU sizes of the reference table; smaller ones on the 2-core CPU.
    let matmul_sizes: &[usize] = if gpu {
        &[1024, 2048, 4096]
    } else {
        &[256, 512, 1024, 2048]
    };
    if b.wants("matmul") {
        for &n in matmul_sizes {
            let x = on(Tensor::randn([n, n])?)?;
            let y = on(Tensor::randn([n, n])?)?;
            let reps = if n >= 2048 { 5 } else { 10 };
            let t = b.time(reps, 1, || {
                let _product = x.matmul(&y)?;
                sync()
            })?;
            b.report(
                &format!("matmul_f32_{n}"),
                2.0 * (n * n * n) as f64 / t / 1e9,
                "GFLOP/s",
            );
        }

        // A linear layer's product, `x @ w.T`: the right operand is a transposed view.
        let n = if gpu { 4096 } else { 1024 };
        let x = on(Tensor::randn([n, n])?)?;
        let w = on(Tensor::randn([n, n])?)?;
        let t = b.time(5, 1, || {
            let _product = x.matmul(&w.t()?)?;
            sync()
        })?;
        b.report(
            &format!("matmul_f32_{n}_transposed_rhs"),
            2.0 * (n * n * n) as f64 / t / 1e9,
            "GFLOP/s",
        );

        // F16 operands, f32 accumulation, one rounding: on tensor cores where the GPU has
        // them (`GpuDevice::uses_tensor_cores`), else the tiled kernel or the CPU's f32 gemm.
        let n = *matmul_sizes.last().unwrap_or(&1024);
        let x = on(Tensor::randn([n, n])?.half()?)?;
        let y = on(Tensor::randn([n, n])?.half()?)?;
        if let Device::Gpu(g) = &device {
            if !b.json {
                println!("F16 matmul on tensor cores: {}", g.uses_tensor_cores());
            }
        }
        let t = b.time(5, 1, || {
            let _product = x.matmul(&y)?;
            sync()
        })?;
        b.report(
            &format!("matmul_f16_{n}"),
            2.0 * (n * n * n) as f64 / t / 1e9,
            "GFLOP/s",
        );
    }

    if b.wants("elementwise") {
        let (n, tag, side) = if gpu {
            (64usize << 20, "64M", 8192usize)
        } else {
            (16usize << 20, "16M", 4096usize)
        };
        let x = on(Tensor::randn([n])?)?;
        let y = on(Tensor::randn([n])?)?;
        let col = on(Tensor::randn([side, 1])?)?;
        let grid = on(Tensor::randn([side, n / side])?)?;
        // Bytes moved per run: two reads and a write for the adds, one read and a write for
        // the broadcast add, one read for the sums.
        let gb = |elements_moved: usize| (elements_moved * 4) as f64 / 1e9;
        b.bandwidth(&format!("add_f32_{tag}"), gb(3 * n), || {
            let _sum = (&x + &y).check()?;
            sync()
        })?;
        b.bandwidth(&format!("add_inplace_f32_{tag}"), gb(3 * n), || {
            x.add_(&y)?;
            sync()
        })?;
        b.bandwidth(&format!("broadcast_add_f32_{tag}"), gb(2 * n), || {
            let _sum = (&grid + &col).check()?;
            sync()
        })?;
        b.bandwidth(&format!("sum_f32_{tag}"), gb(n), || {
            x.sum()?;
            sync()
        })?;
        b.bandwidth(&format!("sum_rows_f32_{side}x{}", n / side), gb(n), || {
            grid.sum_dims([1], false)?;
            sync()
        })?;
    }

    if b.wants("tiny") {
        let a = on(Tensor::randn([10])?)?;
        let c = on(Tensor::randn([10])?)?;
        // A tiny op's cost, including its share of submission: ops are batched on a GPU.
        let t = b.time(15, 2000, || (&a + &c).check().map(drop))?;
        sync()?;
        b.report("tiny_op", t * 1e6, "us");
        // The calling thread's CPU time per tiny op (Linux): on a GPU, the host's share of an
        // op without the device's, which a software adapter running on the same cores blurs.
        if thread_cpu_ns().is_some() {
            let ops = 2000;
            let mut samples = Vec::new();
            for _ in 0..7 {
                let start = thread_cpu_ns().unwrap_or(0);
                for _ in 0..ops {
                    drop(&a + &c);
                }
                let end = thread_cpu_ns().unwrap_or(start);
                samples.push((end - start) as f64 / ops as f64 / 1e3);
                sync()?;
            }
            samples.sort_by(|x, y| x.total_cmp(y));
            // Some kernels keep the file but never advance it (seen on a VM): no figure then.
            let median = samples[samples.len() / 2];
            if median > 0.0 {
                b.report("tiny_op_thread_cpu", median, "us");
            }
        }

        let w = on(Tensor::randn([10])?)?.requires_grad_(true)?;
        let t = b.time(15, 1000, || {
            let _g = wgrad::no_grad();
            w.mul(&w)?.sum().map(drop)
        })?;
        b.report("tiny_forward", t * 1e6, "us");
        let t = b.time(15, 1000, || {
            w.mul(&w)?.sum()?.backward()?;
            w.zero_grad();
            Ok(())
        })?;
        sync()?;
        b.report("tiny_forward_backward", t * 1e6, "us");
    }

    if b.wants("mlp") {
        // One epoch of an MLP 784-256-10 (ReLU, cross-entropy, SGD lr 0.1, batch 256) on 60,000
        // synthetic samples, in f32 and with the model and data in bf16 (half the bytes).
        let mut g = wgrad::Generator::new(0);
        // A software adapter binds at most 128 MiB (60,000 x 784 f32 is 188 MB) and is slow:
        // a tenth of the samples there, the time scaled to the full epoch.
        let software = matches!(&device, Device::Gpu(g) if g.is_software());
        let n = if b.quick || software { 6_000 } else { 60_000 };
        let xs = on(Tensor::randn_with([n, 784], &mut g)?)?;
        let ys = on(Tensor::randint_with(0, 10, [n], &mut g)?)?;
        for (dtype, name) in [(DType::F32, "mlp"), (DType::BF16, "mlp_bf16")] {
            let t = mlp_epoch(&b, &device, &xs.to_dtype(dtype)?, &ys, dtype, &sync)?;
            b.report(&format!("{name}_epoch_s"), t * 60_000.0 / n as f64, "s");
            b.report(&format!("{name}_samples_per_s"), n as f64 / t, "samples/s");
        }
    }

    if b.wants("steps") || b.only.as_deref().is_some_and(|s| s.ends_with("_step_ms")) {
        steps::run(&b, &device)?;
    }

    if b.wants("engine") {
        engine::run(&b, &device)?;
    }

    if b.wants("parallel") {
        parallel::run(&b, &device)?;
    }

    Ok(())
}

/// CPU time of the calling thread in nanoseconds, where Linux reports it.
/// The median time of one epoch of the MLP over `xs` (already in `dtype`) and labels `ys`.
fn mlp_epoch(
    b: &Bench,
    device: &Device,
    xs: &Tensor,
    ys: &Tensor,
    dtype: DType,
    sync: &dyn Fn() -> Result<()>,
) -> Result<f64> {
    use wgrad::nn::{Forward, Module};
    use wgrad::optim::Optimizer;
    let n = xs.shape()[0];
    let mut model = wgrad::nn::Sequential::new()
        .add(wgrad::nn::Linear::new(784, 256, device)?)
        .add(wgrad::nn::ReLU)
        .add(wgrad::nn::Linear::new(256, 10, device)?);
    model.to_dtype(dtype)?;
    let mut opt = wgrad::optim::Sgd::new(model.parameters(), 0.1);
    b.time(3, 1, || {
        for start in (0..n).step_by(256) {
            let len = 256.min(n - start);
            let (x, y) = (xs.narrow(0, start, len)?, ys.narrow(0, start, len)?);
            opt.zero_grad();
            wgrad::nn::cross_entropy(&model.forward(&x)?, &y)?.backward()?;
            opt.step()?;
        }
        sync()
    })
}

fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}
