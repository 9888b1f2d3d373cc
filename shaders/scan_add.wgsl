// Third step of the parallel scan: add to each element of chunk c > 0 of a line the
// inclusive prefix of the chunk totals up to chunk c - 1.
// Metadata: [0] lines, [1] len, [2] inner, [3] chunks per line.

@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
@group(0) @binding(2) var<storage, read> prefix: array<{{T}}>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let len = params[1];
    let inner = params[2];
    let chunks = params[3];
    if (i >= params[0] * len) {
        return;
    }
    // i enumerates (line, k) with k fastest.
    let line = i / len;
    let k = i % len;
    let chunk = k / WG;
    if (chunk == 0u) {
        return;
    }
    let at = (line / inner) * len * inner + line % inner + k * inner;
    out[at] = t_add(out[at], prefix[line * chunks + chunk - 1u]);
}
