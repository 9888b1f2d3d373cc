//! Helpers shared by the integration tests.
#![allow(dead_code)]

use wgrad::{Device, Tensor};

/// Every device the tests can run on here. The CPU always; a GPU when this build has a
/// backend for one and an adapter is found. With `WGRAD_REQUIRE_GPU=1` a missing GPU fails
/// the run instead of being skipped.
pub fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    match Device::gpu() {
        Ok(d) => devices.push(d),
        Err(e) => {
            if std::env::var("WGRAD_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("WGRAD_REQUIRE_GPU=1 but no GPU device: {e}");
            }
            eprintln!("note: no GPU device ({e}); GPU variants of this test are skipped");
        }
    }
    devices
}

/// Assert two float slices agree within `atol + rtol * |expected|` (NaNs must match).
pub fn assert_close(actual: &[f32], expected: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: length {} vs expected {}",
        actual.len(),
        expected.len()
    );
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let a = a as f64;
        let ok = if e.is_nan() {
            a.is_nan()
        } else if e.is_infinite() {
            a == e
        } else {
            (a - e).abs() <= atol + rtol * e.abs()
        };
        assert!(ok, "{what}: element {i}: got {a}, expected {e}");
    }
}

/// The values of a float tensor as f32.
pub fn floats(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// A small deterministic generator (xorshift64*) for the random-program tests, so that a
/// failing seed can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// In [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A dim: usually one that exists (-1, 0, 1), sometimes one that does not.
    pub fn dim(&mut self) -> isize {
        if self.below(8) == 0 {
            self.below(9) as isize - 4
        } else {
            self.below(3) as isize - 1
        }
    }
}
