//! bfloat16 Adam (stochastic rounding) against the 20-byte roofline kernel on the transformer
//! workload's 75 tensors (`SINGLE=1`: one tensor of 2^24 elements), 2 threads, with the state
//! laid out as the optimizer classes lay it out (each state name's arrays are consecutive views
//! of one allocation; parameters and gradients separate). `S` (default 4) sets of arrays per
//! kernel, every set its own allocations; each round calls every (kernel, set) once in a
//! shuffled order, `R` rounds (default 60). Prints each set's median and the bfloat16 sets'
//! shares of the roofline's median over all its sets: how far the same kernel's share moves
//! with where its arrays happen to lie (the call-by-call bench column measures one set each).
//! `HUGE=1`: the arrays on transparent huge pages where the kernel grants them (NumPy advises
//! them for its large arrays). Run with
//! `cargo run --release -p ferroptim-core --example bf16_placement`.
use ferroptim_core::lowp::{adam_step_bf16, Bf16TensorRef, Rounding};
use ferroptim_core::roofline::roofline_step;
use ferroptim_core::{AdamConfig, TensorRef};
use std::time::Instant;
use timing::{data, transformer_sizes};

// Only the data and the shapes of the shared helpers are used here.
#[allow(dead_code)]
mod timing;

/// The environment variable `name` as a number, or `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Consecutive mutable views of `buffer` with the given lengths.
fn views<'a, E>(mut buffer: &'a mut [E], sizes: &[usize]) -> Vec<&'a mut [E]> {
    sizes
        .iter()
        .map(|&n| {
            let (head, rest) = std::mem::take(&mut buffer).split_at_mut(n);
            buffer = rest;
            head
        })
        .collect()
}

extern "C" {
    fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
}

/// `n` default elements; with `huge`, their whole 2 MB pages advised as huge pages before the
/// first touch (as NumPy does for large arrays where transparent huge pages are on `madvise`).
fn allocate<E: Copy + Default>(n: usize, huge: bool) -> Vec<E> {
    let mut v = vec![E::default(); n];
    if huge {
        const HUGE: usize = 1 << 21;
        let start = (v.as_mut_ptr() as usize).div_ceil(HUGE) * HUGE;
        let end = (v.as_mut_ptr() as usize + n * std::mem::size_of::<E>()) / HUGE * HUGE;
        if end > start {
            // Safety: the range lies inside `v`'s allocation; MADV_HUGEPAGE (14) is advice only.
            unsafe { madvise(start as *mut _, end - start, 14) };
        }
    }
    v
}

/// One set of arrays: parameters and gradients per tensor, state packed per name.
struct Arrays<E> {
    p: Vec<Vec<f32>>,
    g: Vec<Vec<f32>>,
    state: [Vec<E>; 2],
}

impl<E: Copy + Default> Arrays<E> {
    fn new(sizes: &[usize], huge: bool) -> Self {
        let total = sizes.iter().sum();
        let filled = |n| {
            let mut v = allocate(n, huge);
            v.copy_from_slice(&data(n, 0.0));
            v
        };
        Arrays {
            p: sizes.iter().map(|&n| filled(n)).collect(),
            g: sizes.iter().map(|&n| filled(n)).collect(),
            state: [allocate(total, huge), allocate(total, huge)],
        }
    }
}

fn main() {
    let sizes = if std::env::var("SINGLE").is_ok() {
        vec![1 << 24]
    } else {
        transformer_sizes()
    };
    let (sets, rounds) = (env_or("S", 4), env_or("R", 60));
    ferroptim_core::set_num_threads(2).unwrap();
    let cfg = AdamConfig::default();
    let rounding = Rounding::Stochastic { seed: 0, stream: 0 };
    let huge = std::env::var("HUGE").is_ok();
    let mut roof: Vec<Arrays<f32>> = (0..sets).map(|_| Arrays::new(&sizes, huge)).collect();
    let mut bf16: Vec<Arrays<u16>> = (0..sets).map(|_| Arrays::new(&sizes, huge)).collect();
    // times[k]: sets 0..S the roofline's, S..2S bfloat16's.
    let mut times: Vec<Vec<f64>> = vec![vec![]; 2 * sets];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..rounds + 2 {
        let mut order: Vec<usize> = (0..2 * sets).collect();
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let step = round as u64 + 1;
        for k in order {
            let t0 = Instant::now();
            if k < sets {
                let a = &mut roof[k];
                let [s, _] = &mut a.state;
                let mut t: Vec<_> =
                    a.p.iter_mut()
                        .zip(&a.g)
                        .zip(views(s, &sizes))
                        .map(|((p, g), s)| TensorRef::new(p, g, step).with_state(s))
                        .collect();
                roofline_step(&mut t, 1).unwrap();
            } else {
                let a = &mut bf16[k - sets];
                let [m, v] = &mut a.state;
                let mut t: Vec<_> =
                    a.p.iter_mut()
                        .zip(&a.g)
                        .zip(views(m, &sizes).into_iter().zip(views(v, &sizes)))
                        .map(|((p, g), (m, v))| {
                            Bf16TensorRef::new(p, g, step, rounding)
                                .with_state(m)
                                .with_state(v)
                        })
                        .collect();
                adam_step_bf16(&mut t, &cfg).unwrap();
            }
            if round >= 2 {
                times[k].push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    let mut roof_all: Vec<f64> = times[..sets].concat();
    let roof_median = median(&mut roof_all);
    let elements: usize = sizes.iter().sum();
    println!("{elements} elements, {sets} sets per kernel, {rounds} rounds, medians:");
    for s in 0..sets {
        println!(
            "  set {s}: roofline {:6.2} ms, bf16 Adam {:6.2} ms = {:5.1}% of the roofline",
            medians[s],
            medians[sets + s],
            roof_median / medians[sets + s] * 100.0
        );
    }
    println!("  roofline over all its sets {roof_median:.2} ms");
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    if let Some(line) = rollup.lines().find(|l| l.starts_with("AnonHugePages")) {
        println!(
            "  {}",
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
}
