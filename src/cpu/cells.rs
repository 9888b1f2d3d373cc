//! The arithmetic of one recurrent step (tanh or ReLU RNN, LSTM, GRU) over a batch, forward and backward, written into
//! the caller's slices: the layer loop of `cpu/recurrent.rs` runs it at every step, in
//! place of about ten elementwise ops forward and twenty-five backward (with the
//! zero-filled buffers of the gates' slices).
//!
//! Layouts are row-major: `x` and `hh` are `[B, G * H]` (the input's and the hidden
//! state's share of the gates, PyTorch's gate order), states `[B, H]`. The forward pass
//! keeps the activated gates (a workspace, as PyTorch's fused cells keep), so the backward
//! pass is arithmetic only. Every loop is a zip over equal slices with at most one
//! transcendental function, the shape the compiler vectorises; the functions inline into
//! their caller's `simd::vectorized` so that they run at the CPU's full vector width.

use crate::op::math::{sigmoid, tanh};

/// Floats of an LSTM step's workspace per row and hidden unit: i, f, g, o, tanh c'.
pub const LSTM_WORK: usize = 5;
/// Floats of a GRU step's workspace per row and hidden unit: r, z, n and the hidden
/// state's share of n (which r scaled).
pub const GRU_WORK: usize = 4;

/// `dst[j] = f(a[j] + b[j])`.
#[inline(always)]
fn activate(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32) -> f32) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = f(x + y);
    }
}

/// A plain RNN step: `h' = tanh(x + hh)`, or ReLU (NaN staying NaN, as the `relu` op's),
/// into `h_out`. Its output is all its gradient needs.
#[inline(always)]
pub fn rnn_step(x: &[f32], hh: &[f32], h_out: &mut [f32], relu: bool) {
    if relu {
        activate(
            h_out,
            x,
            hh,
            |v| if v > 0.0 || v.is_nan() { v } else { 0.0 },
        );
    } else {
        activate(h_out, x, hh, tanh);
    }
}

/// The gradient of [`rnn_step`] from `h'` (`h_new`) and its gradient `dh`: the gates'
/// gradient (the same for `x` and `hh`) into `dgates`. ReLU's slope at 0 is 0, as PyTorch's.
#[inline(always)]
pub fn rnn_step_backward(h_new: &[f32], dh: &[f32], dgates: &mut [f32], relu: bool) {
    for ((d, &y), &g) in dgates.iter_mut().zip(h_new).zip(dh) {
        *d = if relu {
            if y > 0.0 {
                g
            } else {
                0.0
            }
        } else {
            g * (1.0 - y * y)
        };
    }
}

/// An LSTM step from `x`, `hh` (`[B, 4H]`, gates i, f, g, o) and the cell state `c`: the
/// new states into `h_out` and `c_out`, the workspace (`[B, 5H]`) into `work`.
#[inline(always)]
pub fn lstm_step(
    x: &[f32],
    hh: &[f32],
    c: &[f32],
    h_out: &mut [f32],
    c_out: &mut [f32],
    work: &mut [f32],
    h: usize,
) {
    let rows = x
        .chunks_exact(4 * h)
        .zip(hh.chunks_exact(4 * h))
        .zip(work.chunks_exact_mut(LSTM_WORK * h))
        .zip(
            c.chunks_exact(h)
                .zip(h_out.chunks_exact_mut(h))
                .zip(c_out.chunks_exact_mut(h)),
        );
    for (((xr, hr), wr), ((cr, hout), cout)) in rows {
        let (acts, tc) = wr.split_at_mut(4 * h);
        for (k, gate) in acts.chunks_exact_mut(h).enumerate() {
            let (a, b) = (&xr[k * h..][..h], &hr[k * h..][..h]);
            if k == 2 {
                activate(gate, a, b, tanh);
            } else {
                activate(gate, a, b, sigmoid);
            }
        }
        let (i, rest) = acts.split_at(h);
        let (f, rest) = rest.split_at(h);
        let (g, o) = rest.split_at(h);
        for ((((cn, &cp), &i), &f), &g) in cout.iter_mut().zip(cr).zip(i).zip(f).zip(g) {
            *cn = f * cp + i * g;
        }
        for (t, &cn) in tc.iter_mut().zip(cout.iter()) {
            *t = tanh(cn);
        }
        for ((hn, &o), &t) in hout.iter_mut().zip(o).zip(tc.iter()) {
            *hn = o * t;
        }
    }
}

/// The gradient of [`lstm_step`] from the gradients of `h'` (`dh`) and `c'` (`dc`), the
/// previous cell state `c` and the workspace: the gates' gradient (`[B, 4H]`, the same for
/// `x` and `hh`) into `dgates` and the previous cell state's into `dc_prev`.
#[inline(always)]
pub fn lstm_step_backward(
    c: &[f32],
    work: &[f32],
    dh: &[f32],
    dc: &[f32],
    dgates: &mut [f32],
    dc_prev: &mut [f32],
    h: usize,
) {
    let rows = work
        .chunks_exact(LSTM_WORK * h)
        .zip(dgates.chunks_exact_mut(4 * h))
        .zip(c.chunks_exact(h).zip(dc_prev.chunks_exact_mut(h)))
        .zip(dh.chunks_exact(h).zip(dc.chunks_exact(h)));
    for (((wr, dg), (cr, dcr)), (dh, dcn_in)) in rows {
        let [i, f, g, o, tc] = std::array::from_fn(|k| &wr[k * h..][..h]);
        let (di, rest) = dg.split_at_mut(h);
        let (df, rest) = rest.split_at_mut(h);
        let (dgg, d_o) = rest.split_at_mut(h);
        for j in 0..h {
            let dcn = dcn_in[j] + dh[j] * o[j] * (1.0 - tc[j] * tc[j]);
            di[j] = dcn * g[j] * i[j] * (1.0 - i[j]);
            df[j] = dcn * cr[j] * f[j] * (1.0 - f[j]);
            dgg[j] = dcn * i[j] * (1.0 - g[j] * g[j]);
            d_o[j] = dh[j] * tc[j] * o[j] * (1.0 - o[j]);
            dcr[j] = dcn * f[j];
        }
    }
}

/// A GRU step from `x`, `hh` (`[B, 3H]`, gates r, z, n; `hh` includes `b_hh`, which the n
/// gate scales by r as PyTorch does) and the hidden state `hp`: `h'` into `h_out` and the
/// workspace (`[B, 4H]`) into `work`.
#[inline(always)]
pub fn gru_step(x: &[f32], hh: &[f32], hp: &[f32], h_out: &mut [f32], work: &mut [f32], h: usize) {
    let rows = x
        .chunks_exact(3 * h)
        .zip(hh.chunks_exact(3 * h))
        .zip(work.chunks_exact_mut(GRU_WORK * h))
        .zip(hp.chunks_exact(h).zip(h_out.chunks_exact_mut(h)));
    for (((xr, hr), wr), (hpr, o)) in rows {
        let (rz, rest) = wr.split_at_mut(2 * h);
        let (n, hn_saved) = rest.split_at_mut(h);
        activate(rz, &xr[..2 * h], &hr[..2 * h], sigmoid);
        let (xn, hn, r) = (&xr[2 * h..][..h], &hr[2 * h..][..h], &rz[..h]);
        hn_saved.copy_from_slice(hn);
        for (((n, &xn), &hn), &r) in n.iter_mut().zip(xn).zip(hn).zip(r) {
            *n = xn + r * hn;
        }
        for n in n.iter_mut() {
            *n = tanh(*n);
        }
        let z = &rz[h..][..h];
        for (((o, &n), &z), &hp) in o.iter_mut().zip(n.iter()).zip(z).zip(hpr) {
            *o = (1.0 - z) * n + z * hp;
        }
    }
}

/// The gradient of [`gru_step`] from `h'`'s (`dh`), the previous hidden state `hp` and the
/// workspace: the gradients of `x` and `hh` (`[B, 3H]` each) into `dx` and `dhh`, and the
/// previous hidden state's direct share (through z, not through `hh`) into `dhp`.
#[inline(always)]
pub fn gru_step_backward(
    hp: &[f32],
    work: &[f32],
    dh: &[f32],
    dx: &mut [f32],
    dhh: &mut [f32],
    dhp: &mut [f32],
    h: usize,
) {
    let rows = work
        .chunks_exact(GRU_WORK * h)
        .zip(dx.chunks_exact_mut(3 * h).zip(dhh.chunks_exact_mut(3 * h)))
        .zip(
            hp.chunks_exact(h)
                .zip(dh.chunks_exact(h))
                .zip(dhp.chunks_exact_mut(h)),
        );
    for ((wr, (dxr, dhr)), ((hpr, gr), dhpr)) in rows {
        let [r, z, n, hn] = std::array::from_fn(|k| &wr[k * h..][..h]);
        let (dxr_r, rest) = dxr.split_at_mut(h);
        let (dxr_z, dxr_n) = rest.split_at_mut(h);
        let (dhr_r, rest) = dhr.split_at_mut(h);
        let (dhr_z, dhr_n) = rest.split_at_mut(h);
        for j in 0..h {
            let g = gr[j];
            let dn = g * (1.0 - z[j]) * (1.0 - n[j] * n[j]);
            let dz = g * (hpr[j] - n[j]) * z[j] * (1.0 - z[j]);
            let dr = dn * hn[j] * r[j] * (1.0 - r[j]);
            dxr_r[j] = dr;
            dhr_r[j] = dr;
            dxr_z[j] = dz;
            dhr_z[j] = dz;
            dxr_n[j] = dn;
            dhr_n[j] = dn * r[j];
            dhpr[j] = g * z[j];
        }
    }
}
