//! One direction of a recurrent layer (tanh or ReLU RNN, LSTM, GRU) over a whole sequence as one loop, forward and
//! backward. Per step the hidden state's share of the gates is one gemm and the cell one
//! pass (`cpu/cells.rs`); backward, the weight's gradient is a single gemm over all steps
//! at the end instead of a product and an accumulation per step, and the input's gradient
//! is written in place instead of embedded into zeros of the whole sequence per step.
//! The tensor side, with the composite fallback and the backward rule, is
//! `tensor/fused/recurrent.rs`.
//!
//! Layouts are row-major: the input's share of the gates `xs [T, B, G * H]` (bias
//! included), states `[B, H]`, `w_hh [G * H, H]`, and the output packs every step's states
//! `[S, T, B, H]`: S = 2 for an LSTM (h, then c), 1 for the others.

use super::cells::{self, GRU_WORK, LSTM_WORK};
use super::matmul::gemm_slices;
use super::pool;
use super::simd::vectorized;
use rayon::prelude::*;
use std::ops::Range;

/// Which recurrence a fused layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// `h' = tanh(x + hh)`.
    Tanh,
    /// `h' = relu(x + hh)`.
    Relu,
    Lstm,
    Gru,
}

/// The sizes of one fused layer direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerGeometry {
    pub cell: Cell,
    /// T, the sequence's length.
    pub steps: usize,
    /// B.
    pub batch: usize,
    /// H.
    pub hidden: usize,
    /// Runs from the last step to the first.
    pub reverse: bool,
}

impl LayerGeometry {
    /// G: gate blocks of the weights.
    pub fn gates(&self) -> usize {
        match self.cell {
            Cell::Tanh | Cell::Relu => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }

    /// S: the states each step outputs (h, and c for an LSTM).
    pub fn states(&self) -> usize {
        match self.cell {
            Cell::Lstm => 2,
            Cell::Tanh | Cell::Relu | Cell::Gru => 1,
        }
    }

    /// Floats of one step's state, `B * H`.
    fn state_len(&self) -> usize {
        self.batch * self.hidden
    }

    /// Floats of one step's gates, `B * G * H`.
    fn gate_len(&self) -> usize {
        self.batch * self.gates() * self.hidden
    }

    /// Floats of one step's workspace.
    fn work_len(&self) -> usize {
        self.batch
            * self.hidden
            * match self.cell {
                // The output is all a plain RNN's gradient needs.
                Cell::Tanh | Cell::Relu => 0,
                Cell::Lstm => LSTM_WORK,
                Cell::Gru => GRU_WORK,
            }
    }

    /// The output's shape, `[S, T, B, H]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.states(), self.steps, self.batch, self.hidden]
    }

    /// The workspace's shape, `[T, B, work per unit * H]`.
    pub fn work_shape(&self) -> [usize; 3] {
        [self.steps, self.batch, self.work_len() / self.batch.max(1)]
    }

    /// The time index of the `k`-th step the layer runs.
    pub fn time(&self, k: usize) -> usize {
        if self.reverse {
            self.steps - 1 - k
        } else {
            k
        }
    }
}

/// `&v[i * len..][..len]`.
fn block(v: &[f32], i: usize, len: usize) -> &[f32] {
    &v[i * len..][..len]
}

/// Rows `rows` of `v` seen as `[.., width]`.
fn rows_of<'a>(v: &'a [f32], rows: &Range<usize>, width: usize) -> &'a [f32] {
    &v[rows.start * width..rows.end * width]
}

/// The rows `rows` of step `t`'s block of a `[T, B, H]` buffer.
fn state_rows<'a>(g: &LayerGeometry, v: &'a [f32], t: usize, rows: &Range<usize>) -> &'a [f32] {
    rows_of(block(v, t, g.state_len()), rows, g.hidden)
}

/// Batch rows never meet in a recurrence (only the weight's gradient sums over them), so a
/// layer runs as one independent loop per band of rows, the bands on the thread pool: one
/// fork and join per layer instead of a wake-up of the pool at every step's product, and
/// the cell passes run in parallel too. One band where a step is too small to be worth a
/// thread.
fn bands(g: &LayerGeometry) -> Vec<Range<usize>> {
    let threads = if g.gate_len() * g.hidden >= 48 * 48 * 48 {
        rayon::current_num_threads().clamp(1, g.batch.max(1))
    } else {
        1
    };
    (0..threads)
        .map(|i| g.batch * i / threads..g.batch * (i + 1) / threads)
        .collect()
}

/// `v` seen as `[blocks, B, width]`: for each band, its rows of every block (`blocks`
/// empty pieces each where `v` is empty: the cell has no such buffer).
fn band_pieces<'a>(
    v: &'a mut [f32],
    blocks: usize,
    width: usize,
    bands: &[Range<usize>],
) -> Vec<Vec<&'a mut [f32]>> {
    let mut pieces: Vec<Vec<&'a mut [f32]>> = bands.iter().map(|_| Vec::new()).collect();
    let batch = bands.last().map_or(0, |b| b.end);
    if v.is_empty() || batch * width == 0 {
        for p in &mut pieces {
            p.extend((0..blocks).map(|_| <&mut [f32]>::default()));
        }
        return pieces;
    }
    for block in v.chunks_exact_mut(batch * width) {
        let mut rest = block;
        for (band, p) in bands.iter().zip(&mut pieces) {
            let (mine, tail) = rest.split_at_mut(band.len() * width);
            p.push(mine);
            rest = tail;
        }
    }
    pieces
}

/// `f` over the bands with their pieces, in parallel where there are several, results in
/// the bands' order.
fn each_band<P: Send, R: Send>(
    bands: &[Range<usize>],
    pieces: Vec<P>,
    f: impl Fn(&Range<usize>, P) -> R + Sync,
) -> Vec<R> {
    if bands.len() == 1 {
        return bands.iter().zip(pieces).map(|(b, p)| f(b, p)).collect();
    }
    bands
        .par_iter()
        .zip(pieces.into_par_iter())
        .map(|(b, p)| f(b, p))
        .collect()
}

/// What a band of rows writes in the forward pass: per step, its rows of the hidden
/// states, the cell states (LSTM) and the workspace.
struct ForwardPieces<'a> {
    hs: Vec<&'a mut [f32]>,
    cs: Vec<&'a mut [f32]>,
    work: Vec<&'a mut [f32]>,
}

/// The layer's output `[S, T, B, H]` and workspace from the input's share of the gates
/// `xs`, the initial states `h0` and `c0` (empty for a GRU), `w_hh` and (GRU) `b_hh`.
pub fn layer_forward(
    g: &LayerGeometry,
    xs: &[f32],
    h0: &[f32],
    c0: &[f32],
    w_hh: &[f32],
    b_hh: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (sl, wl, h) = (g.state_len(), g.work_len(), g.hidden);
    let mut out = pool::take(g.states() * g.steps * sl);
    let mut work = pool::take(g.steps * wl);
    let bands = bands(g);
    let (hs, cs) = out.split_at_mut(g.steps * sl);
    let work_width = wl / g.batch.max(1);
    let pieces: Vec<ForwardPieces<'_>> = band_pieces(hs, g.steps, h, &bands)
        .into_iter()
        .zip(band_pieces(cs, g.steps, h, &bands))
        .zip(band_pieces(&mut work, g.steps, work_width, &bands))
        .map(|((hs, cs), work)| ForwardPieces { hs, cs, work })
        .collect();
    each_band(&bands, pieces, |rows, p| {
        forward_band(g, rows, xs, h0, c0, w_hh, b_hh, p)
    });
    (out, work)
}

/// [`layer_forward`] for the batch rows `rows`.
#[allow(clippy::too_many_arguments)]
fn forward_band(
    g: &LayerGeometry,
    rows: &Range<usize>,
    xs: &[f32],
    h0: &[f32],
    c0: &[f32],
    w_hh: &[f32],
    b_hh: Option<&[f32]>,
    mut p: ForwardPieces<'_>,
) {
    let (gl, h) = (g.gate_len(), g.hidden);
    let gh = g.gates() * h;
    let lstm = g.cell == Cell::Lstm;
    let mut hh = pool::take(rows.len() * gh);
    let mut h_prev = rows_of(h0, rows, h).to_vec();
    let mut c_prev = if lstm {
        rows_of(c0, rows, h).to_vec()
    } else {
        Vec::new()
    };
    for k in 0..g.steps {
        let t = g.time(k);
        if let Some(b) = b_hh {
            for row in hh.chunks_exact_mut(gh) {
                row.copy_from_slice(b);
            }
        }
        // hh (+)= h_prev @ w_hh^T.
        gemm_slices(
            rows.len(),
            gh,
            h,
            &mut hh,
            b_hh.is_some(),
            &h_prev,
            (h, 1),
            w_hh,
            (1, h),
            gemm::Parallelism::None,
        );
        let x = rows_of(block(xs, t, gl), rows, gh);
        let (h_t, wk) = (&mut *p.hs[t], &mut *p.work[t]);
        match g.cell {
            Cell::Lstm => {
                let c_t = &mut *p.cs[t];
                vectorized(
                    #[inline(always)]
                    || cells::lstm_step(x, &hh, &c_prev, h_t, c_t, wk, h),
                );
                c_prev.copy_from_slice(c_t);
            }
            Cell::Gru => vectorized(
                #[inline(always)]
                || cells::gru_step(x, &hh, &h_prev, h_t, wk, h),
            ),
            Cell::Tanh | Cell::Relu => {
                let relu = g.cell == Cell::Relu;
                vectorized(
                    #[inline(always)]
                    || cells::rnn_step(x, &hh, h_t, relu),
                )
            }
        }
        h_prev.copy_from_slice(h_t);
    }
    pool::give(hh);
}

/// The gradients of a fused layer's inputs.
pub struct LayerGrads {
    /// Of the input's share of the gates, `[T, B, G * H]`.
    pub xs: Vec<f32>,
    /// Of the initial hidden state.
    pub h0: Vec<f32>,
    /// Of the initial cell state (empty for a GRU).
    pub c0: Vec<f32>,
    /// Of `w_hh`, where asked for.
    pub w_hh: Option<Vec<f32>>,
    /// Of `b_hh` (GRU), where asked for.
    pub b_hh: Option<Vec<f32>>,
}

/// What the forward pass left, which the backward pass reads: the states it output, its
/// workspace and the initial states.
struct Saved<'a> {
    h0: &'a [f32],
    c0: &'a [f32],
    hs: &'a [f32],
    cs: &'a [f32],
    work: &'a [f32],
}

/// The gradients of [`layer_forward`]'s inputs from its output's (`grad`, `[S, T, B, H]`),
/// given the same inputs, its output and its workspace. `want_w` and `want_b` ask for the
/// weight's and the bias's.
#[allow(clippy::too_many_arguments)]
pub fn layer_backward(
    g: &LayerGeometry,
    h0: &[f32],
    c0: &[f32],
    w_hh: &[f32],
    out: &[f32],
    work: &[f32],
    grad: &[f32],
    (want_w, want_b): (bool, bool),
) -> LayerGrads {
    let (sl, gl, h) = (g.state_len(), g.gate_len(), g.hidden);
    let (gh, steps) = (g.gates() * h, g.steps);
    let (hs, cs) = out.split_at(steps * sl);
    let saved = Saved {
        h0,
        c0,
        hs,
        cs,
        work,
    };
    let mut dxs = pool::take(steps * gl);
    // The hidden state's share of the gates has the input's gradient but in a GRU, where
    // r scales the n gate's.
    let mut dhh_all = match g.cell {
        Cell::Tanh | Cell::Relu | Cell::Lstm => Vec::new(),
        Cell::Gru => pool::take(steps * gl),
    };
    let bands = bands(g);
    let pieces: Vec<_> = band_pieces(&mut dxs, steps, gh, &bands)
        .into_iter()
        .zip(band_pieces(&mut dhh_all, steps, gh, &bands))
        .collect();
    let initial = each_band(&bands, pieces, |rows, (dxs, dhh)| {
        backward_band(g, rows, &saved, w_hh, grad, dxs, dhh)
    });
    let (mut dh, mut dc) = (Vec::with_capacity(sl), Vec::new());
    for (band_dh, band_dc) in initial {
        dh.extend(band_dh);
        dc.extend(band_dc);
    }
    let dhh: &[f32] = match g.cell {
        Cell::Tanh | Cell::Relu | Cell::Lstm => &dxs,
        Cell::Gru => &dhh_all,
    };
    let w = want_w.then(|| weight_grad(g, dhh, hs, h0));
    let b = want_b.then(|| {
        let mut b = vec![0.0f32; gh];
        for row in dhh.chunks_exact(gh) {
            for (s, &v) in b.iter_mut().zip(row) {
                *s += v;
            }
        }
        b
    });
    pool::give(dhh_all);
    LayerGrads {
        xs: dxs,
        h0: dh,
        c0: if g.cell == Cell::Lstm { dc } else { Vec::new() },
        w_hh: w,
        b_hh: b,
    }
}

/// [`layer_backward`] through every step for the batch rows `rows`, writing their rows of
/// the gates' gradients (`dxs`, and for a GRU the hidden state's share `dhh`, per step):
/// the gradients of the band's initial hidden and cell states.
fn backward_band(
    g: &LayerGeometry,
    rows: &Range<usize>,
    saved: &Saved<'_>,
    w_hh: &[f32],
    grad: &[f32],
    mut dxs: Vec<&mut [f32]>,
    mut dhh_all: Vec<&mut [f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (sl, wl, h) = (g.state_len(), g.work_len(), g.hidden);
    let (gh, steps) = (g.gates() * h, g.steps);
    let work_width = wl / g.batch.max(1);
    let (dhs, dcs) = grad.split_at(steps * sl);
    let n = rows.len() * h;
    let lstm = g.cell == Cell::Lstm;
    // The gradients flowing into the previous step's states, and this step's totals.
    let (mut dh, mut dc) = (vec![0.0f32; n], vec![0.0f32; if lstm { n } else { 0 }]);
    let (mut dh_step, mut dc_step) = (pool::take(n), pool::take(n));
    let mut dh_direct = pool::take(n);
    let at = |v, t| state_rows(g, v, t, rows);
    for k in (0..steps).rev() {
        let t = g.time(k);
        for ((s, &a), &b) in dh_step.iter_mut().zip(at(dhs, t)).zip(&dh) {
            *s = a + b;
        }
        let wk = rows_of(block(saved.work, t, wl), rows, work_width);
        let dhh_t: &[f32] = match g.cell {
            Cell::Lstm => {
                for ((s, &a), &b) in dc_step.iter_mut().zip(at(dcs, t)).zip(&dc) {
                    *s = a + b;
                }
                let dgates = &mut *dxs[t];
                let c_prev = if k == 0 {
                    rows_of(saved.c0, rows, h)
                } else {
                    at(saved.cs, g.time(k - 1))
                };
                vectorized(
                    #[inline(always)]
                    || {
                        cells::lstm_step_backward(
                            c_prev, wk, &dh_step, &dc_step, dgates, &mut dc, h,
                        )
                    },
                );
                dgates
            }
            Cell::Gru => {
                let (dx, dhh) = (&mut *dxs[t], &mut *dhh_all[t]);
                let h_prev = if k == 0 {
                    rows_of(saved.h0, rows, h)
                } else {
                    at(saved.hs, g.time(k - 1))
                };
                vectorized(
                    #[inline(always)]
                    || cells::gru_step_backward(h_prev, wk, &dh_step, dx, dhh, &mut dh_direct, h),
                );
                dhh
            }
            Cell::Tanh | Cell::Relu => {
                let dgates = &mut *dxs[t];
                let relu = g.cell == Cell::Relu;
                let h_t = at(saved.hs, t);
                vectorized(
                    #[inline(always)]
                    || cells::rnn_step_backward(h_t, &dh_step, dgates, relu),
                );
                dgates
            }
        };
        // dh (+)= dhh_t @ w_hh: the GRU's previous state also has its direct share.
        let direct = g.cell == Cell::Gru;
        if direct {
            dh.copy_from_slice(&dh_direct);
        }
        gemm_slices(
            rows.len(),
            h,
            gh,
            &mut dh,
            direct,
            dhh_t,
            (gh, 1),
            w_hh,
            (h, 1),
            gemm::Parallelism::None,
        );
    }
    for v in [dh_step, dc_step, dh_direct] {
        pool::give(v);
    }
    (dh, dc)
}

/// `sum_t dhh_t^T @ h_prev(t)`: every step but the first pairs with the output of the step
/// before it, a contiguous run of `hs`, so the sum is one gemm over `(T - 1) * B` rows plus
/// the first step's product with `h0`.
fn weight_grad(g: &LayerGeometry, dhh: &[f32], hs: &[f32], h0: &[f32]) -> Vec<f32> {
    let (sl, gl, h, steps) = (g.state_len(), g.gate_len(), g.hidden, g.steps);
    let gh = g.gates() * h;
    let mut w = pool::take(gh * h);
    let first = g.time(0);
    let spread = gemm::Parallelism::Rayon(0);
    gemm_slices(
        gh,
        h,
        g.batch,
        &mut w,
        false,
        block(dhh, first, gl),
        (1, gh),
        h0,
        (h, 1),
        spread,
    );
    if steps > 1 {
        let rest = (steps - 1) * g.batch;
        let (d, s) = if g.reverse {
            (&dhh[..(steps - 1) * gl], &hs[sl..])
        } else {
            (&dhh[gl..], &hs[..(steps - 1) * sl])
        };
        gemm_slices(gh, h, rest, &mut w, true, d, (1, gh), s, (h, 1), spread);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in about [-1, 1].
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let x = (i as u32)
                    .wrapping_mul(2654435761)
                    .wrapping_add(seed.wrapping_mul(40503));
                (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The lengths of the layer's inputs: `xs`, `h0`, `c0` (empty but for an LSTM), `w_hh`,
    /// `b_hh`.
    fn input_lens(g: &LayerGeometry) -> [usize; 5] {
        let gh = g.gates() * g.hidden;
        let c_len = if g.cell == Cell::Lstm {
            g.state_len()
        } else {
            0
        };
        [
            g.steps * g.gate_len(),
            g.state_len(),
            c_len,
            gh * g.hidden,
            gh,
        ]
    }

    /// `sum(out * weights)` for the layer, in f64 from an f32 forward pass.
    fn loss(g: &LayerGeometry, inputs: &[Vec<f32>], weights: &[f32]) -> f64 {
        let [xs, h0, c0, w, b] = [0, 1, 2, 3, 4].map(|i| &inputs[i]);
        let bias = (g.cell == Cell::Gru).then_some(&b[..]);
        let (out, _) = layer_forward(g, xs, h0, c0, w, bias);
        out.iter()
            .zip(weights)
            .map(|(&o, &v)| o as f64 * v as f64)
            .sum()
    }

    /// The layer split into bands of batch rows (a pool of 3 threads: bands of 3 rows)
    /// gives what one band gives, forward and backward, every cell, both directions.
    #[test]
    fn bands_of_rows_agree_with_one_band() {
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let (one, three) = (pool(1), pool(3));
        for cell in [Cell::Tanh, Cell::Relu, Cell::Lstm, Cell::Gru] {
            for reverse in [false, true] {
                // Big enough per step to be split (see `bands`).
                let g = LayerGeometry {
                    cell,
                    steps: 4,
                    batch: 9,
                    hidden: 112,
                    reverse,
                };
                assert_eq!(three.install(|| bands(&g)).len(), 3);
                let [xs, h0, c0, w, b] = input_lens(&g).map(|n| values(n, n as u32));
                let w: Vec<f32> = w.iter().map(|v| v * 0.1).collect();
                let bias = (cell == Cell::Gru).then_some(&b[..]);
                let grad = values(g.states() * g.steps * g.state_len(), 5);
                let run = || {
                    let (out, work) = layer_forward(&g, &xs, &h0, &c0, &w, bias);
                    let d = layer_backward(
                        &g,
                        &h0,
                        &c0,
                        &w,
                        &out,
                        &work,
                        &grad,
                        (true, bias.is_some()),
                    );
                    [
                        Some(out),
                        Some(d.xs),
                        Some(d.h0),
                        Some(d.c0),
                        d.w_hh,
                        d.b_hh,
                    ]
                };
                let (a, b) = (one.install(run), three.install(run));
                for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(a.is_some(), b.is_some());
                    let (Some(a), Some(b)) = (a, b) else { continue };
                    assert_eq!(a.len(), b.len());
                    for (j, (x, y)) in a.iter().zip(b).enumerate() {
                        assert!(
                            (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                            "{cell:?} reverse {reverse} result {i} element {j}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    /// Every input's gradient against central differences of the f32 forward pass, both
    /// cells, both directions, with several steps so that the carried gradients count.
    #[test]
    fn gradients_match_finite_differences() {
        for cell in [Cell::Tanh, Cell::Relu, Cell::Lstm, Cell::Gru] {
            for reverse in [false, true] {
                let g = LayerGeometry {
                    cell,
                    steps: 3,
                    batch: 2,
                    hidden: 3,
                    reverse,
                };
                let lens = input_lens(&g);
                let mut inputs: Vec<Vec<f32>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| values(n, i as u32 + 1))
                    .collect();
                let weights = values(g.states() * g.steps * g.state_len(), 9);
                let [xs, h0, c0, w, b] = [0, 1, 2, 3, 4].map(|i| inputs[i].clone());
                let bias = (cell == Cell::Gru).then_some(&b[..]);
                let (out, work) = layer_forward(&g, &xs, &h0, &c0, &w, bias);
                let grads = layer_backward(
                    &g,
                    &h0,
                    &c0,
                    &w,
                    &out,
                    &work,
                    &weights,
                    (true, cell == Cell::Gru),
                );
                let analytic = [
                    Some(grads.xs),
                    Some(grads.h0),
                    Some(grads.c0),
                    grads.w_hh,
                    grads.b_hh,
                ];
                for (i, a) in analytic.iter().enumerate() {
                    let Some(a) = a else { continue };
                    assert_eq!(a.len(), lens[i], "{cell:?} input {i}");
                    for j in 0..lens[i] {
                        let eps = 1e-2f32;
                        let keep = inputs[i][j];
                        inputs[i][j] = keep + eps;
                        let up = loss(&g, &inputs, &weights);
                        inputs[i][j] = keep - eps;
                        let down = loss(&g, &inputs, &weights);
                        inputs[i][j] = keep;
                        let numeric = (up - down) / (2.0 * eps as f64);
                        assert!(
                            (numeric - a[j] as f64).abs() < 2e-3 * (1.0 + numeric.abs()),
                            "{cell:?} reverse {reverse} input {i} element {j}: {numeric} vs {}",
                            a[j]
                        );
                    }
                }
            }
        }
    }
}
