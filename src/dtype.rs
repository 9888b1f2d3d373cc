//! Element types and scalar values.

/// The element type of a tensor.
///
/// `F32` is the default float type, `I64` the integer type used for indices (as in PyTorch),
/// and `Bool` the result of comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// `true`/`false`, one byte each.
    Bool,
    /// 64-bit signed integers.
    I64,
    /// 32-bit floats.
    F32,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::Bool => 1,
            DType::I64 => 8,
            DType::F32 => 4,
        }
    }

    /// Whether this is a floating-point type (differentiable).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32)
    }

    /// PyTorch's name for the dtype, as printed by `torch.float32` etc.
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::Bool => "torch.bool",
            DType::I64 => "torch.int64",
            DType::F32 => "torch.float32",
        }
    }

    /// The type two operands are promoted to, following PyTorch's category order
    /// bool < integer < float.
    pub fn promote(self, other: DType) -> DType {
        self.max(other)
    }
}

/// A scalar operand: the Rust number's kind decides promotion, as a Python number's does in
/// PyTorch (`int_tensor + 2` stays integer, `int_tensor + 2.5` becomes float).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// An integer (promotes like a Python `int`).
    Int(i64),
    /// A float (promotes like a Python `float`).
    Float(f64),
}

impl Scalar {
    /// The dtype a tensor made from this scalar gets.
    pub fn dtype(self) -> DType {
        match self {
            Scalar::Bool(_) => DType::Bool,
            Scalar::Int(_) => DType::I64,
            Scalar::Float(_) => DType::F32,
        }
    }

    /// The value as f64.
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => b as i64 as f64,
            Scalar::Int(i) => i as f64,
            Scalar::Float(f) => f,
        }
    }

    /// The value as i64 (floats truncate toward zero).
    pub fn to_i64(self) -> i64 {
        match self {
            Scalar::Bool(b) => b as i64,
            Scalar::Int(i) => i,
            Scalar::Float(f) => f as i64,
        }
    }

    /// The value as bool (non-zero is true).
    pub fn to_bool(self) -> bool {
        match self {
            Scalar::Bool(b) => b,
            Scalar::Int(i) => i != 0,
            Scalar::Float(f) => f != 0.0,
        }
    }
}

macro_rules! scalar_from {
    ($variant:ident, $conv:ty: $($t:ty),*) => {
        $(impl From<$t> for Scalar {
            fn from(v: $t) -> Self {
                Scalar::$variant(v as $conv)
            }
        })*
    };
}
scalar_from!(Int, i64: i8, i16, i32, i64, u8, u16, u32, usize, isize);
scalar_from!(Float, f64: f32, f64);

impl From<bool> for Scalar {
    fn from(v: bool) -> Self {
        Scalar::Bool(v)
    }
}

/// A Rust element type that a tensor can hold.
pub trait Element: Copy + Send + Sync + std::fmt::Debug + PartialOrd + 'static {
    /// The matching tensor dtype.
    const DTYPE: DType;
    /// Convert to a scalar.
    fn to_scalar(self) -> Scalar;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn to_scalar(self) -> Scalar {
        Scalar::Float(self as f64)
    }
}
impl Element for i64 {
    const DTYPE: DType = DType::I64;
    fn to_scalar(self) -> Scalar {
        Scalar::Int(self)
    }
}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_scalar(self) -> Scalar {
        Scalar::Bool(self)
    }
}
