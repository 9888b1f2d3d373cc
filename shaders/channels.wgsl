// Shared by the kernels that give each channel of a contiguous [N, C, S] tensor a workgroup
// (`batch_norm*.wgsl`). Metadata: [0] N, [1] C, [2] S.

var<workgroup> partials: array<vec2<f32>, WG>;

// The workgroup's channel. Every invocation of a workgroup gets the same one, so a kernel
// that returns for a channel past C returns in all of its invocations or none, and reaches
// its barriers uniformly.
fn channel_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Where the channel's j-th element is: the j / S-th sample's k = j % S-th.
fn at(j: u32, ch: u32) -> u32 {
    let s = params[2];
    return ((j / s) * params[1] + ch) * s + j % s;
}

// The sum over the workgroup of each invocation's `v`, in every invocation.
fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    partials[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partials[lid] = partials[lid] + partials[lid + s];
        }
        workgroupBarrier();
    }
    let total = partials[0];
    workgroupBarrier();
    return total;
}
