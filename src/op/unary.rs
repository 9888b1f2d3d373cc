//! Elementwise functions of one operand: every fact about each one, in one table.
//!
//! An entry names the op as PyTorch does, says per dtype what happens (a kernel, a
//! conversion to float first, or a refusal), holds each kernel as a CPU closure beside its
//! WGSL expression, WGSL helper functions it needs, and its derivative. The backends and
//! autograd read nothing else: adding an op here (and its `Tensor` method in
//! `tensor/elementwise.rs`) is the whole change, and `tests/op_table.rs` runs every entry on
//! every dtype and backend.

use super::kernel::{map1, Kern1};
use super::math::{
    erf, erf64, exp, gelu, gelu64, gelu_derivative, gelu_derivative64, sigmoid, sigmoid64, tanh,
};
use super::Reads;
use crate::error::Result;
use crate::tensor::Tensor;

/// What an op does with one input dtype.
#[derive(Clone, Copy)]
pub enum Unary<T: 'static> {
    /// A kernel whose result has the input's dtype.
    Map(Kern1<T, T>),
    /// A kernel whose result is bool.
    Test(Kern1<T, bool>),
    /// The input is converted to the default float dtype first (`exp` of an integer).
    ViaFloat,
    /// The op refuses this dtype; the text says what is expected instead.
    Refused(&'static str),
}

/// The derivative of a unary op, as the gradient of its input: `g * f'(x)` from the upstream
/// gradient `g`, the input `x` and the output `y`. Rules are linear in `g`, so forward mode
/// can run the same rule with a tangent in place of `g`.
pub type Grad1 = fn(g: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor>;

/// Everything the crate knows about one unary op.
pub struct UnaryDef {
    /// PyTorch's name.
    pub name: &'static str,
    /// What the op does with F32, I64 and Bool inputs.
    pub f32: Unary<f32>,
    /// What the op does with F64 inputs (the CPU's f64 math; a GPU runs F64 on the host).
    pub f64: Unary<f64>,
    #[allow(missing_docs)]
    pub i64: Unary<i64>,
    #[allow(missing_docs)]
    pub bool: Unary<bool>,
    /// WGSL functions that the f32 expression calls.
    pub helpers: &'static str,
    /// `None`: the derivative is zero wherever it exists (`floor`, `sign`).
    pub grad: Option<Grad1>,
    /// What the derivative reads, so that autograd can refuse a backward pass after those
    /// values were overwritten in place.
    pub reads: Reads,
}

/// `1 / sqrt(2 pi)`, the standard normal density at 0.
const GAUSSIAN_DENSITY: f64 = 0.398_942_280_401_432_7;

/// The WGSL of `op_erf` (Abramowitz and Stegun 7.1.26, as `math::erf` on the CPU), for the
/// entries whose kernels call it.
macro_rules! erf_wgsl {
    () => {
        "
fn op_erf(x: f32) -> f32 {
    let ax = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
        + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-ax * ax);
    return select(-y, y, x >= 0.0);
}
"
    };
}

/// The op is the identity on this dtype (rounding an integer, the sign of a bool).
const SAME_I64: Unary<i64> = Unary::Map(map1!(i64 => i64, |x: i64| x, "a"));
const SAME_BOOL: Unary<bool> = Unary::Map(map1!(bool => bool, |x: bool| x, "a"));

macro_rules! unary_ops {
    ($($(#[$doc:meta])* $variant:ident $method:ident $def:tt,)*) => {
        /// Elementwise functions of one operand (their facts: [`UnaryOp::def`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum UnaryOp {
            $($(#[$doc])* $variant,)*
        }

        impl UnaryOp {
            /// Every unary op.
            pub const ALL: &'static [UnaryOp] = &[$(UnaryOp::$variant,)*];

            /// This op's table entry.
            pub fn def(self) -> &'static UnaryDef {
                match self {
                    $(UnaryOp::$variant => {
                        const DEF: UnaryDef = UnaryDef $def;
                        &DEF
                    })*
                }
            }
        }

        impl Tensor {
            $($(#[$doc])*
            pub fn $method(&self) -> Result<Tensor> {
                self.unary(UnaryOp::$variant)
            })*
        }
    };
}

unary_ops! {
    /// `-x`.
    Neg neg {
        name: "neg",
        f32: Unary::Map(map1!(f32 => f32, |x: f32| -x, "-a")),
        f64: Unary::Map(map1!(f64 => f64, |x: f64| -x, "-a")),
        i64: Unary::Map(map1!(i64 => i64, i64::wrapping_neg, "i64_neg(a)")),
        bool: Unary::Refused("a numeric tensor (use logical_not for bool)"),
        helpers: "",
        grad: Some(|g, _, _| g.neg()),
        reads: Reads::Nothing,
    },
    /// `|x|`.
    Abs abs {
        name: "abs",
        f32: Unary::Map(map1!(f32 => f32, f32::abs, "abs(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::abs, "abs(a)")),
        i64: Unary::Map(map1!(i64 => i64, i64::wrapping_abs, "i64_abs(a)")),
        bool: SAME_BOOL,
        helpers: "",
        grad: Some(|g, x, _| g.mul(&x.sign()?)),
        reads: Reads::Inputs,
    },
    /// `e^x`.
    Exp exp {
        name: "exp",
        f32: Unary::Map(map1!(f32 => f32, exp, "exp(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::exp, "exp(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "",
        grad: Some(|g, _, y| g.mul(y)),
        reads: Reads::Output,
    },
    /// `e^x - 1`, accurate for small `x`.
    Expm1 expm1 {
        name: "expm1",
        f32: Unary::Map(map1!(f32 => f32, f32::exp_m1, "op_expm1(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::exp_m1, "op_expm1(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "
fn op_expm1(x: f32) -> f32 {
    // exp(x) - 1 cancels for small |x|: the Taylor series there (the first omitted term is
    // below 1e-10 of the result), exp elsewhere.
    if (abs(x) < 0.25) {
        return x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0
            + x * (1.0 / 720.0 + x * (1.0 / 5040.0 + x * (1.0 / 40320.0))))))));
    }
    return exp(x) - 1.0;
}",
        grad: Some(|g, _, y| g.mul(&y.add_scalar(1.0)?)),
        reads: Reads::Output,
    },
    /// Natural logarithm.
    Log log {
        name: "log",
        f32: Unary::Map(map1!(f32 => f32, f32::ln, "op_log(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::ln, "op_log(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "
fn op_log(x: f32) -> f32 {
    if (x < 0.0 || is_nan_f32(x)) { return nan_f32(); }
    if (x == 0.0) { return -inf_f32(); }
    return log(x);
}",
        grad: Some(|g, x, _| g.div(x)),
        reads: Reads::Inputs,
    },
    /// `ln(1 + x)`, accurate for small `x`.
    Log1p log1p {
        name: "log1p",
        f32: Unary::Map(map1!(f32 => f32, f32::ln_1p, "op_log1p(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::ln_1p, "op_log1p(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "
fn op_log1p(x: f32) -> f32 {
    if (x < -1.0 || is_nan_f32(x)) { return nan_f32(); }
    if (x == -1.0) { return -inf_f32(); }
    // log(1 + x) loses x's low bits in the sum: near 0 use ln(1+x) = 2 atanh(s) with
    // s = x / (2 + x), whose series converges fast (|s| < 0.15 here).
    if (abs(x) < 0.25) {
        let s = x / (2.0 + x);
        let s2 = s * s;
        return 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0
            + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0))))));
    }
    return log(1.0 + x);
}",
        grad: Some(|g, x, _| g.div(&x.add_scalar(1.0)?)),
        reads: Reads::Inputs,
    },
    /// Square root.
    Sqrt sqrt {
        name: "sqrt",
        f32: Unary::Map(map1!(f32 => f32, f32::sqrt, "op_sqrt(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::sqrt, "op_sqrt(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "
fn op_sqrt(x: f32) -> f32 {
    if (x < 0.0) { return nan_f32(); }
    return sqrt(x);
}",
        grad: Some(|g, _, y| g.div(y)?.mul_scalar(0.5)),
        reads: Reads::Output,
    },
    /// Sine.
    Sin sin {
        name: "sin",
        f32: Unary::Map(map1!(f32 => f32, f32::sin, "sin(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::sin, "sin(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "",
        grad: Some(|g, x, _| g.mul(&x.cos()?)),
        reads: Reads::Inputs,
    },
    /// Cosine.
    Cos cos {
        name: "cos",
        f32: Unary::Map(map1!(f32 => f32, f32::cos, "cos(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::cos, "cos(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "",
        grad: Some(|g, x, _| g.mul(&x.sin()?)?.neg()),
        reads: Reads::Inputs,
    },
    /// Inverse tangent.
    Atan atan {
        name: "atan",
        f32: Unary::Map(map1!(f32 => f32, f32::atan, "atan(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::atan, "atan(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "",
        grad: Some(|g, x, _| g.div(&x.square()?.add_scalar(1.0)?)),
        reads: Reads::Inputs,
    },
    /// Inverse sine (NaN outside [-1, 1]).
    Asin asin {
        name: "asin",
        f32: Unary::Map(map1!(f32 => f32, f32::asin, "op_asin(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::asin, "op_asin(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "
fn op_asin(x: f32) -> f32 {
    // Through atan2, which drivers compute more accurately than their asin (lavapipe's is
    // off by 3e-4).
    if (abs(x) > 1.0) { return nan_f32(); }
    return atan2(x, sqrt((1.0 - x) * (1.0 + x)));
}",
        grad: Some(|g, x, _| g.div(&(1.0 - &x.square()?).sqrt()?)),
        reads: Reads::Inputs,
    },
    /// Inverse cosine (NaN outside [-1, 1]).
    Acos acos {
        name: "acos",
        f32: Unary::Map(map1!(f32 => f32, f32::acos, "op_acos(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::acos, "op_acos(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "
fn op_acos(x: f32) -> f32 {
    if (abs(x) > 1.0) { return nan_f32(); }
    return atan2(sqrt((1.0 - x) * (1.0 + x)), x);
}",
        grad: Some(|g, x, _| g.div(&(1.0 - &x.square()?).sqrt()?)?.neg()),
        reads: Reads::Inputs,
    },
    /// Hyperbolic sine.
    Sinh sinh {
        name: "sinh",
        f32: Unary::Map(map1!(f32 => f32, f32::sinh, "sinh(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::sinh, "sinh(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "",
        grad: Some(|g, x, _| g.mul(&x.cosh()?)),
        reads: Reads::Inputs,
    },
    /// Hyperbolic cosine.
    Cosh cosh {
        name: "cosh",
        f32: Unary::Map(map1!(f32 => f32, f32::cosh, "cosh(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::cosh, "cosh(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "",
        grad: Some(|g, x, _| g.mul(&x.sinh()?)),
        reads: Reads::Inputs,
    },
    /// The error function (to about 1.5e-7 absolute: Abramowitz and Stegun 7.1.26, the
    /// same formula on both backends).
    Erf erf {
        name: "erf",
        f32: Unary::Map(map1!(f32 => f32, erf, "op_erf(a)")),
        f64: Unary::Map(map1!(f64 => f64, erf64, "op_erf(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: erf_wgsl!(),
        // 2 / sqrt(pi) e^(-x^2).
        grad: Some(|g, x, _| g.mul(&x.square()?.neg()?.exp()?)?.mul_scalar(std::f64::consts::FRAC_2_SQRT_PI)),
        reads: Reads::Inputs,
    },
    /// The Gaussian error linear unit `x Φ(x) = x (1 + erf(x / sqrt 2)) / 2`, exact (what
    /// `F.gelu` computes by default), as one kernel.
    Gelu gelu {
        name: "gelu",
        f32: Unary::Map(map1!(f32 => f32, gelu, "op_gelu(a)")),
        f64: Unary::Map(map1!(f64 => f64, gelu64, "op_gelu(a)")),
        i64: Unary::Refused("a float tensor"),
        bool: Unary::Refused("a float tensor"),
        helpers: concat!(erf_wgsl!(), "
fn op_gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + op_erf(x * 0.70710678));
}"),
        grad: Some(|g, x, _| g.mul(&x.gelu_derivative()?)),
        reads: Reads::Inputs,
    },
    /// `d gelu / dx = Φ(x) + x φ(x)`: gelu's backward pass as one kernel rather than seven.
    #[doc(hidden)]
    GeluDerivative gelu_derivative {
        name: "gelu_derivative",
        f32: Unary::Map(map1!(f32 => f32, gelu_derivative, "op_gelu_derivative(a)")),
        f64: Unary::Map(map1!(f64 => f64, gelu_derivative64, "op_gelu_derivative(a)")),
        i64: Unary::Refused("a float tensor"),
        bool: Unary::Refused("a float tensor"),
        helpers: concat!(erf_wgsl!(), "
fn op_gelu_derivative(x: f32) -> f32 {
    return 0.5 * (1.0 + op_erf(x * 0.70710678)) + x * exp(-0.5 * x * x) * 0.39894228;
}"),
        // φ(x) (2 - x^2), for second derivatives.
        grad: Some(|g, x, _| {
            let x2 = x.square()?;
            g.mul(&x2.mul_scalar(-0.5)?.exp()?.mul_scalar(GAUSSIAN_DENSITY)?.mul(&(2.0 - &x2))?)
        }),
        reads: Reads::Inputs,
    },
    /// `x * sigmoid(x)` (`torch.nn.functional.silu`).
    Silu silu {
        name: "silu",
        f32: Unary::Map(map1!(f32 => f32, |x: f32| x * sigmoid(x), "a * op_sigmoid(a)")),
        f64: Unary::Map(map1!(f64 => f64, |x: f64| x * sigmoid64(x), "a * op_sigmoid(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "
fn op_sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}",
        // s (1 + x (1 - s)) with s = sigmoid(x).
        grad: Some(|g, x, _| {
            let s = x.sigmoid()?;
            g.mul(&s.mul(&x.mul(&(1.0 - &s))?.add_scalar(1.0)?)?)
        }),
        reads: Reads::Inputs,
    },
    /// Hyperbolic tangent.
    Tanh tanh {
        name: "tanh",
        f32: Unary::Map(map1!(f32 => f32, tanh, "op_tanh(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::tanh, "op_tanh(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "
fn op_tanh(x: f32) -> f32 {
    // Through exp of a non-positive number only, so large |x| gives +-1, never NaN.
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, x >= 0.0);
}",
        // 1 - tanh^2 from the saved output.
        grad: Some(|g, _, y| g.mul(&(1.0 - &y.square()?))),
        reads: Reads::Output,
    },
    /// `1 / (1 + e^-x)`, computed without overflow.
    Sigmoid sigmoid {
        name: "sigmoid",
        f32: Unary::Map(map1!(f32 => f32, sigmoid, "op_sigmoid(a)")),
        f64: Unary::Map(map1!(f64 => f64, sigmoid64, "op_sigmoid(a)")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "
fn op_sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}",
        grad: Some(|g, _, y| g.mul(&y.mul(&(1.0 - y))?)),
        reads: Reads::Output,
    },
    /// `max(x, 0)`; NaN stays NaN, as in PyTorch.
    Relu relu {
        name: "relu",
        f32: Unary::Map(map1!(f32 => f32, |x: f32| if x > 0.0 || x.is_nan() { x } else { 0.0 },
            "select(0.0, a, a > 0.0 || is_nan_f32(a))")),
        f64: Unary::Map(map1!(f64 => f64, |x: f64| if x > 0.0 || x.is_nan() { x } else { 0.0 },
            "select(0.0, a, a > 0.0 || is_nan_f32(a))")),
        i64: Unary::Map(map1!(i64 => i64, |x: i64| x.max(0), "i64_max(a, i64_zero())")),
        bool: SAME_BOOL,
        helpers: "",
        grad: Some(|g, _, y| Tensor::where_cond(&y.gt_scalar(0.0)?, g, 0.0)),
        reads: Reads::Output,
    },
    /// `1 / x`.
    Reciprocal reciprocal {
        name: "reciprocal",
        f32: Unary::Map(map1!(f32 => f32, |x: f32| 1.0 / x, "1.0 / a")),
        f64: Unary::Map(map1!(f64 => f64, |x: f64| 1.0 / x, "1.0 / a")),
        i64: Unary::ViaFloat,
        bool: Unary::ViaFloat,
        helpers: "",
        grad: Some(|g, _, y| g.mul(&y.square()?)?.neg()),
        reads: Reads::Output,
    },
    /// `x * x`.
    Square square {
        name: "square",
        f32: Unary::Map(map1!(f32 => f32, |x: f32| x * x, "a * a")),
        f64: Unary::Map(map1!(f64 => f64, |x: f64| x * x, "a * a")),
        i64: Unary::Map(map1!(i64 => i64, |x: i64| x.wrapping_mul(x), "i64_mul(a, a)")),
        bool: SAME_BOOL,
        helpers: "",
        grad: Some(|g, x, _| g.mul(x)?.mul_scalar(2.0)),
        reads: Reads::Inputs,
    },
    /// -1, 0 or 1 (and NaN for NaN).
    Sign sign {
        name: "sign",
        f32: Unary::Map(map1!(f32 => f32, |x: f32| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { x },
            "select(select(a, -1.0, a < 0.0), 1.0, a > 0.0)")),
        f64: Unary::Map(map1!(f64 => f64, |x: f64| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { x },
            "select(select(a, -1.0, a < 0.0), 1.0, a > 0.0)")),
        i64: Unary::Map(map1!(i64 => i64, i64::signum, "i64_sign(a)")),
        bool: SAME_BOOL,
        helpers: "",
        grad: None,
        reads: Reads::Nothing,
    },
    /// Round down.
    Floor floor {
        name: "floor",
        f32: Unary::Map(map1!(f32 => f32, f32::floor, "floor(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::floor, "floor(a)")),
        i64: SAME_I64,
        bool: SAME_BOOL,
        helpers: "",
        grad: None,
        reads: Reads::Nothing,
    },
    /// Round up.
    Ceil ceil {
        name: "ceil",
        f32: Unary::Map(map1!(f32 => f32, f32::ceil, "ceil(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::ceil, "ceil(a)")),
        i64: SAME_I64,
        bool: SAME_BOOL,
        helpers: "",
        grad: None,
        reads: Reads::Nothing,
    },
    /// Round half to even.
    Round round {
        name: "round",
        f32: Unary::Map(map1!(f32 => f32, f32::round_ties_even, "round(a)")),
        f64: Unary::Map(map1!(f64 => f64, f64::round_ties_even, "round(a)")),
        i64: SAME_I64,
        bool: SAME_BOOL,
        helpers: "",
        grad: None,
        reads: Reads::Nothing,
    },
    /// `x == 0`, as bool.
    LogicalNot logical_not {
        name: "logical_not",
        f32: Unary::Test(map1!(f32 => bool, |x: f32| x == 0.0, "a == 0.0")),
        f64: Unary::Test(map1!(f64 => bool, |x: f64| x == 0.0, "a == 0.0")),
        i64: Unary::Test(map1!(i64 => bool, |x: i64| x == 0, "i64_is_zero(a)")),
        bool: Unary::Test(map1!(bool => bool, |x: bool| !x, "a == 0u")),
        helpers: "",
        grad: None,
        reads: Reads::Nothing,
    },
    /// Whether each element is NaN.
    IsNan isnan {
        name: "isnan",
        f32: Unary::Test(map1!(f32 => bool, f32::is_nan, "is_nan_f32(a)")),
        f64: Unary::Test(map1!(f64 => bool, f64::is_nan, "is_nan_f32(a)")),
        i64: Unary::Test(map1!(i64 => bool, |_: i64| false, "false")),
        bool: Unary::Test(map1!(bool => bool, |_: bool| false, "false")),
        helpers: "",
        grad: None,
        reads: Reads::Nothing,
    },
}

impl UnaryOp {
    /// PyTorch's name of the op.
    pub fn name(self) -> &'static str {
        self.def().name
    }
}
