// Batch normalisation with the batch's statistics (`tensor/fused/norm.rs`), one workgroup
// per channel of a contiguous x [N, C, S]: the channel's mean, then its biased variance
// (two passes, as the CPU's), then y = x * scale + shift with scale = rstd * w and
// shift = b - mean * rstd * w. Writes stats [3, C]: mean, variance, rstd = 1/sqrt(var + eps)
// (what the backward pass reads), and the mean and the variance again each in a buffer of
// its own (what the running statistics' update reads). `groups.wgsl` and `channels.wgsl`
// come with it (the entry point calls `group`).
// Metadata: [0] N, [1] C, [2] S, [3] eps (f32 bits).

@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> var_out: array<f32>;
@group(0) @binding(5) var<storage, read> x: array<f32>;
@group(0) @binding(6) var<storage, read> w: array<f32>;
@group(0) @binding(7) var<storage, read> b: array<f32>;

fn group(ch: u32, lid: u32) {
    let c = params[1];
    let count = params[0] * params[2];
    var acc = 0.0;
    for (var j = lid; j < count; j = j + GROUP) {
        acc = acc + x[at(j, ch)];
    }
    let mean = group_sum(lid, vec2<f32>(acc, 0.0)).x / f32(count);
    acc = 0.0;
    for (var j = lid; j < count; j = j + GROUP) {
        let d = x[at(j, ch)] - mean;
        acc = acc + d * d;
    }
    let variance = group_sum(lid, vec2<f32>(acc, 0.0)).x / f32(count);
    let rstd = 1.0 / sqrt(variance + bitcast<f32>(params[3]));
    let scale = rstd * w[ch];
    let shift = b[ch] - mean * scale;
    for (var j = lid; j < count; j = j + GROUP) {
        let i = at(j, ch);
        y[i] = x[i] * scale + shift;
    }
    if (lid == 0u) {
        stats[ch] = mean;
        stats[c + ch] = variance;
        stats[2u * c + ch] = rstd;
        mean_out[ch] = mean;
        var_out[ch] = variance;
    }
}
