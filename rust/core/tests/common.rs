//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ferroptim_core::clip::{clamp_all, scale_each, tensor_partials};
use ferroptim_core::simd::{self, SimdLevel};
use ferroptim_core::*;
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

// ---------------------------------------------------------------------------------------------
// Shared by the kernel fuzz (`fuzz_kernels.rs`) and the property tests (`proptest_kernels.rs`):
// NaN-aware bits, the optimizer dispatch, one optimizer call's arrays, the clipping outputs and
// the "every level x 1 and 2 threads" runner.

/// Bit patterns of an output, NaN-aware (`None` for NaN).
pub type Bits = Vec<Option<u64>>;

/// NaN-aware bit patterns: every NaN compares equal to every other NaN, nothing else is loosened.
pub fn nan_aware_bits(xs: impl IntoIterator<Item = f64>) -> Bits {
    xs.into_iter()
        .map(|x| if x.is_nan() { None } else { Some(x.to_bits()) })
        .collect()
}

/// NaN-aware bits of a set of arrays, one after the other.
pub fn flat_bits<T: Real>(arrays: &[Vec<T>]) -> Bits {
    nan_aware_bits(arrays.iter().flatten().map(|x| x.to_f64()))
}

/// One splitmix64 step: good bits from any seed.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Edge and out-of-range hyperparameter values.
pub const HYPER_EDGES: [f64; 16] = [
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

/// Drawn hyperparameters; `a` and `b` are each optimizer's first and second coefficient (betas,
/// rho, alpha, lr_decay, dampening), `momentum` is also NAdam's momentum decay.
#[derive(Clone, Copy, Debug)]
pub struct Hypers {
    pub lr: f64,
    pub a: f64,
    pub b: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    /// Option flags: nesterov / centered / decoupled weight decay, then amsgrad (or SGD's zero
    /// dampening), then maximize.
    pub flags: [bool; 3],
    pub grad_clip: GradClip,
}

/// How many optimizers [`Kernel::new`] chooses from.
pub const KERNEL_COUNT: usize = 9;

/// One optimizer with its configuration.
#[derive(Clone, Debug)]
pub enum Kernel {
    Sgd(SgdConfig),
    Adagrad(AdagradConfig),
    Adadelta(AdadeltaConfig),
    Rmsprop(RmspropConfig),
    Adam(AdamConfig),
    Adamax(AdamaxConfig),
    Nadam(NadamConfig),
    Radam(RadamConfig),
    Lion(LionConfig),
}

impl Kernel {
    /// Optimizer number `which` (0 to [`KERNEL_COUNT`] - 1: SGD, Adagrad, Adadelta, RMSprop, Adam,
    /// Adamax, NAdam, RAdam, Lion) configured from `h`.
    pub fn new(which: usize, h: &Hypers) -> Self {
        let Hypers {
            lr,
            a,
            b,
            eps,
            weight_decay,
            momentum,
            flags: [f0, f1, maximize],
            grad_clip,
        } = *h;
        match which {
            0 => Kernel::Sgd(SgdConfig {
                lr,
                momentum,
                dampening: if f1 { 0.0 } else { a },
                weight_decay,
                nesterov: f0,
                maximize,
                grad_clip,
            }),
            1 => Kernel::Adagrad(AdagradConfig {
                lr,
                lr_decay: a,
                weight_decay,
                eps,
                maximize,
                grad_clip,
            }),
            2 => Kernel::Adadelta(AdadeltaConfig {
                lr,
                rho: a,
                eps,
                weight_decay,
                maximize,
                grad_clip,
            }),
            3 => Kernel::Rmsprop(RmspropConfig {
                lr,
                alpha: a,
                eps,
                weight_decay,
                momentum,
                centered: f0,
                maximize,
                grad_clip,
            }),
            4 => Kernel::Adam(AdamConfig {
                lr,
                beta1: a,
                beta2: b,
                eps,
                weight_decay,
                amsgrad: f1,
                maximize,
                decoupled_weight_decay: f0,
                grad_clip,
            }),
            5 => Kernel::Adamax(AdamaxConfig {
                lr,
                beta1: a,
                beta2: b,
                eps,
                weight_decay,
                maximize,
                grad_clip,
            }),
            6 => Kernel::Nadam(NadamConfig {
                lr,
                beta1: a,
                beta2: b,
                eps,
                weight_decay,
                momentum_decay: momentum,
                maximize,
                decoupled_weight_decay: f0,
                grad_clip,
            }),
            7 => Kernel::Radam(RadamConfig {
                lr,
                beta1: a,
                beta2: b,
                eps,
                weight_decay,
                maximize,
                decoupled_weight_decay: f0,
                grad_clip,
            }),
            _ => Kernel::Lion(LionConfig {
                lr,
                beta1: a,
                beta2: b,
                weight_decay,
                maximize,
                grad_clip,
            }),
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Kernel::Sgd(c) => c.validate(),
            Kernel::Adagrad(c) => c.validate(),
            Kernel::Adadelta(c) => c.validate(),
            Kernel::Rmsprop(c) => c.validate(),
            Kernel::Adam(c) => c.validate(),
            Kernel::Adamax(c) => c.validate(),
            Kernel::Nadam(c) => c.validate(),
            Kernel::Radam(c) => c.validate(),
            Kernel::Lion(c) => c.validate(),
        }
    }

    /// State arrays per tensor for this configuration.
    pub fn state_count(&self) -> usize {
        match self {
            Kernel::Sgd(c) => c.state_count(),
            Kernel::Rmsprop(c) => c.state_count(),
            Kernel::Adam(c) => c.state_count(),
            Kernel::Adagrad(_) | Kernel::Lion(_) => 1,
            Kernel::Adadelta(_) | Kernel::Adamax(_) | Kernel::Nadam(_) | Kernel::Radam(_) => 2,
        }
    }

    /// Call this optimizer's `*_step` (`mu` is read by NAdam only).
    pub fn step<T: Real>(&self, t: &mut [TensorRef<'_, T>], mu: &mut [f32]) -> Result<(), Error> {
        match self {
            Kernel::Sgd(c) => sgd_step(t, c),
            Kernel::Adagrad(c) => adagrad_step(t, c),
            Kernel::Adadelta(c) => adadelta_step(t, c),
            Kernel::Rmsprop(c) => rmsprop_step(t, c),
            Kernel::Adam(c) => adam_step(t, c),
            Kernel::Adamax(c) => adamax_step(t, c),
            Kernel::Nadam(c) => nadam_step(t, mu, c),
            Kernel::Radam(c) => radam_step(t, c),
            Kernel::Lion(c) => lion_step(t, c),
        }
    }
}

/// Everything one optimizer call reads and writes (the test files build it from their draws).
#[derive(Clone)]
pub struct Problem<T> {
    pub params: Vec<Vec<T>>,
    pub grads: Vec<Vec<T>>,
    pub states: Vec<Vec<Vec<T>>>,
    pub steps: Vec<u64>,
    pub mu: Vec<f32>,
}

impl<T: Real> Problem<T> {
    /// One `kernel` step over every tensor.
    pub fn run(&mut self, kernel: &Kernel) -> Result<(), Error> {
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
        kernel.step(&mut tensors, &mut self.mu)
    }

    /// NaN-aware bits of every array the step may write (parameters, states, mu products).
    pub fn bits(&self) -> Bits {
        let written = self
            .params
            .iter()
            .chain(self.states.iter().flatten())
            .flatten()
            .map(|x| x.to_f64());
        nan_aware_bits(written.chain(self.mu.iter().map(|&m| f64::from(m))))
    }
}

/// What the clipping helpers produce from one set of arrays.
#[derive(Debug, PartialEq)]
pub struct ClipOutputs {
    /// `tensor_partials` (empty when there is no valid norm order).
    pub partials: Bits,
    /// The arrays after `scale_each`.
    pub scaled: Bits,
    /// Whether `clamp_all` accepted `clip_value`.
    pub clamp_ok: bool,
    /// The arrays after `clamp_all`.
    pub clamped: Bits,
}

/// Run `tensor_partials`, `scale_each` and `clamp_all` on copies of `arrays`.
pub fn clip_outputs<T: Real>(
    arrays: &[Vec<T>],
    norm: Option<NormType>,
    clamp: Option<f64>,
    factors: &[f64],
    clip_value: f64,
) -> ClipOutputs {
    let slices: Vec<&[T]> = arrays.iter().map(Vec::as_slice).collect();
    let partials = norm.map_or_else(Vec::new, |n| {
        nan_aware_bits(tensor_partials(&slices, n, clamp))
    });
    let mut scaled = arrays.to_vec();
    scale_each(scaled.iter_mut().map(Vec::as_mut_slice).collect(), factors);
    let mut clamped = arrays.to_vec();
    let clamp_ok = clamp_all(
        clamped.iter_mut().map(Vec::as_mut_slice).collect(),
        clip_value,
    )
    .is_ok();
    ClipOutputs {
        partials,
        scaled: flat_bits(&scaled),
        clamp_ok,
        clamped: flat_bits(&clamped),
    }
}

/// The outcome of one run at one setting.
pub struct Run<R> {
    pub level: SimdLevel,
    pub threads: usize,
    pub outcome: R,
}

/// Run `f` at every supported SIMD level with 1 and 2 threads (under the level lock), the lowest
/// level (scalar; SSE2 on x86-64, which has no scalar dispatch) with one thread first: the
/// baseline. Restores the detected level and one thread afterwards.
pub fn each_setting<R>(mut f: impl FnMut(SimdLevel, usize) -> R) -> Vec<Run<R>> {
    let _guard = level_lock();
    let mut runs = Vec::new();
    for level in simd::supported_levels().into_iter().rev() {
        assert!(simd::set_level(level));
        for threads in [1, 2] {
            set_num_threads(threads).unwrap();
            let outcome = f(level, threads);
            runs.push(Run {
                level,
                threads,
                outcome,
            });
        }
    }
    simd::set_level(simd::detected_level());
    set_num_threads(1).unwrap();
    runs
}

/// The first run whose outcome differs from the baseline (the first run), if any.
pub fn first_disagreement<R: PartialEq>(runs: &[Run<R>]) -> Option<&Run<R>> {
    let (baseline, rest) = runs.split_first()?;
    rest.iter().find(|run| run.outcome != baseline.outcome)
}
