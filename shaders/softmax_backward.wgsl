// The input's gradient of `softmax.wgsl` from its output y and the output's gradient g,
// one workgroup per row: softmax y (g - sum(g y)), log-softmax g - exp(y) sum(g).
// `groups.wgsl` comes with it (the entry point calls `group`). Metadata: [0] R, [1] N, [2] log.

@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;

fn group(row: u32, lid: u32) {
    let n = params[1];
    let base = row * n;
    let log_softmax = params[2] == 1u;
    var acc = 0.0;
    for (var k = lid; k < n; k = k + GROUP) {
        acc = acc + select(g[base + k] * y[base + k], g[base + k], log_softmax);
    }
    let total = group_sum(lid, vec2<f32>(acc, 0.0)).x;
    for (var k = lid; k < n; k = k + GROUP) {
        let i = base + k;
        if (log_softmax) {
            dx[i] = g[i] - exp(y[i]) * total;
        } else {
            dx[i] = y[i] * (g[i] - total);
        }
    }
}
