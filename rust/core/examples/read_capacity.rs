//! Where the bytes of a step come from: the bandwidth of one read of a buffer as its size grows
//! past what the last-level cache holds, and the cost of reading the transformer's gradients
//! right after a step against the same read back to back. Run with
//! `cargo run --release -p ferroptim-core --example read_capacity [rounds]` (2 threads, wall time,
//! medians and best of `rounds`).
//!
//! 1. `roofline::read_pass` over one float32 buffer of 16 MB to 880 MB, each size read back to
//!    back: GB/s of the read. The size at which it drops is the share of the last-level cache a
//!    read keeps (the cache is shared with the rest of the machine).
//! 2. On the transformer workload's 75 separate arrays (13,719,552 float32 each for p, g, m, v):
//!    the roofline step with two state arrays (Adam's bytes, no arithmetic), one read of the
//!    gradients back to back, and that read followed by the step; "read after the step" is the
//!    last minus the step alone, the price of the extra read of `max_grad_norm` in its place.

use ferroptim_core::roofline::{read_pass, roofline_step};
use ferroptim_core::set_num_threads;
use std::hint::black_box;
use timing::{data, minima_and_medians, per_call, transformer_sizes, AdamArrays};

mod timing;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    set_num_threads(2).unwrap();
    for mb in [16usize, 32, 55, 110, 165, 220, 330, 440, 880] {
        let buffer = data(mb * 250_000, 0.0); // 4 bytes per element
        let arrays = [&buffer[..]];
        black_box(read_pass(&arrays));
        let times = (0..rounds)
            .map(|_| {
                per_call(1, false, &mut || {
                    black_box(read_pass(&arrays));
                })
            })
            .collect();
        let ([min], [median]) = minima_and_medians([times]);
        println!(
            "read of {mb:>3} MB: {:.1} GB/s median, {:.1} GB/s best",
            mb as f64 / median,
            mb as f64 / min
        );
    }
    step_then_read(rounds);
}

/// The roofline step, the read of the gradients, and the read followed by the step, interleaved
/// round by round on the transformer's arrays.
fn step_then_read(rounds: usize) {
    let sizes = transformer_sizes();
    let grads: Vec<Vec<f32>> = sizes.iter().map(|&n| data(n, 0.0)).collect();
    let mut arrays = AdamArrays::new(&sizes);
    let g: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
    let mut step = || roofline_step(&mut arrays.tensors(&g, 1), 2).unwrap();
    // Each timed call after two untimed ones of the same kind, so the caches hold what that
    // kind of call leaves behind.
    let mut t: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        for _ in 0..2 {
            step();
        }
        t[0].push(per_call(1, false, &mut step));
        for _ in 0..2 {
            black_box(read_pass(&g));
        }
        t[1].push(per_call(1, false, &mut || {
            black_box(read_pass(&g));
        }));
        let mut read_then_step = || {
            black_box(read_pass(&g));
            step();
        };
        for _ in 0..2 {
            read_then_step();
        }
        t[2].push(per_call(1, false, &mut read_then_step));
    }
    let (_, [step_ms, read_ms, both_ms]) = minima_and_medians(t);
    let gradient_mb = sizes.iter().sum::<usize>() as f64 * 4.0 / 1e6;
    println!(
        "transformer, 75 arrays (medians): roofline step {step_ms:.3} ms; read of the gradients \
         back to back {read_ms:.3} ms ({:.1} GB/s); read then step {both_ms:.3} ms ({:.3}x the \
         step): the read after the step {:.3} ms ({:.1} GB/s)",
        gradient_mb / read_ms,
        both_ms / step_ms,
        both_ms - step_ms,
        gradient_mb / (both_ms - step_ms),
    );
}
