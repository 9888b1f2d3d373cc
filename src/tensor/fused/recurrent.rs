//! One direction of a recurrent layer over a whole sequence as one op: the layer loop of
//! `cpu/recurrent.rs` where every operand is a contiguous f32 CPU tensor without a
//! forward-mode tangent, the same steps composed from primitives elsewhere (a GPU, views,
//! dual tensors). The backward rule runs the fused gradient loop, or, under `create_graph`,
//! differentiates the composite so that the gradient can be differentiated again.
//!
//! The op's inputs are the input's share of the gates for every step `xs [T, B, G * H]`
//! (its bias included), `h0 [B, H]`, for an LSTM `c0 [B, H]`, `w_hh [G * H, H]` and, where
//! given, `b_hh [G * H]`; its output packs every step's states, `[S, T, B, H]` (h, and c
//! for an LSTM).

use super::{composite_backward, host_tensor, on_host};
use crate::autograd::{is_grad_enabled, BackwardOp};
use crate::cpu::recurrent::{Cell, LayerGeometry};
use crate::error::{Error, Result};
use crate::host::HostBuffer;
use crate::nn::functional as F;
use crate::storage::Storage;
use crate::tensor::Tensor;

const OP: &str = "recurrent layer";

/// The layer's inputs by role.
struct Inputs<'a> {
    xs: &'a Tensor,
    h0: &'a Tensor,
    c0: Option<&'a Tensor>,
    w_hh: &'a Tensor,
    b_hh: Option<&'a Tensor>,
}

impl<'a> Inputs<'a> {
    /// The op's input list, in the order [`Inputs::of`] reads.
    fn list(&self) -> Vec<&'a Tensor> {
        let mut v = vec![self.xs, self.h0];
        v.extend(self.c0);
        v.push(self.w_hh);
        v.extend(self.b_hh);
        v
    }

    /// Roles from an input list of a layer of `cell`.
    fn of(cell: Cell, inputs: &'a [Tensor]) -> Result<Inputs<'a>> {
        let lstm = cell == Cell::Lstm;
        let at = |i: usize| {
            inputs
                .get(i)
                .ok_or_else(|| Error::autograd(OP, "the node lost an input"))
        };
        let w = if lstm { 3 } else { 2 };
        Ok(Inputs {
            xs: at(0)?,
            h0: at(1)?,
            c0: if lstm { Some(at(2)?) } else { None },
            w_hh: at(w)?,
            b_hh: inputs.get(w + 1),
        })
    }
}

/// The geometry of a layer of `cell` over these inputs, or an `Err` naming the shape
/// that does not fit.
fn geometry(cell: Cell, reverse: bool, t: &Inputs<'_>) -> Result<LayerGeometry> {
    let &[_, hidden] = t.w_hh.shape() else {
        return Err(Error::bad_shape(
            OP,
            t.w_hh.shape(),
            "w_hh must be [gates * H, H]",
        ));
    };
    let &[steps, batch, _] = t.xs.shape() else {
        return Err(Error::bad_shape(
            OP,
            t.xs.shape(),
            "xs must be [T, B, gates * H]",
        ));
    };
    let g = LayerGeometry {
        cell,
        steps,
        batch,
        hidden,
        reverse,
    };
    let gh = g.gates() * hidden;
    let expect = |what: &str, t: &Tensor, want: &[usize]| {
        if t.shape() == want {
            Ok(())
        } else {
            Err(Error::shapes(
                OP,
                want,
                t.shape(),
                format!("{what} does not fit the weights"),
            ))
        }
    };
    expect("w_hh", t.w_hh, &[gh, hidden])?;
    expect("xs", t.xs, &[steps, batch, gh])?;
    expect("h0", t.h0, &[batch, hidden])?;
    match (cell, t.c0) {
        (Cell::Lstm, Some(c0)) => expect("c0", c0, &[batch, hidden])?,
        (Cell::Lstm, None) => return Err(Error::invalid(OP, "an LSTM needs a cell state")),
        (_, Some(_)) => return Err(Error::invalid(OP, "only an LSTM has a cell state")),
        (_, None) => {}
    }
    if let Some(b) = t.b_hh {
        expect("b_hh", b, &[gh])?;
    }
    Ok(g)
}

/// The layer of `cell` over `xs` from `h0` (and `c0`) with `w_hh` (and `b_hh`): every
/// step's states `[S, T, B, H]`.
pub(crate) fn recurrent_layer(
    cell: Cell,
    reverse: bool,
    xs: &Tensor,
    h0: &Tensor,
    c0: Option<&Tensor>,
    w_hh: &Tensor,
    b_hh: Option<&Tensor>,
) -> Result<Tensor> {
    let inputs = Inputs {
        xs,
        h0,
        c0,
        w_hh,
        b_hh,
    };
    let g = geometry(cell, reverse, &inputs)?;
    let list = inputs.list();
    let nonempty = g.steps * g.batch * g.hidden > 0;
    // A GRU's missing c0 fills the slot of the kernels' operand list with h0, unread.
    let c0 = c0.unwrap_or(h0);
    let fused = if !nonempty {
        None
    } else if let Some(b) = b_hh {
        on_host([xs, h0, c0, w_hh, b], |[xs, h0, c0, w, b]| {
            crate::cpu::recurrent::layer_forward(&g, xs, h0, cell_state(&g, c0), w, Some(b))
        })
    } else {
        on_host([xs, h0, c0, w_hh], |[xs, h0, c0, w]| {
            crate::cpu::recurrent::layer_forward(&g, xs, h0, cell_state(&g, c0), w, None)
        })
    };
    match fused {
        Some((out, work)) => {
            let work = host_tensor(work, &g.work_shape());
            Tensor::from_op(
                Storage::Cpu(HostBuffer::F32(out)),
                &g.output_shape(),
                || BackwardOp::RecurrentLayer { geometry: g, work },
                &list,
            )
        }
        None => composite(&g, &list.into_iter().cloned().collect::<Vec<_>>()),
    }
}

/// `c0` for an LSTM, nothing for the other cells (whose slot holds an unread stand-in).
fn cell_state<'a>(g: &LayerGeometry, c0: &'a [f32]) -> &'a [f32] {
    if g.cell == Cell::Lstm {
        c0
    } else {
        &[]
    }
}

/// The layer composed from primitives, step by step.
fn composite(g: &LayerGeometry, inputs: &[Tensor]) -> Result<Tensor> {
    let t = Inputs::of(g.cell, inputs)?;
    let (mut h, mut c) = (t.h0.clone(), t.c0.cloned());
    let (mut hs, mut cs) = (vec![None; g.steps], vec![None; g.steps]);
    for k in 0..g.steps {
        let step = g.time(k);
        let x = t.xs.select(0, step as isize)?;
        let hh = F::linear(&h, t.w_hh, t.b_hh)?;
        h = match (g.cell, &c) {
            (Cell::Tanh, _) => x.add(&hh)?.tanh()?,
            (Cell::Relu, _) => x.add(&hh)?.relu()?,
            (Cell::Gru, _) => {
                let [_, z, n, _] = gru_gates(&x, &hh)?;
                (1.0 - &z).mul(&n)?.add(&z.mul(&h)?)?
            }
            (Cell::Lstm, Some(cell)) => {
                let [i, f, gg, o] = lstm_gates(&x, &hh)?;
                let c_next = f.mul(cell)?.add(&i.mul(&gg)?)?;
                let h_next = o.mul(&c_next.tanh()?)?;
                cs[step] = Some(c_next.clone());
                c = Some(c_next);
                h_next
            }
            (Cell::Lstm, None) => return Err(Error::invalid(OP, "an LSTM needs a cell state")),
        };
        hs[step] = Some(h.clone());
    }
    let stack = |v: Vec<Option<Tensor>>| -> Result<Tensor> {
        let v: Vec<Tensor> = v.into_iter().flatten().collect();
        if v.is_empty() {
            return Tensor::zeros_on([g.steps, g.batch, g.hidden], (t.h0.dtype(), t.h0.device()));
        }
        Tensor::stack(&v.iter().collect::<Vec<_>>(), 0)
    };
    let hs = stack(hs)?;
    match g.cell {
        Cell::Lstm => Tensor::stack(&[&hs, &stack(cs)?], 0),
        Cell::Tanh | Cell::Relu | Cell::Gru => hs.unsqueeze(0),
    }
}

/// The LSTM's activated gates i, f, g, o.
fn lstm_gates(x: &Tensor, hh: &Tensor) -> Result<[Tensor; 4]> {
    let g = x.add(hh)?.chunk(4, -1)?;
    Ok([
        g[0].sigmoid()?,
        g[1].sigmoid()?,
        g[2].tanh()?,
        g[3].sigmoid()?,
    ])
}

/// The GRU's gates r, z, n, and the hidden state's share of n (`hh` includes `b_hh`,
/// which r scales, as PyTorch does).
fn gru_gates(x: &Tensor, hh: &Tensor) -> Result<[Tensor; 4]> {
    let xg = x.chunk(3, -1)?;
    let hg = hh.chunk(3, -1)?;
    let r = xg[0].add(&hg[0])?.sigmoid()?;
    let z = xg[1].add(&hg[1])?.sigmoid()?;
    let n = xg[2].add(&r.mul(&hg[2])?)?.tanh()?;
    Ok([r, z, n, hg[2].clone()])
}

/// The gradients of the layer's inputs from its output's (`grad`), the output and the
/// forward pass's workspace.
pub(crate) fn recurrent_layer_backward(
    grad: &Tensor,
    inputs: &[Tensor],
    out: &Tensor,
    g: &LayerGeometry,
    work: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    if is_grad_enabled() {
        return composite_backward(grad, inputs, |a| composite(g, a));
    }
    let t = Inputs::of(g.cell, inputs)?;
    let grad = grad.contiguous()?;
    let want = (
        t.w_hh.requires_grad(),
        t.b_hh.is_some_and(|b| b.requires_grad()),
    );
    let c0 = t.c0.unwrap_or(t.h0);
    let grads = on_host(
        [t.h0, c0, t.w_hh, out, work, &grad],
        |[h0, c0, w, out, work, grad]| {
            crate::cpu::recurrent::layer_backward(
                g,
                h0,
                cell_state(g, c0),
                w,
                out,
                work,
                grad,
                want,
            )
        },
    )
    .ok_or_else(|| Error::autograd(OP, "the fused layer's operands left the host"))?;
    let [steps, batch, hidden] = [g.steps, g.batch, g.hidden];
    let gh = g.gates() * hidden;
    let mut v = vec![
        Some(host_tensor(grads.xs, &[steps, batch, gh])),
        Some(host_tensor(grads.h0, &[batch, hidden])),
    ];
    if g.cell == Cell::Lstm {
        v.push(Some(host_tensor(grads.c0, &[batch, hidden])));
    }
    v.push(grads.w_hh.map(|w| host_tensor(w, &[gh, hidden])));
    if t.b_hh.is_some() {
        v.push(grads.b_hh.map(|b| host_tensor(b, &[gh])));
    }
    Ok(v)
}
