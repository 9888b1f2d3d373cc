//! Recurrent layers with PyTorch's parameter names and layouts (`weight_ih_l0`,
//! `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `_reverse` for the backward direction), so
//! that PyTorch checkpoints load. The input's share of every step's gates is one matmul
//! over the whole sequence; the steps themselves run as one op (`tensor/fused/recurrent.rs`),
//! one fused loop on the CPU.

use super::functional as F;
use super::module::{join, Item, ItemMut, Module, Training};
use crate::cpu::recurrent::Cell;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::fused::recurrent::recurrent_layer;
use crate::tensor::Tensor;

/// Which recurrence a layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` (`nn.RNN`).
    Tanh,
    /// The same with ReLU (`nn.RNN(nonlinearity="relu")`).
    Relu,
    /// Gates r, z, n (`nn.GRU`).
    Gru,
    /// Gates i, f, g, o with a cell state (`nn.LSTM`).
    Lstm,
}

impl CellKind {
    /// Rows of the weights per hidden unit: one per gate.
    fn gates(self) -> usize {
        match self {
            CellKind::Tanh | CellKind::Relu => 1,
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }
}

/// One direction of one layer's weights.
pub struct Direction {
    /// `[gates * H, I]`: the input's weights, gate blocks in PyTorch's order.
    pub weight_ih: Tensor,
    /// `[gates * H, H]`: the hidden state's weights.
    pub weight_hh: Tensor,
    /// `[gates * H]`, added to the input's share.
    pub bias_ih: Option<Tensor>,
    /// `[gates * H]`, added to the hidden state's share (inside `r *` for GRU's n gate).
    pub bias_hh: Option<Tensor>,
}

/// Run one direction over `x [T, B, I]` (time first) from `h0 [B, H]` (and `c0` for an
/// LSTM): the outputs `[T, B, H]`, the last hidden state and the last cell state.
pub fn run_direction(
    kind: CellKind,
    x: &Tensor,
    h0: &Tensor,
    c0: Option<&Tensor>,
    w: &Direction,
    reverse: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let t_len = x.shape()[0];
    let hidden = w.weight_hh.shape()[1];
    // Where the hidden state's share only adds to the input's (all but the GRU, whose n
    // gate takes it inside `r *`), b_hh joins b_ih once, instead of an add per step
    // forward and a sum per step backward.
    let (bias_x, bias_h) = match (kind, &w.bias_ih, &w.bias_hh) {
        (CellKind::Gru, bi, bh) | (_, bi, bh @ None) => (bi.clone(), bh.clone()),
        (_, Some(bi), Some(bh)) => (Some(bi.add(bh)?), None),
        (_, None, Some(bh)) => (Some(bh.clone()), None),
    };
    // x W_ih^T + the bias for every step at once: [T, B, gates * H].
    let xs = F::linear(x, &w.weight_ih, bias_x.as_ref())?;
    if t_len == 0 {
        let output = Tensor::zeros_on([0, h0.shape()[0], hidden], (x.dtype(), x.device()))?;
        return Ok((output, h0.clone(), c0.cloned()));
    }
    let cell = match kind {
        CellKind::Tanh => Cell::Tanh,
        CellKind::Relu => Cell::Relu,
        CellKind::Gru => Cell::Gru,
        CellKind::Lstm => Cell::Lstm,
    };
    let c0 = match (kind, c0) {
        (CellKind::Lstm, None) => return Err(Error::invalid("LSTM", "no cell state")),
        (CellKind::Lstm, c0) => c0,
        (CellKind::Tanh | CellKind::Relu | CellKind::Gru, _) => None,
    };
    let states = recurrent_layer(cell, reverse, &xs, h0, c0, &w.weight_hh, bias_h.as_ref())?;
    // The last step run holds the final states.
    let last = if reverse { 0 } else { t_len as isize - 1 };
    let output = states.select(0, 0)?;
    let h = output.select(0, last)?;
    let c = match kind {
        CellKind::Lstm => Some(states.select(0, 1)?.select(0, last)?),
        CellKind::Tanh | CellKind::Relu | CellKind::Gru => None,
    };
    Ok((output, h, c))
}

/// `nn.RNN`, `nn.GRU` and `nn.LSTM`: `num_layers` stacked layers, optionally
/// bidirectional, `batch_first` inputs, dropout between layers in training. Build with
/// [`Recurrent::rnn`], [`Recurrent::gru`] or [`Recurrent::lstm`] and the builder options.
pub struct Recurrent {
    /// Per layer, the forward direction then (if bidirectional) the reverse one.
    layers: Vec<Vec<Direction>>,
    kind: CellKind,
    /// Units of the hidden state.
    pub hidden_size: usize,
    /// Inputs and outputs are `[B, T, ..]`.
    pub batch_first: bool,
    /// Dropout between layers in training.
    pub dropout: f64,
    training: Training,
}

/// The state a recurrent layer starts from and returns: `h [L * D, B, H]`, and for an LSTM
/// `c` of the same shape.
#[derive(Debug, Clone)]
pub struct State {
    /// The hidden state.
    pub h: Tensor,
    /// The cell state (LSTM only).
    pub c: Option<Tensor>,
}

impl Recurrent {
    /// `nn.RNN(input_size, hidden_size)` with tanh.
    pub fn rnn(input_size: usize, hidden_size: usize, device: &Device) -> Result<Recurrent> {
        Recurrent::new(
            CellKind::Tanh,
            input_size,
            hidden_size,
            1,
            false,
            true,
            device,
        )
    }

    /// `nn.GRU(input_size, hidden_size)`.
    pub fn gru(input_size: usize, hidden_size: usize, device: &Device) -> Result<Recurrent> {
        Recurrent::new(
            CellKind::Gru,
            input_size,
            hidden_size,
            1,
            false,
            true,
            device,
        )
    }

    /// `nn.LSTM(input_size, hidden_size)`.
    pub fn lstm(input_size: usize, hidden_size: usize, device: &Device) -> Result<Recurrent> {
        Recurrent::new(
            CellKind::Lstm,
            input_size,
            hidden_size,
            1,
            false,
            true,
            device,
        )
    }

    /// Any configuration: the weights drawn like PyTorch's, `U(-1/sqrt(H), 1/sqrt(H))`.
    pub fn new(
        kind: CellKind,
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        bidirectional: bool,
        bias: bool,
        device: &Device,
    ) -> Result<Recurrent> {
        if hidden_size == 0 || num_layers == 0 {
            return Err(Error::invalid(
                "Recurrent",
                "hidden_size and num_layers must be positive",
            ));
        }
        let bound = 1.0 / (hidden_size as f64).sqrt();
        let g = kind.gates().checked_mul(hidden_size).ok_or_else(|| {
            Error::invalid(
                "Recurrent",
                format!("hidden_size {hidden_size} is too large"),
            )
        })?;
        let dirs = if bidirectional { 2 } else { 1 };
        let draw = |shape: &[usize]| super::layers::uniform_param(shape, bound, device);
        let mut layers = Vec::with_capacity(num_layers);
        for l in 0..num_layers {
            let inputs = if l == 0 {
                input_size
            } else {
                hidden_size * dirs
            };
            let mut layer = Vec::with_capacity(dirs);
            for _ in 0..dirs {
                layer.push(Direction {
                    weight_ih: draw(&[g, inputs])?,
                    weight_hh: draw(&[g, hidden_size])?,
                    bias_ih: if bias { Some(draw(&[g])?) } else { None },
                    bias_hh: if bias { Some(draw(&[g])?) } else { None },
                });
            }
            layers.push(layer);
        }
        Ok(Recurrent {
            layers,
            kind,
            hidden_size,
            batch_first: false,
            dropout: 0.0,
            training: Training::default(),
        })
    }

    /// Inputs and outputs `[B, T, ..]` instead of `[T, B, ..]`.
    pub fn batch_first(mut self, on: bool) -> Self {
        self.batch_first = on;
        self
    }

    /// Dropout on the outputs of every layer but the last, in training.
    pub fn dropout(mut self, p: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "Recurrent",
                format!("dropout must be in [0, 1), got {p}"),
            ));
        }
        self.dropout = p;
        Ok(self)
    }

    /// The weights of layer `l`'s direction `d` (0 forward, 1 reverse).
    pub fn weights(&self, l: usize, d: usize) -> Option<&Direction> {
        self.layers.get(l)?.get(d)
    }

    /// Run over `x` (`[T, B, I]`, or `[B, T, I]` with `batch_first`) from `state` (zeros
    /// when `None`): the top layer's outputs `[T, B, D * H]` and the final state
    /// `[L * D, B, H]`.
    pub fn forward(&self, x: &Tensor, state: Option<&State>) -> Result<(Tensor, State)> {
        const OP: &str = "Recurrent";
        if x.ndim() != 3 {
            return Err(Error::bad_shape(OP, x.shape(), "expected a 3-D input"));
        }
        let x = if self.batch_first {
            x.transpose(0, 1)?
        } else {
            x.clone()
        };
        let (batch, dirs) = (x.shape()[1], self.layers[0].len());
        let states = self.layers.len() * dirs;
        let want = [states, batch, self.hidden_size];
        let zeros = || Tensor::zeros_on(want, (x.dtype(), x.device()));
        let h0 = match state {
            Some(s) => s.h.clone(),
            None => zeros()?,
        };
        let c0 = match (self.kind, state.and_then(|s| s.c.clone())) {
            (CellKind::Lstm, Some(c)) => Some(c),
            (CellKind::Lstm, None) => Some(zeros()?),
            _ => None,
        };
        for s in std::iter::once(&h0).chain(c0.as_ref()) {
            if s.shape() != want {
                return Err(Error::shapes(
                    OP,
                    &want,
                    s.shape(),
                    "the initial state must be [num_layers * directions, batch, hidden]",
                ));
            }
        }
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        let mut input = x;
        for (l, layer) in self.layers.iter().enumerate() {
            let mut outs = Vec::with_capacity(dirs);
            for (d, w) in layer.iter().enumerate() {
                let k = (l * dirs + d) as isize;
                let c = c0.as_ref().map(|c| c.select(0, k)).transpose()?;
                let (out, h, c) =
                    run_direction(self.kind, &input, &h0.select(0, k)?, c.as_ref(), w, d == 1)?;
                outs.push(out);
                hs.push(h);
                cs.extend(c);
            }
            input = Tensor::cat(&outs.iter().collect::<Vec<_>>(), -1)?;
            if self.dropout > 0.0 && self.training.get() && l + 1 < self.layers.len() {
                input = F::dropout(&input, self.dropout)?;
            }
        }
        let output = if self.batch_first {
            input.transpose(0, 1)?
        } else {
            input
        };
        let h = Tensor::stack(&hs.iter().collect::<Vec<_>>(), 0)?;
        let c = if cs.is_empty() {
            None
        } else {
            Some(Tensor::stack(&cs.iter().collect::<Vec<_>>(), 0)?)
        };
        Ok((output, State { h, c }))
    }
}

// PyTorch names a layer's tensors `weight_ih_l{k}` (`_reverse` for the second direction),
// not by their place in nested lists: this module reports its state itself.
impl Module for Recurrent {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        for (l, layer) in self.layers.iter().enumerate() {
            for (d, w) in layer.iter().enumerate() {
                for (what, t) in w.tensors() {
                    f(&join(prefix, &tensor_name(l, d, what)), Item::Parameter(t));
                }
            }
        }
        f(&join(prefix, "training"), Item::Training(&self.training));
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        for (l, layer) in self.layers.iter_mut().enumerate() {
            for (d, w) in layer.iter_mut().enumerate() {
                for (what, t) in w.tensors_mut() {
                    f(
                        &join(prefix, &tensor_name(l, d, what)),
                        ItemMut::Parameter(t),
                    );
                }
            }
        }
        f(prefix, ItemMut::Module(self));
    }
}

fn tensor_name(l: usize, d: usize, what: &str) -> String {
    format!("{what}_l{l}{}", if d == 1 { "_reverse" } else { "" })
}

impl Direction {
    fn tensors(&self) -> Vec<(&'static str, &Tensor)> {
        let mut v = vec![
            ("weight_ih", &self.weight_ih),
            ("weight_hh", &self.weight_hh),
        ];
        v.extend(self.bias_ih.as_ref().map(|b| ("bias_ih", b)));
        v.extend(self.bias_hh.as_ref().map(|b| ("bias_hh", b)));
        v
    }

    fn tensors_mut(&mut self) -> Vec<(&'static str, &mut Tensor)> {
        let mut v = vec![
            ("weight_ih", &mut self.weight_ih),
            ("weight_hh", &mut self.weight_hh),
        ];
        v.extend(self.bias_ih.as_mut().map(|b| ("bias_ih", b)));
        v.extend(self.bias_hh.as_mut().map(|b| ("bias_hh", b)));
        v
    }
}
