//! Batch normalisation in training mode over contiguous f32 `[n, c, s]` (`s` the spatial
//! positions, 1 for `[n, c]`): each channel's mean and biased variance over its `n * s`
//! elements, the normalised and affinely transformed output in one pass; backward, the
//! two per-channel sums the gradient needs, then one pass for the input's gradient. In
//! place of some ten composed elementwise ops and reductions forward and twenty backward,
//! each a pass over the whole activation. The tensor side is `tensor/fused/norm.rs`.

use rayon::prelude::*;

/// The sizes of a batch normalisation: `n` samples, `c` channels, `s` positions each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormGeometry {
    pub n: usize,
    pub c: usize,
    pub s: usize,
}

impl NormGeometry {
    /// Elements per channel.
    fn count(&self) -> usize {
        self.n * self.s
    }
}

/// `sum f(a[k], b[k])` in vector lanes (`cpu/lanes.rs`) at the CPU's full width.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    super::simd::vectorized(
        #[inline(always)]
        || super::lanes::sum_of(a, b, f),
    )
}

/// Per channel, `sum over its runs of g(a run, b run)` (runs of `s` elements, one per
/// sample), channels in parallel.
fn channel_sums(
    geo: &NormGeometry,
    a: &[f32],
    b: &[f32],
    g: impl Fn(usize, &[f32], &[f32]) -> f64 + Sync,
) -> Vec<f64> {
    let (c, s) = (geo.c, geo.s);
    let per_channel = |ch: usize| -> f64 {
        (0..geo.n)
            .map(|i| {
                let at = (i * c + ch) * s;
                g(ch, &a[at..at + s], &b[at..at + s])
            })
            .sum()
    };
    if a.len() >= super::PARALLEL_THRESHOLD {
        (0..c).into_par_iter().map(per_channel).collect()
    } else {
        (0..c).map(per_channel).collect()
    }
}

/// `f(channel, run)` over every `[s]` run of `dst`, samples in parallel.
fn for_each_run(geo: &NormGeometry, dst: &mut [f32], f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    let (c, s) = (geo.c, geo.s);
    let image = |(i, img): (usize, &mut [f32])| {
        for (ch, run) in img.chunks_exact_mut(s).enumerate() {
            f(i, ch, run);
        }
    };
    if dst.len() >= super::PARALLEL_THRESHOLD {
        dst.par_chunks_mut(c * s).enumerate().for_each(image);
    } else {
        dst.chunks_mut(c * s).enumerate().for_each(image);
    }
}

/// The normalised `x` times `weight` plus `bias`, with each channel's mean, biased
/// variance and `1 / sqrt(var + eps)`: `(y, [mean; var; rstd])` (the statistics `[3, c]`).
pub fn batch_norm_forward(
    geo: &NormGeometry,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let count = geo.count() as f64;
    let mean: Vec<f64> = channel_sums(geo, x, x, |_, a, _| lane_sum(a, a, |v, _| v))
        .into_iter()
        .map(|t| t / count)
        .collect();
    let var: Vec<f64> = channel_sums(geo, x, x, |ch, a, _| {
        let m = mean[ch] as f32;
        lane_sum(a, a, |v, _| (v - m) * (v - m))
    })
    .into_iter()
    .map(|t| t / count)
    .collect();
    let rstd: Vec<f64> = var.iter().map(|&v| 1.0 / (v + eps).sqrt()).collect();
    // y = x * scale + shift, per channel.
    let scale: Vec<f32> = (0..geo.c)
        .map(|ch| (rstd[ch] * weight[ch] as f64) as f32)
        .collect();
    let shift: Vec<f32> = (0..geo.c)
        .map(|ch| (bias[ch] as f64 - mean[ch] * rstd[ch] * weight[ch] as f64) as f32)
        .collect();
    let mut y = super::pool::take::<f32>(x.len());
    let s = geo.s;
    for_each_run(geo, &mut y, |i, ch, run| {
        let src = &x[(i * geo.c + ch) * s..][..s];
        let (a, b) = (scale[ch], shift[ch]);
        super::simd::vectorized(
            #[inline(always)]
            || {
                for (d, &v) in run.iter_mut().zip(src) {
                    *d = v * a + b;
                }
            },
        )
    });
    let stats = mean
        .iter()
        .chain(&var)
        .chain(&rstd)
        .map(|&v| v as f32)
        .collect();
    (y, stats)
}

/// The gradients of `x`, `weight` and `bias` from `dy`, given the forward pass's
/// statistics (`[3, c]`), each computed only where `need` asks for it:
/// `dx = w rstd (dy - mean(dy) - xhat mean(dy xhat))` with `xhat = (x - mean) rstd`.
pub fn batch_norm_backward(
    geo: &NormGeometry,
    x: &[f32],
    weight: &[f32],
    stats: &[f32],
    dy: &[f32],
    need: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    let c = geo.c;
    let (mean, rstd) = (&stats[..c], &stats[2 * c..3 * c]);
    let dbias = channel_sums(geo, dy, dy, |_, g, _| lane_sum(g, g, |v, _| v));
    // sum dy xhat = rstd sum dy (x - mean)
    let dweight: Vec<f64> = channel_sums(geo, dy, x, |ch, g, a| {
        let m = mean[ch];
        lane_sum(g, a, |gv, xv| gv * (xv - m))
    })
    .into_iter()
    .zip(rstd)
    .map(|(t, &r)| t * r as f64)
    .collect();
    let dx = need[0].then(|| {
        let count = geo.count() as f64;
        let mut dx = super::pool::take::<f32>(x.len());
        let s = geo.s;
        for_each_run(geo, &mut dx, |i, ch, run| {
            let at = (i * c + ch) * s;
            let (g, a) = (&dy[at..at + s], &x[at..at + s]);
            let (m, r) = (mean[ch], rstd[ch]);
            let k = weight[ch] * r;
            let g_mean = (dbias[ch] / count) as f32;
            // xhat mean(dy xhat) = (x - m) r * dweight / count
            let x_coef = (dweight[ch] / count) as f32 * r;
            super::simd::vectorized(
                #[inline(always)]
                || {
                    for ((d, &gv), &xv) in run.iter_mut().zip(g).zip(a) {
                        *d = k * (gv - g_mean - (xv - m) * x_coef);
                    }
                },
            )
        });
        dx
    });
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|t| t as f32).collect();
    [
        dx,
        need[1].then(|| to_f32(dweight)),
        need[2].then(|| to_f32(dbias)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_values as values;

    /// The normalisation and its gradient by their formulas, in f64, with the gradient
    /// checked against central differences of `<dy, y(x)>`.
    #[test]
    fn matches_the_formulas_in_f64() {
        for geo in [
            NormGeometry { n: 3, c: 4, s: 5 },
            NormGeometry { n: 7, c: 3, s: 1 },
            NormGeometry { n: 4, c: 2, s: 700 },
        ] {
            let x = values(geo.n * geo.c * geo.s, 1);
            // Weights kept away from zero: the check of dw divides by them.
            let w: Vec<f32> = values(geo.c, 2).iter().map(|v| v + 2.0).collect();
            let b = values(geo.c, 3);
            let eps = 1e-5;
            let (y, stats) = batch_norm_forward(&geo, &x, &w, &b, eps);
            let at = |i: usize, ch: usize, k: usize| (i * geo.c + ch) * geo.s + k;
            let reference = |x: &[f64]| -> Vec<f64> {
                let mut y = vec![0.0; x.len()];
                for ch in 0..geo.c {
                    let idx: Vec<usize> = (0..geo.n)
                        .flat_map(|i| (0..geo.s).map(move |k| at(i, ch, k)))
                        .collect();
                    let m = idx.iter().map(|&j| x[j]).sum::<f64>() / idx.len() as f64;
                    let v = idx.iter().map(|&j| (x[j] - m).powi(2)).sum::<f64>() / idx.len() as f64;
                    for &j in &idx {
                        y[j] = (x[j] - m) / (v + eps).sqrt() * w[ch] as f64 + b[ch] as f64;
                    }
                }
                y
            };
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            for (k, (&got, want)) in y.iter().zip(reference(&x64)).enumerate() {
                assert!(
                    (got as f64 - want).abs() < 1e-4,
                    "{geo:?} y[{k}]: {got} vs {want}"
                );
            }
            assert_eq!(stats.len(), 3 * geo.c);
            let dy = values(x.len(), 4);
            let [dx, dw, db] = batch_norm_backward(&geo, &x, &w, &stats, &dy, [true; 3]);
            let dx = dx.unwrap_or_default();
            let objective = |x: &[f64]| {
                reference(x)
                    .iter()
                    .zip(&dy)
                    .map(|(&a, &g)| a * g as f64)
                    .sum::<f64>()
            };
            for j in (0..x.len()).step_by(x.len() / 7 + 1) {
                let h = 1e-4;
                let (mut up, mut down) = (x64.clone(), x64.clone());
                up[j] += h;
                down[j] -= h;
                let numeric = (objective(&up) - objective(&down)) / (2.0 * h);
                assert!(
                    (dx[j] as f64 - numeric).abs() < 1e-3 * (1.0 + numeric.abs()),
                    "{geo:?} dx[{j}]: {} vs {numeric}",
                    dx[j]
                );
            }
            let (dw, db) = (dw.unwrap_or_default(), db.unwrap_or_default());
            for ch in 0..geo.c {
                let idx: Vec<usize> = (0..geo.n)
                    .flat_map(|i| (0..geo.s).map(move |k| at(i, ch, k)))
                    .collect();
                let want_b: f64 = idx.iter().map(|&j| dy[j] as f64).sum();
                let shifted = reference(&x64);
                // dy * xhat = dy * (y - b) / w
                let want_w: f64 = idx
                    .iter()
                    .map(|&j| dy[j] as f64 * (shifted[j] - b[ch] as f64) / w[ch] as f64)
                    .sum();
                assert!((db[ch] as f64 - want_b).abs() < 1e-3, "{geo:?} db[{ch}]");
                assert!(
                    (dw[ch] as f64 - want_w).abs() < 1e-3 * (1.0 + want_w.abs()),
                    "{geo:?} dw[{ch}]: {} vs {want_w}",
                    dw[ch]
                );
            }
        }
    }
}
