// 64-bit two's-complement integers for the I64 dtype. WGSL has no 64-bit integer type, so an
// I64 element is a vec2<u32> of (low word, high word): the same bytes as a little-endian
// i64, so uploads and readbacks copy the CPU backend's data as it is, and every result
// (wrapping on overflow included) equals the CPU backend's.
// Prepended to the kernels of I64 tensors only.

fn i64_zero() -> vec2<u32> {
    return vec2<u32>(0u, 0u);
}

fn i64_from_i32(x: i32) -> vec2<u32> {
    return vec2<u32>(bitcast<u32>(x), select(0u, 0xffffffffu, x < 0));
}

fn i64_from_u32(x: u32) -> vec2<u32> {
    return vec2<u32>(x, 0u);
}

fn i64_is_neg(a: vec2<u32>) -> bool {
    return (a.y >> 31u) == 1u;
}

fn i64_is_zero(a: vec2<u32>) -> bool {
    return a.x == 0u && a.y == 0u;
}

fn i64_eq(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.x == b.x && a.y == b.y;
}

fn i64_lt(a: vec2<u32>, b: vec2<u32>) -> bool {
    let ah = bitcast<i32>(a.y);
    let bh = bitcast<i32>(b.y);
    return ah < bh || (ah == bh && a.x < b.x);
}

fn i64_add(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn i64_sub(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}

fn i64_neg(a: vec2<u32>) -> vec2<u32> {
    return i64_sub(i64_zero(), a);
}

fn i64_abs(a: vec2<u32>) -> vec2<u32> {
    return select(a, i64_neg(a), i64_is_neg(a));
}

fn i64_sign(a: vec2<u32>) -> vec2<u32> {
    if (i64_is_neg(a)) {
        return i64_from_i32(-1);
    }
    return select(i64_from_u32(1u), i64_zero(), i64_is_zero(a));
}

fn i64_max(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return select(a, b, i64_lt(a, b));
}

fn i64_min(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return select(a, b, i64_lt(b, a));
}

// The full 64-bit product of two u32, from 16-bit halves.
fn mul_u32_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return vec2<u32>((p00 & 0xffffu) | (mid << 16u), p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

// The low 64 bits of the product (the same for signed and unsigned operands).
fn i64_mul(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let p = mul_u32_wide(a.x, b.x);
    return vec2<u32>(p.x, p.y + a.x * b.y + a.y * b.x);
}

// Unsigned 64-bit quotient and remainder (b != 0) by shift-and-subtract:
// returns (quotient, remainder) as vec4(q.lo, q.hi, r.lo, r.hi).
fn u64_divmod(a: vec2<u32>, b: vec2<u32>) -> vec4<u32> {
    var q = i64_zero();
    var r = i64_zero();
    for (var bit = 63i; bit >= 0; bit = bit - 1) {
        // r = (r << 1) | bit of a.
        let word = select(a.x, a.y, bit >= 32);
        let abit = (word >> (u32(bit) % 32u)) & 1u;
        r = vec2<u32>((r.x << 1u) | abit, (r.y << 1u) | (r.x >> 31u));
        // r >= b (unsigned)?
        if (r.y > b.y || (r.y == b.y && r.x >= b.x)) {
            r = i64_sub(r, b);
            if (bit >= 32) {
                q.y = q.y | (1u << (u32(bit) - 32u));
            } else {
                q.x = q.x | (1u << u32(bit));
            }
        }
    }
    return vec4<u32>(q, r);
}

// Floor division, as the CPU backend: x / 0 is 0.
fn i64_floordiv(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    if (i64_is_zero(b)) {
        return i64_zero();
    }
    let qr = u64_divmod(i64_abs(a), i64_abs(b));
    let q = qr.xy;
    if (i64_is_neg(a) == i64_is_neg(b)) {
        return q;
    }
    // Opposite signs: the quotient is negative and rounds down when there is a remainder.
    return select(i64_neg(q), i64_sub(i64_neg(q), i64_from_u32(1u)), !i64_is_zero(qr.zw));
}

// a^b with wrapping multiplication, as the CPU backend: negative exponents give 0, and
// exponents past u32::MAX count as u32::MAX.
fn i64_pow(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    // A negative exponent gives the truncated 1 / a^|b|, as the CPU's `int_pow`.
    if (i64_is_neg(b)) {
        if (i64_eq(a, i64_from_u32(1u))) {
            return a;
        }
        if (i64_eq(a, vec2<u32>(0xffffffffu, 0xffffffffu))) {
            return select(i64_from_u32(1u), a, (b.x & 1u) == 1u);
        }
        return i64_zero();
    }
    var r = i64_from_u32(1u);
    var base = a;
    var e = b;
    while (!i64_is_zero(e)) {
        if ((e.x & 1u) == 1u) {
            r = i64_mul(r, base);
        }
        base = i64_mul(base, base);
        e = vec2<u32>((e.x >> 1u) | (e.y << 31u), e.y >> 1u);
    }
    return r;
}

// Round to the nearest f32 (ties to even), as Rust's `as f32`.
fn i64_to_f32(a: vec2<u32>) -> f32 {
    let m = i64_abs(a);
    var f: f32;
    if (m.y == 0u) {
        f = f32(m.x);
    } else {
        // Normalise so the top set bit is bit 63, keep 32 bits and fold the dropped bits into
        // a sticky bit: rounding those 32 bits to 24 is then the same as rounding all 64.
        let n = countLeadingZeros(m.y);
        let top = select((m.y << n) | (m.x >> (32u - n)), m.y, n == 0u);
        let dropped = select(m.x << n, m.x, n == 0u);
        let t = top | select(0u, 1u, dropped != 0u);
        f = ldexp(f32(t), i32(32u - n));
    }
    return select(f, -f, i64_is_neg(a));
}

// Truncate toward zero, saturating, NaN to 0 (Rust's `as i64`).
fn i64_from_f32(x: f32) -> vec2<u32> {
    if (x != x) {
        return i64_zero();
    }
    if (x >= 9223372036854775808.0) {
        return vec2<u32>(0xffffffffu, 0x7fffffffu);
    }
    if (x <= -9223372036854775808.0) {
        return vec2<u32>(0u, 0x80000000u);
    }
    let t = abs(trunc(x));
    // Exact: t is an integer below 2^63, and both parts are representable.
    let hi = floor(t * (1.0 / 4294967296.0));
    let lo = t - hi * 4294967296.0;
    let m = vec2<u32>(u32(lo), u32(hi));
    return select(m, i64_neg(m), x < 0.0);
}

// An index value as i32, or a value outside [-2^31, 2^31) (never a valid index) as the
// most negative i32.
fn i64_to_index(a: vec2<u32>) -> i32 {
    let lo = bitcast<i32>(a.x);
    let fits = a.y == select(0u, 0xffffffffu, lo < 0);
    return select(-2147483647 - 1, lo, fits);
}
