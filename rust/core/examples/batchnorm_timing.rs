//! Timing of the batch-norm reductions against one read of the same bytes, interleaved, minima
//! over many rounds (so other load on the machine only adds rounds). Run with
//! `cargo run --release -p ferroptim-core --example batchnorm_timing [rounds]`.
//!
//! Prints, per shape and thread count, the minimum over the rounds of: `batch_stats` of a float32
//! input, `roofline::read_pass` of the same input (one read of its bytes), their ratio, and the
//! whole training-mode `batch_norm_backward` (its reduction and its `dx` pass). With 1 thread
//! the kernels run on the calling thread and the time is that thread's CPU time (so other load
//! on the machine counts little); with 2 threads it is wall time. The optional second argument
//! offsets the data's mean (default 0: unshifted sums; e.g. 5: shifted ones).

use ferroptim_core::batchnorm::{batch_norm_backward, batch_stats, inv_std, Layout, Normalization};
use ferroptim_core::roofline::read_pass;
use ferroptim_core::set_num_threads;
use std::hint::black_box;
use timing::{data, per_call};

mod timing;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(60);
    // A mean far from 0 takes the shifted sums; near 0, the unshifted ones.
    let offset: f32 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0.0);
    let shapes = [(65536, 256, 1), (64, 64, 56 * 56), (1024, 256, 1)];
    for &(n, c, s) in &shapes {
        let layout = Layout::new(n, c, s);
        let x = data(layout.len(), offset);
        let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
        for threads in [1, 2] {
            set_num_threads(threads).unwrap();
            let mut best = [f64::INFINITY; 3];
            batch_stats(&x, layout, &mut mean, &mut var).unwrap();
            let mut invstd = vec![0.0; c];
            inv_std(&var, 1e-5, &mut invstd).unwrap();
            let dy = data(layout.len(), 0.0);
            let mut dx = vec![0.0f32; layout.len()];
            let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
            let reps = if n * c * s < 1 << 20 { 200 } else { 1 };
            let cpu = threads == 1;
            // Statistics and one read alternate on the same input (which stays in cache as far
            // as it fits, as in the bench's blocks); the backward pass (three arrays) runs after.
            for _ in 0..rounds {
                best[0] = best[0].min(per_call(reps, cpu, &mut || {
                    batch_stats(&x, layout, &mut mean, &mut var).unwrap();
                }));
                best[1] = best[1].min(per_call(reps, cpu, &mut || {
                    black_box(read_pass(&[&x[..]]));
                }));
            }
            let norm = Normalization {
                mean: &mean,
                invstd: &invstd,
                weight: None,
                bias: None,
                training: true,
            };
            for _ in 0..rounds {
                best[2] = best[2].min(per_call(reps, cpu, &mut || {
                    batch_norm_backward(&dy, &x, &mut dx, layout, &norm, &mut dw, &mut db).unwrap();
                }));
            }
            println!(
                "({n}, {c}, {s}) {threads} thr: stats {:.4} ms, read {:.4} ms, read/stats {:.1}%  ({:.2} elem/ns/thread); backward {:.4} ms",
                best[0],
                best[1],
                100.0 * best[1] / best[0],
                layout.len() as f64 / best[0] / 1e6 / threads as f64,
                best[2]
            );
            black_box((&mean, &var));
        }
    }
}
