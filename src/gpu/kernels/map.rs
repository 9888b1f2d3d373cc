//! Elementwise (map) kernels: `out[i] = EXPR(a, b, c)` over strided, broadcast operands,
//! generated from the op tables (`op/`). Rust numbers are operands too: they travel in the
//! parameters, after the elementwise metadata, so `x * 2.0` is one dispatch with no buffer.

use super::{arithmetic, wgsl_type, Indexing, MAP, MAP_PAIRS};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::{Binary, BinaryOp, CmpOp, ScalarSide, Unary, UnaryOp};

/// What an elementwise kernel computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapOp {
    Unary(UnaryOp, DType),
    /// `a op b`; the side names the operand that is a scalar parameter, if any.
    Binary(BinaryOp, DType, Option<ScalarSide>),
    Cmp(CmpOp, DType, Option<ScalarSide>),
    /// `dst = dst (op) src` in place through the destination's strides; `true`: the source
    /// is a scalar parameter.
    BinaryInplace(BinaryOp, DType, bool),
    /// Strided copy from one view into another (contiguous copies, slice assignment);
    /// `true`: every element gets one scalar parameter (`fill_` of a view).
    Copy(DType, bool),
    /// `cond ? a : b`; the flags say whether `a` and `b` are scalar parameters.
    Where(DType, bool, bool),
    Cast(DType, DType),
}

/// One input of a map kernel: a storage buffer or a scalar parameter, of a dtype.
#[derive(Debug, Clone, Copy)]
enum Input {
    Buffer(DType),
    Param(DType),
}

fn unsupported(op: &'static str, dtype: DType) -> Error {
    Error::Unsupported {
        op,
        dtype,
        backend: "gpu",
    }
}

/// The WGSL of a unary op on a dtype, and the result dtype.
pub(super) fn unary_expr(op: UnaryOp, d: DType) -> Result<(String, DType)> {
    fn entry<T>(e: &Unary<T>, own: DType) -> Option<(String, DType)> {
        match e {
            // NaN in, NaN out, as IEEE (and the CPU) have it: WGSL leaves builtins on NaN
            // to the driver (lavapipe's atan(NaN) is 0).
            Unary::Map(k) if own.compute_dtype() == DType::F32 => {
                Some((format!("select({}, a, is_nan_f32(a))", k.wgsl), own))
            }
            Unary::Map(k) => Some((k.wgsl.to_string(), own)),
            Unary::Test(k) => Some((format!("select(0u, 1u, {})", k.wgsl), DType::Bool)),
            Unary::ViaFloat | Unary::Refused(_) => None,
        }
    }
    let def = op.def();
    crate::op::entry_for!(d, def, |e| entry(e, d)).ok_or_else(|| unsupported(def.name, d))
}

/// The dtype of a unary op's result on `d`, or `Err(Unsupported)`.
pub fn unary_output(op: UnaryOp, d: DType) -> Result<DType> {
    unary_expr(op, d).map(|(_, out)| out)
}

/// The WGSL of a binary op on a dtype.
pub(super) fn binary_expr(op: BinaryOp, d: DType) -> Result<&'static str> {
    fn entry<T>(e: &Binary<T>) -> Option<&'static str> {
        match e {
            Binary::Map(k) => Some(k.wgsl),
            Binary::ViaFloat | Binary::ViaInt | Binary::Refused(_) => None,
        }
    }
    let def = op.def();
    crate::op::entry_for!(d, def, |e| entry(e)).ok_or_else(|| unsupported(def.name, d))
}

pub(super) fn cmp_expr(op: CmpOp) -> String {
    // One condition for every dtype (see `op/compare.rs`); the dtype's `arithmetic` defines
    // t_lt, t_eq and t_nz.
    format!("select(0u, 1u, {})", op.def().f32.wgsl)
}

pub(super) fn cast_expr(from: DType, to: DType) -> &'static str {
    use DType::*;
    // A 16-bit value is an f32 between its load and its store (see `map_source`).
    match (from.compute_dtype(), to.compute_dtype()) {
        (F32, I64) => "i64_from_f32(a)",
        // NaN is true, as on the CPU (`x != 0.0`); tested by its bits, which a driver cannot
        // fold away.
        (F32, Bool) => "select(0u, 1u, a != 0.0 || is_nan_f32(a))",
        (I64, F32) => "i64_to_f32(a)",
        (I64, Bool) => "select(0u, 1u, !i64_is_zero(a))",
        (Bool, F32) => "f32(a)",
        (Bool, I64) => "i64_from_u32(a)",
        (F32, F32) | (I64, I64) | (Bool, Bool) => "a",
        (F16 | BF16, _) | (_, F16 | BF16) => "a",
        // F64 only moves on a GPU (its bits as a vec2<u32>): `MapOp::source` refuses a
        // conversion of it.
        (F64, _) | (_, F64) => "a",
    }
}

/// WGSL helper functions of the f32 expressions of an op (empty for other dtypes).
fn float_helpers(d: DType, helpers: &'static str) -> &'static str {
    match d {
        DType::F32 | DType::F16 | DType::BF16 => helpers,
        DType::I64 | DType::Bool | DType::F64 => "",
    }
}

/// The WGSL functions that widen a stored 16-bit value to f32 and round an f32's bits back.
fn half_conversions(d: DType) -> Option<(&'static str, &'static str)> {
    match d {
        DType::F16 => Some(("f16_bits_to_f32", "f32_bits_to_f16")),
        DType::BF16 => Some(("bf16_bits_to_f32", "f32_bits_to_bf16")),
        DType::F32 | DType::I64 | DType::Bool | DType::F64 => None,
    }
}

/// A map kernel: output type, inputs, expression. `in_place` makes the output the left
/// operand `a` (read before it is written) and the inputs `b`, `c`. A 16-bit float operand
/// is read as its word and widened to f32; a 16-bit output is written as one half of a
/// word with atomic and/or, since a neighbouring thread may write the other half.
fn map_source(
    indexing: Indexing,
    out: DType,
    inputs: &[Input],
    expr: &str,
    helpers: &str,
    in_place: bool,
) -> String {
    let buffers = 1 + inputs
        .iter()
        .filter(|i| matches!(i, Input::Buffer(_)))
        .count();
    let index = |k: usize| match indexing {
        Indexing::Strided => format!("offs[{k}]"),
        Indexing::Contiguous | Indexing::Pairs => "i".to_string(),
    };
    let names: &[&str] = if in_place {
        &["b", "c"]
    } else {
        &["a", "b", "c"]
    };
    let mut bindings = String::new();
    let mut loads = String::new();
    if indexing == Indexing::Strided {
        loads += &format!("    let offs = operand_offsets(i, {buffers}u);\n");
    }
    let out_half = half_conversions(out);
    if in_place {
        loads += &match out_half {
            Some((widen, _)) => format!(
                "    let a = {widen}(half_of_word(atomicLoad(&out[{0} >> 1u]), {0}));\n",
                index(0)
            ),
            None => format!("    let a = out[{}];\n", index(0)),
        };
    }
    if inputs.iter().any(|i| matches!(i, Input::Param(_))) {
        // Scalars follow the metadata of the buffer operands (see common.wgsl).
        loads += &format!("    let sp = 2u + params[1] + {buffers}u * (params[1] + 1u);\n");
    }
    let (mut buffer, mut word) = (0, 0);
    for (input, name) in inputs.iter().zip(names) {
        match *input {
            Input::Buffer(d) => {
                let at = index(buffer + 1);
                let (stored, load) = match half_conversions(d) {
                    Some((widen, _)) => (
                        "u32",
                        format!("{widen}(half_of_word(in{buffer}[{at} >> 1u], {at}))"),
                    ),
                    None => (wgsl_type(d), format!("in{buffer}[{at}]")),
                };
                bindings += &format!(
                    "@group(0) @binding({}) var<storage, read> in{buffer}: array<{stored}>;\n",
                    buffer + 2,
                );
                loads += &format!("    let {name} = {load};\n");
                buffer += 1;
            }
            Input::Param(d) => {
                let value = match d {
                    // A 16-bit float's number travels as the f32 of its exact value.
                    DType::F32 | DType::F16 | DType::BF16 => {
                        format!("bitcast<f32>(params[sp + {word}u])")
                    }
                    // An F64 number travels as its bits (a copy's only).
                    DType::I64 | DType::F64 => format!(
                        "vec2<u32>(params[sp + {word}u], params[sp + {}u])",
                        word + 1
                    ),
                    DType::Bool => format!("params[sp + {word}u]"),
                };
                loads += &format!("    let {name} = {value};\n");
                word += super::scalar_word_count(d);
            }
        }
    }
    let at = index(0);
    let (out_type, store) = match out_half {
        Some((_, round)) => (
            "atomic<u32>",
            format!(
                "    let shift = ({at} & 1u) * 16u;
    atomicAnd(&out[{at} >> 1u], ~(0xffffu << shift));
    atomicOr(&out[{at} >> 1u], {round}(bitcast<u32>(value)) << shift);"
            ),
        ),
        None => (wgsl_type(out), format!("    out[{at}] = value;")),
    };
    let uses_half = out_half.is_some()
        || inputs
            .iter()
            .any(|i| matches!(i, Input::Buffer(d) if d.is_half()));
    let helpers = if uses_half {
        format!("{}\n{helpers}", super::HALF)
    } else {
        helpers.to_string()
    };
    if let (Indexing::Pairs, Some((_, round)), false) = (indexing, out_half, in_place) {
        return MAP_PAIRS
            .replace("{{ROUND}}", round)
            .replace("{{INPUTS}}", &bindings)
            .replace("{{LOADS}}", &loads)
            .replace("{{EXPR}}", expr)
            .replace("{{HELPERS}}", &helpers);
    }
    MAP.replace("{{T0}}", out_type)
        .replace("{{STORE}}", &store)
        .replace("{{INPUTS}}", &bindings)
        .replace("{{LOADS}}", &loads)
        .replace("{{EXPR}}", expr)
        .replace("{{HELPERS}}", &helpers)
}

/// The two operands of a binary op or comparison, with the scalar one as a parameter.
fn operands(d: DType, side: Option<ScalarSide>) -> [Input; 2] {
    match side {
        None => [Input::Buffer(d), Input::Buffer(d)],
        Some(ScalarSide::Lhs) => [Input::Param(d), Input::Buffer(d)],
        Some(ScalarSide::Rhs) => [Input::Buffer(d), Input::Param(d)],
    }
}

fn operand(d: DType, scalar: bool) -> Input {
    if scalar {
        Input::Param(d)
    } else {
        Input::Buffer(d)
    }
}

impl MapOp {
    pub(super) fn source(self, indexing: Indexing) -> Result<String> {
        if let Some(d) = self.f64_compute() {
            return Err(unsupported(
                "a GPU kernel computing in F64 (it runs on the host)",
                d,
            ));
        }
        let map = |out: DType, inputs: &[Input], expr: &str, helpers: &str| {
            map_source(indexing, out, inputs, expr, helpers, false)
        };
        Ok(match self {
            MapOp::Unary(op, d) => {
                let (expr, out) = unary_expr(op, d)?;
                map(
                    out,
                    &[Input::Buffer(d)],
                    &expr,
                    float_helpers(d, op.def().helpers),
                )
            }
            MapOp::Binary(op, d, side) => map(
                d,
                &operands(d, side),
                binary_expr(op, d)?,
                float_helpers(d, op.def().helpers),
            ),
            MapOp::Cmp(op, d, side) => map(
                DType::Bool,
                &operands(d, side),
                &cmp_expr(op),
                &arithmetic(d),
            ),
            MapOp::BinaryInplace(op, d, scalar) => map_source(
                indexing,
                d,
                &[operand(d, scalar)],
                binary_expr(op, d)?,
                float_helpers(d, op.def().helpers),
                true,
            ),
            MapOp::Copy(d, scalar) => map(d, &[operand(d, scalar)], "a", ""),
            MapOp::Where(d, a, b) => map(
                d,
                &[Input::Buffer(DType::Bool), operand(d, a), operand(d, b)],
                "select(c, b, a != 0u)",
                "",
            ),
            MapOp::Cast(from, to) => map(to, &[Input::Buffer(from)], cast_expr(from, to), ""),
        })
    }

    /// F64 when this kernel would compute with F64 values rather than copy their bits: the
    /// storage layer runs those ops on the host (WGSL has no f64).
    fn f64_compute(self) -> Option<DType> {
        let computes = match self {
            MapOp::Copy(..) => false,
            MapOp::Unary(_, d)
            | MapOp::Binary(_, d, _)
            | MapOp::BinaryInplace(_, d, _)
            | MapOp::Cmp(_, d, _)
            | MapOp::Where(d, _, _) => d == DType::F64,
            MapOp::Cast(from, to) => from == DType::F64 || to == DType::F64,
        };
        computes.then_some(DType::F64)
    }

    pub(super) fn uses_i64(self) -> bool {
        match self {
            MapOp::Unary(_, d)
            | MapOp::Binary(_, d, _)
            | MapOp::Copy(d, _)
            | MapOp::BinaryInplace(_, d, _)
            | MapOp::Cmp(_, d, _)
            | MapOp::Where(d, _, _) => d == DType::I64,
            MapOp::Cast(from, to) => from == DType::I64 || to == DType::I64,
        }
    }

    /// Every map kernel the op tables define.
    pub fn all() -> Vec<MapOp> {
        let sides = [None, Some(ScalarSide::ALL[0]), Some(ScalarSide::ALL[1])];
        let mut v = Vec::new();
        for d in DType::ALL {
            v.extend(
                DType::ALL
                    .iter()
                    .filter(|&&t| t != d && t != DType::F64 && d != DType::F64)
                    .map(|&t| MapOp::Cast(d, t)),
            );
            v.extend([false, true].map(|s| MapOp::Copy(d, s)));
            // The 16-bit floats only move and convert on the GPU: the storage layer computes
            // them in f32 (see `storage.rs`); F64 only moves.
            if d.is_half() || d == DType::F64 {
                continue;
            }
            v.extend(
                UnaryOp::ALL
                    .iter()
                    .filter(|&&op| unary_expr(op, d).is_ok())
                    .map(|&op| MapOp::Unary(op, d)),
            );
            for &op in BinaryOp::ALL
                .iter()
                .filter(|&&op| binary_expr(op, d).is_ok())
            {
                v.extend(sides.map(|s| MapOp::Binary(op, d, s)));
                v.extend([false, true].map(|s| MapOp::BinaryInplace(op, d, s)));
            }
            for &op in CmpOp::ALL {
                v.extend(sides.map(|s| MapOp::Cmp(op, d, s)));
            }
            for (a, b) in [(false, false), (true, false), (false, true), (true, true)] {
                v.push(MapOp::Where(d, a, b));
            }
        }
        v
    }
}
