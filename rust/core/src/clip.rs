//! Gradient clipping (torch.nn.utils semantics): norms, scaling and clamping of gradient lists.
//!
//! Norms are accumulated in f64 whatever the element type. Each tensor is cut into chunks of
//! [`NORM_CHUNK`] elements at fixed offsets; a chunk is summed into [`LANES`] explicit accumulators
//! (element `i` of the chunk goes to lane `i % LANES`, in order), the lanes are added in order, then
//! the chunks of a tensor, then the tensors, all in order. The association is written out in the
//! code, so the result has the same bits at every SIMD level and for any number of threads.
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

/// The partial result of one chunk.
struct ChunkNorm<'a, T> {
    x: &'a [T],
    norm: NormType,
    clamp: Option<T>,
    out: &'a mut f64,
}

impl<T: Real> Kernel for ChunkNorm<'_, T> {
    #[inline(always)]
    fn run(self) {
        // One loop per (norm, clamp) pair, so no branch stays inside the loop.
        let x = self.x;
        *self.out = match (self.norm, self.clamp) {
            (NormType::L2, None) => lanes_sum(x, |v| v, |v| v * v, |a, b| a + b),
            (NormType::L2, Some(c)) => lanes_sum(x, |v| clamp_value(v, c), |v| v * v, |a, b| a + b),
            (NormType::L1, None) => lanes_sum(x, |v| v, f64::abs, |a, b| a + b),
            (NormType::L1, Some(c)) => lanes_sum(x, |v| clamp_value(v, c), f64::abs, |a, b| a + b),
            (NormType::Inf, None) => lanes_sum(x, |v| v, f64::abs, Real::maximum),
            (NormType::Inf, Some(c)) => {
                lanes_sum(x, |v| clamp_value(v, c), f64::abs, Real::maximum)
            }
            (NormType::P(p), None) => lanes_sum(x, |v| v, |v| v.abs().powf(p), |a, b| a + b),
            (NormType::P(p), Some(c)) => {
                lanes_sum(x, |v| clamp_value(v, c), |v| v.abs().powf(p), |a, b| a + b)
            }
        };
    }
}

/// Fold `x` into [`LANES`] accumulators (element `i` into lane `i % LANES`, in order), then fold
/// the lanes in order.
#[inline(always)]
fn lanes_sum<T: Real>(
    x: &[T],
    pre: impl Fn(T) -> T,
    term: impl Fn(f64) -> f64,
    merge: impl Fn(f64, f64) -> f64,
) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let mut blocks = x.chunks_exact(LANES);
    for block in &mut blocks {
        for (lane, &v) in lanes.iter_mut().zip(block) {
            *lane = merge(*lane, term(pre(v).to_f64()));
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(blocks.remainder()) {
        *lane = merge(*lane, term(pre(v).to_f64()));
    }
    lanes.into_iter().fold(0.0, merge)
}

/// `clamp(v, -c, c)`, NaN unchanged (torch.clamp).
#[inline(always)]
pub(crate) fn clamp_value<T: Real>(v: T, c: T) -> T {
    if v < -c {
        -c
    } else if v > c {
        c
    } else {
        v
    }
}

/// Per-tensor partial results (`sum |x|^p`, or `max |x|` for `Inf`), each accumulated in f64 in
/// a fixed order. With `clamp`, of the clamped values (value clipping before norm clipping).
pub fn tensor_partials<T: Real>(grads: &[&[T]], norm: NormType, clamp: Option<f64>) -> Vec<f64> {
    let clamp = clamp.map(T::from_f64);
    let (chunks, partials) = chunk_partials(grads, |x| {
        let mut out = 0.0;
        dispatch(ChunkNorm {
            x,
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

/// `f(chunk)` for every [`NORM_CHUNK`]-element chunk of every array (the last chunk of an array
/// may be shorter), in one parallel pass over all arrays' chunks together (no per-array fork or
/// join). Returns each chunk's `(array, chunk index)` and its result, in array-then-chunk order
/// whatever the thread count.
pub(crate) fn chunk_partials<T: Real>(
    arrays: &[&[T]],
    f: impl Fn(&[T]) -> f64 + Sync,
) -> (Vec<(usize, usize)>, Vec<f64>) {
    let chunks: Vec<(usize, usize)> = arrays
        .iter()
        .enumerate()
        .flat_map(|(t, a)| (0..a.len().div_ceil(NORM_CHUNK)).map(move |c| (t, c)))
        .collect();
    let elements = arrays.iter().map(|a| a.len()).sum();
    let partials = map_indexed(chunks.len(), elements, |i| {
        let (t, c) = chunks[i];
        f(&arrays[t][c * NORM_CHUNK..((c + 1) * NORM_CHUNK).min(arrays[t].len())])
    });
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
