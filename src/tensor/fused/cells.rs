//! One step of an LSTM or GRU as one op: the fused kernels of `cpu/cells.rs` where every
//! operand is a contiguous f32 CPU tensor without a forward-mode tangent, the same
//! arithmetic composed from primitives elsewhere (a GPU, views, dual tensors). The backward
//! rules run the fused gradient kernel, or, under `create_graph`, the composed formulas, so
//! that the gradient can be differentiated again. The fused forward pass keeps the activated
//! gates as a workspace that its node holds, so the fused gradient computes no activations.

use super::{host_tensor, on_host};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::error::Result;
use crate::host::HostBuffer;
use crate::storage::Storage;
use crate::tensor::Tensor;

/// `(B, H)` when `state` is `[B, H]` and `x` and `hh` are `[B, gates * H]`: the shapes the
/// fused kernels take.
fn gate_shapes(x: &Tensor, hh: &Tensor, state: &Tensor, gates: usize) -> Option<(usize, usize)> {
    let &[b, h] = state.shape() else {
        return None;
    };
    (x.shape() == [b, gates * h] && hh.shape() == x.shape()).then_some((b, h))
}

/// The LSTM's activated gates i, f, g, o, composed from primitives.
fn lstm_gates(x: &Tensor, hh: &Tensor) -> Result<[Tensor; 4]> {
    let g = x.add(hh)?.chunk(4, -1)?;
    Ok([
        g[0].sigmoid()?,
        g[1].sigmoid()?,
        g[2].tanh()?,
        g[3].sigmoid()?,
    ])
}

/// The GRU's gates r, z, n, and the hidden state's share of n, composed from primitives.
fn gru_gates(x: &Tensor, hh: &Tensor) -> Result<[Tensor; 4]> {
    let xg = x.chunk(3, -1)?;
    let hg = hh.chunk(3, -1)?;
    let r = xg[0].add(&hg[0])?.sigmoid()?;
    let z = xg[1].add(&hg[1])?.sigmoid()?;
    let n = xg[2].add(&r.mul(&hg[2])?)?.tanh()?;
    Ok([r, z, n, hg[2].clone()])
}

/// The LSTM step from the input's and the hidden state's gate shares `x` and `hh`
/// (`[B, 4H]`, gates i, f, g, o) and the cell state `c` (`[B, H]`): `(h', c')`.
pub(crate) fn lstm_cell(x: &Tensor, hh: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
    if let Some((b, h)) = gate_shapes(x, hh, c, 4) {
        if let Some((out, work)) = on_host([x, hh, c], |[x, hh, c]| {
            crate::cpu::cells::lstm_forward(x, hh, c, h)
        }) {
            let work = host_tensor(work, &[b, 5 * h]);
            let out = Tensor::from_op(
                Storage::Cpu(HostBuffer::F32(out)),
                &[2, b, h],
                || BackwardOp::LstmCell { work },
                &[x, hh, c],
            )?;
            return Ok((out.select(0, 0)?, out.select(0, 1)?));
        }
    }
    let [i, f, g, o] = lstm_gates(x, hh)?;
    let c_next = f.mul(c)?.add(&i.mul(&g)?)?;
    Ok((o.mul(&c_next.tanh()?)?, c_next))
}

/// The gradients of `x`, `hh` and `c` from `grad` (`[2, B, H]`: the gradients of `h'` and
/// `c'`) and the forward pass's workspace.
pub(crate) fn lstm_cell_backward(
    grad: &Tensor,
    inputs: &[Tensor],
    work: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let (x, hh, c) = (&inputs[0], &inputs[1], &inputs[2]);
    let (b, h) = (c.shape()[0], c.shape()[1]);
    if !is_grad_enabled() {
        let grad = grad.contiguous()?;
        if let Some((dgates, dc)) = on_host([c, work, &grad], |[c, work, grad]| {
            crate::cpu::cells::lstm_backward(c, work, grad, h)
        }) {
            let dgates = host_tensor(dgates, &[b, 4 * h]);
            return Ok(vec![
                Some(dgates.clone()),
                Some(dgates),
                Some(host_tensor(dc, &[b, h])),
            ]);
        }
    }
    let [i, f, gg, o] = lstm_gates(x, hh)?;
    let tc = f.mul(c)?.add(&i.mul(&gg)?)?.tanh()?;
    let (dh, dc_next) = (grad.select(0, 0)?, grad.select(0, 1)?);
    let sigmoid_slope = |s: &Tensor| s.mul(&(1.0 - s));
    let dcn = dc_next.add(&dh.mul(&o)?.mul(&(1.0 - &tc.square()?))?)?;
    let dgates = Tensor::cat(
        &[
            &dcn.mul(&gg)?.mul(&sigmoid_slope(&i)?)?,
            &dcn.mul(c)?.mul(&sigmoid_slope(&f)?)?,
            &dcn.mul(&i)?.mul(&(1.0 - &gg.square()?))?,
            &dh.mul(&tc)?.mul(&sigmoid_slope(&o)?)?,
        ],
        -1,
    )?;
    Ok(vec![Some(dgates.clone()), Some(dgates), Some(dcn.mul(&f)?)])
}

/// The GRU step from `x` and `hh` (`[B, 3H]`, gates r, z, n; `hh` includes `b_hh`) and the
/// hidden state `hp` (`[B, H]`): `h' = (1 - z) n + z hp` with `n = tanh(x_n + r hh_n)`.
pub(crate) fn gru_cell(x: &Tensor, hh: &Tensor, hp: &Tensor) -> Result<Tensor> {
    if let Some((b, h)) = gate_shapes(x, hh, hp, 3) {
        if let Some((out, work)) = on_host([x, hh, hp], |[x, hh, hp]| {
            crate::cpu::cells::gru_forward(x, hh, hp, h)
        }) {
            let work = host_tensor(work, &[b, 3 * h]);
            return Tensor::from_op(
                Storage::Cpu(HostBuffer::F32(out)),
                &[b, h],
                || BackwardOp::GruCell { work },
                &[x, hh, hp],
            );
        }
    }
    let [_, z, n, _] = gru_gates(x, hh)?;
    (1.0 - &z).mul(&n)?.add(&z.mul(hp)?)
}

/// The gradients of `x`, `hh` and `hp` from `h'`'s gradient and the forward pass's
/// workspace.
pub(crate) fn gru_cell_backward(
    grad: &Tensor,
    inputs: &[Tensor],
    work: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let (x, hh, hp) = (&inputs[0], &inputs[1], &inputs[2]);
    let (b, h) = (hp.shape()[0], hp.shape()[1]);
    if !is_grad_enabled() {
        let grad = grad.contiguous()?;
        if let Some((dx, dhh, dhp)) = on_host([hh, hp, work, &grad], |[hh, hp, work, grad]| {
            crate::cpu::cells::gru_backward(hh, hp, work, grad, h)
        }) {
            return Ok(vec![
                Some(host_tensor(dx, &[b, 3 * h])),
                Some(host_tensor(dhh, &[b, 3 * h])),
                Some(host_tensor(dhp, &[b, h])),
            ]);
        }
    }
    let [r, z, n, hn] = gru_gates(x, hh)?;
    let dn = grad.mul(&(1.0 - &z))?.mul(&(1.0 - &n.square()?))?;
    let dz = grad.mul(&hp.sub(&n)?)?.mul(&z.mul(&(1.0 - &z))?)?;
    let dr = dn.mul(&hn)?.mul(&r.mul(&(1.0 - &r))?)?;
    Ok(vec![
        Some(Tensor::cat(&[&dr, &dz, &dn], -1)?),
        Some(Tensor::cat(&[&dr, &dz, &dn.mul(&r)?], -1)?),
        Some(grad.mul(&z)?),
    ])
}
