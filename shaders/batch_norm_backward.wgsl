// The gradients of `batch_norm.wgsl`, one workgroup per channel of contiguous x and dy
// [N, C, S], from the forward pass's stats [3, C]: db = sum dy, dw = rstd sum dy (x - mean),
// then dx = w rstd (dy - db / count - (x - mean) rstd dw / count). `groups.wgsl` and
// `channels.wgsl` come with it (the entry point calls `group`). Metadata: [0] N, [1] C, [2] S.

@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> stats: array<f32>;
@group(0) @binding(7) var<storage, read> w: array<f32>;

fn group(ch: u32, lid: u32) {
    let c = params[1];
    let count = params[0] * params[2];
    let mean = stats[ch];
    let rstd = stats[2u * c + ch];
    // (sum dy, sum dy (x - mean)) in one pass.
    var acc = vec2<f32>(0.0);
    for (var j = lid; j < count; j = j + GROUP) {
        let i = at(j, ch);
        acc = acc + vec2<f32>(dy[i], dy[i] * (x[i] - mean));
    }
    let sums = group_sum(lid, acc);
    let dbias = sums.x;
    let dweight = sums.y * rstd;
    let k = w[ch] * rstd;
    let g_mean = dbias / f32(count);
    let x_coef = dweight / f32(count) * rstd;
    for (var j = lid; j < count; j = j + GROUP) {
        let i = at(j, ch);
        dx[i] = k * (dy[i] - g_mean - (x[i] - mean) * x_coef);
    }
    if (lid == 0u) {
        dw[ch] = dweight;
        db[ch] = dbias;
    }
}
