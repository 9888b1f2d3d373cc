// Shared by every kernel: strided offsets from a metadata array, and the linear invocation
// index of a 2-D dispatch (grids over 65535 workgroups per dimension wrap into y).
//
// Metadata layout for elementwise kernels (all u32):
//   [0] element count, [1] rank r, [2 .. 2+r) shape,
//   then per buffer operand k: offset, r strides  (operand k starts at 2 + r + k * (r + 1)),
//   then the scalar operands' words (one per f32/bool, two per I64; see gpu/kernels/map.rs).

@group(0) @binding(0) var<storage, read> params: array<u32>;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// The offset of flat index `idx` (row-major over the shape at params[shape_at..]) through
// the strides at params[strides_at..]. The outermost coordinate is what remains of idx
// after the inner ones, with no division (idx is below the element count), so a merged
// rank-1 view needs no division at all.
fn strided_offset(idx: u32, rank: u32, shape_at: u32, strides_at: u32) -> u32 {
    var rem = idx;
    var off = 0u;
    for (var d = rank; d > 0u; d = d - 1u) {
        var c = rem;
        if (d > 1u) {
            let size = params[shape_at + d - 1u];
            c = rem % size;
            rem = rem / size;
        }
        off = off + c * params[strides_at + d - 1u];
    }
    return off;
}

// The offsets of element i in the first `count` (at most 4) operands of an elementwise
// kernel at once: the coordinates of i are found once for all of them (integer division is
// slow on GPUs), the outermost one without a division.
fn operand_offsets(i: u32, count: u32) -> vec4<u32> {
    let rank = params[1];
    var offs = vec4<u32>(0u);
    for (var k = 0u; k < count; k = k + 1u) {
        offs[k] = params[2u + rank + k * (rank + 1u)];
    }
    var rem = i;
    for (var d = rank; d > 0u; d = d - 1u) {
        var c = rem;
        if (d > 1u) {
            let size = params[1u + d];
            c = rem % size;
            rem = rem / size;
        }
        for (var k = 0u; k < count; k = k + 1u) {
            offs[k] = offs[k] + c * params[2u + rank + k * (rank + 1u) + d];
        }
    }
    return offs;
}

// Matmul kernels: the offsets of batch `batch`'s A and B matrices relative to their first,
// from the batch shape at params[4..4+r) and the A and B batch strides that follow it.
fn batch_offsets(batch: u32, r: u32) -> vec2<u32> {
    var rem = batch;
    var off = vec2<u32>(0u, 0u);
    for (var d = i32(r) - 1; d >= 0; d = d - 1) {
        let size = params[4u + u32(d)];
        let idx = rem % size;
        rem = rem / size;
        off = off + idx * vec2<u32>(params[4u + r + u32(d)], params[4u + 2u * r + u32(d)]);
    }
    return off;
}

// The strided matmul kernels (matmul.wgsl, matmul_coop.wgsl): where the matrices of the
// dispatch's `z`-th batch entry start, and how A's and B's rows and columns step, from the
// metadata layout described in matmul.wgsl.
struct StridedOperands {
    batch: u32,
    a_off: u32,
    ars: u32,
    acs: u32,
    b_off: u32,
    brs: u32,
    bcs: u32,
}

fn strided_operands(z: u32) -> StridedOperands {
    let r = params[3];
    let tail = 4u + 3u * r;
    let batch = z + params[tail + 6u];
    let off = batch_offsets(batch, r);
    return StridedOperands(
        batch,
        params[tail] + off.x,
        params[tail + 1u],
        params[tail + 2u],
        params[tail + 3u] + off.y,
        params[tail + 4u],
        params[tail + 5u],
    );
}

fn nan_f32() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

fn inf_f32() -> f32 {
    return bitcast<f32>(0x7f800000u);
}

// NaN by its bits: compilers may assume `x != x` is false (WGSL allows it), and some do.
fn is_nan_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}
