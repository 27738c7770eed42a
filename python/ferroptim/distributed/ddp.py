"""Data-parallel optimizer: the gradients of every rank averaged with bucketed, non-blocking
allreduces, then the wrapped optimizer's usual fused step on every rank (Horovod / PyTorch DDP).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ferroptim.distributed._comm import mpi, resolve
from ferroptim.distributed._delegate import forwarded
from ferroptim.distributed._signature import (
    check_grads,
    check_num_samples,
    check_same_params,
    start_agreement,
)
from ferroptim.distributed.buckets import GradientBuckets
from ferroptim.nn.module import Module
from ferroptim.optim.optimizer import Optimizer


class DistributedOptimizer:
    """Wrap ``optimizer`` so that each ``step`` uses the gradient averaged over all ranks.

    ``step(grads)`` packs this rank's gradients into one buffer per dtype (buckets of about
    ``bucket_cap_mb``, in parameter order), starts one ``Iallreduce(IN_PLACE, SUM)`` per bucket,
    waits, and runs the wrapped optimizer's step on the reduced buffers. Every rank then applies
    the same update, so replicas that start equal (:func:`broadcast_parameters`) stay equal.

    The reduced gradient is ``sum_r w_r * g_r`` with ``w_r = 1/N`` (``average=True``), or, when
    ``num_samples`` is given, ``w_r = n_r / sum_r n_r``: ranks holding uneven slices of a global
    batch (the last batch of an epoch) still give the mean over the global batch. With
    ``average=False`` the gradients are summed (``w_r = 1``).

    Parameters
    ----------
    optimizer : ferroptim.optim.Optimizer
        Built on this rank's (equal) model parameters; its clipping (``max_grad_norm``,
        ``clip_value``) and ``skip_nonfinite`` act on the reduced gradient, so a nan on one rank
        makes every rank skip the step.
    comm : mpi4py.MPI.Comm, optional
        Default: :func:`ferroptim.distributed.init`'s communicator.
    bucket_cap_mb : float, default 25
        Approximate bucket size in MiB (whole parameters per bucket).
    average : bool, default True

    Notes
    -----
    Construction is collective: it checks that every rank has the same number, shapes and dtypes
    of parameters and raises the same ValueError on every rank otherwise. ``step`` is collective
    (outside :meth:`no_sync`). ``param_groups``, ``state_dict``, ``load_state_dict``,
    ``add_param_group`` (collective here), ``max_grad_norm`` and the other options are the
    wrapped optimizer's, so learning-rate schedulers work on this object unchanged.
    """

    #: fit's marker of an optimizer that averages gradients over ``self.comm``'s ranks
    is_distributed = True
    max_grad_norm = forwarded("max_grad_norm", "The wrapped optimizer's ``max_grad_norm``.")
    clip_value = forwarded("clip_value", "The wrapped optimizer's ``clip_value``.")
    skip_nonfinite = forwarded("skip_nonfinite", "The wrapped optimizer's ``skip_nonfinite``.")
    skipped_steps = forwarded("skipped_steps", "Steps skipped by the wrapped optimizer.")

    def __init__(
        self,
        optimizer: Optimizer,
        comm: Any = None,
        bucket_cap_mb: float = 25,
        average: bool = True,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a ferroptim.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, int | float):
            raise TypeError(f"bucket_cap_mb must be a number, got {type(bucket_cap_mb).__name__}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be > 0, got {bucket_cap_mb}")
        if not isinstance(average, bool):
            raise TypeError(f"average must be a bool, got {type(average).__name__}")
        self.optimizer = optimizer
        self.comm = resolve(comm)
        self.bucket_cap_mb = bucket_cap_mb
        self.average = average
        self._no_sync = False
        self._accumulated = False
        self._build()

    def _build(self) -> None:
        """Check the ranks agree on the parameters (collective) and lay out the buckets."""
        groups = [group["params"] for group in self.optimizer.param_groups]
        check_same_params(self.comm, groups, "DistributedOptimizer")
        self._params = [p for params in groups for p in params]
        self._buckets = GradientBuckets(self._params, int(self.bucket_cap_mb * 2**20))
        self._present = np.zeros(len(self._params), dtype=bool)
        self._samples: int | None = None

    # ----- delegation ----------------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    @property
    def state(self) -> dict[int, dict[str, Any]]:
        return self.optimizer.state

    @property
    def last_grad_norm(self) -> float | None:
        return self.optimizer.last_grad_norm

    @property
    def last_step_skipped(self) -> bool:
        return self.optimizer.last_step_skipped

    def __getattr__(self, name: str) -> Any:
        """Any other public attribute is the wrapped optimizer's (``backend``, ...)."""
        if name.startswith("_") or name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """The wrapped optimizer's ``add_param_group``, then the buckets are laid out again
        (collective: call it on every rank). Refused while :meth:`no_sync` steps are pending."""
        if self._accumulated:
            raise RuntimeError(
                "add_param_group: gradients accumulated under no_sync() are pending; step "
                "outside no_sync() first"
            )
        self.optimizer.add_param_group(param_group)
        self._build()

    @property
    def bucket_sizes(self) -> list[int]:
        """Bytes of each bucket, in the order they are reduced."""
        return [bucket.nbytes for bucket in self._buckets.buckets]

    # ----- stepping ------------------------------------------------------------------------
    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Steps inside only add this rank's gradients to its buckets (no communication, no
        update); the first step after the block reduces everything accumulated and updates.
        Without ``num_samples`` the accumulated gradients are summed over the steps and averaged
        over ranks (torch DDP's gradient accumulation); with it, every step's gradient is
        weighted by its sample count, giving the mean over every sample of every step."""
        previous, self._no_sync = self._no_sync, True
        try:
            yield
        finally:
            self._no_sync = previous

    def step(
        self,
        grads: Sequence[np.ndarray | None] | Module | None = None,
        num_samples: int | None = None,
    ) -> None:
        """Average ``grads`` over the ranks, then take the wrapped optimizer's step.

        Parameters
        ----------
        grads : Module, sequence of numpy.ndarray or None, or None
            This rank's gradients, one per parameter in ``param_groups`` order (only read); or
            a model, whose gradient for each parameter array is taken by identity; omitted: the
            live modules holding the parameters (as ``Optimizer.step``). A None entry counts as
            zeros here; a parameter None on every rank is skipped.
        num_samples : int, optional
            How many samples this rank's gradient averages over: the ranks' gradients are then
            weighted by ``num_samples / total`` (give it on every rank or on none).

        Raises
        ------
        ValueError, TypeError
            On every rank, before any gradient moves, when a rank's gradients do not match its
            parameters (length, shape, dtype) or the ranks disagree on ``num_samples``;
            nothing is modified then.
        """
        reduced = self.allreduce_gradients(grads, num_samples)
        if reduced is not None:
            self.optimizer.step(reduced)

    def allreduce_gradients(
        self,
        grads: Sequence[np.ndarray | None] | Module | None = None,
        num_samples: int | None = None,
    ) -> list[np.ndarray | None] | None:
        """What :meth:`step` does before the wrapped optimizer's step: the weighted sum of every
        rank's ``grads`` (arguments and errors as :meth:`step`), returned as views of the bucket
        buffers, valid until the next call (None for a parameter no rank has a gradient for).
        Inside :meth:`no_sync` it only accumulates and returns None."""
        grads, problem = check_grads(self.optimizer, self._params, grads)
        problem = problem or check_num_samples(num_samples)
        if (
            problem is None
            and self._accumulated
            and (num_samples is None) != (self._samples is None)
        ):
            problem = "num_samples must be given on every accumulated step or on none"
        if self._no_sync:
            if problem is not None:
                raise ValueError(problem)
            self._accumulate(grads, num_samples)
            return None
        present = self._present.copy()
        if problem is None:
            present |= np.array([g is not None for g in grads], dtype=bool)
        samples = num_samples
        if self._accumulated and num_samples is not None and self._samples is not None:
            samples = self._samples + num_samples
        pending = start_agreement(self.comm, len(self._params), problem, present, samples)
        # While the agreement is in flight, pack the first bucket when its weight is already
        # known (1/N: no num_samples): the packing hides the agreement's synchronization. The
        # buckets are scratch here (nothing accumulated), so a refusal leaves nothing changed.
        early = (
            problem is None
            and num_samples is None
            and not self._accumulated
            and self.comm.Get_size() > 1
        )
        if early:
            self._buckets.pack_bucket(0, grads, self._weight(None), pending.test)
        agreed = pending.finish()
        weight = self._weight(agreed.total_samples)
        if self._accumulated:
            self._accumulate(grads, num_samples)
            self._buckets.scale(weight)
            requests = self._buckets.start_sum(self.comm)
        elif self.comm.Get_size() == 1 and weight * self._count(num_samples) == 1.0:
            return [g if has else None for g, has in zip(grads, agreed.present, strict=True)]
        else:
            scale = weight * self._count(num_samples)
            requests = self._buckets.pack_and_start_sum(
                self.comm, grads, scale, packed=1 if early else 0
            )
        mpi().Request.Waitall(requests)
        self._accumulated = False
        self._present[:] = False
        self._samples = None
        return self._buckets.gradients(agreed.present)

    def _weight(self, total_samples: float | None) -> float:
        """The factor on this rank's (sample-count-weighted) gradient sum."""
        if not self.average:
            return 1.0
        if total_samples is None:
            return 1.0 / self.comm.Get_size()
        return 1.0 / total_samples

    def _count(self, num_samples: int | None) -> float:
        """The weight of this rank's gradient before the common factor: its sample count
        (averaging with ``num_samples``), else 1."""
        return 1.0 if num_samples is None or not self.average else float(num_samples)

    def _accumulate(self, grads: list, num_samples: int | None) -> None:
        self._buckets.pack(grads, self._count(num_samples), accumulate=self._accumulated)
        self._present |= np.array([g is not None for g in grads], dtype=bool)
        if num_samples is not None:
            self._samples = (self._samples or 0) + num_samples
        self._accumulated = True

    def __repr__(self) -> str:
        return (
            f"DistributedOptimizer(ranks={self.comm.Get_size()}, buckets={len(self.bucket_sizes)},"
            f" average={self.average})\n{self.optimizer!r}"
        )
