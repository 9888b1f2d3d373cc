//! The primitive operations: the one list that every backend implements and that autograd
//! differentiates. A new elementwise op is one variant here, one line in each backend's
//! kernel table (`cpu/elementwise.rs`), and one backward rule in `autograd/rules.rs`.
//! Variant names are the PyTorch op names (`name()` gives them exactly).
#![allow(missing_docs)]

/// Elementwise functions of one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Relu,
    Recip,
    Square,
    Sign,
    Floor,
    Ceil,
    Round,
    LogicalNot,
    IsNan,
}

impl UnaryOp {
    /// Whether an integer input is first converted to float (as PyTorch does for `exp` etc.).
    pub fn promotes_int_to_float(self) -> bool {
        use UnaryOp::*;
        matches!(self, Exp | Log | Sqrt | Sin | Cos | Tanh | Sigmoid | Recip)
    }

    /// Whether the result is boolean.
    pub fn returns_bool(self) -> bool {
        matches!(self, UnaryOp::LogicalNot | UnaryOp::IsNan)
    }

    pub fn name(self) -> &'static str {
        use UnaryOp::*;
        match self {
            Neg => "neg",
            Abs => "abs",
            Exp => "exp",
            Log => "log",
            Sqrt => "sqrt",
            Sin => "sin",
            Cos => "cos",
            Tanh => "tanh",
            Sigmoid => "sigmoid",
            Relu => "relu",
            Recip => "reciprocal",
            Square => "square",
            Sign => "sign",
            Floor => "floor",
            Ceil => "ceil",
            Round => "round",
            LogicalNot => "logical_not",
            IsNan => "isnan",
        }
    }
}

/// Elementwise arithmetic of two broadcast operands of the same dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Maximum,
    Minimum,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Add => "add",
            Sub => "sub",
            Mul => "mul",
            Div => "div",
            Pow => "pow",
            Maximum => "maximum",
            Minimum => "minimum",
        }
    }
}

/// Elementwise comparisons and logical connectives; the result is boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Xor,
}

impl CmpOp {
    pub fn name(self) -> &'static str {
        use CmpOp::*;
        match self {
            Eq => "eq",
            Ne => "ne",
            Lt => "lt",
            Le => "le",
            Gt => "gt",
            Ge => "ge",
            And => "logical_and",
            Or => "logical_or",
            Xor => "logical_xor",
        }
    }
}

/// Reductions over a set of dims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Prod,
    Max,
    Min,
    ArgMax,
    ArgMin,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        use ReduceOp::*;
        match self {
            Sum => "sum",
            Prod => "prod",
            Max => "max",
            Min => "min",
            ArgMax => "argmax",
            ArgMin => "argmin",
        }
    }
}
