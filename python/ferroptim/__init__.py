"""ferroptim: fused, SIMD-vectorized Rust optimizer kernels for NumPy.

Optimizers follow torch.optim's names, defaults and update rules and update NumPy arrays in place::

    import ferroptim as fo
    opt = fo.optim.Adam(params, lr=1e-3)
    opt.step(grads)

Every kernel has a pure-NumPy twin (``backend="reference"``) that the native code is tested against.
"""

from ferroptim import batchnorm, clip, data, functional, nn, optim, reference, train
from ferroptim._native import get_num_threads, set_num_threads, simd_level, supported_simd_levels
from ferroptim._native import set_simd_level as _set_simd_level
from ferroptim._seed import manual_seed
from ferroptim.checkpoint import Checkpoint, CheckpointMismatchError, load, save
from ferroptim.nn._grad_mode import enable_grad, is_grad_enabled, no_grad

__all__ = [
    "Checkpoint",
    "CheckpointMismatchError",
    "batchnorm",
    "clip",
    "data",
    "enable_grad",
    "functional",
    "get_num_threads",
    "is_grad_enabled",
    "load",
    "manual_seed",
    "nn",
    "no_grad",
    "optim",
    "reference",
    "save",
    "set_num_threads",
    "set_simd_level",
    "simd_level",
    "supported_simd_levels",
    "train",
]
__version__ = "0.1.0"


def set_simd_level(level: str) -> None:
    """Force the instruction set kernels use (``"avx512"``, ``"avx2"``, ``"sse2"``, ``"neon"``,
    ``"scalar"``); the environment variable ``FERROPTIM_SIMD`` sets it at start-up.

    Raises
    ------
    ValueError
        If the level is unknown or this machine cannot run it.
    """
    _set_simd_level(level)
