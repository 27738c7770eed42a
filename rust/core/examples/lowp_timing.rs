//! Adam with float32 state against bfloat16 state (stochastic and nearest rounding) and 8-bit
//! state, and the 20- and 28-byte roofline kernels, on one tensor: `N` elements (default 2^24),
//! `T` threads (default 2), `R` steps of each, interleaved (default 15). Prints nanoseconds per
//! element, the minimum and the median over the steps, and the ratios of the minima. With
//! `N=32768 T=1` the arrays stay in cache and the times are the arithmetic per element.
use ferroptim_core::lowp::{
    adam_step_8bit, adam_step_bf16, Bf16TensorRef, Quant8State, Quant8TensorRef, QuantMap,
    Rounding, BLOCK,
};
use ferroptim_core::roofline::roofline_step;
use ferroptim_core::{adam_step, AdamConfig, TensorRef};
use std::time::Instant;

/// The environment variable `name` as a number, or `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env_or("N", 1 << 24);
    let threads = env_or("T", 2);
    let reps = env_or("R", 15);
    ferroptim_core::set_num_threads(threads).unwrap();
    let cfg = AdamConfig::default();
    let g: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32 - 500.0) * 1e-5).collect();
    let mut p = vec![0.5f32; n];
    let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
    let (mut m16, mut v16) = (vec![0u16; n], vec![0u16; n]);
    let (mut c1, mut c2) = (vec![0u8; n], vec![0u8; n]);
    let blocks = n.div_ceil(BLOCK);
    let (mut a1, mut a2) = (vec![0f32; blocks], vec![0f32; blocks]);
    let mut rp = vec![0.5f32; n];
    let (mut rs, mut rs2) = (vec![0f32; n], vec![0f32; n]);
    let names = [
        "float32 Adam",
        "bf16 stochastic",
        "bf16 nearest",
        "8-bit",
        "roofline 20 B",
        "roofline 28 B",
    ];
    let mut times: Vec<Vec<f64>> = vec![vec![]; names.len()];
    for step in 1..=reps as u64 {
        let mut timed = |k: usize, f: &mut dyn FnMut()| {
            let t0 = Instant::now();
            f();
            times[k].push(t0.elapsed().as_secs_f64() * 1e9 / n as f64);
        };
        timed(0, &mut || {
            let mut t = [TensorRef::new(&mut p, &g, step)
                .with_state(&mut m)
                .with_state(&mut v)];
            adam_step(&mut t, &cfg).unwrap();
        });
        for (k, r) in [
            (1, Rounding::Stochastic { seed: 1, stream: 0 }),
            (2, Rounding::NearestEven),
        ] {
            timed(k, &mut || {
                let mut t = [Bf16TensorRef::new(&mut p, &g, step, r)
                    .with_state(&mut m16)
                    .with_state(&mut v16)];
                adam_step_bf16(&mut t, &cfg).unwrap();
            });
        }
        timed(3, &mut || {
            let mut t = [Quant8TensorRef::new(&mut p, &g, step)
                .with_state(Quant8State {
                    codes: &mut c1,
                    absmax: &mut a1,
                    map: QuantMap::Signed,
                })
                .with_state(Quant8State {
                    codes: &mut c2,
                    absmax: &mut a2,
                    map: QuantMap::Unsigned,
                })];
            adam_step_8bit(&mut t, &cfg).unwrap();
        });
        timed(4, &mut || {
            let mut t = [TensorRef::new(&mut rp, &g, step).with_state(&mut rs)];
            roofline_step(&mut t, 1).unwrap();
        });
        timed(5, &mut || {
            let mut t = [TensorRef::new(&mut rp, &g, step)
                .with_state(&mut rs)
                .with_state(&mut rs2)];
            roofline_step(&mut t, 2).unwrap();
        });
    }
    println!(
        "n={n} threads={threads} level={:?}, ns per element (min, median of {reps}):",
        ferroptim_core::simd::level()
    );
    let mins: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[0]
        })
        .collect();
    for (k, name) in names.iter().enumerate() {
        println!(
            "  {name:16} {:7.3} {:7.3}   float32 / this {:.2}x",
            mins[k],
            times[k][times[k].len() / 2],
            mins[0] / mins[k]
        );
    }
    println!(
        "  bf16 stochastic at {:.0}% of the 20-byte roofline",
        mins[4] / mins[1] * 100.0
    );
}
