// Layer normalisation (`tensor/fused/layer_norm.rs`), one workgroup per row of D values of
// a contiguous x [R, D]: the row's mean, its biased variance (two passes, as the CPU's), then
// y = (x - mean) * rstd (* w where given) (+ b where given), with rstd = 1/sqrt(var + eps).
// Writes stats [R, 2]: each row's mean and rstd. A missing weight or bias binds x, unread.
// `groups.wgsl` comes with it (the entry point calls `group`).
// Metadata: [0] R, [1] D, [2] eps (f32 bits), [3] has weight, [4] has bias.

@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> b: array<f32>;

fn group(row: u32, lid: u32) {
    let d = params[1];
    let base = row * d;
    var acc = 0.0;
    for (var k = lid; k < d; k = k + GROUP) {
        acc = acc + x[base + k];
    }
    let mean = group_sum(lid, vec2<f32>(acc, 0.0)).x / f32(d);
    acc = 0.0;
    for (var k = lid; k < d; k = k + GROUP) {
        let v = x[base + k] - mean;
        acc = acc + v * v;
    }
    let variance = group_sum(lid, vec2<f32>(acc, 0.0)).x / f32(d);
    let rstd = 1.0 / sqrt(variance + bitcast<f32>(params[2]));
    for (var k = lid; k < d; k = k + GROUP) {
        var v = (x[base + k] - mean) * rstd;
        if (params[3] == 1u) {
            v = v * w[k];
        }
        if (params[4] == 1u) {
            v = v + b[k];
        }
        y[base + k] = v;
    }
    if (lid == 0u) {
        stats[2u * row] = mean;
        stats[2u * row + 1u] = rstd;
    }
}
