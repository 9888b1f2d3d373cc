// out[i] = EXPR(a, b, c) over up to three inputs, each a strided, broadcast buffer (buffer
// operands 1.. in the metadata; operand 0 is the output) or a scalar from the parameters.
// Specialised by text substitution (gpu/kernels/map.rs):
//   <T0> the output type, <INPUTS> the bindings of the buffer inputs, <LOADS> the
//   loads of a, b, c, <OUT_INDEX> where element i of the output lives: offs[0] from
//   operand_offsets (common.wgsl), or i itself when every buffer operand is contiguous from
//   its start, <EXPR> the op's expression, <STORE> the write of `value` to the output (a
//   plain store, or for a 16-bit output the atomic update of its half of a word: see
//   half.wgsl) and <HELPERS> the functions it calls.
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
    let value = {{EXPR}};
{{STORE}}
}
