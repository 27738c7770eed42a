//! Per-channel mean and biased variance, the running-statistics update, and `1/sqrt(var + eps)`.
//!
//! Each block (plan `Rows`) or segment (plan `Runs`) gets an exact two-pass while it is in cache:
//! the sum gives its mean, then the sum of squared deviations from that mean (`m2`). The partials
//! are combined with Chan's formula, in a fixed order: for partials `(na, ma, qa)` and
//! `(nb, mb, qb)`, `d = mb - ma`, `mean = ma + d*(nb/n)`, `m2 = (qa + qb) + d*d*(na*nb/n)` with
//! `n = na + nb`. In a [`Plan::Rows`] plan, each column is combined over the blocks of a task in
//! order, then over the row groups in order, then each channel over its `s` columns in order; in a
//! [`Plan::Runs`] plan, each channel is combined over its segments in memory order. Each sum uses
//! explicit fixed-lane f64 accumulators, so no vector width can change its association.

use super::plan::{run_tasks, Plan, TILE_COLUMNS};
use super::{check_channels, Layout};
use crate::error::{check_min, Error};
use crate::real::Real;
use crate::simd::{dispatch, prefetch, Kernel};
use core::ops::Range;

/// Lanes of the fixed-lane accumulators: element `i` of a segment goes to lane `i % LANES`, and
/// the lanes are added pairwise in a fixed tree ([`fold`]).
pub(crate) const LANES: usize = 32;

/// Per-channel mean and biased variance of `x` (layout `(n, c, s)`), in f64:
/// `mean[k] = sum(x[:, k, :]) / (n*s)`, `var[k] = sum((x[:, k, :] - mean[k])^2) / (n*s)`.
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
                rows_task(self.x, layout.row(), all, cols, rows, self.mean, self.m2);
            }
            Plan::Runs { .. } => {
                for (i, (m, q)) in self.mean.iter_mut().zip(self.m2.iter_mut()).enumerate() {
                    let slot = self.slot0 + i;
                    let (range, _) = self.plan.segment(slot);
                    let ahead = self.plan.next_segment(self.x, slot);
                    (*m, *q) = run_two_pass(&self.x[range], ahead);
                }
            }
        }
    }
}

/// Column means and `m2` of `x[all, cols]` (`x` has rows of `j` elements), into `mean_out` and
/// `m2_out`: each block of `rows` rows by two sweeps (the column sums, then, with the block in
/// cache, the squared deviations from the block's column means), the blocks merged in order.
///
/// A sweep walks the block's four quarters together (rows `i`, `i + h`, `i + 2h`, `i + 3h` with
/// `h = len/4`, then the leftover rows one by one), so each accumulator is loaded and stored once
/// per four rows, while memory sees four sequential streams (interleaving adjacent rows instead
/// defeats the hardware prefetcher). Each column adds its rows in this fixed order. The second
/// sweep, which reads the block from cache, prefetches the next block's rows, so memory keeps
/// streaming while it computes (as the `Runs` plan's second pass does); no result changes.
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
    // The same row of the next block (none past the data), prefetched during the second sweep.
    let n = x.len().checked_div(j).unwrap_or(0);
    let ahead = |r: usize| if r + rows < n { row(r + rows) } else { &[] };
    let mut buf = [[0.0f64; TILE_COLUMNS]; 2];
    let [mean, m2] = &mut buf;
    let (mean, m2) = (&mut mean[..w], &mut m2[..w]);
    let mut na = 0.0;
    for r0 in all.clone().step_by(rows) {
        let block = r0..(r0 + rows).min(all.end);
        let count = block.len() as f64;
        mean.fill(0.0);
        sweep(&block, row, |_| &[], mean, &[], |v, _| v);
        for m in mean.iter_mut() {
            *m /= count;
        }
        m2.fill(0.0);
        sweep(&block, row, ahead, m2, mean, |v, m| {
            let d = v - m;
            d * d
        });
        if na == 0.0 {
            mean_out[..w].copy_from_slice(mean);
            m2_out[..w].copy_from_slice(m2);
        } else {
            let wts = weights(na, count);
            let out = mean_out.iter_mut().zip(m2_out.iter_mut());
            for ((m, q), (&mb, &qb)) in out.zip(mean.iter().zip(m2.iter())) {
                chan(m, q, mb, qb, wts);
            }
        }
        na += count;
    }
}

/// `acc[q] += f(x[r][q], c[q])` over the rows `r` of `block` in quarter order (see [`rows_task`]);
/// `c` may be empty (then `f` gets 0). `ahead(r)` is prefetched when row `r` is read (a sweep
/// over data already in cache asks for the next block, so memory stays busy).
#[inline(always)]
pub(crate) fn sweep<'x, T: Real>(
    block: &Range<usize>,
    row: impl Fn(usize) -> &'x [T],
    ahead: impl Fn(usize) -> &'x [T],
    acc: &mut [f64],
    c: &[f64],
    f: impl Fn(f64, f64) -> f64,
) {
    let w = acc.len();
    let h = block.len() / 4;
    let zero = [0.0f64; TILE_COLUMNS];
    let c = if c.is_empty() { &zero[..w] } else { &c[..w] };
    for r in block.start..block.start + h {
        let (r0, r1, r2, r3) = (row(r), row(r + h), row(r + 2 * h), row(r + 3 * h));
        for q in 0..4 {
            prefetch(ahead(r + q * h));
        }
        for (q, (((&k, &a), (&b, &d)), &e)) in acc
            .iter_mut()
            .zip(c.iter().zip(r0).zip(r1.iter().zip(r2)).zip(r3))
        {
            let (a, b, d, e) = (a.to_f64(), b.to_f64(), d.to_f64(), e.to_f64());
            *q = (((*q + f(a, k)) + f(b, k)) + f(d, k)) + f(e, k);
        }
    }
    for r in block.start + 4 * h..block.end {
        prefetch(ahead(r));
        for ((q, &k), &a) in acc.iter_mut().zip(c).zip(row(r)) {
            *q += f(a.to_f64(), k);
        }
    }
}

/// Mean and `m2` of one contiguous segment; the second sweep prefetches `ahead`.
#[inline(always)]
fn run_two_pass<T: Real>(xs: &[T], ahead: &[T]) -> (f64, f64) {
    let mean = lane_sum(xs, &[], |v| v) / xs.len() as f64;
    let m2 = lane_sum(xs, ahead, |v| {
        let d = v - mean;
        d * d
    });
    (mean, m2)
}

/// `sum(f(x))` with [`LANES`] fixed lanes: element `i` of `xs` goes to lane `i % LANES`, and the
/// lanes are added by [`fold`]. (The lanes are kept as groups of 8, which LLVM vectorizes at every
/// width without reordering them.) Prefetches `ahead` along the way.
#[inline(always)]
pub(crate) fn lane_sum<T: Real>(xs: &[T], ahead: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [[0.0f64; 8]; LANES / 8];
    let mut chunks = xs.chunks_exact(LANES);
    let mut next = ahead.chunks(LANES);
    for chunk in &mut chunks {
        if let Some(p) = next.next() {
            prefetch(p);
        }
        for (a, c) in acc.iter_mut().zip(chunk.as_chunks::<8>().0) {
            let mut t = [0.0f64; 8];
            for k in 0..8 {
                t[k] = f(c[k].to_f64());
            }
            for k in 0..8 {
                a[k] += t[k];
            }
        }
    }
    for p in next {
        prefetch(p);
    }
    let mut flat = [0.0f64; LANES];
    for (i, l) in flat.iter_mut().enumerate() {
        *l = acc[i / 8][i % 8];
    }
    for (l, &v) in flat.iter_mut().zip(chunks.remainder()) {
        *l += f(v.to_f64());
    }
    fold(flat)
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
