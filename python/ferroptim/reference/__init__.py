"""Pure-NumPy reference implementations of every ``ferroptim._native`` kernel.

Each function has exactly the native signature and semantics: arrays are updated in place, a
``None`` gradient skips its tensor, ``steps`` (int64) is incremented for every stepped tensor, and
the same arguments are refused with the same exception types, before anything is modified.
Results are bit-identical to the native kernels for float32 and float64: the same IEEE operations
run in the same order in the array dtype, with host scalars computed in float64 as the Rust code
does and rounded once to the dtype. The test suite checks native == reference at every SIMD level.

These kernels are slow (one NumPy temporary per operation); they exist to specify and test.
"""

from ferroptim.reference.adadelta import adadelta_step
from ferroptim.reference.adagrad import adagrad_step
from ferroptim.reference.adam import adam_step
from ferroptim.reference.adamax import adamax_step
from ferroptim.reference.lion import lion_step
from ferroptim.reference.lowp_steps import (
    adam_step_8bit,
    adam_step_bf16,
    lion_step_8bit,
    lion_step_bf16,
)
from ferroptim.reference.nadam import nadam_step
from ferroptim.reference.radam import radam_step
from ferroptim.reference.rmsprop import rmsprop_step
from ferroptim.reference.roofline import roofline_step
from ferroptim.reference.sgd import sgd_step

__all__ = [
    "adadelta_step",
    "adagrad_step",
    "adam_step",
    "adam_step_8bit",
    "adam_step_bf16",
    "adamax_step",
    "lion_step",
    "lion_step_8bit",
    "lion_step_bf16",
    "nadam_step",
    "radam_step",
    "rmsprop_step",
    "roofline_step",
    "sgd_step",
]
