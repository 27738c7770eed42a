"""Thread and process safety beyond ``test_threads.py``.

- One optimizer stepped from several threads with *different* gradients ends in the state of
  some sequential order of those steps (every order is replayed with the reference backend), and
  no update is lost (exact arithmetic: the sum of all updates, whatever the order).
- Threads sharing read-only inputs (gradients, batch-norm input) get the single-threaded results.
- Changing the SIMD level and the thread count while other threads step changes no result.
- A ``fork()`` taken while other threads are inside native steps gives a child that steps
  correctly; a ``spawn``-ed process can step too.
- An array removed from its list by another thread while a native call uses it stays alive.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import ferroptim as fo
from conftest import wait_for_child
from ferroptim import _native, clip
from ferroptim import batchnorm as bn
from ferroptim import functional as F

MID = _native.ASSIST_MIN_ELEMENTS + 5  # the helper-thread path
LARGE = _native.PARALLEL_MIN_ELEMENTS + 17  # the rayon-pool path
TIMEOUT = 60


def run_threads(targets) -> None:
    """Start every target at once (behind a barrier), join, and re-raise the first error."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(target):
        def run():
            try:
                barrier.wait()
                target()
            except BaseException as error:  # surfaced below
                errors.append(error)

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive(), "a thread did not finish"
    if errors:
        raise errors[0]


def test_one_optimizer_from_threads_equals_some_sequential_order():
    """3 threads x 2 steps with each thread's own gradients: 90 possible orders; the result must
    be bit for bit one of them (a torn step, a lost update or mixed gradients would be none)."""
    rng = np.random.default_rng(0)
    sizes = [MID, 40]
    start = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [[rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(3)]
    params = [p.copy() for p in start]
    opt = fo.optim.Adam(params, lr=0.01)
    run_threads([lambda g=g: [opt.step(g) for _ in range(2)] for g in grads])
    assert opt.state_dict()["state"][0]["step"] == 6.0
    orders = set(itertools.permutations([0, 0, 1, 1, 2, 2]))
    assert len(orders) == 90
    for order in orders:
        replay = [p.copy() for p in start]
        ref = fo.optim.Adam(replay, lr=0.01, backend="reference")
        for who in order:
            ref.step(grads[who])
        if all(np.array_equal(a, b) for a, b in zip(params, replay, strict=True)):
            return
    pytest.fail("the threaded result matches no sequential order of the steps")


def test_no_update_is_lost_between_threads():
    """SGD with exactly representable numbers: the result is p0 - lr*(sum of every gradient)
    whatever the order, so a step lost or applied twice would show exactly."""
    n_threads, steps = 4, 25
    params = [np.zeros(LARGE, np.float32), np.zeros(MID, np.float32), np.zeros(9, np.float32)]
    opt = fo.optim.SGD(params, lr=0.5)
    grads = [
        [np.full(p.shape, 2.0 * (k + 1), np.float32) for p in params] for k in range(n_threads)
    ]
    run_threads([lambda g=g: [opt.step(g) for _ in range(steps)] for g in grads])
    expected = -0.5 * steps * sum(2.0 * k + 2 for k in range(n_threads))
    for p in params:
        assert np.all(p == expected), (p.min(), p.max(), expected)


def test_threads_sharing_read_only_inputs_get_single_threaded_results():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(n).astype(np.float32) for n in (LARGE, MID, 7)]
    x = rng.standard_normal((64, 8, 33)).astype(np.float32)
    grads_before = [g.copy() for g in grads]

    def work():
        params = [np.ones_like(g) for g in grads]
        m, v = [np.zeros_like(g) for g in grads], [np.zeros_like(g) for g in grads]
        F.adam_step(params, grads, m, v, step=1, lr=0.1)
        norm = clip.global_norm(grads)
        running = [np.zeros(8, np.float32), np.ones(8, np.float32)]
        y, cache = bn.batch_norm_forward(x, *running)
        dx, _, _ = bn.batch_norm_backward(x, cache)
        return [*params, np.array(norm), *running, y, dx]

    expected = work()
    results: dict[int, list] = {}

    def worker(k):
        def run():
            for _ in range(3):
                results[k] = work()

        return run

    run_threads([worker(k) for k in range(4)])
    for k in range(4):
        for got, want in zip(results[k], expected, strict=True):
            np.testing.assert_array_equal(got, want)
    for g, b in zip(grads, grads_before, strict=True):
        np.testing.assert_array_equal(g, b)


def test_changing_level_and_threads_during_steps_changes_nothing(
    restore_simd_level, restore_num_threads
):
    """Results are the same at every level and thread count, so switching them while other
    threads step must not change any result (nor crash a step in flight)."""
    levels = fo.supported_simd_levels()
    stop = threading.Event()

    def switcher():
        for k in itertools.count():
            if stop.is_set():
                return
            _native.set_simd_level(levels[k % len(levels)])
            fo.set_num_threads(1 + k % 2)
            time.sleep(0.0005)

    def adam(seed, backend="native"):
        rng = np.random.default_rng(seed)
        params = [rng.standard_normal(n).astype(np.float32) for n in (LARGE, MID, 33)]
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
        opt = fo.optim.Adam(params, lr=0.01, amsgrad=True, backend=backend)
        for _ in range(30):
            opt.step(grads)
        return params

    results: dict[int, list] = {}
    background = threading.Thread(target=switcher)
    background.start()
    try:
        run_threads([lambda k=k: results.__setitem__(k, adam(k)) for k in range(3)])
    finally:
        stop.set()
        background.join(TIMEOUT)
    for k in range(3):
        for got, want in zip(results[k], adam(k, "reference"), strict=True):
            np.testing.assert_array_equal(got, want)


def _adam_paths(seed: int, backend: str = "native") -> list[np.ndarray]:
    """Three Adam steps on one small, one mid-sized and one large tensor."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(np.float32) for n in (7, MID, LARGE)]
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    opt = fo.optim.Adam(params, lr=0.01, backend=backend)
    for _ in range(3):
        opt.step(grads)
    return params


def _wait(pid: int) -> int:
    code = wait_for_child(pid, TIMEOUT)
    if code is None:
        pytest.fail("a forked child hung")
    return code


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_while_other_threads_are_stepping(restore_num_threads):
    """The child of a fork taken while two threads are inside native steps (on the helper-thread
    and thread-pool paths) steps every path correctly: the parent's locks, pool and helper are
    not waited for in the child."""
    fo.set_num_threads(2)
    want = _adam_paths(5, "reference")
    stop = threading.Event()

    def stepper(n):
        params = [np.ones(n, np.float32)]
        opt = fo.optim.Adam(params)
        grads = [np.ones(n, np.float32)]
        while not stop.is_set():
            opt.step(grads)

    background = [threading.Thread(target=stepper, args=(n,)) for n in (MID, LARGE)]
    for t in background:
        t.start()
    codes = []
    try:
        for _ in range(12):
            time.sleep(0.003)
            pid = os.fork()
            if pid == 0:  # child
                code = 1
                try:
                    got = _adam_paths(5)
                    code = 0 if all(map(np.array_equal, got, want)) else 3
                finally:
                    os._exit(code)
            codes.append(_wait(pid))
    finally:
        stop.set()
        for t in background:
            t.join(TIMEOUT)
    assert codes == [0] * len(codes)


def _spawned_step(seed: int) -> list[np.ndarray]:
    return _adam_paths(seed)


def test_spawned_process_can_step():
    """A fresh interpreter (multiprocessing's spawn) imports ferroptim and steps correctly."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        got = pool.apply_async(_spawned_step, (11,)).get(TIMEOUT)
    for a, b in zip(got, _adam_paths(11, "reference"), strict=True):
        np.testing.assert_array_equal(a, b)


# Another thread empties the list an array came in while the native call runs without the GIL.
# Before the binding kept its own reference to every checked array, the last reference went with
# the list, NumPy freed (munmapped: 40 MB) the memory the kernel was using, and the process died
# with SIGSEGV. Run in a subprocess so that a regression cannot take the test run down with it.
_EMPTIED_LIST = """
import gc, sys, threading, time
import numpy as np
import ferroptim as fo
from ferroptim import _native, clip

fo.set_num_threads(1)
n = 10_000_000  # 40 MB per array: beyond malloc's mmap threshold, so freeing unmaps it
which = sys.argv[1]

def attempt():
    # One call racing a thread that empties one of its lists 3 ms in. Returns True when the
    # list was emptied while the call ran (the case under test), False when the race went
    # another way: emptied before the call read its lists (a clean length error) or after it
    # returned.
    params, grads = [np.ones(n, np.float32)], [np.ones(n, np.float32)]
    m, v, steps = [np.zeros(n, np.float32)], [np.zeros(n, np.float32)], np.zeros(1, np.int64)
    lists = {"params": params, "grads": grads, "exp_avgs": m, "clip": grads}
    emptied = []

    def empty_it():
        time.sleep(0.003)
        lists[which].clear()
        emptied.append(time.perf_counter())
        gc.collect()

    thread = threading.Thread(target=empty_it)
    thread.start()
    started = time.perf_counter()
    try:
        if which == "clip":
            clip.clip_grad_norm_(grads, 1.0, 3.0)  # (p = 3: a slow first pass)
        else:
            hp = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
            flags = dict(amsgrad=False, maximize=False, decoupled_weight_decay=False)
            _native.adam_step(params, grads, m, v, None, steps, **hp, **flags)
    except ValueError:  # emptied before the call read its lists: refused cleanly
        thread.join()
        return False
    returned = time.perf_counter()
    thread.join()
    return started < emptied[0] < returned

hits = sum(attempt() for _ in range(10))
print("ok" if hits else "the list was never emptied during a call")
"""


@pytest.mark.parametrize("which", ["params", "grads", "exp_avgs", "clip"])
def test_array_removed_from_its_list_during_a_call_stays_alive(which):
    done = subprocess.run(
        [sys.executable, "-c", _EMPTIED_LIST, which],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ok"
