//! WGSL generation: each kernel family is a template in `shaders/`, specialised by text
//! substitution for an op and dtypes. `Kernel` is the cache key; `Kernel::source` the WGSL.
//! `all_variants` lists every variant the crate can generate, so a test can validate each
//! with naga without a GPU.

pub mod fused;
pub mod lazy;
mod map;

pub use map::{unary_output, MapOp};

use crate::dtype::DType;
use crate::error::Result;
use crate::op::{FillKind, ReduceOp};

const COMMON: &str = include_str!("../../../shaders/common.wgsl");
const MAP: &str = include_str!("../../../shaders/map.wgsl");
const MAP_PAIRS: &str = include_str!("../../../shaders/map_pairs.wgsl");
const REDUCE: &str = include_str!("../../../shaders/reduce.wgsl");
const REDUCE_COMBINE: &str = include_str!("../../../shaders/reduce_combine.wgsl");
const MATMUL: &str = include_str!("../../../shaders/matmul.wgsl");
const MATMUL_VEC4: &str = include_str!("../../../shaders/matmul_vec4.wgsl");
const MATMUL_COOP: &str = include_str!("../../../shaders/matmul_coop.wgsl");
const SCAN: &str = include_str!("../../../shaders/scan.wgsl");
const SCAN_ADD: &str = include_str!("../../../shaders/scan_add.wgsl");
const GATHER: &str = include_str!("../../../shaders/gather.wgsl");
const FOLD: &str = include_str!("../../../shaders/fold.wgsl");
const GROUPS: &str = include_str!("../../../shaders/groups.wgsl");
const CHANNELS: &str = include_str!("../../../shaders/channels.wgsl");
const SOFTMAX: &str = include_str!("../../../shaders/softmax.wgsl");
const SOFTMAX_BACKWARD: &str = include_str!("../../../shaders/softmax_backward.wgsl");
const LAYER_NORM: &str = include_str!("../../../shaders/layer_norm.wgsl");
const LAYER_NORM_BACKWARD: &str = include_str!("../../../shaders/layer_norm_backward.wgsl");
const BATCH_NORM: &str = include_str!("../../../shaders/batch_norm.wgsl");
const BATCH_NORM_BACKWARD: &str = include_str!("../../../shaders/batch_norm_backward.wgsl");
const CROSS_ENTROPY: &str = include_str!("../../../shaders/cross_entropy.wgsl");
const CROSS_ENTROPY_BACKWARD: &str = include_str!("../../../shaders/cross_entropy_backward.wgsl");
const SCATTER_ADD: &str = include_str!("../../../shaders/scatter_add.wgsl");
const FILL: &str = include_str!("../../../shaders/fill.wgsl");
const INT64: &str = include_str!("../../../shaders/int64.wgsl");
const HALF: &str = include_str!("../../../shaders/half.wgsl");

/// Threads per workgroup of the 1-D kernels.
pub const WG: u32 = 256;

/// The WGSL type of a dtype's values in a kernel: I64 as two u32 words (low, high; see
/// `shaders/int64.wgsl`), Bool as u32 0/1, the 16-bit floats as the f32 they widen to (they
/// are stored two to a u32 word: see `shaders/half.wgsl`).
pub fn wgsl_type(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::F16 | DType::BF16 => "f32",
        // F64 values only move on a GPU: their bits, as I64's.
        DType::I64 | DType::F64 => "vec2<u32>",
        DType::Bool => "u32",
    }
}

/// Bytes per element of a dtype on the GPU (a buffer of a 16-bit dtype is rounded up to
/// whole words).
pub fn gpu_size(d: DType) -> u64 {
    match d {
        DType::I64 | DType::F64 => 8,
        DType::F32 | DType::Bool => 4,
        DType::F16 | DType::BF16 => 2,
    }
}

/// The parameter words of one number of a dtype (a 16-bit float's travels as an f32).
pub fn scalar_word_count(d: DType) -> usize {
    match d {
        DType::I64 | DType::F64 => 2,
        DType::F32 | DType::Bool | DType::F16 | DType::BF16 => 1,
    }
}

/// Zero, addition, multiplication and ordering of a dtype, for the templates shared by the
/// dtypes (matmul, scan, reductions): native operators, or the I64 emulation.
fn arithmetic(d: DType) -> String {
    if d == DType::I64 {
        return "fn t_zero() -> vec2<u32> { return i64_zero(); }
fn t_add(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> { return i64_add(a, b); }
fn t_mul(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> { return i64_mul(a, b); }
fn t_lt(a: vec2<u32>, b: vec2<u32>) -> bool { return i64_lt(a, b); }
fn t_eq(a: vec2<u32>, b: vec2<u32>) -> bool { return i64_eq(a, b); }
fn t_nz(a: vec2<u32>) -> bool { return !i64_is_zero(a); }
"
        .to_string();
    }
    let t = wgsl_type(d);
    // Non-zero is true, and so is NaN (by its bits: drivers may fold `a != a` to false).
    let nz = if d.compute_dtype() == DType::F32 {
        "a != 0.0 || is_nan_f32(a)".to_string()
    } else {
        format!("a != {t}(0)")
    };
    format!(
        "fn t_zero() -> {t} {{ return {t}(0); }}
fn t_add(a: {t}, b: {t}) -> {t} {{ return a + b; }}
fn t_mul(a: {t}, b: {t}) -> {t} {{ return a * b; }}
fn t_lt(a: {t}, b: {t}) -> bool {{ return a < b; }}
fn t_eq(a: {t}, b: {t}) -> bool {{ return a == b; }}
fn t_nz(a: {t}) -> bool {{ return {nz}; }}
"
    )
}

/// The entry point of a kernel with one thread per element: `body` runs for each `i` below
/// the element count, `params[0]`.
fn per_element_main(body: &str) -> String {
    format!(
        "@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {{
    let i = linear_index(gid, nwg);
    if (i >= params[0]) {{
        return;
    }}
{body}}}
"
    )
}

/// How a reduction is split across workgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceStage {
    /// One workgroup per output.
    Direct,
    /// Several workgroups per output, each writing a partial result.
    Split,
    /// One workgroup per output merging the partial results.
    Combine,
}

/// How a map kernel finds element `i` of each operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Indexing {
    /// Through the offsets, shape and strides in the metadata (any view, broadcasts).
    Strided,
    /// At `i` itself: every operand, the output included, is contiguous from its buffer's
    /// start. The common case, and worth a kernel of its own: no metadata reads per element.
    Contiguous,
    /// As `Contiguous`, for a fresh output of a 16-bit float dtype: each thread computes two
    /// elements and writes their word whole (`shaders/map_pairs.wgsl`).
    Pairs,
}

/// One specialised kernel: the key of the pipeline cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    Map(MapOp, Indexing),
    /// The last flag selects the subgroup variant (adapters with `Features::SUBGROUP`).
    Reduce(ReduceOp, DType, ReduceStage, bool),
    Matmul(DType),
    /// f32 matmul of operands read as vec4 (`shaders/matmul_vec4.wgsl`); the flags say
    /// whether A, then B, is stored column by column (a transposed row-major matrix).
    MatmulVec4(bool, bool),
    /// A fused elementwise program (`fused.rs`).
    Fused(&'static fused::Program),
    /// A lazily fused elementwise expression (`lazy.rs`), by its interned id.
    Lazy(u32),
    /// An f32 matmul whose store computes a fused elementwise expression of the product (an
    /// epilogue: bias, activation; `lazy.rs`, by its interned id): the vec4 kernel in the
    /// given operand modes (`Some`, as `MatmulVec4`'s) or the strided one (`None`).
    MatmulFused(Option<(bool, bool)>, u32),
    /// An f32 reduction whose input is a fused expression (`lazy.rs`) computed as it is
    /// read (a prologue): the stage and subgroup flag as `Reduce`'s, then the program.
    ReduceFused(ReduceOp, ReduceStage, bool, u32),
    /// F16 matmul on tensor cores (cooperative matrices; see `shaders/matmul_coop.wgsl`),
    /// with an f32 product. Only on adapters where `GpuContext` enabled it.
    MatmulCoop,
    Cumsum(DType),
    /// The last step of the parallel scan.
    ScanAdd(DType),
    /// index_select (false) or gather (true).
    Gather(DType, bool),
    ScatterAdd(DType),
    Fill(FillKind, DType),
    /// The adjoint of f32 sliding windows (`shaders/fold.wgsl`).
    FoldWindows,
    /// Cross-entropy of f32 logits rows against I64 labels (`shaders/cross_entropy.wgsl`).
    CrossEntropy,
    /// Its gradient (`shaders/cross_entropy_backward.wgsl`).
    CrossEntropyBackward,
    /// Batch normalisation of f32 values with the batch's statistics
    /// (`shaders/batch_norm.wgsl`).
    BatchNorm,
    /// Its gradients (`shaders/batch_norm_backward.wgsl`).
    BatchNormBackward,
    /// Layer normalisation of f32 rows (`shaders/layer_norm.wgsl`).
    LayerNorm,
    /// Its input's gradient (`shaders/layer_norm_backward.wgsl`).
    LayerNormBackward,
    /// Softmax or log-softmax of f32 rows (`shaders/softmax.wgsl`).
    Softmax,
    /// Its input's gradient (`shaders/softmax_backward.wgsl`).
    SoftmaxBackward,
}

/// `shaders/matmul.wgsl` for dtype `d`, C stored by `store` (see the shader).
fn matmul_source(d: DType, store: &str) -> String {
    let (stored, loads) = match d {
        DType::F16 | DType::BF16 => {
            let widen = if d == DType::F16 {
                "f16_bits_to_f32"
            } else {
                "bf16_bits_to_f32"
            };
            let load = |x: &str| {
                format!("fn load_{x}(i: u32) -> f32 {{ return {widen}(half_of_word({x}[i >> 1u], i)); }}\n")
            };
            ("u32", format!("{HALF}\n{}{}", load("a"), load("b")))
        }
        DType::F32 | DType::I64 | DType::Bool | DType::F64 => {
            let t = wgsl_type(d);
            let load = |x: &str| format!("fn load_{x}(i: u32) -> {t} {{ return {x}[i]; }}\n");
            (t, load("a") + &load("b"))
        }
    };
    MATMUL
        .replace("{{STORE}}", store)
        .replace("{{T}}", wgsl_type(d))
        .replace("{{IN}}", stored)
        + &loads
        + &arithmetic(d)
}

/// `shaders/matmul_vec4.wgsl` in the given operand modes, C stored by `store4`.
fn matmul_vec4_source(a_columns: bool, b_columns: bool, store4: &str) -> String {
    MATMUL_VEC4
        .replace("{{STORE}}", store4)
        .replace("{{A_COLUMNS}}", &a_columns.to_string())
        .replace("{{B_COLUMNS}}", &b_columns.to_string())
}

/// A matmul kernel's plain store: the product's elements (of WGSL type `t`) to binding 3.
fn plain_store(t: &str, name: &str) -> String {
    format!(
        "@group(0) @binding(3) var<storage, read_write> c: array<{t}>;
fn setup_store() {{}}
fn {name}(at: u32, row: u32, col: u32, v: {t}) {{ c[at] = v; }}"
    )
}

/// The vec4 kernel's store through a fused epilogue's `store`, lane by lane.
const STORE_LANES: &str = "fn store4(at: u32, row: u32, col: u32, v: vec4<f32>) {
    store(4u * at, row, col, v.x);
    store(4u * at + 1u, row, col + 1u, v.y);
    store(4u * at + 2u, row, col + 2u, v.z);
    store(4u * at + 3u, row, col + 3u, v.w);
}
";

/// Invocations of the kernels that give each row a workgroup (cross-entropy, layer norm,
/// softmax): rows are a layer's width, tens to a few thousand values, so a small group
/// keeps few invocations idle on short rows.
const ROW_GROUP: u32 = 64;

/// `shaders/groups.wgsl` for workgroups of `size` invocations, one per row up to the
/// count in parameter word `count_at`.
fn groups(size: u32, count_at: u32) -> String {
    GROUPS
        .replace("{{GROUP}}", &size.to_string())
        .replace("{{COUNT_AT}}", &count_at.to_string())
}

/// The tree reduction of the threads' partials in workgroup memory (every adapter).
const TREE_COMBINE: &str = "    partials[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            let l = partials[lid];
            let r = partials[lid + s];
            partials[lid] = merge(l, r);
        }
        workgroupBarrier();
    }
";

/// Whether a reduction has a subgroup variant (the arg reductions use the tree, and so does
/// I64, whose two words subgroup operations would combine independently).
pub fn subgroup_capable(op: ReduceOp, d: DType) -> bool {
    d != DType::I64
        && matches!(
            op,
            ReduceOp::Sum | ReduceOp::Prod | ReduceOp::Max | ReduceOp::Min
        )
}

/// Combine the threads' partials with subgroup operations, then merge one partial per
/// subgroup in workgroup memory. Same results as the tree up to float reassociation, and
/// max/min keep PyTorch's NaN propagation.
fn subgroup_combine(op: ReduceOp, d: DType) -> String {
    let t = wgsl_type(d);
    let extremum = |f: &str, identity: &str| {
        let best = format!("{f}(select({t}({identity}), acc.v, acc.has == 1u))");
        if d == DType::F32 {
            format!("Partial(select({best}, nan_f32(), subgroupAny(acc.has == 1u && is_nan_f32(acc.v))), 0u, subgroupMax(acc.has))")
        } else {
            format!("Partial({best}, 0u, subgroupMax(acc.has))")
        }
    };
    // The identities of max and min for the dtypes that have a subgroup variant (see
    // `subgroup_capable`; the arg reductions and I64 never reach here).
    let (lowest, highest) = match d {
        DType::F32 | DType::F16 | DType::BF16 => ("-inf_f32()", "inf_f32()"),
        DType::I64 | DType::Bool | DType::F64 => ("0u", "1u"),
    };
    let reduced = match op {
        ReduceOp::Sum => "Partial(subgroupAdd(acc.v), 0u, 1u)".to_string(),
        ReduceOp::Prod => "Partial(subgroupMul(acc.v), 0u, 1u)".to_string(),
        ReduceOp::Max | ReduceOp::ArgMax => extremum("subgroupMax", lowest),
        ReduceOp::Min | ReduceOp::ArgMin => extremum("subgroupMin", highest),
    };
    format!(
        "    let in_subgroup = {reduced};
    if (sg_lane == 0u) {{
        partials[sg_id] = in_subgroup;
    }}
    workgroupBarrier();
    if (lid == 0u) {{
        var total = partials[0];
        for (var s = 1u; s < num_sg; s = s + 1u) {{
            total = merge(total, partials[s]);
        }}
        partials[0] = total;
    }}
"
    )
}

/// init/fold/merge/finish for a reduction, written with the dtype's `arithmetic`.
fn reduce_helpers(op: ReduceOp, d: DType) -> (String, &'static str, &'static str) {
    let t = wgsl_type(d);
    use ReduceOp::*;
    let (acc, out, body) = match op {
        Sum | Prod => {
            let (id, f) = match (op, d) {
                (Sum, _) => ("t_zero()", "t_add"),
                (_, DType::I64 | DType::F64) => ("i64_from_u32(1u)", "t_mul"),
                (_, DType::F32 | DType::F16 | DType::BF16) => ("1.0", "t_mul"),
                (_, DType::Bool) => ("1u", "t_mul"),
            };
            (
                t,
                t,
                format!(
                    "fn init() -> Partial {{ return Partial({id}, 0u, 0u); }}
fn fold(acc: Partial, x: {t}, j: u32) -> Partial {{ return Partial({f}(acc.v, x), 0u, 1u); }}
fn merge(l: Partial, r: Partial) -> Partial {{ return Partial({f}(l.v, r.v), 0u, 1u); }}
fn finish(p: Partial) -> {t} {{ return p.v; }}"
                ),
            )
        }
        Max | Min | ArgMax | ArgMin => {
            let better = if matches!(op, Max | ArgMax) {
                "t_lt(y, x)"
            } else {
                "t_lt(x, y)"
            };
            // NaN wins (PyTorch propagates it); ties keep the smaller index (first occurrence).
            let nan = |v: &str| {
                if d == DType::F32 {
                    format!("is_nan_f32({v})")
                } else {
                    "false".to_string()
                }
            };
            let (out, finish) = if matches!(op, ArgMax | ArgMin) {
                (wgsl_type(DType::I64), "i64_from_u32(p.i)")
            } else {
                (t, "p.v")
            };
            (
                t,
                out,
                format!(
                    "fn init() -> Partial {{ return Partial(t_zero(), 0u, 0u); }}
fn beats(x: {t}, xi: u32, y: {t}, yi: u32) -> bool {{
    if ({xn}) {{ return !{yn} || xi < yi; }}
    if ({yn}) {{ return false; }}
    return {better} || (t_eq(x, y) && xi < yi);
}}
fn fold(acc: Partial, x: {t}, j: u32) -> Partial {{
    if (acc.has == 0u || beats(x, j, acc.v, acc.i)) {{ return Partial(x, j, 1u); }}
    return acc;
}}
fn merge(l: Partial, r: Partial) -> Partial {{
    if (r.has == 1u && (l.has == 0u || beats(r.v, r.i, l.v, l.i))) {{ return r; }}
    return l;
}}
fn finish(p: Partial) -> {out} {{ return {finish}; }}",
                    xn = nan("x"),
                    yn = nan("y")
                ),
            )
        }
    };
    (body + "\n" + &arithmetic(d), acc, out)
}

/// Bytes of one `Partial` of a split reduction (value, index, flag; see reduce.wgsl).
pub fn partial_size(d: DType) -> u64 {
    match d {
        // vec2<u32> aligns the struct to 8 bytes.
        DType::I64 | DType::F64 => 16,
        DType::F32 | DType::Bool | DType::F16 | DType::BF16 => 12,
    }
}

impl Kernel {
    /// The full WGSL source of this kernel, or `Err(Unsupported)` for an op the tables do
    /// not define on its dtype.
    pub fn source(&self) -> Result<String> {
        if let Kernel::ReduceFused(op, stage, subgroups, id) = *self {
            let reduce = Kernel::Reduce(op, DType::F32, stage, subgroups).source()?;
            // The expression's metadata follows the reduction's (see `shaders/reduce.wgsl`
            // and `GpuStorage::reduce_kernel`).
            let base = match stage {
                ReduceStage::Split => "6u + 2u * params[1] + 2u * params[3u + 2u * params[1]]",
                ReduceStage::Direct | ReduceStage::Combine => {
                    "4u + 2u * params[1] + 2u * params[3u + 2u * params[1]]"
                }
            };
            return lazy::LazyProgram::get(id)?.as_prologue(&reduce, base);
        }
        if let Some(d) = self.unsupported_dtype() {
            return Err(crate::error::Error::Unsupported {
                op: "a GPU kernel of this dtype (the storage layer computes it elsewhere)",
                dtype: d,
                backend: "gpu",
            });
        }
        let body = match *self {
            Kernel::Map(op, indexing) => op.source(indexing)?,
            Kernel::Reduce(op, d, stage, subgroups) => {
                if op.rule(d) != crate::op::Reduce::Native
                    || (subgroups && !subgroup_capable(op, d))
                {
                    return Err(crate::error::Error::Unsupported {
                        op: op.name(),
                        dtype: d,
                        backend: "gpu",
                    });
                }
                let (h, acc, out) = reduce_helpers(op, d);
                let (sg_args, combine) = if subgroups && stage != ReduceStage::Combine {
                    (", @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_id) sg_id: u32, @builtin(num_subgroups) num_sg: u32", subgroup_combine(op, d))
                } else {
                    ("", TREE_COMBINE.to_string())
                };
                let (template, out_elem, range, store) = match stage {
                    ReduceStage::Direct => (REDUCE, out, "    let o = g;\n    let start = 0u;\n    let end = n;", "        out[o] = finish(p);"),
                    ReduceStage::Split => (
                        REDUCE,
                        "Partial",
                        "    let q_at = 3u + 2u * params[1];\n    let tail = q_at + 1u + 2u * params[q_at];\n    let slices = params[tail];\n    let o = g / slices;\n    let start = (g % slices) * params[tail + 1u];\n    let end = min(n, start + params[tail + 1u]);",
                        "        out[g] = p;",
                    ),
                    ReduceStage::Combine => (REDUCE_COMBINE, out, "", ""),
                };
                template
                    .replace("{{COMBINE}}", &combine)
                    .replace("{{SG_ARGS}}", sg_args)
                    .replace("{{T}}", wgsl_type(d))
                    .replace("{{ACC}}", acc)
                    .replace("{{OUT}}", out)
                    .replace("{{OUT_ELEM}}", out_elem)
                    .replace("{{RANGE}}", range)
                    .replace("{{STORE}}", store)
                    .replace("{{HELPERS}}", &h)
            }
            Kernel::Matmul(d) => matmul_source(d, &plain_store(wgsl_type(d), "store")),
            Kernel::MatmulVec4(a_columns, b_columns) => {
                matmul_vec4_source(a_columns, b_columns, &plain_store("vec4<f32>", "store4"))
            }
            Kernel::MatmulFused(vec4, id) => {
                let program = lazy::LazyProgram::get(id)?;
                // The epilogue's metadata follows the product's: its fixed words (4 + 3r),
                // its tail of offsets and strides (4 vec4 / 6 strided), the first matrix.
                match vec4 {
                    Some((a_columns, b_columns)) => {
                        let store = program.as_epilogue("9u + 3u * params[3]")? + STORE_LANES;
                        matmul_vec4_source(a_columns, b_columns, &store)
                    }
                    None => {
                        matmul_source(DType::F32, &program.as_epilogue("11u + 3u * params[3]")?)
                    }
                }
            }
            Kernel::FoldWindows => FOLD.to_string(),
            Kernel::CrossEntropy => format!("{}\n{CROSS_ENTROPY}", groups(ROW_GROUP, 0)),
            Kernel::CrossEntropyBackward => CROSS_ENTROPY_BACKWARD.to_string(),
            // A workgroup per channel (many elements each; their count is parameter 1),
            // or per row (a layer's width; parameter 0).
            Kernel::BatchNorm => format!("{}\n{CHANNELS}\n{BATCH_NORM}", groups(WG, 1)),
            Kernel::BatchNormBackward => {
                format!("{}\n{CHANNELS}\n{BATCH_NORM_BACKWARD}", groups(WG, 1))
            }
            Kernel::LayerNorm => format!("{}\n{LAYER_NORM}", groups(ROW_GROUP, 0)),
            Kernel::LayerNormBackward => format!("{}\n{LAYER_NORM_BACKWARD}", groups(ROW_GROUP, 0)),
            Kernel::Softmax => format!("{}\n{SOFTMAX}", groups(ROW_GROUP, 0)),
            Kernel::SoftmaxBackward => format!("{}\n{SOFTMAX_BACKWARD}", groups(ROW_GROUP, 0)),
            Kernel::MatmulCoop => MATMUL_COOP.to_string(),
            Kernel::Fused(program) => program.source()?,
            Kernel::Lazy(id) => lazy::LazyProgram::get(id)?.source()?,
            Kernel::ReduceFused(..) => {
                return Err(crate::error::Error::invalid(
                    "fused reduction",
                    "its source is built above",
                ))
            }
            Kernel::Cumsum(d) => SCAN.replace("{{T}}", wgsl_type(d)) + &arithmetic(d),
            Kernel::ScanAdd(d) => SCAN_ADD.replace("{{T}}", wgsl_type(d)) + &arithmetic(d),
            Kernel::Gather(d, gather) => format!(
                "const MODE: u32 = {}u;\n{}",
                gather as u32,
                GATHER.replace("{{T}}", wgsl_type(d))
            ),
            Kernel::ScatterAdd(d) => {
                let (atomic, add) = match d {
                    DType::F32 => (
                        "u32",
                        "    var old = atomicLoad(&out[dst]);
    loop {
        let next = bitcast<u32>(bitcast<f32>(old) + x);
        let r = atomicCompareExchangeWeak(&out[dst], old, next);
        if (r.exchanged) { break; }
        old = r.old_value;
    }",
                    ),
                    // I64: add the low words, then the high words with the carry out of the
                    // low word; additions commute, so concurrent adds still sum exactly.
                    DType::I64 => (
                        "u32",
                        "    let low_before = atomicAdd(&out[2u * dst], x.x);
    atomicAdd(&out[2u * dst + 1u], x.y + select(0u, 1u, low_before + x.x < low_before));",
                    ),
                    DType::Bool | DType::F16 | DType::BF16 | DType::F64 => {
                        return Err(crate::error::Error::Unsupported {
                            op: "scatter_add",
                            dtype: d,
                            backend: "gpu",
                        })
                    }
                };
                SCATTER_ADD
                    .replace("{{T}}", wgsl_type(d))
                    .replace("{{A}}", atomic)
                    .replace("{{ADD}}", add)
            }
            Kernel::Fill(kind, d) => {
                let t = wgsl_type(d);
                let value = match kind {
                    FillKind::Constant if d == DType::I64 => "vec2<u32>(params[1], params[2])".to_string(),
                    FillKind::Constant => format!("bitcast<{t}>(params[1])"),
                    FillKind::Arange if d == DType::I64 => "i64_add(vec2<u32>(params[1], params[2]), i64_mul(i64_from_u32(i), vec2<u32>(params[3], params[4])))".to_string(),
                    FillKind::Arange => "bitcast<f32>(params[1]) + f32(i) * bitcast<f32>(params[2])".to_string(),
                    FillKind::Uniform => "unit(random_words(i).x)".to_string(),
                    FillKind::Normal => "normal(i)".to_string(),
                    FillKind::RandInt => "randint(i)".to_string(),
                };
                FILL.replace("{{T}}", t).replace("{{VALUE}}", &value)
            }
        };
        // naga takes subgroup builtins without an `enable` directive (it rejects
        // `enable subgroups;` as not yet supported); the device feature gates them.
        let int64 = if self.uses_i64() { INT64 } else { "" };
        // An `enable` directive must come before every declaration.
        let enables = if *self == Kernel::MatmulCoop {
            "enable f16;\nenable wgpu_cooperative_matrix;\n"
        } else {
            ""
        };
        Ok(format!(
            "{enables}const WG: u32 = {WG}u;\n{COMMON}\n{int64}\n{body}"
        ))
    }

    /// Kernels that may run without wgpu's runtime checks (see `GpuContext::pipeline`): the
    /// two matmul kernels, whose global loads and stores are each behind an explicit
    /// `row < m && col < n`-style test, whose workgroup-memory and register indices come
    /// from constants and the local invocation id, and whose only divisions are by
    /// constants or by batch sizes (never 0: empty products return before dispatch). Their
    /// fused forms add an epilogue that runs only for such a tested element `i`: its
    /// outputs hold the product's elements, its reads are tensor views of the product's
    /// shape (the offsets of element `i` lie in their buffers, as every layout's do), and
    /// it divides by the sizes of those views' dims, never 0 (empty tensors do not fuse).
    /// Checked, the epilogue made chargpt's step about 1.7x slower on lavapipe.
    pub fn in_bounds_by_construction(&self) -> bool {
        matches!(
            self,
            Kernel::Matmul(_) | Kernel::MatmulVec4(..) | Kernel::MatmulFused(..)
        )
    }

    /// A dtype this kernel family does not take: the 16-bit floats outside map kernels and
    /// matmul (their loads and stores convert; the storage layer computes them in f32
    /// everywhere else), and F64 everywhere (the storage layer runs its ops on the host).
    fn unsupported_dtype(&self) -> Option<DType> {
        match *self {
            Kernel::Map(..)
            | Kernel::MatmulVec4(..)
            | Kernel::MatmulFused(..)
            | Kernel::MatmulCoop
            | Kernel::Fused(_)
            | Kernel::Lazy(_)
            | Kernel::ReduceFused(..)
            | Kernel::FoldWindows
            | Kernel::CrossEntropy
            | Kernel::CrossEntropyBackward
            | Kernel::BatchNorm
            | Kernel::BatchNormBackward
            | Kernel::LayerNorm
            | Kernel::LayerNormBackward
            | Kernel::Softmax
            | Kernel::SoftmaxBackward => None,
            // Matmul reads 16-bit operands itself and gives an f32 product.
            Kernel::Matmul(d) => Some(d).filter(|&d| d == DType::F64),
            Kernel::Reduce(_, d, _, _)
            | Kernel::Cumsum(d)
            | Kernel::ScanAdd(d)
            | Kernel::Gather(d, _)
            | Kernel::ScatterAdd(d)
            | Kernel::Fill(_, d) => Some(d).filter(|d| d.is_half() || *d == DType::F64),
        }
    }

    /// Whether the kernel reads or writes I64 values (and so needs `shaders/int64.wgsl`).
    fn uses_i64(&self) -> bool {
        match *self {
            Kernel::Map(op, _) => op.uses_i64(),
            Kernel::Matmul(d) | Kernel::Cumsum(d) | Kernel::ScanAdd(d) => d == DType::I64,
            Kernel::Reduce(op, d, _, _) => {
                d == DType::I64 || matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin)
            }
            Kernel::ReduceFused(op, ..) => matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin),
            Kernel::MatmulVec4(..)
            | Kernel::MatmulFused(..)
            | Kernel::MatmulCoop
            | Kernel::Fused(_)
            | Kernel::Lazy(_)
            | Kernel::FoldWindows
            | Kernel::BatchNorm
            | Kernel::BatchNormBackward
            | Kernel::LayerNorm
            | Kernel::LayerNormBackward
            | Kernel::Softmax
            | Kernel::SoftmaxBackward => false,
            // Index operands and labels are I64; the random integers' helpers use 64-bit
            // arithmetic.
            Kernel::Gather(..)
            | Kernel::ScatterAdd(_)
            | Kernel::Fill(..)
            | Kernel::CrossEntropy
            | Kernel::CrossEntropyBackward => true,
        }
    }

    /// A readable label for the pipeline.
    pub fn label(&self) -> String {
        match self {
            Kernel::Fused(p) => format!("Fused({})", p.name),
            Kernel::Lazy(id) => lazy::LazyProgram::get(*id)
                .map(|p| p.label())
                .unwrap_or_else(|_| format!("Lazy({id})")),
            Kernel::MatmulFused(_, id) => lazy::LazyProgram::get(*id)
                .map(|p| p.label())
                .unwrap_or_else(|_| format!("MatmulFused({id})")),
            Kernel::ReduceFused(op, stage, _, id) => {
                let program = lazy::LazyProgram::get(*id)
                    .map(|p| p.label())
                    .unwrap_or_else(|_| format!("Lazy({id})"));
                format!("Reduce({op:?}, {stage:?}) of {program}")
            }
            k => format!("{k:?}"),
        }
    }
}

/// Every kernel variant the crate can generate.
pub fn all_variants() -> Vec<Kernel> {
    let mut v = Vec::new();
    for op in MapOp::all() {
        v.push(Kernel::Map(op, Indexing::Strided));
        v.push(Kernel::Map(op, Indexing::Contiguous));
        if matches!(op, MapOp::Cast(_, t) | MapOp::Copy(t, _) if t.is_half()) {
            v.push(Kernel::Map(op, Indexing::Pairs));
        }
    }
    for d in DType::ALL
        .into_iter()
        .filter(|&d| !d.is_half() && d != DType::F64)
    {
        for &op in ReduceOp::ALL {
            // Sum and prod of bool run on I64 (see `op/reduce.rs`).
            if op.rule(d) != crate::op::Reduce::Native {
                continue;
            }
            v.extend(
                [
                    ReduceStage::Direct,
                    ReduceStage::Split,
                    ReduceStage::Combine,
                ]
                .map(|s| Kernel::Reduce(op, d, s, false)),
            );
            if subgroup_capable(op, d) {
                v.extend(
                    [ReduceStage::Direct, ReduceStage::Split]
                        .map(|s| Kernel::Reduce(op, d, s, true)),
                );
            }
        }
        if d != DType::Bool {
            v.push(Kernel::Matmul(d));
            v.push(Kernel::Cumsum(d));
            v.push(Kernel::ScanAdd(d));
            v.push(Kernel::ScatterAdd(d));
            v.push(Kernel::Fill(FillKind::Arange, d));
        }
        v.push(Kernel::Gather(d, false));
        v.push(Kernel::Gather(d, true));
        v.push(Kernel::Fill(FillKind::Constant, d));
    }
    for a_columns in [false, true] {
        for b_columns in [false, true] {
            v.push(Kernel::MatmulVec4(a_columns, b_columns));
        }
    }
    v.push(Kernel::FoldWindows);
    v.push(Kernel::CrossEntropy);
    v.push(Kernel::CrossEntropyBackward);
    v.push(Kernel::BatchNorm);
    v.push(Kernel::BatchNormBackward);
    v.push(Kernel::LayerNorm);
    v.push(Kernel::LayerNormBackward);
    v.push(Kernel::Softmax);
    v.push(Kernel::SoftmaxBackward);
    v.push(Kernel::MatmulCoop);
    v.extend(
        crate::optim::FUSED_PROGRAMS
            .iter()
            .chain([&&crate::nn::RUNNING_STATS])
            .map(|&p| Kernel::Fused(p)),
    );
    v.extend([DType::F16, DType::BF16].map(Kernel::Matmul));
    v.push(Kernel::Fill(FillKind::Uniform, DType::F32));
    v.push(Kernel::Fill(FillKind::Normal, DType::F32));
    v.push(Kernel::Fill(FillKind::RandInt, DType::I64));
    // The fused expressions this process has generated so far, and each one that gives one
    // f32 value as a reduction's prologue (two of the reduction variants).
    for id in lazy::LazyProgram::all_ids() {
        // A matmul's epilogue, in each of the kernels it may run in.
        if lazy::LazyProgram::get(id).is_ok_and(|p| p.has_product()) {
            v.push(Kernel::MatmulFused(None, id));
            for a_columns in [false, true] {
                for b_columns in [false, true] {
                    v.push(Kernel::MatmulFused(Some((a_columns, b_columns)), id));
                }
            }
            continue;
        }
        v.push(Kernel::Lazy(id));
        if lazy::LazyProgram::get(id).is_ok_and(|p| p.is_prologue()) {
            v.push(Kernel::ReduceFused(
                ReduceOp::Sum,
                ReduceStage::Direct,
                false,
                id,
            ));
            v.push(Kernel::ReduceFused(
                ReduceOp::Max,
                ReduceStage::Split,
                true,
                id,
            ));
        }
    }
    v
}
