//! Timing of the gradient norm against one read of the same bytes, interleaved, minima and
//! medians over many rounds (so other load on the machine only adds rounds). Run with
//! `cargo run --release -p ferroptim-core --example norm_timing [rounds]`.
//!
//! Four layouts: one float32 array of the transformer workload's size (13,719,552 elements),
//! the workload's 75 arrays as consecutive views of that buffer (the same memory), the 75 arrays
//! allocated separately, and an array that fits in L2 (256K elements, 1 MB). Prints, per layout
//! and thread count, the time of `roofline::read_pass` and of the L2 `clip::tensor_partials` (no
//! clamp, then clamped), and the read's share of each. Then Adam on the 75 separate arrays
//! (float32 state), plain against clipped as `max_grad_norm` clips (the norm pass,
//! `total_norm`, `clip_coef`, then the step with that scale), and the clipped step's norm pass
//! (clipped minus plain) against one read of the gradients. `ADAM_ONLY=1` times only Adam. With
//! 1 thread the time is this thread's CPU time; with 2, wall time.

use ferroptim_core::clip::{clip_coef, tensor_partials, total_norm, NormType};
use ferroptim_core::roofline::read_pass;
use ferroptim_core::{adam_step, set_num_threads, AdamConfig, GradClip};
use std::hint::black_box;
use timing::{data, minima_and_medians, per_call, transformer_sizes, AdamArrays};

mod timing;

/// Consecutive views of `buffer` with the given lengths.
fn views<'a>(buffer: &'a [f32], sizes: &[usize]) -> Vec<&'a [f32]> {
    let mut rest = buffer;
    sizes
        .iter()
        .map(|&n| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head
        })
        .collect()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    let sizes = transformer_sizes();
    let total: usize = sizes.iter().sum();
    let buffer = data(total, 0.0);
    let separate: Vec<Vec<f32>> = sizes.iter().map(|&n| data(n, 0.0)).collect();
    let small = data(1 << 18, 0.0);
    let layouts: [(&str, Vec<&[f32]>, usize); 4] = [
        ("one array", vec![&buffer[..]], 1),
        ("75 views", views(&buffer, &sizes), 1),
        ("75 arrays", separate.iter().map(Vec::as_slice).collect(), 1),
        ("L2-sized", vec![&small[..]], 50),
    ];
    for (name, arrays, reps) in &layouts {
        if std::env::var_os("ADAM_ONLY").is_some() {
            break;
        }
        for threads in [1, 2] {
            set_num_threads(threads).unwrap();
            let cpu = threads == 1;
            let mut t: [Vec<f64>; 3] = Default::default();
            for _ in 0..rounds {
                t[0].push(per_call(*reps, cpu, &mut || {
                    black_box(read_pass(arrays));
                }));
                t[1].push(per_call(*reps, cpu, &mut || {
                    black_box(tensor_partials(arrays, NormType::L2, None));
                }));
                t[2].push(per_call(*reps, cpu, &mut || {
                    black_box(tensor_partials(arrays, NormType::L2, Some(0.5)));
                }));
            }
            let (min, med) = minima_and_medians(t);
            println!(
                "{name:>9} {threads} thr: read {:.4} ms, norm {:.4} ms ({:.1}%), clamped {:.4} ms ({:.1}%) [minima; medians {:.1}% {:.1}%]",
                min[0],
                min[1],
                100.0 * min[0] / min[1],
                min[2],
                100.0 * min[0] / min[2],
                100.0 * med[0] / med[1],
                100.0 * med[0] / med[2],
            );
        }
    }
    adam(rounds, &sizes);
}

/// Minima over `rounds` of plain Adam, Adam clipped as `max_grad_norm` clips, and one read of
/// the gradients, on arrays of `sizes`.
fn adam(rounds: usize, sizes: &[usize]) {
    let grads: Vec<Vec<f32>> = sizes.iter().map(|&n| data(n, 0.0)).collect();
    let mut arrays = AdamArrays::new(sizes);
    let g: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
    for threads in [1, 2] {
        set_num_threads(threads).unwrap();
        let cpu = threads == 1;
        let mut t: [Vec<f64>; 3] = Default::default();
        for step in 1..=rounds as u64 {
            let mut run = |clip: bool| {
                let mut cfg = AdamConfig::default();
                if clip {
                    let norm = total_norm(&tensor_partials(&g, NormType::L2, None), NormType::L2);
                    cfg.grad_clip = GradClip {
                        scale: clip_coef(1.0, norm),
                        clip_value: None,
                    };
                }
                adam_step(&mut arrays.tensors(&g, step), &cfg).unwrap();
            };
            t[0].push(per_call(1, cpu, &mut || run(false)));
            t[1].push(per_call(1, cpu, &mut || run(true)));
            t[2].push(per_call(1, cpu, &mut || {
                black_box(read_pass(&g));
            }));
        }
        let (min, med) = minima_and_medians(t);
        println!(
            "Adam 75 arrays {threads} thr: plain {:.3} ms, clipped {:.3} ms ({:.3}x; medians {:.3}x), norm pass {:.3} ms, read of grads {:.3} ms ({:.1}% of the pass) [minima]",
            min[0],
            min[1],
            min[1] / min[0],
            med[1] / med[0],
            min[1] - min[0],
            min[2],
            100.0 * min[2] / (min[1] - min[0]),
        );
    }
}
