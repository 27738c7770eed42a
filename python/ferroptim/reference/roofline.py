"""Reference roofline kernel: moves the bytes of an optimizer step without arithmetic."""

from __future__ import annotations

import numpy as np

from ferroptim.reference._checks import StateArg, gather
from ferroptim.reference._types import Arrays, OptGrads

__all__ = ["roofline_step"]

_MAX_STATES = 3
_BITS = {4: np.uint32, 8: np.uint64}


def roofline_step(params: Arrays, grads: OptGrads, *states: Arrays) -> None:
    """Rotate the writable arrays of every tensor, in place (twin of
    ``ferroptim._native.roofline_step``).

    With ``S = len(states)`` state lists (0 to 3), per element::

        mixed = bits(p) xor bits(g)
        S == 0:  p = mixed
        S >= 1:  p, s[0], ..., s[S-2], s[S-1] = s[0], s[1], ..., s[S-1], mixed

    Every array is read once and every written one written once, like an optimizer step with
    ``S`` state arrays.

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), rewritten in place.
    grads : list of ndarray or None
        One array per parameter; ``None`` skips the tensor.
    *states : list of ndarray
        Up to three state lists (named ``states[k]`` in error messages), rewritten in place.

    Raises
    ------
    TypeError, ValueError
        As :func:`ferroptim.reference.sgd_step`, and ValueError for more than 3 state lists.
        Nothing is modified on error.
    """
    if len(states) > _MAX_STATES:
        raise ValueError(f"states: at most {_MAX_STATES} state lists, got {len(states)}")
    args = [StateArg(f"states[{k}]", s) for k, s in enumerate(states)]
    batch = gather(params, grads, args, None, uses_steps=False)
    for tensor in batch.tensors:
        param, grad, state = tensor.param, tensor.grad, tensor.states
        bits = _BITS[param.dtype.itemsize]
        mixed = np.bitwise_xor(param.view(bits), grad.view(bits)).view(param.dtype)
        if not state:
            param[...] = mixed
            continue
        out = state[0].copy()
        for k in range(1, len(state)):
            state[k - 1][...] = state[k]
        state[-1][...] = mixed
        param[...] = out
