//! The kernels against plain scalar Rust written from the formulas (no shared code), and the
//! all-or-nothing error behaviour.

mod common;

use common::{at_each_level, Rng};
use ferroptim_core::*;

/// Adam written out element by element, in torch's order of operations.
fn adam_scalar(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], t: u64, c: &AdamConfig) {
    let bc1 = 1.0 - c.beta1.powf(t as f64);
    let bc2 = 1.0 - c.beta2.powf(t as f64);
    for i in 0..p.len() {
        let gi = g[i] + c.weight_decay * p[i];
        m[i] += (1.0 - c.beta1) * (gi - m[i]);
        v[i] = v[i] * c.beta2 + (1.0 - c.beta2) * gi * gi;
        let denom = v[i].sqrt() / bc2.sqrt() + c.eps;
        p[i] -= (c.lr / bc1) * (m[i] / denom);
    }
}

#[test]
fn adam_matches_scalar_formula() {
    let cfg = AdamConfig {
        weight_decay: 0.01,
        ..Default::default()
    };
    at_each_level(|_| {
        let n = 1001;
        let mut rng = Rng::new(3);
        let mut p: Vec<f64> = rng.vec(n);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let (mut p2, mut m2, mut v2) = (p.clone(), m.clone(), v.clone());
        for t in 1..=10 {
            let g: Vec<f64> = rng.vec(n);
            let tensor = TensorRef::new(&mut p, &g, t)
                .with_state(&mut m)
                .with_state(&mut v);
            adam_step(&mut [tensor], &cfg).unwrap();
            adam_scalar(&mut p2, &g, &mut m2, &mut v2, t, &cfg);
        }
        for (a, b) in p.iter().zip(&p2) {
            assert!((a - b).abs() <= 1e-14 * b.abs().max(1e-3), "{a} vs {b}");
        }
    });
}

#[test]
fn sgd_momentum_matches_scalar_formula() {
    let cfg = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        dampening: 0.1,
        ..Default::default()
    };
    let n = 77;
    let mut rng = Rng::new(5);
    let mut p: Vec<f32> = rng.vec(n);
    let mut buf = vec![0.0f32; n];
    let (mut p2, mut buf2) = (p.clone(), buf.clone());
    for t in 1..=6u64 {
        let g: Vec<f32> = rng.vec(n);
        sgd_momentum_scalar(&mut p2, &g, &mut buf2, t, &cfg);
        let tensor = TensorRef::new(&mut p, &g, t).with_state(&mut buf);
        sgd_step(&mut [tensor], &cfg).unwrap();
    }
    assert_eq!(p, p2);
    assert_eq!(buf, buf2);
}

fn sgd_momentum_scalar(p: &mut [f32], g: &[f32], buf: &mut [f32], t: u64, c: &SgdConfig) {
    let (mom, damp, lr) = (c.momentum as f32, (1.0 - c.dampening) as f32, c.lr as f32);
    for i in 0..p.len() {
        buf[i] = if t == 1 {
            g[i]
        } else {
            buf[i] * mom + damp * g[i]
        };
        p[i] -= lr * buf[i];
    }
}

#[test]
fn errors_leave_everything_unchanged() {
    let mut rng = Rng::new(9);
    let mut p1: Vec<f32> = rng.vec(10);
    let mut p2: Vec<f32> = rng.vec(10);
    let g1: Vec<f32> = rng.vec(10);
    let g2: Vec<f32> = rng.vec(9); // wrong length, in the last tensor
    let (mut m1, mut v1, mut m2, mut v2) = (
        vec![0.5f32; 10],
        vec![0.5; 10],
        vec![0.5; 10],
        vec![0.5; 10],
    );
    let before = (p1.clone(), p2.clone());
    let err = {
        let t1 = TensorRef::new(&mut p1, &g1, 1)
            .with_state(&mut m1)
            .with_state(&mut v1);
        let t2 = TensorRef::new(&mut p2, &g2, 1)
            .with_state(&mut m2)
            .with_state(&mut v2);
        adam_step(&mut [t1, t2], &AdamConfig::default()).unwrap_err()
    };
    assert_eq!(
        err,
        Error::LengthMismatch {
            arg: "grads",
            index: 1,
            len: 9,
            expected: 10
        }
    );
    assert_eq!((p1, p2), before);
    assert!(m1
        .iter()
        .chain(&v1)
        .chain(&m2)
        .chain(&v2)
        .all(|&x| x == 0.5));
}

#[test]
fn bad_hyperparameters_and_state_counts_are_refused() {
    let mut p = vec![1.0f64; 4];
    let g = vec![1.0f64; 4];
    let mut m = vec![0.0f64; 4];
    let bad = AdamConfig {
        beta1: 1.0,
        ..Default::default()
    };
    let t = TensorRef::new(&mut p, &g, 1).with_state(&mut m);
    let err = adam_step(&mut [t], &bad).unwrap_err();
    assert!(
        matches!(err, Error::InvalidHyperparameter { name: "beta1", .. }),
        "{err}"
    );
    let t = TensorRef::new(&mut p, &g, 1).with_state(&mut m);
    let err = adam_step(&mut [t], &AdamConfig::default()).unwrap_err();
    assert_eq!(
        err,
        Error::StateCount {
            index: 0,
            got: 1,
            expected: 2
        }
    );
    let t = TensorRef::new(&mut p, &g, 0);
    assert_eq!(
        sgd_step(&mut [t], &SgdConfig::default()).unwrap_err(),
        Error::ZeroStep { index: 0 }
    );
    let nesterov = SgdConfig {
        nesterov: true,
        ..Default::default()
    };
    assert!(matches!(
        nesterov.validate(),
        Err(Error::InvalidCombination(_))
    ));
    let nan_lr = SgdConfig {
        lr: f64::NAN,
        ..Default::default()
    };
    assert!(nan_lr.validate().is_err());
    assert_eq!(p, vec![1.0; 4]);
}

#[test]
fn roofline_moves_data_without_arithmetic() {
    let mut p = vec![1.0f32, 2.0];
    let g = vec![0.0f32, 0.0];
    let mut s = vec![5.0f32, 6.0];
    let t = TensorRef::new(&mut p, &g, 1).with_state(&mut s);
    roofline::roofline_step(&mut [t], 1).unwrap();
    assert_eq!(p, vec![5.0, 6.0]);
    assert_eq!(s, vec![1.0, 2.0]); // p xor 0 == p
}
