//! The memory roofline: a kernel that moves exactly the bytes of an optimizer step and does no
//! arithmetic, run through the same chunking, threads and dispatch as the optimizers.
//!
//! Per element it rotates the writable arrays (`p <- s0 <- s1 <- ... <- p xor g`): every array is
//! read once, every writable one written once, and the single bitwise XOR keeps the gradient load
//! live. An optimizer with `n_state` state arrays moves the same bytes as `roofline_step` with the
//! same `n_state`.
//!
//! [`read_pass`] is the limit of a reduction: it reads every element of a list of arrays once,
//! through the same chunks and parallel pass as the gradient norms (with the prefetching that
//! reads such a list fastest), and folds the bits with XOR on 64-bit words (no floating-point
//! work), so it runs at the read bandwidth of the memory the arrays live in.

use crate::clip::{chunk_partials, GradClip};
use crate::error::Error;
use crate::fused::{run, Decay, GradPrep, Update};
use crate::real::Real;
use crate::simd::{dispatch, prefetch, Kernel};
use crate::tensor::{TensorRef, MAX_STATE};

#[derive(Clone, Copy)]
struct Rotate<const S: usize>;

impl<T: Real, const S: usize> Update<T> for Rotate<S> {
    const STATES: usize = S;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let mixed = p.xor_bits(g);
        if S == 0 {
            return mixed;
        }
        const { assert!(S <= MAX_STATE && MAX_STATE == 3) };
        // Slot by slot, not `s[k - 1] = s[k]` in a loop: LLVM turned that loop into a memmove,
        // which for three f64 slots (16 bytes moved) kept `s` on the stack and left the whole
        // step scalar at every SIMD level (2.44 ms per step of 2^18 elements at AVX-512, one
        // thread; 0.40 ms slot by slot; measured under load).
        let out = s[0];
        if S > 1 {
            s[0] = s[1];
        }
        if S > 2 {
            s[1] = s[2];
        }
        s[S - 1] = mixed;
        out
    }
}

/// Move the bytes of one optimizer step with `n_state` state arrays per tensor (0 to 3).
pub fn roofline_step<T: Real>(
    tensors: &mut [TensorRef<'_, T>],
    n_state: usize,
) -> Result<(), Error> {
    let prep = GradPrep::new(false, Decay::None, &GradClip::NONE);
    match n_state {
        0 => run(tensors, prep, |_, _| Rotate::<0>),
        1 => run(tensors, prep, |_, _| Rotate::<1>),
        2 => run(tensors, prep, |_, _| Rotate::<2>),
        3 => run(tensors, prep, |_, _| Rotate::<3>),
        _ => Err(Error::StateCount {
            index: 0,
            got: n_state,
            expected: MAX_STATE,
        }),
    }
}

/// Read every element of `arrays` once and return the XOR of their bits, read as 64-bit words,
/// per chunk, then over the chunks (as an `f64` whose bits are meaningless; returned only so the
/// reads cannot be optimized away).
pub fn read_pass<T: Real>(arrays: &[&[T]]) -> f64 {
    // Two chunks at a time, each prefetching the matching chunk of the next pair into L2: of the
    // shapes tried (four chunks at a time, lines asked into L1 ahead of the fold, no prefetch),
    // the fastest read of a list too large for L2 (see `clip::lanes_sum`).
    let (_, partials) = chunk_partials::<T, 2>(arrays, |chunks, ahead| {
        let mut out = [0; 2];
        for ((x, ahead), out) in chunks.into_iter().zip(ahead).zip(&mut out) {
            dispatch(XorFold { x, ahead, out });
        }
        out.map(f64::from_bits)
    });
    f64::from_bits(partials.into_iter().fold(0, |acc, p| acc ^ p.to_bits()))
}

/// The XOR of the bits of one chunk, as 64-bit words (an unaligned element at either end is
/// widened to f64 first), one cache line at a time, each line also asking for the matching line
/// of `ahead` (the chunk read after the next) into L2.
struct XorFold<'a, T> {
    x: &'a [T],
    ahead: &'a [T],
    out: &'a mut u64,
}

/// 64-bit words per cache line.
const LINE_WORDS: usize = 8;

impl<T: Real> Kernel for XorFold<'_, T> {
    #[inline(always)]
    fn run(self) {
        // Safety: every bit pattern is a valid u64, and `align_to` only reinterprets the aligned
        // middle of the slice.
        let (head, words, tail) = unsafe { self.x.align_to::<u64>() };
        let (lines, rest) = words.as_chunks::<LINE_WORDS>();
        let per_line = 64 / T::BYTES;
        let mut acc = [0u64; LINE_WORDS];
        for (k, line) in lines.iter().enumerate() {
            if let Some(next) = self.ahead.get(k * per_line..(k + 1) * per_line) {
                prefetch(next);
            }
            for (a, &w) in acc.iter_mut().zip(line) {
                *a ^= w;
            }
        }
        let ends = head.iter().chain(tail).map(|v| v.to_f64().to_bits());
        let rest = rest.iter().copied().chain(ends);
        *self.out = acc.into_iter().chain(rest).fold(0, |a, w| a ^ w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_pass_folds_every_element_once() {
        // x ^ x = 0: an array read twice (or an element skipped) would leave bits behind.
        let a: Vec<f64> = (0..10_000).map(|i| i as f64 * 0.37).collect();
        let b = [1.5f64; 17];
        assert_eq!(read_pass(&[&a[..], &a[..], &b[..], &b[..]]).to_bits(), 0);
        let lone = read_pass(&[&b[..1]]);
        assert_eq!(lone.to_bits(), 1.5f64.to_bits());
    }

    #[test]
    fn rotate_moves_each_array_one_place() {
        fn check<T: Real + std::fmt::Debug>(x: impl Fn(f64) -> T) {
            let n = 37; // whole vectors and a tail at every level
            let value = |a: usize, i: usize| x((a * 100 + i) as f64);
            for n_state in 0..=MAX_STATE {
                let mut p: Vec<T> = (0..n).map(|i| value(0, i)).collect();
                let g: Vec<T> = vec![T::ZERO; n];
                let mut states: Vec<Vec<T>> = (1..=n_state)
                    .map(|a| (0..n).map(|i| value(a, i)).collect())
                    .collect();
                let mut t = TensorRef::new(&mut p, &g, 1);
                for s in states.iter_mut() {
                    t = t.with_state(s);
                }
                roofline_step(&mut [t], n_state).unwrap();
                // p <- s0 <- s1 <- ... <- p xor 0 = p.
                let arrays: Vec<&Vec<T>> = std::iter::once(&p).chain(&states).collect();
                for (a, got) in arrays.iter().enumerate() {
                    let from = (a + 1) % (n_state + 1);
                    let want: Vec<T> = (0..n).map(|i| value(from, i)).collect();
                    assert_eq!(**got, want, "array {a} of {n_state} states");
                }
            }
        }
        for level in crate::simd::supported_levels() {
            assert!(crate::simd::set_level(level));
            check(|v| v);
            check(|v| v as f32);
        }
        assert!(crate::simd::set_level(crate::simd::detected_level()));
    }
}
