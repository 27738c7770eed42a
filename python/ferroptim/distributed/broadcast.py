"""Start every rank from the same place: parameters (and a model's buffers) and optimizer state
copied from one rank to all, in place, by buffer-based ``Bcast``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim.distributed._collectives import bcast_array
from ferroptim.distributed._comm import resolve
from ferroptim.distributed._signature import check_same_params


def broadcast_parameters(params_or_model: Any, root: int = 0, comm: Any = None) -> None:
    """Overwrite, on every rank, each array of ``params_or_model`` with ``root``'s (in place).

    Parameters
    ----------
    params_or_model : list of numpy.ndarray, or a model
        Arrays, or an object with ``parameters()`` (and ``named_buffers()``, e.g. batch-norm running
        statistics, which are broadcast too). Every array must be C-contiguous.
    root : int, default 0
    comm : mpi4py.MPI.Comm, optional

    Raises
    ------
    ValueError
        On every rank, naming the first difference, when the ranks' arrays differ in number,
        shape or dtype (checked before anything is written).
    """
    comm = resolve(comm)
    _check_root(comm, root)
    arrays = _arrays(params_or_model)
    check_same_params(comm, [arrays], "broadcast_parameters")
    for array in arrays:
        bcast_array(comm, array, root)


def broadcast_optimizer_state(optimizer: Any, root: int = 0, comm: Any = None) -> None:
    """Give every rank ``root``'s optimizer state: hyperparameters of every group, step counts and
    state arrays (created where a rank has none yet), ``skipped_steps``; arrays by ``Bcast``,
    the small rest by ``bcast`` of plain numbers.

    ``optimizer`` is a :class:`~ferroptim.optim.Optimizer` or a
    :class:`~ferroptim.distributed.DistributedOptimizer` (its wrapped optimizer's state).
    Collective; the ranks' parameters must match (checked as in :func:`broadcast_parameters`).
    """
    comm = resolve(comm)
    _check_root(comm, root)
    from ferroptim.distributed.zero import ZeroRedundancyOptimizer

    if isinstance(optimizer, ZeroRedundancyOptimizer):
        raise TypeError(
            "a ZeroRedundancyOptimizer's state is sharded: consolidate_state_dict(to=root) and "
            "load_state_dict() the result on every rank instead"
        )
    inner = getattr(optimizer, "optimizer", optimizer)
    if not callable(getattr(inner, "state_dict", None)) or not hasattr(inner, "param_groups"):
        raise TypeError(f"optimizer must be a ferroptim optimizer, got {type(optimizer).__name__}")
    check_same_params(comm, [g["params"] for g in inner.param_groups], "broadcast_optimizer_state")
    mine = inner.state_dict()
    layout = None
    if comm.Get_rank() == root:
        layout = _layout(mine)
    layout = comm.bcast(layout, root=root)  # numbers, names, shapes and dtypes: no arrays
    state = {}
    for index, (scalars, arrays) in layout["state"].items():
        entry = dict(scalars)
        for name, (shape, dtype) in arrays.items():
            if comm.Get_rank() == root:
                array = np.ascontiguousarray(mine["state"][index][name])
            else:
                array = np.empty(shape, dtype=dtype)
            bcast_array(comm, array, root)
            entry[name] = array
        state[index] = entry
    inner.load_state_dict({**layout["rest"], "state": state})


def _layout(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Everything of ``state_dict`` but its arrays, which are described by shape and dtype."""
    state = {}
    for index, entry in state_dict["state"].items():
        scalars = {k: v for k, v in entry.items() if not isinstance(v, np.ndarray)}
        arrays = {k: (v.shape, v.dtype.str) for k, v in entry.items() if isinstance(v, np.ndarray)}
        state[index] = (scalars, arrays)
    rest = {k: v for k, v in state_dict.items() if k != "state"}
    return {"state": state, "rest": rest}


def _arrays(params_or_model: Any) -> list[np.ndarray]:
    if callable(getattr(params_or_model, "parameters", None)):
        arrays = list(params_or_model.parameters())
        named_buffers = getattr(params_or_model, "named_buffers", None)
        if callable(named_buffers):
            arrays += [array for _, array in named_buffers()]
    elif isinstance(params_or_model, np.ndarray):
        raise TypeError("expected a list of arrays or a model, got a single numpy.ndarray")
    else:
        arrays = list(params_or_model)
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"params[{i}] must be a numpy.ndarray, got {type(a).__name__}")
        if not (a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"params[{i}] must be a writeable C-contiguous array")
    return arrays


def _check_root(comm: Any, root: Any) -> None:
    size = comm.Get_size()
    if isinstance(root, bool) or not isinstance(root, int | np.integer) or not 0 <= root < size:
        raise ValueError(f"root must be a rank in [0, {size}), got {root!r}")
