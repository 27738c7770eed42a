//! Where an 8-bit Adam step spends its time, stage by stage, with the data in L1: `B` blocks of
//! 256 elements (default 16, 4096 elements) run `R` times (default 50) per repeat, the
//! minimum over 300 repeats, on one thread at the active SIMD level (`FERROPTIM_SIMD`). Prints
//! nanoseconds per element of: dequantizing one state, absmax, quantizing one state (signed and
//! unsigned map), the whole 8-bit Adam step and the float32-state Adam step on the same sizes.
//! Run with `cargo run --release -p ferroptim-core --example quant8_stages`.
use ferroptim_core::lowp::{adam_step_8bit, Quant8State, Quant8TensorRef, QuantMap, Quantizer};
use ferroptim_core::lowp::{quant8::absmax, BLOCK};
use ferroptim_core::{adam_step, AdamConfig, TensorRef};
use std::hint::black_box;
use std::time::Instant;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Minimum over 30 repeats of `reps` calls of `f`, in ns per element of `n`.
fn time(n: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    (0..300)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..reps {
                f();
            }
            t0.elapsed().as_secs_f64() * 1e9 / (n * reps) as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let blocks = env_or("B", 16);
    let reps = env_or("R", 50);
    let n = blocks * BLOCK;
    ferroptim_core::set_num_threads(1).unwrap();
    let values: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
        .collect();
    let squares: Vec<f32> = values.iter().map(|v| v * v).collect();
    let mut codes = vec![0u8; n];
    let mut absmaxes = vec![0f32; blocks];
    let mut out = vec![0f32; n];
    println!(
        "n={n} level={:?}, ns per element (min of 300 x {reps}):",
        ferroptim_core::simd::level()
    );
    for (name, kind, data) in [
        ("signed", QuantMap::Signed, &values),
        ("unsigned", QuantMap::Unsigned, &squares),
    ] {
        let q = Quantizer::get(kind);
        let quant = time(n, reps, || {
            for ((v, c), a) in data
                .chunks(BLOCK)
                .zip(codes.chunks_mut(BLOCK))
                .zip(absmaxes.iter_mut())
            {
                *a = q.quantize_block(black_box(v), c);
            }
        });
        let deq = time(n, reps, || {
            for ((c, o), &a) in codes
                .chunks(BLOCK)
                .zip(out.chunks_mut(BLOCK))
                .zip(&absmaxes)
            {
                q.dequantize_block(black_box(c), a, o);
            }
        });
        println!("  quantize {name:9} {quant:7.3}   dequantize {deq:7.3}");
    }
    let am = time(n, reps, || {
        for v in values.chunks(BLOCK) {
            black_box(absmax(black_box(v)));
        }
    });
    println!("  absmax {am:7.3}");
    let cfg = AdamConfig::default();
    let g: Vec<f32> = values.iter().map(|v| v * 0.1).collect();
    let mut p = vec![0.5f32; n];
    // Codes and absmax of exp_avg (signed map) and exp_avg_sq (unsigned map).
    let mut states =
        [QuantMap::Signed, QuantMap::Unsigned].map(|map| (vec![0u8; n], vec![0f32; blocks], map));
    let mut step = 0;
    let q8 = time(n, reps, || {
        step += 1;
        let mut t = Quant8TensorRef::new(&mut p, &g, step);
        for (codes, absmax, map) in states.iter_mut() {
            t = t.with_state(Quant8State {
                codes,
                absmax,
                map: *map,
            });
        }
        adam_step_8bit(&mut [t], &cfg).unwrap();
    });
    let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
    let mut step = 0;
    let f32adam = time(n, reps, || {
        step += 1;
        let mut t = [TensorRef::new(&mut p, &g, step)
            .with_state(&mut m)
            .with_state(&mut v)];
        adam_step(&mut t, &cfg).unwrap();
    });
    println!("  8-bit Adam step {q8:7.3}   float32 Adam step {f32adam:7.3}");
}
