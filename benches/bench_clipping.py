"""Gradient clipping benchmarks (see :mod:`ferroptim.bench.clipping`).

``test_clip_grad_norm``: ``clip_grad_norm_`` native, the straightforward NumPy version, and the
roofline moving the same 12 bytes per float32 element (``roofline_step`` with no state on a
separate list: read p, read g, write p). Every call scales: ``max_norm`` is set just below the
norm the previous call returned. ``test_adam_max_grad_norm``: native Adam with and without
``max_grad_norm=1.0``. ``extra_info`` records bytes per element and GB/s of the median call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _native
from ferroptim.bench.clipping import (
    MAX_NORM,
    adam_bytes_per_element,
    clip_bytes_per_element,
    numpy_clip_grad_norm_,
    shrinking_clip,
)
from ferroptim.bench.configs import Roofline

CLIP_WORKLOADS = ["transformer", "single"]


def _clip_call(variant: str, grads: list[np.ndarray]) -> Callable[[], object]:
    if variant == "roofline":
        return Roofline(grads, grads).step_fn(0)  # writes copies of grads; grads are only read
    mine = [g.copy() for g in grads]
    clip = _native.clip_grad_norm_ if variant == "native" else numpy_clip_grad_norm_
    return shrinking_clip(clip, mine, _native.global_norm(mine))


@pytest.mark.parametrize("variant", ["native", "numpy", "roofline"])
@pytest.mark.parametrize("workload", CLIP_WORKLOADS)
def test_clip_grad_norm(timed, workload_arrays, workload: str, variant: str) -> None:
    _, grads = workload_arrays[workload]
    timed(
        _clip_call(variant, grads),
        group=f"{workload} clip_grad_norm_",
        workload=workload,
        bytes_per_elem=clip_bytes_per_element(grads[0].itemsize),
        variant=variant,
    )


@pytest.mark.parametrize("max_grad_norm", [None, MAX_NORM], ids=["plain", "max_grad_norm"])
def test_adam_max_grad_norm(timed, workload_arrays, max_grad_norm: float | None) -> None:
    params, grads = workload_arrays["transformer"]
    opt = fo.optim.Adam([p.copy() for p in params], max_grad_norm=max_grad_norm)
    clipped = max_grad_norm is not None
    timed(
        lambda: opt.step(grads),
        group="transformer Adam max_grad_norm",
        workload="transformer",
        bytes_per_elem=adam_bytes_per_element(params[0].itemsize, clipped=clipped),
        variant="max_grad_norm" if clipped else "plain",
    )
