//! Elements in host memory, one dtype per buffer: what tensors are built from and read back
//! into, what files hold, and the CPU backend's storage.

use crate::dtype::{DType, Scalar};

/// A host buffer of one dtype.
#[derive(Debug, Clone)]
pub enum HostBuffer {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
    F64(Vec<f64>),
}

/// `$body` with `$v` bound to the vector of any host buffer `$b` (one arm per dtype).
macro_rules! with_vec {
    ($b:expr, |$v:ident| $body:expr) => {
        match $b {
            HostBuffer::F32($v) => $body,
            HostBuffer::I64($v) => $body,
            HostBuffer::Bool($v) => $body,
            HostBuffer::F16($v) => $body,
            HostBuffer::BF16($v) => $body,
            HostBuffer::F64($v) => $body,
        }
    };
}
pub(crate) use with_vec;

impl HostBuffer {
    pub fn dtype(&self) -> DType {
        match self {
            HostBuffer::F32(_) => DType::F32,
            HostBuffer::I64(_) => DType::I64,
            HostBuffer::Bool(_) => DType::Bool,
            HostBuffer::F16(_) => DType::F16,
            HostBuffer::BF16(_) => DType::BF16,
            HostBuffer::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        with_vec!(self, |v| v.len())
    }

    /// Address of the first element, to tell whether two tensors share memory.
    pub fn data_ptr(&self) -> usize {
        with_vec!(self, |v| v.as_ptr() as usize)
    }

    /// The element at a storage offset, as a scalar (`None` past the end).
    pub fn get(&self, offset: usize) -> Option<Scalar> {
        match self {
            HostBuffer::F32(v) => v.get(offset).map(|&x| Scalar::Float(x as f64)),
            HostBuffer::I64(v) => v.get(offset).map(|&x| Scalar::Int(x)),
            HostBuffer::Bool(v) => v.get(offset).map(|&x| Scalar::Bool(x)),
            HostBuffer::F16(v) => v.get(offset).map(|&x| Scalar::Float(x.to_f64())),
            HostBuffer::BF16(v) => v.get(offset).map(|&x| Scalar::Float(x.to_f64())),
            HostBuffer::F64(v) => v.get(offset).map(|&x| Scalar::Float(x)),
        }
    }

    /// Values converted to `dtype` (as `Tensor::new` converts Rust numbers).
    pub fn from_scalars(values: &[Scalar], dtype: DType) -> HostBuffer {
        match dtype {
            DType::F32 => HostBuffer::F32(values.iter().map(|s| s.to_f64() as f32).collect()),
            DType::I64 => HostBuffer::I64(values.iter().map(|s| s.to_i64()).collect()),
            DType::Bool => HostBuffer::Bool(values.iter().map(|s| s.to_bool()).collect()),
            DType::F16 => HostBuffer::F16(
                values
                    .iter()
                    .map(|s| half::f16::from_f64(s.to_f64()))
                    .collect(),
            ),
            DType::BF16 => HostBuffer::BF16(
                values
                    .iter()
                    .map(|s| half::bf16::from_f64(s.to_f64()))
                    .collect(),
            ),
            DType::F64 => HostBuffer::F64(values.iter().map(|s| s.to_f64()).collect()),
        }
    }
}

/// Rust element types with a matching host buffer.
pub trait CpuElement: crate::dtype::Element {
    #[doc(hidden)]
    fn wrap(v: Vec<Self>) -> HostBuffer;
    #[doc(hidden)]
    fn unwrap(s: HostBuffer) -> Option<Vec<Self>>;
    #[doc(hidden)]
    fn of(b: &HostBuffer) -> Option<&[Self]>;
    #[doc(hidden)]
    fn of_mut(b: &mut HostBuffer) -> Option<&mut [Self]>;
    /// A number converted to this type (floats to integers truncate toward zero).
    #[doc(hidden)]
    fn from_scalar(s: Scalar) -> Self;
}

macro_rules! cpu_element {
    ($($t:ty => $v:ident [$($other:ident),*], $conv:expr;)*) => {$(
        impl CpuElement for $t {
            fn wrap(v: Vec<Self>) -> HostBuffer {
                HostBuffer::$v(v)
            }
            fn unwrap(s: HostBuffer) -> Option<Vec<Self>> {
                match s {
                    HostBuffer::$v(v) => Some(v),
                    $(HostBuffer::$other(_))|* => None,
                }
            }
            fn of(b: &HostBuffer) -> Option<&[Self]> {
                match b {
                    HostBuffer::$v(v) => Some(v),
                    $(HostBuffer::$other(_))|* => None,
                }
            }
            fn of_mut(b: &mut HostBuffer) -> Option<&mut [Self]> {
                match b {
                    HostBuffer::$v(v) => Some(v),
                    $(HostBuffer::$other(_))|* => None,
                }
            }
            fn from_scalar(s: Scalar) -> Self {
                $conv(s)
            }
        }

        impl From<Vec<$t>> for HostBuffer {
            fn from(v: Vec<$t>) -> Self {
                HostBuffer::$v(v)
            }
        }
    )*};
}
cpu_element! {
    f32 => F32 [I64, Bool, F16, BF16, F64], |s: Scalar| s.to_f64() as f32;
    i64 => I64 [F32, Bool, F16, BF16, F64], |s: Scalar| s.to_i64();
    bool => Bool [F32, I64, F16, BF16, F64], |s: Scalar| s.to_bool();
    half::f16 => F16 [F32, I64, Bool, BF16, F64], |s: Scalar| half::f16::from_f64(s.to_f64());
    half::bf16 => BF16 [F32, I64, Bool, F16, F64], |s: Scalar| half::bf16::from_f64(s.to_f64());
    f64 => F64 [F32, I64, Bool, F16, BF16], |s: Scalar| s.to_f64();
}
