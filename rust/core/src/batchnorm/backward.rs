//! The backward pass: one reduction over `dy` and `x`, then one elementwise pass writing `dx`.
//!
//! The reduction uses the same fixed tasks as the statistics ([`Plan`]); each task sums
//! `dy` and `dy*(x - mean)` per slot in f64, in a fixed order (per column: block by block, each
//! block's rows in quarter order; per run segment: fixed lanes), and the slots are added in a fixed
//! order (columns over row groups, then channels over their columns; or channels over their
//! segments in memory order). So `dweight`, `dbias` and `dx` do not depend on the SIMD level or the
//! thread count.

use super::elementwise::{run_spans, Coeffs, Span, Stretches};
use super::plan::{run_tasks, Plan, TILE_COLUMNS};
use super::stats::fold;
use super::{Layout, Normalization};
use crate::error::Error;
use crate::real::Real;
use crate::simd::{dispatch, Kernel};

/// Lanes of each of the two accumulators of a run segment.
const LANES: usize = 16;

/// Gradients of batch normalization for the `Normalization` the forward pass used.
///
/// Per channel `k` with `m = n*s` values and `xhat = (x - mean[k])*invstd[k]`:
/// `dbias[k] = sum(dy)` and `dweight[k] = sum(dy*(x - mean[k])) * invstd[k]` (f64, whether or not
/// the layer is affine). In training (batch statistics),
/// `dx = ((m*dy - dbias[k]) - xhat*dweight[k]) * (weight[k]*invstd[k]/m)`; in eval (running
/// statistics), `dx = dy * (weight[k]*invstd[k])`. Elementwise arithmetic is f64, rounded once
/// to `T`. A missing weight acts as 1.
///
/// Errors: `dy`, `x` or `dx` not `n*c*s` long, per-channel slices not `c` long, training with
/// `n*s <= 1`.
pub fn batch_norm_backward<T: Real>(
    dy: &[T],
    x: &[T],
    dx: &mut [T],
    layout: Layout,
    norm: &Normalization<'_>,
    dweight: &mut [f64],
    dbias: &mut [f64],
) -> Result<(), Error> {
    layout.check_len("dy", dy.len())?;
    layout.check_len("x", x.len())?;
    layout.check_len("dx", dx.len())?;
    norm.check(&layout)?;
    layout.check_channels("dweight", dweight.len())?;
    layout.check_channels("dbias", dbias.len())?;
    dweight.fill(0.0);
    dbias.fill(0.0);
    if layout.is_empty() {
        return Ok(());
    }
    channel_sums(dy, x, layout, norm.mean, dbias, dweight);
    for (dw, &is) in dweight.iter_mut().zip(norm.invstd) {
        *dw *= is;
    }
    let coeffs = Coeffs::for_layout(layout);
    let count = layout.count() as f64;
    let scale = if norm.training {
        coeffs.lay_out(layout, |k| norm.weight(k) * norm.invstd[k] / count)
    } else {
        coeffs.lay_out(layout, |k| norm.weight(k) * norm.invstd[k])
    };
    let (mean, invstd, db, dw) = if norm.training {
        (
            coeffs.lay_out(layout, |k| norm.mean[k]),
            coeffs.lay_out(layout, |k| norm.invstd[k]),
            coeffs.lay_out(layout, |k| dbias[k]),
            coeffs.lay_out(layout, |k| dweight[k]),
        )
    } else {
        Default::default()
    };
    let span = Span {
        start: 0,
        a: dy,
        b: x,
        out: dx,
    };
    run_spans(span, |piece| {
        let c = Coefficients {
            scale: &scale,
            mean: &mean,
            invstd: &invstd,
            dbias: &db,
            dweight: &dw,
        };
        if norm.training {
            dispatch(Dx::<T, true> {
                piece,
                layout,
                coeffs,
                count,
                c,
            })
        } else {
            dispatch(Dx::<T, false> {
                piece,
                layout,
                coeffs,
                count,
                c,
            })
        }
    });
    Ok(())
}

/// `sum_dy[k] = sum(dy)` and `sum_dyxmu[k] = sum(dy*(x - mean[k]))` over channel `k`.
fn channel_sums<T: Real>(
    dy: &[T],
    x: &[T],
    layout: Layout,
    mean: &[f64],
    sum_dy: &mut [f64],
    sum_dyxmu: &mut [f64],
) {
    if layout.count() == 0 {
        return;
    }
    // One channel is one sequence of n*s values, however it is shaped.
    let layout = if layout.c == 1 {
        Layout::new(1, 1, layout.count())
    } else {
        layout
    };
    let plan = Plan::new(layout);
    let col_mean = match plan {
        Plan::Rows { .. } => Coeffs::Columns(layout.row()).lay_out(layout, |k| mean[k]),
        Plan::Runs { .. } => Vec::new(),
    };
    let (mut sa, mut sb) = (vec![0.0; plan.slots()], vec![0.0; plan.slots()]);
    run_tasks(&plan, &mut sa, &mut sb, |task, slot0, a, b| {
        dispatch(SumsTask {
            plan: &plan,
            dy,
            x,
            mean,
            col_mean: &col_mean,
            task,
            slot0,
            a,
            b,
        })
    });
    match plan {
        Plan::Rows { groups, .. } => {
            let (j, s) = (layout.row(), layout.s);
            let (acc_a, rest_a) = sa.split_at_mut(j);
            let (acc_b, rest_b) = sb.split_at_mut(j);
            for blk in 0..groups - 1 {
                let (ba, bb) = (&rest_a[blk * j..][..j], &rest_b[blk * j..][..j]);
                for (((a, b), &xa), &xb) in acc_a.iter_mut().zip(acc_b.iter_mut()).zip(ba).zip(bb) {
                    *a += xa;
                    *b += xb;
                }
            }
            for k in 0..layout.c {
                sum_dy[k] = acc_a[k * s..][..s].iter().fold(0.0, |t, &v| t + v);
                sum_dyxmu[k] = acc_b[k * s..][..s].iter().fold(0.0, |t, &v| t + v);
            }
        }
        Plan::Runs { pieces, .. } => {
            let c = layout.c;
            for i in 0..layout.n {
                for piece in 0..pieces {
                    for k in 0..c {
                        let slot = (i * c + k) * pieces + piece;
                        sum_dy[k] += sa[slot];
                        sum_dyxmu[k] += sb[slot];
                    }
                }
            }
        }
    }
}

/// One task's partial sums: `a` = sum(dy), `b` = sum(dy*(x - mean)) per slot.
struct SumsTask<'a, 'o, T> {
    plan: &'a Plan,
    dy: &'a [T],
    x: &'a [T],
    mean: &'a [f64],
    /// Per-column means for [`Plan::Rows`].
    col_mean: &'a [f64],
    task: usize,
    slot0: usize,
    a: &'o mut [f64],
    b: &'o mut [f64],
}

impl<'a, T: Real> Kernel for SumsTask<'a, '_, T> {
    #[inline(always)]
    fn run(self) {
        match *self.plan {
            Plan::Rows { layout, rows, .. } => {
                // Block by block, each block's four quarters walked together (as the statistics
                // do): four sequential streams per array, accumulators loaded once per 4 rows.
                let (all, cols) = self.plan.tile(self.task);
                let (j, w, c0) = (layout.row(), cols.len(), cols.start);
                let mean = &self.col_mean[cols][..w];
                let mut buf = [[0.0f64; TILE_COLUMNS]; 2];
                let [a, b] = &mut buf;
                let (a, b) = (&mut a[..w], &mut b[..w]);
                let at = |arr: &'a [T], r: usize| &arr[r * j + c0..][..w];
                for r0 in all.clone().step_by(rows) {
                    let block = r0..(r0 + rows).min(all.end);
                    let h = block.len() / 4;
                    for r in block.start..block.start + h {
                        let (g0, g1) = (at(self.dy, r), at(self.dy, r + h));
                        let (g2, g3) = (at(self.dy, r + 2 * h), at(self.dy, r + 3 * h));
                        let (v0, v1) = (at(self.x, r), at(self.x, r + h));
                        let (v2, v3) = (at(self.x, r + 2 * h), at(self.x, r + 3 * h));
                        let terms = |i: usize, g: &[T], v: &[T]| {
                            let t = g[i].to_f64();
                            (t, t * (v[i].to_f64() - mean[i]))
                        };
                        for i in 0..w {
                            let (t0, u0) = terms(i, g0, v0);
                            let (t1, u1) = terms(i, g1, v1);
                            let (t2, u2) = terms(i, g2, v2);
                            let (t3, u3) = terms(i, g3, v3);
                            a[i] = (((a[i] + t0) + t1) + t2) + t3;
                            b[i] = (((b[i] + u0) + u1) + u2) + u3;
                        }
                    }
                    for r in block.start + 4 * h..block.end {
                        let (g, v) = (at(self.dy, r), at(self.x, r));
                        for i in 0..w {
                            let t = g[i].to_f64();
                            a[i] += t;
                            b[i] += t * (v[i].to_f64() - mean[i]);
                        }
                    }
                }
                self.a[..w].copy_from_slice(a);
                self.b[..w].copy_from_slice(b);
            }
            Plan::Runs { .. } => {
                for (i, (a, b)) in self.a.iter_mut().zip(self.b.iter_mut()).enumerate() {
                    let (range, k) = self.plan.segment(self.slot0 + i);
                    (*a, *b) = run_sums(&self.dy[range.clone()], &self.x[range], self.mean[k]);
                }
            }
        }
    }
}

/// `(sum(dy), sum(dy*(x - m)))` over one segment with [`LANES`] fixed lanes each: element `i`
/// goes to lane `i % LANES`, each lane adds its elements in order, and the lanes are added by
/// [`fold`].
///
/// Four rows of [`LANES`] elements are taken per step, so each lane's two accumulators are
/// updated four times per load and store: LLVM vectorizes that across the lanes at the level's
/// full width. (One row per step was paired into 128-bit vectors of one lane's two sums, scalar
/// conversions and all: about 1 element per ns.) The order of each lane's additions is the same
/// either way.
#[inline(always)]
pub(super) fn run_sums<T: Real>(dy: &[T], x: &[T], m: f64) -> (f64, f64) {
    let (mut a, mut b) = ([0.0f64; LANES], [0.0f64; LANES]);
    let x = &x[..dy.len()];
    let term = |g: T, v: T| {
        let t = g.to_f64();
        (t, t * (v.to_f64() - m))
    };
    let (g_rows, _) = dy.as_chunks::<LANES>();
    let (x_rows, _) = x.as_chunks::<LANES>();
    let (g_quads, _) = g_rows.as_chunks::<4>();
    for (g, v) in g_quads.iter().zip(x_rows.as_chunks::<4>().0) {
        for k in 0..LANES {
            let mut acc = (a[k], b[k]);
            for (g, v) in g.iter().zip(v) {
                let (t, u) = term(g[k], v[k]);
                acc = (acc.0 + t, acc.1 + u);
            }
            (a[k], b[k]) = acc;
        }
    }
    // The rows left over and the tail, each element to its lane (`done` is a multiple of LANES).
    let done = g_quads.len() * 4 * LANES;
    for (i, (&g, &v)) in dy[done..].iter().zip(&x[done..]).enumerate() {
        let (t, u) = term(g, v);
        a[i % LANES] += t;
        b[i % LANES] += u;
    }
    (fold(a), fold(b))
}

/// Per-element coefficients of `dx`, laid out by [`Coeffs`].
#[derive(Clone, Copy)]
struct Coefficients<'c> {
    /// `weight*invstd/m` (training) or `weight*invstd` (eval).
    scale: &'c [f64],
    mean: &'c [f64],
    invstd: &'c [f64],
    dbias: &'c [f64],
    dweight: &'c [f64],
}

struct Dx<'a, 'c, T, const TRAINING: bool> {
    piece: Span<'a, T>,
    layout: Layout,
    coeffs: Coeffs,
    count: f64,
    c: Coefficients<'c>,
}

/// Training-mode `dx` of one element: `co = [scale, mean, invstd, dbias, dweight]` of its channel.
#[inline(always)]
fn dx_train<T: Real>(count: f64, g: T, v: T, co: [f64; 5]) -> T {
    let [k, m, is, db, dw] = co;
    let xhat = (v.to_f64() - m) * is;
    T::from_f64(((count * g.to_f64() - db) - xhat * dw) * k)
}

impl<T: Real, const TRAINING: bool> Kernel for Dx<'_, '_, T, TRAINING> {
    #[inline(always)]
    fn run(self) {
        let Span {
            start,
            a: dy,
            b: x,
            out,
        } = self.piece;
        let (c, count) = (self.c, self.count);
        for (lo, hi, idx) in Stretches::new(start, out.len(), self.layout, self.coeffs) {
            let (g, v, o) = (&dy[lo..hi], &x[lo..hi], &mut out[lo..hi]);
            match (self.coeffs, TRAINING) {
                (Coeffs::Columns(_), true) => {
                    let n = hi - lo;
                    let k = &c.scale[idx..][..n];
                    let (m, is) = (&c.mean[idx..][..n], &c.invstd[idx..][..n]);
                    let (db, dw) = (&c.dbias[idx..][..n], &c.dweight[idx..][..n]);
                    let (g, v, o) = (&g[..n], &v[..n], &mut o[..n]);
                    for i in 0..n {
                        o[i] = dx_train(count, g[i], v[i], [k[i], m[i], is[i], db[i], dw[i]]);
                    }
                }
                (Coeffs::Columns(_), false) => {
                    let k = &c.scale[idx..][..hi - lo];
                    for ((o, &g), &k) in o.iter_mut().zip(g).zip(k) {
                        *o = T::from_f64(g.to_f64() * k);
                    }
                }
                (Coeffs::Runs, true) => {
                    let co = [
                        c.scale[idx],
                        c.mean[idx],
                        c.invstd[idx],
                        c.dbias[idx],
                        c.dweight[idx],
                    ];
                    for ((o, &g), &v) in o.iter_mut().zip(g).zip(v) {
                        *o = dx_train(count, g, v, co);
                    }
                }
                (Coeffs::Runs, false) => {
                    let k = c.scale[idx];
                    for (o, &g) in o.iter_mut().zip(g) {
                        *o = T::from_f64(g.to_f64() * k);
                    }
                }
            }
        }
    }
}
