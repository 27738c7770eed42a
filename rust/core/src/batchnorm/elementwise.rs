//! The elementwise passes' plumbing: pieces of the flat input for the pool, and the walk that
//! finds each element's per-channel coefficients.
//!
//! An element's result depends only on its own inputs and its channel's coefficients, so however
//! the pool cuts the array, the bits are the same.

use super::plan::RUNS_MIN;
use super::Layout;
use crate::pool::{for_each_piece, Splittable};
use crate::real::Real;

/// Largest row (`c * s`) for which coefficients are expanded to one entry per column.
const EXPAND_MAX: usize = 1 << 13;

/// A piece of the flat arrays: one or two inputs and the output, from flat position `start`.
pub(crate) struct Span<'a, T> {
    pub start: usize,
    pub a: &'a [T],
    /// Second input (empty when unused).
    pub b: &'a [T],
    pub out: &'a mut [T],
}

impl<T: Real> Splittable for Span<'_, T> {
    fn len(&self) -> usize {
        self.out.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a0, a1) = self.a.split_at(mid);
        let (b0, b1) = if self.b.is_empty() {
            (self.b, self.b)
        } else {
            self.b.split_at(mid)
        };
        let (o0, o1) = self.out.split_at_mut(mid);
        (
            Span {
                start: self.start,
                a: a0,
                b: b0,
                out: o0,
            },
            Span {
                start: self.start + mid,
                a: a1,
                b: b1,
                out: o1,
            },
        )
    }
}

/// Run `f` on pieces of `span` spread over the pool.
pub(crate) fn run_spans<T: Real>(span: Span<'_, T>, f: impl Fn(Span<'_, T>) + Sync) {
    for_each_piece(vec![span], f);
}

/// Where an element finds its coefficients.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Coeffs {
    /// One entry per column of the `(n, period)` matrix: element `p` uses entry `p % period`.
    Columns(usize),
    /// One entry per channel, constant along each run of `s` elements.
    Runs,
}

impl Coeffs {
    /// Columns when the row is short enough to expand the coefficients (always when `s == 1`,
    /// where columns are channels), else runs.
    pub(crate) fn for_layout(layout: Layout) -> Self {
        if layout.s == 1 || (layout.s < RUNS_MIN && layout.row() <= EXPAND_MAX) {
            Coeffs::Columns(layout.row())
        } else {
            Coeffs::Runs
        }
    }

    /// Per-channel values `v` laid out as this walk reads them.
    pub(crate) fn lay_out(self, layout: Layout, v: impl Fn(usize) -> f64) -> Vec<f64> {
        match self {
            Coeffs::Columns(period) => (0..period).map(|q| v(q / layout.s)).collect(),
            Coeffs::Runs => (0..layout.c).map(v).collect(),
        }
    }
}

/// Consecutive stretches `lo..hi` of the piece at flat `start` with `len` elements (offsets
/// relative to the piece), each with one coefficient pattern: with [`Coeffs::Columns`] a stretch
/// uses entries `idx..idx + (hi - lo)`; with [`Coeffs::Runs`] it lies in one run and uses entry
/// `idx`. Yields `(lo, hi, idx)`.
pub(crate) struct Stretches {
    start: usize,
    p: usize,
    end: usize,
    layout: Layout,
    coeffs: Coeffs,
}

impl Stretches {
    #[inline(always)]
    pub(crate) fn new(start: usize, len: usize, layout: Layout, coeffs: Coeffs) -> Self {
        Stretches {
            start,
            p: start,
            end: start + len,
            layout,
            coeffs,
        }
    }
}

impl Iterator for Stretches {
    type Item = (usize, usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.p >= self.end {
            return None;
        }
        let p = self.p;
        let (hi, idx) = match self.coeffs {
            Coeffs::Columns(period) => {
                let q = p % period;
                ((p - q + period).min(self.end), q)
            }
            Coeffs::Runs => {
                let run = p / self.layout.s;
                (
                    ((run + 1) * self.layout.s).min(self.end),
                    run % self.layout.c,
                )
            }
        };
        self.p = hi;
        Some((p - self.start, hi - self.start, idx))
    }
}
