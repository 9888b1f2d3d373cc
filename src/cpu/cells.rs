//! Fused recurrent cells: one pass over a batch's gate pre-activations for an LSTM or GRU
//! step, and one for its gradient, in place of about ten elementwise ops forward and
//! twenty-five backward (with the zero-filled buffers of the gates' slices). The tensor
//! side, with the composite fallback and the backward rules, is `tensor/fused/cells.rs`.
//!
//! Layouts are row-major: `x` and `hh` are `[B, G * H]` (the input's and the hidden
//! state's share of the gates, PyTorch's gate order), states `[B, H]`. The forward pass
//! keeps the activated gates (a workspace, as PyTorch's fused cells keep), so the backward
//! pass is arithmetic only. Every loop is a zip over equal slices with at most one
//! transcendental function, the shape the compiler vectorises.

use crate::op::math::{sigmoid, tanh};

/// `dst[j] = f(a[j] + b[j])`.
#[inline(always)]
fn activate(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32) -> f32) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = f(x + y);
    }
}

/// An LSTM step from `x`, `hh` (`[B, 4H]`, gates i, f, g, o) and the cell state `c`:
/// `[h'; c']` (`[2, B, H]`) and the workspace `[B, 5H]` (per row: i, f, g, o, tanh c').
pub fn lstm_forward(x: &[f32], hh: &[f32], c: &[f32], h: usize) -> (Vec<f32>, Vec<f32>) {
    let b = c.len() / h.max(1);
    let mut out = super::pool::take(2 * b * h);
    let mut work = super::pool::take(b * 5 * h);
    if h == 0 {
        return (out, work);
    }
    let (hs, cs) = out.split_at_mut(b * h);
    let rows = x
        .chunks_exact(4 * h)
        .zip(hh.chunks_exact(4 * h))
        .zip(work.chunks_exact_mut(5 * h))
        .zip(
            c.chunks_exact(h)
                .zip(hs.chunks_exact_mut(h))
                .zip(cs.chunks_exact_mut(h)),
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
    (out, work)
}

/// The gradient of [`lstm_forward`] from the gradients of `h'` and `c'` (`grad`,
/// `[2, B, H]`) and the workspace: the gates' gradient (`[B, 4H]`, the same for `x` and
/// `hh`) and the previous cell state's.
pub fn lstm_backward(c: &[f32], work: &[f32], grad: &[f32], h: usize) -> (Vec<f32>, Vec<f32>) {
    let b = c.len() / h.max(1);
    let mut dgates = super::pool::take(b * 4 * h);
    let mut dc = super::pool::take(b * h);
    if h == 0 {
        return (dgates, dc);
    }
    let (dh_all, dcn_all) = grad.split_at(b * h);
    let rows = work
        .chunks_exact(5 * h)
        .zip(dgates.chunks_exact_mut(4 * h))
        .zip(c.chunks_exact(h).zip(dc.chunks_exact_mut(h)))
        .zip(dh_all.chunks_exact(h).zip(dcn_all.chunks_exact(h)));
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
    (dgates, dc)
}

/// A GRU step from `x`, `hh` (`[B, 3H]`, gates r, z, n; `hh` includes `b_hh`, which the n
/// gate scales by r as PyTorch does) and the hidden state `hp`: `h'` (`[B, H]`) and the
/// workspace `[B, 3H]` (per row: r, z, n).
pub fn gru_forward(x: &[f32], hh: &[f32], hp: &[f32], h: usize) -> (Vec<f32>, Vec<f32>) {
    let b = hp.len() / h.max(1);
    let mut out = super::pool::take(b * h);
    let mut work = super::pool::take(b * 3 * h);
    if h == 0 {
        return (out, work);
    }
    let rows = x
        .chunks_exact(3 * h)
        .zip(hh.chunks_exact(3 * h))
        .zip(work.chunks_exact_mut(3 * h))
        .zip(hp.chunks_exact(h).zip(out.chunks_exact_mut(h)));
    for (((xr, hr), wr), (hpr, o)) in rows {
        let (rz, n) = wr.split_at_mut(2 * h);
        activate(rz, &xr[..2 * h], &hr[..2 * h], sigmoid);
        let (xn, hn, r) = (&xr[2 * h..][..h], &hr[2 * h..][..h], &rz[..h]);
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
    (out, work)
}

/// The gradient of [`gru_forward`] from `h'`'s (`grad`), `hh` and the workspace: the
/// gradients of `x` and `hh` (`[B, 3H]` each) and of the previous hidden state.
pub fn gru_backward(
    hh: &[f32],
    hp: &[f32],
    work: &[f32],
    grad: &[f32],
    h: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let b = hp.len() / h.max(1);
    let (mut dx, mut dhh, mut dhp) = (
        super::pool::take(b * 3 * h),
        super::pool::take(b * 3 * h),
        super::pool::take(b * h),
    );
    if h == 0 {
        return (dx, dhh, dhp);
    }
    let rows = hh
        .chunks_exact(3 * h)
        .zip(work.chunks_exact(3 * h))
        .zip(dx.chunks_exact_mut(3 * h).zip(dhh.chunks_exact_mut(3 * h)))
        .zip(
            hp.chunks_exact(h)
                .zip(grad.chunks_exact(h))
                .zip(dhp.chunks_exact_mut(h)),
        );
    for (((hr, wr), (dxr, dhr)), ((hpr, gr), dhpr)) in rows {
        let [r, z, n] = std::array::from_fn(|k| &wr[k * h..][..h]);
        let hn = &hr[2 * h..][..h];
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
    (dx, dhh, dhp)
}
