"""Pure-NumPy reference implementations of every ``ferroptim._native`` kernel.

Each function has exactly the native signature and semantics: arrays are updated in place, a
``None`` gradient skips its tensor, ``steps`` (int64) is incremented for every stepped tensor, and
the same arguments are refused with the same exception types, before anything is modified.
Results are bit-identical to the native kernels for float32 and float64: the same IEEE operations
run in the same order in the array dtype, with host scalars computed in float64 as the Rust code
does and rounded once to the dtype. The test suite checks native == reference at every SIMD level.

The optimizer kernels (``<kernel>_step`` for every entry of ``ferroptim._registry.SPECS``) are
built by :func:`ferroptim.reference._optimizer.make_kernel` around the element update in
``ferroptim/reference/<kernel>.py``; their bfloat16-state twins ``<kernel>_step_bf16`` and the
8-bit ones by :mod:`ferroptim.reference.lowp_steps` around those.

These kernels are slow (one NumPy temporary per operation); they exist to specify and test.
"""

from collections.abc import Callable

from ferroptim._registry import SPECS
from ferroptim.reference._optimizer import make_kernel
from ferroptim.reference.lowp_steps import BF16_KERNELS, adam_step_8bit, lion_step_8bit
from ferroptim.reference.roofline import roofline_step

_KERNELS: dict[str, Callable[..., None]] = {s.kernel_name: make_kernel(s) for s in SPECS}
_KERNELS.update(BF16_KERNELS)
globals().update(_KERNELS)

__all__ = [
    *sorted(_KERNELS),
    "adam_step_8bit",
    "lion_step_8bit",
    "roofline_step",
]
