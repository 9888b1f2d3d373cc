//! The optimizers' updates as fused programs (`gpu/kernels/fused.rs`): on a GPU, one kernel
//! per parameter instead of six to fourteen ops, computing the same f32 operations in the
//! same order as the ops (a compiler may still contract a multiply and an add into one
//! rounding). The numbers that change between steps (the step size, Adam's bias correction
//! and decay) are read from one-element tensors, so a captured step's replays see them move.

use crate::error::Result;
use crate::gpu::kernels::fused::{Node, Operand, Program};
use crate::op::{BinaryOp::*, UnaryOp};
use crate::storage::fused::run;
use crate::tensor::Tensor;

/// `p -= g * lr`. Operands: p, g, lr.
static SGD: Program = Program {
    name: "sgd",
    operands: &[Operand::Write(4), Operand::Read, Operand::Read],
    params: 0,
    nodes: &[
        Node::Load(0),
        Node::Load(1),
        Node::LoadScalar(2),
        Node::Binary(Mul, 1, 2),
        Node::Binary(Sub, 0, 3),
    ],
};

/// The nodes the momentum programs start with: p, g, buf, lr, momentum, 1 - dampening,
/// then `buf * momentum + g * (1 - dampening)` at node 8; then `tail`.
macro_rules! momentum_nodes {
    ($($tail:expr),* $(,)?) => {
        &[
            Node::Load(0),
            Node::Load(1),
            Node::Load(2),
            Node::LoadScalar(3),
            Node::Param(0),
            Node::Param(1),
            Node::Binary(Mul, 2, 4),
            Node::Binary(Mul, 1, 5),
            Node::Binary(Add, 6, 7),
            $($tail),*
        ]
    };
}

/// `buf = buf * momentum + g * (1 - dampening); p -= buf * lr`. Operands: p, g, buf, lr;
/// parameters: momentum, 1 - dampening.
static SGD_MOMENTUM: Program = Program {
    name: "sgd_momentum",
    operands: &[
        Operand::Write(10),
        Operand::Read,
        Operand::Write(8),
        Operand::Read,
    ],
    params: 2,
    nodes: momentum_nodes![Node::Binary(Mul, 8, 3), Node::Binary(Sub, 0, 9)],
};

/// Nesterov's: the same buffer, and `p -= (g + buf * momentum) * lr`.
static SGD_NESTEROV: Program = Program {
    name: "sgd_nesterov",
    operands: &[
        Operand::Write(12),
        Operand::Read,
        Operand::Write(8),
        Operand::Read,
    ],
    params: 2,
    nodes: momentum_nodes![
        Node::Binary(Mul, 8, 4),
        Node::Binary(Add, 1, 9),
        Node::Binary(Mul, 10, 3),
        Node::Binary(Sub, 0, 11),
    ],
};

/// Adam and AdamW: `p *= decay; m = m b1 + g (1 - b1); v = v b2 + g^2 (1 - b2);
/// p -= m / (sqrt(v) / sqrt(c2) + eps) * step_size`. Operands: p, g, m, v, step_size,
/// sqrt(c2), decay; parameters: b1, 1 - b1, b2, 1 - b2, eps.
static ADAM: Program = Program {
    name: "adam",
    operands: &[
        Operand::Write(25),
        Operand::Read,
        Operand::Write(15),
        Operand::Write(19),
        Operand::Read,
        Operand::Read,
        Operand::Read,
    ],
    params: 5,
    nodes: &[
        Node::Load(0),
        Node::Load(1),
        Node::Load(2),
        Node::Load(3),
        Node::LoadScalar(4),
        Node::LoadScalar(5),
        Node::LoadScalar(6),
        Node::Param(0),
        Node::Param(1),
        Node::Param(2),
        Node::Param(3),
        Node::Param(4),
        Node::Binary(Mul, 0, 6),
        Node::Binary(Mul, 2, 7),
        Node::Binary(Mul, 1, 8),
        Node::Binary(Add, 13, 14),
        Node::Binary(Mul, 3, 9),
        Node::Unary(UnaryOp::Square, 1),
        Node::Binary(Mul, 17, 10),
        Node::Binary(Add, 16, 18),
        Node::Unary(UnaryOp::Sqrt, 19),
        Node::Binary(Div, 20, 5),
        Node::Binary(Add, 21, 11),
        Node::Binary(Div, 15, 22),
        Node::Binary(Mul, 23, 4),
        Node::Binary(Sub, 12, 24),
    ],
};

/// RMSprop: `s = s a + g^2 (1 - a); p -= g / (sqrt(s) + eps) * lr`. Operands: p, g, s, lr;
/// parameters: a, 1 - a, eps.
static RMSPROP: Program = Program {
    name: "rmsprop",
    operands: &[
        Operand::Write(15),
        Operand::Read,
        Operand::Write(10),
        Operand::Read,
    ],
    params: 3,
    nodes: &[
        Node::Load(0),
        Node::Load(1),
        Node::Load(2),
        Node::LoadScalar(3),
        Node::Param(0),
        Node::Param(1),
        Node::Param(2),
        Node::Binary(Mul, 2, 4),
        Node::Unary(UnaryOp::Square, 1),
        Node::Binary(Mul, 8, 5),
        Node::Binary(Add, 7, 9),
        Node::Unary(UnaryOp::Sqrt, 10),
        Node::Binary(Add, 11, 6),
        Node::Binary(Div, 1, 12),
        Node::Binary(Mul, 13, 3),
        Node::Binary(Sub, 0, 14),
    ],
};

/// RMSprop with momentum: the same `s` and update, then `b = b momentum + update;
/// p -= b lr`. Operands: p, g, s, b, lr; parameters: a, 1 - a, eps, momentum.
static RMSPROP_MOMENTUM: Program = Program {
    name: "rmsprop_momentum",
    operands: &[
        Operand::Write(19),
        Operand::Read,
        Operand::Write(12),
        Operand::Write(17),
        Operand::Read,
    ],
    params: 4,
    nodes: &[
        Node::Load(0),
        Node::Load(1),
        Node::Load(2),
        Node::Load(3),
        Node::LoadScalar(4),
        Node::Param(0),
        Node::Param(1),
        Node::Param(2),
        Node::Param(3),
        Node::Binary(Mul, 2, 5),
        Node::Unary(UnaryOp::Square, 1),
        Node::Binary(Mul, 10, 6),
        Node::Binary(Add, 9, 11),
        Node::Unary(UnaryOp::Sqrt, 12),
        Node::Binary(Add, 13, 7),
        Node::Binary(Div, 1, 14),
        Node::Binary(Mul, 3, 8),
        Node::Binary(Add, 16, 15),
        Node::Binary(Mul, 17, 4),
        Node::Binary(Sub, 0, 18),
    ],
};

/// Adagrad: `s += g^2; p -= g / (sqrt(s) + eps) * clr`. Operands: p, g, s, clr;
/// parameter: eps.
static ADAGRAD: Program = Program {
    name: "adagrad",
    operands: &[
        Operand::Write(11),
        Operand::Read,
        Operand::Write(6),
        Operand::Read,
    ],
    params: 1,
    nodes: &[
        Node::Load(0),
        Node::Load(1),
        Node::Load(2),
        Node::LoadScalar(3),
        Node::Param(0),
        Node::Unary(UnaryOp::Square, 1),
        Node::Binary(Add, 2, 5),
        Node::Unary(UnaryOp::Sqrt, 6),
        Node::Binary(Add, 7, 4),
        Node::Binary(Div, 1, 8),
        Node::Binary(Mul, 9, 3),
        Node::Binary(Sub, 0, 10),
    ],
};

/// Every fused program of the optimizers (validated with naga in `tests/shaders.rs`).
pub static FUSED_PROGRAMS: &[&Program] = &[
    &SGD,
    &SGD_MOMENTUM,
    &SGD_NESTEROV,
    &ADAM,
    &RMSPROP,
    &RMSPROP_MOMENTUM,
    &ADAGRAD,
];

/// Plain SGD's update of `p`, fused where it can be (`Ok(false)`: use the ops).
pub(super) fn sgd(p: &Tensor, g: &Tensor, lr: &Tensor) -> Result<bool> {
    run(&SGD, &[p, g, lr], &[])
}

/// SGD with momentum (its buffer already made by a first step).
pub(super) fn sgd_momentum(
    p: &Tensor,
    g: &Tensor,
    buf: &Tensor,
    lr: &Tensor,
    (momentum, dampening, nesterov): (f64, f64, bool),
) -> Result<bool> {
    let program = if nesterov {
        &SGD_NESTEROV
    } else {
        &SGD_MOMENTUM
    };
    run(
        program,
        &[p, g, buf, lr],
        &[momentum as f32, (1.0 - dampening) as f32],
    )
}

/// Adam's update of `p` with its moments (made by a first step); `scalars` are the step
/// size, sqrt(1 - b2^t) and the decoupled decay, one-element tensors.
pub(super) fn adam(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    [step_size, c2_sqrt, decay]: [&Tensor; 3],
    (b1, b2, eps): (f64, f64, f64),
) -> Result<bool> {
    run(
        &ADAM,
        &[p, g, m, v, step_size, c2_sqrt, decay],
        &[
            b1 as f32,
            (1.0 - b1) as f32,
            b2 as f32,
            (1.0 - b2) as f32,
            eps as f32,
        ],
    )
}

/// RMSprop's update of `p` with its square average `s` (and momentum buffer `b`), made by a
/// first step.
pub(super) fn rmsprop(
    p: &Tensor,
    g: &Tensor,
    s: &Tensor,
    b: Option<&Tensor>,
    lr: &Tensor,
    (alpha, eps, momentum): (f64, f64, f64),
) -> Result<bool> {
    let shared = [alpha as f32, (1.0 - alpha) as f32, eps as f32];
    match b {
        Some(b) => run(
            &RMSPROP_MOMENTUM,
            &[p, g, s, b, lr],
            &[shared[0], shared[1], shared[2], momentum as f32],
        ),
        None => run(&RMSPROP, &[p, g, s, lr], &shared),
    }
}

/// Adagrad's update of `p` with its sum of squares `s` (made by a first step).
pub(super) fn adagrad(p: &Tensor, g: &Tensor, s: &Tensor, clr: &Tensor, eps: f64) -> Result<bool> {
    run(&ADAGRAD, &[p, g, s, clr], &[eps as f32])
}
