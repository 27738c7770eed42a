"""Memory: no growth over many steps, no leaked references to the caller's arrays.

A leak of a few bytes per step (a reference kept to a temporary, a boxed error never freed)
shows after 100,000 steps as megabytes; a reference kept to a caller's array shows at once in
``sys.getrefcount``. Resident memory is read from ``/proc/self/statm`` (Linux); Python-level
allocations are traced with ``tracemalloc``.
"""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc

import numpy as np
import pytest

import ferroptim as fo
import ferroptim._native as native
from ferroptim import batchnorm as bn
from ferroptim import clip

STEPS = 100_000
RSS_LIMIT = 1 << 20  # bytes of resident growth allowed over the whole loop
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss() -> int:
    """Resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")


def tiny_adam(backend: str = "native"):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(n).astype(np.float32) for n in (3, 5)]
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    return params, grads, fo.optim.Adam(params, lr=1e-3, backend=backend)


#: every keyword of ``_native.adam_step`` at torch's defaults
ADAM_KEYWORDS = dict(
    lr=1e-3,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    maximize=False,
    decoupled_weight_decay=False,
)


def adam_kernel_arrays():
    """``(params, grads, exp_avgs, exp_avg_sqs, steps)`` for direct ``_native.adam_step`` calls."""
    params, grads, _ = tiny_adam()
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    return params, grads, m, v, np.zeros(len(params), np.int64)


def growth(loop, n: int) -> int:
    """RSS growth over ``n`` iterations of ``loop`` after a warm-up of ``n // 10``."""
    for _ in range(n // 10):
        loop()
    gc.collect()
    before = rss()
    for _ in range(n):
        loop()
    gc.collect()
    return rss() - before


@needs_proc
def test_no_resident_growth_over_100k_optimizer_steps():
    _params, grads, opt = tiny_adam()
    grown = growth(lambda: opt.step(grads), STEPS)
    assert grown < RSS_LIMIT, f"resident memory grew by {grown} bytes over {STEPS} steps"
    assert opt.state_dict()["state"][0]["step"] == STEPS + STEPS // 10


@needs_proc
def test_no_resident_growth_over_100k_kernel_calls():
    """The binding alone: lists converted, arrays checked, GIL released, step counts written."""
    params, grads, m, v, steps = adam_kernel_arrays()

    def call():
        native.adam_step(params, grads, m, v, None, steps, **ADAM_KEYWORDS)

    grown = growth(call, STEPS)
    assert grown < RSS_LIMIT, f"resident memory grew by {grown} bytes"


@needs_proc
def test_no_resident_growth_over_refused_calls():
    """Errors (a Rust String formatted, a PyErr raised) are freed too."""
    params, grads, m, v, steps = adam_kernel_arrays()
    bad = [grads[0], grads[1].astype(np.float64)]

    def call():
        try:
            native.adam_step(params, bad, m, v, None, steps, **ADAM_KEYWORDS)
        except TypeError:
            pass
        else:
            raise AssertionError("a float64 gradient for a float32 param was accepted")

    grown = growth(call, STEPS // 2)
    assert grown < RSS_LIMIT, f"resident memory grew by {grown} bytes"
    assert not steps.any()


@needs_proc
def test_no_resident_growth_in_clipping_and_batch_norm():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(7).astype(np.float32) for _ in range(3)]
    x = rng.standard_normal((4, 3)).astype(np.float32)
    running = [np.zeros(3, np.float32), np.ones(3, np.float32)]
    out = np.empty_like(x)

    def call():
        clip.clip_grad_norm_(grads, 10.0)
        clip.clip_grad_value_(grads, 10.0)
        _, cache = bn.batch_norm_forward(x, *running, out=out)
        bn.batch_norm_backward(x, cache)

    grown = growth(call, STEPS // 5)
    assert grown < RSS_LIMIT, f"resident memory grew by {grown} bytes"


def test_no_python_allocation_growth_over_steps():
    """tracemalloc: Python-level memory after 20,000 more steps is what it was (the optimizer
    allocates nothing that survives a step)."""
    _params, grads, opt = tiny_adam()
    for _ in range(1000):
        opt.step(grads)
    gc.collect()
    tracemalloc.start()
    try:
        opt.step(grads)
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(20_000):
            opt.step(grads)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 16 * 1024, f"traced memory grew by {after - before} bytes"


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_reference_counts_of_user_arrays_unchanged(backend):
    """The optimizer keeps exactly one reference to each param (in its group) and none to the
    gradients: counts are the same after 1,000 steps as after the first."""
    params, grads, opt = tiny_adam(backend)
    opt.step(grads)
    gc.collect()
    before = [sys.getrefcount(a) for a in (*params, *grads)]
    grads_list_before = sys.getrefcount(grads)
    for _ in range(1000):
        opt.step(grads)
    gc.collect()
    assert [sys.getrefcount(a) for a in (*params, *grads)] == before
    assert sys.getrefcount(grads) == grads_list_before


def test_reference_counts_unchanged_by_kernel_calls_and_errors():
    """The native functions borrow their arguments: success and refusal leave every count as
    it was (a leaked reference on an error path would grow by one per call)."""
    params, grads, m, v, steps = adam_kernel_arrays()
    bad_grads = [grads[0], grads[1][::-1]]
    arrays = (*params, *grads, *m, *v, steps, *bad_grads)
    lists = (params, grads, m, v, bad_grads)
    before = [sys.getrefcount(a) for a in arrays + lists]
    for _ in range(500):
        native.adam_step(params, grads, m, v, None, steps, **ADAM_KEYWORDS)
        with pytest.raises(ValueError):
            native.adam_step(params, bad_grads, m, v, None, steps, **ADAM_KEYWORDS)
        clip.global_norm(grads)
        with pytest.raises(ValueError):
            clip.clip_grad_norm_(bad_grads, 1.0)
    gc.collect()
    assert [sys.getrefcount(a) for a in arrays + lists] == before
