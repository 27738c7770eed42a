"""One parameter group's kernel call, prepared once and reused while nothing it reads changed.

A small step (a few tensors of a few thousand elements) costs a few microseconds in the native
kernel, so the Python around it must cost well under one: validating the group's options, building
the state lists and the keyword dict at every step would double the time of a small MLP's step.
:class:`CallPlan` keeps the result of that work for a group; :meth:`CallPlan.matches` decides in
one pass of identity comparisons whether it still holds, so a change to ``param_groups[i][name]``
(a scheduler's new ``lr``, a flag switched on) is validated at the next step, as before.

With the native backend the kernel call itself is prepared once too
(``ferroptim._native.prepare_step``): the hyperparameters are parsed once, and a step re-checks
the group's arrays by comparing what the checks read last time (object, data address, dtype,
flags, shape) and checks only the gradients in full; the prepared call also repeats this
plan's identity checks natively, so an unchanged single-group step runs
``Optimizer.step`` -> one native call.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["CallPlan", "values_getter"]


def values_getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple]:
    """A function reading the values of ``names`` from a group as one tuple (``KeyError`` when
    one is missing); one C call (``operator.itemgetter``)."""
    getter = operator.itemgetter(*names)
    if len(names) == 1:
        return lambda group: (getter(group),)
    return getter


class CallPlan:
    """What one group's kernel call needs, derived from the group's hyperparameter values.

    Attributes
    ----------
    read_values : callable
        Reads a group's hyperparameter values as a tuple (:func:`values_getter`).
    values : tuple
        The group's hyperparameter values (the user's objects) the plan was built from.
    hyper : dict
        The validated, normalized copy of the group (``params`` is the state's own list of
        the parameters the state belongs to).
    arrays : dict
        The state's ``arrays`` dict the lists were taken from (a load replaces it).
    lists : tuple or None
        The kernel's positional arguments after ``params`` and ``grads``: the state lists
        (None for one the options do not use), the per-tensor scalars and the step counts; set
        by the first call (``Optimizer.run_kernel``; None until then).
    kwargs : dict
        The kernel's keyword arguments, set with ``lists``; ``grad_scale`` and ``clip_value``
        are written before each call.
    prepared : ferroptim._native.PreparedStep or None
        The native kernel call prepared from ``lists`` and ``kwargs`` (native backend only; set
        with them).
    previous : ferroptim._native.PreparedStep or None
        The prepared call of the plan this one replaced, until this one's is prepared (it hands
        over its array checks when the arrays are the same, e.g. after a scheduler's ``lr``).
    """

    __slots__ = (
        "arrays",
        "hyper",
        "kwargs",
        "lists",
        "prepared",
        "previous",
        "read_values",
        "values",
    )

    def __init__(
        self,
        read_values: Callable[[Mapping[str, Any]], tuple],
        values: tuple,
        hyper: dict[str, Any],
        arrays: dict[str, list[np.ndarray]],
        previous: Any = None,
    ) -> None:
        self.previous = previous
        self.read_values = read_values
        self.values = values
        self.hyper = hyper
        self.arrays = arrays
        self.lists: tuple | None = None
        self.kwargs: dict[str, Any] = {}
        self.prepared: Any = None

    def watched(self, names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
        """``(name, value)`` of every hyperparameter value the plan was built from (``names``:
        the names ``read_values`` reads, in order), for the prepared call's identity checks."""
        return tuple(zip(names, self.values, strict=True))

    def holds(self, group: Mapping[str, Any], arrays: dict[str, list[np.ndarray]]) -> bool:
        """Whether the plan still holds for ``group`` and its state's ``arrays``: the group's
        ``params`` are the very arrays of the plan's (in order), each hyperparameter value is
        the very object validated (an identity cannot be reused while the plan keeps the object
        alive), and the state dict is the same. A few identity comparisons, no allocation."""
        params = group["params"]
        own = self.hyper["params"]
        if arrays is not self.arrays or len(params) != len(own):
            return False
        try:
            values = self.read_values(group)
        except KeyError:  # a hyperparameter was deleted: a new plan's validation names it
            return False
        return all(map(operator.is_, values, self.values)) and all(map(operator.is_, params, own))
