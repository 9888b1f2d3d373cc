// out[i] = src[position i with its coordinate along `dim` replaced by an index value].
// MODE 0 (index_select): the index value is idx[coordinate of i along dim] (contiguous 1-D).
// MODE 1 (gather): the index value is idx at position i (a strided index tensor).
// An index outside 0..size (negative ones included, as in PyTorch) sets the device's error
// flag and reads element 0 instead.
// Metadata: [0] count, [1] rank r, [2..2+r) output shape, then operand 1 (src): offset,
//   r strides; operand 2 (idx): offset, r strides; then dim, src size along dim.

@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
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
    let dim = params[2u + r + 2u * (r + 1u)];
    let dim_size = params[3u + r + 2u * (r + 1u)];
    // Coordinates of i in the output shape.
    var rem = i;
    var coord_dim = 0u;
    var src_off = params[2u + r];
    var idx_pos = params[2u + r + (r + 1u)];
    for (var d = i32(r) - 1; d >= 0; d = d - 1) {
        let size = params[2u + u32(d)];
        let c = rem % size;
        rem = rem / size;
        if (u32(d) == dim) {
            coord_dim = c;
        } else {
            src_off = src_off + c * params[3u + r + u32(d)];
        }
        idx_pos = idx_pos + c * params[3u + r + (r + 1u) + u32(d)];
    }
    var j: i32;
    if (MODE == 0u) {
        j = i64_to_index(idx[params[2u + r + (r + 1u)] + coord_dim]);
    } else {
        j = i64_to_index(idx[idx_pos]);
    }
    if (j < 0 || u32(j) >= dim_size) {
        atomicMax(&error_flag[0], 1u);
        j = 0;
    }
    out[i] = src[src_off + u32(j) * params[3u + r + dim]];
}
