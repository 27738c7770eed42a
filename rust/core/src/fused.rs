//! The one loop every optimizer runs: read each element of param, grad and state once, update it,
//! write it once.
//!
//! An optimizer supplies only its element update ([`Update`]) and per-tensor scalars. This module
//! applies the steps common to all of them, in torch's order:
//! `g = clamp(grad, -clip_value, clip_value)` (value clipping, when set), then
//! `g = g * grad_scale` (norm clipping and maximize fold into the scale), then either
//! L2 decay `g = g + weight_decay * p` or decoupled decay `p = p * (1 - lr * weight_decay)`,
//! then the optimizer's own update.
//!
//! The loop takes the arrays as separate slice arguments, so the compiler knows they do not alias
//! and vectorizes the update at every SIMD level.

use crate::clip::{clamp_value, GradClip};
use crate::error::Error;
use crate::pool::{for_each_piece, Splittable};
use crate::real::Real;
use crate::simd::{dispatch, Kernel};
use crate::tensor::{Lanes, TensorRef, MAX_STATE};

/// The element update of one optimizer. `p` and `g` arrive after the common gradient steps; the
/// first [`Update::STATES`] entries of `s` hold the state and are written back.
pub(crate) trait Update<T: Real>: Clone + Sync + Send {
    /// Number of state arrays the update reads and writes.
    const STATES: usize;
    /// Return the new parameter value.
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T;
}

/// Weight decay as the optimizer applies it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Decay {
    /// No weight decay.
    None,
    /// L2 penalty folded into the gradient: `g + weight_decay * p`.
    L2(f64),
    /// Decoupled: `p * factor` with `factor = 1 - lr * weight_decay`, before the update.
    Decoupled(f64),
}

impl Decay {
    /// The decay torch applies for `weight_decay` (none when it is 0).
    pub(crate) fn new(weight_decay: f64, decoupled: bool, lr: f64) -> Self {
        match (weight_decay == 0.0, decoupled) {
            (true, _) => Decay::None,
            (false, false) => Decay::L2(weight_decay),
            (false, true) => Decay::Decoupled(1.0 - lr * weight_decay),
        }
    }
}

/// The gradient steps shared by all optimizers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradPrep {
    /// Multiplies every gradient element: the clip coefficient, negated for maximize.
    pub grad_scale: f64,
    /// Clamp bound applied before the scale.
    pub clip_value: Option<f64>,
    pub decay: Decay,
}

impl GradPrep {
    pub(crate) fn new(maximize: bool, decay: Decay, clip: &GradClip) -> Self {
        GradPrep {
            grad_scale: if maximize { -clip.scale } else { clip.scale },
            clip_value: clip.clip_value,
            decay,
        }
    }
}

/// torch's `lerp_(end, weight)`: `start + w * (end - start)` when `w < 0.5`, else
/// `end - (end - start) * (1 - w)`; both written as `base + coeff * (end - start)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lerp<T> {
    coeff: T,
    from_end: bool,
}

impl<T: Real> Lerp<T> {
    pub(crate) fn new(weight: f64) -> Self {
        if weight < 0.5 {
            Lerp {
                coeff: T::from_f64(weight),
                from_end: false,
            }
        } else {
            Lerp {
                coeff: -T::from_f64(1.0 - weight),
                from_end: true,
            }
        }
    }

    #[inline(always)]
    pub(crate) fn apply(&self, start: T, end: T) -> T {
        let base = if self.from_end { end } else { start };
        base + self.coeff * (end - start)
    }
}

/// Adam's two moments, kept in state slots 0 and 1: `m = lerp(m, g, 1 - beta1)` and
/// `v = v * beta2 + ((1 - beta2) * x) * x` (`x = g` in Adam, NAdam and RAdam; AdaBelief feeds
/// `g - m`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamMoments<T> {
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
}

impl<T: Real> AdamMoments<T> {
    pub(crate) fn new(beta1: f64, beta2: f64) -> Self {
        AdamMoments {
            lerp: Lerp::new(1.0 - beta1),
            beta2: T::from_f64(beta2),
            one_minus_beta2: T::from_f64(1.0 - beta2),
        }
    }

    /// The new first moment `lerp(m, g, 1 - beta1)`.
    #[inline(always)]
    pub(crate) fn first(&self, m: T, g: T) -> T {
        self.lerp.apply(m, g)
    }

    /// The new second moment `v * beta2 + ((1 - beta2) * x) * x`.
    #[inline(always)]
    pub(crate) fn second(&self, v: T, x: T) -> T {
        v * self.beta2 + (self.one_minus_beta2 * x) * x
    }

    /// Both moments of gradient `g` written to `s[0]` and `s[1]`; returns the new `(m, v)`.
    #[inline(always)]
    pub(crate) fn update(&self, g: T, s: &mut [T; MAX_STATE]) -> (T, T) {
        let m = self.first(s[0], g);
        let v = self.second(s[1], g);
        s[0] = m;
        s[1] = v;
        (m, v)
    }
}

/// Where an optimizer's element update is applied: float state in place ([`run`], for
/// `&mut [TensorRef]`), or low-precision state widened and narrowed around it (`lowp`).
pub(crate) trait Target<T: Real> {
    /// Check every tensor, then apply `make_op(index, step)`'s update after `prep` to each.
    fn apply<U: Update<T>>(
        self,
        prep: GradPrep,
        make_op: impl Fn(usize, u64) -> U,
    ) -> Result<(), Error>;
}

impl<T: Real> Target<T> for &mut [TensorRef<'_, T>] {
    fn apply<U: Update<T>>(
        self,
        prep: GradPrep,
        make_op: impl Fn(usize, u64) -> U,
    ) -> Result<(), Error> {
        run(self, prep, make_op)
    }
}

/// Check every tensor, then apply `make_op(index, step)`'s update to each. Nothing is written unless every
/// tensor passes its checks.
pub(crate) fn run<T: Real, U: Update<T>>(
    tensors: &mut [TensorRef<'_, T>],
    prep: GradPrep,
    make_op: impl Fn(usize, u64) -> U,
) -> Result<(), Error> {
    for (index, t) in tensors.iter().enumerate() {
        t.check(index, U::STATES)?;
    }
    let work: Vec<Piece<'_, T, U>> = tensors
        .iter_mut()
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .map(|(index, t)| Piece {
            op: make_op(index, t.step),
            lanes: t.lanes(),
        })
        .collect();
    let args = Args {
        scale: T::from_f64(prep.grad_scale),
        wd: match prep.decay {
            Decay::None => T::ZERO,
            Decay::L2(wd) => T::from_f64(wd),
            Decay::Decoupled(factor) => T::from_f64(factor),
        },
        clip: T::from_f64(prep.clip_value.unwrap_or(0.0)),
    };
    // One monomorphization per combination of the common steps, so the loop carries no branch.
    if prep.clip_value.is_some() {
        with_scale::<T, U, true>(work, args, prep)
    } else {
        with_scale::<T, U, false>(work, args, prep)
    }
    Ok(())
}

/// [`Block::element`]'s decay step: none, L2 into the gradient, or decoupled from the parameter.
const NO_DECAY: u8 = 0;
const L2_DECAY: u8 = 1;
const DECOUPLED_DECAY: u8 = 2;

fn with_scale<T: Real, U: Update<T>, const CLAMP: bool>(
    work: Vec<Piece<'_, T, U>>,
    args: Args<T>,
    prep: GradPrep,
) {
    if prep.grad_scale != 1.0 {
        with_decay::<T, U, CLAMP, true>(work, args, prep)
    } else {
        with_decay::<T, U, CLAMP, false>(work, args, prep)
    }
}

fn with_decay<T: Real, U: Update<T>, const CLAMP: bool, const SCALE: bool>(
    work: Vec<Piece<'_, T, U>>,
    args: Args<T>,
    prep: GradPrep,
) {
    match prep.decay {
        Decay::None => execute::<T, U, CLAMP, SCALE, NO_DECAY>(work, args),
        Decay::L2(_) => execute::<T, U, CLAMP, SCALE, L2_DECAY>(work, args),
        Decay::Decoupled(_) => execute::<T, U, CLAMP, SCALE, DECOUPLED_DECAY>(work, args),
    }
}

/// Part of one tensor with the update to apply to it.
struct Piece<'a, T, U> {
    lanes: Lanes<'a, T>,
    op: U,
}

/// Scalars of the common gradient steps, in the element type.
#[derive(Clone, Copy)]
struct Args<T> {
    scale: T,
    /// L2 coefficient, or the decoupled decay factor.
    wd: T,
    clip: T,
}

/// Run every piece with the common steps fixed at compile time: `CLAMP` (value clipping), `SCALE`
/// (a gradient factor other than 1) and `DECAY` (`NO_DECAY`, `L2_DECAY` or `DECOUPLED_DECAY`).
fn execute<T: Real, U: Update<T>, const CLAMP: bool, const SCALE: bool, const DECAY: u8>(
    work: Vec<Piece<'_, T, U>>,
    args: Args<T>,
) {
    for_each_piece(work, |piece| {
        dispatch(Block::<T, U, CLAMP, SCALE, DECAY> {
            lanes: piece.lanes,
            op: &piece.op,
            args,
        })
    });
}

impl<T: Real, U: Update<T>> Splittable for Piece<'_, T, U> {
    fn len(&self) -> usize {
        self.lanes.len()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.lanes.split_at(mid);
        (
            Piece {
                lanes: a,
                op: self.op.clone(),
            },
            Piece {
                lanes: b,
                op: self.op,
            },
        )
    }
}

struct Block<'a, 'o, T, U, const CLAMP: bool, const SCALE: bool, const DECAY: u8> {
    lanes: Lanes<'a, T>,
    op: &'o U,
    args: Args<T>,
}

impl<T: Real, U: Update<T>, const CLAMP: bool, const SCALE: bool, const DECAY: u8>
    Block<'_, '_, T, U, CLAMP, SCALE, DECAY>
{
    #[inline(always)]
    fn element(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let mut g = g;
        if CLAMP {
            g = clamp_value(g, self.args.clip);
        }
        if SCALE {
            g = g * self.args.scale;
        }
        let p = match DECAY {
            L2_DECAY => {
                g = g + self.args.wd * p;
                p
            }
            DECOUPLED_DECAY => p * self.args.wd,
            _ => p,
        };
        self.op.update(p, g, s)
    }
}

impl<T: Real, U: Update<T>, const CLAMP: bool, const SCALE: bool, const DECAY: u8> Kernel
    for Block<'_, '_, T, U, CLAMP, SCALE, DECAY>
{
    #[inline(always)]
    fn run(mut self) {
        // Safety: each slice is taken once from this piece's lanes, which no one else holds, and
        // state k is taken only for k < U::STATES, the tensor's checked state count.
        let (param, s0, s1, s2) = unsafe {
            (
                self.lanes.param(),
                if U::STATES > 0 {
                    self.lanes.state(0)
                } else {
                    &mut []
                },
                if U::STATES > 1 {
                    self.lanes.state(1)
                } else {
                    &mut []
                },
                if U::STATES > 2 {
                    self.lanes.state(2)
                } else {
                    &mut []
                },
            )
        };
        let grad = self.lanes.grad();
        self.fused_loop(param, grad, s0, s1, s2);
    }
}

impl<T: Real, U: Update<T>, const CLAMP: bool, const SCALE: bool, const DECAY: u8>
    Block<'_, '_, T, U, CLAMP, SCALE, DECAY>
{
    /// The loop proper. Taking the slices as arguments tells the compiler they do not alias, so it
    /// vectorizes without run-time overlap checks.
    #[inline(always)]
    fn fused_loop(&self, p: &mut [T], g: &[T], s0: &mut [T], s1: &mut [T], s2: &mut [T]) {
        let n = p.len();
        let g = &g[..n];
        let s0 = if U::STATES > 0 { &mut s0[..n] } else { s0 };
        let s1 = if U::STATES > 1 { &mut s1[..n] } else { s1 };
        let s2 = if U::STATES > 2 { &mut s2[..n] } else { s2 };
        for i in 0..n {
            let mut s = [T::ZERO; MAX_STATE];
            if U::STATES > 0 {
                s[0] = s0[i];
            }
            if U::STATES > 1 {
                s[1] = s1[i];
            }
            if U::STATES > 2 {
                s[2] = s2[i];
            }
            p[i] = self.element(p[i], g[i], &mut s);
            if U::STATES > 0 {
                s0[i] = s[0];
            }
            if U::STATES > 1 {
                s1[i] = s[1];
            }
            if U::STATES > 2 {
                s2[i] = s[2];
            }
        }
    }
}
