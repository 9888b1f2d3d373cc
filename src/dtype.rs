//! Element types and scalar values.

/// The element type of a tensor.
///
/// `F32` is the default float type, `I64` the integer type used for indices (as in PyTorch),
/// and `Bool` the result of comparisons. `F16` and `BF16` are storage types: each op reads
/// them, computes in f32 and rounds its result once to the 16-bit type (round to nearest
/// even), as PyTorch's CPU kernels do. Everything the crate knows about a dtype is its row
/// of [`DType::info`]; type promotion is the lattice of [`DType::promote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `true`/`false`, one byte each.
    Bool,
    /// 64-bit signed integers.
    I64,
    /// 32-bit floats.
    F32,
    /// IEEE 754 half precision (`torch.float16`): 11 significand bits, 5 exponent bits.
    F16,
    /// bfloat16 (`torch.bfloat16`): f32's exponent range with 8 significand bits.
    BF16,
    /// 64-bit floats (`torch.float64`).
    F64,
}

/// The category of a dtype, in PyTorch's promotion order: a result takes the highest
/// category among its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Truth values.
    Bool,
    /// Signed integers.
    Int,
    /// Floating point (differentiable).
    Float,
}

/// One row of the dtype table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DTypeInfo {
    /// The short name used in file formats and messages (`"f32"`).
    pub name: &'static str,
    /// PyTorch's name (`"torch.float32"`).
    pub torch_name: &'static str,
    /// Bytes per element in host memory.
    pub size_in_bytes: usize,
    /// Promotion category.
    pub kind: Kind,
    /// Significand bits (the implicit bit included) of a float type; the bits of the value
    /// for integers, 1 for bool. With `exponent_bits`, this orders the types within a
    /// category: a type holds another when it has at least as many of both.
    pub mantissa_bits: u32,
    /// Exponent bits of a float type, 0 otherwise.
    pub exponent_bits: u32,
}

impl DType {
    /// Every dtype, in table order (tests iterate it; promotion searches it).
    pub const ALL: [DType; 6] = [
        DType::Bool,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
    ];

    /// This dtype's row of the table.
    pub const fn info(self) -> DTypeInfo {
        match self {
            DType::Bool => DTypeInfo {
                name: "bool",
                torch_name: "torch.bool",
                size_in_bytes: 1,
                kind: Kind::Bool,
                mantissa_bits: 1,
                exponent_bits: 0,
            },
            DType::I64 => DTypeInfo {
                name: "i64",
                torch_name: "torch.int64",
                size_in_bytes: 8,
                kind: Kind::Int,
                mantissa_bits: 64,
                exponent_bits: 0,
            },
            DType::F32 => DTypeInfo {
                name: "f32",
                torch_name: "torch.float32",
                size_in_bytes: 4,
                kind: Kind::Float,
                mantissa_bits: 24,
                exponent_bits: 8,
            },
            DType::F16 => DTypeInfo {
                name: "f16",
                torch_name: "torch.float16",
                size_in_bytes: 2,
                kind: Kind::Float,
                mantissa_bits: 11,
                exponent_bits: 5,
            },
            DType::BF16 => DTypeInfo {
                name: "bf16",
                torch_name: "torch.bfloat16",
                size_in_bytes: 2,
                kind: Kind::Float,
                mantissa_bits: 8,
                exponent_bits: 8,
            },
            DType::F64 => DTypeInfo {
                name: "f64",
                torch_name: "torch.float64",
                size_in_bytes: 8,
                kind: Kind::Float,
                mantissa_bits: 53,
                exponent_bits: 11,
            },
        }
    }

    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        self.info().size_in_bytes
    }

    /// The promotion category.
    pub fn kind(self) -> Kind {
        self.info().kind
    }

    /// Whether this is a floating-point type (differentiable).
    pub fn is_float(self) -> bool {
        self.kind() == Kind::Float
    }

    /// Whether this is a 16-bit float type (`F16`, `BF16`): stored in 16 bits, computed in f32.
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }

    /// The dtype kernels compute this one in: F32 for the 16-bit floats, itself otherwise.
    pub fn compute_dtype(self) -> DType {
        if self.is_half() {
            DType::F32
        } else {
            self
        }
    }

    /// PyTorch's name for the dtype, as printed by `torch.float32` etc.
    pub fn torch_name(self) -> &'static str {
        self.info().torch_name
    }

    /// The short name (`"f32"`, `"i64"`, `"bool"`).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The dtype a Rust number of this category becomes (PyTorch's defaults: `float32` for
    /// floats, `int64` for integers).
    pub fn default_for(kind: Kind) -> DType {
        match kind {
            Kind::Bool => DType::Bool,
            Kind::Int => DType::I64,
            Kind::Float => DType::F32,
        }
    }

    /// The type two tensor operands are promoted to: the join in PyTorch's lattice. The
    /// higher category wins (bool < integer < float); within a category, the smallest type
    /// that holds both (so a 16-bit float with a bfloat16 joins at f32).
    pub fn promote(self, other: DType) -> DType {
        if self == other {
            return self;
        }
        let rows = DType::ALL.map(DType::info);
        let at = |d: DType| DType::ALL.iter().position(|&x| x == d).unwrap_or(0);
        DType::ALL[join(&rows, at(self), at(other))]
    }

    /// The dtype of `tensor (op) number` before the op's own rule: a Rust number does not
    /// widen a tensor of its category or a higher one ("wrapped numbers" in PyTorch: an F32
    /// tensor times 2.0 stays F32, an I64 tensor times 2 stays I64), and a number of a higher
    /// category gives that category's default dtype (an I64 tensor times 2.5 is F32).
    pub fn promote_scalar(self, scalar: Scalar) -> DType {
        let kind = scalar.kind();
        if kind <= self.kind() {
            self
        } else {
            DType::default_for(kind)
        }
    }
}

/// The join of rows `a` and `b` of a dtype table: the higher category's member, or within
/// one category the smallest row that holds both (at least as many significand and exponent
/// bits as each). Written over rows, not `DType`s, so the lattice can be checked with rows
/// the crate does not have yet.
fn join(rows: &[DTypeInfo], a: usize, b: usize) -> usize {
    let kind = rows[a].kind.max(rows[b].kind);
    let members: Vec<usize> = [a, b]
        .into_iter()
        .filter(|&i| rows[i].kind == kind)
        .collect();
    if let [only] = members[..] {
        return only;
    }
    let holds = |r: &DTypeInfo, m: &DTypeInfo| {
        r.kind == m.kind && r.mantissa_bits >= m.mantissa_bits && r.exponent_bits >= m.exponent_bits
    };
    (0..rows.len())
        .filter(|&r| members.iter().all(|&m| holds(&rows[r], &rows[m])))
        .min_by_key(|&r| rows[r].size_in_bytes)
        .unwrap_or(a)
}

/// `x` rounded to the nearest value of the float dtype `d` (F32, F16, BF16), as f64.
/// Whether `x` stays finite once rounded to the float type `d`.
pub(crate) fn rounds_finite(d: DType, x: f64) -> bool {
    round_to(d, x).is_finite()
}

fn round_to(d: DType, x: f64) -> f64 {
    match d {
        DType::F16 => half::f16::from_f64(x).to_f64(),
        DType::BF16 => half::bf16::from_f64(x).to_f64(),
        DType::F32 => x as f32 as f64,
        DType::F64 | DType::I64 | DType::Bool => x,
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
    /// An unsigned integer past `i64::MAX` (a `u64` or `usize`): an integer like `Int`, kept
    /// whole so that using it as an I64 value is an `Err` rather than a wrap to a negative.
    UInt(u64),
    /// A float (promotes like a Python `float`).
    Float(f64),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::UInt(u) => write!(f, "{u}"),
            Scalar::Float(x) => write!(f, "{x}"),
        }
    }
}

impl Scalar {
    /// The dtype a tensor made from this scalar gets.
    pub fn dtype(self) -> DType {
        DType::default_for(self.kind())
    }

    /// The promotion category of the number.
    pub fn kind(self) -> Kind {
        match self {
            Scalar::Bool(_) => Kind::Bool,
            Scalar::Int(_) | Scalar::UInt(_) => Kind::Int,
            Scalar::Float(_) => Kind::Float,
        }
    }

    /// The value as an element of `dtype`, or an `Err` naming `op` when it has none there (a
    /// NaN, an infinity or a float out of range for an integer dtype: PyTorch refuses these
    /// rather than saturating).
    pub fn checked_for(self, op: &'static str, dtype: DType) -> crate::error::Result<Scalar> {
        let fits = match (self, dtype.kind()) {
            (Scalar::Float(f), Kind::Int) => {
                f.is_finite() && f >= -(2f64.powi(63)) && f < 2f64.powi(63)
            }
            (Scalar::UInt(_), Kind::Int) => false,
            // A 16-bit float holds infinities and NaN, but not a finite number that rounds
            // past its largest value (PyTorch: "cannot be converted ... without overflow").
            (Scalar::Float(f), Kind::Float) if dtype.is_half() => {
                !f.is_finite() || round_to(dtype, f).is_finite()
            }
            (Scalar::Float(_) | Scalar::UInt(_), Kind::Float | Kind::Bool) => true,
            (Scalar::Int(_) | Scalar::Bool(_), Kind::Bool | Kind::Int | Kind::Float) => true,
        };
        if fits {
            Ok(self)
        } else {
            Err(crate::error::Error::invalid(
                op,
                format!("value {self} cannot be converted to {dtype:?} without overflow"),
            ))
        }
    }

    /// The value as f64.
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => b as i64 as f64,
            Scalar::Int(i) => i as f64,
            Scalar::UInt(u) => u as f64,
            Scalar::Float(f) => f,
        }
    }

    /// The value as i64 (floats truncate toward zero).
    pub fn to_i64(self) -> i64 {
        match self {
            Scalar::Bool(b) => b as i64,
            Scalar::Int(i) => i,
            // Saturated: a use as an I64 value is refused before (`checked_for`).
            Scalar::UInt(_) => i64::MAX,
            Scalar::Float(f) => f as i64,
        }
    }

    /// The value as bool (non-zero is true).
    pub fn to_bool(self) -> bool {
        match self {
            Scalar::Bool(b) => b,
            Scalar::Int(i) => i != 0,
            Scalar::UInt(u) => u != 0,
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
scalar_from!(Int, i64: i8, i16, i32, i64, u8, u16, u32, isize);

macro_rules! scalar_from_unsigned {
    ($($t:ty),*) => {$(
        impl From<$t> for Scalar {
            fn from(v: $t) -> Self {
                match i64::try_from(v) {
                    Ok(i) => Scalar::Int(i),
                    Err(_) => Scalar::UInt(v as u64),
                }
            }
        }
    )*};
}
scalar_from_unsigned!(u64, usize);
scalar_from!(Float, f64: f32, f64);

impl From<bool> for Scalar {
    fn from(v: bool) -> Self {
        Scalar::Bool(v)
    }
}

/// A Rust type that [`crate::Tensor::item`] returns: the value converted as Python's
/// `float(t)`, `int(t)` (toward zero) and `bool(t)` convert a one-element tensor, or the
/// [`Scalar`] itself with its dtype's kind.
pub trait FromScalar: Sized {
    /// The value as `Self`.
    fn from_scalar(s: Scalar) -> Self;
}

impl FromScalar for Scalar {
    fn from_scalar(s: Scalar) -> Self {
        s
    }
}
impl FromScalar for f64 {
    fn from_scalar(s: Scalar) -> Self {
        s.to_f64()
    }
}
impl FromScalar for f32 {
    fn from_scalar(s: Scalar) -> Self {
        s.to_f64() as f32
    }
}
impl FromScalar for i64 {
    fn from_scalar(s: Scalar) -> Self {
        s.to_i64()
    }
}
impl FromScalar for bool {
    fn from_scalar(s: Scalar) -> Self {
        s.to_bool()
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
impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn to_scalar(self) -> Scalar {
        Scalar::Float(self)
    }
}
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
    fn to_scalar(self) -> Scalar {
        Scalar::Float(self.to_f64())
    }
}
impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_scalar(self) -> Scalar {
        Scalar::Float(self.to_f64())
    }
}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_scalar(self) -> Scalar {
        Scalar::Bool(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_is_a_lattice_join() {
        for a in DType::ALL {
            assert_eq!(a.promote(a), a);
            for b in DType::ALL {
                let j = a.promote(b);
                assert_eq!(j, b.promote(a), "commutative");
                assert!(j.kind() >= a.kind() && j.kind() >= b.kind());
                for c in DType::ALL {
                    assert_eq!(j.promote(c), a.promote(b.promote(c)), "associative");
                }
            }
        }
        assert_eq!(DType::Bool.promote(DType::I64), DType::I64);
        assert_eq!(DType::I64.promote(DType::F32), DType::F32);
    }

    #[test]
    fn the_lattice_joins_half_types_at_f32() {
        use DType::*;
        assert_eq!(F16.promote(BF16), F32);
        assert_eq!(BF16.promote(F16), F32);
        assert_eq!(F16.promote(F16), F16);
        assert_eq!(F16.promote(F32), F32);
        assert_eq!(I64.promote(BF16), BF16);
        assert_eq!(Bool.promote(F16), F16);
        assert_eq!(F32.promote(F64), F64);
        assert_eq!(F16.promote(F64), F64);
        assert_eq!(I64.promote(F64), F64);
    }

    #[test]
    fn a_number_that_overflows_a_half_type_is_refused_where_it_is_stored() {
        assert!(Scalar::Float(65504.0)
            .checked_for("full", DType::F16)
            .is_ok());
        assert!(Scalar::Float(65520.0)
            .checked_for("full", DType::F16)
            .is_err());
        assert!(Scalar::Float(f64::INFINITY)
            .checked_for("full", DType::F16)
            .is_ok());
        assert!(Scalar::Float(f64::NAN)
            .checked_for("full", DType::BF16)
            .is_ok());
        assert!(Scalar::Float(1e38).checked_for("full", DType::BF16).is_ok());
        assert!(Scalar::Float(1e39)
            .checked_for("full", DType::BF16)
            .is_err());
    }

    #[test]
    fn wrapped_numbers_keep_the_tensor_dtype() {
        assert_eq!(DType::F32.promote_scalar(Scalar::Float(2.0)), DType::F32);
        assert_eq!(DType::I64.promote_scalar(Scalar::Float(2.5)), DType::F32);
        assert_eq!(DType::I64.promote_scalar(Scalar::Int(2)), DType::I64);
        assert_eq!(DType::Bool.promote_scalar(Scalar::Int(2)), DType::I64);
        assert_eq!(DType::Bool.promote_scalar(Scalar::Bool(true)), DType::Bool);
    }
}
