// Batched C = A @ B for F16 operands on tensor cores: WGSL cooperative matrices (wgpu's
// EXPERIMENTAL_COOPERATIVE_MATRIX), 16x16x16 fragments with f16 inputs and f32 accumulators.
// The kernel source starts with `enable f16; enable wgpu_cooperative_matrix;` (added by
// gpu/kernels/mod.rs, since an `enable` must precede everything else).
//
// Metadata: the same as matmul.wgsl (M, N, K, batch rank and shape, batch strides, A offset,
// row and column strides, B's, the dispatch's first matrix), so operands are read through any
// strides. C is f32, row-major (the storage layer rounds it to F16 once).
//
// A workgroup is 4 subgroups of 32 invocations (the host takes this kernel only on adapters
// whose subgroups are exactly 32 wide) computing a 64 x 64 block of C: subgroup s owns the
// 32 x 32 quarter at ((s / 2) * 32, (s % 2) * 32), four fragments. Each step stages a 64 x 32
// slice of A and a 32 x 64 slice of B in workgroup memory, zero-filled past the matrix edges,
// so every fragment load is in bounds and no control flow depends on the lane. A block inside
// C is stored straight from the fragments; a block on C's edge goes through a 16 x 16
// workgroup staging area per subgroup and is written element by element under a bounds test.
// Grid (N / 64, M / 64, matrices of this dispatch).

@group(0) @binding(1) var<storage, read> a: array<f16>;
@group(0) @binding(2) var<storage, read> b: array<f16>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;
const THREADS: u32 = 128u;

var<workgroup> a_s: array<f16, 2048>; // BM x BK, row-major
var<workgroup> b_s: array<f16, 2048>; // BK x BN, row-major
var<workgroup> c_s: array<f32, 1024>; // one 16 x 16 fragment per subgroup

@compute @workgroup_size(128)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let m = params[0];
    let n = params[1];
    let k = params[2];
    let ops = strided_operands(wid.z);

    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    // This subgroup's quarter of the block, in block coordinates.
    let wr = (sg / 2u) * 32u;
    let wc = (sg % 2u) * 32u;

    var acc00 = coop_mat16x16<f32, C>();
    var acc01 = coop_mat16x16<f32, C>();
    var acc10 = coop_mat16x16<f32, C>();
    var acc11 = coop_mat16x16<f32, C>();
    for (var kt = 0u; kt < k; kt = kt + BK) {
        for (var e = 0u; e < 2048u / THREADS; e = e + 1u) {
            let idx = e * THREADS + t;
            // A: consecutive threads along K (A's rows are usually contiguous).
            let ar = idx / BK;
            let ak = idx % BK;
            var av = f16(0.0);
            if (row0 + ar < m && kt + ak < k) {
                av = a[ops.a_off + (row0 + ar) * ops.ars + (kt + ak) * ops.acs];
            }
            a_s[idx] = av;
            // B: consecutive threads along N.
            let bk = idx / BN;
            let bc = idx % BN;
            var bv = f16(0.0);
            if (kt + bk < k && col0 + bc < n) {
                bv = b[ops.b_off + (kt + bk) * ops.brs + (col0 + bc) * ops.bcs];
            }
            b_s[idx] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 16u) {
            let a0_at = wr * BK + kk;
            let a1_at = (wr + 16u) * BK + kk;
            let b0_at = kk * BN + wc;
            let b1_at = kk * BN + wc + 16u;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[a0_at], BK);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[a1_at], BK);
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[b0_at], BN);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[b1_at], BN);
            acc00 = coopMultiplyAdd(a0, b0, acc00);
            acc01 = coopMultiplyAdd(a0, b1, acc01);
            acc10 = coopMultiplyAdd(a1, b0, acc10);
            acc11 = coopMultiplyAdd(a1, b1, acc11);
        }
        workgroupBarrier();
    }

    let c_base = ops.batch * m * n;
    // The same for every invocation of the workgroup, so both branches are uniform.
    if (row0 + BM <= m && col0 + BN <= n) {
        let c00 = c_base + (row0 + wr) * n + col0 + wc;
        let c01 = c00 + 16u;
        let c10 = c00 + 16u * n;
        let c11 = c10 + 16u;
        coopStoreT(acc00, &c[c00], n);
        coopStoreT(acc01, &c[c01], n);
        coopStoreT(acc10, &c[c10], n);
        coopStoreT(acc11, &c[c11], n);
        return;
    }
    let stage = sg * 256u;
    for (var f = 0u; f < 4u; f = f + 1u) {
        switch f {
            case 0u: { coopStoreT(acc00, &c_s[stage], 16u); }
            case 1u: { coopStoreT(acc01, &c_s[stage], 16u); }
            case 2u: { coopStoreT(acc10, &c_s[stage], 16u); }
            default: { coopStoreT(acc11, &c_s[stage], 16u); }
        }
        workgroupBarrier();
        let fr = row0 + wr + (f / 2u) * 16u;
        let fc = col0 + wc + (f % 2u) * 16u;
        for (var e = 0u; e < 8u; e = e + 1u) {
            let i = e * 32u + lane;
            let gr = fr + i / 16u;
            let gc = fc + i % 16u;
            if (gr < m && gc < n) {
                c[c_base + gr * n + gc] = c_s[stage + i];
            }
        }
        workgroupBarrier();
    }
}
