// The adjoint of sliding windows (`Tensor::unfold`): out[i] is the sum, over the taps t in
// increasing order, of the windows' elements that view it: g[.., w, .., t] with
// w * step + t equal to i's coordinate along `dim` (a convolution's col2im). Each output
// element sums its own taps, so no atomics and the same additions in the same order as a
// zero fill followed by one strided add per tap.
// Metadata: [0] count, [1] rank r (of out), [2..2+r) out shape, then g's offset, its r
// strides and the taps' stride, then dim, size, step, windows.

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= params[0]) {
        return;
    }
    let r = params[1];
    let at = 2u + r;
    let dim = params[at + r + 2u];
    let size = params[at + r + 3u];
    let step = params[at + r + 4u];
    let windows = params[at + r + 5u];
    var rem = i;
    var base = params[at];
    var c_dim = 0u;
    for (var d = i32(r) - 1; d >= 0; d = d - 1) {
        let extent = params[2u + u32(d)];
        let c = rem % extent;
        rem = rem / extent;
        if (u32(d) == dim) {
            c_dim = c;
        } else {
            base = base + c * params[at + 1u + u32(d)];
        }
    }
    let window_stride = params[at + 1u + dim];
    let tap_stride = params[at + 1u + r];
    var acc = 0.0;
    for (var t = 0u; t < size; t = t + 1u) {
        if (c_dim >= t && (c_dim - t) % step == 0u) {
            let w = (c_dim - t) / step;
            if (w < windows) {
                acc = acc + g[base + w * window_stride + t * tap_stride];
            }
        }
    }
    out[i] = acc;
}
