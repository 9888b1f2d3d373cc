// The logits' gradient of `cross_entropy.wgsl`: dx[row, k] = (exp(x - lse) - [k == label])
// * g[row] / divisor for a row whose label counts, 0 for an ignored row; dx is contiguous
// [N, C]. `saved` holds the forward pass's three rows (loss, keep, lse). The divisor is the
// mean's count (`divide` 1), read from its own buffer, or 1.
// Metadata: [0] count N*C, [1] C, [2] N, [3] x offset, [4] x row stride, [5] x class stride,
// [6] labels offset, [7] labels stride, [8] g offset, [9] g row stride, [10] divide,
// [11] divisor offset.

@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read> saved: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read> divisor: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= params[0]) {
        return;
    }
    let c = params[1];
    let n = params[2];
    let row = i / c;
    let k = i - row * c;
    if (saved[n + row] == 0.0) {
        dx[i] = 0.0;
        return;
    }
    var gr = g[params[8] + row * params[9]];
    if (params[10] == 1u) {
        gr = gr / divisor[params[11]];
    }
    var d = exp(x[params[3] + row * params[4] + k * params[5]] - saved[2u * n + row]) * gr;
    // The label's term last, as the CPU's.
    let label = i64_to_index(labels[params[6] + row * params[7]]);
    if (label >= 0 && u32(label) == k) {
        d = d - gr;
    }
    dx[i] = d;
}
