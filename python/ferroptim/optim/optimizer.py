"""The optimizer base class: parameter groups, state arrays, backends, state_dict.

Subclasses declare their hyperparameters and state, and call one fused kernel per group per step.
"""

from __future__ import annotations

import copy
import math
import operator
import threading
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, TypedDict

import numpy as np

from ferroptim import clip
from ferroptim._array_checks import ArrayChecker
from ferroptim._backends import backend_module
from ferroptim._checkpoint_hint import refuse_checkpoint
from ferroptim._checks import NON_NEGATIVE, Range, check_flag, check_real
from ferroptim._flat_layout import packed_arrays
from ferroptim._interrupts import deferred_interrupts
from ferroptim._registry import OptimizerSpec
from ferroptim.nn.module import Module
from ferroptim.optim._call_plan import CallPlan, values_getter
from ferroptim.optim._model_grads import resolve_gradients, zero_live_gradients
from ferroptim.optim._param_spans import ParamSpans
from ferroptim.optim._state_format import StateFormat


class StepOptions(TypedDict, total=False):
    """Keyword options every optimizer accepts besides its hyperparameters (see
    :class:`Optimizer`): the backend, clipping inside the step, and non-finite skipping."""

    backend: str
    max_grad_norm: float | None
    clip_value: float | None
    state_dtype: str | None
    stochastic_rounding: bool
    seed: int
    skip_nonfinite: bool
    foreach: bool | None
    fused: bool | None


class _GroupState:
    """The state arrays of one parameter group, one list per state name, aligned with params
    (``params``: the parameters the state belongs to, to notice edits of the group's list; an
    int ``n`` gives a detached state of ``n`` parameters, for reading scalar-state names)."""

    def __init__(self, params: list[np.ndarray] | int) -> None:
        self.params = [None] * params if isinstance(params, int) else list(params)
        n = len(self.params)
        self.arrays: dict[str, list[np.ndarray]] = {}
        self.steps = np.zeros(n, dtype=np.int64)
        #: NAdam's running product of momentum coefficients (float32, as torch keeps it)
        self.mu_products = np.ones(n, dtype=np.float32)
        #: the kernel call of the last step, while the group's options stay (see Optimizer._plan)
        self.plan: CallPlan | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the plan (rebuilt at the next step)."""
        return {**self.__dict__, "plan": None}


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
    skip_nonfinite : bool, default False
        Skip a step whose gradients (every group, ``None`` entries ignored) hold a nan or inf:
        parameters, state and step counts stay untouched, ``skipped_steps`` is incremented and
        ``last_step_skipped`` is True. Detection is one read pass: the max-abs norm
        ``ferroptim.clip.global_norm(grads, inf)`` is nan/inf iff some element is (nan propagates
        through the native maximum). With ``max_grad_norm`` the clipping norm's pass is reused (no
        extra pass): its L2 norm is non-finite iff some element is, or its float64 sum of squares
        overflows (elements around 1e154 and above, float64 gradients only), which skips the step
        too, the safe choice. With ``clip_value`` as well, the clamped norm cannot see an inf
        (clamped to ``clip_value``), so a second, max-abs pass checks the raw gradients.
    foreach, fused : bool, optional
        Accepted for torch code and ignored: every step is already one fused native call per
        parameter group, whatever they say.

    ``params`` may also be ``model.named_parameters()`` (the names are dropped) or the groups
    of :func:`ferroptim.optim.param_groups`.

    Notes
    -----
    ``step(model)`` takes each parameter's gradient from the model by identity (whatever the
    groups' order); ``step()`` does the same from the live modules that hold the parameters;
    ``step(grads)`` takes one gradient per parameter, in the order of ``param_groups`` (``None``
    skips a parameter). A change to ``param_groups[i][name]`` takes effect at the next step.

    Non-finite norms with ``max_grad_norm``: whatever ``skip_nonfinite`` says, a step whose
    clipping norm is nan or inf is skipped as above, with ``last_grad_norm`` holding that norm
    (torch's ``clip_grad_norm_`` would scale the gradients by nan or 0 and corrupt the parameters
    or state). Check ``last_step_skipped`` after the step, or ``skipped_steps`` over a run.

    ``state_dict()`` carries ``"skipped_steps"`` as an extra top-level entry once a step can be
    skipped (``skip_nonfinite``) or has been; otherwise it is torch's two-key dict. Dicts without
    it load with a count of 0.
    """

    #: the optimizer's description (``ferroptim._registry``): hyperparameters, state, kernel
    spec: ClassVar[OptimizerSpec]

    def __init__(
        self,
        params: Any,
        defaults: dict[str, Any],
        *,
        backend: str = "native",
        max_grad_norm: float | None = None,
        clip_value: float | None = None,
        skip_nonfinite: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        state_dtype: str | None = None,
        stochastic_rounding: bool = True,
        seed: int = 0,
    ) -> None:
        for flag, value in (("foreach", foreach), ("fused", fused)):
            if value is not None:
                check_flag(flag, value)
        backend_module(backend)  # a bad name raises here
        self.backend = backend
        self._lock = threading.RLock()
        self.max_grad_norm = max_grad_norm
        self.clip_value = clip_value
        self.skip_nonfinite = skip_nonfinite
        #: how many steps were skipped for non-finite gradients or norms (saved in state_dict)
        self.skipped_steps = 0
        #: whether the last ``step`` call was skipped (nothing changed)
        self.last_step_skipped = False
        #: the global gradient norm used by the last step (None without ``max_grad_norm``)
        self.last_grad_norm: float | None = None
        #: this step's norm-clipping factor (1.0 without max_grad_norm), passed to the kernels
        self._grad_scale = 1.0
        self._state_format = StateFormat.make(state_dtype, stochastic_rounding, seed)
        #: position of the first parameter of the group being stepped (its random streams)
        self._stream_offset = 0
        self._bind_call_path()
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self._group_states: list[_GroupState] = []
        #: address spans of every parameter, sorted (overlap checks of ``add_param_group``)
        self._spans = ParamSpans()
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
            value = check_real("max_grad_norm", value, Range(0.0, low_open=True))
        with self._lock:  # a step in another thread reads these
            self._max_grad_norm = value
            self._grad_scale = 1.0
            self.last_grad_norm = None

    @property
    def clip_value(self) -> float | None:
        """Bound gradient elements are clamped to inside each step (None: no clamping)."""
        return self._clip_value

    @clip_value.setter
    def clip_value(self, value: float | None) -> None:
        value = None if value is None else check_real("clip_value", value, NON_NEGATIVE)
        with self._lock:
            self._clip_value = value

    @property
    def skip_nonfinite(self) -> bool:
        """Whether a step with a nan or inf gradient is skipped (see the class notes)."""
        return self._skip_nonfinite

    @skip_nonfinite.setter
    def skip_nonfinite(self, value: bool) -> None:
        value = check_flag("skip_nonfinite", value)
        with self._lock:
            self._skip_nonfinite = value

    def _grad_scale_or_skip(self, grads: Sequence) -> float | None:
        """This step's ``grad_scale`` for the kernels, or None when the step must be skipped
        (non-finite gradients or clipping norm); sets ``last_grad_norm``. One read pass (two with
        ``skip_nonfinite``, ``max_grad_norm`` and ``clip_value`` all set)."""
        max_norm = self._max_grad_norm
        if all(g is None for g in grads):
            self.last_grad_norm = None if max_norm is None else 0.0
            return 1.0
        if max_norm is None:
            self.last_grad_norm = None
            # nan propagates through the native maximum; an inf is its own maximum.
            raw = clip.global_norm(grads, math.inf, backend=self.backend)
            return 1.0 if math.isfinite(raw) else None
        total = clip.global_norm(grads, 2.0, self._clip_value, backend=self.backend)
        self.last_grad_norm = total
        if not math.isfinite(total):
            return None
        if self._skip_nonfinite and self._clip_value is not None:
            # The clamped norm turned any inf into clip_value: look at the raw gradients.
            raw = clip.global_norm(grads, math.inf, backend=self.backend)
            if not math.isfinite(raw):
                return None
        coef = max_norm / (total + 1e-6)  # torch's clip coefficient
        return 1.0 if coef > 1.0 else coef

    # ----- groups and state -------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (torch's ``add_param_group``).

        The new parameters are checked against the existing ones in O(log n) each (a sorted
        list of memory spans), so adding many groups stays linear."""
        with self._lock:
            if not isinstance(param_group, dict) or "params" not in param_group:
                raise TypeError("param_group must be a dict with a 'params' list")
            params = param_group["params"]
            params = [params] if isinstance(params, np.ndarray) else _unnamed(list(params))
            unknown = set(param_group) - set(self.defaults) - {"params"}
            if unknown:
                raise ValueError(f"param_group has unknown options: {sorted(unknown)}")
            # Against the parameters known from the last step or add (an edit of a group's
            # params list since then is checked at the next step, as _sync_params does).
            self._spans.check_new(params, self._spans.count, self._all_params)
            self._state_format.check_params(params, self._spans.count)
            group = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
            self.validate_group(group)
            group["params"] = params
            self.param_groups.append(group)
            state = _GroupState(params)
            self._group_states.append(state)
            self._spans.add(params)
            if self.eager_state:
                self._ensure_state(group, state)

    def _all_params(self) -> list[np.ndarray]:
        return [p for g in self.param_groups for p in g["params"]]

    def _sync_params(self) -> None:
        """Follow in-place edits of ``param_groups[i]["params"]`` (appending, removing or
        replacing a parameter there, as torch allows): every parameter is checked again, and
        each group's state is realigned by identity (a parameter keeps its state, a new one
        starts fresh, as torch keys state by parameter). Cheap when nothing changed."""
        if all(map(_same_params, self.param_groups, self._group_states)):
            return
        self._spans.rebuild(self._all_params())
        for gi, group in enumerate(self.param_groups):
            state = self._group_states[gi]
            if not _same_params(group, state):
                hyper = dict(group)
                self.validate_group(hyper)
                self._group_states[gi] = self._realigned(state, list(group["params"]), hyper)

    def _realigned(
        self, state: _GroupState, params: list[np.ndarray], group: dict[str, Any]
    ) -> _GroupState:
        """``state`` for the parameter list ``params`` (matched by identity)."""
        old = {id(p): i for i, p in enumerate(state.params)}
        fresh = _GroupState(params)
        for k, p in enumerate(params):
            i = old.get(id(p))
            if i is not None:
                fresh.steps[k] = state.steps[i]
                fresh.mu_products[k] = state.mu_products[i]
        for name, arrays in state.arrays.items():
            fresh.arrays[name] = [
                arrays[old[id(p)]] if id(p) in old else self.init_state(name, p, group)
                for p in params
            ]
        return fresh

    @property
    def eager_state(self) -> bool:
        """Whether state is allocated at construction (torch's Adagrad) rather than at the first
        step."""
        return self.spec.eager_state

    @classmethod
    def validate_group(cls, group: dict[str, Any]) -> None:
        """Check (and normalize in place) a group's hyperparameters."""
        cls.spec.check_group(group)

    def active_states(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The state arrays the group's current options need, in kernel order."""
        return self.spec.active_states(group)

    def init_state(self, name: str, param: np.ndarray, group: dict[str, Any]) -> np.ndarray:
        """A new state array for ``param``: zeros, or the spec's ``state_fill`` option's value."""
        fill = self.spec.state_fill
        return np.zeros_like(param) if fill is None else np.full_like(param, group[fill])

    def state_layout(
        self, name: str, param: np.ndarray, group: dict[str, Any]
    ) -> tuple[tuple[int, ...], np.dtype]:
        """The shape and dtype of state array ``name`` of ``param`` as stored (what
        :meth:`init_state` gives, after the state format): the parameter's shape, and its dtype
        or bfloat16's bits (uint16)."""
        return param.shape, self._state_format.stored_dtype(param.dtype)

    def _ensure_state(self, group: dict[str, Any], state: _GroupState) -> None:
        """Allocate the group's missing state arrays: those of one name (and dtype) as views of
        one allocation, which a step reads faster than separately allocated arrays. The views
        are allocated first, then given their start values (:meth:`init_state`) one parameter
        at a time (``_flat_layout.packed_arrays``): allocating holds the state plus one
        parameter's start values, not the state twice."""
        params = group["params"]
        for name in self.active_states(group):
            if name not in state.arrays:
                state.plan = None  # its lists do not hold the new state
                state.arrays[name] = packed_arrays(
                    [self.state_layout(name, p, group) for p in params],
                    (self._state_format.stored(self.init_state(name, p, group)) for p in params),
                )

    @property
    def state_arrays_per_param(self) -> int:
        """How many state arrays the first group keeps per parameter (for roofline comparisons)."""
        return len(self.active_states(self.param_groups[0]))

    # ----- stepping ---------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients of this optimizer's parameters in place (torch's ``zero_grad``):
        the gradient arrays of the live modules that hold them. ``set_to_none`` is accepted and
        ignored (gradient arrays are reused). ``ValueError`` pointing at ``model.zero_grad()``
        when a parameter belongs to no live module (nothing is zeroed then)."""
        with self._lock:
            zero_live_gradients(self)

    def step(self, grads: Sequence[np.ndarray | None] | Module | None = None) -> None:
        """Update every parameter in place from its gradient.

        Parameters
        ----------
        grads : Module, sequence of numpy.ndarray or None, or None
            A model: each parameter gets the gradient the model holds for that very array
            (matched by identity, whatever the order of ``param_groups``; tied weights get the
            sum of their gradients; frozen ones are skipped). Omitted: the same, from the live
            modules that hold the parameters. ``model.gradients()``: matched by identity too
            (the list remembers each gradient's parameter). Any other sequence: one gradient
            per parameter, in ``param_groups`` order; ``None`` skips that parameter. Gradients
            are only read.

        Raises
        ------
        TypeError, ValueError
            On a bad gradient or hyperparameter; nothing is modified then.

        Notes
        -----
        A step with non-finite gradients (``skip_nonfinite``) or a non-finite clipping norm
        (``max_grad_norm``) changes nothing but ``skipped_steps`` and ``last_step_skipped``; see
        the class notes.
        """
        if type(grads) is not list and type(grads) is not tuple:  # fast path first
            grads = resolve_gradients(self, grads)
            if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
                grads = _as_list(grads)
        with self._lock:
            # The usual case first: one group, nothing changed since the last step, no clipping
            # norm to compute (a wrapper may have set _grad_scale, as ZeRO does for its global
            # norm). One native call checks that (the identities of the group's params and
            # options, see _call_plan) and steps; False: something changed.
            states = self._group_states
            if len(states) == 1 and self._max_grad_norm is None and not self._skip_nonfinite:
                plan = states[0].plan
                if (
                    plan is not None
                    and (prepared := plan.prepared) is not None
                    and plan.arrays is states[0].arrays
                    and len(self.param_groups) == 1
                    # stream offset 0: a lone group's bfloat16 random streams start at 0,
                    # as the path below sets it
                    and prepared.step(
                        self.param_groups[0], grads, self._grad_scale, self._clip_value, 0
                    )
                ):
                    self.last_step_skipped = False
                    return
            groups, states = self.param_groups, self._group_states
            # Otherwise: one group whose plan still holds (clipping, the reference backend).
            plan = states[0].plan if len(groups) == 1 else None
            if plan is None or not plan.holds(groups[0], states[0].arrays):
                self._sync_params()
                # Everything the step reads, read once: each group's validated options (checked
                # again when one changed) and kernel call, the clipping options, under the lock.
                plans = list(map(self._plan, groups, self._group_states))
                if len(plans) != 1:
                    self._step_groups(plans, grads)
                    return
                plan = plans[0]
            state = self._group_states[0]
            hyper = plan.hyper
            if len(grads) != len(hyper["params"]):
                raise ValueError(
                    f"grads: got {len(grads)} gradients for {len(hyper['params'])} params"
                )
            if self._max_grad_norm is not None or self._skip_nonfinite:
                scale = self._grad_scale_or_skip(grads)
                if scale is None:
                    # Raise on bad input as an applied step would, then skip.
                    self._precheck(hyper, state, list(grads), 0, ArrayChecker())
                    self._skip()
                    return
                self._grad_scale = scale
            self._stream_offset = 0
            self.run_kernel(hyper, state, grads)
            self.last_step_skipped = False

    def _step_groups(self, plans: list[CallPlan], grads: Sequence) -> None:
        """A step of several groups: every group checked before any is updated."""
        total = sum(len(plan.hyper["params"]) for plan in plans)
        if len(grads) != total:
            raise ValueError(f"grads: got {len(grads)} gradients for {total} params")
        start = 0
        calls = []
        for plan, state in zip(plans, self._group_states, strict=True):
            n = len(plan.hyper["params"])
            calls.append((plan.hyper, state, list(grads[start : start + n]), start))
            start += n
        checker = ArrayChecker()
        for hyper, state, group_grads, offset in calls:
            self._precheck(hyper, state, group_grads, offset, checker)
        checker.check_overlaps()
        if self._max_grad_norm is not None or self._skip_nonfinite:
            scale = self._grad_scale_or_skip(grads)
            if scale is None:
                self._skip()
                return
            self._grad_scale = scale
        # One kernel call per group: a Ctrl-C between two would half-apply the step.
        with deferred_interrupts():
            for hyper, state, group_grads, offset in calls:
                self._stream_offset = offset  # the group's random streams (bfloat16 state)
                self.run_kernel(hyper, state, group_grads)
            self.last_step_skipped = False

    def _plan(self, group: dict[str, Any], state: _GroupState) -> CallPlan:
        """The kernel call of ``group`` for this step (its params already synced with
        ``state``): the last one while it holds (:meth:`CallPlan.holds`), else a new one from a
        validated, normalized copy of the group, with its state allocated as the options need."""
        plan = state.plan
        if plan is not None and plan.holds(group, state.arrays):
            return plan
        raw = dict(group)  # one snapshot: another thread may be writing the group
        hyper = dict(raw)
        self.validate_group(hyper)
        hyper["params"] = state.params
        self._ensure_state(hyper, state)
        values = self._hyper_values(raw)
        previous = None if plan is None else plan.prepared
        state.plan = CallPlan(self._hyper_values, values, hyper, state.arrays, previous)
        return state.plan

    def _skip(self) -> None:
        self.skipped_steps += 1
        self.last_step_skipped = True

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
        check one group at a time). ``group`` is already validated."""
        self._ensure_state(group, state)
        for i, (p, g) in enumerate(zip(group["params"], grads, strict=True), start=offset):
            if g is None:
                continue
            checker.record(p, True, "params", i)
            checker.array(g, "grads", i, False, like=p)
            for name in self.active_states(group):
                checker.record(state.arrays[name][i - offset], True, name, i)

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Sequence) -> None:
        """Call the fused kernel for one group (a validated ``hyper`` of :meth:`_plan`, whose
        state is allocated): every state list of the spec in order (None for one the options do
        not use), the per-tensor scalars, the step counts, then the hyperparameters, this step's
        clipping factor and clip value as keywords."""
        plan = state.plan
        if plan is None or plan.hyper is not group:  # not the group the plan was built for
            self._ensure_state(group, state)
            self._kernel(
                group["params"],
                grads,
                *self._kernel_lists(group, state),
                **self._kernel_keywords(group),
            )
            return
        if plan.lists is None:
            plan.lists = self._kernel_lists(group, state)
            plan.kwargs = self._kernel_keywords(group)
            plan.prepared = self._prepare(plan)
        if plan.prepared is not None:
            plan.prepared.step(None, grads, self._grad_scale, self._clip_value, self._stream_offset)
            return
        kwargs = plan.kwargs
        kwargs["grad_scale"] = self._grad_scale
        kwargs["clip_value"] = self._clip_value
        self._kernel(group["params"], grads, *plan.lists, **kwargs)

    def _prepare(self, plan: CallPlan) -> Any:
        """The native kernel call of ``plan`` prepared once (None with the reference backend,
        which has no prepared calls)."""
        prepare = getattr(backend_module(self.backend), "prepare_step", None)
        if prepare is None:
            return None
        hypers = {k: v for k, v in plan.kwargs.items() if k not in ("grad_scale", "clip_value")}
        fmt = self._state_format
        previous, plan.previous = plan.previous, None
        return prepare(
            self.spec.kernel_name,
            plan.hyper["params"],
            plan.lists,
            hypers,
            plan.watched(self._hyper_names),
            (fmt.stochastic_rounding, fmt.seed) if fmt.bf16 else None,
            previous,
        )

    def _kernel_lists(self, group: dict[str, Any], state: _GroupState) -> tuple:
        """The kernel's positional arguments after ``params`` and ``grads``: the state lists
        (None for one ``group``'s options do not use), the per-tensor scalars, the step counts."""
        arrays = state.arrays
        return (
            *(arrays[s.name] if s.used(group) else None for s in self.spec.states),
            *(state.mu_products for _ in self.spec.scalars),
            state.steps,
        )

    def _kernel_keywords(self, group: dict[str, Any]) -> dict[str, Any]:
        """A kernel's keyword arguments for one step of ``group``: the spec's hyperparameters
        plus this step's clipping factor and clip value."""
        keywords = self.spec.kernel_kwargs(group)
        keywords["grad_scale"] = self._grad_scale
        keywords["clip_value"] = self._clip_value
        return keywords

    # ----- state_dict -------------------------------------------------------------------------
    @property
    def state(self) -> dict[int, dict[str, Any]]:
        """Per-parameter state keyed by the parameter's index (as in ``state_dict()["state"]``)."""
        return self.state_dict()["state"]

    def _has_state(self, state: _GroupState, i: int) -> bool:
        if self.spec.steps == "first":  # no step saved: an entry exists once a state array does
            return bool(state.arrays) and bool(state.steps[i] > 0)
        return self.eager_state or bool(state.steps[i] > 0)

    def state_dict(self) -> dict[str, Any]:
        """torch-shaped state: ``{"state": {index: {"step": float, name: array}}, "param_groups":
        [{..., "params": [index, ...]}]}``. Arrays are the optimizer's own (not copies).

        With ``skip_nonfinite`` set, or once a step has been skipped, an extra top-level entry
        ``"skipped_steps"`` (int) holds :attr:`skipped_steps`."""
        with self._lock:
            self._sync_params()
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
            out: dict[str, Any] = {"state": out_state, "param_groups": out_groups}
            if self._skip_nonfinite or self.skipped_steps:
                out["skipped_steps"] = self.skipped_steps
            return out

    def check_saved_array(self, label: str, name: str, value: Any, param: np.ndarray) -> Any:
        """A saved state array checked (and converted) for loading as state ``name`` of
        ``param``; ``label`` names it in errors."""
        value = self._state_format.loaded(label, value, param)
        non_negative = name in self.spec.non_negative_states
        return _check_state_array(label, non_negative, value, param, self._state_format)

    def saved_state_layout(
        self, name: str, param: np.ndarray
    ) -> tuple[tuple[int, ...] | None, tuple[np.dtype, ...]]:
        """The shape (None: any) and dtypes a saved state array ``name`` of ``param`` may have
        to load (other dtypes than the optimizer's own are converted)."""
        return param.shape, self._state_format.saved_dtypes(param)

    def scalar_state(self, state: _GroupState, i: int) -> dict[str, Any]:
        """Scalar entries of parameter ``i``'s state (torch keeps ``step`` as a float; torch's SGD
        keeps none)."""
        out: dict[str, Any] = {}
        # bfloat16 state keeps the step everywhere: its random streams depend on it.
        if self.spec.steps != "first" or self._state_format.bf16:
            out["step"] = float(state.steps[i])
        for scalar in self.spec.scalars:
            out[scalar.name] = float(state.mu_products[i])
        return out

    def load_scalar_state(self, state: _GroupState, i: int, entry: dict[str, Any]) -> None:
        """Restore what :meth:`scalar_state` saved (``entry``'s scalars are already checked)."""
        if self.spec.steps == "first" and "step" not in entry:
            # torch keeps no step for SGD: a saved state array means the first step has happened.
            saved = any(entry.get(s.name) is not None for s in self.spec.states)
            state.steps[i] = 1 if saved else 0
        else:
            state.steps[i] = int(entry.get("step", 0))
        for scalar in self.spec.scalars:
            state.mu_products[i] = np.float32(entry.get(scalar.name, scalar.initial))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore state saved by :meth:`state_dict` (values are copied into this optimizer's
        arrays). Everything is checked first; on error nothing changes.

        ``"skipped_steps"`` is optional (torch's dicts have none): it restores
        :attr:`skipped_steps`, 0 when absent.

        Checks: ``state_dict["state"]`` is a dict of dicts keyed by parameter index and
        ``state_dict["param_groups"]`` a list of dicts whose ``"params"`` are the indices
        ``0, 1, ...`` in order; group hyperparameters pass the constructor's checks; every state
        array has its parameter's shape and dtype (second-moment-like arrays ``>= 0``; nan and
        inf load as they are, as in torch); ``step`` is a whole number in ``[0, 2**53]`` and
        NAdam's ``mu_product`` a real number in ``[0, 1]``. The saved groups replace the current
        ones, as in torch: an entry the saved group lacks (a scheduler's ``initial_lr``) is
        dropped, except this optimizer's own hyperparameters, which keep their values.

        Raises
        ------
        TypeError
            Naming the key or index when a container or scalar has the wrong type.
        ValueError
            Naming the key or index when groups, parameters, names, shapes, dtypes or values do
            not match.
        """
        with self._lock:
            self._sync_params()
            new_groups, skipped = self._check_groups(state_dict)
            staged = self._stage_state(state_dict["state"], new_groups)
            # Everything checked and staged: apply (nothing below can fail on bad input).
            for group, new, state, fresh in zip(
                self.param_groups, new_groups, self._group_states, staged, strict=True
            ):
                new["params"] = group["params"]
                group.clear()
                group.update(new)
                state.steps[:] = fresh.steps
                state.mu_products[:] = fresh.mu_products
                state.arrays = fresh.arrays
                state.plan = None
            self.skipped_steps = skipped

    def _check_groups(self, state_dict: Any) -> tuple[list[dict[str, Any]], int]:
        """Check the top level and ``param_groups``; return the merged, normalized groups and
        ``skipped_steps``."""
        if not isinstance(state_dict, dict):
            refuse_checkpoint(state_dict, "optimizer")
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        if not {"state", "param_groups"} <= set(state_dict) <= _STATE_DICT_KEYS:
            raise ValueError(
                "state_dict must have keys 'state' and 'param_groups' (and optionally "
                f"'skipped_steps'), got {sorted(map(str, state_dict))}"
            )
        skipped = _as_count(state_dict.get("skipped_steps", 0))
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, list | tuple):
            raise TypeError(
                f"state_dict['param_groups'] must be a list, got {type(saved_groups).__name__}"
            )
        if not isinstance(state_dict["state"], dict):
            raise TypeError(
                f"state_dict['state'] must be a dict, got {type(state_dict['state']).__name__}"
            )
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} param groups, optimizer has "
                f"{len(self.param_groups)}"
            )
        new_groups = []
        index = 0
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if not isinstance(saved, dict):
                raise TypeError(f"param_groups[{gi}] must be a dict, got {type(saved).__name__}")
            _check_group_indices(gi, saved.get("params", ()), index, len(group["params"]))
            index += len(group["params"])
            # The saved group replaces this one, as in torch (keys it lacks, such as a
            # scheduler's "initial_lr", do not survive), except for the optimizer's own
            # hyperparameters, which keep their current values when the saved group has none.
            own = {k: v for k, v in group.items() if k in self.defaults or k == "params"}
            merged = {**own, **{k: v for k, v in saved.items() if k != "params"}}
            self.validate_group(merged)
            new_groups.append(merged)
        return new_groups, skipped

    def _stage_state(
        self, saved_state: dict[Any, Any], new_groups: list[dict[str, Any]]
    ) -> list[_GroupState]:
        """Check every saved entry and build the new per-group state off to the side."""
        n_params = sum(len(g["params"]) for g in new_groups)
        extra = set(saved_state) - set(range(n_params))
        if extra:
            raise ValueError(
                f"state has entries for unknown parameter indices {sorted(map(repr, extra))}"
            )
        staged = []
        index = 0
        for group in new_groups:
            names = self.active_states(group)
            checked = []
            for i, p in enumerate(group["params"]):
                entry = saved_state.get(index + i)
                if entry is not None:
                    checked.append((i, *self._check_entry(index + i, entry, names, p)))
            fresh = _GroupState(group["params"])
            self._ensure_state(group, fresh)
            for i, scalars, arrays in checked:
                self.load_scalar_state(fresh, i, scalars)
                for name, value in arrays.items():
                    np.copyto(fresh.arrays[name][i], value)
            staged.append(fresh)
            index += len(group["params"])
        return staged

    def _check_entry(
        self, index: int, entry: Any, names: tuple[str, ...], param: np.ndarray
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Check ``state[index]``: ``(scalars, arrays)``, the scalars normalized to Python
        numbers (plus the raw array entries, which some ``load_scalar_state`` look at)."""
        if not isinstance(entry, dict):
            raise TypeError(f"state[{index}] must be a dict, got {type(entry).__name__}")
        scalar_names = tuple(self.scalar_state(_GroupState(1), 0))
        if self.spec.steps == "first":  # "step": saved with bfloat16 state only, loads either way
            without = tuple(n for n in scalar_names if n != "step")
            scalar_names = (*without, "step") if "step" in entry else without
        unknown = set(entry) - set(names) - set(scalar_names)
        if unknown:
            raise ValueError(f"state[{index}] has unexpected keys {sorted(map(str, unknown))}")
        scalars: dict[str, Any] = {}
        for name in scalar_names:
            if name not in entry:
                raise ValueError(f"state[{index}] is missing {name!r}")
            rule = _scalar_rule(self.spec, name)
            scalars[name] = _check_scalar(f"state[{index}][{name!r}]", rule, entry[name])
        arrays = {}
        for name in names:
            if name not in entry:
                raise ValueError(f"state[{index}] is missing {name!r}")
            label = f"state[{index}][{name!r}]"
            arrays[name] = self.check_saved_array(label, name, entry[name], param)
        return {**arrays, **scalars}, arrays

    # ----- copying and pickling ----------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything but the lock and the call path (a copy or an unpickled optimizer gets its
        own). Pickle an optimizer while no other thread steps it: the arrays
        are serialized after this returns."""
        state = dict(self.__dict__)
        del state["_lock"], state["_kernel"], state["_hyper_values"], state["_hyper_names"]
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> Optimizer:
        """An independent copy (parameters, state arrays and groups copied; a fresh lock), taken
        under the lock, so it never holds half a step. As for any deep copy, parameters shared
        with objects copied in the same ``copy.deepcopy`` call stay shared in the copy."""
        with self._lock:
            new = type(self).__new__(type(self))
            memo[id(self)] = new
            new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
            return new

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._bind_call_path()

    def _bind_call_path(self) -> None:
        """The kernel function and the reader of a group's hyperparameter values (both
        derived from the spec, the backend and the state format; not pickled)."""
        self._kernel = self._state_format.kernel(
            backend_module(self.backend), self.spec.kernel_name, lambda: self._stream_offset
        )
        self._hyper_names = tuple(h.name for h in self.spec.hypers)
        self._hyper_values = values_getter(self._hyper_names)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} (backend={self.backend!r})"]
        for i, group in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v!r}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {opts}")
        return "\n".join(lines)


def _same_params(group: dict[str, Any], state: _GroupState) -> bool:
    """Whether ``group["params"]`` still holds exactly the arrays ``state`` belongs to."""
    params = group["params"]
    return len(params) == len(state.params) and all(map(operator.is_, params, state.params))


def _as_list(obj: Any) -> list:
    if callable(obj) and not isinstance(obj, Iterable):
        raise TypeError(
            "step(closure) is not supported: ferroptim computes no gradients itself; run the "
            "forward, the loss and model.backward(...), then call opt.step(model)"
        )
    if isinstance(obj, np.ndarray):
        raise TypeError("expected a list of arrays, got a single numpy.ndarray; wrap it in a list")
    if isinstance(obj, Iterable):
        return list(obj)
    raise TypeError(f"expected a list of arrays, got {type(obj).__name__}")


def _unnamed(items: list) -> list:
    """``named_parameters()`` pairs ``(name, array)`` reduced to their arrays."""
    if items and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in items):
        return [array for _, array in items]
    return items


def _as_groups(params: Any) -> list[dict[str, Any]]:
    if isinstance(params, Module):
        raise TypeError(
            "params: got a Module; pass model.parameters() (or fo.optim.param_groups(model))"
        )
    items = _unnamed(_as_list(params))
    if items and all(isinstance(g, dict) for g in items):
        return [dict(g) for g in items]
    if any(isinstance(g, dict) for g in items):
        raise TypeError("params must be all arrays or all parameter-group dicts")
    return [{"params": items}] if items else []


_STATE_DICT_KEYS = frozenset({"state", "param_groups", "skipped_steps"})


def _as_count(value: Any) -> int:
    """``skipped_steps`` from a state_dict: a non-negative whole number (int, float or 0-d)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"state_dict['skipped_steps'] must be a whole number, got {value!r}")
    if not float(value).is_integer() or value < 0:
        raise ValueError(
            f"state_dict['skipped_steps'] must be a non-negative whole number, got {value!r}"
        )
    return int(value)


def _check_group_indices(gi: int, indices: Any, start: int, count: int) -> None:
    """A saved group's ``"params"`` must be the indices ``start, ..., start + count - 1``."""
    name = f"param_groups[{gi}]['params']"
    if not isinstance(indices, list | tuple):
        raise TypeError(f"{name} must be a list of indices, got {type(indices).__name__}")
    if len(indices) != count:
        raise ValueError(
            f"param_groups[{gi}] has {len(indices)} params, optimizer group has {count}"
        )
    for k, value in enumerate(indices):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name}[{k}] must be an int, got {type(value).__name__}")
    expected = list(range(start, start + count))
    if [int(v) for v in indices] != expected:
        raise ValueError(f"{name} must be the parameter indices {expected}, got {list(indices)}")


def _scalar_rule(spec: OptimizerSpec, name: str) -> tuple[float, float, bool]:
    """``(low, high, whole number)`` of a scalar state entry: ``step``, or one of the spec's."""
    if name == "step":
        return 0.0, float(2**53), True
    allowed = next(s.allowed for s in spec.scalars if s.name == name)
    return allowed.low, allowed.high, False


def _check_scalar(label: str, rule: tuple[float, float, bool], value: Any) -> float:
    """A scalar state entry (a real number or a 0-d numeric array) checked by its rule."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise TypeError(f"{label} must be a real number, got {type(value).__name__}")
    low, high, whole = rule
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        number = math.inf
    in_range = math.isfinite(number) and low <= number <= high
    if not in_range or (whole and not number.is_integer()):
        kind = "a whole number" if whole else "a finite real number"
        raise ValueError(f"{label} must be {kind} in [{low:g}, {high:g}], got {value!r}")
    return number


def _check_state_array(
    label: str, non_negative: bool, value: Any, param: np.ndarray, state_format: StateFormat
) -> np.ndarray:
    """A state array: an ndarray with ``param``'s shape and dtype (and no negative values in the
    second-moment-like states). nan and inf load as they are, as in torch: a run that diverged
    can still be resumed or inspected."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{label} must be a numpy.ndarray, got {type(value).__name__}")
    if value.shape != param.shape:
        raise ValueError(f"{label} has shape {value.shape} but the param has shape {param.shape}")
    expected = np.dtype(np.uint16) if state_format.bf16 else param.dtype
    if value.dtype != expected:
        owner = (
            "bfloat16 state is uint16" if state_format.bf16 else f"the param has dtype {expected}"
        )
        raise ValueError(f"{label} has dtype {value.dtype} but {owner}")
    if non_negative and (state_format.as_float(value) < 0).any():
        raise ValueError(f"{label} holds negative values (it is a sum or maximum of magnitudes)")
    return value
