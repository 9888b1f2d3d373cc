//! Elementwise comparisons and logical connectives: the result is bool. One closure and one
//! WGSL condition serve every dtype: the WGSL is written with `t_lt`, `t_eq` and `t_nz`,
//! which each dtype's kernel defines (`gpu/kernels.rs`, `arithmetic`), and the closure with
//! Rust's comparisons and [`Truthy`].

use super::kernel::{map2, Kern2};
use crate::error::Result;
use crate::tensor::{Operand, Source, Tensor};

/// Everything the crate knows about one comparison.
pub struct CmpDef {
    /// PyTorch's name.
    pub name: &'static str,
    /// The kernels for F32, I64 and Bool operands (one closure and condition, see above).
    pub f32: Kern2<f32, bool>,
    #[allow(missing_docs)]
    pub f64: Kern2<f64, bool>,
    #[allow(missing_docs)]
    pub i64: Kern2<i64, bool>,
    #[allow(missing_docs)]
    pub bool: Kern2<bool, bool>,
}

/// Non-zero is true, as in PyTorch's logical ops.
pub trait Truthy {
    /// Whether the value counts as true.
    fn truthy(self) -> bool;
}
impl Truthy for f32 {
    fn truthy(self) -> bool {
        self != 0.0
    }
}
impl Truthy for f64 {
    fn truthy(self) -> bool {
        self != 0.0
    }
}
impl Truthy for i64 {
    fn truthy(self) -> bool {
        self != 0
    }
}
impl Truthy for bool {
    fn truthy(self) -> bool {
        self
    }
}

macro_rules! cmp_ops {
    ($($(#[$doc:meta])* $variant:ident $method:ident $scalar:ident: $name:literal, $f:expr, $wgsl:literal;)*) => {
        /// Elementwise comparisons and logical connectives (their facts: [`CmpOp::def`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum CmpOp {
            $($(#[$doc])* $variant,)*
        }

        impl CmpOp {
            /// Every comparison.
            pub const ALL: &'static [CmpOp] = &[$(CmpOp::$variant,)*];

            /// This op's table entry.
            pub fn def(self) -> &'static CmpDef {
                match self {
                    $(CmpOp::$variant => {
                        const DEF: CmpDef = CmpDef {
                            name: $name,
                            f32: map2!(f32 => bool, $f, $wgsl),
                            f64: map2!(f64 => bool, $f, $wgsl),
                            i64: map2!(i64 => bool, $f, $wgsl),
                            bool: map2!(bool => bool, $f, $wgsl),
                        };
                        &DEF
                    })*
                }
            }
        }

        impl Tensor {
            $($(#[$doc])*
            /// The other operand is a tensor (broadcast) or a Rust number; the result is bool.
            pub fn $method(&self, rhs: impl Into<Source>) -> Result<Tensor> {
                self.compare(CmpOp::$variant, (&rhs.into()).into())
            }

            #[doc = concat!("[`Tensor::", stringify!($method), "`] against a number.")]
            pub fn $scalar(&self, rhs: impl Into<crate::dtype::Scalar>) -> Result<Tensor> {
                self.compare(CmpOp::$variant, Operand::Scalar(rhs.into()))
            })*
        }
    };
}

#[allow(clippy::bool_comparison)]
mod table {
    use super::*;
    cmp_ops! {
        /// `==`.
        Eq eq eq_scalar: "eq", |a, b| a == b, "t_eq(a, b)";
        /// `!=`.
        Ne ne ne_scalar: "ne", |a, b| a != b, "!t_eq(a, b)";
        /// `<`.
        Lt lt lt_scalar: "lt", |a, b| a < b, "t_lt(a, b)";
        /// `<=`.
        Le le le_scalar: "le", |a, b| a <= b, "(t_lt(a, b) || t_eq(a, b))";
        /// `>`.
        Gt gt gt_scalar: "gt", |a, b| a > b, "t_lt(b, a)";
        /// `>=`.
        Ge ge ge_scalar: "ge", |a, b| a >= b, "(t_lt(b, a) || t_eq(a, b))";
        /// Logical and of truth values.
        And logical_and logical_and_scalar: "logical_and", |a: _, b: _| Truthy::truthy(a) && Truthy::truthy(b), "(t_nz(a) && t_nz(b))";
        /// Logical or of truth values.
        Or logical_or logical_or_scalar: "logical_or", |a: _, b: _| Truthy::truthy(a) || Truthy::truthy(b), "(t_nz(a) || t_nz(b))";
        /// Logical exclusive or of truth values.
        Xor logical_xor logical_xor_scalar: "logical_xor", |a: _, b: _| Truthy::truthy(a) != Truthy::truthy(b), "(t_nz(a) != t_nz(b))";
    }
}
pub use table::CmpOp;

impl CmpOp {
    /// PyTorch's name of the op.
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The comparison with its operands swapped (`a < b` is `b > a`), for a number on the
    /// left of a tensor.
    pub fn swapped(self) -> CmpOp {
        use CmpOp::*;
        match self {
            Eq => Eq,
            Ne => Ne,
            Lt => Gt,
            Le => Ge,
            Gt => Lt,
            Ge => Le,
            And => And,
            Or => Or,
            Xor => Xor,
        }
    }
}
