//! The memory roofline: a kernel that moves exactly the bytes of an optimizer step and does no
//! arithmetic, run through the same chunking, threads and dispatch as the optimizers.
//!
//! Per element it rotates the writable arrays (`p <- s0 <- s1 <- ... <- p xor g`): every array is
//! read once, every writable one written once, and the single bitwise XOR keeps the gradient load
//! live. An optimizer with `n_state` state arrays moves the same bytes as `roofline_step` with the
//! same `n_state`.

use crate::clip::GradClip;
use crate::error::Error;
use crate::fused::{run, Decay, GradPrep, Update};
use crate::real::Real;
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
        let out = s[0];
        for k in 1..S {
            s[k - 1] = s[k];
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

/// Bytes one step moves per element: read param, grad and state, write param and state.
pub fn bytes_per_element<T: Real>(n_state: usize) -> usize {
    (3 + 2 * n_state) * T::BYTES
}
