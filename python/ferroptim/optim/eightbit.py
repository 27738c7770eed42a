"""Adam8bit, AdamW8bit and Lion8bit: optimizer state in 8 bits per element (bitsandbytes' names).

Each state array of a parameter with at least ``min_8bit_size`` elements is stored blockwise:
blocks of 256 elements, one float32 ``absmax`` per block and one uint8 code per element, the
index of the nearest value to ``x / absmax`` in a dynamic (tree) quantization map (Dettmers et al.
2021; signed for first moments, unsigned for second moments). A step dequantizes each block,
updates it with the float32 optimizer's formula, finds the block's new absmax and requantizes, in
one fused pass. Smaller parameters keep float32 state, as in bitsandbytes (and float64 parameters
float64 state).

State layout (``state_dict()["state"][i]``), as bitsandbytes names it:

* ``"step"``: the step count (float, as torch);
* ``"state1"``: ``exp_avg`` codes (uint8, the parameter's shape), or its values in the
  parameter's dtype for a parameter below ``min_8bit_size`` (or float64); ``"absmax1"``: float32,
  ``ceil(n / 256)`` block scales (empty when not quantized); ``"qmap1"``: the 256-value signed
  map (empty when not quantized);
* Adam: ``"state2"``, ``"absmax2"``, ``"qmap2"`` likewise for ``exp_avg_sq`` (unsigned map).

The value of element ``j`` is ``qmap[state[j]] * absmax[j // 256]``. ``load_state_dict`` restores
it bit for bit (the maps must be this version's; they are checked).
"""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

import numpy as np

from ferroptim._array_checks import ArrayChecker
from ferroptim._backends import backend_module
from ferroptim.optim._classes import OPTIMIZER_CLASSES
from ferroptim.optim.optimizer import StepOptions, _GroupState
from ferroptim.reference.lowp_formats import BLOCK, dynamic_map

__all__ = ["Adam8bit", "AdamW8bit", "Lion8bit"]


def _check_size(name: str, value: object, allowed: tuple[int, ...] | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if allowed is not None and int(value) not in allowed:
        raise ValueError(f"{name} must be {' or '.join(map(str, allowed))}, got {value}")
    if int(value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


class _Blockwise8bit:
    """What the 8-bit optimizers share: the state layout, its allocation, checks and the split
    of a group into 8-bit and float32-state parameters."""

    #: per quantized state: (code array name, absmax name, map name, signed map)
    quantized: ClassVar[tuple[tuple[str, str, str, bool], ...]]
    state_names: ClassVar[tuple[str, ...]]
    param_groups: list[dict[str, Any]]
    backend: str
    _state_format: Any

    def _setup_8bit(self, block_size: object, min_8bit_size: object) -> None:
        self.block_size = _check_size("block_size", block_size, (BLOCK,))
        self.min_8bit_size = _check_size("min_8bit_size", min_8bit_size)

    def _check_state_dtype(self) -> None:
        if self._state_format.dtype is not None:
            raise ValueError(f"{type(self).__name__} keeps 8-bit state; leave state_dtype=None")

    def is_8bit(self, param: np.ndarray) -> bool:
        """Whether ``param``'s state is quantized: float32 with at least ``min_8bit_size``
        elements (float64 parameters keep float64 state)."""
        return param.dtype == np.float32 and param.size >= self.min_8bit_size

    def _layout(self, name: str, param: np.ndarray) -> tuple[tuple[int, ...], Any]:
        big = self.is_8bit(param)
        for codes, absmax, qmap, _ in self.quantized:
            if name == codes:
                return param.shape, np.uint8 if big else param.dtype
            if name == absmax:
                return ((-(-param.size // BLOCK),) if big else (0,)), np.float32
            if name == qmap:
                return ((256,) if big else (0,)), np.float32
        raise KeyError(name)

    def state_layout(
        self, name: str, param: np.ndarray, group: dict[str, Any]
    ) -> tuple[tuple[int, ...], np.dtype]:
        shape, dtype = self._layout(name, param)
        return shape, np.dtype(dtype)

    def init_state(self, name: str, param: np.ndarray, group: dict[str, Any]) -> np.ndarray:
        shape, dtype = self._layout(name, param)
        for _, _, qmap, signed in self.quantized:
            if name == qmap and shape == (256,):
                return dynamic_map(signed).copy()
        return np.zeros(shape, dtype)

    def active_states(self, group: dict[str, Any]) -> tuple[str, ...]:
        return self.state_names

    def saved_state_layout(
        self, name: str, param: np.ndarray
    ) -> tuple[tuple[int, ...] | None, tuple[np.dtype, ...]]:
        try:
            shape, dtype = self._layout(name, param)
        except KeyError:
            return None, ()
        return shape, (np.dtype(dtype),)

    def check_saved_array(self, label: str, name: str, value: Any, param: np.ndarray) -> Any:
        shape, dtype = self._layout(name, param)
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{label} must be a numpy.ndarray, got {type(value).__name__}")
        if value.shape != shape or value.dtype != dtype:
            raise ValueError(
                f"{label} has shape {value.shape} and dtype {value.dtype}; this parameter's "
                f"{name} is {np.dtype(dtype).name} of shape {shape} (min_8bit_size="
                f"{self.min_8bit_size})"
            )
        for _, _, qmap, signed in self.quantized:
            if name == qmap and shape == (256,) and not np.array_equal(value, dynamic_map(signed)):
                kind = "signed" if signed else "unsigned"
                raise ValueError(f"{label} is not the {kind} dynamic map these codes index")
        return value

    def _split(self, group: dict[str, Any], grads: Any) -> tuple[list[int], list[int]]:
        """Positions of the 8-bit and float32-state parameters that have a gradient; every
        gradient is checked first, so neither kernel call can fail on its arrays."""
        checker = ArrayChecker()
        big: list[int] = []
        small: list[int] = []
        for i, (p, g) in enumerate(zip(group["params"], grads, strict=True)):
            if g is None:
                continue
            checker.array(g, "grads", i, False, like=p)
            (big if self.is_8bit(p) else small).append(i)
        return big, small

    def _run_split(
        self,
        group: dict[str, Any],
        state: _GroupState,
        grads: Any,
        call: Any,
    ) -> None:
        """``call(kernel_module, indices, sub_grads, steps, quantized)`` for the 8-bit and the
        float32-state parameters; step counts are written back after each call."""
        if len(grads) != len(group["params"]):
            raise ValueError(f"grads: got {len(grads)} gradients for {len(group['params'])} params")
        big, small = self._split(group, grads)
        module = backend_module(self.backend)
        for indices, quantized in ((big, True), (small, False)):
            if not indices:
                continue
            steps = state.steps[indices]
            call(module, indices, [grads[i] for i in indices], steps, quantized)
            state.steps[indices] = steps


Adam = OPTIMIZER_CLASSES["Adam"]
Lion = OPTIMIZER_CLASSES["Lion"]


class Adam8bit(_Blockwise8bit, Adam):  # type: ignore[valid-type,misc]
    """Adam with 8-bit blockwise state (bitsandbytes' ``Adam8bit``); see the module docs for the
    state layout. Hyperparameters and update as :class:`~ferroptim.optim.Adam` (``amsgrad`` is
    not supported), plus:

    Parameters
    ----------
    block_size : int, default 256
        Elements per quantization block (256 only).
    min_8bit_size : int, default 4096
        Parameters with fewer elements keep float32 state.
    """

    quantized = (("state1", "absmax1", "qmap1", True), ("state2", "absmax2", "qmap2", False))
    state_names = ("state1", "absmax1", "qmap1", "state2", "absmax2", "qmap2")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        block_size: int = BLOCK,
        min_8bit_size: int = 4096,
        **options: Unpack[StepOptions],
    ) -> None:
        self._setup_8bit(block_size, min_8bit_size)
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
            **options,
        )
        self._check_state_dtype()

    @staticmethod
    def validate_group(group: dict[str, Any]) -> None:
        Adam.validate_group(group)
        if group["amsgrad"]:
            raise ValueError("amsgrad=True is not supported with 8-bit state")

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        a = state.arrays
        hyper = self._kernel_keywords(group)

        def call(module: Any, idx: list[int], g: list, steps: np.ndarray, quantized: bool) -> None:
            p = [group["params"][i] for i in idx]
            s1, s2 = [a["state1"][i] for i in idx], [a["state2"][i] for i in idx]
            if quantized:
                m1, m2 = [a["absmax1"][i] for i in idx], [a["absmax2"][i] for i in idx]
                module.adam_step_8bit(p, g, s1, m1, s2, m2, None, None, steps, **hyper)
            else:
                module.adam_step(p, g, s1, s2, None, steps, **hyper)

        self._run_split(group, state, grads, call)


class AdamW8bit(Adam8bit):
    """AdamW with 8-bit blockwise state (decoupled weight decay, default 1e-2); parameters as
    :class:`Adam8bit`."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        block_size: int = BLOCK,
        min_8bit_size: int = 4096,
        **options: Unpack[StepOptions],
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
            block_size=block_size,
            min_8bit_size=min_8bit_size,
            **options,
        )


class Lion8bit(_Blockwise8bit, Lion):  # type: ignore[valid-type,misc]
    """Lion with 8-bit blockwise state (bitsandbytes' ``Lion8bit``); hyperparameters and update
    as :class:`~ferroptim.optim.Lion`, ``block_size`` and ``min_8bit_size`` as
    :class:`Adam8bit`."""

    quantized = (("state1", "absmax1", "qmap1", True),)
    state_names = ("state1", "absmax1", "qmap1")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        block_size: int = BLOCK,
        min_8bit_size: int = 4096,
        **options: Unpack[StepOptions],
    ) -> None:
        self._setup_8bit(block_size, min_8bit_size)
        super().__init__(params, lr, betas, weight_decay, maximize=maximize, **options)
        self._check_state_dtype()

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        a = state.arrays
        hyper = self._kernel_keywords(group)

        def call(module: Any, idx: list[int], g: list, steps: np.ndarray, quantized: bool) -> None:
            p = [group["params"][i] for i in idx]
            s1 = [a["state1"][i] for i in idx]
            if quantized:
                m1 = [a["absmax1"][i] for i in idx]
                module.lion_step_8bit(p, g, s1, m1, steps, **hyper)
            else:
                module.lion_step(p, g, s1, steps, **hyper)

        self._run_split(group, state, grads, call)
