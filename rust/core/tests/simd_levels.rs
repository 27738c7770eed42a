//! Every optimizer gives identical bits at every SIMD level and thread count, for f32 and f64,
//! over several steps, for parameters and state alike.

mod common;

use common::{at_each_level, sizes, Rng};
use ferroptim_core::*;

/// One optimizer step over a list of tensors.
type StepFn<'f, T> = &'f dyn Fn(&mut [TensorRef<'_, T>]) -> Result<(), Error>;

/// Run `steps` steps of an optimizer with `n_state` state arrays on fresh copies of the same data
/// and return every array afterwards.
fn run<T: Real + From<f32>>(
    n_state: usize,
    n: usize,
    steps: usize,
    state_init: f32,
    step_fn: StepFn<'_, T>,
) -> Vec<Vec<T>> {
    let mut rng = Rng::new(n as u64 + 7);
    let mut param: Vec<T> = rng.vec(n);
    let mut state: Vec<Vec<T>> = (0..n_state).map(|_| vec![T::from(state_init); n]).collect();
    for t in 1..=steps {
        let grad: Vec<T> = rng.vec(n);
        let mut tensor = TensorRef::new(&mut param, &grad, t as u64);
        for s in state.iter_mut() {
            tensor = tensor.with_state(s);
        }
        step_fn(&mut [tensor]).unwrap();
    }
    let mut out = vec![param];
    out.extend(state);
    out
}

fn check_all_levels<T: Real + From<f32> + PartialEq + std::fmt::Debug>(
    name: &str,
    n_state: usize,
    state_init: f32,
    step_fn: StepFn<'_, T>,
) {
    for n in sizes() {
        let mut baseline: Option<Vec<Vec<T>>> = None;
        at_each_level(|level| {
            for threads in [1, 2] {
                set_num_threads(threads).unwrap();
                let got = run::<T>(n_state, n, 4, state_init, step_fn);
                match &baseline {
                    None => baseline = Some(got),
                    Some(b) => assert!(
                        b.iter().zip(&got).all(|(x, y)| x
                            .iter()
                            .zip(y)
                            .all(|(a, c)| a.to_f64().to_bits() == c.to_f64().to_bits())),
                        "{name} {} n={n} level={level:?} threads={threads} differs",
                        T::NAME
                    ),
                }
            }
        });
    }
}

macro_rules! level_test {
    ($test:ident, $name:literal, $n_state:expr, $init:expr, $call:expr) => {
        #[test]
        fn $test() {
            check_all_levels::<f32>($name, $n_state, $init, &|t| $call(t));
            check_all_levels::<f64>($name, $n_state, $init, &|t| $call(t));
        }
    };
}

level_test!(sgd_plain, "sgd", 0, 0.0, |t| sgd_step(
    t,
    &SgdConfig {
        lr: 0.1,
        weight_decay: 0.01,
        maximize: true,
        ..Default::default()
    }
));
level_test!(sgd_nesterov, "sgd nesterov", 1, 0.0, |t| sgd_step(
    t,
    &SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        ..Default::default()
    }
));
level_test!(adagrad, "adagrad", 1, 0.1, |t| adagrad_step(
    t,
    &AdagradConfig {
        lr_decay: 0.01,
        weight_decay: 0.1,
        ..Default::default()
    }
));
level_test!(adadelta, "adadelta", 2, 0.0, |t| adadelta_step(
    t,
    &AdadeltaConfig {
        weight_decay: 0.1,
        ..Default::default()
    }
));
level_test!(rmsprop, "rmsprop centered momentum", 3, 0.0, |t| {
    rmsprop_step(
        t,
        &RmspropConfig {
            momentum: 0.9,
            centered: true,
            weight_decay: 0.1,
            ..Default::default()
        },
    )
});
level_test!(adam, "adam", 2, 0.0, |t| adam_step(
    t,
    &AdamConfig {
        weight_decay: 0.1,
        decoupled_weight_decay: true,
        ..Default::default()
    }
));
level_test!(amsgrad, "amsgrad", 3, 0.0, |t| adam_step(
    t,
    &AdamConfig {
        amsgrad: true,
        maximize: true,
        weight_decay: 0.1,
        ..Default::default()
    }
));
level_test!(adamax, "adamax", 2, 0.0, |t| adamax_step(
    t,
    &AdamaxConfig::default()
));
level_test!(radam, "radam", 2, 0.0, |t| radam_step(
    t,
    &RadamConfig::default()
));
level_test!(lion, "lion", 1, 0.0, |t| lion_step(
    t,
    &LionConfig {
        weight_decay: 0.1,
        ..Default::default()
    }
));
level_test!(nadam, "nadam", 2, 0.0, |t: &mut [TensorRef<'_, _>]| {
    let mut mu = vec![1.0f32; t.len()];
    nadam_step(t, &mut mu, &NadamConfig::default())
});
