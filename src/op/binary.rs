//! Elementwise arithmetic of two broadcast operands: every fact about each op, in one table
//! (see `unary.rs` for what an entry holds). Either operand may be a Rust number, which the
//! kernels take as a parameter (no buffer, no fill).

use super::kernel::{arith, Arith};
use super::Reads;
use crate::error::Result;
use crate::tensor::{Operand, Source, Tensor};

/// What an op does when its operands (after promotion) have one dtype.
#[derive(Clone, Copy)]
pub enum Binary<T: 'static> {
    /// A kernel in this dtype.
    Map(Arith<T>),
    /// The operands are converted to the default float dtype first (true division of
    /// integers).
    ViaFloat,
    /// The operands are converted to I64 first (`bool ** bool`).
    ViaInt,
    /// The op refuses this dtype; the text says why.
    Refused(&'static str),
}

/// The gradient of the left operand (a tensor) from the upstream gradient `g`, both
/// operands and the output `y`. Linear in `g`, as for [`super::Grad1`].
pub type GradLhs = fn(g: &Tensor, a: &Tensor, b: &Source, y: &Tensor) -> Result<Tensor>;
/// The gradient of the right operand (a tensor).
pub type GradRhs = fn(g: &Tensor, a: &Source, b: &Tensor, y: &Tensor) -> Result<Tensor>;

/// Everything the crate knows about one binary op.
pub struct BinaryDef {
    /// PyTorch's name.
    pub name: &'static str,
    /// What the op does when the operands are F32, I64 or Bool (after promotion).
    pub f32: Binary<f32>,
    /// What the op does when the operands are F64 (the CPU's f64 math; a GPU runs F64 on the
    /// host).
    pub f64: Binary<f64>,
    #[allow(missing_docs)]
    pub i64: Binary<i64>,
    #[allow(missing_docs)]
    pub bool: Binary<bool>,
    /// WGSL functions that the f32 expression calls.
    pub helpers: &'static str,
    /// The gradient of the left operand.
    pub grad_lhs: GradLhs,
    /// The gradient of the right operand.
    pub grad_rhs: GradRhs,
    /// What the two rules read (see [`Reads`]).
    pub reads: Reads,
}

macro_rules! binary_ops {
    ($($(#[$doc:meta])* $variant:ident $method:ident $scalar:ident $def:tt,)*) => {
        /// Elementwise arithmetic of two broadcast operands (their facts: [`BinaryOp::def`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum BinaryOp {
            $($(#[$doc])* $variant,)*
        }

        impl BinaryOp {
            /// Every binary op.
            pub const ALL: &'static [BinaryOp] = &[$(BinaryOp::$variant,)*];

            /// This op's table entry.
            pub fn def(self) -> &'static BinaryDef {
                match self {
                    $(BinaryOp::$variant => {
                        const DEF: BinaryDef = BinaryDef $def;
                        &DEF
                    })*
                }
            }
        }

        impl Tensor {
            $($(#[$doc])*
            ///
            /// The other operand is a tensor (broadcast) or a Rust number.
            pub fn $method(&self, rhs: impl Into<Source>) -> Result<Tensor> {
                Tensor::binary_of(BinaryOp::$variant, Operand::Tensor(self), (&rhs.into()).into())
            }

            #[doc = concat!("[`Tensor::", stringify!($method), "`] with a number.")]
            pub fn $scalar(&self, rhs: impl Into<crate::dtype::Scalar>) -> Result<Tensor> {
                Tensor::binary_of(BinaryOp::$variant, Operand::Tensor(self), Operand::Scalar(rhs.into()))
            })*
        }
    };
}

binary_ops! {
    /// `a + b` (logical or for bool, as in PyTorch).
    Add add add_scalar {
        name: "add",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| a + b, "a + b")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| a + b, "a + b")),
        i64: Binary::Map(arith!(i64, i64::wrapping_add, "i64_add(a, b)")),
        bool: Binary::Map(arith!(bool, |a: bool, b: bool| a | b, "a | b")),
        helpers: "",
        grad_lhs: |g, _, _, _| Ok(g.clone()),
        grad_rhs: |g, _, _, _| Ok(g.clone()),
        reads: Reads::Nothing,
    },
    /// `a - b`.
    Sub sub sub_scalar {
        name: "sub",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| a - b, "a - b")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| a - b, "a - b")),
        i64: Binary::Map(arith!(i64, i64::wrapping_sub, "i64_sub(a, b)")),
        bool: Binary::Refused("subtraction of bool tensors is not supported; use logical_xor"),
        helpers: "",
        grad_lhs: |g, _, _, _| Ok(g.clone()),
        grad_rhs: |g, _, _, _| g.neg(),
        reads: Reads::Nothing,
    },
    /// `a * b` (logical and for bool).
    Mul mul mul_scalar {
        name: "mul",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| a * b, "a * b")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| a * b, "a * b")),
        i64: Binary::Map(arith!(i64, i64::wrapping_mul, "i64_mul(a, b)")),
        bool: Binary::Map(arith!(bool, |a: bool, b: bool| a & b, "a & b")),
        helpers: "",
        grad_lhs: |g, _, b, _| g.mul(b.clone()),
        grad_rhs: |g, a, _, _| g.mul(a.clone()),
        reads: Reads::Inputs,
    },
    /// True division: integers give float.
    Div div div_scalar {
        name: "div",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| a / b, "a / b")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| a / b, "a / b")),
        i64: Binary::ViaFloat,
        bool: Binary::ViaFloat,
        helpers: "",
        grad_lhs: |g, _, b, _| g.div(b.clone()),
        // d(a/b)/db = -a/b^2 = -y/b.
        grad_rhs: |g, _, b, y| g.mul(y)?.div(b)?.neg(),
        reads: Reads::All,
    },
    /// `a ** b` (C's `pow` for floats; wrapping for integers, where a negative exponent gives
    /// the truncated `1 / a^|b|`: 1 and -1 keep their powers, everything else gives 0).
    Pow pow pow_scalar {
        name: "pow",
        f32: Binary::Map(arith!(f32, f32::powf, "op_pow(a, b)")),
        f64: Binary::Map(arith!(f64, f64::powf, "op_pow(a, b)")),
        i64: Binary::Map(arith!(i64, int_pow, "i64_pow(a, b)")),
        bool: Binary::ViaInt,
        helpers: "
fn op_pow(a: f32, b: f32) -> f32 {
    // WGSL's pow is undefined for a <= 0 and for NaN; follow C's pow there, as PyTorch does:
    // x^0 and 1^y are 1 even for NaN, any other power of or to NaN is NaN.
    if (b == 0.0 || a == 1.0) { return 1.0; }
    if (is_nan_f32(a) || is_nan_f32(b)) { return nan_f32(); }
    // exp2(b * log2(a)) is a few ulps off; the common small powers are exact (or correctly
    // rounded) on the CPU, so here too.
    if (b == 1.0) { return a; }
    if (b == 2.0) { return a * a; }
    if (b == -1.0) { return 1.0 / a; }
    if (a == 0.0) { return select(inf_f32(), 0.0, b > 0.0); }
    if (b == 0.5 && a > 0.0) { return sqrt(a); }
    if (a < 0.0) {
        if (b != floor(b)) { return nan_f32(); }
        let r = pow(-a, b);
        return select(r, -r, abs(b % 2.0) == 1.0);
    }
    return pow(a, b);
}",
        grad_lhs: pow_grad_base,
        grad_rhs: pow_grad_exponent,
        reads: Reads::All,
    },
    /// The angle of the point (b, a) (`torch.atan2(a, b)`: `a` is y, `b` is x).
    Atan2 atan2 atan2_scalar {
        name: "atan2",
        f32: Binary::Map(arith!(f32, f32::atan2, "op_atan2(a, b)")),
        f64: Binary::Map(arith!(f64, f64::atan2, "op_atan2(a, b)")),
        i64: Binary::ViaFloat,
        bool: Binary::ViaFloat,
        helpers: "
fn op_atan2(y: f32, x: f32) -> f32 {
    if (is_nan_f32(y) || is_nan_f32(x)) { return nan_f32(); }
    // WGSL leaves atan2(0, 0) undefined; C (and PyTorch) give +-0 for x = +0, +-pi for -0.
    if (y == 0.0 && x == 0.0) {
        let pi = select(3.14159265, -3.14159265, (bitcast<u32>(y) >> 31u) == 1u);
        return select(y, pi, (bitcast<u32>(x) >> 31u) == 1u);
    }
    return atan2(y, x);
}",
        // d/dy = x / (x^2 + y^2), d/dx = -y / (x^2 + y^2).
        grad_lhs: |g, a, b, _| g.mul(b.clone())?.div(&squares(a, b)?),
        grad_rhs: |g, a, b, _| g.mul(a.clone())?.div(&squares(b, a)?)?.neg(),
        reads: Reads::Inputs,
    },
    /// Python's `%`: the remainder with the sign of the divisor (`torch.remainder`). An
    /// integer divisor of 0 gives the dividend (PyTorch raises).
    Remainder remainder remainder_scalar {
        name: "remainder",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| { let r = a % b; if r != 0.0 && ((r < 0.0) != (b < 0.0)) { r + b } else { r } },
            "op_remainder(a, b)")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| { let r = a % b; if r != 0.0 && ((r < 0.0) != (b < 0.0)) { r + b } else { r } },
            "op_remainder(a, b)")),
        i64: Binary::Map(arith!(i64, |a: i64, b: i64| if b == 0 { a } else { let r = a.wrapping_rem(b); if r != 0 && ((r < 0) != (b < 0)) { r + b } else { r } },
            "i64_sub(a, i64_mul(i64_floordiv(a, b), b))")),
        bool: Binary::Refused("remainder of bool tensors is not supported"),
        helpers: "
fn op_remainder(a: f32, b: f32) -> f32 {
    let r = exact_fmod(a, b);
    return select(r, r + b, r != 0.0 && ((r < 0.0) != (b < 0.0)));
}

// C's fmod, exact as on the CPU: WGSL's `a % b` is a - b * trunc(a / b), which loses
// everything once a / b passes 2^24. |b| scaled by a power of two is subtracted while it
// fits; each subtraction is exact (Sterbenz) and at least halves the remainder, so the
// loop ends within the exponent range. The result has a's sign (a zero one too).
fn exact_fmod(a: f32, b: f32) -> f32 {
    if (is_nan_f32(a) || is_nan_f32(b) || b == 0.0 || abs(a) == inf_f32()) {
        return nan_f32();
    }
    let d = abs(b);
    var r = abs(a);
    for (var i = 0u; i < 300u; i = i + 1u) {
        if (r < d) { break; }
        var t = ldexp(d, frexp(r).exp - frexp(d).exp);
        if (t > r) { t = t * 0.5; }
        r = r - t;
    }
    return bitcast<f32>(bitcast<u32>(r) | (bitcast<u32>(a) & 0x80000000u));
}",
        grad_lhs: |g, _, _, _| Ok(g.clone()),
        // d/db (a - floor(a/b) b) = -floor(a/b).
        grad_rhs: |g, a, b, _| g.mul(&Tensor::binary_of(BinaryOp::FloorDivide, a.into(), b.into())?)?.neg(),
        reads: Reads::Inputs,
    },
    /// `floor(a / b)` (`torch.floor_divide`); an integer divisor of 0 gives 0 (PyTorch
    /// raises). The derivative is zero wherever it exists.
    FloorDivide floor_divide floor_divide_scalar {
        name: "floor_divide",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| (a / b).floor(), "floor(a / b)")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| (a / b).floor(), "floor(a / b)")),
        i64: Binary::Map(arith!(i64, |a: i64, b: i64| {
                if b == 0 {
                    return 0;
                }
                let q = a.wrapping_div(b);
                if a.wrapping_rem(b) != 0 && (a < 0) != (b < 0) { q - 1 } else { q }
            }, "i64_floordiv(a, b)")),
        bool: Binary::Refused("floor division of bool tensors is not supported"),
        helpers: "",
        grad_lhs: |g, _, _, _| Tensor::zeros_like(g),
        grad_rhs: |g, _, _, _| Tensor::zeros_like(g),
        reads: Reads::Nothing,
    },
    /// The larger operand; NaN propagates.
    Maximum maximum maximum_scalar {
        name: "maximum",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| if a.is_nan() || a > b { a } else { b },
            "select(select(b, a, a > b), a, is_nan_f32(a))")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| if a.is_nan() || a > b { a } else { b },
            "select(select(b, a, a > b), a, is_nan_f32(a))")),
        i64: Binary::Map(arith!(i64, i64::max, "i64_max(a, b)")),
        bool: Binary::Map(arith!(bool, |a: bool, b: bool| a | b, "a | b")),
        helpers: "",
        grad_lhs: |g, a, b, _| extremum_grad(g, a, b, super::CmpOp::Gt),
        grad_rhs: |g, a, b, _| extremum_grad(g, b, a, super::CmpOp::Gt),
        reads: Reads::Inputs,
    },
    /// The smaller operand; NaN propagates.
    Minimum minimum minimum_scalar {
        name: "minimum",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| if a.is_nan() || a < b { a } else { b },
            "select(select(b, a, a < b), a, is_nan_f32(a))")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| if a.is_nan() || a < b { a } else { b },
            "select(select(b, a, a < b), a, is_nan_f32(a))")),
        i64: Binary::Map(arith!(i64, i64::min, "i64_min(a, b)")),
        bool: Binary::Map(arith!(bool, |a: bool, b: bool| a & b, "a & b")),
        helpers: "",
        grad_lhs: |g, a, b, _| extremum_grad(g, a, b, super::CmpOp::Lt),
        grad_rhs: |g, a, b, _| extremum_grad(g, b, a, super::CmpOp::Lt),
        reads: Reads::Inputs,
    },
    /// `a` raised to at least `b` (`torch.clamp(a, min=b)`); NaN in either propagates. The
    /// gradient flows to `a` where `a >= b`, to `b` elsewhere.
    ClampMin clamp_min clamp_min_scalar {
        name: "clamp_min",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| if a.is_nan() || a >= b { a } else { b },
            "select(b, a, is_nan_f32(a) || a >= b)")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| if a.is_nan() || a >= b { a } else { b },
            "select(b, a, is_nan_f32(a) || a >= b)")),
        i64: Binary::Map(arith!(i64, i64::max, "i64_max(a, b)")),
        bool: Binary::Map(arith!(bool, |a: bool, b: bool| a | b, "a | b")),
        helpers: "",
        grad_lhs: |g, a, b, _| Tensor::where_cond(&a.ge(b.clone())?, g, 0.0),
        grad_rhs: |g, a, b, _| Tensor::where_cond(&b.gt(a.clone())?, g, 0.0),
        reads: Reads::Inputs,
    },
    /// `a` lowered to at most `b` (`torch.clamp(a, max=b)`).
    ClampMax clamp_max clamp_max_scalar {
        name: "clamp_max",
        f32: Binary::Map(arith!(f32, |a: f32, b: f32| if a.is_nan() || a <= b { a } else { b },
            "select(b, a, is_nan_f32(a) || a <= b)")),
        f64: Binary::Map(arith!(f64, |a: f64, b: f64| if a.is_nan() || a <= b { a } else { b },
            "select(b, a, is_nan_f32(a) || a <= b)")),
        i64: Binary::Map(arith!(i64, i64::min, "i64_min(a, b)")),
        bool: Binary::Map(arith!(bool, |a: bool, b: bool| a & b, "a & b")),
        helpers: "",
        grad_lhs: |g, a, b, _| Tensor::where_cond(&a.le(b.clone())?, g, 0.0),
        grad_rhs: |g, a, b, _| Tensor::where_cond(&b.lt(a.clone())?, g, 0.0),
        reads: Reads::Inputs,
    },
}

/// Integer `a ** b` as PyTorch's kernel: wrapping, over the whole 64-bit exponent.
pub(crate) fn int_pow(a: i64, b: i64) -> i64 {
    if b < 0 {
        return match a {
            1 => 1,
            -1 => {
                if b & 1 == 1 {
                    -1
                } else {
                    1
                }
            }
            _ => 0,
        };
    }
    let (mut result, mut base, mut e) = (1i64, a, b as u64);
    while e > 0 {
        if e & 1 == 1 {
            result = result.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    result
}

/// `t^2 + other^2`, `other` a tensor or a number.
fn squares(t: &Tensor, other: &Source) -> Result<Tensor> {
    match other {
        Source::Tensor(o) => t.square()?.add(&o.square()?),
        Source::Scalar(s) => t.square()?.add_scalar(s.to_f64() * s.to_f64()),
    }
}

/// d(a^b)/da = b a^(b-1).
fn pow_grad_base(g: &Tensor, a: &Tensor, b: &Source, _y: &Tensor) -> Result<Tensor> {
    match b {
        Source::Scalar(s) => {
            let e = s.to_f64();
            g.mul(&a.pow_scalar(e - 1.0)?)?.mul_scalar(e)
        }
        Source::Tensor(b) => g.mul(b)?.mul(&a.pow(&b.sub_scalar(1.0)?)?),
    }
}

/// d(a^b)/db = a^b ln a, taken as 0 where a == 0 (as PyTorch does).
fn pow_grad_exponent(g: &Tensor, a: &Source, _b: &Tensor, y: &Tensor) -> Result<Tensor> {
    match a {
        Source::Scalar(s) => {
            let base = s.to_f64();
            let ln = if base == 0.0 { 0.0 } else { base.ln() };
            g.mul(y)?.mul_scalar(ln)
        }
        Source::Tensor(a) => {
            let safe_log = Tensor::where_cond(&a.eq_scalar(0.0)?, 0.0, &y.mul(&a.log()?)?)?;
            g.mul(&safe_log)
        }
    }
}

/// The gradient of `x` in maximum/minimum against `other`: all of it where `x` wins (`wins`
/// is `Gt` for maximum), half of it at a tie.
fn extremum_grad(g: &Tensor, x: &Tensor, other: &Source, wins: super::CmpOp) -> Result<Tensor> {
    let win = x.compare(wins, other.into())?;
    let tie = x.compare(super::CmpOp::Eq, other.into())?;
    let half = Tensor::where_cond(&tie, g.mul_scalar(0.5)?, 0.0)?;
    Tensor::where_cond(&win, g, &half)
}

impl BinaryOp {
    /// PyTorch's name of the op.
    pub fn name(self) -> &'static str {
        self.def().name
    }
}
