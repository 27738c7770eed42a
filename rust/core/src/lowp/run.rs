//! The loop of the 8-bit optimizer steps, block by block of [`BLOCK`] elements: dequantize each
//! state array into float32 registers, apply the gradient steps every optimizer shares
//! (`fused.rs`), run the optimizer's element update exactly as for float32 state, then find the
//! block's new absmax and store it; the block's codes are written while the next block is
//! updated (in parts of [`PART`] elements, from a second set of buffers), so that the
//! quantization's gathers overlap the next update's arithmetic instead of waiting on the absmax.
//! (bfloat16 state needs no blocks: it is widened and narrowed per element inside `fused.rs`'s
//! loop, see [`super::bf16`].)
//!
//! The parameter update uses the float32 state before requantizing, so a step's parameter is the
//! one the float32 optimizer computes from the same (dequantized) state. Pieces handed to threads
//! start on block boundaries, so results are the same bits at every SIMD level and thread count.

use super::quant8::{self, QuantMap, Quantizer, BLOCK};
use super::tensor::Quant8TensorRef;
use crate::clip::clamp_value;
use crate::error::Error;
use crate::fused::{Decay, GradPrep, Target, Update};
use crate::pool::{for_each_piece, Splittable};
use crate::simd::{dispatch, prefetch_l1 as prefetch, Kernel};
use crate::tensor::MAX_STATE;

/// How state arrays are stored, and how one block is widened to and narrowed from float32.
trait Format: Sync {
    /// Raw pointers to one state array of a piece.
    type Slot: Copy;
    /// The slot `elements` further on (`elements` is a multiple of [`BLOCK`]).
    fn offset(slot: Self::Slot, elements: usize) -> Self::Slot;
    /// Widen the `out.len()` elements at `slot` of state `k`.
    ///
    /// Safety: `slot` points at `out.len()` elements of state `k` that no one else accesses.
    unsafe fn load(&self, k: usize, slot: Self::Slot, out: &mut [f32]);
    /// Start narrowing the block `values` into the elements at `slot`: store what the block
    /// shares (its scale) and return the scale [`Format::store_part`] narrows with, or store the
    /// whole block and return `None`.
    ///
    /// Safety: as [`Format::load`].
    unsafe fn store_begin(&self, k: usize, slot: Self::Slot, values: &[f32]) -> Option<f32>;
    /// Narrow `values`, elements `at..` of a block begun with [`Format::store_begin`], which
    /// returned `scale`.
    ///
    /// Safety: as [`Format::load`].
    unsafe fn store_part(&self, k: usize, slot: Self::Slot, scale: f32, values: &[f32], at: usize);
    /// Ask for the `elements` stored elements at `slot` to be brought into cache (a hint).
    ///
    /// Safety: `slot` points at `elements` elements of one state array.
    unsafe fn prefetch(slot: Self::Slot, elements: usize);
}

/// 8-bit blockwise state; `quant[k]` is state `k`'s map.
struct Quant8 {
    quant: [&'static Quantizer; MAX_STATE],
}

impl Format for Quant8 {
    /// Codes of the piece, absmax of its first block.
    type Slot = (*mut u8, *mut f32);
    fn offset((codes, absmax): Self::Slot, elements: usize) -> Self::Slot {
        (
            codes.wrapping_add(elements),
            absmax.wrapping_add(elements / BLOCK),
        )
    }
    #[inline(always)]
    unsafe fn load(&self, k: usize, (codes, absmax): Self::Slot, out: &mut [f32]) {
        let codes = std::slice::from_raw_parts(codes, out.len());
        self.quant[k].dequantize_block(codes, *absmax, out);
    }
    #[inline(always)]
    unsafe fn store_begin(
        &self,
        k: usize,
        (codes, absmax): Self::Slot,
        values: &[f32],
    ) -> Option<f32> {
        *absmax = quant8::absmax(values);
        let scale = Quantizer::block_scale(*absmax);
        if scale.is_none() {
            let codes = std::slice::from_raw_parts_mut(codes, values.len());
            self.quant[k].quantize_block(values, codes);
        }
        scale
    }
    #[inline(always)]
    unsafe fn store_part(
        &self,
        k: usize,
        (codes, _): Self::Slot,
        scale: f32,
        values: &[f32],
        at: usize,
    ) {
        let codes = std::slice::from_raw_parts_mut(codes.add(at), values.len());
        self.quant[k].quantize_scaled(values, scale, codes);
    }
    #[inline(always)]
    unsafe fn prefetch((codes, _): Self::Slot, elements: usize) {
        prefetch(std::slice::from_raw_parts(codes, elements));
    }
}

/// Blocks ahead of the one being updated whose arrays the loop prefetches.
const PREFETCH_BLOCKS: usize = 2;

/// A contiguous run of whole blocks of one tensor (the last may be partial), with its update.
///
/// Built only from the unique borrows of one tensor's arrays and cut only at block boundaries
/// into non-overlapping halves, so two pieces never touch the same element.
struct Piece<'a, F: Format, U> {
    param: *mut f32,
    grad: *const f32,
    slots: [F::Slot; MAX_STATE],
    len: usize,
    format: &'a F,
    prep: &'a GradPrep,
    op: U,
}

// Safety: a piece is a bundle of unique borrows of disjoint memory (see above), plus shared
// references to `Sync` data.
unsafe impl<F: Format, U: Send> Send for Piece<'_, F, U> {}

impl<F: Format, U: Clone + Send> Splittable for Piece<'_, F, U> {
    fn len(&self) -> usize {
        self.len
    }
    /// Cuts at `mid` rounded up to a whole block.
    fn split_at(self, mid: usize) -> (Self, Self) {
        let mid = (mid.div_ceil(BLOCK) * BLOCK).min(self.len);
        let right = Piece {
            param: self.param.wrapping_add(mid),
            grad: self.grad.wrapping_add(mid),
            slots: self.slots.map(|s| F::offset(s, mid)),
            len: self.len - mid,
            format: self.format,
            prep: self.prep,
            op: self.op.clone(),
        };
        (Piece { len: mid, ..self }, right)
    }
}

/// Elements per part of a block. A block's requantization runs in parts between the parts of the
/// next block's update, so that the core overlaps the two (the quantization's gathers and integer
/// work beside the update's square root and division). Measured in cache (one thread, under
/// load): 64, 128 and 256 give 1.44-1.47, 1.43 and 1.43 ns per element of an 8-bit Adam step,
/// 32 gives 1.50, against 1.53-1.57 for quantizing each block right after its update.
const PART: usize = 128;

/// Which of a piece's two sets of block buffers holds the block starting at element `start`
/// (blocks alternate, so a block is narrowed from one set while the next is updated in the other).
#[inline(always)]
fn buffer_of(start: usize) -> usize {
    start / BLOCK % 2
}

/// A block whose state is updated but not yet narrowed: its first element in the piece, its
/// length and each state's scale (`None`: already stored).
type Pending = (usize, usize, [Option<f32>; MAX_STATE]);

impl<F: Format, U: Update<f32>> Piece<'_, F, U> {
    /// Narrow elements `range` of the pending block, whose state is in `state`.
    #[inline(always)]
    fn store_parts(
        &self,
        (at, _, scales): &Pending,
        state: &[[f32; BLOCK]; MAX_STATE],
        range: std::ops::Range<usize>,
    ) {
        for (k, scale) in scales.iter().enumerate().take(U::STATES) {
            if let Some(scale) = *scale {
                // Safety: the pending block's elements belong to this piece alone, and state
                // `k < U::STATES` was checked to exist.
                unsafe {
                    self.format.store_part(
                        k,
                        F::offset(self.slots[k], *at),
                        scale,
                        &state[k][range.clone()],
                        range.start,
                    )
                };
            }
        }
    }
}

impl<F: Format, U: Update<f32>> Kernel for Piece<'_, F, U> {
    #[inline(always)]
    fn run(self) {
        // Two sets of block buffers for the whole piece, the block being updated and the one
        // being narrowed (every element is written before it is read), not zeroed per block.
        let mut buffers = [[[0f32; BLOCK]; MAX_STATE]; 2];
        let mut gp = [0f32; BLOCK];
        let mut pending: Option<Pending> = None;
        let mut start = 0;
        while start < self.len {
            let n = BLOCK.min(self.len - start);
            let ahead = start + PREFETCH_BLOCKS * BLOCK;
            if ahead < self.len {
                let m = BLOCK.min(self.len - ahead);
                // Safety: elements `ahead..ahead + m` of this piece's arrays belong to it, and no
                // one writes them while these shared views live (only the prefetch reads them).
                unsafe {
                    prefetch(std::slice::from_raw_parts(self.param.add(ahead), m));
                    prefetch(std::slice::from_raw_parts(self.grad.add(ahead), m));
                    for slot in &self.slots[..U::STATES] {
                        F::prefetch(F::offset(*slot, ahead), m);
                    }
                }
            }
            // Safety: elements `start..start + n` of this piece's arrays belong to it alone.
            let (p, g) = unsafe {
                (
                    std::slice::from_raw_parts_mut(self.param.add(start), n),
                    std::slice::from_raw_parts(self.grad.add(start), n),
                )
            };
            let [even, odd] = &mut buffers;
            let (s, previous) = if buffer_of(start) == 0 {
                (even, &*odd)
            } else {
                (odd, &*even)
            };
            for (k, block) in s.iter_mut().enumerate().take(U::STATES) {
                // Safety: as above; state `k < U::STATES` was checked to exist.
                unsafe {
                    self.format
                        .load(k, F::offset(self.slots[k], start), &mut block[..n])
                };
            }
            let g = prepare(self.prep, p, g, &mut gp[..n]);
            let [s0, s1, s2] = s;
            match pending.take() {
                Some(last) if n == BLOCK => {
                    for part in (0..BLOCK).step_by(PART) {
                        let r = part..part + PART;
                        update_block(
                            &self.op,
                            &mut p[r.clone()],
                            &g[r.clone()],
                            &mut s0[r.clone()],
                            &mut s1[r.clone()],
                            &mut s2[r.clone()],
                        );
                        self.store_parts(&last, previous, r);
                    }
                }
                last => {
                    if let Some(last) = last {
                        self.store_parts(&last, previous, 0..last.1);
                    }
                    update_block(&self.op, p, g, &mut s0[..n], &mut s1[..n], &mut s2[..n]);
                }
            }
            let s = [&s0[..n], &s1[..n], &s2[..n]];
            // A plain loop: a closure here would not be inlined into the SIMD-level caller.
            let mut scales = [None; MAX_STATE];
            for (k, scale) in scales.iter_mut().enumerate().take(U::STATES) {
                // Safety: as for `load`.
                *scale = unsafe {
                    self.format
                        .store_begin(k, F::offset(self.slots[k], start), s[k])
                };
            }
            pending = Some((start, n, scales));
            start += n;
        }
        if let Some(last) = pending {
            let state = &buffers[buffer_of(last.0)];
            self.store_parts(&last, state, 0..last.1);
        }
    }
}

/// The shared gradient steps of `fused.rs`, in its order: clamp, scale, then L2 decay into `out`
/// or decoupled decay of `p`. Returns the prepared gradient: `g` itself when no step changes it
/// (no copy), otherwise `out`.
#[inline(always)]
fn prepare<'a>(prep: &GradPrep, p: &mut [f32], g: &'a [f32], out: &'a mut [f32]) -> &'a [f32] {
    if let Decay::Decoupled(factor) = prep.decay {
        let factor = factor as f32;
        p.iter_mut().for_each(|pv| *pv *= factor);
    }
    let l2 = match prep.decay {
        Decay::L2(wd) => Some(wd as f32),
        _ => None,
    };
    if prep.clip_value.is_none() && prep.grad_scale == 1.0 && l2.is_none() {
        return g;
    }
    out.copy_from_slice(g);
    if let Some(c) = prep.clip_value {
        let c = c as f32;
        out.iter_mut().for_each(|x| *x = clamp_value(*x, c));
    }
    if prep.grad_scale != 1.0 {
        let scale = prep.grad_scale as f32;
        out.iter_mut().for_each(|x| *x *= scale);
    }
    if let Some(wd) = l2 {
        for (x, &pv) in out.iter_mut().zip(p.iter()) {
            *x += wd * pv;
        }
    }
    out
}

/// The optimizer's element update over one block of float32 registers.
#[inline(always)]
fn update_block<U: Update<f32>>(
    op: &U,
    p: &mut [f32],
    g: &[f32],
    s0: &mut [f32],
    s1: &mut [f32],
    s2: &mut [f32],
) {
    let n = p.len();
    let (g, s0, s1, s2) = (&g[..n], &mut s0[..n], &mut s1[..n], &mut s2[..n]);
    for i in 0..n {
        let mut s = [s0[i], s1[i], s2[i]];
        p[i] = op.update(p[i], g[i], &mut s);
        [s0[i], s1[i], s2[i]] = s;
    }
}

/// A tensor whose state is stored in format `Self::Format`.
trait LowpTensor {
    type Format: Format;
    fn step(&self) -> u64;
    fn len(&self) -> usize;
    /// How this tensor's state is stored (its random streams or maps).
    fn format(&self) -> Self::Format;
    /// Raw pointers to the parameter, the gradient and each state array.
    fn raw(
        &mut self,
    ) -> (
        *mut f32,
        *const f32,
        [<Self::Format as Format>::Slot; MAX_STATE],
    );
}

impl LowpTensor for Quant8TensorRef<'_> {
    type Format = Quant8;
    fn step(&self) -> u64 {
        self.step
    }
    fn len(&self) -> usize {
        self.param.len()
    }
    fn format(&self) -> Quant8 {
        Quant8 {
            quant: std::array::from_fn(|k| {
                Quantizer::get(self.state[k].as_ref().map_or(QuantMap::Signed, |s| s.map))
            }),
        }
    }
    fn raw(&mut self) -> (*mut f32, *const f32, [(*mut u8, *mut f32); MAX_STATE]) {
        let null = (std::ptr::null_mut(), std::ptr::null_mut());
        let slots = std::array::from_fn(|k| {
            self.state[k]
                .as_mut()
                .map_or(null, |s| (s.codes.as_mut_ptr(), s.absmax.as_mut_ptr()))
        });
        (self.param.as_mut_ptr(), self.grad.as_ptr(), slots)
    }
}

impl Target<f32> for &mut [Quant8TensorRef<'_>] {
    fn steps(&self) -> Vec<u64> {
        self.iter().map(LowpTensor::step).collect()
    }
    fn apply<U: Update<f32>>(
        self,
        prep: GradPrep,
        make_op: impl Fn(usize, u64) -> U,
    ) -> Result<(), Error> {
        for (index, t) in self.iter().enumerate() {
            t.check(index, U::STATES)?;
        }
        let formats: Vec<Quant8> = self.iter().map(LowpTensor::format).collect();
        let pieces = self
            .iter_mut()
            .enumerate()
            .filter(|(_, t)| t.len() > 0)
            .map(|(index, t)| {
                let (param, grad, slots) = t.raw();
                Piece {
                    param,
                    grad,
                    slots,
                    len: t.len(),
                    format: &formats[index],
                    prep: &prep,
                    op: make_op(index, t.step()),
                }
            })
            .collect();
        for_each_piece(pieces, dispatch);
        Ok(())
    }
}
