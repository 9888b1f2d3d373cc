//! The CPU kernels' transcendental functions in f32, written without calls or branches so
//! that the loops the op tables generate vectorise (libm's `expf` and `tanhf` are a call per
//! element: 1.6 and 7.3 ns here). Each is checked against f64 over a dense grid below.

/// `e^x` within 2 ulp: `x = k ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by its Taylor series to
/// `r^7`, and `2^k` put into the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // ln 2 in two parts: the high one has 9 significant bits, so `k * LN2_HI` is exact for
    // every `k` used here and `x - k * LN2_HI` loses nothing (Cody and Waite's reduction).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds an f32 of magnitude below 2^22 to an integer.
    const ROUND: f32 = 12_582_912.0;
    // Past these e^x is infinite or zero in f32 (NaN stays NaN through clamp).
    let x = x.clamp(-104.0, 89.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^k as two factors, each a normal float for k in -150..=128, so that results near
    // the top and in the subnormal range are rounded once, by the last product.
    // The integer k read from the low bits of `shifted` (1.5 * 2^23 + k), not cast: a
    // float-to-int cast saturates, which the compiler does not vectorise.
    let k = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let half = k >> 1;
    let scale = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    p * scale(half) * scale(k - half)
}

/// `1 / (1 + e^-x)`, through `e^-|x|` only, so that neither side overflows.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        e * r
    }
}

/// `tanh` within 2e-7 relative error. Below |x| = 0.625 an odd polynomial (a least-squares
/// fit of `tanh(x) / x - 1` in `x^2`, made for this crate with NumPy), where
/// `(1 - e) / (1 + e)` would lose digits to cancellation; above, that quotient with
/// `e = exp(-2|x|)`, which never overflows.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    const C: [f32; 5] = [
        -0.333_332_8,
        0.133_314_31,
        -0.053_739_145,
        0.020_637_818,
        -0.005_703_993,
    ];
    let a = x.abs();
    let e = exp(-2.0 * a);
    let far = (1.0 - e) / (1.0 + e);
    let x2 = a * a;
    let p = x2 * (C[0] + x2 * (C[1] + x2 * (C[2] + x2 * (C[3] + x2 * C[4]))));
    let near = a + a * p;
    let t = if a < 0.625 { near } else { far };
    t.copysign(x)
}

/// The error function: Abramowitz and Stegun 7.1.26, as `op_erf` in WGSL.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let ax = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * ax);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-ax * ax);
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// `x Φ(x)`, exact GELU (through [`erf`]).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `Φ(x) + x φ(x)`, GELU's derivative.
#[inline(always)]
pub fn gelu_derivative(x: f32) -> f32 {
    const DENSITY: f32 = 0.398_942_3; // 1 / sqrt(2 pi)
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * exp(-0.5 * x * x) * DENSITY
}

/// The error function in f64 (libm's; std has none).
#[inline(always)]
pub fn erf64(x: f64) -> f64 {
    libm::erf(x)
}

/// `1 / (1 + e^-x)` in f64, without overflow for large `|x|`.
#[inline(always)]
pub fn sigmoid64(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Exact GELU in f64.
#[inline(always)]
pub fn gelu64(x: f64) -> f64 {
    0.5 * x * (1.0 + erf64(x * std::f64::consts::FRAC_1_SQRT_2))
}

/// GELU's derivative in f64.
#[inline(always)]
pub fn gelu_derivative64(x: f64) -> f64 {
    let density = 0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2;
    0.5 * (1.0 + erf64(x * std::f64::consts::FRAC_1_SQRT_2)) + x * (-0.5 * x * x).exp() * density
}

#[cfg(test)]
mod tests {
    /// The largest relative error of `f` against the f64 `reference` at `n` points evenly
    /// spread over `lo..=hi`, with the argument where it occurs. Results below f32's smallest
    /// normal number are compared absolutely (a subnormal has fewer digits to be right in).
    fn worst(f: fn(f32) -> f32, reference: fn(f64) -> f64, lo: f32, hi: f32) -> (f64, f32) {
        let n = 2_000_000;
        let mut worst = (0.0, 0.0);
        for i in 0..=n {
            let x = lo + (hi - lo) * (i as f32 / n as f32);
            let r = reference(x as f64);
            let got = f(x) as f64;
            let err = if r.abs() < f32::MIN_POSITIVE as f64 {
                (got - r).abs() / f32::MIN_POSITIVE as f64 * f32::EPSILON as f64
            } else {
                ((got - r) / r).abs()
            };
            if err > worst.0 {
                worst = (err, x);
            }
        }
        worst
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_whole_range() {
        let (err, at) = worst(super::exp, f64::exp, -103.0, 88.7);
        assert!(err < 2.5e-7, "exp: relative error {err} at {at}");
        let (err, at) = worst(super::exp, f64::exp, -1.0, 1.0);
        assert!(err < 2.5e-7, "exp near 0: relative error {err} at {at}");
        assert_eq!(super::exp(0.0), 1.0);
        assert_eq!(super::exp(89.0), f32::INFINITY);
        assert_eq!(super::exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(super::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::exp(-200.0), 0.0);
        assert!(super::exp(f32::NAN).is_nan());
        // The largest finite result and a subnormal one.
        let top = 88.72f32;
        assert!(((super::exp(top) as f64 / (top as f64).exp()) - 1.0).abs() < 2.5e-7);
        assert!(super::exp(-100.0) > 0.0);
    }

    #[test]
    fn tanh_is_within_a_few_ulp_everywhere() {
        let (err, at) = worst(super::tanh, f64::tanh, -12.0, 12.0);
        assert!(err < 2.5e-7, "tanh: relative error {err} at {at}");
        for x in [1e-30f32, -1e-30, 1e-7, 30.0, -30.0, 1e30, f32::MAX] {
            let r = (x as f64).tanh();
            assert!(
                ((super::tanh(x) as f64 - r) / r).abs() < 2.5e-7,
                "tanh({x})"
            );
        }
        assert_eq!(super::tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(super::tanh(f32::INFINITY), 1.0);
        assert_eq!(super::tanh(f32::NEG_INFINITY), -1.0);
        assert!(super::tanh(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_is_within_a_few_ulp_everywhere() {
        let reference = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (err, at) = worst(super::sigmoid, reference, -100.0, 40.0);
        assert!(err < 4e-7, "sigmoid: relative error {err} at {at}");
        assert_eq!(super::sigmoid(f32::INFINITY), 1.0);
        assert_eq!(super::sigmoid(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::sigmoid(-200.0), 0.0);
        assert!(super::sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn erf_is_abramowitz_and_stegun_to_its_bound() {
        // 7.1.26's error bound is 1.5e-7 absolute; evaluating it in f32 adds a few ulp of 1.
        let mut worst: f64 = 0.0;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            let r = libm_erf(x as f64);
            worst = worst.max((super::erf(x) as f64 - r).abs());
        }
        assert!(worst < 6e-7, "erf: absolute error {worst}");
    }

    /// erf in f64 by its Taylor series (|x| < 3) and the continued fraction beyond: the test's
    /// own reference, accurate to 1e-12 where it is used.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 3.0 {
            let (mut term, mut sum, mut n) = (a, a, 0.0);
            while term.abs() > 1e-17 * sum.abs() {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(a) = exp(-a^2) / sqrt(pi) * 1 / (a + 1/2 / (a + 1 / (a + 3/2 / (a + ...))))
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (k as f64 / 2.0) / f;
            }
            1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
        };
        v.copysign(x)
    }
}
