"""Reference optimizer steps on low-precision state (twins of ``ferroptim._native.*_step_bf16``
and ``*_step_8bit``).

Each widens (or dequantizes) every state array to float32, runs the float32 reference step of the
same optimizer on those copies, and narrows (or requantizes blockwise) the updated copies back: the
native kernels do the same per block in registers, so results agree bit for bit. Parameters and
gradients are float32; bfloat16 state is uint16 bit patterns shaped like the parameter; 8-bit
state is uint8 codes shaped like the parameter plus a float32 absmax per block of 256.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ferroptim._registry import by_kernel
from ferroptim.reference._optimizer import make_kernel
from ferroptim.reference._types import OptGrads, Steps
from ferroptim.reference.lowp_formats import (
    BLOCK,
    bf16_narrow,
    bf16_widen,
    dequantize,
    quantize,
    stream_key,
)

#: the float32 kernels the low-precision steps widen into
adam_step = make_kernel(by_kernel("adam"))
lion_step = make_kernel(by_kernel("lion"))

__all__ = ["adam_step_8bit", "adam_step_bf16", "lion_step_8bit", "lion_step_bf16"]

Run = Callable[[Sequence[np.ndarray], OptGrads, list[list[np.ndarray]], Steps], None]


def _array(obj: object, label: str, dtype: type, shape: tuple[int, ...] | None) -> np.ndarray:
    if not isinstance(obj, np.ndarray) or obj.dtype != dtype:
        got = getattr(obj, "dtype", type(obj).__name__)
        raise TypeError(f"{label} must be a numpy.ndarray of {np.dtype(dtype).name}, got {got}")
    if shape is not None and obj.shape != shape:
        raise ValueError(f"{label} has shape {obj.shape} but needs {shape}")
    if not obj.flags.c_contiguous:
        raise ValueError(f"{label} is not C-contiguous")
    if not obj.flags.writeable:
        raise ValueError(f"{label} cannot be updated in place (read-only)")
    return obj


def _lists(params: Sequence, grads: OptGrads, lists: Mapping[str, Any]) -> list[int]:
    """Check list lengths; return the positions of the stepped tensors (gradient not None)."""
    params, grads = list(params), list(grads)
    n = len(params)
    if len(grads) != n:
        raise ValueError(f"got {len(grads)} grads for {n} params")
    for name, lst in lists.items():
        if lst is not None and len(lst) != n:
            raise ValueError(f"{name} has {len(lst)} arrays for {n} params")
    stepped = [i for i in range(n) if grads[i] is not None]
    for i in stepped:
        _array(params[i], f"params[{i}]", np.float32, None)
        _array(grads[i], f"grads[{i}]", np.float32, params[i].shape)
    return stepped


def _bf16(
    run: Run,
    params: Sequence[np.ndarray],
    grads: OptGrads,
    states: dict[str, Sequence[np.ndarray]],
    steps: Steps,
    stochastic_rounding: bool,
    seed: int,
    stream_offset: int,
) -> None:
    stepped = _lists(params, grads, states)
    lists = list(states.values())
    for name, lst in states.items():
        for i in stepped:
            _array(lst[i], f"{name}[{i}]", np.uint16, params[i].shape)
    wide = [
        [
            bf16_widen(lst[i]) if i in stepped else np.zeros(params[i].shape, np.float32)
            for i in range(len(params))
        ]
        for lst in lists
    ]
    before = np.array(steps, copy=True)
    run(params, grads, wide, steps)
    for k, lst in enumerate(lists):
        for i in stepped:
            key = None
            if stochastic_rounding:
                key = stream_key(seed, int(before[i]) + 1, stream_offset + i, k)
            lst[i][...] = bf16_narrow(wide[k][i], key)


def _quant8(
    run: Run,
    params: Sequence[np.ndarray],
    grads: OptGrads,
    states: dict[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray], bool]],
    steps: Steps,
) -> None:
    named = {
        f"{k} {part}": v[j] for k, v in states.items() for j, part in enumerate(("codes", "absmax"))
    }
    stepped = _lists(params, grads, named)
    for name, (codes, absmax, _) in states.items():
        for i in stepped:
            _array(codes[i], f"{name}[{i}] codes", np.uint8, params[i].shape)
            blocks = -(-params[i].size // BLOCK)
            _array(absmax[i], f"{name}[{i}] absmax", np.float32, (blocks,))
    wide = [
        [
            dequantize(codes[i], absmax[i], signed)
            if i in stepped
            else np.zeros(params[i].shape, np.float32)
            for i in range(len(params))
        ]
        for codes, absmax, signed in states.values()
    ]
    run(params, grads, wide, steps)
    for k, (codes, absmax, signed) in enumerate(states.values()):
        for i in stepped:
            codes[i][...], absmax[i][...] = quantize(wide[k][i], signed)


def _adam_run(amsgrad: bool, hyper: dict) -> Run:
    def run(params, grads, wide, steps):
        adam_step(
            params,
            grads,
            wide[0],
            wide[1],
            wide[2] if amsgrad else None,
            steps,
            amsgrad=amsgrad,
            **hyper,
        )

    return run


def _lion_run(hyper: dict) -> Run:
    def run(params, grads, wide, steps):
        lion_step(params, grads, wide[0], steps, **hyper)

    return run


def _amsgrad_list(lst: object, amsgrad: bool) -> None:
    if amsgrad and lst is None:
        raise ValueError("max_exp_avg_sqs: a list of arrays is required when amsgrad=True")
    if not amsgrad and lst is not None:
        raise ValueError("max_exp_avg_sqs: must be None unless amsgrad=True")


def adam_step_bf16(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps,
    weight_decay, amsgrad, maximize, decoupled_weight_decay, stochastic_rounding, seed,
    stream_offset, grad_scale=1.0, clip_value=None,
) -> None:  # fmt: skip
    """Adam / AdamW / AMSGrad with bfloat16 state; tensor ``i`` uses stream ``stream_offset + i``
    and state ``k`` (exp_avg 0, exp_avg_sq 1, max_exp_avg_sq 2) its own random bits."""
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                 maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
                 grad_scale=grad_scale, clip_value=clip_value)  # fmt: skip
    adam_step(
        [], [], [], [], [] if amsgrad else None, np.zeros(0, np.int64), amsgrad=amsgrad, **hyper
    )
    _amsgrad_list(max_exp_avg_sqs, amsgrad)
    states = {"exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs}
    if amsgrad:
        states["max_exp_avg_sqs"] = max_exp_avg_sqs
    _bf16(
        _adam_run(amsgrad, hyper),
        params,
        grads,
        states,
        steps,
        stochastic_rounding,
        seed,
        stream_offset,
    )


def lion_step_bf16(
    params, grads, exp_avgs, steps, *, lr, beta1, beta2, weight_decay, maximize,
    stochastic_rounding, seed, stream_offset, grad_scale=1.0, clip_value=None,
) -> None:  # fmt: skip
    """Lion with bfloat16 state."""
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, maximize=maximize,
                 grad_scale=grad_scale, clip_value=clip_value)  # fmt: skip
    lion_step([], [], [], np.zeros(0, np.int64), **hyper)
    states = {"exp_avgs": exp_avgs}
    _bf16(_lion_run(hyper), params, grads, states, steps, stochastic_rounding, seed, stream_offset)


def adam_step_8bit(
    params, grads, exp_avg_codes, exp_avg_absmax, exp_avg_sq_codes, exp_avg_sq_absmax,
    max_exp_avg_sq_codes, max_exp_avg_sq_absmax, steps, *, lr, beta1, beta2, eps, weight_decay,
    amsgrad, maximize, decoupled_weight_decay, grad_scale=1.0, clip_value=None,
) -> None:  # fmt: skip
    """Adam / AdamW / AMSGrad with 8-bit blockwise state (exp_avg signed map, the others
    unsigned)."""
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                 maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
                 grad_scale=grad_scale, clip_value=clip_value)  # fmt: skip
    adam_step(
        [], [], [], [], [] if amsgrad else None, np.zeros(0, np.int64), amsgrad=amsgrad, **hyper
    )
    _amsgrad_list(max_exp_avg_sq_codes, amsgrad)
    _amsgrad_list(max_exp_avg_sq_absmax, amsgrad)
    states = {
        "exp_avgs": (exp_avg_codes, exp_avg_absmax, True),
        "exp_avg_sqs": (exp_avg_sq_codes, exp_avg_sq_absmax, False),
    }
    if amsgrad:
        states["max_exp_avg_sqs"] = (max_exp_avg_sq_codes, max_exp_avg_sq_absmax, False)
    _quant8(_adam_run(amsgrad, hyper), params, grads, states, steps)


def lion_step_8bit(
    params, grads, exp_avg_codes, exp_avg_absmax, steps, *, lr, beta1, beta2, weight_decay,
    maximize, grad_scale=1.0, clip_value=None,
) -> None:  # fmt: skip
    """Lion with 8-bit blockwise state (signed map)."""
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, maximize=maximize,
                 grad_scale=grad_scale, clip_value=clip_value)  # fmt: skip
    lion_step([], [], [], np.zeros(0, np.int64), **hyper)
    states = {"exp_avgs": (exp_avg_codes, exp_avg_absmax, True)}
    _quant8(_lion_run(hyper), params, grads, states, steps)
