// The 16-bit float dtypes on the GPU: two values per u32 word (element i in the low half of
// word i / 2 when i is even, the high half when odd), little-endian as on the CPU, so a
// buffer's bytes are the same as a host Vec<f16>. Kernels compute in f32: a load widens
// exactly and a store rounds to nearest even, by integer arithmetic alone, the same bits as
// the `half` crate on the CPU (WGSL leaves the rounding of its own f32 -> f16 conversions,
// and overflow, to the implementation).

// The f16 whose bits are the low 16 bits of `h`, as f32 (exact: subnormals included).
fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0x1fu) {
        // Infinity, or NaN made quiet.
        return bitcast<f32>(sign | 0x7f800000u | select(0u, 0x400000u | (m << 13u), m != 0u));
    }
    if (e == 0u) {
        // Subnormal: m * 2^-24, a normal f32 (or zero), exactly.
        return bitcast<f32>(sign | bitcast<u32>(f32(m) * 5.9604644775390625e-8));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// The bits of `x` rounded to the nearest f16 (ties to even; past 65504 rounds to infinity).
fn f32_bits_to_f16(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let e = (b >> 23u) & 0xffu;
    let m = b & 0x7fffffu;
    if (e == 0xffu) {
        return sign | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u);
    }
    let ue = i32(e) - 127;
    if (ue > 15) {
        return sign | 0x7c00u;
    }
    if (ue >= -14) {
        // Normal: keep 10 mantissa bits; a carry out of them rounds into the exponent (and
        // from the largest binade into infinity), which is the right result.
        let kept = m >> 13u;
        let rest = m & 0x1fffu;
        let up = rest > 0x1000u || (rest == 0x1000u && (kept & 1u) == 1u);
        return sign | ((((u32(ue + 15)) << 10u) | kept) + select(0u, 1u, up));
    }
    if (ue < -25) {
        return sign;
    }
    // Subnormal: the full significand in units of 2^-24.
    let full = m | 0x800000u;
    let shift = u32(-(ue + 1));
    let kept = full >> shift;
    let rest = full & ((1u << shift) - 1u);
    let half_unit = 1u << (shift - 1u);
    let up = rest > half_unit || (rest == half_unit && (kept & 1u) == 1u);
    return sign | (kept + select(0u, 1u, up));
}

// The bf16 whose bits are the low 16 bits of `h`, as f32 (its upper half, exactly).
fn bf16_bits_to_f32(h: u32) -> f32 {
    return bitcast<f32>((h & 0xffffu) << 16u);
}

// The bits of `x` rounded to the nearest bf16 (ties to even); NaN stays NaN, made quiet.
fn f32_bits_to_bf16(b: u32) -> u32 {
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (b >> 16u) | 0x40u;
    }
    let up = (b & 0x8000u) != 0u && (b & 0x17fffu) != 0u;
    return (b >> 16u) + select(0u, 1u, up);
}

// Element `i` of a packed buffer's word `word`, as the bits of one 16-bit value.
fn half_of_word(word: u32, i: u32) -> u32 {
    return (word >> ((i & 1u) * 16u)) & 0xffffu;
}
