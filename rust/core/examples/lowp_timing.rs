//! Adam with float32 state against bfloat16 state (stochastic and nearest rounding) and the
//! 20- and 28-byte roofline kernels on one tensor: `N` elements (default 2^24), `T` threads
//! (default 2), `R` steps (default 15); medians. With `N=32768 T=1` the arrays stay in cache and
//! the times are the arithmetic per element.
use ferroptim_core::lowp::{adam_step_bf16, Bf16TensorRef, Rounding};
use ferroptim_core::roofline::roofline_step;
use ferroptim_core::{adam_step, AdamConfig, TensorRef};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The environment variable `name` as a number, or `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Run `f` once and append its wall-clock seconds to `times`.
fn timed(times: &mut Vec<f64>, f: impl FnOnce()) {
    let t0 = Instant::now();
    f();
    times.push(t0.elapsed().as_secs_f64());
}

fn main() {
    let n = env_or("N", 1 << 24);
    let threads = env_or("T", 2);
    ferroptim_core::set_num_threads(threads).unwrap();
    let cfg = AdamConfig::default();
    let g: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32 - 500.0) * 1e-5).collect();
    let mut p = vec![0.5f32; n];
    let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
    let (mut m16, mut v16) = (vec![0u16; n], vec![0u16; n]);
    let mut rp = vec![0.5f32; n];
    let mut rs = vec![0f32; n];
    let mut rs2 = vec![0f32; n];
    let mut t28 = vec![];
    let mut tn = vec![];
    let reps = env_or("R", 15);
    let (mut tf, mut tb, mut tr) = (vec![], vec![], vec![]);
    for step in 1..=reps as u64 {
        timed(&mut tf, || {
            let mut t = [TensorRef::new(&mut p, &g, step)
                .with_state(&mut m)
                .with_state(&mut v)];
            adam_step(&mut t, &cfg).unwrap();
        });
        let stochastic = Rounding::Stochastic { seed: 1, stream: 0 };
        for (times, r) in [(&mut tb, stochastic), (&mut tn, Rounding::NearestEven)] {
            timed(times, || {
                let mut t = [Bf16TensorRef::new(&mut p, &g, step, r)
                    .with_state(&mut m16)
                    .with_state(&mut v16)];
                adam_step_bf16(&mut t, &cfg).unwrap();
            });
        }
        timed(&mut tr, || {
            let mut t = [TensorRef::new(&mut rp, &g, step).with_state(&mut rs)];
            roofline_step(&mut t, 1).unwrap();
        });
        timed(&mut t28, || {
            let mut t = [TensorRef::new(&mut rp, &g, step)
                .with_state(&mut rs)
                .with_state(&mut rs2)];
            roofline_step(&mut t, 2).unwrap();
        });
    }
    let r28 = median(t28);
    println!("bf16 nearest {:.3} ms", median(tn) * 1e3);
    let (f, b, r) = (median(tf), median(tb), median(tr));
    println!(
        "n={n} threads={threads} level={:?}: f32 {:.3} ms, bf16 {:.3} ms, roof20 {:.3} ms; bf16 vs f32 {:.2}x, bf16 at {:.0}% of roof20; roof28 {:.3} ms, f32 at {:.0}% of roof28",
        ferroptim_core::simd::level(), f * 1e3, b * 1e3, r * 1e3, f / b, r / b * 100.0, r28 * 1e3, r28 / f * 100.0
    );
}
