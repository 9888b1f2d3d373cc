//! Layer normalisation over the rows of a contiguous f32 tensor (each row the trailing
//! `normalized_shape`, `d` elements), with an optional elementwise weight and bias: per row
//! its mean and `1 / sqrt(var + eps)` and the normalised, transformed output in one pass;
//! backward, per row the two sums the input's gradient needs and the weight's and bias's
//! gradients summed over rows. In place of nine composed ops forward and some twenty
//! backward. The tensor side is `tensor/fused/layer_norm.rs`.

use rayon::prelude::*;

/// Rows per parallel task: at least a few thousand elements each.
fn rows_per_task(d: usize) -> usize {
    (super::PARALLEL_THRESHOLD / 4 / d.max(1)).max(1)
}

/// The normalised rows of `x` (`d` elements each) times `weight` plus `bias`, with each
/// row's mean and `1 / sqrt(var + eps)` (`[rows, 2]`).
pub fn forward(
    x: &[f32],
    d: usize,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / d.max(1);
    let mut y = super::pool::take::<f32>(x.len());
    let mut stats = vec![0f32; 2 * rows];
    if rows == 0 || d == 0 {
        return (y, stats);
    }
    let per = rows_per_task(d);
    let task = |(y, stats, x): (&mut [f32], &mut [f32], &[f32])| {
        super::simd::vectorized(
            #[inline(always)]
            || {
                for ((y, st), x) in y.chunks_mut(d).zip(stats.chunks_mut(2)).zip(x.chunks(d)) {
                    let mean = super::lanes::sum_of(x, x, |v, _| v) / d as f64;
                    let m = mean as f32;
                    let var = super::lanes::sum_of(x, x, |v, _| (v - m) * (v - m)) / d as f64;
                    let r = (1.0 / (var + eps).sqrt()) as f32;
                    st[0] = m;
                    st[1] = r;
                    for (o, &v) in y.iter_mut().zip(x) {
                        *o = (v - m) * r;
                    }
                    if let Some(w) = weight {
                        for (o, &wv) in y.iter_mut().zip(w) {
                            *o *= wv;
                        }
                    }
                    if let Some(b) = bias {
                        for (o, &bv) in y.iter_mut().zip(b) {
                            *o += bv;
                        }
                    }
                }
            },
        )
    };
    if x.len() >= super::PARALLEL_THRESHOLD {
        y.par_chunks_mut(per * d)
            .zip(stats.par_chunks_mut(per * 2))
            .zip(x.par_chunks(per * d))
            .for_each(|((y, s), x)| task((y, s, x)));
    } else {
        task((&mut y, &mut stats, x));
    }
    (y, stats)
}

/// The gradients of `x`, `weight` and `bias` from `dy`, given the forward pass's per-row
/// statistics, each where `need` asks for it:
/// `dx = rstd (g - mean(g) - xhat mean(g xhat))` with `g = dy * weight` and
/// `xhat = (x - mean) rstd`; `dweight = sum over rows of dy xhat`, `dbias = sum of dy`.
pub fn backward(
    x: &[f32],
    d: usize,
    weight: Option<&[f32]>,
    stats: &[f32],
    dy: &[f32],
    need: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    let rows = x.len() / d.max(1);
    let mut dx = super::pool::take::<f32>(if need[0] { x.len() } else { 0 });
    if rows == 0 || d == 0 {
        return [
            need[0].then_some(dx),
            need[1].then(|| vec![0.0; d]),
            need[2].then(|| vec![0.0; d]),
        ];
    }
    let per = rows_per_task(d);
    // One task: its rows' input gradients, and their shares of the weight's and bias's
    // gradients (f64 sums, `[dweight; dbias]`).
    let task = |(dx, x, dy, stats): (&mut [f32], &[f32], &[f32], &[f32])| -> Vec<f64> {
        super::simd::vectorized(
            #[inline(always)]
            || {
                let mut partial = vec![0f64; 2 * d];
                let mut g = vec![0f32; d];
                let mut xhat = vec![0f32; d];
                let rows = x.chunks(d).zip(dy.chunks(d)).zip(stats.chunks(2));
                for (i, ((x, dy), st)) in rows.enumerate() {
                    let (m, r) = (st[0], st[1]);
                    for (h, &v) in xhat.iter_mut().zip(x) {
                        *h = (v - m) * r;
                    }
                    if need[1] || need[2] {
                        let (pw, pb) = partial.split_at_mut(d);
                        for ((pw, pb), (&gv, &h)) in pw.iter_mut().zip(pb).zip(dy.iter().zip(&xhat))
                        {
                            *pw += (gv * h) as f64;
                            *pb += gv as f64;
                        }
                    }
                    if need[0] {
                        match weight {
                            Some(w) => {
                                for ((gg, &gv), &wv) in g.iter_mut().zip(dy).zip(w) {
                                    *gg = gv * wv;
                                }
                            }
                            None => g.copy_from_slice(dy),
                        }
                        let g_mean = (super::lanes::sum_of(&g, &g, |v, _| v) / d as f64) as f32;
                        let gx_mean =
                            (super::lanes::sum_of(&g, &xhat, |a, b| a * b) / d as f64) as f32;
                        let out = &mut dx[i * d..(i + 1) * d];
                        for ((o, &gv), &h) in out.iter_mut().zip(&g).zip(&xhat) {
                            *o = r * (gv - g_mean - h * gx_mean);
                        }
                    }
                }
                partial
            },
        )
    };
    let partials: Vec<Vec<f64>> = if x.len() >= super::PARALLEL_THRESHOLD {
        let dx_chunks: Vec<&mut [f32]> = if need[0] {
            dx.chunks_mut(per * d).collect()
        } else {
            (0..rows.div_ceil(per))
                .map(|_| <&mut [f32]>::default())
                .collect()
        };
        dx_chunks
            .into_par_iter()
            .zip(x.par_chunks(per * d))
            .zip(dy.par_chunks(per * d))
            .zip(stats.par_chunks(per * 2))
            .map(|(((dx, x), dy), st)| task((dx, x, dy, st)))
            .collect()
    } else {
        vec![task((&mut dx, x, dy, stats))]
    };
    let mut sums = vec![0f64; 2 * d];
    for p in &partials {
        for (s, v) in sums.iter_mut().zip(p) {
            *s += v;
        }
    }
    let (dw, db) = sums.split_at(d);
    let to_f32 = |v: &[f64]| v.iter().map(|&t| t as f32).collect::<Vec<f32>>();
    [
        need[0].then_some(dx),
        need[1].then(|| to_f32(dw)),
        need[2].then(|| to_f32(db)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_values as values;

    /// The normalisation by its formula in f64, and the gradients against central
    /// differences of `<dy, y(x, w, b)>`, with and without the affine parameters, rows
    /// shorter and longer than the lanes, serial and parallel sizes.
    #[test]
    fn matches_the_formulas_in_f64() {
        for (rows, d) in [(3usize, 5usize), (4, 37), (300, 130)] {
            for affine in [false, true] {
                let x = values(rows * d, 1);
                let w: Vec<f32> = values(d, 2).iter().map(|v| v + 2.0).collect();
                let b = values(d, 3);
                let dy = values(rows * d, 4);
                let eps = 1e-5;
                let (wo, bo) = if affine {
                    (Some(&w[..]), Some(&b[..]))
                } else {
                    (None, None)
                };
                let reference = |x: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
                    x.chunks(d)
                        .flat_map(|r| {
                            let m = r.iter().sum::<f64>() / d as f64;
                            let v = r.iter().map(|a| (a - m).powi(2)).sum::<f64>() / d as f64;
                            r.iter()
                                .enumerate()
                                .map(move |(k, a)| {
                                    let h = (a - m) / (v + eps).sqrt();
                                    if affine {
                                        h * w[k] + b[k]
                                    } else {
                                        h
                                    }
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect()
                };
                let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
                let (x64, w64, b64) = (f64s(&x), f64s(&w), f64s(&b));
                let (y, stats) = forward(&x, d, wo, bo, eps);
                for (k, (a, e)) in y.iter().zip(reference(&x64, &w64, &b64)).enumerate() {
                    assert!(
                        (*a as f64 - e).abs() < 1e-4,
                        "{rows}x{d} y[{k}]: {a} vs {e}"
                    );
                }
                let [dx, dw, db] = backward(&x, d, wo, &stats, &dy, [true, affine, affine]);
                let objective = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
                    reference(x, w, b)
                        .iter()
                        .zip(&dy)
                        .map(|(a, &g)| a * g as f64)
                        .sum()
                };
                let numeric = |which: usize, j: usize| {
                    let h = 1e-4;
                    let mut args = [x64.clone(), w64.clone(), b64.clone()];
                    args[which][j] += h;
                    let up = objective(&args[0], &args[1], &args[2]);
                    args[which][j] -= 2.0 * h;
                    let down = objective(&args[0], &args[1], &args[2]);
                    (up - down) / (2.0 * h)
                };
                let dx = dx.unwrap_or_default();
                for j in (0..x.len()).step_by(x.len() / 23 + 1) {
                    let n = numeric(0, j);
                    assert!(
                        (dx[j] as f64 - n).abs() < 1e-3 * (1.0 + n.abs()),
                        "{rows}x{d} dx[{j}]: {} vs {n}",
                        dx[j]
                    );
                }
                if affine {
                    let (dw, db) = (dw.unwrap_or_default(), db.unwrap_or_default());
                    for j in (0..d).step_by(d / 7 + 1) {
                        let (nw, nb) = (numeric(1, j), numeric(2, j));
                        assert!(
                            (dw[j] as f64 - nw).abs() < 1e-3 * (1.0 + nw.abs()),
                            "dw[{j}]"
                        );
                        assert!(
                            (db[j] as f64 - nb).abs() < 1e-3 * (1.0 + nb.abs()),
                            "db[{j}]"
                        );
                    }
                }
            }
        }
    }
}
