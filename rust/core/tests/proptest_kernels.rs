//! Property tests (proptest, with shrinking) for the kernels: every optimizer's `*_step`, the
//! gradient-clipping helpers and the batch-norm statistics.
//!
//! Strategies draw sizes (0, 1, odd, around the 8/16/32-lane vector widths, and now and then past
//! `ASSIST_MIN_ELEMENTS` / `PARALLEL_MIN_ELEMENTS` for the helper thread and the pool), values
//! (finite, NaN, ±inf, -0, subnormal, huge), hyperparameters (sensible, edge and out-of-range),
//! step counts (0 to `u64::MAX`), wrong state counts and length mismatches. Properties:
//!
//! - no panic;
//! - every SIMD level this machine supports, with 1 and 2 threads, gives the same `Ok`/`Err` and the
//!   same bits in every array (NaN-aware: any NaN matches any NaN) as the lowest level with one
//!   thread;
//! - an `Err` leaves every array exactly as it was, and a config whose `validate()` fails is an `Err`.
//!
//! `PROPTEST_CASES` overrides the case count of every property (default [`DEFAULT_CASES`]). Failures
//! are not persisted (`failure_persistence: None`), so a run never writes into the source tree;
//! proptest prints the shrunk failing input instead. Each run draws a fresh seed; the other
//! `PROPTEST_*` variables (`PROPTEST_RNG_SEED` to replay one) apply as usual. The seeded,
//! crate-free fuzz over the same kernels is `fuzz_kernels.rs`.

mod common;

use common::{
    clip_outputs, each_setting, first_disagreement, flat_bits, nan_aware_bits, splitmix64, Hypers,
    Kernel, Problem, HYPER_EDGES, KERNEL_COUNT,
};
use ferroptim_core::batchnorm::{batch_stats, Layout};
use ferroptim_core::*;
use proptest::prelude::*;
use proptest::sample::select;
use std::fmt::Debug;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 96;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Settings: every SIMD level x 1 and 2 threads, compared with the lowest level on one thread.

/// Run `f` at every supported level with 1 and 2 threads (under the shared level lock) and check
/// that every outcome equals the one at the lowest level with one thread.
fn agree_across_settings<R: PartialEq + Debug>(
    mut f: impl FnMut() -> R,
) -> Result<(), TestCaseError> {
    let runs = each_setting(|_, _| f());
    if let Some(run) = first_disagreement(&runs) {
        let base = &runs[0];
        return Err(TestCaseError::fail(format!(
            "{:?} with {} threads differs from {:?} with 1 thread: {}",
            run.level,
            run.threads,
            base.level,
            first_difference(
                &format!("{:?}", run.outcome),
                &format!("{:?}", base.outcome)
            )
        )));
    }
    Ok(())
}

/// Where two debug renderings first differ, with a little context (arrays can be 65k long).
fn first_difference(got: &str, want: &str) -> String {
    let at = got
        .bytes()
        .zip(want.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    // Debug output of numbers, bools and options is ASCII; `get` keeps any other text safe.
    let window = |s: &str| {
        let (start, end) = (at.saturating_sub(80), (at + 80).min(s.len()));
        s.get(start..end).unwrap_or(s).to_string()
    };
    format!(
        "at char {at}: got ...{}... want ...{}...",
        window(got),
        window(want)
    )
}

// ---------------------------------------------------------------------------------------------
// Value, size, array, hyperparameter and step strategies.

const SPECIAL_VALUES: [f64; 12] = [
    0.0,
    -0.0,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e-40,   // subnormal in f32
    -1e-310, // subnormal in f64
    5e-324,
    3e38,
    -3.4e38,
    1e300,
    f64::MAX,
];

/// One array value: mostly moderate, sometimes special.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -4.0f64..4.0,
        1 => select(SPECIAL_VALUES.to_vec()),
    ]
}

/// Array lengths: around the vector widths, any small length, and rarely the threaded paths.
fn size() -> impl Strategy<Value = usize> {
    const NEAR_LANES: [usize; 19] = [
        0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 129,
    ];
    prop_oneof![
        12 => select(NEAR_LANES.to_vec()),
        4 => 0usize..300,
        1 => select(vec![ASSIST_MIN_ELEMENTS + 3, PARALLEL_MIN_ELEMENTS + 5]),
    ]
}

/// Contents of one array: `head` is drawn (and shrunk) value by value; the rest of a longer array
/// comes from `seed`, with the same mix of moderate and special values, so large arrays stay cheap.
#[derive(Clone, Debug)]
struct ArraySpec {
    head: Vec<f64>,
    seed: u64,
}

impl ArraySpec {
    fn build<T: Real>(&self, len: usize) -> Vec<T> {
        let mut state = self.seed;
        (0..len)
            .map(|i| match self.head.get(i) {
                Some(&x) => T::from_f64(x),
                None => T::from_f64(seeded_value(&mut state)),
            })
            .collect()
    }
}

/// splitmix64 step mapped to the `value()` mix (one in 12 special).
fn seeded_value(state: &mut u64) -> f64 {
    let z = splitmix64(state);
    if z.is_multiple_of(12) {
        SPECIAL_VALUES[(z >> 8) as usize % SPECIAL_VALUES.len()]
    } else {
        ((z >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 8.0
    }
}

fn array() -> impl Strategy<Value = ArraySpec> {
    (prop::collection::vec(value(), 0..24), any::<u64>())
        .prop_map(|(head, seed)| ArraySpec { head, seed })
}

/// An array of the tensor's length, or (rarely) of another length: a mismatch to be refused.
fn array_near() -> impl Strategy<Value = (ArraySpec, Option<usize>)> {
    (array(), prop::option::weighted(0.03, size()))
}

/// A hyperparameter: usually `sensible`, sometimes an edge or out-of-range value.
fn hyper(sensible: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => Just(sensible),
        1 => select(HYPER_EDGES.to_vec()),
        1 => 0.0f64..1.0,
    ]
}

fn grad_clip() -> impl Strategy<Value = GradClip> {
    (
        prop_oneof![2 => Just(1.0), 1 => hyper(0.5)],
        prop::option::weighted(0.25, hyper(0.5)),
    )
        .prop_map(|(scale, clip_value)| GradClip { scale, clip_value })
}

fn step_count() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 1u64..20,
        1 => select(vec![0, 1_000_000, 1 << 40, u64::MAX]),
        1 => any::<u64>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Optimizers.

fn hypers() -> impl Strategy<Value = Hypers> {
    (
        hyper(0.01),
        hyper(0.9),
        hyper(0.999),
        hyper(1e-8),
        prop_oneof![Just(0.0), hyper(0.01)],
        prop_oneof![Just(0.0), hyper(0.9)],
        any::<[bool; 3]>(),
        grad_clip(),
    )
        .prop_map(
            |(lr, a, b, eps, weight_decay, momentum, flags, grad_clip)| Hypers {
                lr,
                a,
                b,
                eps,
                weight_decay,
                momentum,
                flags,
                grad_clip,
            },
        )
}

fn kernel() -> impl Strategy<Value = Kernel> {
    (0..KERNEL_COUNT, hypers()).prop_map(|(which, h)| Kernel::new(which, &h))
}

/// One tensor's draw: length, parameter, gradient and up to four state arrays (each maybe of a
/// wrong length), step count and NAdam mu product.
#[derive(Clone, Debug)]
struct TensorSpec {
    len: usize,
    param: ArraySpec,
    grad: (ArraySpec, Option<usize>),
    states: Vec<(ArraySpec, Option<usize>)>,
    step: u64,
    mu_product: f64,
}

fn tensor_spec() -> impl Strategy<Value = TensorSpec> {
    (
        size(),
        array(),
        array_near(),
        prop::collection::vec(array_near(), 4),
        step_count(),
        prop_oneof![3 => Just(1.0), 1 => value()],
    )
        .prop_map(|(len, param, grad, states, step, mu_product)| TensorSpec {
            len,
            param,
            grad,
            states,
            step,
            mu_product,
        })
}

/// 0 to 4 tensors and (rarely) a state count off by 1 to 4 (mod 5).
fn tensor_specs() -> impl Strategy<Value = (Vec<TensorSpec>, Option<usize>)> {
    (
        prop::collection::vec(tensor_spec(), 0..=4),
        prop::option::weighted(0.04, 1usize..5),
    )
}

/// The arrays of `specs`, each tensor with `n_state` state arrays.
fn build_problem<T: Real>(specs: &[TensorSpec], n_state: usize) -> Problem<T> {
    let near = |(a, other): &(ArraySpec, Option<usize>), len: usize| a.build(other.unwrap_or(len));
    Problem {
        params: specs.iter().map(|s| s.param.build(s.len)).collect(),
        grads: specs.iter().map(|s| near(&s.grad, s.len)).collect(),
        states: specs
            .iter()
            .map(|s| s.states[..n_state].iter().map(|a| near(a, s.len)).collect())
            .collect(),
        steps: specs.iter().map(|s| s.step).collect(),
        mu: specs.iter().map(|s| s.mu_product as f32).collect(),
    }
}

fn check_optimizer<T: Real>(
    kernel: &Kernel,
    (specs, wrong_state): &(Vec<TensorSpec>, Option<usize>),
) -> Result<(), TestCaseError> {
    let n_state = wrong_state.map_or(kernel.state_count(), |d| (kernel.state_count() + d) % 5);
    let original = build_problem::<T>(specs, n_state);
    let before = original.bits();
    let invalid = kernel.validate().is_err();
    let mut unchanged_on_err = true;
    let mut accepted_invalid = false;
    agree_across_settings(|| {
        let mut p = original.clone();
        let result = p.run(kernel);
        let after = p.bits();
        unchanged_on_err &= result.is_ok() || after == before;
        accepted_invalid |= invalid && result.is_ok();
        (result.is_ok(), after)
    })?;
    prop_assert!(unchanged_on_err, "{} refused but wrote", T::NAME);
    prop_assert!(
        !accepted_invalid,
        "{}: validate() failed but the step ran",
        T::NAME
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn optimizers_agree_across_levels_f32(kernel in kernel(), specs in tensor_specs()) {
        check_optimizer::<f32>(&kernel, &specs)?;
    }

    #[test]
    fn optimizers_agree_across_levels_f64(kernel in kernel(), specs in tensor_specs()) {
        check_optimizer::<f64>(&kernel, &specs)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping helpers.

/// Norm orders: valid ones (1, 2, 3, 0.5, inf, tiny) and invalid ones (0, negative, NaN).
fn norm_p() -> impl Strategy<Value = f64> {
    select(vec![
        1.0,
        2.0,
        3.0,
        0.5,
        f64::INFINITY,
        1e-300,
        0.0,
        -1.0,
        f64::NAN,
    ])
}

fn check_clipping<T: Real>(
    specs: &[(usize, ArraySpec)],
    p: f64,
    clamp: Option<f64>,
    factors: &[f64],
    clip_value: f64,
) -> Result<(), TestCaseError> {
    let arrays: Vec<Vec<T>> = specs.iter().map(|(n, a)| a.build(*n)).collect();
    let norm = NormType::from_p(p).ok();
    let factors = &factors[..arrays.len()];
    let before = flat_bits(&arrays);
    let valid_clip = clip_value >= 0.0 && clip_value.is_finite();
    let (mut clamp_err_wrote, mut clamp_outcome_wrong) = (false, false);
    agree_across_settings(|| {
        let out = clip_outputs(&arrays, norm, clamp, factors, clip_value);
        clamp_err_wrote |= !out.clamp_ok && out.clamped != before;
        clamp_outcome_wrong |= out.clamp_ok != valid_clip;
        out
    })?;
    prop_assert!(!clamp_err_wrote, "clamp_all refused {clip_value} but wrote");
    prop_assert!(
        !clamp_outcome_wrong,
        "clamp_all({clip_value}): wrong Ok/Err"
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn clipping_helpers_agree_across_levels(
        specs in prop::collection::vec((size(), array()), 0..=4),
        p in norm_p(),
        clamp in prop::option::weighted(0.3, hyper(0.5)),
        factors in prop::collection::vec(hyper(0.5), 4),
        clip_value in hyper(0.5),
    ) {
        check_clipping::<f32>(&specs, p, clamp, &factors, clip_value)?;
        check_clipping::<f64>(&specs, p, clamp, &factors, clip_value)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Batch-norm statistics.

fn check_batch_stats<T: Real>(
    (n, c, s): (usize, usize, usize),
    x: &ArraySpec,
    x_extra: usize,
    stats_extra: usize,
) -> Result<(), TestCaseError> {
    let x: Vec<T> = x.build(n * c * s + x_extra);
    let channels = c + stats_extra;
    let mut refused_but_wrote = false;
    let mut outcomes = Vec::new();
    agree_across_settings(|| {
        let (mut mean, mut var) = (vec![0.5; channels], vec![0.5; channels]);
        let ok = batch_stats(&x, Layout::new(n, c, s), &mut mean, &mut var).is_ok();
        refused_but_wrote |= !ok
            && mean
                .iter()
                .chain(&var)
                .any(|&m| m.to_bits() != 0.5f64.to_bits());
        outcomes.push(ok);
        (ok, nan_aware_bits(mean.into_iter().chain(var)))
    })?;
    prop_assert!(!refused_but_wrote, "batch_stats refused but wrote");
    if x_extra > 0 || (stats_extra > 0 && c > 0) {
        prop_assert!(
            outcomes.iter().all(|ok| !ok),
            "a length mismatch was accepted"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn batch_stats_agree_across_levels(
        n in 0usize..6,
        c in 0usize..5,
        s in prop_oneof![8 => select(vec![0usize, 1, 2, 3, 7, 8, 16, 17, 33]), 1 => Just(4099usize)],
        x in array(),
        x_extra in prop_oneof![9 => Just(0usize), 1 => 1usize..3],
        stats_extra in prop_oneof![9 => Just(0usize), 1 => 1usize..3],
    ) {
        check_batch_stats::<f32>((n, c, s), &x, x_extra, stats_extra)?;
        check_batch_stats::<f64>((n, c, s), &x, x_extra, stats_extra)?;
    }
}
