//! The shapes of an elementwise kernel: what one table entry of `unary.rs`, `binary.rs` or
//! `compare.rs` holds for one dtype. The CPU half is a function over one run of elements
//! (generated from the entry's closure, so the loop is compiled for that op alone and
//! vectorises); the GPU half is a WGSL expression of the operands `a` and `b`.

/// `out[i] = f(src[o + i * s])` for every `i < out.len()` (a run of a strided walk; `s` is 0
/// for a broadcast operand).
pub type Run1<T, U> = fn(out: &mut [U], src: &[T], o: usize, s: usize);

/// `out[i] = f(a[oa + i * sa], b[ob + i * sb])` for every `i < out.len()`.
pub type Run2<T, U> =
    fn(out: &mut [U], a: &[T], oa: usize, sa: usize, b: &[T], ob: usize, sb: usize);

/// `dst[od + i * sd] = f(dst[od + i * sd], src[os + i * ss])` for every `i < n`, in place.
pub type Update2<T> =
    fn(dst: &mut [T], od: usize, sd: usize, n: usize, src: &[T], os: usize, ss: usize);

/// One op on one dtype with one operand: the CPU run and the WGSL expression of `a`. A
/// kernel whose output is bool has a WGSL expression of type `bool`.
#[derive(Clone, Copy)]
pub struct Kern1<T: 'static, U: 'static> {
    /// The CPU loop over one run.
    pub cpu: Run1<T, U>,
    /// The WGSL expression of `a`.
    pub wgsl: &'static str,
}

/// One op on one dtype with two operands, `a` and `b` in WGSL.
#[derive(Clone, Copy)]
pub struct Kern2<T: 'static, U: 'static> {
    /// The CPU loop over one run.
    pub cpu: Run2<T, U>,
    /// The WGSL expression of `a` and `b`.
    pub wgsl: &'static str,
}

/// An arithmetic op on one dtype: the out-of-place run, the in-place run (`a op= b`), and
/// the WGSL expression shared by both.
#[derive(Clone, Copy)]
pub struct Arith<T: 'static> {
    /// The CPU loop over one run, into a fresh output.
    pub cpu: Run2<T, T>,
    /// The CPU loop over one run, in place.
    pub cpu_update: Update2<T>,
    /// The WGSL expression of `a` and `b`.
    pub wgsl: &'static str,
}

impl<T> std::fmt::Debug for Kern1<T, bool> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wgsl)
    }
}

#[inline(always)]
pub fn run1<T: Copy, U: Copy>(out: &mut [U], src: &[T], o: usize, s: usize, f: impl Fn(T) -> U) {
    let n = out.len();
    match s {
        1 => {
            for (d, &x) in out.iter_mut().zip(&src[o..o + n]) {
                *d = f(x);
            }
        }
        0 => out.fill(f(src[o])),
        _ => {
            for (i, d) in out.iter_mut().enumerate() {
                *d = f(src[o + i * s]);
            }
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn run2<T: Copy, U: Copy>(
    out: &mut [U],
    a: &[T],
    oa: usize,
    sa: usize,
    b: &[T],
    ob: usize,
    sb: usize,
    f: impl Fn(T, T) -> U,
) {
    let n = out.len();
    match (sa, sb) {
        (1, 1) => {
            for ((d, &x), &y) in out.iter_mut().zip(&a[oa..oa + n]).zip(&b[ob..ob + n]) {
                *d = f(x, y);
            }
        }
        (1, 0) => {
            let y = b[ob];
            for (d, &x) in out.iter_mut().zip(&a[oa..oa + n]) {
                *d = f(x, y);
            }
        }
        (0, 1) => {
            let x = a[oa];
            for (d, &y) in out.iter_mut().zip(&b[ob..ob + n]) {
                *d = f(x, y);
            }
        }
        _ => {
            for (i, d) in out.iter_mut().enumerate() {
                *d = f(a[oa + i * sa], b[ob + i * sb]);
            }
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn update2<T: Copy>(
    dst: &mut [T],
    od: usize,
    sd: usize,
    n: usize,
    src: &[T],
    os: usize,
    ss: usize,
    f: impl Fn(T, T) -> T,
) {
    match (sd, ss) {
        (1, 1) => {
            for (x, &y) in dst[od..od + n].iter_mut().zip(&src[os..os + n]) {
                *x = f(*x, y);
            }
        }
        (1, 0) => {
            let y = src[os];
            for x in &mut dst[od..od + n] {
                *x = f(*x, y);
            }
        }
        _ => {
            for i in 0..n {
                let x = &mut dst[od + i * sd];
                *x = f(*x, src[os + i * ss]);
            }
        }
    }
}

/// A [`Kern1`] from a closure and a WGSL expression: `map1!(f32 => f32, |x| -x, "-a")`.
macro_rules! map1 {
    ($t:ty => $u:ty, $f:expr, $wgsl:expr) => {
        $crate::op::kernel::Kern1::<$t, $u> {
            cpu: {
                fn run(out: &mut [$u], src: &[$t], o: usize, s: usize) {
                    $crate::cpu::simd::vectorized(
                        #[inline(always)]
                        || $crate::op::kernel::run1(out, src, o, s, $f),
                    )
                }
                run
            },
            wgsl: $wgsl,
        }
    };
}

/// A [`Kern2`]: `map2!(f32 => bool, |a, b| a < b, "t_lt(a, b)")`.
macro_rules! map2 {
    ($t:ty => $u:ty, $f:expr, $wgsl:expr) => {
        $crate::op::kernel::Kern2::<$t, $u> {
            cpu: {
                #[allow(clippy::too_many_arguments)]
                fn run(
                    out: &mut [$u],
                    a: &[$t],
                    oa: usize,
                    sa: usize,
                    b: &[$t],
                    ob: usize,
                    sb: usize,
                ) {
                    $crate::cpu::simd::vectorized(
                        #[inline(always)]
                        || $crate::op::kernel::run2(out, a, oa, sa, b, ob, sb, $f),
                    )
                }
                run
            },
            wgsl: $wgsl,
        }
    };
}

/// An [`Arith`]: `arith!(f32, |a, b| a + b, "a + b")`.
macro_rules! arith {
    ($t:ty, $f:expr, $wgsl:expr) => {
        $crate::op::kernel::Arith::<$t> {
            cpu: $crate::op::kernel::map2!($t => $t, $f, $wgsl).cpu,
            cpu_update: {
                #[allow(clippy::too_many_arguments)]
                fn update(
                    dst: &mut [$t],
                    od: usize,
                    sd: usize,
                    n: usize,
                    src: &[$t],
                    os: usize,
                    ss: usize,
                ) {
                    $crate::cpu::simd::vectorized(
                        #[inline(always)]
                        || $crate::op::kernel::update2(dst, od, sd, n, src, os, ss, $f),
                    )
                }
                update
            },
            wgsl: $wgsl,
        }
    };
}

pub(crate) use {arith, map1, map2};
