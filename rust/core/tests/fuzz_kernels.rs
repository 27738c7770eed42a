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

use common::level_lock;
use ferroptim_core::batchnorm::{batch_stats, Layout};
use ferroptim_core::clip::{clamp_all, scale_each, tensor_partials};
use ferroptim_core::simd::{self, SimdLevel};
use ferroptim_core::*;

fn cases() -> u64 {
    std::env::var("FERROPTIM_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// splitmix64: a seeded generator with good bits from any seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
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
        const EDGES: [f64; 16] = [
            0.0,
            -0.0,
            5e-324,
            1e-300,
            1e-8,
            0.5,
            0.999_999_999_999_999_9,
            1.0,
            2.0,
            1e30,
            f64::MAX,
            -1.0,
            -1e-300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        match self.below(4) {
            0 => self.pick(&EDGES),
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

#[derive(Clone, Copy, Debug)]
enum Opt {
    Sgd,
    Adagrad,
    Adadelta,
    Rmsprop,
    Adam,
    Adamax,
    Nadam,
    Radam,
    Lion,
}

const OPTS: [Opt; 9] = [
    Opt::Sgd,
    Opt::Adagrad,
    Opt::Adadelta,
    Opt::Rmsprop,
    Opt::Adam,
    Opt::Adamax,
    Opt::Nadam,
    Opt::Radam,
    Opt::Lion,
];

/// A drawn optimizer configuration (each field is read by the optimizers that have it).
#[derive(Clone, Debug)]
struct Config {
    opt: Opt,
    lr: f64,
    a: f64,
    b: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    flags: [bool; 3],
    grad_clip: GradClip,
}

impl Config {
    fn draw(g: &mut Gen) -> Self {
        let opt = g.pick(&OPTS);
        let clip_value = if g.chance(4) {
            Some(g.hyper(0.5))
        } else {
            None
        };
        Config {
            opt,
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
        }
    }

    /// State arrays the options use (a wrong count must be refused, not panic).
    fn n_state(&self) -> usize {
        let [f0, f1, _] = self.flags;
        match self.opt {
            Opt::Sgd => usize::from(self.momentum != 0.0),
            Opt::Adagrad | Opt::Lion => 1,
            Opt::Rmsprop => 1 + usize::from(f0) + usize::from(self.momentum > 0.0),
            Opt::Adam => 2 + usize::from(f1),
            Opt::Adadelta | Opt::Adamax | Opt::Nadam | Opt::Radam => 2,
        }
    }

    fn step<T: Real>(&self, t: &mut [TensorRef<'_, T>], mu: &mut [f32]) -> Result<(), Error> {
        let [f0, f1, f2] = self.flags;
        let (lr, eps, weight_decay, grad_clip) =
            (self.lr, self.eps, self.weight_decay, self.grad_clip);
        match self.opt {
            Opt::Sgd => sgd_step(
                t,
                &SgdConfig {
                    lr,
                    momentum: self.momentum,
                    dampening: if f1 { 0.0 } else { self.a },
                    weight_decay,
                    nesterov: f0,
                    maximize: f2,
                    grad_clip,
                },
            ),
            Opt::Adagrad => adagrad_step(
                t,
                &AdagradConfig {
                    lr,
                    lr_decay: self.a,
                    weight_decay,
                    eps,
                    maximize: f2,
                    grad_clip,
                },
            ),
            Opt::Adadelta => adadelta_step(
                t,
                &AdadeltaConfig {
                    lr,
                    rho: self.a,
                    eps,
                    weight_decay,
                    maximize: f2,
                    grad_clip,
                },
            ),
            Opt::Rmsprop => rmsprop_step(
                t,
                &RmspropConfig {
                    lr,
                    alpha: self.a,
                    eps,
                    weight_decay,
                    momentum: self.momentum,
                    centered: f0,
                    maximize: f2,
                    grad_clip,
                },
            ),
            Opt::Adam => adam_step(
                t,
                &AdamConfig {
                    lr,
                    beta1: self.a,
                    beta2: self.b,
                    eps,
                    weight_decay,
                    amsgrad: f1,
                    maximize: f2,
                    decoupled_weight_decay: f0,
                    grad_clip,
                },
            ),
            Opt::Adamax => adamax_step(
                t,
                &AdamaxConfig {
                    lr,
                    beta1: self.a,
                    beta2: self.b,
                    eps,
                    weight_decay,
                    maximize: f2,
                    grad_clip,
                },
            ),
            Opt::Nadam => nadam_step(
                t,
                mu,
                &NadamConfig {
                    lr,
                    beta1: self.a,
                    beta2: self.b,
                    eps,
                    weight_decay,
                    momentum_decay: self.momentum,
                    maximize: f2,
                    decoupled_weight_decay: f0,
                    grad_clip,
                },
            ),
            Opt::Radam => radam_step(
                t,
                &RadamConfig {
                    lr,
                    beta1: self.a,
                    beta2: self.b,
                    eps,
                    weight_decay,
                    maximize: f2,
                    decoupled_weight_decay: f0,
                    grad_clip,
                },
            ),
            Opt::Lion => lion_step(
                t,
                &LionConfig {
                    lr,
                    beta1: self.a,
                    beta2: self.b,
                    weight_decay,
                    maximize: f2,
                    grad_clip,
                },
            ),
        }
    }
}

/// Everything one optimizer call reads and writes.
#[derive(Clone)]
struct Problem<T> {
    params: Vec<Vec<T>>,
    grads: Vec<Vec<T>>,
    states: Vec<Vec<Vec<T>>>,
    steps: Vec<u64>,
    mu: Vec<f32>,
}

impl<T: Real> Problem<T> {
    fn draw(g: &mut Gen, cfg: &Config) -> Self {
        let n = g.below(5);
        let sizes: Vec<usize> = (0..n).map(|_| g.size()).collect();
        let mut n_state = cfg.n_state();
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

    fn run(&mut self, cfg: &Config) -> Result<(), Error> {
        let mut tensors: Vec<TensorRef<'_, T>> = Vec::new();
        for (((p, g), states), &step) in self
            .params
            .iter_mut()
            .zip(&self.grads)
            .zip(self.states.iter_mut())
            .zip(&self.steps)
        {
            let mut t = TensorRef::new(p, g, step);
            for s in states.iter_mut() {
                t = t.with_state(s);
            }
            tensors.push(t);
        }
        cfg.step(&mut tensors, &mut self.mu)
    }

    fn bits(&self) -> Vec<Option<u64>> {
        let all = self
            .params
            .iter()
            .chain(self.states.iter().flatten())
            .flatten()
            .map(|x| x.to_f64());
        all.chain(self.mu.iter().map(|&m| f64::from(m)))
            .map(|x| if x.is_nan() { None } else { Some(x.to_bits()) })
            .collect()
    }
}

/// Run `f` at every supported level and 1 and 2 threads, the lowest level (scalar; SSE2 on
/// x86-64, which has no scalar dispatch) with 1 thread first: the baseline.
fn each_setting(mut f: impl FnMut(SimdLevel, usize)) {
    let _guard = level_lock();
    for level in simd::supported_levels().into_iter().rev() {
        assert!(simd::set_level(level));
        for threads in [1, 2] {
            set_num_threads(threads).unwrap();
            f(level, threads);
        }
    }
    simd::set_level(simd::detected_level());
    set_num_threads(1).unwrap();
}

fn fuzz_optimizers<T: Real>(seed: u64) -> (u64, u64) {
    let mut g = Gen(seed);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..cases() {
        let cfg = Config::draw(&mut g);
        let original = Problem::<T>::draw(&mut g, &cfg);
        let mut baseline: Option<(bool, Vec<Option<u64>>)> = None;
        each_setting(|level, threads| {
            let mut p = original.clone();
            let result = p.run(&cfg);
            if result.is_err() {
                assert!(
                    p.bits() == original.bits(),
                    "case {case} {cfg:?}: refused at {level:?} but wrote"
                );
            }
            let got = (result.is_ok(), p.bits());
            match &baseline {
                None => baseline = Some(got),
                Some(want) => assert!(
                    *want == got,
                    "case {case} {} {cfg:?}: {level:?}/{threads} threads differs from the baseline",
                    T::NAME
                ),
            }
        });
        if baseline.is_some_and(|(ok, _)| ok) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    (accepted, refused)
}

#[test]
fn optimizers_agree_with_scalar_and_never_panic_f32() {
    let (ok, refused) = fuzz_optimizers::<f32>(1);
    eprintln!("fuzz optimizers f32: {ok} accepted, {refused} refused");
    assert!(
        ok > 0 && refused > 0,
        "the draw should produce both outcomes"
    );
}

#[test]
fn optimizers_agree_with_scalar_and_never_panic_f64() {
    let (ok, refused) = fuzz_optimizers::<f64>(2);
    eprintln!("fuzz optimizers f64: {ok} accepted, {refused} refused");
    assert!(
        ok > 0 && refused > 0,
        "the draw should produce both outcomes"
    );
}

fn nan_aware_bits(xs: impl IntoIterator<Item = f64>) -> Vec<Option<u64>> {
    xs.into_iter()
        .map(|x| if x.is_nan() { None } else { Some(x.to_bits()) })
        .collect()
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
        let mut baseline = None;
        each_setting(|level, threads| {
            let slices: Vec<&[f32]> = arrays.iter().map(Vec::as_slice).collect();
            let partials = nan_aware_bits(tensor_partials(&slices, norm, clamp));
            let mut scaled = arrays.clone();
            scale_each(scaled.iter_mut().map(Vec::as_mut_slice).collect(), &factors);
            let mut clamped = arrays.clone();
            let ok = clamp_all(
                clamped.iter_mut().map(Vec::as_mut_slice).collect(),
                clip_value,
            );
            if ok.is_err() {
                assert!(clamped == arrays || arrays.iter().flatten().any(|x| x.is_nan()));
            }
            let flat =
                |v: &Vec<Vec<f32>>| nan_aware_bits(v.iter().flatten().map(|&x| f64::from(x)));
            let got = (partials, flat(&scaled), ok.is_ok(), flat(&clamped));
            match &baseline {
                None => baseline = Some(got),
                Some(want) => assert!(
                    *want == got,
                    "clip case {case}: {level:?}/{threads} differs"
                ),
            }
        });
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
        let mut baseline = None;
        each_setting(|level, threads| {
            let (mut m64, mut v64) = (vec![0.5; channels], vec![0.5; channels]);
            let (mut m32, mut v32) = (vec![0.5; channels], vec![0.5; channels]);
            let r64 = batch_stats(&x, Layout::new(n, c, s), &mut m64, &mut v64).is_ok();
            let r32 = batch_stats(&x32, Layout::new(n, c, s), &mut m32, &mut v32).is_ok();
            if bad_len && c > 0 {
                assert!(!r64 && !r32 && m64.iter().all(|&m| m == 0.5), "case {case}");
            }
            let got = (
                r64,
                r32,
                nan_aware_bits(m64.into_iter().chain(v64).chain(m32).chain(v32)),
            );
            match &baseline {
                None => baseline = Some(got),
                Some(want) => assert!(
                    *want == got,
                    "stats case {case}: {level:?}/{threads} differs"
                ),
            }
        });
    }
}
