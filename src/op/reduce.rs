//! Reductions over a set of dims: names and dtype rules. Each backend has one exhaustive
//! kernel function over these ops (`cpu/reduce.rs`, `gpu/kernels.rs`); their derivatives,
//! which need the reduced dims, are in `autograd/rules.rs`.

/// What a reduction does with one input dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// Reduced in this dtype.
    Native,
    /// Converted to I64 first (the sum of bools counts them, as in PyTorch).
    ViaInt,
}

/// Everything the crate knows about one reduction.
pub struct ReduceDef {
    /// PyTorch's name.
    pub name: &'static str,
    /// The rule for F32, I64 and Bool inputs.
    pub f32: Reduce,
    /// The rule for F64 inputs.
    pub f64: Reduce,
    #[allow(missing_docs)]
    pub i64: Reduce,
    #[allow(missing_docs)]
    pub bool: Reduce,
    /// The result is the I64 index of the chosen element.
    pub gives_index: bool,
    /// The reduction has no identity, so an empty reduced dim is an error.
    pub needs_elements: bool,
}

macro_rules! reduce_ops {
    ($($(#[$doc:meta])* $variant:ident $def:tt,)*) => {
        /// Reductions over a set of dims (their facts: [`ReduceOp::def`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ReduceOp {
            $($(#[$doc])* $variant,)*
        }

        impl ReduceOp {
            /// Every reduction.
            pub const ALL: &'static [ReduceOp] = &[$(ReduceOp::$variant,)*];

            /// This op's table entry.
            pub fn def(self) -> &'static ReduceDef {
                match self {
                    $(ReduceOp::$variant => {
                        const DEF: ReduceDef = ReduceDef $def;
                        &DEF
                    })*
                }
            }
        }
    };
}

reduce_ops! {
    /// Sum (of bools: the count of true).
    Sum { name: "sum", f32: Reduce::Native, f64: Reduce::Native, i64: Reduce::Native, bool: Reduce::ViaInt, gives_index: false, needs_elements: false },
    /// Product.
    Prod { name: "prod", f32: Reduce::Native, f64: Reduce::Native, i64: Reduce::Native, bool: Reduce::ViaInt, gives_index: false, needs_elements: false },
    /// Maximum; NaN propagates.
    Max { name: "max", f32: Reduce::Native, f64: Reduce::Native, i64: Reduce::Native, bool: Reduce::Native, gives_index: false, needs_elements: true },
    /// Minimum; NaN propagates.
    Min { name: "min", f32: Reduce::Native, f64: Reduce::Native, i64: Reduce::Native, bool: Reduce::Native, gives_index: false, needs_elements: true },
    /// Index of the first maximum (NaN counts as the maximum).
    ArgMax { name: "argmax", f32: Reduce::Native, f64: Reduce::Native, i64: Reduce::Native, bool: Reduce::Native, gives_index: true, needs_elements: true },
    /// Index of the first minimum.
    ArgMin { name: "argmin", f32: Reduce::Native, f64: Reduce::Native, i64: Reduce::Native, bool: Reduce::Native, gives_index: true, needs_elements: true },
}

impl ReduceOp {
    /// PyTorch's name of the op.
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The rule for an input dtype.
    pub fn rule(self, dtype: crate::dtype::DType) -> Reduce {
        let d = self.def();
        match dtype {
            // The 16-bit floats reduce in f32 (see `DType::compute_dtype`).
            crate::dtype::DType::F32 | crate::dtype::DType::F16 | crate::dtype::DType::BF16 => {
                d.f32
            }
            crate::dtype::DType::F64 => d.f64,
            crate::dtype::DType::I64 => d.i64,
            crate::dtype::DType::Bool => d.bool,
        }
    }
}
