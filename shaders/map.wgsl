// out[i] = EXPR over up to three strided, broadcast inputs (operands 1..=3 in the metadata;
// operand 0 is the output). Specialised by text substitution:
//   <T0> output type, <EXPR> using a, b, c, <INPUTS> the input bindings, <LOADS> the loads
//   of a, b, c, and <OUT_INDEX> where element i lives in each operand: offs[k] from
//   operand_offsets (common.wgsl), or i itself when every operand is contiguous from its
//   start.
// The output may itself be a strided view (slice assignment writes through operand 0).

@group(0) @binding(1) var<storage, read_write> out: array<{{T0}}>;
{{INPUTS}}

{{HELPERS}}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= params[0]) {
        return;
    }
{{LOADS}}
    out[{{OUT_INDEX}}] = {{EXPR}};
}
