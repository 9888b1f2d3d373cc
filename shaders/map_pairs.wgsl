// A map kernel (map.wgsl) whose output is a fresh, contiguous buffer of a 16-bit float
// dtype: each thread computes elements 2w and 2w + 1 and writes their word whole, so no
// atomics are needed (the strided kernel updates one half of a word atomically, since a
// neighbouring thread may own the other half). Every operand is contiguous from its start.
// An odd count leaves the padding half of the last word zero.
//   <INPUTS>, <HELPERS>, <LOADS> of element i and <EXPR> as in map.wgsl; <ROUND> the
//   function that rounds an f32's bits to the dtype's (half.wgsl).

@group(0) @binding(1) var<storage, read_write> out: array<u32>;
{{INPUTS}}

{{HELPERS}}

fn element(i: u32) -> f32 {
{{LOADS}}
    return {{EXPR}};
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = linear_index(gid, nwg);
    let i = 2u * w;
    if (i >= params[0]) {
        return;
    }
    let low = {{ROUND}}(bitcast<u32>(element(i)));
    var high = 0u;
    if (i + 1u < params[0]) {
        high = {{ROUND}}(bitcast<u32>(element(i + 1u)));
    }
    out[w] = low | (high << 16u);
}
