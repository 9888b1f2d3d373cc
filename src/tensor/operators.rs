//! `+ - * /` and unary `-` on tensors and scalars. Every operator returns `Result<Tensor>`,
//! since shapes may not broadcast: `(&a + &b)?`.

use super::{Operand, Tensor};
use crate::error::Result;
use crate::op::BinaryOp;
use std::ops::{Add, Div, Mul, Neg, Sub};

macro_rules! tensor_ops {
    ($($trait:ident $method:ident => $tensor_fn:ident, $scalar_fn:ident);* $(;)?) => {$(
        impl $trait<&Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> { Tensor::binary_of(BinaryOp::$trait, Operand::Tensor(self), Operand::Tensor(rhs)) }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> { Tensor::binary_of(BinaryOp::$trait, Operand::Tensor(&self), Operand::Tensor(&rhs)) }
        }
        impl $trait<&Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> { Tensor::binary_of(BinaryOp::$trait, Operand::Tensor(&self), Operand::Tensor(rhs)) }
        }
        impl $trait<Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> { Tensor::binary_of(BinaryOp::$trait, Operand::Tensor(self), Operand::Tensor(&rhs)) }
        }
        // Only f64 and i64, so that unsuffixed literals (`&x * 2.0`, `2 + &x`) infer their type.
        tensor_ops!(@scalars $trait $method $scalar_fn $tensor_fn; f64, i64);
    )*};
    (@scalars $trait:ident $method:ident $scalar_fn:ident $tensor_fn:ident; $($s:ty),*) => {$(
        impl $trait<$s> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: $s) -> Result<Tensor> { Tensor::$scalar_fn(self, rhs) }
        }
        impl $trait<$s> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: $s) -> Result<Tensor> { Tensor::$scalar_fn(&self, rhs) }
        }
        impl $trait<&Tensor> for $s {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                // number (op) tensor: the number is the kernel's left parameter.
                Tensor::binary_of(BinaryOp::$trait, Operand::Scalar(self.into()), Operand::Tensor(rhs))
            }
        }
        impl $trait<Tensor> for $s {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::binary_of(BinaryOp::$trait, Operand::Scalar(self.into()), Operand::Tensor(&rhs))
            }
        }
    )*};
}

tensor_ops! {
    Add add => add, add_scalar;
    Sub sub => sub, sub_scalar;
    Mul mul => mul, mul_scalar;
    Div div => div, div_scalar;
}

impl Neg for &Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        Tensor::neg(self)
    }
}
impl Neg for Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        Tensor::neg(&self)
    }
}
