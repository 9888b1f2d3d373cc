//! Softmax and log-softmax along the rows of a contiguous f32 tensor, forward and backward,
//! one pass per step over each row (its maximum, the exponentials and their sum, the
//! result) instead of the five composed ops forward and eight backward, each a pass over
//! the whole tensor with its own buffer. The tensor side is `tensor/fused/softmax.rs`.
//!
//! Special values follow the composite (and PyTorch): a NaN in a row makes the row NaN; a
//! row with `+inf` softmaxes to NaN; log-softmax shifts by the row's maximum only where it
//! is finite, so `log_softmax([inf, 1])` is `[NaN, -inf]`.

use crate::op::math::exp;
use rayon::prelude::*;

const LANES: usize = 16;

/// The larger of `a` and `x`, NaN if either is.
#[inline(always)]
fn max_nan(a: f32, x: f32) -> f32 {
    if a.is_nan() || !(x > a || x.is_nan()) {
        a
    } else {
        x
    }
}

/// The row's maximum, NaN if the row has one.
#[inline(always)]
pub(super) fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut it = row.chunks_exact(LANES);
    for c in &mut it {
        for k in 0..LANES {
            lanes[k] = max_nan(lanes[k], c[k]);
        }
    }
    lanes
        .iter()
        .chain(it.remainder())
        .fold(f32::NEG_INFINITY, |m, &x| max_nan(m, x))
}

/// `f(out row, row, ...)` over the rows of length `n`, in parallel when large.
fn rows(
    n: usize,
    out: &mut [f32],
    ins: [&[f32]; 2],
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) {
    let run = |(i, o): (usize, &mut [f32])| {
        let [a, b] = ins.map(|v| &v[i * n..(i + 1) * n]);
        super::simd::vectorized(
            #[inline(always)]
            || f(o, a, b),
        )
    };
    if out.len() >= super::PARALLEL_THRESHOLD {
        let per = (super::PARALLEL_THRESHOLD / n).max(1);
        out.par_chunks_mut(n)
            .enumerate()
            .with_min_len(per)
            .for_each(run);
    } else {
        out.chunks_mut(n).enumerate().for_each(run);
    }
}

/// Softmax (`log` false) or log-softmax along rows of `n` elements.
pub fn forward(x: &[f32], n: usize, log: bool) -> Vec<f32> {
    let mut y = super::pool::take::<f32>(x.len());
    if n == 0 || x.is_empty() {
        return y;
    }
    rows(n, &mut y, [x, x], |y, x, _| {
        let m = row_max(x);
        if log {
            // Shift by a finite maximum only (an infinite one gives the composite's NaN
            // and -inf rather than NaN everywhere).
            let shift = if m.is_infinite() { 0.0 } else { m };
            for (d, &v) in y.iter_mut().zip(x) {
                *d = exp(v - shift);
            }
            let lse = (super::lanes::sum(y).ln() as f32) + shift;
            for (d, &v) in y.iter_mut().zip(x) {
                *d = v - lse;
            }
        } else {
            for (d, &v) in y.iter_mut().zip(x) {
                *d = exp(v - m);
            }
            let inv = (1.0 / super::lanes::sum(y)) as f32;
            for d in y.iter_mut() {
                *d *= inv;
            }
        }
    });
    y
}

/// The input's gradient from the output `y` and its gradient `g`: softmax
/// `y (g - sum(g y))`, log-softmax `g - e^y sum(g)`.
pub fn backward(y: &[f32], g: &[f32], n: usize, log: bool) -> Vec<f32> {
    let mut dx = super::pool::take::<f32>(y.len());
    if n == 0 || y.is_empty() {
        return dx;
    }
    rows(n, &mut dx, [y, g], |dx, y, g| {
        if log {
            let total = super::lanes::sum(g) as f32;
            for ((d, &yv), &gv) in dx.iter_mut().zip(y).zip(g) {
                *d = gv - exp(yv) * total;
            }
        } else {
            let dot = super::lanes::sum_of(g, y, |a, b| a * b) as f32;
            for ((d, &yv), &gv) in dx.iter_mut().zip(y).zip(g) {
                *d = yv * (gv - dot);
            }
        }
    });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows against f64 definitions, forward and backward (the backward also against
    /// central differences of `<g, y(x)>`), with rows longer than the lanes and shorter.
    #[test]
    fn rows_match_the_definitions_in_f64() {
        for n in [1usize, 5, 16, 37] {
            let rows = 3;
            let x: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 7919) % 23) as f32 / 3.0 - 3.0)
                .collect();
            let g: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 31) % 11) as f32 / 5.0 - 1.0)
                .collect();
            for log in [false, true] {
                let reference = |x: &[f64]| -> Vec<f64> {
                    x.chunks(n)
                        .flat_map(|r| {
                            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                            let s: f64 = r.iter().map(|v| (v - m).exp()).sum();
                            r.iter()
                                .map(move |v| {
                                    if log {
                                        v - m - s.ln()
                                    } else {
                                        (v - m).exp() / s
                                    }
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect()
                };
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let y = forward(&x, n, log);
                for (a, b) in y.iter().zip(reference(&x64)) {
                    assert!((*a as f64 - b).abs() < 1e-5, "n {n} log {log}: {a} vs {b}");
                }
                let dx = backward(&y, &g, n, log);
                let objective = |x: &[f64]| -> f64 {
                    reference(x)
                        .iter()
                        .zip(&g)
                        .map(|(a, &b)| a * b as f64)
                        .sum()
                };
                crate::cpu::assert_gradient(objective, &x64, &dx, &format!("n {n} log {log}"));
            }
        }
    }

    /// NaN and infinities as the composite and PyTorch give them.
    #[test]
    fn special_values_follow_pytorch() {
        let inf = f32::INFINITY;
        let y = forward(&[inf, 1.0], 2, false);
        assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
        let y = forward(&[inf, 1.0], 2, true);
        assert!(y[0].is_nan() && y[1] == -inf, "{y:?}");
        let y = forward(&[1.0, f32::NAN, 3.0], 3, false);
        assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
        let y = forward(&[-inf, -inf], 2, true);
        assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
        let y = forward(&[-inf, 0.0], 2, false);
        assert_eq!(y, vec![0.0, 1.0]);
    }
}
