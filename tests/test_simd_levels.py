"""Native == reference at every SIMD level this machine supports and with 1 or 2 threads, with
sizes around the 16-element vector block, the parallel threshold and the grain; and the
``FERROPTIM_SIMD`` / ``FERROPTIM_NUM_THREADS`` environment variables are honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ferroptim._native as native
from conftest import DTYPES, KERNELS, Problem, assert_problems_equal, hyper, run_equivalence

LEVELS = native.supported_simd_levels()
GRAIN = native.GRAIN_ELEMENTS
PARALLEL_MIN = native.PARALLEL_MIN_ELEMENTS
ASSIST_MIN = native.ASSIST_MIN_ELEMENTS
PIECE = native.ASSIST_PIECE_ELEMENTS
# Mid-sized work (ASSIST_MIN <= total < PARALLEL_MIN) is shared with the helper thread.
MID_SIZES = [PIECE * 3 + 7, 5, PIECE - 1, 40000, 64, 640]
assert ASSIST_MIN <= sum(MID_SIZES) < PARALLEL_MIN

# Sizes around one 16-element block and a cache line, around the grain, and a total above the
# parallel threshold (so the call is split into pieces run on the pool).
SIZES = [1, 15, 16, 17, 31, 33, 63, 65, GRAIN - 1, GRAIN + 1, 2 * GRAIN + 17]
assert sum(SIZES) > PARALLEL_MIN


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_level_and_thread_count(kernel, dtype, simd_level, num_threads):
    shapes = [(n,) for n in SIZES]
    run_equivalence(kernel, hyper(kernel, full=True), shapes, dtype, n_steps=3, none_at=(2,))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel", KERNELS)
def test_mid_sized_work_shared_with_helper(kernel, dtype, simd_level, num_threads):
    shapes = [(n,) for n in MID_SIZES]
    run_equivalence(kernel, hyper(kernel, full=True), shapes, dtype, n_steps=3, none_at=(1,))


@pytest.mark.parametrize(
    "sizes",
    [
        [ASSIST_MIN - 1],
        [ASSIST_MIN],
        [PARALLEL_MIN - 1],
        [PARALLEL_MIN],
        [PARALLEL_MIN + 1],
        [PARALLEL_MIN // 2, PARALLEL_MIN // 2 + 1],
        [GRAIN * 3 + 5, 3],
    ],
    ids=lambda s: "+".join(map(str, s)),
)
def test_parallel_threshold(sizes, simd_level, restore_num_threads):
    native.set_num_threads(2)
    hp = hyper("adam", full=True)
    run_equivalence("adam", hp, [(n,) for n in sizes], np.float32, n_steps=2)


def test_levels_agree_with_each_other(restore_simd_level, restore_num_threads):
    """The same call gives the same bits at every level and thread count."""
    base = Problem.build("rmsprop", hyper("rmsprop", full=True), [(n,) for n in SIZES], seed=9)
    grads = base.random_grads(np.random.default_rng(1))
    results = []
    for level in LEVELS:
        for threads in (1, 2):
            native.set_simd_level(level)
            native.set_num_threads(threads)
            problem = base.copy()
            problem.step("native", grads)
            results.append(problem)
    for other in results[1:]:
        assert_problems_equal(other, results[0])


ALL_LEVELS = ("avx512", "avx2", "sse2", "neon", "scalar")
UNSUPPORTED = [level for level in ALL_LEVELS if level not in LEVELS]


@pytest.mark.parametrize("level", ["sse4", "", "fast", *UNSUPPORTED])
def test_unknown_or_unsupported_level_refused(level, restore_simd_level):
    before = native.simd_level()
    with pytest.raises(ValueError, match="level"):
        native.set_simd_level(level)
    assert native.simd_level() == before


@pytest.mark.parametrize("n", [0, -1])
def test_bad_thread_count_refused(n, restore_num_threads):
    before = native.get_num_threads()
    with pytest.raises(ValueError):
        native.set_num_threads(n)
    assert native.get_num_threads() == before


_PROBE = """
import json
import numpy as np
import ferroptim._native as native
import ferroptim.reference as reference

report = {"level": native.simd_level(), "threads": native.get_num_threads()}
outs = []
for backend in (native, reference):
    p = [np.linspace(-1, 1, n, dtype=np.float32) for n in (17, 70001)]
    g = [np.cos(np.arange(n, dtype=np.float32)) for n in (17, 70001)]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    steps = np.zeros(2, np.int64)
    backend.adam_step(p, g, m, v, None, steps, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8,
                      weight_decay=0.0, amsgrad=False, maximize=False,
                      decoupled_weight_decay=False)
    outs.append(p)
report["equal"] = all(np.array_equal(a, b) for a, b in zip(*outs))
print(json.dumps(report))
"""


def _probe(**env: str) -> dict:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("FERROPTIM_SIMD", "FERROPTIM_NUM_THREADS")
    }
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("level", LEVELS)
def test_environment_variables_honoured(level):
    report = _probe(FERROPTIM_SIMD=level.upper(), FERROPTIM_NUM_THREADS="1")
    assert report == {"level": level, "threads": 1, "equal": True}


def test_environment_unknown_level_falls_back_to_best():
    report = _probe(FERROPTIM_SIMD="no-such-level", FERROPTIM_NUM_THREADS="2")
    assert report == {"level": LEVELS[0], "threads": 2, "equal": True}
