// The input's gradient of `layer_norm.wgsl`, one workgroup per row: with g = dy * w (or dy)
// and xhat = (x - mean) * rstd, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)). (The
// weight's and bias's gradients are sums over the rows, which reductions compute.) A missing
// weight binds x, unread. `groups.wgsl` comes with it (the entry point calls `group`).
// Metadata: [0] R, [1] D, [2] has weight.

@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;

fn g_at(k: u32, at: u32) -> f32 {
    if (params[2] == 1u) {
        return dy[at] * w[k];
    }
    return dy[at];
}

fn group(row: u32, lid: u32) {
    let d = params[1];
    let base = row * d;
    let mean = stats[2u * row];
    let rstd = stats[2u * row + 1u];
    var acc = vec2<f32>(0.0);
    for (var k = lid; k < d; k = k + GROUP) {
        let g = g_at(k, base + k);
        acc = acc + vec2<f32>(g, g * (x[base + k] - mean) * rstd);
    }
    let sums = group_sum(lid, acc) / f32(d);
    for (var k = lid; k < d; k = k + GROUP) {
        let xhat = (x[base + k] - mean) * rstd;
        dx[base + k] = rstd * (g_at(k, base + k) - sums.x - xhat * sums.y);
    }
}
