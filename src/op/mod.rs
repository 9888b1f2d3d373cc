//! The primitive operations as data: the one list that every backend implements and that
//! autograd differentiates.
//!
//! Each family is a table with one entry per op (`unary.rs`, `binary.rs`, `compare.rs`,
//! `reduce.rs`): PyTorch's name, the dtype rule, the CPU closure beside the WGSL expression
//! of each kernel, and the derivative. `Op::ALL` lists every variant and `op.def()` gives its
//! entry; the backends, the shader generator and the backward pass read nothing else, so an
//! op cannot exist on one backend and silently not on the other. See the README's "Adding an
//! op".
//!
//! The other primitives (matmul, cumsum, gather, index_select, scatter_add, where, casts,
//! copies and creation) have one kernel each per backend, behind the backend seam
//! (`backend.rs`), and their backward rules in `autograd/rules.rs`.

/// `$body` with `$e` bound to `$def`'s entry for dtype `$d`. Each dtype's entry has its own
/// element type, so this is a macro rather than a function; it is the one place that maps a
/// dtype to a table column.
macro_rules! entry_for {
    ($d:expr, $def:expr, |$e:ident| $body:expr) => {
        match $d {
            // The 16-bit floats follow f32's rules (kernels never see them: the storage layer
            // computes them in f32).
            $crate::dtype::DType::F32 | $crate::dtype::DType::F16 | $crate::dtype::DType::BF16 => {
                let $e = &$def.f32;
                $body
            }
            $crate::dtype::DType::F64 => {
                let $e = &$def.f64;
                $body
            }
            $crate::dtype::DType::I64 => {
                let $e = &$def.i64;
                $body
            }
            $crate::dtype::DType::Bool => {
                let $e = &$def.bool;
                $body
            }
        }
    };
}
pub(crate) use entry_for;

mod binary;
mod compare;
pub(crate) mod kernel;
pub(crate) mod math;
mod reduce;
mod unary;

pub(crate) use binary::int_pow;
pub use binary::{Binary, BinaryDef, BinaryOp, GradLhs, GradRhs};
pub use compare::{CmpDef, CmpOp, Truthy};
pub use kernel::{Arith, Kern1, Kern2, Run1, Run2, Update2};
pub use reduce::{Reduce, ReduceDef, ReduceOp};
pub use unary::{Grad1, Unary, UnaryDef, UnaryOp};

/// What a derivative reads besides the upstream gradient. Autograd records the storage
/// versions of what it reads, so that a backward pass after those values were overwritten
/// in place is an error instead of a wrong gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Neither the inputs nor the output (`neg`, `add`).
    Nothing,
    /// The inputs.
    Inputs,
    /// The output (`exp`, `tanh`, `sigmoid` reuse it).
    Output,
    /// Both.
    All,
}

impl Reads {
    /// Whether the inputs are read.
    pub fn inputs(self) -> bool {
        matches!(self, Reads::Inputs | Reads::All)
    }
    /// Whether the output is read.
    pub fn output(self) -> bool {
        matches!(self, Reads::Output | Reads::All)
    }
}

/// Which operand of a binary op or comparison is a Rust number rather than a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarSide {
    /// `2.0 - x`.
    Lhs,
    /// `x - 2.0`.
    Rhs,
}

impl ScalarSide {
    /// Both sides.
    pub const ALL: [ScalarSide; 2] = [ScalarSide::Lhs, ScalarSide::Rhs];
}

/// What a creation kernel writes into a fresh buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FillKind {
    /// One value everywhere.
    Constant,
    /// `start + i * step`.
    Arange,
    /// Uniform in [0, 1).
    Uniform,
    /// Standard normal.
    Normal,
    /// Integers in [low, high).
    RandInt,
}

impl FillKind {
    /// Every creation kernel.
    pub const ALL: [FillKind; 5] = [
        FillKind::Constant,
        FillKind::Arange,
        FillKind::Uniform,
        FillKind::Normal,
        FillKind::RandInt,
    ];

    /// The PyTorch function a fill kernel serves, to name it in errors.
    pub fn op_name(self) -> &'static str {
        match self {
            FillKind::Constant => "full",
            FillKind::Arange => "arange",
            FillKind::Uniform => "rand",
            FillKind::Normal => "randn",
            FillKind::RandInt => "randint",
        }
    }

    /// Whether the kernel draws random numbers.
    pub fn is_random(self) -> bool {
        matches!(
            self,
            FillKind::Uniform | FillKind::Normal | FillKind::RandInt
        )
    }
}
