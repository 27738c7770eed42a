"""Step timing: per-call ``perf_counter_ns`` samples with the garbage collector paused.

Functions measured together are interleaved in blocks (A B, B A, A B, ...), so slow drift of a
shared, noisy machine lands on all of them alike; results are medians of the per-call samples.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

import ferroptim as fo

Step = Callable[[], object]


@dataclass(frozen=True)
class Timing:
    """Per-call durations of one function, in nanoseconds."""

    samples_ns: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.samples_ns)

    @property
    def median_ns(self) -> float:
        return float(statistics.median(self.samples_ns))

    @property
    def p25_ns(self) -> float:
        return float(np.percentile(self.samples_ns, 25))

    @property
    def p75_ns(self) -> float:
        return float(np.percentile(self.samples_ns, 75))

    @property
    def min_ns(self) -> float:
        return float(min(self.samples_ns))

    def summary(self) -> dict[str, float | int]:
        return {
            "median_ns": self.median_ns,
            "p25_ns": self.p25_ns,
            "p75_ns": self.p75_ns,
            "min_ns": self.min_ns,
            "n": self.n,
        }


@dataclass(frozen=True)
class Budget:
    """How long to measure one function.

    ``seconds`` is the timed budget per function, the number of timed calls is clamped to
    ``[min_n, max_n]``; before timing, each function runs at least ``warmup`` calls and for at
    least ``warmup_s`` seconds (capped at ``max_warmup`` calls).
    """

    seconds: float
    min_n: int
    max_n: int
    warmup: int = 1
    warmup_s: float = 0.05
    max_warmup: int = 1000
    blocks: int = 10


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the garbage collector off for the body."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_calls(fn: Step, n: int, out: list[int]) -> None:
    """Append the duration of each of ``n`` calls of ``fn`` to ``out`` (ns)."""
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)


def _warm_up(fn: Step, budget: Budget) -> float:
    """Run ``fn`` per the budget's warm-up rule; return an estimate of one call (ns)."""
    samples: list[int] = []
    deadline = time.perf_counter_ns() + int(budget.warmup_s * 1e9)
    while len(samples) < budget.max_warmup and (
        len(samples) < budget.warmup or time.perf_counter_ns() < deadline
    ):
        time_calls(fn, 1, samples)
    steady = samples[len(samples) // 2 :] if len(samples) > 1 else samples
    return max(float(statistics.median(steady)), 1.0)


def measure(fns: Mapping[str, Step], budget: Budget) -> dict[str, Timing]:
    """Warm up, then time every function of ``fns`` in interleaved blocks.

    Each function gets its own call count (``budget.seconds`` divided by its estimated cost,
    clamped), spread evenly over ``budget.blocks`` blocks whose order alternates.
    """
    names = list(fns)
    samples: dict[str, list[int]] = {k: [] for k in names}
    with gc_paused():
        estimate = {k: _warm_up(fns[k], budget) for k in names}
        counts = {
            k: min(budget.max_n, max(budget.min_n, int(budget.seconds * 1e9 / estimate[k])))
            for k in names
        }
        blocks = max(1, min(budget.blocks, *counts.values()))
        for b in range(blocks):
            order = names if b % 2 == 0 else names[::-1]
            for k in order:
                # Spread counts[k] calls over the blocks; the first blocks take the remainder.
                n = counts[k] // blocks + (1 if b < counts[k] % blocks else 0)
                time_calls(fns[k], n, samples[k])
    return {k: Timing(tuple(v)) for k, v in samples.items()}


def measure_call_by_call(
    fns: Mapping[str, Step], rounds: int, warmup: int = 2
) -> dict[str, Timing]:
    """Time one call of each function of ``fns`` per round, ``rounds`` rounds, the order rotating
    by one each round (A B C, B C A, C A B, ...; two functions simply alternate): no call follows
    a call of the same function, so none finds its own arrays left in the cache by the previous
    one (on a CPU whose last-level cache holds much of a workload, :func:`measure`'s back-to-back
    blocks let the lightest kernels reuse it), and every function takes every position."""
    names = list(fns)
    samples: dict[str, list[int]] = {k: [] for k in names}
    with gc_paused():
        for k in names:
            for _ in range(warmup):
                fns[k]()
        for r in range(rounds):
            shift = r % len(names) if len(names) > 2 else 0
            for k in names[shift:] + names[:shift]:
                time_calls(fns[k], 1, samples[k])
    return {k: Timing(tuple(v)) for k, v in samples.items()}


@contextmanager
def kernel_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` kernel threads; the previous count is restored afterwards."""
    old = fo.get_num_threads()
    fo.set_num_threads(n)
    try:
        yield
    finally:
        fo.set_num_threads(old)
