"""Type stubs for the compiled module ``ferroptim._native`` (private; use ``ferroptim``)."""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Arrays = Sequence[NDArray[np.floating]]
OptGrads = Sequence[NDArray[np.floating] | None]
Steps = NDArray[np.int64]

GRAIN_ELEMENTS: int
PARALLEL_MIN_ELEMENTS: int
ASSIST_MIN_ELEMENTS: int
ASSIST_PIECE_ELEMENTS: int

def simd_level() -> str: ...
def supported_simd_levels() -> list[str]: ...
def set_simd_level(level: str) -> None: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def _panic_for_tests(site: str) -> float: ...
def sgd_step(
    params: Arrays,
    grads: OptGrads,
    momentum_buffers: Arrays | None,
    steps: Steps,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def adagrad_step(
    params: Arrays,
    grads: OptGrads,
    state_sums: Arrays,
    steps: Steps,
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def adadelta_step(
    params: Arrays,
    grads: OptGrads,
    square_avgs: Arrays,
    acc_deltas: Arrays,
    steps: Steps,
    *,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def rmsprop_step(
    params: Arrays,
    grads: OptGrads,
    square_avgs: Arrays,
    grad_avgs: Arrays | None,
    momentum_buffers: Arrays | None,
    steps: Steps,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def adam_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    max_exp_avg_sqs: Arrays | None,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def adamax_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    exp_infs: Arrays,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def nadam_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    mu_products: NDArray[np.float32],
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def radam_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def lion_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def global_norm(
    grads: OptGrads, norm_type: float = 2.0, clip_value: float | None = None
) -> float: ...
def tensor_norms(grads: OptGrads, norm_type: float = 2.0) -> list[float]: ...
def clip_grad_norm_(
    grads: OptGrads, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> float: ...
def clip_grad_norm_per_tensor_(
    grads: OptGrads, max_norm: float, norm_type: float = 2.0
) -> list[float]: ...
def clip_grad_value_(grads: OptGrads, clip_value: float) -> None: ...
def roofline_step(params: Arrays, grads: Arrays, *states: Arrays) -> None: ...
def roofline_read(arrays: OptGrads) -> float: ...

# Low-precision optimizer state (rust/python/src/lowp.rs; twins in ferroptim.reference.lowp_steps).
# Params and grads float32; bfloat16 state: uint16 bit patterns shaped like the param; 8-bit state:
# uint8 codes shaped like the param and float32 absmax of shape (ceil(n / 256),).

def adam_step_bf16(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Sequence[NDArray[np.uint16]],
    exp_avg_sqs: Sequence[NDArray[np.uint16]],
    max_exp_avg_sqs: Sequence[NDArray[np.uint16]] | None,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    stochastic_rounding: bool,
    seed: int,
    stream_offset: int,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def lion_step_bf16(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Sequence[NDArray[np.uint16]],
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
    stochastic_rounding: bool,
    seed: int,
    stream_offset: int,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def adam_step_8bit(
    params: Arrays,
    grads: OptGrads,
    exp_avg_codes: Sequence[NDArray[np.uint8]],
    exp_avg_absmax: Sequence[NDArray[np.float32]],
    exp_avg_sq_codes: Sequence[NDArray[np.uint8]],
    exp_avg_sq_absmax: Sequence[NDArray[np.float32]],
    max_exp_avg_sq_codes: Sequence[NDArray[np.uint8]] | None,
    max_exp_avg_sq_absmax: Sequence[NDArray[np.float32]] | None,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def lion_step_8bit(
    params: Arrays,
    grads: OptGrads,
    exp_avg_codes: Sequence[NDArray[np.uint8]],
    exp_avg_absmax: Sequence[NDArray[np.float32]],
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def dynamic_map(signed: bool) -> list[float]: ...

# Batch normalization (rust/python/src/batchnorm.rs; public API in ferroptim.batchnorm).
# Data arrays: (N, C), (N, C, L) or (N, C, H, W), float32/float64, C-contiguous. Per-channel
# arrays: (C,), float32 or float64. Statistics and parameter gradients are returned as float64.

def batch_norm_stats(
    x: NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
def batch_norm_update_running(
    running_mean: NDArray[np.floating],
    running_var: NDArray[np.floating],
    mean: NDArray[np.floating],
    var: NDArray[np.floating],
    count: int,
    momentum: float,
) -> None: ...
def batch_norm_forward(
    x: NDArray[np.floating],
    out: NDArray[np.floating],
    mean: NDArray[np.floating],
    var: NDArray[np.floating],
    weight: NDArray[np.floating] | None,
    bias: NDArray[np.floating] | None,
    *,
    eps: float,
    training: bool,
) -> NDArray[np.float64]: ...
def batch_norm_backward(
    dy: NDArray[np.floating],
    x: NDArray[np.floating],
    mean: NDArray[np.floating],
    invstd: NDArray[np.floating],
    weight: NDArray[np.floating] | None,
    dx: NDArray[np.floating],
    *,
    training: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
