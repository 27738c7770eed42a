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
use crate::optim::adam::AdamOp;
use crate::pool::{for_each_piece, Splittable};
use crate::real::Real;
use crate::simd::{dispatch, prefetch_l1, Kernel};
use crate::tensor::{Lanes, TensorRef, MAX_STATE};

/// The element update of one optimizer. `p` and `g` arrive after the common gradient steps; the
/// first [`Update::STATES`] entries of `s` hold the state and are written back.
pub trait Update<T: Real>: Clone + Sync + Send {
    /// Number of state arrays the update reads and writes.
    const STATES: usize;
    /// Return the new parameter value.
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T;
    /// This update as plain Adam's scalars, if it is plain Adam (no amsgrad): storages with an
    /// explicit-vector Adam loop ([`Storage::adam_lead`]) run it from these.
    fn as_adam(&self) -> Option<AdamOp<T, false>> {
        None
    }
}

/// Weight decay as the optimizer applies it.
#[derive(Clone, Copy, Debug)]
pub enum Decay {
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
pub struct GradPrep {
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
    pub(crate) coeff: T,
    pub(crate) from_end: bool,
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
    pub(crate) lerp: Lerp<T>,
    pub(crate) beta2: T,
    pub(crate) one_minus_beta2: T,
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

/// How state elements are stored, and turned into `T` around the update: as `T` itself
/// ([`Plain`]), or narrower (bfloat16 bits, `lowp`).
pub(crate) trait Storage<T: Real>: Copy + Send + Sync {
    /// A stored state element.
    type Elem: Copy + Send;
    /// This storage for a run of elements whose indices in the tensor have high 32 bits `high`.
    fn run_at(self, high: u32) -> Self;
    /// The value of a stored element.
    fn load(self, x: Self::Elem) -> T;
    /// `value` stored as state `k` of the element whose index has low 32 bits `low`.
    fn store(self, k: usize, value: T, low: u32) -> Self::Elem;
    /// Plain Adam's update (after the common gradient steps `CLAMP`, `SCALE`, `DECAY` with
    /// `args`) on leading elements of `run` (element `i` has index low bits `run.low + i`), by an
    /// explicit-vector loop if this storage has one at the active SIMD level, giving the same bits
    /// as the element loop; returns how many elements it did.
    fn adam_lead<const CLAMP: bool, const SCALE: bool, const DECAY: u8>(
        self,
        _adam: &AdamOp<T, false>,
        _args: &Args<T>,
        _run: AdamRun<'_, T, Self::Elem>,
    ) -> usize {
        0
    }
}

/// The arrays of a run of elements for [`Storage::adam_lead`]: parameters, gradients and the two
/// moments (state elements `E`), and the low 32 bits of the first element's index.
pub(crate) struct AdamRun<'a, T, E> {
    pub(crate) low: u32,
    pub(crate) p: &'a mut [T],
    pub(crate) g: &'a [T],
    pub(crate) m: &'a mut [E],
    pub(crate) v: &'a mut [E],
}

/// State stored in the parameter's type.
#[derive(Clone, Copy)]
pub(crate) struct Plain;

impl<T: Real> Storage<T> for Plain {
    type Elem = T;
    #[inline(always)]
    fn run_at(self, _high: u32) -> Self {
        self
    }
    #[inline(always)]
    fn load(self, x: T) -> T {
        x
    }
    #[inline(always)]
    fn store(self, _k: usize, value: T, _low: u32) -> T {
        value
    }
}

/// A tensor as [`run_stored`] sees it: its arrays, and how its state is stored.
pub(crate) trait AsTensor<T: Real>: Send {
    /// The storage of the state elements.
    type Storage: Storage<T>;
    /// The arrays.
    fn tensor(&self) -> &TensorRef<'_, T, <Self::Storage as Storage<T>>::Elem>;
    /// The arrays as raw lanes for the fused loop.
    fn lanes(&mut self) -> Lanes<'_, T, <Self::Storage as Storage<T>>::Elem>;
    /// How this tensor's state is stored at its step.
    fn storage(&self) -> Self::Storage;
}

impl<T: Real> AsTensor<T> for TensorRef<'_, T> {
    type Storage = Plain;
    fn tensor(&self) -> &TensorRef<'_, T> {
        self
    }
    fn lanes(&mut self) -> Lanes<'_, T> {
        TensorRef::lanes(self)
    }
    fn storage(&self) -> Plain {
        Plain
    }
}

/// Where an optimizer's element update is applied: a list of tensors whose state is stored in the
/// parameter's type, or narrower and widened/narrowed around the update (`lowp`).
pub trait Target<T: Real> {
    /// The step count of each tensor.
    fn steps(&self) -> Vec<u64>;
    /// Check every tensor, then apply `make_op(index, step)`'s update after `prep` to each.
    fn apply<U: Update<T>>(
        self,
        prep: GradPrep,
        make_op: impl Fn(usize, u64) -> U,
    ) -> Result<(), Error>;
}

impl<T: Real, X: AsTensor<T>> Target<T> for &mut [X] {
    fn steps(&self) -> Vec<u64> {
        self.iter().map(|t| t.tensor().step).collect()
    }
    fn apply<U: Update<T>>(
        self,
        prep: GradPrep,
        make_op: impl Fn(usize, u64) -> U,
    ) -> Result<(), Error> {
        run_stored(self, prep, make_op)
    }
}

/// [`run_stored`] on tensors whose state is stored in the parameter's type.
pub(crate) fn run<T: Real, U: Update<T>>(
    tensors: &mut [TensorRef<'_, T>],
    prep: GradPrep,
    make_op: impl Fn(usize, u64) -> U,
) -> Result<(), Error> {
    run_stored(tensors, prep, make_op)
}

/// Check every tensor, then apply `make_op(index, step)`'s update to each. Nothing is written
/// unless every tensor passes its checks.
pub(crate) fn run_stored<T: Real, X: AsTensor<T>, U: Update<T>>(
    tensors: &mut [X],
    prep: GradPrep,
    make_op: impl Fn(usize, u64) -> U,
) -> Result<(), Error> {
    for (index, t) in tensors.iter().enumerate() {
        t.tensor().check(index, U::STATES)?;
    }
    let work: Vec<Piece<'_, T, U, X::Storage>> = tensors
        .iter_mut()
        .enumerate()
        .filter(|(_, t)| !t.tensor().is_empty())
        .map(|(index, t)| Piece {
            op: make_op(index, t.tensor().step),
            storage: t.storage(),
            first: 0,
            lanes: t.lanes(),
        })
        .collect();
    // Bytes the step reads: parameters, gradients and state.
    let read_bytes: usize = work
        .iter()
        .map(|piece| {
            let state = U::STATES * std::mem::size_of::<<X::Storage as Storage<T>>::Elem>();
            piece.lanes.len() * (2 * T::BYTES + state)
        })
        .sum();
    let args = Args {
        scale: T::from_f64(prep.grad_scale),
        wd: match prep.decay {
            Decay::None => T::ZERO,
            Decay::L2(wd) => T::from_f64(wd),
            Decay::Decoupled(factor) => T::from_f64(factor),
        },
        clip: T::from_f64(prep.clip_value.unwrap_or(0.0)),
        prefetch: prefetches(read_bytes),
    };
    // One monomorphization per combination of the common steps, so the loop carries no branch.
    if prep.clip_value.is_some() {
        with_scale::<T, U, X::Storage, true>(work, args, prep)
    } else {
        with_scale::<T, U, X::Storage, false>(work, args, prep)
    }
    Ok(())
}

/// [`Block::element`]'s decay step: none, L2 into the gradient, or decoupled from the parameter.
const NO_DECAY: u8 = 0;
pub(crate) const L2_DECAY: u8 = 1;
pub(crate) const DECOUPLED_DECAY: u8 = 2;

fn with_scale<T: Real, U: Update<T>, S: Storage<T>, const CLAMP: bool>(
    work: Vec<Piece<'_, T, U, S>>,
    args: Args<T>,
    prep: GradPrep,
) {
    if prep.grad_scale != 1.0 {
        with_decay::<T, U, S, CLAMP, true>(work, args, prep)
    } else {
        with_decay::<T, U, S, CLAMP, false>(work, args, prep)
    }
}

fn with_decay<T: Real, U: Update<T>, S: Storage<T>, const CLAMP: bool, const SCALE: bool>(
    work: Vec<Piece<'_, T, U, S>>,
    args: Args<T>,
    prep: GradPrep,
) {
    match prep.decay {
        Decay::None => execute::<T, U, S, CLAMP, SCALE, NO_DECAY>(work, args),
        Decay::L2(_) => execute::<T, U, S, CLAMP, SCALE, L2_DECAY>(work, args),
        Decay::Decoupled(_) => execute::<T, U, S, CLAMP, SCALE, DECOUPLED_DECAY>(work, args),
    }
}

/// Part of one tensor with the update to apply to it; `first` is the index of its first element
/// in the tensor.
struct Piece<'a, T: Real, U, S: Storage<T>> {
    lanes: Lanes<'a, T, S::Elem>,
    op: U,
    storage: S,
    first: u64,
}

/// Scalars of the common gradient steps, in the element type.
#[derive(Clone, Copy)]
pub(crate) struct Args<T> {
    pub(crate) scale: T,
    /// L2 coefficient, or the decoupled decay factor.
    pub(crate) wd: T,
    pub(crate) clip: T,
    /// Whether the loop prefetches ahead: the step reads at least [`PREFETCH_MIN_BYTES`].
    pub(crate) prefetch: bool,
}

/// Software prefetch in the fused loop. Runs of elements are taken [`PREFETCH_BLOCK_BYTES`] of
/// parameters at a time, and before each block, every array's elements [`PREFETCH_AHEAD_BYTES`]
/// of parameters further on are asked into L1: while the square roots and divisions of one
/// block keep the core busy, the memory system is already fetching later ones, which the
/// hardware prefetcher alone did not keep up (the update is too slow for its pace to be the
/// read's). Only for steps that read at least [`PREFETCH_MIN_BYTES`]: arrays that stay in L2
/// gain nothing, and the blocks and prefetches cost the lightest updates there.
///
/// Measured (2026-12-07, Rust harness, 2 threads, configurations interleaved in one process,
/// medians of 21 rounds, ns per element; float32): Adam on the transformer's 75 arrays 0.439 ->
/// 0.391 (momentum SGD 0.280 -> 0.266), on 2**24 elements 0.620 -> 0.579, on 262144 elements
/// 0.326 -> 0.322; on 16384 elements momentum SGD went 0.226 -> 0.290 (hence the minimum).
/// Float64 Adam on the transformer 2.377 -> 2.276 with the same distances in bytes. Farther
/// (4 KB ahead, 2 KB blocks) was slower than none; 64-element blocks cost momentum SGD 26% on
/// 65536 elements.
const PREFETCH_AHEAD_BYTES: usize = 2048;
/// See [`PREFETCH_AHEAD_BYTES`].
const PREFETCH_BLOCK_BYTES: usize = 1024;
/// See [`PREFETCH_AHEAD_BYTES`]: four times a core's 2 MB L2.
const PREFETCH_MIN_BYTES: usize = 8 << 20;

/// Whether a step that reads `read_bytes` prefetches (tests may force either way).
fn prefetches(read_bytes: usize) -> bool {
    #[cfg(test)]
    if let Some(forced) = prefetch_tests::forced() {
        return forced;
    }
    read_bytes >= PREFETCH_MIN_BYTES
}

#[cfg(test)]
#[path = "fused_prefetch_tests.rs"]
mod prefetch_tests;

/// Run every piece with the common steps fixed at compile time: `CLAMP` (value clipping), `SCALE`
/// (a gradient factor other than 1) and `DECAY` (`NO_DECAY`, `L2_DECAY` or `DECOUPLED_DECAY`).
fn execute<
    T: Real,
    U: Update<T>,
    S: Storage<T>,
    const CLAMP: bool,
    const SCALE: bool,
    const DECAY: u8,
>(
    work: Vec<Piece<'_, T, U, S>>,
    args: Args<T>,
) {
    for_each_piece(work, |piece| {
        dispatch(Block::<T, U, S, CLAMP, SCALE, DECAY> {
            lanes: piece.lanes,
            op: &piece.op,
            storage: piece.storage,
            first: piece.first,
            args,
        })
    });
}

impl<T: Real, U: Update<T>, S: Storage<T>> Splittable for Piece<'_, T, U, S> {
    fn len(&self) -> usize {
        self.lanes.len()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.lanes.split_at(mid);
        (
            Piece {
                lanes: a,
                op: self.op.clone(),
                storage: self.storage,
                first: self.first,
            },
            Piece {
                lanes: b,
                op: self.op,
                storage: self.storage,
                first: self.first + mid as u64,
            },
        )
    }
}

struct Block<
    'a,
    'o,
    T: Real,
    U,
    S: Storage<T>,
    const CLAMP: bool,
    const SCALE: bool,
    const DECAY: u8,
> {
    lanes: Lanes<'a, T, S::Elem>,
    op: &'o U,
    storage: S,
    first: u64,
    args: Args<T>,
}

impl<
        T: Real,
        U: Update<T>,
        S: Storage<T>,
        const CLAMP: bool,
        const SCALE: bool,
        const DECAY: u8,
    > Block<'_, '_, T, U, S, CLAMP, SCALE, DECAY>
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

    /// The loop proper: widen each state element, update, store it back. Taking the slices as
    /// arguments tells the compiler they do not alias, so it vectorizes without run-time overlap
    /// checks. Element `i` has index low bits `low + i` (for the storage's rounding). With
    /// `args.prefetch`, in blocks that each ask for later elements first
    /// ([`PREFETCH_AHEAD_BYTES`]).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn fused_loop(
        &self,
        storage: S,
        low: u32,
        p: &mut [T],
        g: &[T],
        s0: &mut [S::Elem],
        s1: &mut [S::Elem],
        s2: &mut [S::Elem],
    ) {
        let n = p.len();
        let g = &g[..n];
        let s0 = if U::STATES > 0 { &mut s0[..n] } else { s0 };
        let s1 = if U::STATES > 1 { &mut s1[..n] } else { s1 };
        let s2 = if U::STATES > 2 { &mut s2[..n] } else { s2 };
        let done = match self.op.as_adam() {
            Some(adam) if U::STATES == 2 => storage.adam_lead::<CLAMP, SCALE, DECAY>(
                &adam,
                &self.args,
                AdamRun {
                    low,
                    p,
                    g,
                    m: s0,
                    v: s1,
                },
            ),
            _ => 0,
        };
        if !self.args.prefetch {
            self.elements(storage, low, done, p, g, s0, s1, s2);
            return;
        }
        let ahead = PREFETCH_AHEAD_BYTES / T::BYTES;
        let block = PREFETCH_BLOCK_BYTES / T::BYTES;
        let mut start = done;
        while start < n {
            let end = n.min(start + block);
            // The elements `ahead` past this block's, into L1 (none past the end of the run).
            let (from, to) = (n.min(start + ahead), n.min(end + ahead));
            prefetch_l1(&p[from..to]);
            prefetch_l1(&g[from..to]);
            if U::STATES > 0 {
                prefetch_l1(&s0[from..to]);
            }
            if U::STATES > 1 {
                prefetch_l1(&s1[from..to]);
            }
            if U::STATES > 2 {
                prefetch_l1(&s2[from..to]);
            }
            self.elements(
                storage,
                low,
                start,
                &mut p[..end],
                &g[..end],
                window(s0, 0, end),
                window(s1, 0, end),
                window(s2, 0, end),
            );
            start = end;
        }
    }

    /// Elements `from..p.len()` of the slices, one by one. The slices are cut to the
    /// parameters' length here again, written out as in [`Self::fused_loop`]: through a shared
    /// helper returning the cut slices, momentum SGD's loop compiled to scalar code at AVX2
    /// (262 µs against 111 µs for 2**18 elements on one thread; `tools/simd_audit.py` found 36
    /// AVX2 trampolines without a 256-bit register).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn elements(
        &self,
        storage: S,
        low: u32,
        from: usize,
        p: &mut [T],
        g: &[T],
        s0: &mut [S::Elem],
        s1: &mut [S::Elem],
        s2: &mut [S::Elem],
    ) {
        let n = p.len();
        let g = &g[..n];
        let s0 = if U::STATES > 0 { &mut s0[..n] } else { s0 };
        let s1 = if U::STATES > 1 { &mut s1[..n] } else { s1 };
        let s2 = if U::STATES > 2 { &mut s2[..n] } else { s2 };
        for i in from..n {
            let mut s = [T::ZERO; MAX_STATE];
            if U::STATES > 0 {
                s[0] = storage.load(s0[i]);
            }
            if U::STATES > 1 {
                s[1] = storage.load(s1[i]);
            }
            if U::STATES > 2 {
                s[2] = storage.load(s2[i]);
            }
            p[i] = self.element(p[i], g[i], &mut s);
            let index = low.wrapping_add(i as u32);
            if U::STATES > 0 {
                s0[i] = storage.store(0, s[0], index);
            }
            if U::STATES > 1 {
                s1[i] = storage.store(1, s[1], index);
            }
            if U::STATES > 2 {
                s2[i] = storage.store(2, s[2], index);
            }
        }
    }
}

impl<
        T: Real,
        U: Update<T>,
        S: Storage<T>,
        const CLAMP: bool,
        const SCALE: bool,
        const DECAY: u8,
    > Kernel for Block<'_, '_, T, U, S, CLAMP, SCALE, DECAY>
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
        // Runs of elements whose indices share their high 32 bits (one run unless the piece
        // crosses a multiple of 2^32), so the loop sees the index as a 32-bit lane.
        let n = param.len();
        let mut start = 0;
        while start < n {
            let at = self.first + start as u64;
            let room = (1u64 << 32) - (at & 0xffff_ffff);
            let end = n.min(start.saturating_add(usize::try_from(room).unwrap_or(usize::MAX)));
            self.fused_loop(
                self.storage.run_at((at >> 32) as u32),
                at as u32,
                &mut param[start..end],
                &grad[start..end],
                window(s0, start, end),
                window(s1, start, end),
                window(s2, start, end),
            );
            start = end;
        }
    }
}

/// Elements `start..end` of a state array (an unused, empty one stays empty).
#[inline(always)]
fn window<E>(s: &mut [E], start: usize, end: usize) -> &mut [E] {
    s.get_mut(start..end).unwrap_or_default()
}
