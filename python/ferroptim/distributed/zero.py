"""ZeRO stage 1/2 (DeepSpeed; torch's ZeroRedundancyOptimizer): each rank keeps the optimizer
state of only its shard of the parameters, reduces only its shard of the gradients and updates
only that shard; the updated shards are then gathered into every rank's full parameters."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ferroptim import clip
from ferroptim.distributed import zero_state
from ferroptim.distributed._collectives import allreduce_sum
from ferroptim.distributed._comm import resolve
from ferroptim.distributed._signature import (
    agree_on_step,
    check_arrays,
    check_grads,
    check_num_samples,
    check_same_params,
)
from ferroptim.distributed.shards import FlatShard, flat_shards
from ferroptim.nn.module import Module
from ferroptim.optim import AdamW
from ferroptim.optim._model_grads import zero_live_gradients
from ferroptim.optim.optimizer import Optimizer, _as_groups

#: options the ZeRO wrapper applies over all shards itself, instead of the shard's optimizer
GLOBAL_OPTIONS = ("max_grad_norm", "clip_value", "skip_nonfinite")


class ZeroRedundancyOptimizer:
    """Sharded optimizer state over MPI ranks (ZeRO stage 1 and 2).

    Parameters of each group are laid out per dtype in one flat buffer, padded so that each of the
    N ranks owns an equal shard starting on a 64-byte boundary. A step:

    1. packs this rank's gradients (weighted ``1/N``, or ``num_samples / total``) into the flat
       gradient buffers and reduces them with ``Reduce_scatter_block``: rank r receives the sum
       over ranks of its shard only;
    2. with ``max_grad_norm``, the global norm ``sqrt(sum_r sum_shard_r g**2)`` is one allreduce
       of per-shard sums of squares (of the clamped values with ``clip_value``); the non-finite
       check is in the same allreduce, so every rank skips the same steps;
    3. runs ``optimizer_class``'s fused kernel on this rank's shard only (an inner optimizer whose
       parameters are the pieces of the user's arrays inside the shard);
    4. gathers every rank's updated shard with ``Allgather`` and copies it into the user's arrays
       (in place). Each element is computed by its one owner, so every replica is bitwise equal.

    Optimizer state per rank is ``1/N`` of the single-process state plus at most 64 bytes of
    padding per state array, group and dtype.

    Parameters
    ----------
    params : list of numpy.ndarray, or list of dict
        As for any ferroptim optimizer (parameter groups with their own hyperparameters).
    optimizer_class : type, default ferroptim.optim.AdamW
        Any :class:`~ferroptim.optim.Optimizer` subclass.
    comm : mpi4py.MPI.Comm, optional
    **defaults
        ``optimizer_class``'s hyperparameters and options (``lr``, ``weight_decay``,
        ``max_grad_norm``, ``clip_value``, ``skip_nonfinite``, ``backend``, ...).

    Notes
    -----
    Construction, ``step`` and :meth:`consolidate_state_dict` are collective;
    :meth:`load_state_dict` is not (every rank cuts its shard out of the full state). Construction
    checks that every rank has the same parameters (number, shapes, dtypes) and raises the same
    ValueError on every rank otherwise. ``param_groups`` are the user's arrays with the
    hyperparameters; a change there (a learning-rate scheduler) reaches the shard's optimizer at
    the next step. :meth:`add_param_group` adds a group (collective).
    """

    def __init__(
        self,
        params: Any,
        optimizer_class: type = AdamW,
        comm: Any = None,
        **defaults: Any,
    ) -> None:
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(
                f"optimizer_class must be a ferroptim.optim.Optimizer subclass, got "
                f"{optimizer_class!r}"
            )
        #: held by step, consolidation and loads (the option setters take it too)
        self._lock = threading.RLock()
        self.comm = resolve(comm)
        self.optimizer_class = optimizer_class
        groups = _as_groups(params)
        if not groups:
            raise ValueError("params: optimizer got an empty parameter list")
        groups = [_listed(group) for group in groups]
        user_params = [group["params"] for group in groups]
        problem = check_arrays([p for params in user_params for p in params])
        check_same_params(self.comm, user_params, "ZeroRedundancyOptimizer", problem)
        self._global = {name: defaults.pop(name, None) for name in GLOBAL_OPTIONS}
        self.max_grad_norm = self._global["max_grad_norm"]
        self.clip_value = self._global["clip_value"]
        self.skip_nonfinite = self._global["skip_nonfinite"] or False
        self._defaults = defaults
        rank, size = self.comm.Get_rank(), self.comm.Get_size()
        self._flats = flat_shards(user_params, rank, size)
        inner_groups = list(map(_inner_group, groups, self._flats))
        #: the optimizer of this rank's shard (its parameters are views of the user's arrays)
        self.optimizer = optimizer_class(inner_groups, clip_value=self.clip_value, **defaults)
        for inner, params in zip(self.optimizer.param_groups, user_params, strict=True):
            _check_elementwise(self.optimizer, inner, params)
        self.param_groups = [
            _with_params(inner, params)
            for inner, params in zip(self.optimizer.param_groups, user_params, strict=True)
        ]
        self._params = [p for params in user_params for p in params]
        self.skipped_steps = 0
        self.last_step_skipped = False
        self.last_grad_norm: float | None = None
        #: seconds of the last step's phases: reduce_scatter (packing included), kernel (the
        #: clipping norm and the shard's fused step), allgather (copies into the user's arrays
        #: included); kernel_cpu: this thread's CPU time in the shard's step
        self.last_timings: dict[str, float] = {}
        self._consolidated: dict[str, Any] | None = None

    # ----- options (the single-process optimizer's properties and checks) -------------------
    #: fit's marker of an optimizer that averages gradients over ``self.comm``'s ranks
    is_distributed = True
    # borrowed properties (typed Any: their getters and setters are written for Optimizer)
    max_grad_norm: Any = Optimizer.max_grad_norm
    clip_value: Any = Optimizer.clip_value
    skip_nonfinite: Any = Optimizer.skip_nonfinite
    # what the borrowed properties store
    _max_grad_norm: float | None
    _clip_value: float | None
    _skip_nonfinite: bool
    _grad_scale: float

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    @property
    def optim(self) -> Optimizer:
        """The optimizer of this rank's shard (torch's name for it; also :attr:`optimizer`)."""
        return self.optimizer

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group with its own hyperparameters (torch's ``add_param_group``):
        laid out in flat buffers of its own and sharded over the ranks like the others; this
        rank's shard optimizer gets its part of it (the existing shards and their state are
        untouched).

        Collective: call it on every rank with the same shapes and dtypes. A refusal (not a
        dict with ``params``, a parameter already optimized or sharing memory with one, an
        unknown or invalid option, ranks holding different arrays) raises the same
        ``ValueError``/``TypeError`` on every rank and changes nothing.
        """
        with self._lock:
            if not isinstance(param_group, dict):
                raise TypeError("param_group must be a dict with a 'params' list")
            group = _listed(dict(param_group))
            new = group["params"]
            problem = check_arrays([*self._params, *new]) or self._group_problem(group)
            held = [g["params"] for g in self.param_groups]
            check_same_params(self.comm, [*held, new], "add_param_group", problem)
            rank, size = self.comm.Get_rank(), self.comm.Get_size()
            flats = flat_shards([new], rank, size, first_index=len(self._params))[0]
            self.optimizer.add_param_group(_inner_group(group, flats))
            self._flats.append(flats)
            self.param_groups.append(_with_params(self.optimizer.param_groups[-1], new))
            self._params.extend(new)
            self._consolidated = None

    def _group_problem(self, group: dict[str, Any]) -> str | None:
        """What the shard's optimizer would refuse in a new ``group`` (None if nothing), found
        before any collective so that every rank refuses alike."""
        if not group["params"]:
            return "param_group has no params"
        unknown = set(group) - set(self.optimizer.defaults) - {"params"}
        if unknown:
            return f"param_group has unknown options: {sorted(unknown)}"
        hyper = {**self.optimizer.defaults, **{k: v for k, v in group.items() if k != "params"}}
        try:
            self.optimizer.validate_group(hyper)
            _check_elementwise(self.optimizer, hyper, group["params"])
        except (TypeError, ValueError) as exc:
            return str(exc)
        return None

    # ----- stepping -------------------------------------------------------------------------
    def step(
        self,
        grads: Sequence[np.ndarray | None] | Module | None = None,
        num_samples: int | None = None,
    ) -> None:
        """Reduce-scatter the gradients, update this rank's shard, gather the parameters.

        Parameters and errors as :meth:`DistributedOptimizer.step
        <ferroptim.distributed.DistributedOptimizer.step>` (collective; a refusal raises on
        every rank before any gradient moves, and changes nothing).
        """
        with self._lock:
            self._step(grads, num_samples)

    def _step(self, grads: Any, num_samples: int | None) -> None:
        grads, problem = check_grads(self, self._params, grads)
        problem = problem or check_num_samples(num_samples)
        present = np.array([problem is None and g is not None for g in grads], dtype=bool)
        agreed = agree_on_step(self.comm, len(self._params), problem, present, num_samples)
        size = self.comm.Get_size()
        total = agreed.total_samples
        weight = 1.0 / size if total is None or num_samples is None else num_samples / total
        t0 = time.perf_counter()
        for flats in self._flats:
            for flat in flats:
                flat.pack([grads[i] for i in flat.indices], weight)
                flat.reduce(self.comm)
        t1 = time.perf_counter()
        self._consolidated = None
        shard_grads = self._shard_grads(agreed.present)
        scale = self._scale_or_skip(shard_grads)
        if scale is None:
            self.skipped_steps += 1
            self.last_step_skipped = True
            self.last_timings = {
                "reduce_scatter": t1 - t0,
                "kernel": time.perf_counter() - t1,
                "allgather": 0.0,
                "kernel_cpu": 0.0,
            }
            return
        self._sync_hyperparameters()
        self.optimizer.clip_value = self._clip_value
        self.optimizer._grad_scale = scale
        cpu = time.thread_time()
        self.optimizer.step(shard_grads)
        cpu = time.thread_time() - cpu
        t2 = time.perf_counter()
        for flats in self._flats:
            for flat in flats:
                flat.gather(self.comm)
        self.last_step_skipped = False
        self.last_timings = {
            "reduce_scatter": t1 - t0,
            "kernel": t2 - t1,
            "allgather": time.perf_counter() - t2,
            "kernel_cpu": cpu,
        }

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients the live modules hold for these parameters (``Optimizer.zero_grad``;
        ``set_to_none`` is accepted and ignored)."""
        zero_live_gradients(self)

    def _shard_grads(self, present: np.ndarray) -> list[np.ndarray | None]:
        """The inner optimizer's gradients: this rank's reduced segments (None where no rank had
        a gradient for the parameter), padding last in each flat."""
        out: list[np.ndarray | None] = []
        for flats in self._flats:
            for flat in flats:
                views = flat.grad_views()
                for k, segment in enumerate(flat.segments):
                    out.append(views[k] if present[segment.index] else None)
                out += views[len(flat.segments) :]
        return out

    def _scale_or_skip(self, shard_grads: list[np.ndarray | None]) -> float | None:
        """The clipping factor for this step (1.0 without ``max_grad_norm``), or None to skip it;
        the same on every rank: one allreduce of ``[sum of squares, non-finite count]``."""
        max_norm, clip_value = self._max_grad_norm, self._clip_value
        if max_norm is None and not self._skip_nonfinite:
            self.last_grad_norm = None
            return 1.0
        backend = self.optimizer.backend
        local = np.zeros(2, dtype=np.float64)
        live = [g for g in shard_grads if g is not None]
        if live and max_norm is not None:
            local[0] = clip.global_norm(live, 2.0, clip_value, backend=backend) ** 2
        if live and (self._skip_nonfinite and (max_norm is None or clip_value is not None)):
            local[1] = not math.isfinite(clip.global_norm(live, math.inf, backend=backend))
        allreduce_sum(self.comm, local)
        if max_norm is None:
            self.last_grad_norm = None
            return None if local[1] else 1.0
        total = math.sqrt(local[0]) if local[0] >= 0 else math.nan
        self.last_grad_norm = total
        if not math.isfinite(total) or local[1]:
            return None
        coef = max_norm / (total + 1e-6)  # torch's clip coefficient
        return 1.0 if coef > 1.0 else coef

    def _sync_hyperparameters(self) -> None:
        """Carry hyperparameter changes (schedulers write ``param_groups``) to the shard's
        optimizer."""
        for mine, inner in zip(self.param_groups, self.optimizer.param_groups, strict=True):
            for key, value in mine.items():
                if key != "params":
                    inner[key] = value

    # ----- state ----------------------------------------------------------------------------
    def state_nbytes(self) -> int:
        """Bytes of optimizer state arrays this rank holds (its shard's)."""
        return sum(
            a.nbytes
            for state in self.optimizer._group_states
            for arrays in state.arrays.values()
            for a in arrays
        )

    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gather the full single-process state on rank ``to`` (collective; arrays move by
        buffer-based ``Gather``, no pickling). Then :meth:`state_dict` on that rank returns it,
        until the next step or load."""
        with self._lock:
            self._sync_hyperparameters()
            self._consolidated = zero_state.consolidate(self, to)

    def state_dict(self) -> dict[str, Any]:
        """After :meth:`consolidate_state_dict`, on the rank it gathered to: the state of the
        single-process ``optimizer_class`` on these parameters, in exactly its format. Elsewhere
        (or before): this rank's shard only (``{"zero_shard": ...}``), which only the same rank
        at the same world size can load (what :func:`ferroptim.load` keeps as a backup)."""
        if self._consolidated is not None:
            return self._consolidated
        return zero_state.shard_state(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a single-process state_dict (from one process, or consolidated at any world size)
        on every rank: each rank keeps its shard's part. Checked in full first (as the
        single-process optimizer checks it); on error nothing changes. Not collective."""
        with self._lock:
            zero_state.load(self, state_dict)
            self._consolidated = None

    def __repr__(self) -> str:
        return (
            f"ZeroRedundancyOptimizer(ranks={self.comm.Get_size()}, "
            f"optimizer_class={self.optimizer_class.__name__})\n{self.optimizer!r}"
        )


def _listed(group: dict[str, Any]) -> dict[str, Any]:
    """``group`` with its ``params`` as a list (one array alone becomes a list of one)."""
    params = group.get("params")
    if not isinstance(params, list | tuple | np.ndarray):
        raise TypeError("param_group must be a dict with a 'params' list")
    group["params"] = [params] if isinstance(params, np.ndarray) else list(params)
    return group


def _inner_group(group: dict[str, Any], flats: list[FlatShard]) -> dict[str, Any]:
    """The shard optimizer's group for a user's ``group``: its options, this rank's views."""
    return _with_params(group, [v for flat in flats for v in flat.param_views()])


def _with_params(group: dict[str, Any], params: list[np.ndarray]) -> dict[str, Any]:
    return {**{k: v for k, v in group.items() if k != "params"}, "params": params}


def _check_elementwise(inner: Optimizer, group: dict[str, Any], params: list[np.ndarray]) -> None:
    """Refuse an optimizer whose state is not one value per parameter element (8-bit blockwise
    state keeps per-block scales): a shard boundary would cut its blocks. Same answer on every
    rank (it depends on the class, options and shapes only)."""
    for name in inner.active_states(group):
        for p in params:
            try:
                shape = inner.saved_state_layout(name, p)[0]
            except (KeyError, ValueError, TypeError):
                shape = None
            if shape != p.shape:
                raise ValueError(
                    f"ZeroRedundancyOptimizer shards optimizer state element by element, but "
                    f"{type(inner).__name__}'s {name!r} state of a parameter of shape "
                    f"{p.shape} has shape {shape}; use DistributedOptimizer for it"
                )
