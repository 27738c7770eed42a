"""Where a small step's time goes: the native kernel call on its own against ``opt.step``.

On a latency workload (the MLP) the benchmark times, interleaved with the step and the roofline,
the very kernel call one ``opt.step(grads)`` makes (same arrays, same keywords, repeated), and
``opt.step(model)``. The difference between a step and its kernel call is the fixed cost of the
Python optimizer (finding the gradients, checking what changed since the last step, the lock);
the kernel call itself includes the native argument checks, as the roofline kernel's does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["kernel_call"]


def kernel_call(opt: Any, grads: list[np.ndarray]) -> Callable[[], None]:
    """A function repeating the native kernel call that ``opt.step(grads)`` makes (it runs one
    step to see the call). The optimizer's state arrays and step counts are updated by each
    call, as by a step.

    Raises
    ------
    ValueError
        If the step makes more or less than one kernel call (several groups, 8-bit state).
    """
    opt.step(grads)
    states = opt._group_states
    prepared = states[0].plan.prepared if len(states) == 1 and states[0].plan else None
    if prepared is not None:  # the native backend's prepared call (optim/_call_plan.py)
        clip_value = opt.clip_value
        return lambda: prepared.step(None, grads, 1.0, clip_value, 0)
    kernel = opt._kernel
    calls: list[tuple[tuple, dict[str, Any]]] = []

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append((args, kwargs))
        kernel(*args, **kwargs)

    opt._kernel = spy
    try:
        opt.step(grads)
    finally:
        opt._kernel = kernel
    if len(calls) != 1:
        raise ValueError(f"a step of {type(opt).__name__} made {len(calls)} kernel calls, not 1")
    args, kwargs = calls[0]
    return lambda: kernel(*args, **kwargs)
