"""Reference optimizer steps on low-precision state (twins of ``ferroptim._native``'s
``<kernel>_bf16`` for every registry kernel, ``adam_step_8bit`` and ``lion_step_8bit``).

Each is built from the optimizer's registry entry around its float32 reference kernel: it checks
the arguments as natively, widens (or dequantizes) every state array to float32, runs the float32
kernel on those copies, and narrows (or requantizes blockwise) the updated copies back. The native
kernels do the same per element (bfloat16) or per block (8 bits) in registers, so results agree
bit for bit. Parameters and gradients are float32; bfloat16 state is uint16 bit patterns shaped
like the parameter; 8-bit state is uint8 codes shaped like the parameter plus a float32 absmax
per block of 256.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim._checks import kernel_flag
from ferroptim._registry import SPECS, OptimizerSpec, by_kernel
from ferroptim.reference._checks import StateArg, gather
from ferroptim.reference._optimizer import make_kernel
from ferroptim.reference.lowp_formats import (
    BLOCK,
    bf16_narrow,
    bf16_widen,
    dequantize,
    quantize,
    state_bits,
)

__all__ = ["BF16_KERNELS", "ROUNDING_KEYWORDS", "adam_step_8bit", "lion_step_8bit"]

#: the keywords of a ``<kernel>_bf16`` call beyond the float kernel's
ROUNDING_KEYWORDS = ("stochastic_rounding", "seed", "stream_offset")


def _u64(name: str, value: Any) -> int:
    """An unsigned 64-bit integer argument, converted as the native binding does."""
    number = operator.index(value)  # TypeError for non-integers
    if not 0 <= number < 2**64:
        raise OverflowError(f"{name}: {number} does not fit an unsigned 64-bit integer")
    return number


def _checked_slots(
    float_kernel: Callable[..., None], spec: OptimizerSpec, slots: Sequence[object], hypers: dict
) -> None:
    """The float kernel's checks of the hyperparameters and of which state lists the options
    use (``slots``: one entry per state list, None when absent), on no arrays."""
    empty: list[list[Any] | None] = [None if s is None else [] for s in slots]
    scalars = [np.zeros(0, np.float32) for _ in spec.scalars]
    float_kernel([], [], *empty, *scalars, np.zeros(0, np.int64), **hypers)


def make_bf16_kernel(spec: OptimizerSpec) -> Callable[..., None]:
    """``<kernel>_bf16``: the float kernel of ``spec`` on bfloat16 state (uint16 arrays), tensor
    ``i`` narrowed with the random stream ``stream_offset + i`` (``stochastic_rounding``) or to
    nearest even."""
    float_kernel = make_kernel(spec)
    name = f"{spec.kernel_name}_bf16"
    n_states = len(spec.states)

    def kernel(params: Any, grads: Any, *lists: Any, **hypers: Any) -> None:
        for keyword in ROUNDING_KEYWORDS:
            if keyword not in hypers:
                raise TypeError(f"{name}() missing required keyword argument: '{keyword}'")
        stochastic = kernel_flag("stochastic_rounding", hypers.pop("stochastic_rounding"))
        seed = _u64("seed", hypers.pop("seed"))
        stream_offset = _u64("stream_offset", hypers.pop("stream_offset"))
        if len(lists) != n_states + len(spec.scalars) + 1:
            float_kernel(params, grads, *lists, **hypers)  # raises the count's TypeError
        _checked_slots(float_kernel, spec, lists[:n_states], hypers)
        states = [
            StateArg(s.kernel_arg, lists[k], optional=s.optional, needed=lists[k] is not None)
            for k, s in enumerate(spec.states)
        ]
        scalars = (spec.scalars[0].kernel_arg, lists[n_states]) if spec.scalars else None
        batch = gather(params, grads, states, lists[-1], scalars, bf16_state=True)
        used = [k for k in range(n_states) if lists[k] is not None]
        shapes = [np.shape(p) for p in params]
        wide: list[Any] = [None] * n_states
        for k in used:
            wide[k] = [np.zeros(shape, np.float32) for shape in shapes]
            for t in batch.tensors:
                wide[k][t.index] = bf16_widen(lists[k][t.index])
        float_kernel(params, grads, *wide, *lists[n_states:], **hypers)
        for j, k in enumerate(used):
            for t in batch.tensors:
                stream = stream_offset + t.index
                bits = state_bits(seed, t.step, stream, j, t.param.size) if stochastic else None
                lists[k][t.index][...] = bf16_narrow(wide[k][t.index], bits)

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__module__ = "ferroptim.reference"
    kernel.__doc__ = (
        f"{spec.name} with bfloat16 state (twin of ``ferroptim._native.{name}``): the arguments "
        f"of ``{spec.kernel_name}`` with uint16 state arrays, plus the keywords "
        f"{', '.join(ROUNDING_KEYWORDS)}; state ``k`` is narrowed with the random bits "
        "``state_bits(seed, step, stream_offset + i, k)`` (or to nearest even)."
    )
    return kernel


def make_8bit_kernel(spec: OptimizerSpec, signed: Sequence[bool]) -> Callable[..., None]:
    """``<kernel>_8bit``: the float kernel of ``spec`` on 8-bit blockwise state, state list ``k``
    passed as a list of codes and a list of absmax arrays, on the signed map if ``signed[k]``."""
    float_kernel = make_kernel(spec)
    name = f"{spec.kernel_name}_8bit"
    n_states = len(spec.states)

    def kernel(params: Any, grads: Any, *lists: Any, **hypers: Any) -> None:
        if len(lists) != 2 * n_states + 1:
            raise TypeError(
                f"{name}() takes {2 * n_states + 3} positional arguments but "
                f"{len(lists) + 2} were given"
            )
        codes, absmax = lists[0:-1:2], lists[1:-1:2]
        _checked_slots(float_kernel, spec, codes, hypers)
        for s, c, a in zip(spec.states, codes, absmax, strict=True):
            if (c is None) != (a is None):
                raise ValueError(f"{s.kernel_arg}: codes and absmax must both be given or None")
        used = [k for k in range(n_states) if codes[k] is not None]
        named = {
            f"{spec.states[k].kernel_arg} {part}": lst[k]
            for k in used
            for part, lst in (("codes", codes), ("absmax", absmax))
        }
        stepped = _lists(params, grads, named)
        for k in used:
            for i in stepped:
                label = f"{spec.states[k].kernel_arg}[{i}]"
                blocks = -(-params[i].size // BLOCK)
                _array(codes[k][i], f"{label} codes", np.uint8, params[i].shape)
                _array(absmax[k][i], f"{label} absmax", np.float32, (blocks,))
        wide: list[Any] = [None] * n_states
        for k in used:
            wide[k] = [
                dequantize(codes[k][i], absmax[k][i], signed[k])
                if i in stepped
                else np.zeros(np.shape(params[i]), np.float32)
                for i in range(len(params))
            ]
        float_kernel(params, grads, *wide, lists[-1], **hypers)
        for k in used:
            for i in stepped:
                codes[k][i][...], absmax[k][i][...] = quantize(wide[k][i], signed[k])

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__module__ = "ferroptim.reference"
    kernel.__doc__ = (
        f"{spec.name} with 8-bit blockwise state (twin of ``ferroptim._native.{name}``)."
    )
    return kernel


def _lists(params: Sequence, grads: Sequence, lists: dict[str, Any]) -> list[int]:
    """Check list lengths; return the positions of the stepped tensors (gradient not None)."""
    params, grads = list(params), list(grads)
    n = len(params)
    if len(grads) != n:
        raise ValueError(f"got {len(grads)} grads for {n} params")
    for name, lst in lists.items():
        if len(lst) != n:
            raise ValueError(f"{name} has {len(lst)} arrays for {n} params")
    stepped = [i for i in range(n) if grads[i] is not None]
    for i in stepped:
        _array(params[i], f"params[{i}]", np.float32, None)
        _array(grads[i], f"grads[{i}]", np.float32, params[i].shape)
    return stepped


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


#: ``<kernel>_bf16`` for every registry kernel
BF16_KERNELS: dict[str, Callable[..., None]] = {
    f"{s.kernel_name}_bf16": make_bf16_kernel(s) for s in SPECS
}
globals().update(BF16_KERNELS)
adam_step_8bit = make_8bit_kernel(by_kernel("adam"), signed=(True, False, False))
lion_step_8bit = make_8bit_kernel(by_kernel("lion"), signed=(True,))
