// Creation on the device: out[i] = VALUE_EXPR(i) for a contiguous output.
// Metadata: [0] count, [1..] parameters read by the expression (see gpu/kernels.rs):
// constants, arange start/step, or the random generator's key and counter.

@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;

// Threefry-2x32 with 20 rounds: the same function as the CPU backend's `rng.rs`, so both
// produce the same random stream for a seed.
fn rotl(x: u32, r: u32) -> u32 {
    return (x << r) | (x >> (32u - r));
}

fn threefry(key: vec2<u32>, ctr: vec2<u32>) -> vec2<u32> {
    let ks = array<u32, 3>(key.x, key.y, key.x ^ key.y ^ 0x1BD11BDAu);
    let rot = array<u32, 8>(13u, 15u, 26u, 6u, 17u, 29u, 16u, 24u);
    var x0 = ctr.x + ks[0];
    var x1 = ctr.y + ks[1];
    for (var g = 0u; g < 5u; g = g + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            x0 = x0 + x1;
            x1 = rotl(x1, rot[(g % 2u) * 4u + j]) ^ x0;
        }
        x0 = x0 + ks[(g + 1u) % 3u];
        x1 = x1 + ks[(g + 2u) % 3u] + g + 1u;
    }
    return vec2<u32>(x0, x1);
}

fn random_words(i: u32) -> vec2<u32> {
    // 64-bit counter = offset + i, carried into the high word.
    let lo = params[3] + i;
    let hi = params[4] + select(0u, 1u, lo < params[3]);
    return threefry(vec2<u32>(params[1], params[2]), vec2<u32>(lo, hi));
}

fn unit(w: u32) -> f32 {
    return f32(w >> 8u) * (1.0 / 16777216.0);
}

fn normal(i: u32) -> f32 {
    let w = random_words(i);
    let u1 = f32((w.x >> 8u) + 1u) * (1.0 / 16777216.0);
    return sqrt(-2.0 * log(u1)) * cos(6.2831855 * unit(w.y));
}

fn randint(i: u32) -> vec2<u32> {
    // params[5..7): low, params[7..9): high - low (nonzero), as 64-bit words. A span that
    // fits 32 bits takes the first random word, a wider one both (as the CPU's `int_range`).
    let w = random_words(i);
    let span = vec2<u32>(params[7], params[8]);
    var r = vec2<u32>(w.x % max(span.x, 1u), 0u);
    if (span.y != 0u) {
        r = u64_divmod(w, span).zw;
    }
    return i64_add(vec2<u32>(params[5], params[6]), r);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= params[0]) {
        return;
    }
    out[i] = {{VALUE}};
}
