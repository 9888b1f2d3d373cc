// out[position p with coordinate dim = idx[p]] += src[p] for every position p of the index
// tensor; `out` is a contiguous copy of the base made beforehand. Float addition is an
// atomic compare-and-swap loop on the bits (WGSL has no atomic float add).
// An out-of-range index sets the device's error flag and is skipped.
// Metadata: [0] count, [1] rank r, [2..2+r) index shape, operand 0 (src): offset, r strides;
//   operand 1 (idx): offset, r strides; then dim, out size along dim, r out strides.

@group(0) @binding(1) var<storage, read_write> out: array<atomic<{{A}}>>;
@group(0) @binding(2) var<storage, read> src: array<{{T}}>;
@group(0) @binding(3) var<storage, read> idx: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> error_flag: array<atomic<u32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= params[0]) {
        return;
    }
    let r = params[1];
    let tail = 2u + r + 2u * (r + 1u);
    let dim = params[tail];
    let dim_size = params[tail + 1u];
    let offs = operand_offsets(i, 2u);
    var j = i64_to_index(idx[offs[1]]);
    if (j < 0 || u32(j) >= dim_size) {
        atomicMax(&error_flag[0], 1u);
        return;
    }
    var rem = i;
    var dst = 0u;
    for (var d = i32(r) - 1; d >= 0; d = d - 1) {
        let size = params[2u + u32(d)];
        var c = rem % size;
        rem = rem / size;
        if (u32(d) == dim) {
            c = u32(j);
        }
        dst = dst + c * params[tail + 2u + u32(d)];
    }
    let x = src[offs[0]];
{{ADD}}
}
