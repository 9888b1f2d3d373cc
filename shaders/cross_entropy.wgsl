// Cross-entropy of rows of logits against class labels (`tensor/fused/cross_entropy.rs`),
// one workgroup per row: the row's maximum, the sum of its exponentials shifted by the
// maximum where that is finite (as `log_softmax`), then three rows of N values: the loss
// `lse - x[label]` (0 where the label is ignore_index, which PyTorch skips), 1 or 0 for a
// label that counts or is ignored, and the row's log-sum-exp `lse`. A label outside 0..C
// that is not ignore_index sets the error flag (its loss reads 0). `groups.wgsl` comes with
// it.
// Metadata: [0] rows N, [1] classes C, [2] x offset, [3] x row stride, [4] x class stride,
// [5] labels offset, [6] labels stride, [7..9) ignore_index (low, high words).

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> error_flag: array<atomic<u32>>;

fn group(row: u32, lid: u32) {
    let n = params[0];
    let c = params[1];
    let base = params[2] + row * params[3];
    let cs = params[4];

    var m = -inf_f32();
    for (var k = lid; k < c; k = k + GROUP) {
        m = max_nan(m, x[base + k * cs]);
    }
    m = group_max(lid, m);

    let infinite = (bitcast<u32>(m) & 0x7fffffffu) == 0x7f800000u;
    let shift = select(m, 0.0, infinite);
    var acc = 0.0;
    for (var k = lid; k < c; k = k + GROUP) {
        acc = acc + exp(x[base + k * cs] - shift);
    }
    let total = group_sum(lid, vec2<f32>(acc, 0.0)).x;

    if (lid == 0u) {
        let lse = log(total) + shift;
        let label = labels[params[5] + row * params[6]];
        var loss = 0.0;
        var keep = 0.0;
        if (!i64_eq(label, vec2<u32>(params[7], params[8]))) {
            let t = i64_to_index(label);
            if (t < 0 || u32(t) >= c) {
                atomicMax(&error_flag[0], 1u);
            } else {
                loss = lse - x[base + u32(t) * cs];
                keep = 1.0;
            }
        }
        out[row] = loss;
        out[n + row] = keep;
        out[2u * n + row] = lse;
    }
}
