//! Random numbers from a counter-based generator (Threefry-2x32, 20 rounds).
//!
//! Element `i` of a random tensor is a pure function of `(seed, offset + i)`, so any backend
//! produces the same stream by evaluating the same function in parallel (the wgpu backend's
//! `random.wgsl` implements it with the same 32-bit operations). A generator only keeps its
//! seed and how many counters it has used.

use std::sync::Mutex;

/// The default seed, used until [`manual_seed`] is called.
pub const DEFAULT_SEED: u64 = 67280421310721;

const ROTATIONS: [u32; 8] = [13, 15, 26, 6, 17, 29, 16, 24];

/// The Threefry-2x32-20 block function: two random words for a 64-bit counter.
pub fn threefry2x32(key: [u32; 2], counter: [u32; 2]) -> [u32; 2] {
    let ks = [key[0], key[1], key[0] ^ key[1] ^ 0x1BD1_1BDA];
    let mut x0 = counter[0].wrapping_add(ks[0]);
    let mut x1 = counter[1].wrapping_add(ks[1]);
    for group in 0..5usize {
        for j in 0..4 {
            x0 = x0.wrapping_add(x1);
            x1 = x1.rotate_left(ROTATIONS[(group % 2) * 4 + j]) ^ x0;
        }
        x0 = x0.wrapping_add(ks[(group + 1) % 3]);
        x1 = x1
            .wrapping_add(ks[(group + 2) % 3])
            .wrapping_add(group as u32 + 1);
    }
    [x0, x1]
}

/// A seeded stream of random numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generator {
    seed: u64,
    offset: u64,
}

impl Generator {
    /// A generator at the start of the stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Generator { seed, offset: 0 }
    }

    /// The seed this generator was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many counters have been used so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The generator of `seed` after `offset` counters: a position saved from
    /// [`Generator::seed`] and [`Generator::offset`] (checkpoints restore it).
    pub fn at(seed: u64, offset: u64) -> Self {
        Generator { seed, offset }
    }

    /// Reserve `n` counters and return the first.
    pub fn advance(&mut self, n: usize) -> u64 {
        let start = self.offset;
        self.offset += n as u64;
        start
    }

    fn key(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }

    /// Two random words for each of `n` counters, made as they are consumed: the draws
    /// below map them straight into their results, never holding all of them (8 bytes an
    /// element, twice an f32 result: 2^32 draws aborted on the words alone).
    pub fn words(&mut self, n: usize) -> impl Iterator<Item = [u32; 2]> {
        let key = self.key();
        let start = self.advance(n);
        (0..n as u64).map(move |i| {
            let c = start + i;
            threefry2x32(key, [c as u32, (c >> 32) as u32])
        })
    }

    /// `n` uniform numbers in `[0, 1)`.
    pub fn uniform(&mut self, n: usize) -> Vec<f32> {
        self.words(n).map(|w| unit(w[0])).collect()
    }

    /// `n` standard normal numbers (Box-Muller on the two words of each counter).
    pub fn normal(&mut self, n: usize) -> Vec<f32> {
        self.words(n)
            .map(|w| {
                let u1 = ((w[0] >> 8) + 1) as f32 * (1.0 / 16_777_216.0); // (0, 1]
                let u2 = unit(w[1]);
                (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect()
    }

    /// `n` integers uniform in `low..high`.
    pub fn int_range(&mut self, n: usize, low: i64, high: i64) -> Vec<i64> {
        // `high - low` can pass i64::MAX (randint(i64::MIN, i64::MAX)); as u64 it is exact.
        let range = high.wrapping_sub(low) as u64;
        self.words(n)
            .map(|w| {
                let r = if range <= u32::MAX as u64 {
                    w[0] as u64 % range
                } else {
                    (((w[1] as u64) << 32) | w[0] as u64) % range
                };
                low.wrapping_add(r as i64)
            })
            .collect()
    }

    /// A random permutation of `0..n` (sort by random keys; ties broken by position).
    pub fn permutation(&mut self, n: usize) -> Vec<i64> {
        let keys: Vec<[u32; 2]> = self.words(n).collect();
        let mut idx: Vec<i64> = (0..n as i64).collect();
        idx.sort_by_key(|&i| {
            let w = keys[i as usize];
            (((w[1] as u64) << 32) | w[0] as u64, i)
        });
        idx
    }
}

/// 24 random bits as a float in `[0, 1)`.
fn unit(w: u32) -> f32 {
    (w >> 8) as f32 * (1.0 / 16_777_216.0)
}

static DEFAULT_GENERATOR: Mutex<Generator> = Mutex::new(Generator {
    seed: DEFAULT_SEED,
    offset: 0,
});

/// Reset the global generator to the start of `seed`'s stream (PyTorch's `torch.manual_seed`).
pub fn manual_seed(seed: u64) {
    *DEFAULT_GENERATOR.lock().unwrap_or_else(|e| e.into_inner()) = Generator::new(seed);
}

thread_local! {
    /// The generator of a [`seeded`] scope on this thread, in place of the global one.
    static SCOPED: std::cell::RefCell<Option<Generator>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with the global generator (or the [`seeded`] one of this thread). `f` must not
/// draw from the default generator itself (it holds it).
pub(crate) fn with_default<T>(f: impl FnOnce(&mut Generator) -> T) -> T {
    SCOPED.with(|s| match s.borrow_mut().as_mut() {
        Some(g) => f(g),
        None => f(&mut DEFAULT_GENERATOR.lock().unwrap_or_else(|e| e.into_inner())),
    })
}

/// Run `f` with a generator of its own on this thread, started at `seed`: layers, `rand`,
/// `randn` and initialisers in `f` draw from it instead of the global one. Unlike
/// [`manual_seed`], other threads (parallel tests, a data loader) cannot move it, so the
/// same `f` gives the same numbers every time.
///
/// ```
/// use wgrad::{nn, Device};
/// let a = wgrad::seeded(7, || nn::Linear::new(3, 2, &Device::Cpu))?;
/// let b = wgrad::seeded(7, || nn::Linear::new(3, 2, &Device::Cpu))?;
/// assert_eq!(a.weight.to_vec::<f32>()?, b.weight.to_vec::<f32>()?);
/// # Ok::<(), wgrad::Error>(())
/// ```
pub fn seeded<T>(seed: u64, f: impl FnOnce() -> T) -> T {
    let previous = SCOPED.with(|s| s.borrow_mut().replace(Generator::new(seed)));
    // Restore the enclosing scope even if `f` panics.
    struct Restore(Option<Generator>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SCOPED.with(|s| *s.borrow_mut() = previous);
        }
    }
    let _restore = Restore(previous);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threefry_known_answer() {
        // Known-answer vectors from the Random123 distribution (kat_vectors, threefry2x32_20).
        assert_eq!(threefry2x32([0, 0], [0, 0]), [0x6b200159, 0x99ba4efe]);
        assert_eq!(
            threefry2x32([0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]),
            [0x1cb996fc, 0xbb002be7]
        );
        assert_eq!(
            threefry2x32([0x13198a2e, 0x03707344], [0x243f6a88, 0x85a308d3]),
            [0xc4923a9c, 0x483df7a0]
        );
    }

    #[test]
    fn same_seed_same_stream_and_streams_continue() {
        let mut a = Generator::new(42);
        let mut b = Generator::new(42);
        assert_eq!(a.uniform(10), b.uniform(10));
        let first = Generator::new(42).uniform(20);
        let mut c = Generator::new(42);
        let mut joined = c.uniform(7);
        joined.extend(c.uniform(13));
        assert_eq!(first, joined);
    }

    #[test]
    fn uniform_and_normal_statistics() {
        let mut g = Generator::new(1);
        let u = g.uniform(100_000);
        let mean = u.iter().map(|&x| x as f64).sum::<f64>() / u.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
        let n = g.normal(100_000);
        let m = n.iter().map(|&x| x as f64).sum::<f64>() / n.len() as f64;
        let var = n.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n.len() as f64;
        assert!(m.abs() < 0.02 && (var - 1.0).abs() < 0.02, "{m} {var}");
        let mut p = g.permutation(50);
        p.sort();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
    }
}
