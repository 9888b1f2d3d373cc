// Shared by the kernels that give each row (or channel) of a tensor one workgroup of GROUP
// invocations (`batch_norm*.wgsl`, `layer_norm*.wgsl`, `softmax*.wgsl`,
// `cross_entropy.wgsl`): the entry point, which runs the kernel's `group(index, lid)` for
// its workgroup's row, and the workgroup's sum and maximum. GROUP, and COUNT_AT, the
// parameter word that holds how many rows there are, are set per kernel.

const GROUP: u32 = {{GROUP}}u;
const COUNT_AT: u32 = {{COUNT_AT}}u;

var<workgroup> partials: array<vec2<f32>, GROUP>;

// Every invocation of a workgroup has the same index, so a workgroup past the last row
// returns in all of its invocations or none, and `group` reaches its barriers uniformly.
@compute @workgroup_size(GROUP)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let index = wid.x + wid.y * nwg.x;
    if (index < params[COUNT_AT]) {
        group(index, lid);
    }
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

// The larger of a and b, NaN if either is (by its bits: see `is_nan_f32`).
fn max_nan(a: f32, b: f32) -> f32 {
    if (is_nan_f32(a) || is_nan_f32(b)) {
        return nan_f32();
    }
    return max(a, b);
}

// The maximum over the workgroup of each invocation's `v` (NaN if any is), in every
// invocation.
fn group_max(lid: u32, v: f32) -> f32 {
    partials[lid] = vec2<f32>(v, 0.0);
    workgroupBarrier();
    for (var s = GROUP / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partials[lid].x = max_nan(partials[lid].x, partials[lid + s].x);
        }
        workgroupBarrier();
    }
    let total = partials[0].x;
    workgroupBarrier();
    return total;
}
