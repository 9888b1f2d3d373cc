// Inclusive cumulative sum along one dim of a contiguous [outer, len, inner] tensor, as a
// parallel scan: one workgroup per chunk of WG elements of a line scans it in workgroup
// memory (Hillis-Steele, log2(WG) steps) and records the chunk's total; the totals are then
// scanned the same way and added back by scan_add.wgsl.
// Metadata: [0] lines (outer * inner), [1] len, [2] inner, [3] chunks per line.

@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
@group(0) @binding(2) var<storage, read> src: array<{{T}}>;
@group(0) @binding(3) var<storage, read_write> totals: array<{{T}}>;

var<workgroup> buf: array<{{T}}, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // One group per (line, chunk): uniform across the workgroup.
    let g = wid.x + wid.y * nwg.x;
    let chunks = params[3];
    let line = g / chunks;
    let chunk = g % chunks;
    let len = params[1];
    let inner = params[2];
    let k = chunk * WG + lid;
    let at = (line / inner) * len * inner + line % inner + k * inner;
    let live = line < params[0] && k < len;
    var x = t_zero();
    if (live) {
        x = src[at];
    }
    buf[lid] = x;
    workgroupBarrier();
    for (var step = 1u; step < WG; step = step * 2u) {
        var add = t_zero();
        if (lid >= step) {
            add = buf[lid - step];
        }
        workgroupBarrier();
        buf[lid] = t_add(buf[lid], add);
        workgroupBarrier();
    }
    if (live) {
        out[at] = buf[lid];
    }
    if (lid == WG - 1u && line < params[0]) {
        totals[g] = buf[lid];
    }
}
