// Batched C = A @ B for f32 operands read as vec4: 128 x 128 blocks of C per workgroup of
// 256 threads, 8 x 8 outputs per thread. Each step of K stages an 8-deep slice of A
// transposed and one of B in workgroup memory, so that each thread reads its 8 rows of A
// and 8 columns of B as two vec4 each. Either operand may be stored row by row (its rows a
// multiple of 4 elements long) or column by column (`A_COLUMNS`, `B_COLUMNS`: a transposed
// row-major matrix, such as `x @ w.T` in a linear layer and `g.T @ x` in its backward
// pass, its columns a multiple of 4 long), without a copy. C is row-major with N a
// multiple of 4. Other operands use matmul.wgsl.
// Metadata (offsets and strides in vec4 units): [0] M, [1] N, [2] K, [3] batch rank r,
// [4..4+r) batch shape, [4+r..4+2r) A batch strides, [4+2r..4+3r) B batch strides,
// then A offset, A row (or column) stride, B offset, B row (or column) stride, and the
// index of the dispatch's first matrix; a fused kernel's epilogue metadata follows. Grid (N / 128, M / 128, matrices of this dispatch).

const A_COLUMNS: bool = {{A_COLUMNS}};
const B_COLUMNS: bool = {{B_COLUMNS}};

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
// `store4(at, row, col, v)`: C's vec4 at `at` (C's row `row` from column `col`) is v. The plain kernel writes it to binding 3; a fused
// one (`Kernel::MatmulFused`) computes an elementwise expression of each lane first, from
// values `setup_store()` reads once per thread.
{{STORE}}

const BM: u32 = 128u;
const BK: u32 = 8u;

// a_t[k][m / 4]: the A slice transposed; b_s[k][n / 4]: the B slice.
var<workgroup> a_t: array<array<vec4<f32>, 32>, 8>;
var<workgroup> b_s: array<array<vec4<f32>, 32>, 8>;

// Stage the 128 x 8 slice of A at (row0, kk) into a_t, transposed: 256 vec4, one per
// thread. Row by row, a vec4 holds 4 k of one row; column by column, 4 rows of one k.
fn stage_a(t: u32, row0: u32, kk: u32, m: u32, k: u32, a_off: u32, stride: u32) {
    if (A_COLUMNS) {
        let ak = t / 32u;
        let ar4 = t % 32u;
        var av = vec4<f32>(0.0);
        if (kk + ak < k && row0 / 4u + ar4 < m / 4u) {
            av = a[a_off + (kk + ak) * stride + row0 / 4u + ar4];
        }
        a_t[ak][ar4] = av;
    } else {
        let ar = t / 2u;
        let ak4 = kk / 4u + t % 2u;
        var av = vec4<f32>(0.0);
        if (row0 + ar < m && ak4 < k / 4u) {
            av = a[a_off + (row0 + ar) * stride + ak4];
        }
        let kq = (t % 2u) * 4u;
        a_t[kq][ar / 4u][ar % 4u] = av.x;
        a_t[kq + 1u][ar / 4u][ar % 4u] = av.y;
        a_t[kq + 2u][ar / 4u][ar % 4u] = av.z;
        a_t[kq + 3u][ar / 4u][ar % 4u] = av.w;
    }
}

// Stage the 8 x 128 slice of B at (kk, col0) into b_s: 256 vec4, one per thread. Row by
// row, a vec4 holds 4 columns of one k; column by column, 4 k of one column.
fn stage_b(t: u32, col0: u32, kk: u32, n: u32, k: u32, b_off: u32, stride: u32) {
    if (B_COLUMNS) {
        let bc = t / 2u;
        let bk4 = kk / 4u + t % 2u;
        var bv = vec4<f32>(0.0);
        if (col0 + bc < n && bk4 < k / 4u) {
            bv = b[b_off + (col0 + bc) * stride + bk4];
        }
        let kq = (t % 2u) * 4u;
        b_s[kq][bc / 4u][bc % 4u] = bv.x;
        b_s[kq + 1u][bc / 4u][bc % 4u] = bv.y;
        b_s[kq + 2u][bc / 4u][bc % 4u] = bv.z;
        b_s[kq + 3u][bc / 4u][bc % 4u] = bv.w;
    } else {
        let bk = t / 32u;
        let bc4 = t % 32u;
        var bv = vec4<f32>(0.0);
        if (kk + bk < k && col0 / 4u + bc4 < n / 4u) {
            bv = b[b_off + (kk + bk) * stride + col0 / 4u + bc4];
        }
        b_s[bk][bc4] = bv;
    }
}

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

    let row0 = wid.y * BM;
    let col0 = wid.x * BM;
    let t = lid.y * 16u + lid.x;
    var acc: array<array<f32, 8>, 8>;
    for (var kk = 0u; kk < k; kk = kk + BK) {
        stage_a(t, row0, kk, m, k, a_off, a_row);
        stage_b(t, col0, kk, n, k, b_off, b_row);
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
    // Row by row with constant indices into `acc`: a loop indexing it would keep it in
    // memory on compilers that do not unroll a loop whose body holds an epilogue.
    setup_store();
    let gc4 = col0 / 4u + lid.x * 2u;
    let r0 = row0 + lid.y * 8u;
    store_row(batch, r0, gc4, m, n4, acc[0]);
    store_row(batch, r0 + 1u, gc4, m, n4, acc[1]);
    store_row(batch, r0 + 2u, gc4, m, n4, acc[2]);
    store_row(batch, r0 + 3u, gc4, m, n4, acc[3]);
    store_row(batch, r0 + 4u, gc4, m, n4, acc[4]);
    store_row(batch, r0 + 5u, gc4, m, n4, acc[5]);
    store_row(batch, r0 + 6u, gc4, m, n4, acc[6]);
    store_row(batch, r0 + 7u, gc4, m, n4, acc[7]);
}

// Store a thread's 8 outputs of row `gr` from column vec4 `gc4` on.
fn store_row(batch: u32, gr: u32, gc4: u32, m: u32, n4: u32, r: array<f32, 8>) {
    if (gr < m) {
        let row = batch * m + gr;
        let base = row * n4;
        if (gc4 < n4) {
            store4(base + gc4, row, 4u * gc4, vec4<f32>(r[0], r[1], r[2], r[3]));
        }
        if (gc4 + 1u < n4) {
            store4(base + gc4 + 1u, row, 4u * gc4 + 4u, vec4<f32>(r[4], r[5], r[6], r[7]));
        }
    }
}
