// Inclusive cumulative sum along one dim of a contiguous [outer, len, inner] tensor: one
// invocation per line. Metadata: [0] lines (outer * inner), [1] len, [2] inner.

@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
@group(0) @binding(2) var<storage, read> src: array<{{T}}>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let line = linear_index(gid, nwg);
    if (line >= params[0]) {
        return;
    }
    let len = params[1];
    let inner = params[2];
    let start = (line / inner) * len * inner + line % inner;
    var acc: {{T}} = {{T}}(0);
    for (var k = 0u; k < len; k = k + 1u) {
        let at = start + k * inner;
        acc = acc + src[at];
        out[at] = acc;
    }
}
