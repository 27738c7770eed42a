//! Per-channel mean and biased variance, the running-statistics update, and `1/sqrt(var + eps)`.
//!
//! One read of the data. Each block (plan `Rows`: a block of rows, per column) or segment (plan
//! `Runs`) of `nb` values is summed once about a shift `K`, `d = x - K`, `s1 = sum(d)`,
//! `s2 = sum(d*d)`, which give its partial mean and sum of squared deviations from it:
//! `mb = K + s1/nb`, `qb = s2 - s1*(s1/nb)` (`sum((x - K)^2) - nb*(mb - K)^2`; a negative
//! rounding residue becomes 0). The relative error of `qb` is that of `s2` times
//! `s2/qb = 1 + (mb - K)^2/(qb/nb)`, so `K` is chosen from an estimate `(e, v)` of the chunk's
//! mean and variance: `K = 0` if `e*e <= v` (the factor stays near 2 at most), else `K = e`. The
//! estimate of a `Rows` task's first block is its first 16 rows, of each later block the blocks
//! before it (their merged mean and `m2/n`); of a `Runs` segment its first [`LANES`] values. A
//! shift that is not finite is replaced by 0, so an infinity in the data reaches the sums as in
//! torch's `sum/n` (mean `+-inf`, or NaN for both signs; `m2` NaN). Where a chunk's shifts are all
//! 0 and the data is float32, `d*d` is exact in f64, so `s2 + d*d` may use a fused multiply-add
//! (one rounding either way): the bits do not depend on the level.
//!
//! The partials are combined with Chan's formula, in a fixed order: for partials `(na, ma, qa)`
//! and `(nb, mb, qb)`, `d = mb - ma`, `mean = ma + d*(nb/n)`, `m2 = (qa + qb) + d*d*(na*nb/n)`
//! with `n = na + nb`. In a [`Plan::Rows`] plan, each column is combined over the blocks of a task
//! in order, then over the row groups in order, then each channel over its `s` columns in order;
//! in a [`Plan::Runs`] plan, each channel is combined over its segments in memory order. A `Rows`
//! column adds its rows in a fixed order (vectors span columns, never rows), and a `Runs` segment
//! uses explicit fixed-lane f64 accumulators, so no vector width can change an association.

use super::plan::{run_tasks, Plan, TILE_COLUMNS};
use super::{check_channels, Layout};
use crate::error::{check_min, Error};
use crate::real::Real;
use crate::simd::{dispatch, prefetch, Kernel};
use core::ops::Range;

/// Width of the rows a `Runs` segment is read as: each of its columns is one fixed accumulator
/// (a lane), and the lanes are added pairwise in a fixed tree ([`fold`]).
pub(crate) const LANES: usize = 32;
/// Rows of a task's first block that estimate its shift.
const ESTIMATE_ROWS: usize = 16;
/// A `Rows` task is summed in blocks of this many of the plan's blocks (up to 4 * 32,768
/// elements): each block's shift choice, partial mean and merge cost a few operations per column,
/// spread over this many rows (4 * 128 for 256 columns).
const SWEEP_BLOCKS: usize = 4;

/// Per-channel mean and biased variance of `x` (layout `(n, c, s)`), in f64:
/// `mean[k] = sum(x[:, k, :]) / (n*s)`, `var[k] = sum((x[:, k, :] - mean[k])^2) / (n*s)`, from one
/// read of `x` (shifted sums per block, combined in a fixed order: see the module docs).
///
/// `mean` and `var` have `c` entries. With `n*s == 0` they are NaN. The result depends only on
/// the layout and the data, not on the SIMD level or the thread count.
pub fn batch_stats<T: Real>(
    x: &[T],
    layout: Layout,
    mean: &mut [f64],
    var: &mut [f64],
) -> Result<(), Error> {
    layout.check_len("x", x.len())?;
    layout.check_channels("mean", mean.len())?;
    layout.check_channels("var", var.len())?;
    if layout.count() == 0 {
        mean.fill(f64::NAN);
        var.fill(f64::NAN);
        return Ok(());
    }
    // One channel is one sequence of n*s values, however it is shaped.
    let layout = if layout.c == 1 {
        Layout::new(1, 1, layout.count())
    } else {
        layout
    };
    let plan = Plan::new(layout);
    let mut means = vec![0.0; plan.slots()];
    let mut m2s = vec![0.0; plan.slots()];
    run_tasks(&plan, &mut means, &mut m2s, |task, slot0, mean, m2| {
        dispatch(StatsTask {
            plan: &plan,
            x,
            task,
            slot0,
            mean,
            m2,
        })
    });
    match plan {
        Plan::Rows { .. } => {
            merge_rows(&plan, layout, &mut means, &mut m2s);
            merge_columns(layout, &means, &m2s, mean, var);
        }
        Plan::Runs { seg, pieces, .. } => merge_runs(layout, seg, pieces, &means, &m2s, mean, var),
    }
    let count = layout.count() as f64;
    for v in var.iter_mut() {
        *v /= count;
    }
    Ok(())
}

/// One task's partials: `(mean, m2)` per slot.
struct StatsTask<'a, 'o, T> {
    plan: &'a Plan,
    x: &'a [T],
    task: usize,
    slot0: usize,
    mean: &'o mut [f64],
    m2: &'o mut [f64],
}

impl<T: Real> Kernel for StatsTask<'_, '_, T> {
    #[inline(always)]
    fn run(self) {
        match *self.plan {
            Plan::Rows { layout, rows, .. } => {
                let (all, cols) = self.plan.tile(self.task);
                let block = rows * SWEEP_BLOCKS;
                rows_task(self.x, layout.row(), all, cols, block, self.mean, self.m2);
            }
            Plan::Runs { .. } => {
                for (i, (m, q)) in self.mean.iter_mut().zip(self.m2.iter_mut()).enumerate() {
                    let slot = self.slot0 + i;
                    let (range, _) = self.plan.segment(slot);
                    let ahead = self.plan.next_segment(self.x, slot);
                    (*m, *q) = run_partial(&self.x[range], ahead);
                }
            }
        }
    }
}

/// Column means and `m2` of `x[all, cols]` (`x` has rows of `j` elements), into `mean_out` and
/// `m2_out`: each block of `rows` rows summed once about its shift (estimated from the first
/// block's first 16 rows, then from the blocks before), the blocks merged in order.
///
/// No software prefetch: the block's four quarters are four sequential streams, which the
/// hardware prefetcher follows; prefetching the next block's rows as well cost about 10% of a
/// task's time in cache, and without it (with the larger blocks) a task reads memory at about
/// the pace of a bare read on one core (README, issue 15; `examples/batchnorm_timing`).
#[inline(always)]
fn rows_task<T: Real>(
    x: &[T],
    j: usize,
    all: Range<usize>,
    cols: Range<usize>,
    rows: usize,
    mean_out: &mut [f64],
    m2_out: &mut [f64],
) {
    let (c0, w) = (cols.start, cols.len());
    let row = |r: usize| &x[r * j + c0..][..w];
    let ahead = |_: usize| -> &[T] { &[] };
    let mut buf = [[0.0f64; TILE_COLUMNS]; 3];
    let [shift, s1, s2] = &mut buf;
    let (shift, s1, s2) = (&mut shift[..w], &mut s1[..w], &mut s2[..w]);
    let (mean_out, m2_out) = (&mut mean_out[..w], &mut m2_out[..w]);
    let mut na = 0.0;
    for r0 in all.clone().step_by(rows) {
        let block = r0..(r0 + rows).min(all.end);
        let count = block.len() as f64;
        if na == 0.0 {
            // Estimated from the block's first rows (up to 16), added in order, column by column.
            let p = block.len().min(ESTIMATE_ROWS);
            s1.fill(0.0);
            s2.fill(0.0);
            for r in r0..r0 + p {
                for (e, &v) in s1.iter_mut().zip(row(r)) {
                    *e += v.to_f64();
                }
            }
            for e in s1.iter_mut() {
                *e /= p as f64;
            }
            for r in r0..r0 + p {
                for ((q, &v), &e) in s2.iter_mut().zip(row(r)).zip(s1.iter()) {
                    *q += (v.to_f64() - e) * (v.to_f64() - e);
                }
            }
            for ((k, &e), &q) in shift.iter_mut().zip(s1.iter()).zip(s2.iter()) {
                *k = choose_shift(e, q, p as f64);
            }
        } else {
            // The blocks before: centred where their mean is within their standard deviation.
            for ((k, &m), &q) in shift.iter_mut().zip(mean_out.iter()).zip(m2_out.iter()) {
                *k = choose_shift(m, q, na);
            }
        }
        s1.fill(0.0);
        s2.fill(0.0);
        sweep_sums((&block, row, ahead), shift, [&mut *s1, &mut *s2]);
        let wts = (na != 0.0).then(|| weights(na, count));
        let out = mean_out.iter_mut().zip(m2_out.iter_mut());
        for ((m, q), ((&k, &a), &b)) in out.zip(shift.iter().zip(s1.iter()).zip(s2.iter())) {
            let (mb, qb) = partial(count, k, a, b);
            match wts {
                None => (*m, *q) = (mb, qb),
                Some(wts) => chan(m, q, mb, qb, wts),
            }
        }
        na += count;
    }
}

/// `s1[q] += d` and `s2[q] += d*d` with `d = x[r][q] - shift[q]`, over the rows `r` of `block`
/// (by [`sweep`]; `rows = (block, row, ahead)`, `sums = [s1, s2]`). Where every shift is 0,
/// `d = x` exactly, so the sums need no subtraction, and for float32 data `d*d` (24 significant
/// bits squared) is exact in f64: `s2 + d*d` rounds once, so a fused multiply-add gives the same
/// bits with one instruction fewer, where the level has one.
#[inline(always)]
fn sweep_sums<'x, T: Real>(
    rows: (
        &Range<usize>,
        impl Fn(usize) -> &'x [T],
        impl Fn(usize) -> &'x [T],
    ),
    shift: &[f64],
    sums: [&mut [f64]; 2],
) {
    if shift.iter().any(|&k| k != 0.0) {
        let step = |(a, b): (f64, f64), v: f64, k: f64| {
            let d = v - k;
            (a + d, b + d * d)
        };
        sweep(rows, shift, sums, step);
    } else if T::BYTES == 4 && crate::simd::level().has_fused_multiply_add() {
        sweep(rows, shift, sums, |(a, b), v, _| (a + v, v.mul_add(v, b)));
    } else {
        sweep(rows, shift, sums, |(a, b), v, _| (a + v, b + v * v));
    }
}

/// `(s1[q], s2[q]) = step((s1[q], s2[q]), x[r][q], shift[q])` over the rows `r` of `block`, with
/// `rows = (block, row, ahead)` and `sums = [s1, s2]`.
///
/// The block's four quarters are walked together (rows `i`, `i + h`, `i + 2h`, `i + 3h` with
/// `h = len/4`, then the leftover rows one by one), so each accumulator is loaded and stored once
/// per four rows, while memory sees four sequential streams (interleaving adjacent rows instead
/// defeats the hardware prefetcher). Each column adds its rows in this fixed order. `ahead(r)` is
/// prefetched when row `r` is read, so the next block is on its way while this one is summed.
#[inline(always)]
fn sweep<'x, T: Real>(
    (block, row, ahead): (
        &Range<usize>,
        impl Fn(usize) -> &'x [T],
        impl Fn(usize) -> &'x [T],
    ),
    shift: &[f64],
    [s1, s2]: [&mut [f64]; 2],
    step: impl Fn((f64, f64), f64, f64) -> (f64, f64),
) {
    let w = s1.len();
    let (shift, s2) = (&shift[..w], &mut s2[..w]);
    let h = block.len() / 4;
    for r in block.start..block.start + h {
        for q in 0..4 {
            prefetch(ahead(r + q * h));
        }
        let (x0, x1) = (&row(r)[..w], &row(r + h)[..w]);
        let (x2, x3) = (&row(r + 2 * h)[..w], &row(r + 3 * h)[..w]);
        for q in 0..w {
            let k = shift[q];
            let mut acc = (s1[q], s2[q]);
            for v in [x0[q], x1[q], x2[q], x3[q]] {
                acc = step(acc, v.to_f64(), k);
            }
            (s1[q], s2[q]) = acc;
        }
    }
    for r in block.start + 4 * h..block.end {
        prefetch(ahead(r));
        let x = &row(r)[..w];
        for q in 0..w {
            (s1[q], s2[q]) = step((s1[q], s2[q]), x[q].to_f64(), shift[q]);
        }
    }
}

/// The shift of a chunk from an estimate over its first `n` values (`first[..n]`, the rest 0):
/// their mean and biased variance, each added pairwise by [`fold`], given to [`choose_shift`].
#[inline(always)]
fn estimate_shift<const L: usize>(first: [f64; L], n: usize) -> f64 {
    let e = fold(first) / n as f64;
    let mut dev = [0.0f64; L];
    for (d, &f) in dev.iter_mut().zip(&first[..n]) {
        *d = (f - e) * (f - e);
    }
    choose_shift(e, fold(dev), n as f64)
}

/// The shift for an estimated mean `e` and sum of squared deviations `q` of `n` values: 0 if
/// `e*e*n <= q`, i.e. `e*e <= v` with the variance `v = q/n` (the mean is within a standard
/// deviation of 0, so sums about 0 lose at most about a factor 2 to cancellation), else `e` (0 if
/// not finite). Written without the division, which cost a `vdivpd` per 8 columns and block.
#[inline(always)]
fn choose_shift(e: f64, q: f64, n: f64) -> f64 {
    if e * e * n <= q {
        0.0
    } else {
        finite_or_zero(e)
    }
}

/// Mean and `m2` of one contiguous segment, shifted by [`estimate_shift`] of its first [`LANES`]
/// values. The segment is read as rows of [`LANES`] elements by [`sweep_sums`] (element `i` of the leftover tail goes to lane `i`), and each sum's lanes are
/// added by [`fold`]. The same rows of `ahead` are prefetched along the way.
#[inline(always)]
fn run_partial<T: Real>(xs: &[T], ahead: &[T]) -> (f64, f64) {
    let mut first = [0.0f64; LANES];
    for (f, &v) in first.iter_mut().zip(xs) {
        *f = v.to_f64();
    }
    let shift = estimate_shift(first, xs.len().min(LANES));
    let mut buf = [[0.0f64; LANES]; 2];
    let [s1, s2] = &mut buf;
    let rows = xs.len() / LANES;
    let row = |r: usize| &xs[r * LANES..][..LANES];
    let ahead = |r: usize| ahead.get(r * LANES..(r + 1) * LANES).unwrap_or(&[]);
    sweep_sums(
        (&(0..rows), row, ahead),
        &[shift; LANES],
        [&mut *s1, &mut *s2],
    );
    for (k, &v) in xs[rows * LANES..].iter().enumerate() {
        let d = v.to_f64() - shift;
        s1[k] += d;
        s2[k] += d * d;
    }
    partial(xs.len() as f64, shift, fold(*s1), fold(*s2))
}

/// The partial `(mean, m2)` of `count` values from their sums about `shift`:
/// `mean = shift + s1/count`, `m2 = s2 - s1*(s1/count)` (`s1/count` by [`quotient`]). A
/// negative rounding residue of `m2` is made 0. When `s1` is finite but `s2` overflowed (finite data whose squares overflow f64),
/// `inf - inf` becomes `m2 = inf`, as the squared deviations of a two-pass give; data holding an
/// infinity or NaN (`s1` not finite) keeps `m2` NaN.
#[inline(always)]
fn partial(count: f64, shift: f64, s1: f64, s2: f64) -> (f64, f64) {
    let q = quotient(s1, count);
    let m2 = s2 - s1 * q;
    let m2 = if m2.is_nan() && s1.is_finite() {
        s2
    } else if m2 < 0.0 {
        0.0
    } else {
        m2
    };
    (shift + q, m2)
}

/// `v / count` for a count `>= 1`: where `count` is a power of two (a full block's row count),
/// as `v * (1/count)`, which is the same number (`1/count` is exact) without a division.
#[inline(always)]
fn quotient(v: f64, count: f64) -> f64 {
    const MANTISSA: u64 = (1 << 52) - 1;
    if count.to_bits() & MANTISSA == 0 {
        v * (1.0 / count)
    } else {
        v / count
    }
}

/// `v`, or 0 if it is infinite or NaN (a shift must be finite: `inf - inf` would hide an
/// infinity from the sums).
#[inline(always)]
fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// Add the lanes pairwise: lane `i` gets lane `i + half`, halving until one is left.
#[inline(always)]
pub(crate) fn fold<const L: usize>(mut acc: [f64; L]) -> f64 {
    let mut half = L / 2;
    while half > 0 {
        for i in 0..half {
            acc[i] += acc[i + half];
        }
        half /= 2;
    }
    acc[0]
}

/// Chan's weights for merging `nb` values into `na`: `(nb/n, na*nb/n)`.
#[inline(always)]
fn weights(na: f64, nb: f64) -> (f64, f64) {
    let n = na + nb;
    (nb / n, na * nb / n)
}

/// Merge the partial `(mb, qb)` into `(m, q)` with [`weights`].
///
/// An infinite partial mean makes the shifted update `m + (mb - m)*wb` compute `inf - inf`; the
/// mean of the merged values is then that of their sum, `m + mb`: the infinity, or NaN for
/// opposite infinities or a NaN (as torch's `sum/n`). This fallback is a select on a NaN result,
/// which finite partials never give, so their bits are unchanged. The `m2` needs none: a partial
/// holding an infinity has `m2 = NaN` already (its `(x - inf)^2`), as torch's variance is NaN.
#[inline(always)]
fn chan(m: &mut f64, q: &mut f64, mb: f64, qb: f64, (wb, cross): (f64, f64)) {
    let d = mb - *m;
    let shifted = *m + d * wb;
    *m = if shifted.is_nan() { *m + mb } else { shifted };
    *q = (*q + qb) + d * d * cross;
}

/// Combine each column over the row groups, in order, into the first group's slots.
fn merge_rows(plan: &Plan, layout: Layout, means: &mut [f64], m2s: &mut [f64]) {
    let Plan::Rows { groups, .. } = *plan else {
        return;
    };
    let j = layout.row();
    let (acc_m, rest_m) = means.split_at_mut(j);
    let (acc_q, rest_q) = m2s.split_at_mut(j);
    let mut na = plan.group_rows(0) as f64;
    for g in 1..groups {
        let nb = plan.group_rows(g) as f64;
        let w = weights(na, nb);
        let (bm, bq) = (&rest_m[(g - 1) * j..][..j], &rest_q[(g - 1) * j..][..j]);
        for (((m, q), &mb), &qb) in acc_m.iter_mut().zip(acc_q.iter_mut()).zip(bm).zip(bq) {
            chan(m, q, mb, qb, w);
        }
        na += nb;
    }
}

/// Combine each channel's `s` columns (each over all `n` rows), in order. `var` gets `m2`.
fn merge_columns(layout: Layout, means: &[f64], m2s: &[f64], mean: &mut [f64], var: &mut [f64]) {
    let (n, s) = (layout.n as f64, layout.s);
    for (k, (m, q)) in mean.iter_mut().zip(var.iter_mut()).enumerate() {
        (*m, *q) = (means[k * s], m2s[k * s]);
        let mut na = n;
        for t in 1..s {
            chan(m, q, means[k * s + t], m2s[k * s + t], weights(na, n));
            na += n;
        }
    }
}

/// Combine each channel's segments in memory order. `var` gets `m2`.
fn merge_runs(
    layout: Layout,
    seg: usize,
    pieces: usize,
    means: &[f64],
    m2s: &[f64],
    mean: &mut [f64],
    var: &mut [f64],
) {
    let c = layout.c;
    let seg_len = |k: usize| seg.min(layout.s - k * seg) as f64;
    for (k, (m, q)) in mean.iter_mut().zip(var.iter_mut()).enumerate() {
        (*m, *q) = (means[k * pieces], m2s[k * pieces]);
    }
    let mut na = seg_len(0);
    for i in 0..layout.n {
        for piece in 0..pieces {
            if i == 0 && piece == 0 {
                continue;
            }
            let nb = seg_len(piece);
            let w = weights(na, nb);
            if pieces == 1 {
                let (bm, bq) = (&means[i * c..][..c], &m2s[i * c..][..c]);
                for (((m, q), &mb), &qb) in mean.iter_mut().zip(var.iter_mut()).zip(bm).zip(bq) {
                    chan(m, q, mb, qb, w);
                }
            } else {
                for (k, (m, q)) in mean.iter_mut().zip(var.iter_mut()).enumerate() {
                    let slot = (i * c + k) * pieces + piece;
                    chan(m, q, means[slot], m2s[slot], w);
                }
            }
            na += nb;
        }
    }
}

/// Update running statistics in place from a batch's `mean` and biased `var` over `count` values
/// per channel: `running_mean = (1-momentum)*running_mean + momentum*mean` and
/// `running_var = (1-momentum)*running_var + momentum*(var*(count/(count-1)))`, in f64, rounded
/// once to `R`. For torch's `momentum=None` (cumulative average) pass `1/num_batches_tracked`.
///
/// Errors: slices of different lengths, `count < 2` (the unbiased variance needs two values),
/// `momentum` outside `[0, 1]`.
pub fn update_running<R: Real>(
    running_mean: &mut [R],
    running_var: &mut [R],
    mean: &[f64],
    var: &[f64],
    count: usize,
    momentum: f64,
) -> Result<(), Error> {
    let c = mean.len();
    check_channels("var", var.len(), c)?;
    check_channels("running_mean", running_mean.len(), c)?;
    check_channels("running_var", running_var.len(), c)?;
    if count < 2 && c > 0 {
        return Err(Error::TooFewValues {
            per_channel: count,
            channels: c,
        });
    }
    if !(0.0..=1.0).contains(&momentum) {
        return Err(Error::InvalidHyperparameter {
            name: "momentum",
            value: momentum,
            expected: "0 <= momentum <= 1",
        });
    }
    let keep = 1.0 - momentum;
    let unbias = count as f64 / (count as f64 - 1.0);
    for (rm, &m) in running_mean.iter_mut().zip(mean) {
        *rm = R::from_f64(keep * rm.to_f64() + momentum * m);
    }
    for (rv, &v) in running_var.iter_mut().zip(var) {
        *rv = R::from_f64(keep * rv.to_f64() + momentum * (v * unbias));
    }
    Ok(())
}

/// `invstd[k] = 1 / sqrt(var[k] + eps)`, in f64. Errors: `eps` negative or not finite, lengths.
pub fn inv_std(var: &[f64], eps: f64, invstd: &mut [f64]) -> Result<(), Error> {
    check_min("eps", eps, 0.0, "a finite number >= 0")?;
    check_channels("invstd", invstd.len(), var.len())?;
    for (o, &v) in invstd.iter_mut().zip(var) {
        *o = 1.0 / (v + eps).sqrt();
    }
    Ok(())
}
