// Batched C = A @ B for row-major f32 operands whose rows hold a multiple of 4 elements:
// 128 x 128 blocks of C per workgroup of 256 threads, 8 x 8 outputs per thread, A and B read
// as vec4, the A slice stored transposed in workgroup memory so that each thread reads its 8
// rows of A and 8 columns of B as two vec4 each per step of K. Other operands use
// matmul.wgsl.
// Metadata (offsets and row strides in vec4 units): [0] M, [1] N, [2] K, [3] batch rank r,
// [4..4+r) batch shape, [4+r..4+2r) A batch strides, [4+2r..4+3r) B batch strides,
// then A offset, A row stride, B offset, B row stride, and the index of the dispatch's first
// matrix. Grid (N / 128, M / 128, matrices of this dispatch).

@group(0) @binding(1) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;

const BM: u32 = 128u;
const BK: u32 = 8u;

// a_t[k][m / 4]: the A slice transposed; b_s[k][n / 4]: the B slice.
var<workgroup> a_t: array<array<vec4<f32>, 32>, 8>;
var<workgroup> b_s: array<array<vec4<f32>, 32>, 8>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = params[0];
    let n = params[1];
    let k = params[2];
    let r = params[3];
    let batch = wid.z + params[4u + 3u * r + 4u];
    let batch_off = batch_offsets(batch, r);
    let a_off = params[4u + 3u * r] + batch_off.x;
    let b_off = params[4u + 3u * r + 2u] + batch_off.y;
    let a_row = params[4u + 3u * r + 1u];
    let b_row = params[4u + 3u * r + 3u];
    let n4 = n / 4u;
    let k4 = k / 4u;

    let row0 = wid.y * BM;
    let col0 = wid.x * BM;
    let t = lid.y * 16u + lid.x;
    var acc: array<array<f32, 8>, 8>;
    for (var kk = 0u; kk < k; kk = kk + BK) {
        // A: 128 rows x 8 k = 256 vec4, one per thread, stored transposed.
        let ar = t / 2u;
        let ak4 = kk / 4u + t % 2u;
        var av = vec4<f32>(0.0);
        if (row0 + ar < m && ak4 < k4) {
            av = a[a_off + (row0 + ar) * a_row + ak4];
        }
        let kq = (t % 2u) * 4u;
        a_t[kq][ar / 4u][ar % 4u] = av.x;
        a_t[kq + 1u][ar / 4u][ar % 4u] = av.y;
        a_t[kq + 2u][ar / 4u][ar % 4u] = av.z;
        a_t[kq + 3u][ar / 4u][ar % 4u] = av.w;
        // B: 8 k x 128 columns = 256 vec4, one per thread.
        let bk = t / 32u;
        let bc4 = t % 32u;
        var bv = vec4<f32>(0.0);
        if (kk + bk < k && col0 / 4u + bc4 < n4) {
            bv = b[b_off + (kk + bk) * b_row + col0 / 4u + bc4];
        }
        b_s[bk][bc4] = bv;
        workgroupBarrier();
        for (var p = 0u; p < BK; p = p + 1u) {
            let a0 = a_t[p][lid.y * 2u];
            let a1 = a_t[p][lid.y * 2u + 1u];
            let b0 = b_s[p][lid.x * 2u];
            let b1 = b_s[p][lid.x * 2u + 1u];
            let av8 = array<f32, 8>(a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w);
            let bv8 = array<f32, 8>(b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w);
            for (var i = 0u; i < 8u; i = i + 1u) {
                for (var j = 0u; j < 8u; j = j + 1u) {
                    acc[i][j] = fma(av8[i], bv8[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 8u; i = i + 1u) {
        let gr = row0 + lid.y * 8u + i;
        let gc4 = col0 / 4u + lid.x * 2u;
        if (gr < m) {
            let base = (batch * m + gr) * n4;
            if (gc4 < n4) {
                c[base + gc4] = vec4<f32>(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
            }
            if (gc4 + 1u < n4) {
                c[base + gc4 + 1u] = vec4<f32>(acc[i][4], acc[i][5], acc[i][6], acc[i][7]);
            }
        }
    }
}
