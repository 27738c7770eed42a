"""Gradient clipping benchmarks (rows for the ``bench`` command).

(0) The global norm of a many-tensor gradient list against the same bytes in one array, timed
interleaved in the same run:

* ``global_norm``: :func:`ferroptim._native.global_norm` (L2) over the workload's list;
* ``global_norm, one array``: the same over one array holding all the elements;
* ``one read, one array``: :func:`ferroptim._native.roofline_read` on that array (every element
  read once, no arithmetic): the limit of any reduction over these bytes;
* ``one read, same arrays``: the same read over the workload's list itself, the limit of a
  reduction over this memory (separately allocated arrays can read slower than one array, which
  no kernel can change);
* ``global_norm, same arrays in one buffer`` and ``one read, same arrays in one buffer``: the
  norm and the read of a copy of the list laid out as ``Module.flatten_parameters`` lays out a
  model's gradients (64-byte-aligned views of one buffer): the same arrays, one allocation;
* ``numpy``: ``np.sqrt(sum(np.vdot(g, g)))`` over the list;
* ``global_norm, same arrays on 2 MB pages`` and ``one read, same arrays on 2 MB pages``: the
  norm and the read of copies of the list, each array in its own mapping on huge pages (where
  Linux gives them; the table's note says which share did), as the one array is (NumPy asks for
  huge pages from 4 MB, and most of the list's arrays are smaller): they separate what the
  page size costs from what the number of arrays costs.

(a) ``clip_grad_norm_`` on one workload, four ways, timed interleaved in the same run:

* ``native``: :func:`ferroptim._native.clip_grad_norm_` (one read pass for the norm, one read and
  write pass for the scale);
* ``native, one array``: the same on one array holding all the elements (the same bytes);
* ``numpy``: the straightforward NumPy version, ``np.sqrt(sum(np.vdot(g, g)))`` then ``g *= coef``
  per array;
* ``roofline``: :func:`ferroptim._native.roofline_step` with no state arrays on a separate list of
  arrays (read p, read g, write p), which moves the same 12 bytes per float32 element as the
  clip (read g; read g, write g) and does no arithmetic;
* ``native, same arrays in one buffer``: ``native`` on a copy of the list laid out as
  ``Module.flatten_parameters`` lays out a model's gradients.

(b) ``Adam(max_grad_norm=1.0)`` against plain ``Adam`` (native, same workload and gradients): the
cost of clipping inside the step, one extra read of the gradients (32 instead of 28 bytes per
float32 element, so 1.14x is the memory-bound ideal), and ``one read of grads`` (the
gradients read once by :func:`ferroptim._native.roofline_read`): the in-step norm pass costs the
clipped step's time minus the plain step's, and its limit is that one read. A read timed in
blocks of reads finds the gradients in cache; the norm pass runs after a step that has streamed
parameters, gradients and state and evicted them. ``Adam, one read of grads first`` (a read, then
the plain step) times that read in the norm pass's situation: minus the plain step, it is the
in-step limit of the norm pass, and over the plain step, the best ratio any norm pass can reach.
``Adam, same arrays in one buffer`` and the clipped Adam ``..., same arrays in one buffer`` step
copies of the parameters and gradients laid out as ``Module.flatten_parameters`` lays out a
model's (the state is the optimizer's own, one allocation per state name in every row): their
``time / plain`` is over the plain step on that layout, and ``time / plain on separate arrays``
over the plain step on the separately allocated arrays. ``roofline step`` (Adam's bytes with no
arithmetic, :func:`ferroptim._native.roofline_step` with two state arrays, on the same gradients)
and ``roofline step, one read of grads first`` give the price of that extra read on this machine
with nothing to hide it behind: their ratio is the clipped-over-plain ratio of a step that is
pure data movement. The bytes' 1.14x assumes a byte written costs what a byte read does.

Each function is warmed up, then timed per call, in blocks of consecutive calls interleaved with
the other functions' blocks; numbers are medians. The same gradients are clipped again at every
call, and every call must scale them, as fresh gradients above the bound would be in training (a
coefficient of exactly 1 skips the scale pass): each call's ``max_norm`` is ``DECAY`` times the
previous call's, starting from the initial norm, so the coefficient stays near ``DECAY``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim import _native
from ferroptim._flat_layout import packed_copies
from ferroptim.bench.configs import Roofline, bytes_per_element
from ferroptim.bench.pages import anon_huge_kb, huge_page_copies
from ferroptim.bench.table import fmt_ratio, fmt_time, markdown_table
from ferroptim.bench.timing import Budget, Timing, kernel_threads, measure
from ferroptim.bench.workloads import WORKLOADS, Workload

__all__ = [
    "adam_bytes_per_element",
    "clip_bytes_per_element",
    "clipping_markdown",
    "numpy_clip_grad_norm_",
    "run_clipping_bench",
    "shrinking_clip",
]

MAX_NORM = 1.0
#: the norm and the read of copies of the workload's arrays on 2 MB pages (``bench.pages``)
HUGE_NORM = "global_norm, same arrays on 2 MB pages"
HUGE_READ = "one read, same arrays on 2 MB pages"
#: the suffix of the variants on the workload's arrays laid out as ``Module.flatten_parameters``
#: lays out a model's (64-byte-aligned views of one buffer, ``_flat_layout.packed_copies``):
#: the norm, the read, the clip and Adam (params and grads; the state is the optimizer's own)
FLAT = ", same arrays in one buffer"
FLAT_NORM = f"global_norm{FLAT}"
FLAT_READ = f"one read{FLAT}"
FLAT_ADAM = f"Adam{FLAT}"
#: the roofline step with Adam's two state arrays (its bytes, no arithmetic) on the same
#: gradients, alone and after one read of them: the ratio a step of no arithmetic pays here
#: for the norm pass's extra read
ROOFLINE_ADAM = "roofline step"
ROOFLINE_READ_FIRST = f"{ROOFLINE_ADAM}, one read of grads first"
#: each timed clip call bounds the norm to this fraction of the previous call's bound
DECAY = 0.9995

# Consecutive calls of one function in each of 10 blocks (block order alternating): calls of
# different functions interleaved one by one would evict each other's arrays from the cache and
# make the median depend on which function ran just before.
FULL_BUDGET = Budget(seconds=0.5, min_n=10, max_n=5000, warmup=3, warmup_s=0.1, blocks=10)
QUICK_BUDGET = Budget(seconds=0.02, min_n=3, max_n=20, warmup=1, warmup_s=0.0, blocks=3)


def numpy_clip_grad_norm_(grads: Sequence[np.ndarray], max_norm: float) -> float:
    """The straightforward NumPy ``clip_grad_norm_`` (L2) the native one is compared with."""
    total = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads)))
    coef = min(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= g.dtype.type(coef)
    return total


def shrinking_clip(
    clip: Callable[[Sequence[np.ndarray], float], float], grads: list[np.ndarray], total: float
) -> Callable[[], float]:
    """``clip(grads, max_norm)`` where ``grads`` has norm ``total`` at the first call and
    ``max_norm`` is ``DECAY`` times the bound of the previous call (``total * DECAY`` at first):
    every call scales the gradients by about ``DECAY`` (see the module docstring)."""
    bound = [total]

    def call() -> float:
        bound[0] *= DECAY
        return clip(grads, bound[0])

    return call


def clip_bytes_per_element(itemsize: int) -> int:
    """Bytes a norm-clip moves per element: read g (norm), read g and write g (scale), the bytes
    of a roofline step with no state."""
    return bytes_per_element(0, itemsize)


def adam_bytes_per_element(itemsize: int, *, clipped: bool) -> int:
    """Bytes an Adam step moves per element (read p, g, m, v; write p, m, v), plus one more read
    of g for the norm pass of ``max_grad_norm``."""
    return bytes_per_element(2, itemsize) + (itemsize if clipped else 0)


def _row(section: str, variant: str, workload: Workload, bpe: int, timing: Timing) -> dict:
    median_ns = timing.median_ns
    return {
        "section": section,
        "variant": variant,
        "workload": workload.name,
        "n_params": workload.n_params,
        "n_tensors": workload.n_tensors,
        "bytes_per_elem": bpe,
        "median_ms": median_ns / 1e6,
        "min_ms": timing.min_ns / 1e6,
        "p25_ms": timing.p25_ns / 1e6,
        "p75_ms": timing.p75_ns / 1e6,
        "n": timing.n,
        "gbps": bpe * workload.n_params / median_ns,  # bytes/ns == GB/s
    }


def _norm_rows(workload: Workload, seed: int, budget: Budget) -> list[dict[str, Any]]:
    _, grads = workload.make_arrays(seed)
    flat = packed_copies(grads)
    one = np.concatenate([g.ravel() for g in grads])
    bpe = one.itemsize  # a norm reads g once
    fns: dict[str, Callable[[], object]] = {
        "global_norm": lambda: _native.global_norm(grads),
        "global_norm, one array": lambda: _native.global_norm([one]),
        "one read, one array": lambda: _native.roofline_read([one]),
        "one read, same arrays": lambda: _native.roofline_read(grads),
        FLAT_NORM: lambda: _native.global_norm(flat),
        FLAT_READ: lambda: _native.roofline_read(flat),
        "numpy": lambda: float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads))),
    }
    huge_before = anon_huge_kb()
    huge = huge_page_copies(grads)
    huge_after = anon_huge_kb()
    if huge is not None:
        fns[HUGE_NORM] = lambda: _native.global_norm(huge)
        fns[HUGE_READ] = lambda: _native.roofline_read(huge)
    timings = measure(fns, budget)
    one_read_ns = timings["one read, one array"].median_ns
    same_read = timings["one read, same arrays"]
    rows = []
    for variant, timing in timings.items():
        row = _row("global_norm", variant, workload, bpe, timing)
        row["pct_of_one_read"] = one_read_ns / timing.median_ns * 100.0
        row["pct_of_same_read"] = same_read.median_ns / timing.median_ns * 100.0
        row["pct_of_same_read_min"] = same_read.min_ns / timing.min_ns * 100.0
        rows.append(row)
    if huge_before is not None and huge_after is not None:
        share = (huge_after - huge_before) * 1024 / one.nbytes
        for row in rows:
            if row["variant"] in (HUGE_NORM, HUGE_READ):
                row["huge_page_share"] = min(share, 1.0)
    return rows


def _clip_rows(workload: Workload, seed: int, budget: Budget) -> list[dict[str, Any]]:
    _, pristine = workload.make_arrays(seed)
    itemsize = pristine[0].itemsize
    bpe = clip_bytes_per_element(itemsize)
    native_grads = [g.copy() for g in pristine]
    one_grads = [np.concatenate([g.ravel() for g in pristine])]
    numpy_grads = [g.copy() for g in pristine]
    native_total = _native.clip_grad_norm_([g.copy() for g in pristine], MAX_NORM)
    numpy_total = numpy_clip_grad_norm_([g.copy() for g in pristine], MAX_NORM)
    fns = {
        "native": shrinking_clip(_native.clip_grad_norm_, native_grads, native_total),
        "native, one array": shrinking_clip(_native.clip_grad_norm_, one_grads, native_total),
        "numpy": shrinking_clip(numpy_clip_grad_norm_, numpy_grads, numpy_total),
        "roofline": Roofline(pristine, pristine).step_fn(0),  # writes copies; reads pristine
        f"native{FLAT}": shrinking_clip(
            _native.clip_grad_norm_, packed_copies(pristine), native_total
        ),
    }
    timings = measure(fns, budget)
    native_ns = timings["native"].median_ns
    roof_ns = timings["roofline"].median_ns
    one = timings["native, one array"]
    rows = []
    for variant, timing in timings.items():
        row = _row("clip_grad_norm_", variant, workload, bpe, timing)
        row["vs_native"] = timing.median_ns / native_ns
        row["pct_of_roofline"] = roof_ns / timing.median_ns * 100.0
        row["pct_of_one_array"] = one.median_ns / timing.median_ns * 100.0
        row["pct_of_one_array_min"] = one.min_ns / timing.min_ns * 100.0
        rows.append(row)
    rows[0]["total_norm"] = native_total
    rows[2]["total_norm"] = numpy_total
    return rows


def _adam_rows(workload: Workload, seed: int, budget: Budget) -> list[dict[str, Any]]:
    params, grads = workload.make_arrays(seed)
    itemsize = params[0].itemsize
    plain = fo.optim.Adam([p.copy() for p in params], backend="native")
    clipped = fo.optim.Adam([p.copy() for p in params], max_grad_norm=MAX_NORM, backend="native")
    flat_grads = packed_copies(grads)
    flat_plain = fo.optim.Adam(packed_copies(params), backend="native")
    flat_clipped = fo.optim.Adam(packed_copies(params), max_grad_norm=MAX_NORM, backend="native")
    roofline = Roofline(params, grads).step_fn(2)  # Adam's bytes, no arithmetic
    del params
    clipped_name = f"Adam max_grad_norm={MAX_NORM:g}"

    def read_then_step() -> None:
        _native.roofline_read(grads)
        plain.step(grads)

    def read_then_roofline() -> None:
        _native.roofline_read(grads)
        roofline()

    fns = {
        "Adam": lambda: plain.step(grads),
        clipped_name: lambda: clipped.step(grads),
        "Adam, one read of grads first": read_then_step,
        "one read of grads": lambda: _native.roofline_read(grads),
        FLAT_ADAM: lambda: flat_plain.step(flat_grads),
        f"{clipped_name}{FLAT}": lambda: flat_clipped.step(flat_grads),
        ROOFLINE_ADAM: roofline,
        ROOFLINE_READ_FIRST: read_then_roofline,
    }
    timings = measure(fns, budget)
    plain_t = timings["Adam"]
    rows = []
    moved = (
        adam_bytes_per_element(itemsize, clipped=False),
        adam_bytes_per_element(itemsize, clipped=True),
        adam_bytes_per_element(itemsize, clipped=True),
        itemsize,  # the read
        adam_bytes_per_element(itemsize, clipped=False),
        adam_bytes_per_element(itemsize, clipped=True),
        adam_bytes_per_element(itemsize, clipped=False),
        adam_bytes_per_element(itemsize, clipped=True),
    )
    for (variant, timing), bpe in zip(timings.items(), moved, strict=True):
        plain_here = (
            timings[FLAT_ADAM]
            if variant.endswith(FLAT)
            else timings[ROOFLINE_ADAM]
            if variant.startswith(ROOFLINE_ADAM)
            else plain_t
        )
        row = _row("Adam max_grad_norm", variant, workload, bpe, timing)
        row["vs_plain"] = timing.median_ns / plain_here.median_ns
        row["vs_plain_min"] = timing.min_ns / plain_here.min_ns
        row["vs_separate_plain"] = timing.median_ns / plain_t.median_ns
        rows.append(row)
    rows[1]["ideal_vs_plain"] = rows[1]["bytes_per_elem"] / rows[0]["bytes_per_elem"]
    rows[1]["last_grad_norm"] = clipped.last_grad_norm
    norm_pass_ns = timings[clipped_name].median_ns - plain_t.median_ns
    read_in_step_ns = timings["Adam, one read of grads first"].median_ns - plain_t.median_ns
    rows[1]["norm_pass_ms"] = norm_pass_ns / 1e6
    rows[1]["read_in_step_ms"] = read_in_step_ns / 1e6
    one_read_ns = timings["one read of grads"].median_ns
    rows[1]["norm_pass_pct_of_one_read"] = _pct(one_read_ns, norm_pass_ns)
    rows[1]["norm_pass_pct_of_read_in_step"] = _pct(read_in_step_ns, norm_pass_ns)
    rows[1]["roofline_read_first_vs_roofline"] = (
        timings[ROOFLINE_READ_FIRST].median_ns / timings[ROOFLINE_ADAM].median_ns
    )
    return rows


def _pct(limit_ns: float, ns: float) -> float:
    """``limit_ns`` as a percentage of ``ns`` (inf when ``ns`` is not positive)."""
    return limit_ns / ns * 100.0 if ns > 0 else float("inf")


def run_clipping_bench(
    workload: str = "transformer",
    *,
    threads: int = 2,
    quick: bool = False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Time (a) ``clip_grad_norm_`` native / NumPy / roofline and (b) Adam with and without
    ``max_grad_norm`` on ``workload`` (a key of :data:`WORKLOADS`); return one dict per timed
    function.

    Every row has ``section``, ``variant``, ``workload``, ``n_params``, ``n_tensors``,
    ``bytes_per_elem``, ``median_ms``, ``min_ms``, ``p25_ms``, ``p75_ms``, ``n`` (timed calls)
    and ``gbps`` (bytes moved per second at the median). Section ``"global_norm"`` rows add
    ``pct_of_one_read`` (the one-array read's time over the row's), ``pct_of_same_read`` (the
    read of the workload's own arrays over the row's) and ``pct_of_same_read_min`` (the same
    from the minima); the rows of the copies on 2 MB pages add ``huge_page_share`` (the share of
    their bytes Linux put on huge pages) where Linux reports it. Section ``"clip_grad_norm_"``
    rows (variants ``native``, ``native, one array``, ``numpy``, ``roofline``, ``native, same
    arrays in one buffer``) add
    ``vs_native`` (time over native's), ``pct_of_one_array`` (and ``pct_of_one_array_min``,
    from the minima) and ``pct_of_roofline``; section ``"Adam max_grad_norm"`` rows
    (``Adam``, the clipped Adam, ``Adam, one read of grads first``, ``one read of grads``, the
    plain and the clipped Adam on arrays in one buffer, then the roofline step alone and after
    one read of the gradients) add ``vs_plain`` (time over plain Adam's on the same layout, the
    roofline rows over the roofline step), ``vs_plain_min`` (the same from the minima),
    ``vs_separate_plain`` (time over plain Adam's on separate arrays) and, on
    the clipped row, ``ideal_vs_plain`` (the bytes ratio), ``last_grad_norm``,
    ``norm_pass_ms`` (clipped minus plain), ``read_in_step_ms`` (read first minus plain),
    ``norm_pass_pct_of_one_read``, ``norm_pass_pct_of_read_in_step`` and
    ``roofline_read_first_vs_roofline``.
    The kernel thread count is set to ``threads`` for the run and restored afterwards.
    """
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    budget = QUICK_BUDGET if quick else FULL_BUDGET
    with kernel_threads(threads):
        chosen = WORKLOADS[workload]
        rows = _norm_rows(chosen, seed, budget)
        gc.collect()
        rows += _clip_rows(chosen, seed, budget)
        gc.collect()  # the clip section's arrays, before Adam allocates its own
        rows += _adam_rows(chosen, seed, budget)
        gc.collect()
        return rows


#: One table column: its header and how a row's cell is written.
Column = tuple[str, Callable[[dict[str, Any]], str]]


def _pct_cell(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda r: f"{r[key]:.0f}%"


def _columns_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """A markdown table of ``rows`` with one column per ``(header, cell)`` pair."""
    return markdown_table(
        [[cell(r) for _, cell in columns] for r in rows], [header for header, _ in columns]
    )


#: The leading columns of every table: the variant, its median time and bandwidth.
_TIMING: list[Column] = [
    ("variant", lambda r: r["variant"]),
    ("ms", lambda r: fmt_time(r["median_ms"])),
    ("GB/s", lambda r: f"{r['gbps']:.1f}"),
]
_MIN_MS: Column = ("min ms", lambda r: fmt_time(r["min_ms"]))
_NORM_COLUMNS: list[Column] = [
    *_TIMING,
    ("one read / time", _pct_cell("pct_of_one_read")),
    ("same-arrays read / time", _pct_cell("pct_of_same_read")),
    _MIN_MS,
    ("same-arrays read / time, minima", _pct_cell("pct_of_same_read_min")),
]
_CLIP_COLUMNS: list[Column] = [
    *_TIMING,
    ("time / native", lambda r: fmt_ratio(r["vs_native"])),
    ("one array / time", _pct_cell("pct_of_one_array")),
    ("% of roofline", _pct_cell("pct_of_roofline")),
    _MIN_MS,
    ("one array / time, minima", _pct_cell("pct_of_one_array_min")),
]
_ADAM_COLUMNS: list[Column] = [
    _TIMING[0],
    ("B/elem", lambda r: str(r["bytes_per_elem"])),
    *_TIMING[1:],
    ("time / plain", lambda r: f"{r['vs_plain']:.2f}x"),
    ("time / plain on separate arrays", lambda r: f"{r['vs_separate_plain']:.2f}x"),
    _MIN_MS,
    ("minima / plain", lambda r: f"{r['vs_plain_min']:.2f}x"),
]


def clipping_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`run_clipping_bench` as three markdown tables."""
    out = []
    norm = [r for r in rows if r["section"] == "global_norm"]
    if norm:
        w = norm[0]
        out.append(
            f"global_norm (L2) on {w['workload']} ({w['n_params']:,} params, "
            f"{w['n_tensors']} tensors) and on the same bytes in one array, "
            f"{w['bytes_per_elem']} B/elem\n"
        )
        out.append(_columns_table(norm, _NORM_COLUMNS))
        share = next((r["huge_page_share"] for r in norm if "huge_page_share" in r), None)
        if share is not None:
            out.append(f"\nshare of the 2 MB-page copies Linux put on huge pages: {share:.0%}")
    clip = [r for r in rows if r["section"] == "clip_grad_norm_"]
    if clip:
        out.append("")
        w = clip[0]
        out.append(
            f"clip_grad_norm_ (L2, every call scales) on {w['workload']} "
            f"({w['n_params']:,} params, {w['n_tensors']} tensors), {w['bytes_per_elem']} B/elem\n"
        )
        out.append(_columns_table(clip, _CLIP_COLUMNS))
    adam = [r for r in rows if r["section"] == "Adam max_grad_norm"]
    if adam:
        ideal = adam[1].get("ideal_vs_plain")
        note = f" (memory-bound ideal {ideal:.2f}x)" if ideal else ""
        out.append(f"\nAdam with in-step norm clipping vs plain Adam{note}\n")
        out.append(_columns_table(adam, _ADAM_COLUMNS))
        clipped = adam[1]
        if "norm_pass_ms" in clipped:
            out.append(
                f"\nin-step norm pass (clipped minus plain): "
                f"{fmt_time(clipped['norm_pass_ms'])} ms, one read of the gradients / norm pass: "
                f"{clipped['norm_pass_pct_of_one_read']:.0f}%; the read in the norm pass's "
                f"situation (read first minus plain): {fmt_time(clipped['read_in_step_ms'])} ms, "
                f"{clipped['norm_pass_pct_of_read_in_step']:.0f}% of the norm pass\n"
            )
        if "roofline_read_first_vs_roofline" in clipped:
            out.append(
                "the machine's own ratio, with no arithmetic: one read of the gradients then "
                f"the roofline step takes {clipped['roofline_read_first_vs_roofline']:.2f}x the "
                "roofline step alone\n"
            )
    return "\n".join(out) + "\n"
