//! `+ - * /` and unary `-` on tensors and Rust numbers. Operators return a `Tensor`, not a
//! `Result`, so that an expression reads like the math: `&z * &h + (1.0 - &z) * &h_tilde`.
//! An operator that fails (shapes that do not broadcast, tensors on two devices) returns a
//! tensor that holds the error with the operator's source line ([`Error::InExpression`]);
//! every op that takes it returns that error, so it surfaces at the next `?` and can never
//! be read as data. [`Tensor::check`] surfaces it where nothing else would.

use super::{Operand, Tensor};
use crate::error::Result;
use crate::op::BinaryOp;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// The tensor an operator returns: its result, or a failed tensor holding the error with the
/// operator's location (on the device of its first tensor operand).
fn settle(result: Result<Tensor>, first: &Tensor, at: &std::panic::Location<'_>) -> Tensor {
    match result {
        Ok(t) => t,
        Err(e) => Tensor::failed(e.in_expression(at), first.device().clone()),
    }
}

macro_rules! tensor_ops {
    ($($trait:ident $method:ident => $scalar_fn:ident);* $(;)?) => {$(
        tensor_ops!(@pair $trait $method; &Tensor, &Tensor; |a, b| (a, b));
        tensor_ops!(@pair $trait $method; Tensor, Tensor; |a, b| (&a, &b));
        tensor_ops!(@pair $trait $method; Tensor, &Tensor; |a, b| (&a, b));
        tensor_ops!(@pair $trait $method; &Tensor, Tensor; |a, b| (a, &b));
        // Only f64 and i64, so that unsuffixed literals (`&x * 2.0`, `2 + &x`) infer their type.
        tensor_ops!(@scalars $trait $method $scalar_fn; f64, i64);
    )*};
    (@pair $trait:ident $method:ident; $lhs:ty, $rhs:ty; |$a:ident, $b:ident| $refs:expr) => {
        impl $trait<$rhs> for $lhs {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $rhs) -> Tensor {
                let at = std::panic::Location::caller();
                let ($a, $b) = (self, rhs);
                let (x, y): (&Tensor, &Tensor) = $refs;
                settle(Tensor::binary_of(BinaryOp::$trait, Operand::Tensor(x), Operand::Tensor(y)), x, at)
            }
        }
    };
    (@scalars $trait:ident $method:ident $scalar_fn:ident; $($s:ty),*) => {$(
        impl $trait<$s> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $s) -> Tensor {
                settle(Tensor::$scalar_fn(self, rhs), self, std::panic::Location::caller())
            }
        }
        impl $trait<$s> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $s) -> Tensor {
                settle(Tensor::$scalar_fn(&self, rhs), &self, std::panic::Location::caller())
            }
        }
        impl $trait<&Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                // number (op) tensor: the number is the kernel's left parameter.
                let r = Tensor::binary_of(BinaryOp::$trait, Operand::Scalar(self.into()), Operand::Tensor(rhs));
                settle(r, rhs, std::panic::Location::caller())
            }
        }
        impl $trait<Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                let r = Tensor::binary_of(BinaryOp::$trait, Operand::Scalar(self.into()), Operand::Tensor(&rhs));
                settle(r, &rhs, std::panic::Location::caller())
            }
        }
    )*};
}

tensor_ops! {
    Add add => add_scalar;
    Sub sub => sub_scalar;
    Mul mul => mul_scalar;
    Div div => div_scalar;
}

impl Neg for &Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        settle(Tensor::neg(self), self, std::panic::Location::caller())
    }
}
impl Neg for Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        settle(Tensor::neg(&self), &self, std::panic::Location::caller())
    }
}
