//! How a per-channel reduction is cut into fixed tasks, and how the tasks run on the pool.
//!
//! The cut depends only on the layout, never on the thread count: every task writes its partial
//! results to its own slots, and the slots are combined afterwards in a fixed order. So a
//! reduction gives the same bits with one thread or many.
//!
//! Two shapes of task:
//! - [`Plan::Rows`] (`s < RUNS_MIN`): the input as an `(n, j = c*s)` matrix. Rows are cut into
//!   blocks of `rows` rows and columns into tiles of at most `cols` columns; a block of one tile has
//!   at most [`TASK_ELEMENTS`] (it fits in L2, so the next block can be prefetched while one is
//!   summed). A task is `group` consecutive blocks of one tile; it has one slot per column
//!   (`groups * j` slots in all, group-major). Column `q` belongs to channel `q / s`.
//! - [`Plan::Runs`] (`s >= RUNS_MIN`): each contiguous run of `s` elements (one sample, one
//!   channel), cut into `pieces` segments of `seg` elements (the last one shorter); a task is
//!   `per_task` consecutive segments in memory order. One slot per segment, numbered in memory
//!   order: segment `k` of run `(i, ch)` is slot `(i*c + ch)*pieces + k`.

use super::Layout;
use crate::pool::{for_each_piece, Splittable, GRAIN_ELEMENTS};
use core::ops::Range;

/// Most elements of a block (plan `Rows`) or a task (plan `Runs`): it fits in L2.
pub(crate) const TASK_ELEMENTS: usize = GRAIN_ELEMENTS;
/// Widest tile of [`Plan::Rows`]: its accumulators stay in L1.
pub(crate) const TILE_COLUMNS: usize = 256;
/// From this many contiguous elements per (sample, channel) on, reduce along runs.
pub(crate) const RUNS_MIN: usize = 512;
/// Most blocks in one task of [`Plan::Rows`].
const MAX_GROUP: usize = 8;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Plan {
    Rows {
        layout: Layout,
        /// Rows per block (the last block may be shorter).
        rows: usize,
        /// Columns per tile (the last tile may be narrower).
        cols: usize,
        /// Blocks per task (the last group may have fewer).
        group: usize,
        /// Row groups: `ceil(blocks / group)`.
        groups: usize,
        tiles: usize,
    },
    Runs {
        layout: Layout,
        /// Elements per segment (the last segment of a run may be shorter).
        seg: usize,
        /// Segments per run.
        pieces: usize,
        /// Segments per task.
        per_task: usize,
    },
}

impl Plan {
    pub(crate) fn new(layout: Layout) -> Self {
        if layout.s >= RUNS_MIN {
            let pieces = layout.s.div_ceil(TASK_ELEMENTS);
            let seg = layout.s.div_ceil(pieces);
            Plan::Runs {
                layout,
                seg,
                pieces,
                per_task: (TASK_ELEMENTS / seg).max(1),
            }
        } else {
            let j = layout.row().max(1);
            let cols = j.min(TILE_COLUMNS);
            let rows = (TASK_ELEMENTS / cols).clamp(1, layout.n.max(1));
            let blocks = layout.n.div_ceil(rows);
            // Enough tasks to share, few enough slots to stay small.
            let group = (blocks / 16).clamp(1, MAX_GROUP);
            Plan::Rows {
                layout,
                rows,
                cols,
                group,
                groups: blocks.div_ceil(group),
                tiles: j.div_ceil(cols),
            }
        }
    }

    /// Number of tasks.
    pub(crate) fn tasks(&self) -> usize {
        match *self {
            Plan::Rows { groups, tiles, .. } => groups * tiles,
            Plan::Runs { per_task, .. } => self.slots().div_ceil(per_task),
        }
    }

    /// Number of partial-result slots.
    pub(crate) fn slots(&self) -> usize {
        match *self {
            Plan::Rows { layout, groups, .. } => groups * layout.row(),
            Plan::Runs { layout, pieces, .. } => layout.n * layout.c * pieces,
        }
    }

    /// The first slot of `task` (`slots()` for `task == tasks()`): tasks own consecutive slots.
    pub(crate) fn slot_start(&self, task: usize) -> usize {
        match *self {
            Plan::Rows {
                layout,
                cols,
                tiles,
                ..
            } => (task / tiles) * layout.row() + (task % tiles) * cols,
            Plan::Runs { per_task, .. } => (task * per_task).min(self.slots()),
        }
    }

    /// Elements of a full task, counted for the pool (at most its grain, so the pool never asks
    /// to cut a task).
    fn task_weight(&self) -> usize {
        let weight = match *self {
            Plan::Rows { rows, cols, .. } => rows * cols,
            Plan::Runs { seg, per_task, .. } => seg * per_task,
        };
        weight.clamp(1, GRAIN_ELEMENTS)
    }

    /// Rows (the whole group) and columns of a [`Plan::Rows`] task.
    pub(crate) fn tile(&self, task: usize) -> (Range<usize>, Range<usize>) {
        match *self {
            Plan::Rows {
                layout,
                rows,
                cols,
                group,
                tiles,
                ..
            } => {
                let (g, t) = (task / tiles, task % tiles);
                let r0 = g * group * rows;
                let c0 = t * cols;
                (
                    r0..(r0 + group * rows).min(layout.n),
                    c0..(c0 + cols).min(layout.row()),
                )
            }
            Plan::Runs { .. } => (0..0, 0..0),
        }
    }

    /// Rows of row group `g` of a [`Plan::Rows`] plan.
    pub(crate) fn group_rows(&self, g: usize) -> usize {
        match *self {
            Plan::Rows {
                layout,
                rows,
                group,
                ..
            } => ((g + 1) * group * rows).min(layout.n) - g * group * rows,
            Plan::Runs { .. } => 0,
        }
    }

    /// The elements of segment `slot` of a [`Plan::Runs`] plan and the channel they belong to.
    #[inline(always)]
    pub(crate) fn segment(&self, slot: usize) -> (Range<usize>, usize) {
        match *self {
            Plan::Runs {
                layout,
                seg,
                pieces,
                ..
            } => {
                let (run, k) = (slot / pieces, slot % pieces);
                let start = run * layout.s + k * seg;
                let end = (start + seg).min((run + 1) * layout.s);
                (start..end, run % layout.c)
            }
            Plan::Rows { .. } => (0..0, 0),
        }
    }
}

/// Consecutive tasks and the slots they write.
struct Tasks<'a> {
    plan: &'a Plan,
    first: usize,
    count: usize,
    a: &'a mut [f64],
    b: &'a mut [f64],
}

impl Splittable for Tasks<'_> {
    /// Counted in whole tasks of `task_weight()` (at most the pool's grain), so the pool never
    /// asks to cut a single task.
    fn len(&self) -> usize {
        self.count * self.plan.task_weight()
    }

    /// Cut at the task boundary nearest `mid`. A single task cannot be cut: it comes back whole,
    /// with an empty rest.
    fn split_at(self, mid: usize) -> (Self, Self) {
        let unit = self.plan.task_weight();
        let k = if self.count < 2 {
            self.count
        } else {
            ((mid + unit / 2) / unit).clamp(1, self.count - 1)
        };
        let base = self.plan.slot_start(self.first);
        let at = self.plan.slot_start(self.first + k) - base;
        let (a0, a1) = self.a.split_at_mut(at);
        let (b0, b1) = self.b.split_at_mut(at);
        (
            Tasks {
                plan: self.plan,
                first: self.first,
                count: k,
                a: a0,
                b: b0,
            },
            Tasks {
                plan: self.plan,
                first: self.first + k,
                count: self.count - k,
                a: a1,
                b: b1,
            },
        )
    }
}

/// Run `f(task, first_slot, a, b)` for every task of `plan`, where `a` and `b` are the task's own
/// slots of the two output arrays (each `plan.slots()` long). Tasks are spread over the pool.
pub(crate) fn run_tasks<F>(plan: &Plan, a: &mut [f64], b: &mut [f64], f: F)
where
    F: Fn(usize, usize, &mut [f64], &mut [f64]) + Sync,
{
    let all = Tasks {
        plan,
        first: 0,
        count: plan.tasks(),
        a,
        b,
    };
    for_each_piece(vec![all], |piece| {
        let base = plan.slot_start(piece.first);
        for task in piece.first..piece.first + piece.count {
            let (lo, hi) = (
                plan.slot_start(task) - base,
                plan.slot_start(task + 1) - base,
            );
            f(task, base + lo, &mut piece.a[lo..hi], &mut piece.b[lo..hi]);
        }
    });
}

impl Plan {
    /// The elements of the segment after `slot` (empty after the last one), to prefetch.
    #[inline(always)]
    pub(crate) fn next_segment<'x, T>(&self, x: &'x [T], slot: usize) -> &'x [T] {
        if slot + 1 < self.slots() {
            &x[self.segment(slot + 1).0]
        } else {
            &[]
        }
    }
}
