//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ferroptim_core::simd::{self, SimdLevel};
use std::sync::{Mutex, MutexGuard};

/// Tests that switch the global SIMD level take this lock so they do not race.
static LEVEL_LOCK: Mutex<()> = Mutex::new(());

pub fn level_lock() -> MutexGuard<'static, ()> {
    LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` at every level this machine supports, restoring the detected level afterwards.
pub fn at_each_level(mut f: impl FnMut(SimdLevel)) {
    let _guard = level_lock();
    for level in simd::supported_levels() {
        assert!(simd::set_level(level));
        f(level);
    }
    simd::set_level(simd::detected_level());
}

/// A small deterministic generator (xorshift64*), so tests need no extra crates.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub fn vec<T: From<f32>>(&mut self, n: usize) -> Vec<T> {
        (0..n).map(|_| T::from(self.next_f64() as f32)).collect()
    }
}

/// Sizes that cross vector widths, the parallel threshold and the piece size.
pub fn sizes() -> Vec<usize> {
    vec![0, 1, 7, 15, 16, 17, 33, 1000, 100_003]
}
