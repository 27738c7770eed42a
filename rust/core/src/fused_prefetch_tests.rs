//! The fused loop's software prefetch (taken by steps that read at least
//! [`super::PREFETCH_MIN_BYTES`]) changes no bit: every optimizer with all its state lists on,
//! float32, float64 and bfloat16 state, sizes around the block and the prefetch distance, several
//! steps, every SIMD level and 1 and 2 threads, forced on against forced off.

use crate::lowp::{self, Bf16TensorRef, Rounding};
use crate::optim::{HyperValue, Optimizer};
use crate::real::Real;
use crate::tensor::TensorRef;
use crate::*;
use std::cell::Cell;

thread_local! {
    /// `Some(on)` forces the prefetch decision of steps called from this thread.
    static FORCED: Cell<Option<bool>> = const { Cell::new(None) };
}

/// The forced prefetch decision of this thread, if any.
pub(super) fn forced() -> Option<bool> {
    FORCED.with(Cell::get)
}

/// Around the float32 block (256) and distance (512), and the float64 ones (128, 256), plus a
/// size cut into several parallel pieces.
const SIZES: [usize; 8] = [1, 127, 256, 257, 511, 513, 1000, 70_001];
const STEPS: u64 = 3;

/// Deterministic values in `[-1, 1)`.
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `cfg` with every state list on and some weight decay.
fn all_states<C: Optimizer>() -> C {
    let mut cfg = C::default();
    cfg.set("momentum", HyperValue::Real(0.9));
    cfg.set("amsgrad", HyperValue::Flag(true));
    cfg.set("centered", HyperValue::Flag(true));
    cfg.set("weight_decay", HyperValue::Real(0.01));
    cfg
}

/// Bits of every parameter, state and scalar after `STEPS` float steps of `cfg` on `T`.
fn float_run<C: Optimizer, T: Real + From<f32>>(cfg: &C) -> Vec<u64> {
    let n_state = cfg.state_count();
    let mut params: Vec<Vec<T>> = SIZES.iter().map(|&n| widen(values(n as u64, n))).collect();
    let mut states: Vec<Vec<Vec<T>>> = SIZES
        .iter()
        .map(|&n| vec![vec![T::ZERO; n]; n_state])
        .collect();
    let mut scalars = vec![1.0f32; if C::SCALARS.is_some() { SIZES.len() } else { 0 }];
    for t in 1..=STEPS {
        let grads: Vec<Vec<T>> = SIZES
            .iter()
            .map(|&n| widen(values(t * 1000 + n as u64, n)))
            .collect();
        let mut tensors: Vec<TensorRef<'_, T>> = params
            .iter_mut()
            .zip(&grads)
            .zip(states.iter_mut())
            .map(|((p, g), s)| {
                s.iter_mut()
                    .fold(TensorRef::new(p, g, t), |acc, s| acc.with_state(s))
            })
            .collect();
        cfg.step(&mut tensors, &mut scalars).unwrap();
    }
    let mut bits: Vec<u64> = params
        .iter()
        .flatten()
        .map(|x| x.to_f64().to_bits())
        .collect();
    bits.extend(
        states
            .iter()
            .flatten()
            .flatten()
            .map(|x| x.to_f64().to_bits()),
    );
    bits.extend(scalars.iter().map(|x| u64::from(x.to_bits())));
    bits
}

/// Bits after `STEPS` steps of `cfg` on bfloat16 state with stochastic rounding.
fn bf16_run<C: Optimizer>(cfg: &C) -> Vec<u64> {
    let n_state = cfg.state_count();
    let mut params: Vec<Vec<f32>> = SIZES.iter().map(|&n| values(n as u64, n)).collect();
    let mut states: Vec<Vec<Vec<u16>>> = SIZES
        .iter()
        .map(|&n| vec![vec![0u16; n]; n_state])
        .collect();
    let mut scalars = vec![1.0f32; if C::SCALARS.is_some() { SIZES.len() } else { 0 }];
    for t in 1..=STEPS {
        let grads: Vec<Vec<f32>> = SIZES
            .iter()
            .map(|&n| values(t * 1000 + n as u64, n))
            .collect();
        let mut tensors: Vec<Bf16TensorRef<'_>> = params
            .iter_mut()
            .zip(&grads)
            .zip(states.iter_mut())
            .enumerate()
            .map(|(i, ((p, g), s))| {
                let r = Rounding::Stochastic {
                    seed: 9,
                    stream: i as u64,
                };
                s.iter_mut()
                    .fold(Bf16TensorRef::new(p, g, t, r), |acc, s| acc.with_state(s))
            })
            .collect();
        lowp::step_bf16(cfg, &mut tensors, &mut scalars).unwrap();
    }
    let mut bits: Vec<u64> = params
        .iter()
        .flatten()
        .map(|x| u64::from(x.to_bits()))
        .collect();
    bits.extend(states.iter().flatten().flatten().map(|&b| u64::from(b)));
    bits
}

fn widen<T: From<f32>>(v: Vec<f32>) -> Vec<T> {
    v.into_iter().map(T::from).collect()
}

/// `run` with the prefetch forced on equals it forced off, at every level and thread count.
fn check(name: &str, run: impl Fn() -> Vec<u64>) {
    for level in crate::simd::supported_levels() {
        assert!(crate::simd::set_level(level));
        for threads in [1, 2] {
            set_num_threads(threads).unwrap();
            FORCED.with(|f| f.set(Some(false)));
            let without = run();
            FORCED.with(|f| f.set(Some(true)));
            let with = run();
            FORCED.with(|f| f.set(None));
            assert!(
                with == without,
                "{name}: {level:?}, {threads} threads: prefetch changed bits"
            );
        }
    }
    crate::simd::set_level(crate::simd::detected_level());
}

fn check_optimizer<C: Optimizer>(name: &str) {
    let cfg = all_states::<C>();
    check(&format!("{name} float32"), || float_run::<C, f32>(&cfg));
    check(&format!("{name} float64"), || float_run::<C, f64>(&cfg));
    check(&format!("{name} bfloat16"), || bf16_run::<C>(&cfg));
}

macro_rules! every_optimizer {
    ($($kernel:ident: $cfg:ident,)*) => {
        #[test]
        fn prefetch_changes_no_bit_of_any_optimizer() {
            $( check_optimizer::<$cfg>(stringify!($kernel)); )*
        }
    };
}

crate::for_each_optimizer!(every_optimizer);
