//! Gradient clipping (torch.nn.utils semantics): norms, scaling and clamping of gradient lists.
//!
//! Norms are accumulated in f64 whatever the element type. Each tensor is cut into chunks of
//! [`NORM_CHUNK`] elements at fixed offsets; a chunk is summed into [`LANES`] explicit accumulators
//! (element `i` of the chunk goes to lane `i % LANES`, in order), the lanes are added in order, then
//! the chunks of a tensor, then the tensors, all in order. The association is written out in the
//! code, so the result has the same bits at every SIMD level and for any number of threads.
//!
//! Speed (none of it changes a bit): all tensors' chunks form one list, split over the threads
//! in one parallel pass (no per-tensor fork or join); chunks are summed [`GROUP`] at a time, each
//! with its own lanes, and each chunk's lines are asked into L1 a few hundred bytes ahead of the
//! fold (see [`GROUP`] for why, with the measured figures); a float32 square goes into a fused
//! multiply-add where the level has one (the square is exact in f64, so it rounds once either
//! way); with a clamp, each 16-element block is clamped whole before it is folded (so both loops
//! vectorize whole).
//!
//! `clip_coef(max_norm, total) = min(max_norm / (total + 1e-6), 1)`, NaN if `total` is NaN.

use crate::error::Error;
use crate::pool::{for_each_piece, map_indexed, Splittable};
use crate::real::Real;
use crate::simd::{dispatch, Kernel};

/// Elements per chunk of a norm (fixed, so chunk boundaries never depend on threads).
pub const NORM_CHUNK: usize = 4096;
/// Accumulators per chunk.
pub const LANES: usize = 16;

/// Gradient clipping applied inside an optimizer step: each gradient element is first clamped
/// into `[-clip_value, clip_value]` (when set), then multiplied by `scale` (a norm-clipping
/// coefficient from [`clip_coef`]; 1 for none). The caller's gradient arrays are not written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradClip {
    /// Factor applied to every gradient element.
    pub scale: f64,
    /// Clamp bound, if any.
    pub clip_value: Option<f64>,
}

impl GradClip {
    /// No clipping.
    pub const NONE: GradClip = GradClip {
        scale: 1.0,
        clip_value: None,
    };

    /// Check `clip_value >= 0` (finite); `scale` may be anything, NaN included, as in torch.
    pub fn validate(&self) -> Result<(), Error> {
        match self.clip_value {
            Some(c) if !(c >= 0.0 && c.is_finite()) => Err(Error::InvalidHyperparameter {
                name: "clip_value",
                value: c,
                expected: "clip_value >= 0",
            }),
            _ => Ok(()),
        }
    }
}

impl Default for GradClip {
    fn default() -> Self {
        GradClip::NONE
    }
}

/// Which norm: `sum |x|^p` to the power `1/p`, or the maximum of `|x|` for `Inf`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormType {
    /// Sum of absolute values.
    L1,
    /// Euclidean norm.
    L2,
    /// Largest absolute value.
    Inf,
    /// Any `p > 0`.
    P(f64),
}

impl NormType {
    /// The norm for torch's `norm_type` argument; `p` must be positive (or +inf).
    pub fn from_p(p: f64) -> Result<Self, Error> {
        if p == 1.0 {
            Ok(NormType::L1)
        } else if p == 2.0 {
            Ok(NormType::L2)
        } else if p == f64::INFINITY {
            Ok(NormType::Inf)
        } else if p > 0.0 && p.is_finite() {
            Ok(NormType::P(p))
        } else {
            Err(Error::InvalidHyperparameter {
                name: "norm_type",
                value: p,
                expected: "norm_type > 0 (or inf)",
            })
        }
    }

    /// Combine two partial results (sums, or maxima for `Inf`), NaN-propagating.
    fn merge(self, a: f64, b: f64) -> f64 {
        match self {
            NormType::Inf => Real::maximum(a, b),
            _ => a + b,
        }
    }

    /// The norm from the combined partial result of every element.
    pub fn finish(self, partial: f64) -> f64 {
        match self {
            NormType::L1 | NormType::Inf => partial,
            NormType::L2 => partial.sqrt(),
            NormType::P(p) => partial.powf(1.0 / p),
        }
    }
}

/// Chunks handed to one kernel call, summed side by side at AVX-512 (two at a time at the levels
/// with 16 vector registers, whose 16 lanes per chunk would otherwise spill), each keeping its
/// own lanes and order (so the same bits), each asking for its own cache lines into L1
/// `L1_AHEAD_BYTES` (512) ahead of the fold, with no prefetch of the next group.
///
/// Measured (float32 L2 norm against `roofline::read_pass` of the same bytes, Rust harness
/// `examples/norm_timing.rs`, interleaved rounds, minima, under load; 13.7M elements as one
/// array, as the transformer's 75 views of it, or as 75 separate arrays, 1 and 2 threads): two
/// chunks at a time, each pair prefetching the next pair into L2 (the read's own scheme), the
/// norm ran at 88-93% of the read. It is not short of arithmetic (from L1, convert-and-square
/// runs at 16.7 elements/ns on one core, 2.5 times the read's 6.5 from memory; measured in C):
/// it issues its loads later, presumably because each 16 elements are four vector instructions
/// (six micro-ops) waiting on their loads where the read has one. With the lines asked into L1
/// 512 bytes ahead and four chunks side by side, it runs at 98-103% of the read on all three
/// layouts (1 KB ahead: 97-104%; 2 KB: 94-100%; two chunks side by side: 96-97%; four with the
/// L2 prefetch kept: 88-98%; eight: 96-101%), and at 88-94% on an array that fits in L2 (82-85%
/// before). At AVX2, two at a time with the same L1 prefetch: 103-109% of the read (98-101%
/// before), clamped 79-82% (80-83%); at SSE2 74-77% (64-69%), clamped 42-44% (44-48%): both are
/// compute-bound there.
pub const GROUP: usize = 4;

/// Bytes ahead of the fold at which each chunk's cache lines are asked into L1 (see [`GROUP`]).
const L1_AHEAD_BYTES: usize = 512;

/// The partial results of [`GROUP`] chunks (some may be empty; their result is then 0).
///
/// The chunks are summed together: each keeps its own [`LANES`] accumulators and element order,
/// so each result has the bits it would have alone, while the chunks' accumulator chains
/// interleave.
struct ChunkNorms<'a, T> {
    chunks: [&'a [T]; GROUP],
    norm: NormType,
    clamp: Option<T>,
    out: &'a mut [f64; GROUP],
}

impl<T: Real> Kernel for ChunkNorms<'_, T> {
    #[inline(always)]
    fn run(self) {
        let level = crate::simd::level();
        // A float32 value widened to f64 has 24 significant bits, so its square (48 bits) is
        // exact in f64 and `acc + v * v` rounds once: a fused multiply-add gives the same bits
        // with one instruction fewer, where the level has one (elsewhere `mul_add` would be a
        // slow library call; the bits are the same either way).
        let fused = T::BYTES == 4 && level.has_fused_multiply_add();
        // Four chunks' lanes are 16 vector registers at AVX-512 (of 32), but all 16 at AVX2 and
        // 32 (of 16) at SSE2: there, four side by side spilled lanes to the stack every block
        // (float32 norm at 55% of a read at AVX2, one thread), so two at a time (104-109%).
        *self.out = if level == crate::simd::SimdLevel::Avx512 {
            self.sums(self.chunks, fused)
        } else {
            let [a, b, c, d] = self.chunks;
            let ([ra, rb], [rc, rd]) = (self.sums([a, b], fused), self.sums([c, d], fused));
            [ra, rb, rc, rd]
        };
    }
}

impl<T: Real> ChunkNorms<'_, T> {
    /// The results of `N` chunks summed side by side.
    #[inline(always)]
    fn sums<const N: usize>(&self, x: [&[T]; N], fused: bool) -> [f64; N] {
        // One loop per (norm, clamp) pair, so no branch stays inside the loop.
        match self.clamp {
            None => self.norm.sum(x, |v| v, fused),
            // The clamp is applied to a whole block before the block is folded: clamped
            // element by element inside the fold, the block vectorized in odd pieces (4 + 2 +
            // 2 + 8 elements) and the clamped float32 norm ran at 58% of a read.
            Some(c) => self.norm.sum(x, move |v| clamp_value(v, c), fused),
        }
    }
}

impl NormType {
    /// [`lanes_sum`] of this norm's terms of `pre(v)` (`fused`: a float32 L2 by multiply-add).
    #[inline(always)]
    fn sum<T: Real, const N: usize>(
        self,
        x: [&[T]; N],
        pre: impl Fn(T) -> T + Copy,
        fused: bool,
    ) -> [f64; N] {
        let add = |a: f64, b: f64| a + b;
        match self {
            NormType::L2 if fused => lanes_sum(x, pre, |acc, v| square_add(acc, v), add),
            NormType::L2 => lanes_sum(x, pre, step(|v| v * v, add), add),
            NormType::L1 => lanes_sum(x, pre, step(f64::abs, add), add),
            // The largest |v| is exact in the input's type and widening keeps the order (and the
            // first NaN's payload): the lanes stay in `T`, without a conversion per element.
            NormType::Inf => lanes_sum(x, pre, |acc: T, v: T| acc.maximum(v.abs()), Real::maximum),
            NormType::P(p) => lanes_sum(x, pre, step(|v| v.abs().powf(p), add), add),
        }
    }
}

/// One accumulation step, `acc = merge(acc, term(v))` with `v` widened to f64.
#[inline(always)]
fn step<T: Real>(
    term: impl Fn(f64) -> f64 + Copy,
    merge: impl Fn(f64, f64) -> f64 + Copy,
) -> impl Fn(f64, T) -> f64 + Copy {
    move |acc, v| merge(acc, term(v.to_f64()))
}

/// `acc + v * v` as one fused multiply-add (the same bits when `v * v` is exact in f64).
#[inline(always)]
fn square_add<T: Real>(acc: f64, v: T) -> f64 {
    let v = v.to_f64();
    v.mul_add(v, acc)
}

/// For each of the chunks: fold it into [`LANES`] accumulators (element `i`, mapped by `pre`,
/// into lane `i % LANES` by `step`, in order), then fold the lanes in order with `merge`. The
/// blocks all chunks have are processed side by side, then each chunk's rest alone; no lane's
/// order changes, so each chunk's result does not depend on the others.
///
/// The shape (`N` chunks side by side, lines into L1 ahead, no L2 prefetch) is explained at
/// [`GROUP`].
#[inline(always)]
fn lanes_sum<T: Real, A: Real, const N: usize>(
    chunks: [&[T]; N],
    pre: impl Fn(T) -> T + Copy,
    step: impl Fn(A, T) -> A + Copy,
    merge: impl Fn(f64, f64) -> f64 + Copy,
) -> [f64; N] {
    let all = chunks.iter().map(|c| c.len()).min().unwrap_or(0) / LANES;
    let blocks: [&[[T; LANES]]; N] = chunks.map(|c| c[..all * LANES].as_chunks().0);
    // Cut to `all` again so that the compiler sees every `block[k]` below is in bounds (a check
    // per block cost the clamped norm about 3% at AVX2, where it is compute-bound).
    let blocks: [&[[T; LANES]]; N] = blocks.map(|b| &b[..all]);
    let mut lanes = [[A::ZERO; LANES]; N];
    let near = L1_AHEAD_BYTES.div_ceil(LANES * T::BYTES);
    let steady = all.saturating_sub(near);
    for k in 0..steady {
        for chunk in &blocks {
            crate::simd::prefetch_l1(&chunk[k + near]);
        }
        fold_blocks(&mut lanes, &blocks, k, pre, step);
    }
    for k in steady..all {
        fold_blocks(&mut lanes, &blocks, k, pre, step);
    }
    let mut out = [0.0; N];
    for ((out, lanes), chunk) in out.iter_mut().zip(lanes).zip(chunks) {
        *out = finish_lanes(lanes, &chunk[all * LANES..], pre, step, merge);
    }
    out
}

/// Block `k` of each chunk into that chunk's lanes ([`fold_block`]).
#[inline(always)]
fn fold_blocks<T: Real, A: Real, const N: usize>(
    lanes: &mut [[A; LANES]; N],
    blocks: &[&[[T; LANES]]; N],
    k: usize,
    pre: impl Fn(T) -> T + Copy,
    step: impl Fn(A, T) -> A + Copy,
) {
    for (lanes, chunk) in lanes.iter_mut().zip(blocks) {
        fold_block(lanes, &chunk[k], pre, step);
    }
}

/// Fold the rest of a chunk into its lanes (element `k` of `rest` into lane `k % LANES`; `rest`
/// starts at a multiple of [`LANES`]), then the lanes in order with `merge`.
///
/// A plain inlined function, not a closure passed to `<[_; 2]>::map`: through that closure, each
/// chunk paired with a shorter one (a bias next to a weight matrix) cost about 10 µs instead of
/// about 1 (measured: 0.25 ms per call on the transformer list, which has 24 such pairs), which
/// made a list of many tensors 10% slower than the same bytes in one array.
#[inline(always)]
fn finish_lanes<T: Real, A: Real>(
    mut lanes: [A; LANES],
    rest: &[T],
    pre: impl Fn(T) -> T + Copy,
    step: impl Fn(A, T) -> A + Copy,
    merge: impl Fn(f64, f64) -> f64,
) -> f64 {
    let (blocks, tail) = rest.as_chunks::<LANES>();
    for block in blocks {
        fold_block(&mut lanes, block, pre, step);
    }
    fold_block(&mut lanes, tail, pre, step);
    lanes.into_iter().map(A::to_f64).fold(0.0, merge)
}

/// `lanes[k] = step(lanes[k], pre(x[k]))` for each element `k` of `x` (at most [`LANES`]):
/// `pre` over the whole block first, then `step`, two loops that each vectorize whole.
#[inline(always)]
fn fold_block<T: Real, A: Real>(
    lanes: &mut [A; LANES],
    x: &[T],
    pre: impl Fn(T) -> T,
    step: impl Fn(A, T) -> A,
) {
    let mut mapped = [T::ZERO; LANES];
    for (m, &v) in mapped.iter_mut().zip(x) {
        *m = pre(v);
    }
    for (lane, &v) in lanes.iter_mut().zip(&mapped[..x.len()]) {
        *lane = step(*lane, v);
    }
}

/// `clamp(v, -c, c)`, NaN unchanged (torch.clamp), for `c >= 0`.
///
/// Two selects, each of which keeps `v` when the comparison is false (NaN): they vectorize to one
/// maximum and one minimum instruction where the level has them.
#[inline(always)]
pub(crate) fn clamp_value<T: Real>(v: T, c: T) -> T {
    let low = if v < -c { -c } else { v };
    if low > c {
        c
    } else {
        low
    }
}

/// Per-tensor partial results (`sum |x|^p`, or `max |x|` for `Inf`), each accumulated in f64 in
/// a fixed order. With `clamp`, of the clamped values (value clipping before norm clipping).
pub fn tensor_partials<T: Real>(grads: &[&[T]], norm: NormType, clamp: Option<f64>) -> Vec<f64> {
    let clamp = clamp.map(T::from_f64);
    let (chunks, partials) = chunk_partials(grads, |chunks, _next| {
        let mut out = [0.0; GROUP];
        dispatch(ChunkNorms {
            chunks,
            norm,
            clamp,
            out: &mut out,
        });
        out
    });
    let mut per_tensor = vec![0.0; grads.len()];
    for (&(t, _), &p) in chunks.iter().zip(&partials) {
        per_tensor[t] = norm.merge(per_tensor[t], p);
    }
    per_tensor
}

/// The result of every [`NORM_CHUNK`]-element chunk of every array (the last chunk of an array
/// may be shorter), in one parallel pass over all arrays' chunks together (no per-array fork or
/// join). `f` gets `N` consecutive chunks of the list (they may belong to different arrays; the
/// last group is padded with empty chunks) and the next `N` (to prefetch, if it wants), and
/// returns the results of the first `N`. Returns each chunk's `(array, chunk index)` and its
/// result, in array-then-chunk order whatever the thread count.
pub(crate) fn chunk_partials<T: Real, const N: usize>(
    arrays: &[&[T]],
    f: impl Fn([&[T]; N], [&[T]; N]) -> [f64; N] + Sync,
) -> (Vec<(usize, usize)>, Vec<f64>) {
    let chunks: Vec<(usize, usize)> = arrays
        .iter()
        .enumerate()
        .flat_map(|(t, a)| (0..a.len().div_ceil(NORM_CHUNK)).map(move |c| (t, c)))
        .collect();
    let chunk = |i: usize| -> &[T] {
        chunks.get(i).map_or(&[], |&(t, c)| {
            &arrays[t][c * NORM_CHUNK..((c + 1) * NORM_CHUNK).min(arrays[t].len())]
        })
    };
    let elements = arrays.iter().map(|a| a.len()).sum();
    let groups = map_indexed(chunks.len().div_ceil(N), elements, |i| {
        f(
            std::array::from_fn(|j| chunk(N * i + j)),
            std::array::from_fn(|j| chunk(N * (i + 1) + j)),
        )
    });
    let mut partials: Vec<f64> = groups.into_iter().flatten().collect();
    partials.truncate(chunks.len());
    (chunks, partials)
}

/// The norm of all elements of `grads` together (torch's total norm), from per-tensor partials
/// combined in order.
pub fn total_norm(partials: &[f64], norm: NormType) -> f64 {
    norm.finish(partials.iter().fold(0.0, |acc, &p| norm.merge(acc, p)))
}

/// torch's clip coefficient: `min(max_norm / (total + 1e-6), 1)`, NaN for a NaN total.
pub fn clip_coef(max_norm: f64, total: f64) -> f64 {
    let coef = max_norm / (total + 1e-6);
    if coef > 1.0 {
        1.0
    } else {
        coef
    }
}

/// A contiguous part of one gradient, to scale or clamp in place.
struct Part<'a, T>(&'a mut [T]);

impl<T: Real> Splittable for Part<'_, T> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.0.split_at_mut(mid);
        (Part(a), Part(b))
    }
}

/// `x = x * factor` or `x = clamp(x, -c, c)` over one part.
enum Elementwise<'a, T> {
    Scale(&'a mut [T], T),
    Clamp(&'a mut [T], T),
}

impl<T: Real> Kernel for Elementwise<'_, T> {
    #[inline(always)]
    fn run(self) {
        match self {
            Elementwise::Scale(x, f) => x.iter_mut().for_each(|v| *v = *v * f),
            Elementwise::Clamp(x, c) => x.iter_mut().for_each(|v| *v = clamp_value(*v, c)),
        }
    }
}

/// Multiply every element of every array by the matching factor (`factors[i]` for `arrays[i]`).
pub fn scale_each<T: Real>(arrays: Vec<&mut [T]>, factors: &[f64]) {
    let parts: Vec<(Part<'_, T>, T)> = arrays
        .into_iter()
        .zip(factors)
        .filter(|(_, &f)| f != 1.0)
        .map(|(a, &f)| (Part(a), T::from_f64(f)))
        .collect();
    for_each_piece(parts, |(Part(x), f)| dispatch(Elementwise::Scale(x, f)));
}

/// Clamp every element of every array into `[-clip_value, clip_value]` (NaN unchanged).
pub fn clamp_all<T: Real>(arrays: Vec<&mut [T]>, clip_value: f64) -> Result<(), Error> {
    GradClip {
        scale: 1.0,
        clip_value: Some(clip_value),
    }
    .validate()?;
    let c = T::from_f64(clip_value);
    let parts: Vec<(Part<'_, T>, T)> = arrays.into_iter().map(|a| (Part(a), c)).collect();
    for_each_piece(parts, |(Part(x), c)| dispatch(Elementwise::Clamp(x, c)));
    Ok(())
}

impl<T: Real, U: Send> Splittable for (Part<'_, T>, U)
where
    U: Copy,
{
    fn len(&self) -> usize {
        self.0.len()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.0.split_at(mid);
        ((a, self.1), (b, self.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_match_direct_formulas() {
        let a: Vec<f32> = (0..10_000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let b: Vec<f32> = vec![3.0, -4.0];
        let grads = [a.as_slice(), b.as_slice()];
        let all: Vec<f64> = a.iter().chain(&b).map(|&x| x as f64).collect();
        for (norm, want) in [
            (NormType::L1, all.iter().map(|x| x.abs()).sum::<f64>()),
            (NormType::L2, all.iter().map(|x| x * x).sum::<f64>().sqrt()),
            (
                NormType::Inf,
                all.iter().fold(0.0f64, |m, x| m.max(x.abs())),
            ),
            (
                NormType::P(3.0),
                all.iter().map(|x| x.abs().powi(3)).sum::<f64>().cbrt(),
            ),
        ] {
            let got = total_norm(&tensor_partials(&grads, norm, None), norm);
            assert!(
                (got - want).abs() <= 1e-12 * want,
                "{norm:?}: {got} vs {want}"
            );
        }
        let clamped = total_norm(
            &tensor_partials(&grads, NormType::Inf, Some(2.5)),
            NormType::Inf,
        );
        assert_eq!(clamped, 2.5);
    }

    /// Arrays of the given sizes, with values over a few decades that differ between arrays.
    fn test_arrays<T: Real>(sizes: &[usize]) -> Vec<Vec<T>> {
        let value = |t: usize, i: usize| ((i * 7919 + t * 104_729) % 1009) as f64 / 97.0 - 5.0;
        let array = |(t, &n): (usize, &usize)| (0..n).map(|i| T::from_f64(value(t, i))).collect();
        sizes.iter().enumerate().map(array).collect()
    }

    /// The summation contract written out element by element: each [`NORM_CHUNK`]-element chunk
    /// into [`LANES`] lanes (element `i` into lane `i % LANES`), the lanes in order, the chunks
    /// in order; `clamp` first if given.
    fn contract_partial<T: Real>(x: &[T], norm: NormType, clamp: Option<f64>) -> f64 {
        let term = |v: T| {
            let v = clamp.map_or(v, |c| clamp_value(v, T::from_f64(c))).to_f64();
            match norm {
                NormType::L2 => v * v,
                NormType::L1 | NormType::Inf => v.abs(),
                NormType::P(p) => v.abs().powf(p),
            }
        };
        let chunk_partial = |chunk: &[T]| {
            let mut lanes = [0.0f64; LANES];
            for (i, &v) in chunk.iter().enumerate() {
                lanes[i % LANES] = norm.merge(lanes[i % LANES], term(v));
            }
            lanes.into_iter().fold(0.0, |acc, l| norm.merge(acc, l))
        };
        let chunks = x.chunks(NORM_CHUNK).map(chunk_partial);
        chunks.fold(0.0, |acc, c| norm.merge(acc, c))
    }

    /// The bits of each array's partial by [`contract_partial`].
    fn contract_bits<T: Real>(slices: &[&[T]], norm: NormType, clamp: Option<f64>) -> Vec<u64> {
        let bits = |a: &&[T]| contract_partial(a, norm, clamp).to_bits();
        slices.iter().map(bits).collect()
    }

    fn partial_bits<T: Real>(slices: &[&[T]], norm: NormType, clamp: Option<f64>) -> Vec<u64> {
        let partials = tensor_partials(slices, norm, clamp);
        partials.into_iter().map(f64::to_bits).collect()
    }

    /// Every array's partial has the contract's bits at every SIMD level, wherever the array
    /// starts in a group of [`GROUP`] chunks summed side by side.
    fn check_every_offset_and_level<T: Real>(sizes: &[usize]) {
        let arrays = test_arrays::<T>(sizes);
        let slices: Vec<&[T]> = arrays.iter().map(Vec::as_slice).collect();
        for norm in [NormType::L1, NormType::L2, NormType::Inf, NormType::P(3.0)] {
            for clamp in [None, Some(2.0)] {
                let want = contract_bits(&slices, norm, clamp);
                for level in crate::simd::supported_levels() {
                    assert!(crate::simd::set_level(level));
                    for skip in 0..=GROUP {
                        let got = partial_bits(&slices[skip..], norm, clamp);
                        let at = format!("{norm:?} {clamp:?} {level:?} from array {skip}");
                        assert_eq!(got, want[skip..], "{at}");
                    }
                }
                crate::simd::set_level(crate::simd::detected_level());
            }
        }
    }

    #[test]
    fn each_chunk_has_the_bits_of_the_contract() {
        // Chunks are summed four at a time, and a group may straddle several arrays: an array's
        // partial must not depend on its neighbours, its position in the list or the level.
        // Sizes: odd and even chunk counts, chunks shorter than a block, than the prefetch
        // distance or than a chunk, empty arrays, and arrays ending at a group boundary.
        let sizes = [
            3 * NORM_CHUNK + 5,
            17,
            2 * NORM_CHUNK,
            0,
            1,
            NORM_CHUNK - 3,
            5 * NORM_CHUNK + 200,
            LANES,
            127,
            4 * NORM_CHUNK,
            NORM_CHUNK + 1,
        ];
        check_every_offset_and_level::<f32>(&sizes);
        check_every_offset_and_level::<f64>(&sizes);
    }

    #[test]
    fn max_norm_keeps_the_contracts_nan() {
        // The largest |v| is taken in the input's type and widened at the end: NaNs of several
        // payloads and signs (a signalling one too), several in one lane, in several chunks,
        // must give the bits of the contract's f64 maxima (the first NaN of each lane, lanes in
        // order).
        let payloads = [0x7fc0_0001u32, 0xffc1_2345, 0x7f80_0001, 0xff80_0100];
        let mut arrays = test_arrays::<f32>(&[3 * NORM_CHUNK + 77, 240, NORM_CHUNK]);
        for (k, &bits) in payloads.iter().enumerate() {
            for a in &mut arrays {
                // Lane 5 gets every payload, in order; lane 9 the last one only.
                a[5 + 3 * LANES * k] = f32::from_bits(bits);
                let at = (k * 1031 + 9) % a.len();
                a[at - at % LANES + 9] = f32::from_bits(bits);
            }
        }
        arrays[2][NORM_CHUNK - 1] = f32::from_bits(payloads[0]);
        let slices: Vec<&[f32]> = arrays.iter().map(Vec::as_slice).collect();
        let f64s: Vec<Vec<f64>> = arrays
            .iter()
            .map(|a| a.iter().map(|&v| f64::from(v)).collect())
            .collect();
        let f64_slices: Vec<&[f64]> = f64s.iter().map(Vec::as_slice).collect();
        for clamp in [None, Some(2.0)] {
            let want = contract_bits(&slices, NormType::Inf, clamp);
            let want64 = contract_bits(&f64_slices, NormType::Inf, clamp);
            assert!(want.iter().all(|&b| f64::from_bits(b).is_nan()));
            for level in crate::simd::supported_levels() {
                assert!(crate::simd::set_level(level));
                let got = partial_bits(&slices, NormType::Inf, clamp);
                assert_eq!(got, want, "{clamp:?} {level:?}");
                let got64 = partial_bits(&f64_slices, NormType::Inf, clamp);
                assert_eq!(got64, want64, "float64 {clamp:?} {level:?}");
            }
            crate::simd::set_level(crate::simd::detected_level());
        }
    }

    #[test]
    fn partials_do_not_depend_on_the_thread_count() {
        // One array of many chunks, many tiny and empty ones, another large one: groups of chunks
        // straddle arrays at every offset, group full chunks with tiny or no ones, and the
        // threads split the groups (above the parallel threshold).
        let mut sizes = vec![40 * NORM_CHUNK + 7];
        sizes.extend((0..200).map(|k| [0, 1, 5, 16, 33, 384, 0][k % 7]));
        sizes.push(3 * NORM_CHUNK + 1);
        let arrays = test_arrays::<f32>(&sizes);
        let slices: Vec<&[f32]> = arrays.iter().map(Vec::as_slice).collect();
        assert!(sizes.iter().sum::<usize>() > crate::pool::PARALLEL_MIN_ELEMENTS);
        let before = crate::pool::num_threads();
        for norm in [NormType::L1, NormType::L2, NormType::Inf] {
            for clamp in [None, Some(2.0)] {
                let want = contract_bits(&slices, norm, clamp);
                for threads in [1, 2, 3] {
                    crate::set_num_threads(threads).unwrap_or_else(|e| panic!("{e}"));
                    let got = partial_bits(&slices, norm, clamp);
                    assert_eq!(got, want, "{norm:?} {clamp:?} {threads}");
                }
            }
        }
        crate::set_num_threads(before).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn nan_and_inf_propagate() {
        let g = [1.0f32, f32::NAN, 2.0];
        assert!(total_norm(
            &tensor_partials(&[&g[..]], NormType::L2, None),
            NormType::L2
        )
        .is_nan());
        assert!(total_norm(
            &tensor_partials(&[&g[..]], NormType::Inf, None),
            NormType::Inf
        )
        .is_nan());
        let h = [1.0f64, f64::INFINITY];
        assert_eq!(
            total_norm(
                &tensor_partials(&[&h[..]], NormType::L2, None),
                NormType::L2
            ),
            f64::INFINITY
        );
        assert!(clip_coef(1.0, f64::NAN).is_nan());
        assert_eq!(clip_coef(1.0, 0.5), 1.0);
        assert!(NormType::from_p(0.0).is_err() && NormType::from_p(-1.0).is_err());
    }

    #[test]
    fn clamp_value_is_torch_clamp_bit_for_bit() {
        // The two-select form against the three-way definition, signed zeros and NaN included.
        let three_way = |v: f32, c: f32| {
            if v < -c {
                -c
            } else if v > c {
                c
            } else {
                v
            }
        };
        let values = [
            0.0f32,
            -0.0,
            1e-40,
            -1e-40,
            0.5,
            -0.5,
            2.5,
            -2.5,
            3.0,
            -3.0,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        for c in [0.0f32, 1e-40, 0.5, 2.5, f32::MAX] {
            for v in values {
                let (got, want) = (clamp_value(v, c), three_way(v, c));
                assert_eq!(got.to_bits(), want.to_bits(), "clamp({v}, {c})");
            }
        }
    }

    #[test]
    fn scale_and_clamp() {
        let mut a = vec![1.0f32; 70_000];
        let mut b = vec![-3.0f32, 0.5, f32::NAN];
        scale_each(vec![&mut a, &mut b], &[0.5, 2.0]);
        assert!(a.iter().all(|&x| x == 0.5));
        assert_eq!(&b[..2], &[-6.0, 1.0]);
        clamp_all(vec![&mut b], 1.5).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&b[..2], &[-1.5, 1.0]);
        assert!(b[2].is_nan());
        assert!(clamp_all::<f32>(vec![], -1.0).is_err());
    }
}
