//! Batch-norm kernels against naive f64 formulas; identical bits at every SIMD level and with 1 or
//! 2 threads; numerical stability; errors that write nothing.

use super::*;
use crate::real::Real;
use crate::simd::{self, SimdLevel};
use std::sync::{Mutex, MutexGuard};

/// Tests that switch the global SIMD level or thread count take this lock.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// xorshift64*: uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vec<T: Real>(&mut self, n: usize, offset: f64, scale: f64) -> Vec<T> {
        (0..n)
            .map(|_| T::from_f64(offset + scale * self.next()))
            .collect()
    }
}

/// Layouts covering both plans (rows: s < 512, runs: s >= 512), one channel, tiles wider than 256
/// columns, several row blocks and row groups (with a short last block), runs cut into segments,
/// and sizes above the pool threshold. The last one has tasks of five 128-row blocks (so a sweep
/// block of 512 rows, a power of two, then one of 128) and a last task of 421 rows (one short
/// sweep block), with an odd channel count.
const LAYOUTS: [(usize, usize, usize); 16] = [
    (2, 1, 1),
    (2, 3, 1),
    (7, 5, 1),
    (1, 4, 3),
    (3, 4, 5),
    (2, 3, 700),
    (4, 3, 511),
    (1100, 64, 1),
    (200, 300, 1),
    (160, 50, 9),
    (300, 7, 40),
    (3, 5, 3136),
    (2, 2, 40_000),
    (70_000, 1, 1),
    (33 * 128 + 5, 256, 1),
    (88 * 128 + 37, 255, 1),
];

fn naive_stats<T: Real>(x: &[T], l: Layout) -> (Vec<f64>, Vec<f64>) {
    let values = |k: usize| {
        (0..l.n).flat_map(move |i| (0..l.s).map(move |j| x[(i * l.c + k) * l.s + j].to_f64()))
    };
    let count = l.count() as f64;
    let mean: Vec<f64> = (0..l.c).map(|k| values(k).sum::<f64>() / count).collect();
    let var = (0..l.c)
        .map(|k| values(k).map(|v| (v - mean[k]).powi(2)).sum::<f64>() / count)
        .collect();
    (mean, var)
}

fn stats<T: Real>(x: &[T], l: Layout) -> (Vec<f64>, Vec<f64>) {
    let (mut mean, mut var) = (vec![0.0; l.c], vec![0.0; l.c]);
    batch_stats(x, l, &mut mean, &mut var).unwrap();
    (mean, var)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{k}]: got {g}, want {w}"
        );
    }
}

/// Stats, forward (training, affine) and backward (training and eval) of one problem, as bits.
fn everything<T: Real>(l: Layout, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    let x: Vec<T> = rng.vec(l.len(), 0.5, 2.0);
    let dy: Vec<T> = rng.vec(l.len(), 0.0, 1.0);
    let weight: Vec<f64> = (0..l.c).map(|_| 1.0 + rng.next()).collect();
    let bias: Vec<f64> = (0..l.c).map(|_| rng.next()).collect();
    let (mean, var) = stats(&x, l);
    let mut invstd = vec![0.0; l.c];
    inv_std(&var, 1e-5, &mut invstd).unwrap();
    let mut norm = Normalization {
        mean: &mean,
        invstd: &invstd,
        weight: Some(&weight),
        bias: Some(&bias),
        training: true,
    };
    let mut y = vec![T::ZERO; l.len()];
    batch_norm_forward(&x, &mut y, l, &norm).unwrap();
    let mut dx = vec![T::ZERO; l.len()];
    let (mut dw, mut db) = (vec![0.0; l.c], vec![0.0; l.c]);
    batch_norm_backward(&dy, &x, &mut dx, l, &norm, &mut dw, &mut db).unwrap();
    let mut bits: Vec<u64> = mean.iter().chain(&var).map(|v| v.to_bits()).collect();
    bits.extend(dw.iter().chain(&db).map(|v| v.to_bits()));
    bits.extend(y.iter().chain(&dx).map(|v| v.to_f64().to_bits()));
    norm.training = false;
    batch_norm_backward(&dy, &x, &mut dx, l, &norm, &mut dw, &mut db).unwrap();
    bits.extend(dx.iter().map(|v| v.to_f64().to_bits()));
    bits
}

#[test]
fn same_bits_at_every_level_and_thread_count() {
    let _guard = lock();
    for (seed, &(n, c, s)) in LAYOUTS.iter().enumerate() {
        let l = Layout::new(n, c, s);
        let mut base: Option<(Vec<u64>, Vec<u64>)> = None;
        for level in simd::supported_levels() {
            assert!(simd::set_level(level));
            for threads in [1, 2] {
                crate::set_num_threads(threads).unwrap();
                let got = (
                    everything::<f32>(l, seed as u64),
                    everything::<f64>(l, seed as u64),
                );
                match &base {
                    None => base = Some(got),
                    Some(b) => assert!(
                        *b == got,
                        "{l:?} differs at {level:?} with {threads} threads"
                    ),
                }
            }
        }
    }
    simd::set_level(simd::detected_level());
    crate::set_num_threads(2).unwrap();
    assert!(SimdLevel::ALL.contains(&simd::level()));
}

#[test]
fn stats_match_naive_two_pass() {
    for (seed, &(n, c, s)) in LAYOUTS.iter().enumerate() {
        let l = Layout::new(n, c, s);
        let mut rng = Rng::new(seed as u64 + 100);
        let x32: Vec<f32> = rng.vec(l.len(), 3.0, 5.0);
        let x64: Vec<f64> = rng.vec(l.len(), -2.0, 0.1);
        let (m, v) = stats(&x32, l);
        let (nm, nv) = naive_stats(&x32, l);
        assert_close(&m, &nm, 1e-12, "mean f32");
        assert_close(&v, &nv, 1e-12, "var f32");
        let (m, v) = stats(&x64, l);
        let (nm, nv) = naive_stats(&x64, l);
        assert_close(&m, &nm, 1e-12, "mean f64");
        assert_close(&v, &nv, 1e-10, "var f64");
    }
}

#[test]
fn large_mean_float32_is_stable() {
    for l in [
        Layout::new(4096, 8, 1),
        Layout::new(16, 4, 1024),
        Layout::new(9, 3, 20),
    ] {
        let mut rng = Rng::new(7);
        // Unit variance: uniform on [-sqrt(3), sqrt(3)] around 1e4.
        let x: Vec<f32> = rng.vec(l.len(), 1e4, 3f64.sqrt());
        let (m, v) = stats(&x, l);
        let (nm, nv) = naive_stats(&x, l);
        for k in 0..l.c {
            assert!((m[k] - nm[k]).abs() <= 1e-9 * nm[k], "{l:?} mean {k}");
            assert!((v[k] - nv[k]).abs() <= 1e-3 * nv[k], "{l:?} var {k}");
            assert!(
                (v[k] - nv[k]).abs() <= 1e-9 * nv[k],
                "{l:?} var {k} (tight)"
            );
            assert!((v[k] - 1.0).abs() < 0.3, "{l:?} var {k} = {}", v[k]);
        }
    }
}

#[test]
fn forward_and_backward_match_the_formulas() {
    for &(n, c, s) in &LAYOUTS[..12] {
        let l = Layout::new(n, c, s);
        let mut rng = Rng::new(3);
        let x: Vec<f64> = rng.vec(l.len(), 0.5, 2.0);
        let dy: Vec<f64> = rng.vec(l.len(), 0.0, 1.0);
        let w: Vec<f64> = (0..c).map(|_| rng.next()).collect();
        let b: Vec<f64> = (0..c).map(|_| rng.next()).collect();
        let (mean, var) = stats(&x, l);
        let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
        for affine in [true, false] {
            let norm = Normalization {
                mean: &mean,
                invstd: &invstd,
                weight: affine.then_some(&w[..]),
                bias: affine.then_some(&b[..]),
                training: true,
            };
            let wk = |k: usize| if affine { (w[k], b[k]) } else { (1.0, 0.0) };
            let mut y = vec![0.0; l.len()];
            batch_norm_forward(&x, &mut y, l, &norm).unwrap();
            let mut dx = vec![0.0; l.len()];
            let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
            batch_norm_backward(&dy, &x, &mut dx, l, &norm, &mut dw, &mut db).unwrap();
            let m = l.count() as f64;
            for k in 0..c {
                let idx: Vec<usize> = (0..n)
                    .flat_map(|i| (0..s).map(move |j| (i * c + k) * s + j))
                    .collect();
                let xhat = |p: usize| (x[p] - mean[k]) * invstd[k];
                let sdy: f64 = idx.iter().map(|&p| dy[p]).sum();
                let sdyx: f64 = idx.iter().map(|&p| dy[p] * xhat(p)).sum();
                assert!((db[k] - sdy).abs() < 1e-9 * (1.0 + sdy.abs()));
                assert!((dw[k] - sdyx).abs() < 1e-9 * (1.0 + sdyx.abs()));
                let (wt, bs) = wk(k);
                for &p in &idx {
                    let want_y = xhat(p) * wt + bs;
                    assert!((y[p] - want_y).abs() < 1e-12 * (1.0 + want_y.abs()));
                    let want = wt * invstd[k] / m * (m * dy[p] - sdy - xhat(p) * sdyx);
                    assert!((dx[p] - want).abs() < 1e-9 * (1.0 + want.abs()), "{l:?} dx");
                }
            }
        }
    }
}

#[test]
fn running_update_follows_torch() {
    let (mut rm, mut rv) = (vec![1.0f32, 2.0], vec![3.0f32, 4.0]);
    update_running(&mut rm, &mut rv, &[0.5, -1.0], &[2.0, 0.0], 5, 0.1).unwrap();
    assert_eq!(
        rm,
        [(0.9 * 1.0 + 0.1 * 0.5) as f32, (0.9 * 2.0 - 0.1) as f32]
    );
    assert_eq!(rv, [(0.9 * 3.0 + 0.1 * 2.5) as f32, (0.9f64 * 4.0) as f32]);
    // momentum=None, third batch: factor 1/3.
    let (mut rm, mut rv) = (vec![3.0f64], vec![1.0f64]);
    update_running(&mut rm, &mut rv, &[6.0], &[1.0], 2, 1.0 / 3.0).unwrap();
    assert!((rm[0] - 4.0).abs() < 1e-15 && (rv[0] - 4.0 / 3.0).abs() < 1e-15);
}

#[test]
fn errors_write_nothing() {
    let l = Layout::new(2, 3, 4);
    let x = vec![1.0f32; l.len()];
    let (mean, invstd, w) = ([0.0; 3], [1.0; 3], [1.0; 2]);
    let mut y = vec![7.0f32; l.len()];
    let norm = Normalization {
        mean: &mean,
        invstd: &invstd,
        weight: Some(&w),
        bias: None,
        training: true,
    };
    let err = batch_norm_forward(&x, &mut y, l, &norm).unwrap_err();
    assert_eq!(
        err,
        Error::ChannelCount {
            arg: "weight",
            got: 2,
            expected: 3
        }
    );
    assert!(y.iter().all(|&v| v == 7.0));
    let err = batch_norm_forward(
        &x[1..],
        &mut y,
        l,
        &Normalization {
            weight: None,
            ..norm
        },
    );
    assert!(matches!(err, Err(Error::ElementCount { arg: "x", .. })));
    // One value per channel in training: refused (torch's message); fine in eval.
    let one = Layout::new(1, 3, 1);
    let norm1 = Normalization {
        weight: None,
        ..norm
    };
    let err = batch_norm_forward(&x[..3], &mut y[..3], one, &norm1).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("Expected more than 1 value per channel"));
    assert!(y.iter().all(|&v| v == 7.0));
    let eval = Normalization {
        training: false,
        ..norm1
    };
    batch_norm_forward(&x[..3], &mut y[..3], one, &eval).unwrap();
    assert_eq!(&y[..3], &[1.0; 3]);
    let (mut dx, mut dw, mut db) = (vec![5.0f32; 3], [9.0; 3], [9.0; 3]);
    let err = batch_norm_backward(&x[..3], &x[..3], &mut dx, one, &norm1, &mut dw, &mut db);
    assert!(matches!(err, Err(Error::TooFewValues { .. })));
    assert!(dx == [5.0; 3] && dw == [9.0; 3] && db == [9.0; 3]);
    let mut out = [0.0; 3];
    assert!(inv_std(&[1.0; 3], -1e-5, &mut out).is_err());
    assert!(inv_std(&[1.0; 3], f64::NAN, &mut out).is_err());
    let (mut rm, mut rv) = (vec![1.0f64; 3], vec![1.0f64; 3]);
    assert!(update_running(&mut rm, &mut rv, &[0.0; 3], &[0.0; 3], 4, 1.5).is_err());
    assert!(update_running(&mut rm, &mut rv, &[0.0; 3], &[0.0; 3], 1, 0.1).is_err());
    assert!(update_running(&mut rm, &mut rv, &[0.0; 2], &[0.0; 3], 4, 0.1).is_err());
    assert!(rm == [1.0; 3] && rv == [1.0; 3]);
    let (mut m, mut v) = ([0.0; 2], [0.0; 3]);
    assert!(batch_stats(&x, l, &mut m, &mut v).is_err());
}

#[test]
fn empty_inputs() {
    let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
    batch_stats::<f32>(&[], Layout::new(0, 2, 3), &mut m, &mut v).unwrap();
    assert!(m[0].is_nan() && v[1].is_nan());
    batch_stats::<f32>(&[], Layout::new(4, 0, 3), &mut [], &mut []).unwrap();
    assert_eq!(
        Layout::from_shape(&[2, 3, 4, 5]),
        Some(Layout::new(2, 3, 20))
    );
    assert_eq!(Layout::from_shape(&[2, 3]), Some(Layout::new(2, 3, 1)));
    assert_eq!(Layout::from_shape(&[2]), None);
}

/// Finite data with infinities in channel `k % 4`: 0 `+inf` in its first value (the first
/// partial), 1 `-inf` in its last, 2 `+inf` in its first, middle and last, 3 `+inf` first and
/// `-inf` last; channels from 4 on stay finite.
fn with_infinities<T: Real>(l: Layout, seed: u64) -> Vec<T> {
    let mut x: Vec<T> = Rng::new(seed).vec(l.len(), 0.5, 2.0);
    let at = |k: usize, v: usize| ((v / l.s) * l.c + k) * l.s + v % l.s;
    let (first, middle, last) = (0, l.count() / 2, l.count() - 1);
    let plan: [&[(usize, f64)]; 4] = [
        &[(first, f64::INFINITY)],
        &[(last, f64::NEG_INFINITY)],
        &[
            (first, f64::INFINITY),
            (middle, f64::INFINITY),
            (last, f64::INFINITY),
        ],
        &[(first, f64::INFINITY), (last, f64::NEG_INFINITY)],
    ];
    for (k, places) in plan.iter().enumerate().take(l.c) {
        for &(v, value) in places.iter() {
            x[at(k, v)] = T::from_f64(value);
        }
    }
    x
}

/// The mean of data holding an infinity is that of its sum, as in torch (`+-inf`, NaN for both
/// signs), wherever the infinity falls among the partials; the variance is NaN; finite channels
/// are unaffected; and the bits (NaN as one value) are the same at every level and thread count.
#[test]
fn stats_of_infinite_data_follow_the_sum() {
    let _guard = lock();
    let nan_as_one = |v: &f64| if v.is_nan() { u64::MAX } else { v.to_bits() };
    for (seed, &(n, c, s)) in LAYOUTS.iter().enumerate() {
        let l = Layout::new(n, c, s);
        let x32 = with_infinities::<f32>(l, seed as u64);
        let x64 = with_infinities::<f64>(l, seed as u64);
        let mut base: Option<Vec<u64>> = None;
        for level in simd::supported_levels() {
            assert!(simd::set_level(level));
            for threads in [1, 2] {
                crate::set_num_threads(threads).unwrap();
                let mut bits = Vec::new();
                for (m, v) in [stats(&x32, l), stats(&x64, l)] {
                    bits.extend(m.iter().chain(&v).map(nan_as_one));
                }
                match &base {
                    None => base = Some(bits),
                    Some(b) => assert!(*b == bits, "{l:?} differs at {level:?}, {threads} threads"),
                }
            }
        }
        let want = [f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NAN];
        for (m, v) in [stats(&x32, l), stats(&x64, l)] {
            for k in 0..c.min(4) {
                let same = m[k] == want[k] || (m[k].is_nan() && want[k].is_nan());
                assert!(same, "{l:?} mean[{k}] = {}, want {}", m[k], want[k]);
                assert!(v[k].is_nan(), "{l:?} var[{k}] = {}", v[k]);
            }
        }
        if c > 4 {
            let ((m, v), (nm, nv)) = (stats(&x64, l), naive_stats(&x64, l));
            assert_close(&m[4..], &nm[4..], 1e-12, "finite mean");
            assert_close(&v[4..], &nv[4..], 1e-10, "finite var");
        }
    }
    simd::set_level(simd::detected_level());
    crate::set_num_threads(2).unwrap();
}

/// As torch: the running mean takes the infinity (NaN for both signs), the running variance NaN.
#[test]
fn running_stats_of_infinite_data_follow_torch() {
    let l = Layout::new(1100, 64, 1); // several row blocks
    let (mean, var) = stats(&with_infinities::<f32>(l, 1), l);
    let (mut rm, mut rv) = (vec![0.0f32; l.c], vec![1.0f32; l.c]);
    update_running(&mut rm, &mut rv, &mean, &var, l.count(), 0.1).unwrap();
    assert_eq!(rm[..3], [f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY]);
    assert!(rm[3].is_nan() && rv[..4].iter().all(|v| v.is_nan()));
    assert!(rm[4..].iter().chain(&rv[4..]).all(|v| v.is_finite()));
}

/// The shifted sums with a shift far from the mean: float32 data with mean 1e4 and unit variance
/// whose first 16 rows (the estimate of a task's first row block) or first 32 values of each run
/// (the estimate of a segment) sit 50 standard deviations away. A naive `E[x^2] - E[x]^2` loses
/// every digit here; the shifted sums keep the variance to 1e-9 of the exact two-pass.
#[test]
fn shift_far_from_the_mean_is_stable() {
    for l in [
        Layout::new(4096, 8, 1),
        Layout::new(300, 7, 40),
        Layout::new(16, 4, 1024),
        Layout::new(88 * 128 + 37, 255, 1),
    ] {
        let mut x: Vec<f32> = Rng::new(11).vec(l.len(), 1e4, 3f64.sqrt());
        let far = (1e4 + 50.0) as f32;
        x[..16 * l.row()].fill(far);
        for run in x.chunks_mut(l.s).filter(|_| l.s >= 512) {
            run[..32].fill(far);
        }
        let (m, v) = stats(&x, l);
        let (nm, nv) = naive_stats(&x, l);
        for k in 0..l.c {
            assert!((m[k] - nm[k]).abs() <= 1e-12 * nm[k], "{l:?} mean {k}");
            assert!(
                (v[k] - nv[k]).abs() <= 1e-9 * nv[k],
                "{l:?} var {k}: {} vs {}",
                v[k],
                nv[k]
            );
        }
    }
}

/// Finite float64 data whose squared deviations overflow: the variance is `inf` (as a two-pass
/// gives), not the NaN of `inf - inf`; the mean stays finite.
#[test]
fn overflowing_squares_give_an_infinite_variance() {
    for l in [Layout::new(300, 3, 1), Layout::new(2, 2, 700)] {
        let x: Vec<f64> = (0..l.len())
            .map(|i| if i % 2 == 0 { 1e200 } else { -1e200 })
            .collect();
        let (m, v) = stats(&x, l);
        let (nm, nv) = naive_stats(&x, l);
        assert!(m.iter().all(|m| m.is_finite()), "{l:?} mean {m:?}");
        assert!(nv.iter().all(|&v| v == f64::INFINITY));
        assert!(
            v.iter().all(|&v| v == f64::INFINITY),
            "{l:?} var {v:?} (naive {nm:?})"
        );
    }
}

/// `run_sums` (the backward pass's sums over a run segment) at every SIMD level, for lengths
/// that leave every number of rows over a multiple of four and every tail length: the same bits
/// as its documented order (element `i` to lane `i % 16`, each lane in order, lanes folded
/// pairwise), computed one element at a time.
#[test]
fn run_sums_follow_their_lane_order_at_every_level() {
    struct Sums<'a, T> {
        dy: &'a [T],
        x: &'a [T],
        out: &'a mut (f64, f64),
    }
    impl<T: Real> simd::Kernel for Sums<'_, T> {
        #[inline(always)]
        fn run(self) {
            *self.out = backward::run_sums(self.dy, self.x, 0.25);
        }
    }
    fn check<T: Real>(seed: u64) {
        let mut rng = Rng::new(seed);
        for len in (0..=140).chain([700, 3136, 40_000]) {
            let dy: Vec<T> = rng.vec(len, 0.1, 1.0);
            let x: Vec<T> = rng.vec(len, -0.3, 2.0);
            let (mut a, mut b) = ([0.0f64; 16], [0.0f64; 16]);
            for (i, (&g, &v)) in dy.iter().zip(&x).enumerate() {
                a[i % 16] += g.to_f64();
                b[i % 16] += g.to_f64() * (v.to_f64() - 0.25);
            }
            let want = (stats::fold(a).to_bits(), stats::fold(b).to_bits());
            for level in simd::supported_levels() {
                assert!(simd::set_level(level));
                let mut out = (0.0, 0.0);
                simd::dispatch(Sums {
                    dy: &dy,
                    x: &x,
                    out: &mut out,
                });
                assert_eq!(
                    (out.0.to_bits(), out.1.to_bits()),
                    want,
                    "{} elements of {} at {level:?}",
                    len,
                    T::NAME
                );
            }
        }
    }
    let _guard = lock();
    check::<f32>(1);
    check::<f64>(2);
    simd::set_level(simd::detected_level());
}
