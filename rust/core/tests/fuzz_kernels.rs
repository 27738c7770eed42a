//! Randomized robustness of the kernels (a bounded, seeded fuzz: no extra crates).
//!
//! Each case draws an optimizer, a dtype, 0 to 4 tensors of sizes around the vector widths (0, 1,
//! odd, 15/16/17, ..., and rarely past the threading thresholds), step counts (1 to `u64::MAX`), hyperparameters from an edge-value table
//! (0, subnormal, 1 - 1e-16, 1, huge, `f64::MAX`, negative, NaN, ±inf), values with NaN, ±inf, -0,
//! subnormals and huge numbers, and sometimes a wrong state count or a length mismatch. It is run
//! at every SIMD level this machine supports, with 1 and 2 threads. Checked:
//!
//! - no panic;
//! - every run gives the same `Ok`/`Err` as the run at the lowest level (scalar, or SSE2 on x86-64,
//!   which has no scalar dispatch) with one thread, and the same bits in every array (NaN-aware:
//!   any NaN matches any NaN);
//! - an `Err` leaves every array exactly as it was.
//!
//! The gradient-clipping helpers and the batch-norm statistics get the same treatment.
//! `FERROPTIM_FUZZ_CASES` sets the number of cases (default 1000 per test). About one tensor in 300
//! is large enough for the helper thread or the thread pool.

mod common;

use common::{
    clip_outputs, each_setting, first_disagreement, flat_bits, nan_aware_bits, splitmix64, Hypers,
    Kernel, Problem, Run, HYPER_EDGES, KERNEL_COUNT,
};
use ferroptim_core::batchnorm::{batch_stats, Layout};
use ferroptim_core::*;
use std::fmt::Display;

fn cases() -> u64 {
    std::env::var("FERROPTIM_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// A seeded splitmix64 generator with the draws the fuzz needs.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A hyperparameter: usually sensible, sometimes an edge value.
    fn hyper(&mut self, sensible: f64) -> f64 {
        match self.below(4) {
            0 => self.pick(&HYPER_EDGES),
            1 => self.unit(),
            _ => sensible,
        }
    }
    /// One array value: mostly normal-ish, sometimes special.
    fn value(&mut self) -> f64 {
        const SPECIAL: [f64; 9] = [
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-40,
            3e38,
            1e300,
            -1e-310,
        ];
        if self.chance(12) {
            self.pick(&SPECIAL)
        } else {
            (self.unit() - 0.5) * 8.0
        }
    }
    fn vec<T: Real>(&mut self, n: usize) -> Vec<T> {
        (0..n).map(|_| T::from_f64(self.value())).collect()
    }
    /// `n` values, or (rarely) a different number of them: a length mismatch.
    fn vec_near<T: Real>(&mut self, n: usize) -> Vec<T> {
        let len = if self.chance(40) { self.size() } else { n };
        self.vec(len)
    }
    fn size(&mut self) -> usize {
        const SIZES: [usize; 18] = [
            0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 65, 129,
        ];
        if self.chance(300) {
            // the helper-thread and thread-pool paths
            self.pick(&[ASSIST_MIN_ELEMENTS + 3, PARALLEL_MIN_ELEMENTS + 5])
        } else if self.chance(5) {
            self.below(300)
        } else {
            self.pick(&SIZES)
        }
    }
}

/// A drawn optimizer and configuration.
fn draw_kernel(g: &mut Gen) -> Kernel {
    let which = g.below(KERNEL_COUNT);
    let clip_value = if g.chance(4) {
        Some(g.hyper(0.5))
    } else {
        None
    };
    let hypers = Hypers {
        lr: g.hyper(0.01),
        a: g.hyper(0.9),
        b: g.hyper(0.999),
        eps: g.hyper(1e-8),
        weight_decay: g.hyper(0.0),
        momentum: if g.chance(2) { 0.0 } else { g.hyper(0.9) },
        flags: [g.chance(2), g.chance(2), g.chance(2)],
        grad_clip: GradClip {
            scale: if g.chance(3) { g.hyper(0.5) } else { 1.0 },
            clip_value,
        },
    };
    Kernel::new(which, &hypers)
}

/// 0 to 4 tensors for `kernel`, sometimes with a wrong state count or a length mismatch.
fn draw_problem<T: Real>(g: &mut Gen, kernel: &Kernel) -> Problem<T> {
    let n = g.below(5);
    let sizes: Vec<usize> = (0..n).map(|_| g.size()).collect();
    let mut n_state = kernel.state_count();
    if g.chance(25) {
        n_state = (n_state + 1 + g.below(3)) % 5; // a wrong state count
    }
    let params = sizes.iter().map(|&s| g.vec(s)).collect();
    let grads = sizes.iter().map(|&s| g.vec_near(s)).collect();
    let states = sizes
        .iter()
        .map(|&s| (0..n_state).map(|_| g.vec_near(s)).collect())
        .collect();
    const STEPS: [u64; 7] = [1, 2, 3, 10, 1_000_000, 1 << 40, u64::MAX];
    let steps = (0..n).map(|_| g.pick(&STEPS)).collect();
    let mu = (0..n).map(|_| g.value() as f32).collect();
    Problem {
        params,
        grads,
        states,
        steps,
        mu,
    }
}

/// Panic if some setting's outcome differs from the baseline's.
fn assert_agreement<R: PartialEq>(runs: &[Run<R>], what: impl Display) {
    if let Some(run) = first_disagreement(runs) {
        panic!(
            "{what}: {:?}/{} threads differs from the baseline",
            run.level, run.threads
        );
    }
}

/// Fuzz every optimizer in `T`; both outcomes (accepted, refused) must occur.
fn fuzz_optimizers<T: Real>(seed: u64) {
    let mut g = Gen(seed);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..cases() {
        let kernel = draw_kernel(&mut g);
        let original = draw_problem::<T>(&mut g, &kernel);
        let runs = each_setting(|level, _| {
            let mut p = original.clone();
            let result = p.run(&kernel);
            if result.is_err() {
                assert!(
                    p.bits() == original.bits(),
                    "case {case} {kernel:?}: refused at {level:?} but wrote"
                );
            }
            (result.is_ok(), p.bits())
        });
        assert_agreement(&runs, format_args!("case {case} {} {kernel:?}", T::NAME));
        if runs[0].outcome.0 {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!(
        "fuzz optimizers {}: {accepted} accepted, {refused} refused",
        T::NAME
    );
    assert!(
        accepted > 0 && refused > 0,
        "the draw should produce both outcomes"
    );
}

#[test]
fn optimizers_agree_with_scalar_and_never_panic_f32() {
    fuzz_optimizers::<f32>(1);
}

#[test]
fn optimizers_agree_with_scalar_and_never_panic_f64() {
    fuzz_optimizers::<f64>(2);
}

#[test]
fn clipping_helpers_agree_with_scalar_and_never_panic() {
    let mut g = Gen(3);
    for case in 0..cases() {
        let arrays: Vec<Vec<f32>> = (0..g.below(5))
            .map(|_| {
                let n = g.size();
                g.vec(n)
            })
            .collect();
        let norm = NormType::from_p(g.pick(&[1.0, 2.0, 3.0, 0.5, f64::INFINITY, 1e-300]));
        let Ok(norm) = norm else { continue };
        let clamp = if g.chance(3) {
            Some(g.hyper(0.5))
        } else {
            None
        };
        let factors: Vec<f64> = arrays.iter().map(|_| g.hyper(0.5)).collect();
        let clip_value = g.hyper(0.5);
        let before = flat_bits(&arrays);
        let runs = each_setting(|_, _| {
            let out = clip_outputs(&arrays, Some(norm), clamp, &factors, clip_value);
            if !out.clamp_ok {
                assert!(out.clamped == before || arrays.iter().flatten().any(|x| x.is_nan()));
            }
            out
        });
        assert_agreement(&runs, format_args!("clip case {case}"));
    }
}

#[test]
fn batch_stats_agree_with_scalar_and_never_panic() {
    let mut g = Gen(4);
    for case in 0..cases() {
        let (n, c, s) = (g.below(6), g.below(5), g.pick(&[0, 1, 2, 3, 7, 16, 17]));
        let x: Vec<f64> = g.vec(n * c * s);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let bad_len = g.chance(20);
        let channels = if bad_len { c + 1 } else { c };
        let runs = each_setting(|_, _| {
            let (mut m64, mut v64) = (vec![0.5; channels], vec![0.5; channels]);
            let (mut m32, mut v32) = (vec![0.5; channels], vec![0.5; channels]);
            let r64 = batch_stats(&x, Layout::new(n, c, s), &mut m64, &mut v64).is_ok();
            let r32 = batch_stats(&x32, Layout::new(n, c, s), &mut m32, &mut v32).is_ok();
            if bad_len && c > 0 {
                assert!(!r64 && !r32 && m64.iter().all(|&m| m == 0.5), "case {case}");
            }
            (
                r64,
                r32,
                nan_aware_bits(m64.into_iter().chain(v64).chain(m32).chain(v32)),
            )
        });
        assert_agreement(&runs, format_args!("stats case {case}"));
    }
}
