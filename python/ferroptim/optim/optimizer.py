"""The optimizer base class: parameter groups, state arrays, backends, state_dict.

Subclasses declare their hyperparameters and state, and call one fused kernel per group per step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from ferroptim import _native, clip, reference
from ferroptim.optim._checks import check_number, check_params
from ferroptim.reference._checks import ArrayChecker

BACKENDS: dict[str, ModuleType] = {"native": _native, "reference": reference}


class _GroupState:
    """The state arrays of one parameter group, one list per state name, aligned with params."""

    def __init__(self, n: int) -> None:
        self.arrays: dict[str, list[np.ndarray]] = {}
        self.steps = np.zeros(n, dtype=np.int64)
        self.mu_products = np.ones(n, dtype=np.float32)


class Optimizer:
    """Base class of ferroptim's optimizers, shaped like ``torch.optim.Optimizer``.

    Parameters
    ----------
    params : list of numpy.ndarray, or list of dict
        Arrays to optimize (updated in place), or parameter groups: dicts with a ``"params"`` list
        and any hyperparameters that override the defaults for that group.
    defaults : dict
        Hyperparameters of the subclass.
    backend : {"native", "reference"}
        ``"native"`` runs the fused Rust kernels; ``"reference"`` runs the pure-NumPy twins.
    max_grad_norm : float, optional
        Clip gradients inside the step to a global L2 norm of at most this (over every group's
        gradients): the same result as ``ferroptim.clip.clip_grad_norm_`` followed by the step,
        but the caller's gradients are not written and no clipped copy is made (one read pass for
        the norm, then the usual fused pass with the factor applied). ``last_grad_norm`` holds the
        norm used.
    clip_value : float, optional
        Clamp every gradient element into ``[-clip_value, clip_value]`` inside the step (as
        ``ferroptim.clip.clip_grad_value_``; applied before norm clipping when both are set).

    Notes
    -----
    ``step(grads)`` takes one gradient per parameter, in the order of ``param_groups`` (``None``
    skips a parameter). A change to ``param_groups[i][name]`` takes effect at the next step.
    """

    #: name of the kernel function in ``ferroptim._native`` / ``ferroptim.reference``
    kernel_name: ClassVar[str]
    #: state names in torch's state_dict, in kernel order; subclasses narrow them per group
    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        params: Any,
        defaults: dict[str, Any],
        *,
        backend: str = "native",
        max_grad_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'native' or 'reference', got {backend!r}")
        self.backend = backend
        self.max_grad_norm = max_grad_norm
        self.clip_value = clip_value
        #: the global gradient norm used by the last step (None without ``max_grad_norm``)
        self.last_grad_norm: float | None = None
        #: this step's norm-clipping factor (1.0 without max_grad_norm), passed to the kernels
        self._grad_scale = 1.0
        self._kernel = getattr(BACKENDS[backend], self.kernel_name)
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self._group_states: list[_GroupState] = []
        self._lock = threading.Lock()
        groups = _as_groups(params)
        if not groups:
            raise ValueError("params: optimizer got an empty parameter list")
        for group in groups:
            self.add_param_group(group)

    # ----- clipping inside the step --------------------------------------------------------------
    @property
    def max_grad_norm(self) -> float | None:
        """Global L2 norm the gradients are clipped to inside each step (None: no clipping)."""
        return self._max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: float | None) -> None:
        if value is not None:
            value = check_number("max_grad_norm", value)
            if value <= 0:
                raise ValueError(f"Invalid max_grad_norm value: {value} (expected > 0)")
        self._max_grad_norm = value
        self._grad_scale = 1.0
        self.last_grad_norm = None

    @property
    def clip_value(self) -> float | None:
        """Bound gradient elements are clamped to inside each step (None: no clamping)."""
        return self._clip_value

    @clip_value.setter
    def clip_value(self, value: float | None) -> None:
        self._clip_value = None if value is None else check_number("clip_value", value)

    def _norm_clip_factor(self, grads: Sequence) -> float:
        """This step's ``grad_scale`` for the kernels (a read pass for the global norm), and
        ``last_grad_norm``."""
        max_norm = self._max_grad_norm
        if max_norm is None:
            self.last_grad_norm = None
            return 1.0
        if all(g is None for g in grads):
            self.last_grad_norm = 0.0
            return 1.0
        total = clip.global_norm(grads, 2.0, self._clip_value, backend=self.backend)
        self.last_grad_norm = total
        coef = max_norm / (total + 1e-6)  # torch's clip coefficient, NaN for a NaN norm
        return 1.0 if coef > 1.0 else coef

    # ----- groups and state -------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (torch's ``add_param_group``)."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError("param_group must be a dict with a 'params' list")
        params = param_group["params"]
        params = [params] if isinstance(params, np.ndarray) else list(params)
        unknown = set(param_group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"param_group has unknown options: {sorted(unknown)}")
        existing = [p for g in self.param_groups for p in g["params"]]
        check_params(existing + params)
        group = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self.validate_group(group)
        group["params"] = params
        self.param_groups.append(group)
        state = _GroupState(len(params))
        self._group_states.append(state)
        if self.eager_state:
            self._ensure_state(group, state)

    #: allocate state at construction (torch's Adagrad does) rather than at the first step
    eager_state: ClassVar[bool] = False

    @staticmethod
    def validate_group(group: dict[str, Any]) -> None:
        """Check (and normalize in place) a group's hyperparameters. Subclasses override."""

    def active_states(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The state arrays the group's current options need, in kernel order."""
        return self.state_names

    def init_state(self, name: str, param: np.ndarray, group: dict[str, Any]) -> np.ndarray:
        """A new state array for ``param`` (zeros unless a subclass says otherwise)."""
        return np.zeros_like(param)

    def _ensure_state(self, group: dict[str, Any], state: _GroupState) -> None:
        for name in self.active_states(group):
            if name not in state.arrays:
                state.arrays[name] = [self.init_state(name, p, group) for p in group["params"]]

    @property
    def state_arrays_per_param(self) -> int:
        """How many state arrays the first group keeps per parameter (for roofline comparisons)."""
        return len(self.active_states(self.param_groups[0]))

    # ----- stepping ---------------------------------------------------------------------------
    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        """Update every parameter in place from its gradient.

        Parameters
        ----------
        grads : sequence of numpy.ndarray or None
            One gradient per parameter, in ``param_groups`` order; ``None`` skips that parameter.
            Gradients are only read.

        Raises
        ------
        TypeError, ValueError
            On a bad gradient or hyperparameter; nothing is modified then.
        """
        if type(grads) is not list and type(grads) is not tuple:  # fast path first
            if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
                grads = _as_list(grads)
        with self._lock:
            groups = self.param_groups
            if len(groups) == 1:
                group = groups[0]
                if len(grads) != len(group["params"]):
                    raise ValueError(
                        f"grads: got {len(grads)} gradients for {len(group['params'])} params"
                    )
                if self._max_grad_norm is not None:
                    self._grad_scale = self._norm_clip_factor(grads)
                self._step_group(group, self._group_states[0], grads)
                return
            total = sum(len(g["params"]) for g in groups)
            if len(grads) != total:
                raise ValueError(f"grads: got {len(grads)} gradients for {total} params")
            # Check every group before touching any, so a failure leaves all unchanged.
            start = 0
            plan = []
            for group, state in zip(groups, self._group_states, strict=True):
                n = len(group["params"])
                plan.append((group, state, list(grads[start : start + n]), start))
                start += n
            checker = ArrayChecker()
            for group, state, group_grads, offset in plan:
                self._precheck(group, state, group_grads, offset, checker)
            checker.check_overlaps()
            if self._max_grad_norm is not None:
                self._grad_scale = self._norm_clip_factor(grads)
            for group, state, group_grads, _ in plan:
                self._step_group(group, state, group_grads)

    def _precheck(
        self,
        group: dict[str, Any],
        state: _GroupState,
        grads: list,
        offset: int,
        checker: ArrayChecker,
    ) -> None:
        """Check a group's hyperparameters and gradients, recording every array of the step in
        ``checker``, so that several groups can be checked before any is updated (the kernels
        check one group at a time)."""
        self.validate_group(dict(group))
        self._ensure_state(group, state)
        for i, (p, g) in enumerate(zip(group["params"], grads, strict=True), start=offset):
            if g is None:
                continue
            checker.record(p, True, "params", i)
            checker.array(g, "grads", i, False, like=p)
            for name in self.active_states(group):
                checker.record(state.arrays[name][i - offset], True, name, i)

    def _step_group(self, group: dict[str, Any], state: _GroupState, grads: Sequence) -> None:
        try:
            self.run_kernel(group, state, grads)
        except KeyError:
            # A state array is missing (first step, or an option that needs one was switched on):
            # run_kernel failed while gathering its arguments, before touching anything.
            self._ensure_state(group, state)
            self.run_kernel(group, state, grads)

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Sequence) -> None:
        """Call the fused kernel for one group. Subclasses implement it, reading every state array
        they need as ``state.arrays[name]`` (a missing one raises KeyError, which allocates it),
        and passing ``grad_scale=self._grad_scale, clip_value=self._clip_value`` to the kernel."""
        raise NotImplementedError

    # ----- state_dict -------------------------------------------------------------------------
    @property
    def state(self) -> dict[int, dict[str, Any]]:
        """Per-parameter state keyed by the parameter's index (as in ``state_dict()["state"]``)."""
        return self.state_dict()["state"]

    def _has_state(self, state: _GroupState, i: int) -> bool:
        return self.eager_state or bool(state.steps[i] > 0)

    def state_dict(self) -> dict[str, Any]:
        """torch-shaped state: ``{"state": {index: {"step": float, name: array}}, "param_groups":
        [{..., "params": [index, ...]}]}``. Arrays are the optimizer's own (not copies)."""
        out_state: dict[int, dict[str, Any]] = {}
        out_groups = []
        index = 0
        for group, state in zip(self.param_groups, self._group_states, strict=True):
            indices = list(range(index, index + len(group["params"])))
            for i, gi in enumerate(indices):
                if not self._has_state(state, i):
                    continue
                entry: dict[str, Any] = self.scalar_state(state, i)
                for name in self.active_states(group):
                    if name in state.arrays:
                        entry[name] = state.arrays[name][i]
                out_state[gi] = entry
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = indices
            out_groups.append(saved)
            index += len(indices)
        return {"state": out_state, "param_groups": out_groups}

    def scalar_state(self, state: _GroupState, i: int) -> dict[str, Any]:
        """Scalar entries of parameter ``i``'s state (torch keeps ``step`` as a float)."""
        return {"step": float(state.steps[i])}

    def load_scalar_state(self, state: _GroupState, i: int, entry: dict[str, Any]) -> None:
        """Restore what :meth:`scalar_state` saved."""
        state.steps[i] = _as_step(entry.get("step", 0), i)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore state saved by :meth:`state_dict` (values are copied into this optimizer's
        arrays). Everything is checked first; on error nothing changes.

        Raises
        ------
        ValueError
            Naming the key when groups, parameters, names, shapes or dtypes do not match.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("state_dict must be a dict with keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} param groups, optimizer has "
                f"{len(self.param_groups)}"
            )
        params = [p for g in self.param_groups for p in g["params"]]
        new_groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(saved.get("params", ())) != len(group["params"]):
                raise ValueError(
                    f"param_groups[{gi}] has {len(saved.get('params', ()))} params, optimizer "
                    f"group has {len(group['params'])}"
                )
            merged = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            self.validate_group(merged)
            new_groups.append(merged)
        saved_state = state_dict["state"]
        extra = set(saved_state) - set(range(len(params)))
        if extra:
            raise ValueError(f"state has entries for unknown parameter indices {sorted(extra)}")
        index = 0
        plan = []
        for group, state in zip(new_groups, self._group_states, strict=True):
            names = self.active_states(group)
            for i, p in enumerate(group["params"]):
                entry = saved_state.get(index + i)
                if entry is not None:
                    plan.append((state, i, entry, self._check_entry(index + i, entry, names, p)))
            index += len(group["params"])
        # Everything checked: apply.
        for group, new, state in zip(
            self.param_groups, new_groups, self._group_states, strict=True
        ):
            new["params"] = group["params"]
            group.clear()
            group.update(new)
            state.steps[:] = 0
            state.mu_products[:] = 1.0
            state.arrays.clear()
            self._ensure_state(group, state)
        for state, i, entry, arrays in plan:
            self.load_scalar_state(state, i, entry)
            for name, value in arrays.items():
                np.copyto(state.arrays[name][i], value)

    def _check_entry(
        self, index: int, entry: dict[str, Any], names: tuple[str, ...], param: np.ndarray
    ) -> dict[str, np.ndarray]:
        arrays = {}
        allowed = set(names) | set(self.scalar_state(_GroupState(1), 0))
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(f"state[{index}] has unexpected keys {sorted(unknown)}")
        for name in names:
            if name not in entry:
                raise ValueError(f"state[{index}] is missing {name!r}")
            value = np.asarray(entry[name])
            if value.shape != param.shape:
                raise ValueError(
                    f"state[{index}][{name!r}] has shape {value.shape} but params[{index}] has "
                    f"shape {param.shape}"
                )
            if value.dtype != param.dtype:
                raise ValueError(
                    f"state[{index}][{name!r}] has dtype {value.dtype} but params[{index}] has "
                    f"dtype {param.dtype}"
                )
            arrays[name] = value
        return arrays

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} (backend={self.backend!r})"]
        for i, group in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v!r}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {opts}")
        return "\n".join(lines)


def _as_list(obj: Any) -> list:
    if isinstance(obj, np.ndarray):
        raise TypeError("expected a list of arrays, got a single numpy.ndarray; wrap it in a list")
    if isinstance(obj, Iterable):
        return list(obj)
    raise TypeError(f"expected a list of arrays, got {type(obj).__name__}")


def _as_groups(params: Any) -> list[dict[str, Any]]:
    items = _as_list(params)
    if items and all(isinstance(g, dict) for g in items):
        return [dict(g) for g in items]
    if any(isinstance(g, dict) for g in items):
        raise TypeError("params must be all arrays or all parameter-group dicts")
    return [{"params": items}] if items else []


def _as_step(value: Any, index: int) -> int:
    step = float(np.asarray(value))
    if not step.is_integer() or step < 0:
        raise ValueError(f"state[{index}]['step'] must be a non-negative whole number, got {value}")
    return int(step)
