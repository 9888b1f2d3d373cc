//! Kernels of lazily fused elementwise expressions (`storage/lazy.rs`): a DAG of table ops
//! over strided tensor reads and numbers, written out as one kernel with one or more
//! contiguous outputs. The WGSL of each node is the op table's own expression, the one the
//! op's map kernel runs (`map.rs`), so a fused value is computed by the same float
//! operations as the ops one by one. Programs are interned: `Kernel::Lazy(id)` names one.

use super::map::{binary_expr, cast_expr, cmp_expr, unary_expr};
use super::{arithmetic, wgsl_type};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::{BinaryOp, CmpOp, UnaryOp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// An elementwise op a fused kernel can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FusedOp {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// A comparison or logical connective (a bool result).
    Cmp(CmpOp),
    /// `cond ? a : b`.
    Where,
    /// A conversion to the node's dtype.
    Cast,
}

/// The dtypes fused kernels compute in: f32 values and bools (u32 0/1). Integers (two-word
/// emulation), the 16-bit floats and F64 (computed elsewhere) run their ops one by one.
pub fn fusable_dtype(d: DType) -> bool {
    matches!(d, DType::F32 | DType::Bool)
}

/// Whether `op` on operands of dtype `input` (the value operands' dtype; `where`'s
/// condition is bool) giving `out` has a fused form.
pub fn supports(op: FusedOp, input: DType, out: DType) -> bool {
    if !fusable_dtype(input) || !fusable_dtype(out) {
        return false;
    }
    match op {
        FusedOp::Unary(u) => unary_expr(u, input).is_ok_and(|(_, o)| o == out),
        FusedOp::Binary(b) => input == out && binary_expr(b, input).is_ok(),
        FusedOp::Cmp(_) => out == DType::Bool,
        FusedOp::Where => input == out,
        FusedOp::Cast => true,
    }
}

/// One value of a program; operands are earlier nodes, by index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    /// Element `i` of tensor operand `k` (of the node's dtype).
    Load(u8),
    /// Scalar parameter `k` (of the node's dtype).
    Param(u8),
    /// `op` over operand nodes of dtype `input`.
    Op(FusedOp, DType, Vec<u16>),
    /// The element of a matrix product that the program's matmul kernel computed (an f32):
    /// the program is that kernel's epilogue (`Kernel::MatmulFused`).
    Product,
}

/// A fused kernel: its nodes with their dtypes, which tensor operands are read through
/// strides (the others are contiguous from their buffer's start), and which nodes it stores,
/// each to an output of its own, contiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LazyProgram {
    pub nodes: Vec<(Node, DType)>,
    /// Per tensor operand: read at strided offsets (`true`) or at `i`.
    pub strided: Vec<bool>,
    /// The dtypes of the scalar parameters, in order.
    pub params: Vec<DType>,
    pub outputs: Vec<u16>,
}

struct Interned {
    ids: HashMap<Arc<LazyProgram>, u32>,
    programs: Vec<Arc<LazyProgram>>,
}

fn interned() -> &'static Mutex<Interned> {
    static TABLE: OnceLock<Mutex<Interned>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Mutex::new(Interned {
            ids: HashMap::new(),
            programs: Vec::new(),
        })
    })
}

impl LazyProgram {
    /// The program's id (`Kernel::Lazy`), the same for equal programs.
    pub fn intern(self) -> u32 {
        let mut t = interned().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = t.ids.get(&self) {
            return id;
        }
        let id = t.programs.len() as u32;
        let p = Arc::new(self);
        t.programs.push(p.clone());
        t.ids.insert(p, id);
        id
    }

    /// The program interned as `id`.
    pub fn get(id: u32) -> Result<Arc<LazyProgram>> {
        let t = interned().lock().unwrap_or_else(|e| e.into_inner());
        t.programs
            .get(id as usize)
            .cloned()
            .ok_or_else(|| Error::invalid("fused kernel", format!("no fused program {id}")))
    }

    /// Every program interned so far (for validating them with naga in the tests).
    pub fn all_ids() -> Vec<u32> {
        let t = interned().lock().unwrap_or_else(|e| e.into_inner());
        (0..t.programs.len() as u32).collect()
    }

    /// The kernel's WGSL body. Bindings: the parameters (0), the outputs (1..), then the
    /// tensor operands. Metadata as the map kernels' (`common.wgsl`): operand 0 stands for
    /// the outputs (all contiguous), tensor operand `k` is metadata operand `k + 1`; the
    /// scalar parameters follow.
    pub(super) fn source(&self) -> Result<String> {
        if self.has_product() {
            return Err(Error::invalid(
                "fused kernel",
                "a matmul's epilogue runs in the matmul kernel",
            ));
        }
        let (bindings, stores) = self.output_bindings(1)?;
        let parts = self.parts(1 + self.outputs.len(), "0u", "params[1]", None)?;
        let body = parts.setup_lets() + &parts.body + &stores;
        Ok(format!(
            "// A fused elementwise expression (storage/lazy.rs).
{bindings}{reads}
{functions}
{main}",
            reads = parts.bindings,
            functions = parts.functions,
            main = super::per_element_main(&body),
        ))
    }

    /// The WGSL of a matmul kernel's `store(i, product)` (see `shaders/matmul.wgsl`) that
    /// computes this program from the product's element `i` and stores its outputs: the
    /// output bindings from 3, then the read bindings, and metadata from the parameter
    /// `base` (a WGSL expression).
    pub(super) fn as_epilogue(&self, base: &str) -> Result<String> {
        let (bindings, stores) = self.output_bindings(3)?;
        // Parameter 3 is the product's batch rank: no rank is that large (see `keep_f32`);
        // parameter 1 its row length.
        let parts = self.parts(3 + self.outputs.len(), "e", "params[3]", Some("params[1]"))?;
        // The metadata every element uses is read once per thread, before its stores (each
        // store would otherwise read it again: the compiler cannot tell that the outputs do
        // not alias the parameters).
        let mut globals = "var<private> ep_e: u32;\n".to_string();
        let mut setup = format!("    let e = {base};\n    ep_e = e;\n");
        let mut lets = "    let e = ep_e;\n".to_string();
        for (name, value) in &parts.setup {
            globals += &format!("var<private> ep_{name}: u32;\n");
            setup += &format!("    let {name} = {value};\n    ep_{name} = {name};\n");
            lets += &format!("    let {name} = ep_{name};\n");
        }
        Ok(format!(
            "{bindings}{reads}
{functions}
{globals}
fn setup_store() {{
{setup}}}

// The epilogue: the program's values at element i (row, col) of the product, stored.
fn store(i: u32, row: u32, col: u32, product: f32) {{
{lets}{body}{stores}}}
",
            reads = parts.bindings,
            functions = parts.functions,
            body = parts.body,
        ))
    }

    /// The bindings of the program's outputs from `first`, and the statements storing
    /// element `i` of each.
    fn output_bindings(&self, first: usize) -> Result<(String, String)> {
        let mut bindings = String::new();
        let mut stores = String::new();
        for (k, &n) in self.outputs.iter().enumerate() {
            let t = wgsl_type(self.dtype_of(n)?);
            bindings += &format!(
                "@group(0) @binding({}) var<storage, read_write> o{k}: array<{t}>;\n",
                first + k
            );
            stores += &format!("    o{k}[i] = v{n};\n");
        }
        Ok((bindings, stores))
    }

    /// Whether the program is a matmul's epilogue (it reads the product).
    pub fn has_product(&self) -> bool {
        self.nodes.iter().any(|(n, _)| *n == Node::Product)
    }

    /// Whether the program only stores the product: the plain matmul kernel computes it.
    pub fn is_bare_product(&self) -> bool {
        self.nodes.len() == 1 && self.nodes[0].0 == Node::Product && self.outputs == [0]
    }

    /// The WGSL that a reduction kernel's source `reduce` needs to read this program's
    /// (first) output as its input: the read bindings from 2 (in place of its `src`), and
    /// `prologue(i)`, the value of element `i`, from metadata that starts at the parameter
    /// `base` (a WGSL expression).
    pub(super) fn as_prologue(&self, reduce: &str, base: &str) -> Result<String> {
        let binding = "@group(0) @binding(2) var<storage, read> src: array<f32>;";
        let load = "src[base + reduced_offset(j)]";
        let root = *self
            .outputs
            .first()
            .ok_or_else(|| Error::invalid("fused reduction", "a prologue without a value"))?;
        if !reduce.contains(binding) || !reduce.contains(load) || self.dtype_of(root)? != DType::F32
        {
            return Err(Error::invalid(
                "fused reduction",
                "the reduction kernel does not read an f32 `src` as expected",
            ));
        }
        let parts = self.parts(2, "e", "params[1]", None)?;
        Ok(format!(
            "{}
{functions}
// The reduction's input element i, computed.
fn prologue(i: u32) -> f32 {{
    let e = {base};
{setup}{body}    return v{root};
}}
",
            reduce
                .replace(binding, &parts.bindings)
                .replace(load, "prologue(base + reduced_offset(j))"),
            functions = parts.functions,
            setup = parts.setup_lets(),
            body = parts.body,
        ))
    }

    /// The read bindings (from `first_binding`), the functions, and the statements that
    /// compute every node `v{j}` for element `i` from the metadata at parameter `base`.
    /// `small` is a parameter word that is never above 4096 (a rank), for `keep_f32`.
    /// `product_rows`: in a matmul's epilogue, the product's row and column of `i` are
    /// `row` and `col`, and its row length is the parameter word given.
    fn parts(
        &self,
        first_binding: usize,
        base: &str,
        small: &str,
        product_rows: Option<&str>,
    ) -> Result<Parts> {
        let loads = self.strided.len();
        let mut load_types = vec![None; loads];
        for (node, d) in &self.nodes {
            if let Node::Load(k) = node {
                load_types[*k as usize] = Some(*d);
            }
        }
        let mut bindings = String::new();
        for (k, d) in load_types.iter().enumerate() {
            let t = wgsl_type(d.unwrap_or(DType::F32));
            bindings += &format!(
                "@group(0) @binding({}) var<storage, read> l{k}: array<{t}>;\n",
                first_binding + k
            );
        }
        let mut helpers: Vec<String> = Vec::new();
        let mut functions = String::new();
        let mut body = String::new();
        let mut setup = Vec::new();
        if self.strided.iter().any(|&s| s) || !self.params.is_empty() {
            setup.push(("rank", format!("params[{base} + 1u]")));
        }
        if !self.params.is_empty() {
            let at = format!("{base} + 2u + rank + {}u * (rank + 1u)", loads + 1);
            setup.push(("sp", at));
        }
        // The strided reads' offsets, from one pass over the coordinates of `i` (integer
        // division is slow on GPUs, and scalar on a CPU's vector units).
        let strided: Vec<usize> = (0..loads).filter(|&k| self.strided[k]).collect();
        if !strided.is_empty() {
            let operands: Vec<String> = strided.iter().map(|k| format!("{}u", k + 1)).collect();
            body += &format!(
                "    let operands = array<u32, {n}>({list});
    var offs = array<u32, {n}>();
    for (var m = 0u; m < {n}u; m = m + 1u) {{
        offs[m] = params[{base} + 2u + rank + operands[m] * (rank + 1u)];
    }}
{walk}",
                n = strided.len(),
                list = operands.join(", "),
                walk = walk(strided.len(), base, product_rows),
            );
        }
        let mut words = Vec::with_capacity(self.params.len());
        let mut word = 0usize;
        for &d in &self.params {
            words.push(word);
            word += super::scalar_word_count(d);
        }
        let mut used = vec![0u32; self.nodes.len()];
        for (j, (node, d)) in self.nodes.iter().enumerate() {
            let t = wgsl_type(*d);
            let value = match node {
                Node::Load(k) => {
                    if let Some(m) = strided.iter().position(|&s| s == *k as usize) {
                        format!("l{k}[offs[{m}]]")
                    } else {
                        format!("l{k}[i]")
                    }
                }
                Node::Param(k) => {
                    let at = words[*k as usize];
                    match d {
                        DType::F32 => format!("bitcast<f32>(params[sp + {at}u])"),
                        _ => format!("params[sp + {at}u]"),
                    }
                }
                Node::Product => "product".to_string(),
                Node::Op(op, input, args) => {
                    let ti = wgsl_type(*input);
                    let (signature, expr, helper) = match *op {
                        FusedOp::Unary(u) => {
                            let (expr, _) = unary_expr(u, *input)?;
                            let h = if *input == DType::F32 {
                                u.def().helpers
                            } else {
                                ""
                            };
                            (format!("a: {ti}"), expr, h.to_string())
                        }
                        FusedOp::Binary(b) => {
                            let h = if *input == DType::F32 {
                                b.def().helpers
                            } else {
                                ""
                            };
                            (
                                format!("a: {ti}, b: {ti}"),
                                binary_expr(b, *input)?.to_string(),
                                h.to_string(),
                            )
                        }
                        FusedOp::Cmp(c) => {
                            // The dtype's t_lt/t_eq/t_nz, named apart from another dtype's.
                            let p = prefix(*input);
                            (
                                format!("a: {ti}, b: {ti}"),
                                renamed(&cmp_expr(c), p),
                                renamed(&arithmetic(*input), p),
                            )
                        }
                        FusedOp::Where => (
                            format!("c: u32, a: {t}, b: {t}"),
                            "select(b, a, c != 0u)".to_string(),
                            String::new(),
                        ),
                        FusedOp::Cast => (
                            format!("a: {ti}"),
                            cast_expr(*input, *d).to_string(),
                            String::new(),
                        ),
                    };
                    if !helper.is_empty() {
                        helpers.push(helper);
                    }
                    functions += &format!("fn node{j}({signature}) -> {t} {{ return {expr}; }}\n");
                    // A value's second and later uses go through `keep`, which the compiler
                    // cannot see through: drivers may fold `x - x` to 0 (WGSL allows them to
                    // assume no inf or NaN), which one op per kernel never showed them.
                    let args: Vec<String> = args
                        .iter()
                        .map(|&a| {
                            let uses = &mut used[a as usize];
                            *uses += 1;
                            match (*uses, self.nodes[a as usize].1) {
                                (1, _) => format!("v{a}"),
                                (_, DType::F32) => format!("keep_f32(v{a})"),
                                _ => format!("keep_u32(v{a})"),
                            }
                        })
                        .collect();
                    format!("node{j}({})", args.join(", "))
                }
            };
            body += &format!("    let v{j} = {value};\n");
        }
        helpers.sort_unstable();
        helpers.dedup();
        Ok(Parts {
            setup,
            bindings,
            functions: format!(
                "{helpers}
{functions}
// x, as far as any compiler can tell only at run time (no rank is that large).
fn keep_f32(x: f32) -> f32 {{
    return select(x, 0.0, {small} > 4096u);
}}
fn keep_u32(x: u32) -> u32 {{
    return select(x, 0u, {small} > 4096u);
}}
",
                helpers = helpers.join("\n"),
            ),
            body,
        })
    }

    /// Whether this program can be a reduction's prologue: one f32 value, of tensor reads.
    pub fn is_prologue(&self) -> bool {
        !self.has_product()
            && self.outputs.len() == 1
            && self
                .dtype_of(self.outputs[0])
                .is_ok_and(|d| d == DType::F32)
    }

    fn dtype_of(&self, n: u16) -> Result<DType> {
        self.nodes
            .get(n as usize)
            .map(|(_, d)| *d)
            .ok_or_else(|| Error::invalid("fused kernel", format!("no node {n}")))
    }

    /// A label for the pipeline: the ops, in order.
    pub fn label(&self) -> String {
        let ops: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|(n, _)| match n {
                Node::Op(FusedOp::Unary(u), ..) => Some(u.name().to_string()),
                Node::Op(FusedOp::Binary(b), ..) => Some(b.name().to_string()),
                Node::Op(FusedOp::Cmp(c), ..) => Some(c.name().to_string()),
                Node::Op(FusedOp::Where, ..) => Some("where".into()),
                Node::Op(FusedOp::Cast, ..) => Some("cast".into()),
                Node::Product => Some("matmul".into()),
                Node::Load(_) | Node::Param(_) => None,
            })
            .collect();
        format!("Fused[{}]", ops.join(","))
    }
}

/// A program's WGSL, in the pieces a kernel assembles.
struct Parts {
    /// Values of the metadata that every element uses (name, WGSL expression), in order.
    setup: Vec<(&'static str, String)>,
    bindings: String,
    functions: String,
    body: String,
}

/// The statements adding to `offs[m]` the offset of element `i` in each of the `n` strided
/// reads (metadata at `base`), from one pass over the coordinates of `i`. In an epilogue
/// whose metadata is the product's rows (2 dims, a row as long as the product's, the
/// parameter word `product_rows`), the coordinates are the product's row and column,
/// without a division.
fn walk(n: usize, base: &str, product_rows: Option<&str>) -> String {
    let add = |c: &str, d: &str| {
        format!(
            "for (var m = 0u; m < {n}u; m = m + 1u) {{
            offs[m] = offs[m] + {c} * params[{base} + 2u + rank + operands[m] * (rank + 1u) + {d}];
        }}"
        )
    };
    let general = format!(
        "var rem = i;
    for (var d = rank; d > 0u; d = d - 1u) {{
        var c = rem;
        if (d > 1u) {{
            let size = params[{base} + 1u + d];
            c = rem % size;
            rem = rem / size;
        }}
        {}
    }}
",
        add("c", "d")
    );
    match product_rows {
        None => format!("    {general}"),
        Some(length) => format!(
            "    if (rank == 2u && params[{base} + 3u] == {length}) {{
        {}
        {}
    }} else {{
    {general}    }}
",
            add("row", "1u"),
            add("col", "2u")
        ),
    }
}

impl Parts {
    /// The setup values as `let` statements.
    fn setup_lets(&self) -> String {
        self.setup
            .iter()
            .map(|(name, value)| format!("    let {name} = {value};\n"))
            .collect()
    }
}

/// The prefix that names a dtype's comparison helpers apart.
fn prefix(d: DType) -> &'static str {
    match d {
        DType::Bool => "tb_",
        _ => "tf_",
    }
}

/// `text` with each identifier starting `t_` renamed to start with `prefix`.
fn renamed(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut previous: Option<char> = None;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let starts_identifier = !previous.is_some_and(|p| p.is_alphanumeric() || p == '_');
        if starts_identifier && rest.starts_with("t_") {
            out += prefix;
            rest = &rest[2..];
            previous = Some('_');
            continue;
        }
        out.push(c);
        previous = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}
