// One workgroup per output element (or, for long reductions, per slice of one output's
// elements: the split stage writes one Partial per slice and reduce_combine.wgsl merges
// them): each thread folds a strided share of the elements, then a tree reduction in
// workgroup memory combines the threads' partials (or, where the adapter has subgroup
// operations, a subgroup reduction and a short merge of one partial per subgroup).
// Metadata: [0] outputs, [1] kept rank r, [2..2+r) kept shape, [2+r] input offset,
//   [3+r..3+2r) kept strides, then [3+2r] reduced rank q, q sizes, q strides, and for the
//   split stage the number of slices per output and the slice length.
// Specialised by <T> input type, <ACC> accumulator type, <OUT> output type and
// <HELPERS>, which define init(), fold(acc, x, j) (j: the flat index within the reduced
// dims), merge(l, r) and finish(p).

@group(0) @binding(1) var<storage, read_write> out: array<{{OUT_ELEM}}>;
@group(0) @binding(2) var<storage, read> src: array<{{T}}>;

struct Partial {
    v: {{ACC}},
    i: u32,
    has: u32,
}

var<workgroup> partials: array<Partial, WG>;

{{HELPERS}}

fn kept_offset(o: u32) -> u32 {
    let r = params[1];
    return params[2u + r] + strided_offset(o, r, 2u, 3u + r);
}

fn reduced_offset(j: u32) -> u32 {
    let q_at = 3u + 2u * params[1];
    let q = params[q_at];
    // One reduced dim (merged, the common case): straight to its stride.
    if (q == 1u) {
        return j * params[q_at + 2u];
    }
    return strided_offset(j, q, q_at + 1u, q_at + 1u + q);
}

fn reduced_count() -> u32 {
    let r = params[1];
    let q_at = 3u + 2u * r;
    let q = params[q_at];
    var n = 1u;
    for (var d = 0u; d < q; d = d + 1u) {
        n = n * params[q_at + 1u + d];
    }
    return n;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32{{SG_ARGS}}) {
    // The same group for the whole workgroup, so every branch below on it is uniform.
    let g = wid.x + wid.y * nwg.x;
    let n = reduced_count();
{{RANGE}}
    var acc = init();
    if (o < params[0]) {
        let base = kept_offset(o);
        for (var j = start + lid; j < end; j = j + WG) {
            let x = src[base + reduced_offset(j)];
            acc = fold(acc, x, j);
        }
    }
{{COMBINE}}    if (lid == 0u && o < params[0]) {
        let p = partials[0];
{{STORE}}
    }
}
