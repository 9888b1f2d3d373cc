//! Fused elementwise programs: several table ops over the same elements of a few tensors in
//! one kernel, writing results in place, with no intermediate in memory. Each program is a
//! static description (an optimizer's update, `optim/fused.rs`); its WGSL is generated from
//! the op tables' own f32 expressions, so a fused op computes what the op computes alone.

use super::map::{binary_expr, unary_expr};
use crate::dtype::DType;
use crate::error::Result;
use crate::op::{BinaryOp, UnaryOp};

/// One value of a program, in order; values refer to earlier ones by index.
#[derive(Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// Element `i` of tensor operand `k`.
    Load(u8),
    /// Element 0 of tensor operand `k`: a one-element tensor (a number on the device that
    /// may change between replays of a captured step).
    LoadScalar(u8),
    /// Number `k` of the dispatch's parameters (an f32).
    Param(u8),
    Unary(UnaryOp, u8),
    Binary(BinaryOp, u8, u8),
}

/// A tensor operand of a program, in binding order.
#[derive(Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// Read only.
    Read,
    /// Read, then overwritten with the value of node `n`.
    Write(u8),
}

/// A fused elementwise program over contiguous f32 tensors of one element count (one-element
/// tensors read through `LoadScalar` aside).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Program {
    pub name: &'static str,
    pub operands: &'static [Operand],
    /// How many f32 parameters follow the element count.
    pub params: u8,
    pub nodes: &'static [Node],
}

impl Program {
    /// The kernel's WGSL body (bindings, helpers, entry point).
    pub(super) fn source(&self) -> Result<String> {
        let mut bindings = String::new();
        for (k, o) in self.operands.iter().enumerate() {
            let access = match o {
                Operand::Read => "read",
                Operand::Write(_) => "read_write",
            };
            bindings += &format!(
                "@group(0) @binding({}) var<storage, {access}> t{k}: array<f32>;\n",
                k + 1
            );
        }
        let mut helpers: Vec<&str> = Vec::new();
        let mut functions = String::new();
        let mut body = String::new();
        for (j, node) in self.nodes.iter().enumerate() {
            let value = match *node {
                Node::Load(k) => format!("t{k}[i]"),
                Node::LoadScalar(k) => format!("t{k}[0]"),
                Node::Param(k) => format!("bitcast<f32>(params[{}u])", 1 + k as u32),
                Node::Unary(op, x) => {
                    let (expr, out) = unary_expr(op, DType::F32)?;
                    if out != DType::F32 {
                        return Err(crate::error::Error::invalid(
                            "fused program",
                            format!("{}: {op:?} does not give an f32", self.name),
                        ));
                    }
                    functions += &format!("fn f{j}(a: f32) -> f32 {{ return {expr}; }}\n");
                    helpers.push(op.def().helpers);
                    format!("f{j}(v{x})")
                }
                Node::Binary(op, x, y) => {
                    let expr = binary_expr(op, DType::F32)?;
                    functions += &format!("fn f{j}(a: f32, b: f32) -> f32 {{ return {expr}; }}\n");
                    helpers.push(op.def().helpers);
                    format!("f{j}(v{x}, v{y})")
                }
            };
            body += &format!("    let v{j} = {value};\n");
        }
        for (k, o) in self.operands.iter().enumerate() {
            if let Operand::Write(n) = o {
                body += &format!("    t{k}[i] = v{n};\n");
            }
        }
        helpers.sort_unstable();
        helpers.dedup();
        Ok(format!(
            "// Fused program {name}.
{bindings}
{helpers}
{functions}
{main}",
            name = self.name,
            helpers = helpers.join("\n"),
            main = super::per_element_main(&body),
        ))
    }
}
