// Softmax or log-softmax (params[2] = 1) along the rows of N values of a contiguous x
// [R, N] (`tensor/fused/softmax.rs`), one workgroup per row, as the CPU's kernels compute
// them: the row's maximum (NaN if the row has one); softmax exp(x - max) / sum, log-softmax
// x - (log(sum exp(x - shift)) + shift) with the maximum as the shift only where it is
// finite. `groups.wgsl` comes with it (the entry point calls `group`).
// Metadata: [0] R, [1] N, [2] log.

@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

fn group(row: u32, lid: u32) {
    let n = params[1];
    let base = row * n;
    var m = -inf_f32();
    for (var k = lid; k < n; k = k + GROUP) {
        m = max_nan(m, x[base + k]);
    }
    m = group_max(lid, m);
    let log_softmax = params[2] == 1u;
    let infinite = (bitcast<u32>(m) & 0x7fffffffu) == 0x7f800000u;
    let shift = select(m, select(m, 0.0, infinite), log_softmax);
    var acc = 0.0;
    for (var k = lid; k < n; k = k + GROUP) {
        acc = acc + exp(x[base + k] - shift);
    }
    let total = group_sum(lid, vec2<f32>(acc, 0.0)).x;
    let lse = log(total) + shift;
    let inv = 1.0 / total;
    for (var k = lid; k < n; k = k + GROUP) {
        let v = x[base + k];
        if (log_softmax) {
            y[base + k] = v - lse;
        } else {
            y[base + k] = exp(v - shift) * inv;
        }
    }
}
