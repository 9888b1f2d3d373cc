//! Fused elementwise programs (`gpu/kernels/fused.rs`) on the CPU: one pass over the
//! operands in blocks that stay in cache, each node computed by its op table's own CPU
//! kernel (so the values are the ops' to the bit), instead of one pass and one buffer per op.

use crate::gpu::kernels::fused::{Node, Operand, Program};
use crate::op::{Binary, Unary};
use rayon::prelude::*;

/// Elements per block: every node's values for a block fit in the core's caches.
const BLOCK: usize = 512;

/// One operand's elements: read, or read and overwritten with a result.
pub enum Slice<'a> {
    Read(&'a [f32]),
    Write(&'a mut [f32]),
}

impl Slice<'_> {
    fn get(&self) -> &[f32] {
        match self {
            Slice::Read(s) => s,
            Slice::Write(s) => s,
        }
    }
}

/// Whether every op of `program` has an f32 CPU kernel of its result's dtype (the ones
/// fused programs may use; anything else is left to the ops).
pub fn supports(program: &Program) -> bool {
    program.nodes.iter().all(|node| match *node {
        Node::Unary(op, _) => matches!(op.def().f32, Unary::Map(_)),
        Node::Binary(op, _, _) => matches!(op.def().f32, Binary::Map(_)),
        Node::Load(_) | Node::LoadScalar(_) | Node::Param(_) => true,
    })
}

/// Run `program` over `n` elements of `operands` (one-element ones for its scalar loads)
/// with `params`, writing its results in place; threads take disjoint ranges of elements.
pub fn run(program: &Program, operands: Vec<Slice<'_>>, n: usize, params: &[f32]) {
    let scalar = |k: usize| {
        program
            .nodes
            .iter()
            .any(|node| matches!(node, Node::LoadScalar(j) if *j as usize == k))
    };
    // The operands split into ranges, the one-element ones shared by every range.
    let len = if n >= super::PARALLEL_THRESHOLD {
        super::chunk_len(n)
    } else {
        n.max(1)
    };
    let ranges = n.div_ceil(len);
    let mut split: Vec<Vec<Slice<'_>>> = (0..ranges).map(|_| Vec::new()).collect();
    for (k, op) in operands.into_iter().enumerate() {
        match op {
            Slice::Read(s) if scalar(k) => split.iter_mut().for_each(|r| r.push(Slice::Read(s))),
            Slice::Read(s) => {
                for (r, c) in split.iter_mut().zip(s[..n].chunks(len)) {
                    r.push(Slice::Read(c));
                }
            }
            Slice::Write(s) => {
                for (r, c) in split.iter_mut().zip(s[..n].chunks_mut(len)) {
                    r.push(Slice::Write(c));
                }
            }
        }
    }
    let work = |mut range: Vec<Slice<'_>>| {
        let m = range
            .iter()
            .enumerate()
            .find(|(k, _)| !scalar(*k))
            .map_or(0, |(_, s)| s.get().len());
        // Small tensors (most parameters) take buffers of their own size.
        let mut values = vec![vec![0.0f32; BLOCK.min(m)]; program.nodes.len()];
        for start in (0..m).step_by(BLOCK) {
            let b = BLOCK.min(m - start);
            block(program, &mut range, &mut values, params, start, b);
        }
    };
    if ranges > 1 {
        split.into_par_iter().for_each(work);
    } else {
        split.into_iter().for_each(work);
    }
}

/// Elements `start..start + b` of one range: every node into `values`, then the stores.
fn block(
    program: &Program,
    range: &mut [Slice<'_>],
    values: &mut [Vec<f32>],
    params: &[f32],
    start: usize,
    b: usize,
) {
    for (j, node) in program.nodes.iter().enumerate() {
        // The node's own buffer is taken out so that it can be written while its
        // operands are read.
        let mut out = std::mem::take(&mut values[j]);
        let arg = |x: u8| -> (&[f32], usize, usize) {
            match program.nodes[x as usize] {
                Node::LoadScalar(k) => (range[k as usize].get(), 0, 0),
                Node::Param(k) => (&params[k as usize..], 0, 0),
                _ => (&values[x as usize], 0, 1),
            }
        };
        match *node {
            Node::Load(k) => out[..b].copy_from_slice(&range[k as usize].get()[start..start + b]),
            // Read in place by the nodes that use them (stride 0).
            Node::LoadScalar(_) | Node::Param(_) => {}
            Node::Unary(op, x) => {
                if let Unary::Map(k) = op.def().f32 {
                    let (src, o, s) = arg(x);
                    (k.cpu)(&mut out[..b], src, o, s);
                }
            }
            Node::Binary(op, x, y) => {
                if let Binary::Map(k) = op.def().f32 {
                    let ((a, oa, sa), (c, oc, sc)) = (arg(x), arg(y));
                    (k.cpu)(&mut out[..b], a, oa, sa, c, oc, sc);
                }
            }
        }
        values[j] = out;
    }
    for (k, op) in program.operands.iter().enumerate() {
        if let (Operand::Write(n), Slice::Write(dst)) = (op, &mut range[k]) {
            dst[start..start + b].copy_from_slice(&values[*n as usize][..b]);
        }
    }
}
