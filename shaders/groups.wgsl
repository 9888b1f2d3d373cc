// Shared by the kernels that give each row (or channel) of a tensor one workgroup of GROUP
// invocations (`batch_norm*.wgsl`, `layer_norm*.wgsl`); GROUP is set per kernel.

const GROUP: u32 = {{GROUP}}u;

var<workgroup> partials: array<vec2<f32>, GROUP>;

// The workgroup's row. Every invocation of a workgroup gets the same one, so a kernel that
// returns for a row past the last returns in all of its invocations or none, and reaches
// its barriers uniformly.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The sum over the workgroup of each invocation's `v`, in every invocation.
fn group_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    partials[lid] = v;
    workgroupBarrier();
    for (var s = GROUP / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partials[lid] = partials[lid] + partials[lid + s];
        }
        workgroupBarrier();
    }
    let total = partials[0];
    workgroupBarrier();
    return total;
}
