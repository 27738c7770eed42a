//! Timing helpers shared by the examples that compare a kernel with one read of its bytes:
//! test data, and per-call timings as this thread's CPU time (1 thread) or wall time.

use ferroptim_core::TensorRef;
use std::time::Instant;

/// Uniform in `[offset - 1, offset + 1)`.
pub fn data(len: usize, offset: f32) -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u32 << 24) as f32;
            offset - 1.0 + 2.0 * u
        })
        .collect()
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// CPU time of the calling thread, in ms (Linux `CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ms() -> f64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // Safety: `ts` is a valid out-pointer.
    unsafe { clock_gettime(3, &mut ts) };
    ts.sec as f64 * 1e3 + ts.nsec as f64 * 1e-6
}

/// Wall time with 2 threads (the pool's), CPU time of this thread with 1 (the work runs here).
pub fn time(f: &mut dyn FnMut(), cpu: bool) -> f64 {
    if cpu {
        let t = thread_cpu_ms();
        f();
        return thread_cpu_ms() - t;
    }
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// Time of one call of `f`, from `reps` calls ([`time`]).
pub fn per_call(reps: usize, cpu: bool, f: &mut dyn FnMut()) -> f64 {
    time(
        &mut || {
            for _ in 0..reps {
                f();
            }
        },
        cpu,
    ) / reps as f64
}

/// Adam's arrays for tensors of the given sizes, each allocated separately: parameters (uniform
/// about 0.5) and two zeroed state arrays.
// Not every example that includes this module uses it.
#[allow(dead_code)]
pub struct AdamArrays {
    params: Vec<Vec<f32>>,
    state: Vec<[Vec<f32>; 2]>,
}

#[allow(dead_code)]
impl AdamArrays {
    pub fn new(sizes: &[usize]) -> Self {
        AdamArrays {
            params: sizes.iter().map(|&n| data(n, 0.5)).collect(),
            state: sizes
                .iter()
                .map(|&n| [vec![0.0; n], vec![0.0; n]])
                .collect(),
        }
    }

    /// The tensors of step `step`, with gradients `grads`.
    pub fn tensors<'a>(&'a mut self, grads: &[&'a [f32]], step: u64) -> Vec<TensorRef<'a, f32>> {
        self.params
            .iter_mut()
            .zip(&mut self.state)
            .zip(grads)
            .map(|((p, [m, v]), g)| TensorRef::new(p, g, step).with_state(m).with_state(v))
            .collect()
    }
}

/// The minimum and the median of each list of times.
// Not every example that includes this module uses it.
#[allow(dead_code)]
pub fn minima_and_medians<const K: usize>(times: [Vec<f64>; K]) -> ([f64; K], [f64; K]) {
    let min = times
        .clone()
        .map(|v| v.into_iter().fold(f64::INFINITY, f64::min));
    let med = times.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    (min, med)
}

/// The transformer workload's shapes, flattened (python/ferroptim/bench/workloads.py).
// Not every example that includes this module uses it.
#[allow(dead_code)]
pub fn transformer_sizes() -> Vec<usize> {
    let d = 384;
    let block = [
        3 * d * d,
        3 * d,
        d * d,
        d,
        d,
        d,
        4 * d * d,
        4 * d,
        4 * d * d,
        d,
        d,
        d,
    ];
    let mut sizes = vec![8000 * d];
    for _ in 0..6 {
        sizes.extend(block);
    }
    sizes.extend([d, d]);
    sizes
}
