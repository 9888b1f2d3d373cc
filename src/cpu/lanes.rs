//! Sums in independent f32 lanes, so that the adds pipeline and vectorise (a plain f32 sum
//! is one serial chain the compiler may not reorder), with f64 across blocks for accuracy.
//! They are `#[inline(always)]`: call them inside `simd::vectorized`, or through a caller
//! that is, to get the CPU's full vector width.

const LANES: usize = 16;
/// Elements summed in f32 before the block's total joins the f64 sum.
const BLOCK: usize = 2048;

/// `sum f(a[k], b[k])` over the common length of `a` and `b`.
#[inline(always)]
pub fn sum_of(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for (a, b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut lanes = [0f32; LANES];
        let (mut ia, mut ib) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        for (ca, cb) in (&mut ia).zip(&mut ib) {
            for k in 0..LANES {
                lanes[k] += f(ca[k], cb[k]);
            }
        }
        let rest: f32 = ia
            .remainder()
            .iter()
            .zip(ib.remainder())
            .map(|(&x, &y)| f(x, y))
            .sum();
        total += (lanes.iter().sum::<f32>() + rest) as f64;
    }
    total
}

/// `sum v[k]`.
#[inline(always)]
pub fn sum(v: &[f32]) -> f64 {
    sum_of(v, v, |x, _| x)
}
