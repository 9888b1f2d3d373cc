// Second stage of a long reduction: one workgroup per output merges the Partials that the
// split stage of reduce.wgsl wrote for its slices, in order.
// Metadata: [0] outputs, [1] slices per output.

@group(0) @binding(1) var<storage, read_write> out: array<{{OUT}}>;
@group(0) @binding(2) var<storage, read> slices: array<Partial>;

struct Partial {
    v: {{ACC}},
    i: u32,
    has: u32,
}

var<workgroup> partials: array<Partial, WG>;

{{HELPERS}}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wid.x + wid.y * nwg.x;
    let count = params[1];
    var acc = init();
    if (o < params[0]) {
        for (var s = lid; s < count; s = s + WG) {
            acc = merge(acc, slices[o * count + s]);
        }
    }
{{COMBINE}}    if (lid == 0u && o < params[0]) {
        let p = partials[0];
        out[o] = finish(p);
    }
}
