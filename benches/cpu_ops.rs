//! Criterion benchmarks: `cargo bench`. The CPU backend always; the GPU backend too when a
//! hardware adapter is found (software adapters such as lavapipe are skipped). The same measurements, as JSON
//! lines with stable names, come from `cargo run --release --example bench -- --json`, and
//! `python3 benches/compare.py` sets them beside NumPy's in the same run.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgrad::Tensor;

fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul_f32");
    for n in [256usize, 1024] {
        let a = Tensor::randn([n, n]).unwrap();
        let b = Tensor::randn([n, n]).unwrap();
        g.throughput(Throughput::Elements((2 * n * n * n) as u64));
        g.bench_function(format!("{n}"), |bench| bench.iter(|| a.matmul(&b).unwrap()));
    }
    g.finish();
}

fn elementwise_and_reduce(c: &mut Criterion) {
    let n = 16usize << 20;
    let x = Tensor::randn([n]).unwrap();
    let y = Tensor::randn([n]).unwrap();
    let mut g = c.benchmark_group("memory_bound_16M");
    g.sample_size(20);
    g.throughput(Throughput::Bytes((12 * n) as u64));
    g.bench_function("add_f32", |b| b.iter(|| (&x + &y).check().unwrap()));
    g.bench_function("add_inplace_f32", |b| {
        b.iter(|| x.add_(&y).map(drop).unwrap())
    });
    g.throughput(Throughput::Bytes((4 * n) as u64));
    g.bench_function("sum_f32", |b| b.iter(|| x.sum().unwrap()));
    g.finish();
}

fn overhead(c: &mut Criterion) {
    let a = Tensor::randn([10]).unwrap();
    let b = Tensor::randn([10]).unwrap();
    c.bench_function("tiny_op", |bench| bench.iter(|| (&a + &b).check().unwrap()));
    let w = Tensor::randn([10]).unwrap().requires_grad_(true).unwrap();
    c.bench_function("tiny_forward_backward", |bench| {
        bench.iter(|| {
            w.mul(&w).unwrap().sum().unwrap().backward().unwrap();
            w.zero_grad();
        })
    });
}

/// The same measurements on a hardware GPU, waiting for the device after each iteration.
fn gpu(c: &mut Criterion) {
    let dev = match wgrad::Device::gpu() {
        Ok(d @ wgrad::Device::Gpu(_)) if matches!(&d, wgrad::Device::Gpu(g) if !g.is_software()) => {
            d
        }
        _ => {
            eprintln!("no hardware GPU: GPU benchmarks skipped");
            return;
        }
    };
    let on = |t: Tensor| t.to_device(&dev).unwrap();
    let mut g = c.benchmark_group("gpu");
    for n in [1024usize, 4096] {
        let (a, b) = (
            on(Tensor::randn([n, n]).unwrap()),
            on(Tensor::randn([n, n]).unwrap()),
        );
        g.throughput(Throughput::Elements((2 * n * n * n) as u64));
        g.bench_function(format!("matmul_f32_{n}"), |bench| {
            bench.iter(|| {
                // Held until the synchronization, which computes it (a GPU computes a
                // product when it is needed).
                let _product = a.matmul(&b).unwrap();
                dev.synchronize().unwrap()
            })
        });
    }
    let n = 64usize << 20;
    let (x, y) = (
        on(Tensor::randn([n]).unwrap()),
        on(Tensor::randn([n]).unwrap()),
    );
    g.throughput(Throughput::Bytes((12 * n) as u64));
    g.bench_function("add_f32_64M", |bench| {
        bench.iter(|| {
            let _sum = (&x + &y).check().unwrap();
            dev.synchronize().unwrap()
        })
    });
    g.throughput(Throughput::Bytes((4 * n) as u64));
    g.bench_function("sum_f32_64M", |bench| {
        bench.iter(|| {
            x.sum().unwrap();
            dev.synchronize().unwrap()
        })
    });
    let (a, b) = (
        on(Tensor::randn([10]).unwrap()),
        on(Tensor::randn([10]).unwrap()),
    );
    g.throughput(Throughput::Elements(1));
    g.bench_function("tiny_op", |bench| {
        bench.iter(|| {
            (&a + &b).check().unwrap();
            dev.synchronize().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, matmul, elementwise_and_reduce, overhead, gpu);
criterion_main!(benches);
