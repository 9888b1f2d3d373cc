//! The course's lesson on the two modes of automatic differentiation, measured.
//!
//! For f: R^n -> R, reverse mode gets the whole gradient in one backward pass, forward mode
//! needs one pass per input direction (n). For g: R -> R^n it is the other way round: one
//! forward pass gives every derivative, reverse mode needs one backward pass per output.
//! Reverse mode also keeps every intermediate for its backward pass, forward mode none.
//! This prints the time and the peak memory of each as n grows, checks that both modes
//! agree, and compares them with central differences,
//! f'(x) ~ (f(x + h) - f(x - h)) / 2h (the notes print the numerator as
//! f(x+Δx) - f(x+Δx); the minus sign belongs to the second term).
//!
//! `cargo run --release --example autodiff_modes` (the CPU: memory is counted there).

use std::time::Instant;
use wgrad::{func, Device, Result, Tensor};

/// Layers of the elementwise map y -> 0.9 sin(y) + 0.2 y: a computation whose every
/// intermediate reverse mode must keep for its backward pass.
const DEPTH: usize = 24;

fn layers(mut y: Tensor) -> Result<Tensor> {
    for _ in 0..DEPTH {
        y = y.sin()? * 0.9 + &y * 0.2;
    }
    Ok(y)
}

/// f(x) = sum(layers(x) * x) + sum(x)^2 / n: every output depends on every input.
fn f(x: &[Tensor]) -> Result<Tensor> {
    let x = &x[0];
    let n = x.numel() as f64;
    Ok((layers(x.clone())? * x).sum()? + x.sum()?.square()? / n)
}

/// g(t) = layers(t * a), with a = 1/n, 2/n, ..., 1.
fn g(t: &[Tensor], a: &Tensor) -> Result<Tensor> {
    layers(a * &t[0])
}

/// Run `work`, returning its result, milliseconds and peak bytes above the bytes live before.
fn measure(work: impl FnOnce() -> Result<Tensor>) -> Result<(Tensor, f64, u64)> {
    let dev = Device::Cpu;
    dev.empty_cache();
    dev.reset_peak_memory_stats();
    let before = dev.memory_stats().live_bytes;
    let start = Instant::now();
    let out = work()?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    Ok((
        out,
        ms,
        dev.memory_stats().peak_bytes.saturating_sub(before),
    ))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    (a - b).abs()?.max()?.item::<f64>()
}

/// Central differences of `h` at `x`, one coordinate at a time: a column per input element.
fn central(h: impl Fn(&Tensor) -> Result<Tensor>, x: &Tensor, step: f64) -> Result<Tensor> {
    let mut cols = Vec::new();
    for i in 0..x.numel() {
        let e = Tensor::zeros([x.numel()])?;
        e.i(wgrad::s![i])?.fill_(step)?;
        let e = e.reshape(x.shape())?;
        let d = (h(&(x + &e))? - h(&(x - &e))?) / (2.0 * step);
        cols.push(d.reshape([-1isize])?);
    }
    Tensor::stack(&cols.iter().collect::<Vec<_>>(), -1)?
        .reshape([h(x)?.shape(), x.shape()].concat())
}

fn main() -> Result<()> {
    wgrad::manual_seed(0);
    println!("f: R^n -> R (a gradient)                 |  g: R -> R^n (a tangent)");
    println!(
        "{:>5} | {:>15} {:>15} | {:>15} {:>15} | {:>9} {:>9}",
        "n", "reverse (1)", "forward (n)", "forward (1)", "reverse (n)", "modes", "central"
    );
    println!(
        "{:>5} | {:>15} {:>15} | {:>15} {:>15} | {:>9} {:>9}",
        "", "ms / KiB", "ms / KiB", "ms / KiB", "ms / KiB", "max |d|", "max |d|"
    );
    for n in [16, 64, 256, 1024] {
        let x = Tensor::randn([n])?;
        let (rev, rev_ms, rev_mem) = measure(|| func::grad(f)(std::slice::from_ref(&x)))?;
        let (fwd, fwd_ms, fwd_mem) = measure(|| func::jacfwd(f)(std::slice::from_ref(&x)))?;

        let a = Tensor::arange(1.0, n as f64 + 1.0, 1.0)?.div_scalar(n as f64)?;
        let gt = |t: &[Tensor]| g(t, &a);
        let t = Tensor::new([0.7f32])?;
        let (gfwd, gfwd_ms, gfwd_mem) = measure(|| func::jacfwd(gt)(std::slice::from_ref(&t)))?;
        let (grev, grev_ms, grev_mem) = measure(|| func::jacrev(gt)(std::slice::from_ref(&t)))?;

        let modes = max_abs_diff(&rev, &fwd)?.max(max_abs_diff(&gfwd, &grev)?);
        let fc = central(|x| f(std::slice::from_ref(x)), &x, 1e-2)?;
        let gc = central(|t| g(std::slice::from_ref(t), &a), &t, 1e-2)?;
        let against = max_abs_diff(&rev, &fc)?.max(max_abs_diff(&gfwd, &gc)?);
        assert!(modes < 1e-3, "the modes disagree by {modes}");
        assert!(
            against < 5e-2,
            "the modes and central differences disagree by {against}"
        );
        let cell = |ms: f64, bytes: u64| format!("{ms:.2} / {:.0}", bytes as f64 / 1024.0);
        println!(
            "{n:>5} | {:>15} {:>15} | {:>15} {:>15} | {modes:>9.1e} {against:>9.1e}",
            cell(rev_ms, rev_mem),
            cell(fwd_ms, fwd_mem),
            cell(gfwd_ms, gfwd_mem),
            cell(grev_ms, grev_mem),
        );
    }
    println!("(central differences with h = 1e-2 in f32: their error is about h^2 |f'''| / 6)");
    Ok(())
}
