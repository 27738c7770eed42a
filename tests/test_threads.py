"""Threads and processes: concurrent steps, and stepping in a fork()ed child."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _native

# One size per path: the calling thread alone, the helper thread, the rayon pool.
SIZES = {
    "small": [100, 7],
    "mid": [_native.ASSIST_MIN_ELEMENTS + 5, 300],
    "large": [_native.PARALLEL_MIN_ELEMENTS + 17, 3 * _native.GRAIN_ELEMENTS],
}


def params_and_grads(sizes, seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    return params, grads


def adam_result(sizes, seed, steps, backend="native"):
    params, grads = params_and_grads(sizes, seed)
    opt = fo.optim.Adam(params, lr=0.01, backend=backend)
    for _ in range(steps):
        opt.step(grads)
    return params


@pytest.mark.parametrize("path", list(SIZES))
def test_concurrent_steps_on_different_optimizers(path):
    sizes = SIZES[path]
    expected = [adam_result(sizes, seed, 5, backend="reference") for seed in range(4)]
    results: dict[int, list] = {}

    def work(seed):
        results[seed] = adam_result(sizes, seed, 5)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for seed in range(4):
        for got, want in zip(results[seed], expected[seed], strict=True):
            np.testing.assert_array_equal(got, want)


def test_concurrent_steps_on_one_optimizer_are_serialized():
    sizes = SIZES["mid"]
    params, grads = params_and_grads(sizes, 0)
    opt = fo.optim.Adam(params, lr=0.01)
    threads = [
        threading.Thread(target=lambda: [opt.step(grads) for _ in range(10)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # Identical gradients: 40 serialized steps in any order give one result.
    expected = adam_result(sizes, 0, 40, backend="reference")
    for got, want in zip(params, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert opt.state_dict()["state"][0]["step"] == 40.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("threads", [1, 2])
def test_child_of_fork_can_step(threads):
    old = fo.get_num_threads()
    fo.set_num_threads(threads)
    try:
        for sizes in SIZES.values():  # start the helper and the pool in the parent
            adam_result(sizes, 0, 2)
        pid = os.fork()
        if pid == 0:  # child: every path must work, and give the right answer
            code = 0
            try:
                for sizes in SIZES.values():
                    got = adam_result(sizes, 1, 3)
                    want = adam_result(sizes, 1, 3, backend="reference")
                    if not all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)):
                        code = 1
            except BaseException:
                code = 2
            os._exit(code)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child deadlocked")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        fo.set_num_threads(old)


@pytest.mark.parametrize("n", [0, -1, 1025, 10**6])
def test_thread_count_outside_1_to_1024_is_refused_at_once(n):
    before = fo.get_num_threads()
    with pytest.raises(ValueError, match="1 to 1024"):
        fo.set_num_threads(n)
    assert fo.get_num_threads() == before
