// Batched C = A @ B with operands read through strides (transposed views need no copy).
// Each workgroup computes a TILE x TILE block of C from TILE x KT slices of A and B staged in
// workgroup memory; each thread computes a 4 x 4 block of outputs.
// Metadata: [0] M, [1] N, [2] K, [3] batch rank r, [4..4+r) batch shape,
//   [4+r..4+2r) A batch strides, [4+2r..4+3r) B batch strides,
//   then A offset, A row stride, A col stride, B offset, B row stride, B col stride, and the
//   index of the dispatch's first matrix (a batch past the workgroup limit takes several);
//   a fused kernel's epilogue metadata follows.
// <T>: f32, or vec2<u32> for I64 (see int64.wgsl); the 16-bit floats are read as <IN> u32
// words and widened by load_a/load_b (half.wgsl), and accumulate and store in f32.
// Workgroup (16, 16); grid (N / 64, M / 64, matrices of this dispatch).

@group(0) @binding(1) var<storage, read> a: array<{{IN}}>;
@group(0) @binding(2) var<storage, read> b: array<{{IN}}>;
// `store(i, row, col, v)`: C's element i (row `row` of the batch's rows, column `col`) is v. The plain kernel writes it to binding 3; a fused one
// (`Kernel::MatmulFused`) computes an elementwise expression of it first (an epilogue), from
// values `setup_store()` reads once per thread.
{{STORE}}

const TILE: u32 = 64u;
const KT: u32 = 16u;

var<workgroup> a_tile: array<array<{{T}}, 64>, 16>;
var<workgroup> b_tile: array<array<{{T}}, 64>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = params[0];
    let n = params[1];
    let k = params[2];
    let ops = strided_operands(wid.z);

    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let t = lid.y * 16u + lid.x;
    var acc: array<array<{{T}}, 4>, 4>;
    for (var kk = 0u; kk < k; kk = kk + KT) {
        // 256 threads load the 64 x 16 A slice and the 16 x 64 B slice, 4 elements each.
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = t * 4u + e;
            let ar = idx / KT;
            let ac = idx % KT;
            let gr = row0 + ar;
            let gk = kk + ac;
            var av = t_zero();
            if (gr < m && gk < k) {
                av = load_a(ops.a_off + gr * ops.ars + gk * ops.acs);
            }
            a_tile[ac][ar] = av;
            let br = idx / TILE;
            let bc = idx % TILE;
            let gk2 = kk + br;
            let gc = col0 + bc;
            var bv = t_zero();
            if (gk2 < k && gc < n) {
                bv = load_b(ops.b_off + gk2 * ops.brs + gc * ops.bcs);
            }
            b_tile[br][bc] = bv;
        }
        workgroupBarrier();
        for (var p = 0u; p < KT; p = p + 1u) {
            var av: array<{{T}}, 4>;
            var bv: array<{{T}}, 4>;
            for (var q = 0u; q < 4u; q = q + 1u) {
                av[q] = a_tile[p][lid.y * 4u + q];
                bv[q] = b_tile[p][lid.x * 4u + q];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i][j] = t_add(acc[i][j], t_mul(av[i], bv[j]));
                }
            }
        }
        workgroupBarrier();
    }
    // Row by row with constant indices into `acc`: a loop indexing it would keep it in
    // memory on compilers that do not unroll a loop whose body holds an epilogue.
    setup_store();
    let r0 = row0 + lid.y * 4u;
    let c0 = col0 + lid.x * 4u;
    store_row(ops.batch, r0, c0, m, n, acc[0]);
    store_row(ops.batch, r0 + 1u, c0, m, n, acc[1]);
    store_row(ops.batch, r0 + 2u, c0, m, n, acc[2]);
    store_row(ops.batch, r0 + 3u, c0, m, n, acc[3]);
}

// Store a thread's 4 outputs of row `gr` from column `c0` on.
fn store_row(batch: u32, gr: u32, c0: u32, m: u32, n: u32, r: array<{{T}}, 4>) {
    if (gr < m) {
        let row = batch * m + gr;
        for (var j = 0u; j < 4u; j = j + 1u) {
            if (c0 + j < n) {
                store(row * n + c0 + j, row, c0 + j, r[j]);
            }
        }
    }
}
