//! Elementwise kernels: the CPU side of `UnaryOp`, `BinaryOp`, `CmpOp`, `where` and casts.

use super::map::{map1, map2, map3};
use super::CpuStorage;
use crate::dtype::DType;
use crate::layout::Layout;
use crate::op::{BinaryOp, CmpOp, UnaryOp};

/// Apply a unary op. The caller has already converted integer inputs for ops that need
/// floats, so the input dtype here is the computation dtype.
pub fn unary(op: UnaryOp, s: &CpuStorage, l: &Layout) -> CpuStorage {
    use UnaryOp::*;
    match s {
        CpuStorage::F32(v) => match op {
            Neg => CpuStorage::F32(map1(v, l, |x| -x)),
            Abs => CpuStorage::F32(map1(v, l, f32::abs)),
            Exp => CpuStorage::F32(map1(v, l, f32::exp)),
            Log => CpuStorage::F32(map1(v, l, f32::ln)),
            Sqrt => CpuStorage::F32(map1(v, l, f32::sqrt)),
            Sin => CpuStorage::F32(map1(v, l, f32::sin)),
            Cos => CpuStorage::F32(map1(v, l, f32::cos)),
            Tanh => CpuStorage::F32(map1(v, l, f32::tanh)),
            Sigmoid => CpuStorage::F32(map1(v, l, sigmoid)),
            // NaN stays NaN, as in PyTorch.
            Relu => CpuStorage::F32(map1(v, l, |x| if x > 0.0 || x.is_nan() { x } else { 0.0 })),
            Recip => CpuStorage::F32(map1(v, l, |x| 1.0 / x)),
            Square => CpuStorage::F32(map1(v, l, |x| x * x)),
            Sign => CpuStorage::F32(map1(v, l, |x| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            })),
            Floor => CpuStorage::F32(map1(v, l, f32::floor)),
            Ceil => CpuStorage::F32(map1(v, l, f32::ceil)),
            Round => CpuStorage::F32(map1(v, l, f32::round_ties_even)),
            LogicalNot => CpuStorage::Bool(map1(v, l, |x| x == 0.0)),
            IsNan => CpuStorage::Bool(map1(v, l, f32::is_nan)),
        },
        CpuStorage::I64(v) => match op {
            Neg => CpuStorage::I64(map1(v, l, i64::wrapping_neg)),
            Abs => CpuStorage::I64(map1(v, l, i64::wrapping_abs)),
            Relu => CpuStorage::I64(map1(v, l, |x| x.max(0))),
            Square => CpuStorage::I64(map1(v, l, |x| x.wrapping_mul(x))),
            Sign => CpuStorage::I64(map1(v, l, i64::signum)),
            Floor | Ceil | Round => CpuStorage::I64(map1(v, l, |x| x)),
            LogicalNot => CpuStorage::Bool(map1(v, l, |x| x == 0)),
            IsNan => CpuStorage::Bool(map1(v, l, |_| false)),
            _ => unreachable!("unary {op:?} on i64: converted to f32 by the caller"),
        },
        CpuStorage::Bool(v) => match op {
            LogicalNot => CpuStorage::Bool(map1(v, l, |x| !x)),
            IsNan => CpuStorage::Bool(map1(v, l, |_| false)),
            Abs | Relu | Square | Sign | Floor | Ceil | Round => {
                CpuStorage::Bool(map1(v, l, |x| x))
            }
            _ => unreachable!("unary {op:?} on bool: converted by the caller"),
        },
    }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    // Written so that neither branch overflows: exp of a non-positive number only.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Apply a binary op to two operands of the same dtype whose layouts have the same shape.
pub fn binary(
    op: BinaryOp,
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
) -> CpuStorage {
    use BinaryOp::*;
    match (a, b) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(match op {
            Add => map2(x, la, y, lb, |a, b| a + b),
            Sub => map2(x, la, y, lb, |a, b| a - b),
            Mul => map2(x, la, y, lb, |a, b| a * b),
            Div => map2(x, la, y, lb, |a, b| a / b),
            Pow => map2(x, la, y, lb, f32::powf),
            Maximum => map2(x, la, y, lb, |a, b| if a.is_nan() || a > b { a } else { b }),
            Minimum => map2(x, la, y, lb, |a, b| if a.is_nan() || a < b { a } else { b }),
        }),
        (CpuStorage::I64(x), CpuStorage::I64(y)) => CpuStorage::I64(match op {
            Add => map2(x, la, y, lb, i64::wrapping_add),
            Sub => map2(x, la, y, lb, i64::wrapping_sub),
            Mul => map2(x, la, y, lb, i64::wrapping_mul),
            // Division of integers is done in float by the caller (true division); this is
            // floor division (x / 0 is 0), as the GPU's `i64_floordiv`.
            Div => map2(x, la, y, lb, |a, b| {
                if b == 0 {
                    return 0;
                }
                let q = a.wrapping_div(b);
                if a.wrapping_rem(b) != 0 && (a < 0) != (b < 0) {
                    q - 1
                } else {
                    q
                }
            }),
            Pow => map2(x, la, y, lb, |a, b| {
                if b < 0 {
                    0
                } else {
                    a.wrapping_pow(b.min(u32::MAX as i64) as u32)
                }
            }),
            Maximum => map2(x, la, y, lb, i64::max),
            Minimum => map2(x, la, y, lb, i64::min),
        }),
        (CpuStorage::Bool(x), CpuStorage::Bool(y)) => CpuStorage::Bool(match op {
            Add | Maximum => map2(x, la, y, lb, |a, b| a | b),
            Mul | Minimum => map2(x, la, y, lb, |a, b| a & b),
            Sub | Div | Pow => unreachable!("binary {op:?} on bool: rejected by the caller"),
        }),
        _ => unreachable!("binary: operand dtypes are unified by the caller"),
    }
}

/// `a = a (op) b` in place, for a destination view `a` and a source `b` of the same dtype in
/// another buffer (broadcast to `a`'s shape). Only the ops with in-place forms.
pub fn binary_inplace(op: BinaryOp, a: &mut CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) {
    use super::map::update2;
    use BinaryOp::*;
    match (a, b) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => match op {
            Add => update2(x, la, y, lb, |a, b| a + b),
            Sub => update2(x, la, y, lb, |a, b| a - b),
            Mul => update2(x, la, y, lb, |a, b| a * b),
            Div => update2(x, la, y, lb, |a, b| a / b),
            _ => unreachable!("in-place {op:?}: not offered"),
        },
        (CpuStorage::I64(x), CpuStorage::I64(y)) => match op {
            Add => update2(x, la, y, lb, i64::wrapping_add),
            Sub => update2(x, la, y, lb, i64::wrapping_sub),
            Mul => update2(x, la, y, lb, i64::wrapping_mul),
            _ => unreachable!("in-place {op:?} on i64: computed out of place by the caller"),
        },
        _ => unreachable!("binary_inplace: dtypes are unified by the caller"),
    }
}

/// Comparisons and logical connectives, to bool.
pub fn cmp(op: CmpOp, a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> CpuStorage {
    fn go<T: Copy + Sync + PartialOrd + Default + Truthy>(
        op: CmpOp,
        x: &[T],
        la: &Layout,
        y: &[T],
        lb: &Layout,
    ) -> Vec<bool> {
        use CmpOp::*;
        match op {
            Eq => map2(x, la, y, lb, |a, b| a == b),
            Ne => map2(x, la, y, lb, |a, b| a != b),
            Lt => map2(x, la, y, lb, |a, b| a < b),
            Le => map2(x, la, y, lb, |a, b| a <= b),
            Gt => map2(x, la, y, lb, |a, b| a > b),
            Ge => map2(x, la, y, lb, |a, b| a >= b),
            And => map2(x, la, y, lb, |a, b| a.truthy() && b.truthy()),
            Or => map2(x, la, y, lb, |a, b| a.truthy() || b.truthy()),
            Xor => map2(x, la, y, lb, |a, b| a.truthy() != b.truthy()),
        }
    }
    CpuStorage::Bool(match (a, b) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => go(op, x, la, y, lb),
        (CpuStorage::I64(x), CpuStorage::I64(y)) => go(op, x, la, y, lb),
        (CpuStorage::Bool(x), CpuStorage::Bool(y)) => go(op, x, la, y, lb),
        _ => unreachable!("cmp: operand dtypes are unified by the caller"),
    })
}

trait Truthy {
    fn truthy(self) -> bool;
}
impl Truthy for f32 {
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

/// `cond ? a : b`, all three layouts of the same shape; `a` and `b` of the same dtype.
pub fn where_cond(
    c: &[bool],
    lc: &Layout,
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
) -> CpuStorage {
    match (a, b) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(map3(
            (c, lc),
            (x, la),
            (y, lb),
            |c, a, b| if c { a } else { b },
        )),
        (CpuStorage::I64(x), CpuStorage::I64(y)) => CpuStorage::I64(map3(
            (c, lc),
            (x, la),
            (y, lb),
            |c, a, b| if c { a } else { b },
        )),
        (CpuStorage::Bool(x), CpuStorage::Bool(y)) => CpuStorage::Bool(map3(
            (c, lc),
            (x, la),
            (y, lb),
            |c, a, b| if c { a } else { b },
        )),
        _ => unreachable!("where: operand dtypes are unified by the caller"),
    }
}

/// Convert to another dtype (float to int truncates toward zero, as PyTorch).
pub fn cast(s: &CpuStorage, l: &Layout, to: DType) -> CpuStorage {
    match (s, to) {
        (CpuStorage::F32(v), DType::F32) => CpuStorage::F32(map1(v, l, |x| x)),
        (CpuStorage::F32(v), DType::I64) => CpuStorage::I64(map1(v, l, |x| x as i64)),
        (CpuStorage::F32(v), DType::Bool) => CpuStorage::Bool(map1(v, l, |x| x != 0.0)),
        (CpuStorage::I64(v), DType::F32) => CpuStorage::F32(map1(v, l, |x| x as f32)),
        (CpuStorage::I64(v), DType::I64) => CpuStorage::I64(map1(v, l, |x| x)),
        (CpuStorage::I64(v), DType::Bool) => CpuStorage::Bool(map1(v, l, |x| x != 0)),
        (CpuStorage::Bool(v), DType::F32) => CpuStorage::F32(map1(v, l, |x| x as u8 as f32)),
        (CpuStorage::Bool(v), DType::I64) => CpuStorage::I64(map1(v, l, |x| x as i64)),
        (CpuStorage::Bool(v), DType::Bool) => CpuStorage::Bool(map1(v, l, |x| x)),
    }
}
