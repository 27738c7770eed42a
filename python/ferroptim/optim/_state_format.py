"""The ``state_dtype`` option: optimizer state stored as bfloat16 (or the parameter's dtype).

Every optimizer has it. With ``state_dtype="bfloat16"`` (float32 parameters only) every state
array is a ``uint16`` array of bfloat16 bit patterns shaped like its parameter
(``ferroptim.optim.bf16_to_float32`` reads it).
Each step widens the state to float32, applies the optimizer's float32 update unchanged and
narrows once when storing: by stochastic rounding (``stochastic_rounding=True``, the default; the
random bits are a counter-based hash of ``seed``, the step, the parameter's position and the
element, so results are reproducible from a checkpoint and identical at every SIMD level, thread
count and backend) or to nearest even (unsuitable for second moments: an update below half a
bfloat16 ulp is lost every step, so ``exp_avg_sq`` stops decaying).

``state_dict()`` holds the uint16 arrays as they are; ``load_state_dict`` accepts bfloat16 (uint16)
or float state for either kind of optimizer and converts (narrowing to nearest even, which is
deterministic; widening is exact).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ferroptim.reference.lowp_formats import bf16_narrow, bf16_widen

__all__ = ["STATE_DTYPES", "StateFormat", "bf16_to_float32", "float32_to_bf16"]

STATE_DTYPES = ("float32", "float64", "bfloat16")
_MAX_SEED = 2**64


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """The float32 values of bfloat16 state (uint16 bit patterns); exact."""
    return bf16_widen(np.asarray(bits, dtype=np.uint16))


#: elements narrowed at a time by :func:`float32_to_bf16`
_NARROW_BLOCK = 1 << 18


def float32_to_bf16(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 values, rounded to nearest even.

    Converted ``_NARROW_BLOCK`` elements at a time, so the temporaries are that size whatever
    the array's (whole, they were several times the result)."""
    flat = np.asarray(values).reshape(-1)
    out = np.empty(flat.shape, np.uint16)
    for start in range(0, flat.size, _NARROW_BLOCK):
        block = flat[start : start + _NARROW_BLOCK]
        out[start : start + _NARROW_BLOCK] = bf16_narrow(block.astype(np.float32, copy=False), None)
    return out.reshape(np.shape(values))


def _dtype_name(state_dtype: object) -> str | None:
    if state_dtype is None:
        return None
    if isinstance(state_dtype, str) and state_dtype.strip().lower() in ("bfloat16", "bf16"):
        return "bfloat16"
    try:
        name = np.dtype(state_dtype).name  # type: ignore[call-overload]
    except TypeError:
        name = None
    if name in ("float32", "float64"):
        return name
    raise ValueError(
        f"state_dtype must be None, 'float32', 'float64' or 'bfloat16', got {state_dtype!r}"
    )


@dataclass(frozen=True)
class StateFormat:
    """How an optimizer stores its state: ``dtype`` None keeps each parameter's dtype."""

    dtype: str | None = None
    stochastic_rounding: bool = True
    seed: int = 0

    @classmethod
    def make(cls, state_dtype: object, stochastic_rounding: object, seed: object) -> StateFormat:
        """Check the three options."""
        dtype = _dtype_name(state_dtype)
        if not isinstance(stochastic_rounding, bool | np.bool_):
            raise TypeError(
                f"stochastic_rounding must be a bool, got {type(stochastic_rounding).__name__}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if not 0 <= int(seed) < _MAX_SEED:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        return cls(dtype, bool(stochastic_rounding), int(seed))

    @property
    def bf16(self) -> bool:
        return self.dtype == "bfloat16"

    def check_params(self, params: Sequence[np.ndarray], offset: int) -> None:
        """Refuse parameters whose dtype cannot have this state (``offset``: index of the first)."""
        if self.dtype is None:
            return
        for i, p in enumerate(params, start=offset):
            if self.bf16 and p.dtype != np.float32:
                raise ValueError(
                    f"state_dtype='bfloat16' needs float32 parameters; params[{i}] is {p.dtype} "
                    "(float64 parameters keep float64 state: leave state_dtype=None)"
                )
            if not self.bf16 and p.dtype != np.dtype(self.dtype):
                raise ValueError(
                    f"state_dtype={self.dtype!r} but params[{i}] is {p.dtype}; state is kept in "
                    "the parameter's dtype (or bfloat16 for float32 parameters)"
                )

    def stored_dtype(self, dtype: np.dtype) -> np.dtype:
        """The dtype :meth:`stored` gives for float values of ``dtype``."""
        return np.dtype(np.uint16) if self.bf16 else np.dtype(dtype)

    def stored(self, values: np.ndarray) -> np.ndarray:
        """A new state array holding ``values`` (the float array an optimizer would start from)."""
        return float32_to_bf16(values) if self.bf16 else values

    def kernel(self, module: ModuleType, kernel_name: str, stream: Callable[[], int]) -> Any:
        """The kernel function to call: the float one, or its bfloat16-state variant
        ``<kernel>_bf16`` (every optimizer kernel has one) with the rounding options bound
        (``stream()`` gives the group's first parameter position)."""
        if not self.bf16:
            return getattr(module, kernel_name)
        bf16_kernel = getattr(module, f"{kernel_name}_bf16")

        @functools.wraps(bf16_kernel)
        def call(*args: Any, **kwargs: Any) -> None:
            bf16_kernel(
                *args,
                **kwargs,
                stochastic_rounding=self.stochastic_rounding,
                seed=self.seed,
                stream_offset=stream(),
            )

        return call

    def loaded(self, label: str, value: Any, param: np.ndarray) -> Any:
        """A saved state array converted to this format: bfloat16 (uint16) state widens for a
        float optimizer, float state narrows (to nearest even) for a bfloat16 one. Anything
        else is returned unchanged for the usual checks."""
        if not isinstance(value, np.ndarray) or value.shape != param.shape:
            return value
        if self.bf16:
            if value.dtype == np.float32:
                return float32_to_bf16(value)
            if value.dtype != np.uint16:
                raise ValueError(
                    f"{label} has dtype {value.dtype}; bfloat16 state is uint16 (bit patterns) "
                    "or float32 (converted)"
                )
            return value
        if value.dtype == np.uint16 and param.dtype == np.float32:
            return bf16_to_float32(value)
        return value

    def saved_dtypes(self, param: np.ndarray) -> tuple[np.dtype, ...]:
        """The dtypes a saved state array of ``param`` may have, this format's own first (the
        other is converted, see :meth:`loaded`)."""
        own, other = np.dtype(np.uint16), np.dtype(np.float32)
        if param.dtype != np.float32:
            return (param.dtype,)
        return (own, other) if self.bf16 else (other, own)

    def as_float(self, value: np.ndarray) -> np.ndarray:
        """State values as floats (for the range checks of a loaded array)."""
        return bf16_to_float32(value) if value.dtype == np.uint16 else value
