"""Finite-difference gradient checks for modules and losses.

:func:`gradcheck` compares what ``module.backward(dy)`` returns (d/d input) and accumulates (every
parameter gradient) with central differences of the scalar

.. math::  f(x, \\theta) = \\sum_i \\mathrm{forward}(x; \\theta)_i \\, dy_i ,

.. math::  \\frac{\\partial f}{\\partial z_k} \\approx
           \\frac{f(z + \\varepsilon e_k) - f(z - \\varepsilon e_k)}{2 \\varepsilon}

for every element ``z_k`` of the input and of each parameter. :func:`gradcheck_loss` does the
same for a loss object (``loss(input, target)`` then ``loss.backward()``). Both return a
:class:`GradcheckReport` (max absolute and relative error per tensor name) and raise
:class:`GradcheckError` instead when asked to.

Use float64 modules: with ``eps=1e-6`` the truncation error of a central difference is
~``eps**2`` and the rounding error ~``1e-16 / eps``, so float64 gradients agree to ~1e-9; in
float32 rounding alone is ~0.1 and the check is meaningless (it is refused).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferroptim.nn._checks import as_numeric
from ferroptim.nn.module import Module

__all__ = ["GradcheckError", "GradcheckReport", "TensorReport", "gradcheck", "gradcheck_loss"]

INPUT = "input"


@dataclass(frozen=True)
class TensorReport:
    """The comparison for one tensor (``"input"`` or a parameter name such as ``"0.weight"``).

    Attributes
    ----------
    name, shape : the tensor compared.
    checked : number of elements perturbed (all of them unless ``max_checks`` sampled fewer).
    max_abs_error : ``max |analytic - numeric|`` over the checked elements.
    max_rel_error : ``max |analytic - numeric| / max(|analytic|, |numeric|)`` (0 where both are 0).
    worst_index : multi-index of the element with the largest ``|analytic - numeric|``.
    passed : every checked element satisfies ``|analytic - numeric| <= atol + rtol * |numeric|``.
    analytic, numeric : the two gradients (``numeric`` is NaN at elements not checked).
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...]
    passed: bool
    analytic: np.ndarray = field(repr=False)
    numeric: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class GradcheckReport:
    """Per-tensor results of a gradient check; truthy when every tensor passed.

    ``str(report)`` is a table; :meth:`raise_if_failed` raises :class:`GradcheckError`.
    """

    tensors: tuple[TensorReport, ...]
    eps: float
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tensors)

    @property
    def failures(self) -> tuple[TensorReport, ...]:
        return tuple(t for t in self.tensors if not t.passed)

    def __bool__(self) -> bool:
        return self.passed

    def __getitem__(self, name: str) -> TensorReport:
        for tensor in self.tensors:
            if tensor.name == name:
                return tensor
        raise KeyError(f"no tensor named {name!r}; checked: {[t.name for t in self.tensors]}")

    def __str__(self) -> str:
        width = max([len(t.name) for t in self.tensors] + [6])
        lines = [
            f"gradcheck (eps={self.eps:g}, atol={self.atol:g}, rtol={self.rtol:g}): "
            + ("passed" if self.passed else f"FAILED for {[t.name for t in self.failures]}"),
            f"  {'tensor':<{width}}  {'checked':>7}  {'max abs err':>11}  {'max rel err':>11}  "
            "worst index",
        ]
        for t in self.tensors:
            flag = "" if t.passed else "  <-- FAILED"
            lines.append(
                f"  {t.name:<{width}}  {t.checked:>7}  {t.max_abs_error:>11.3e}  "
                f"{t.max_rel_error:>11.3e}  {t.worst_index}{flag}"
            )
        return "\n".join(lines)

    def raise_if_failed(self) -> GradcheckReport:
        """Raise :class:`GradcheckError` (with this report) if any tensor failed; else ``self``."""
        if not self.passed:
            raise GradcheckError(self)
        return self


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with finite differences; ``.report`` has the details."""

    def __init__(self, report: GradcheckReport) -> None:
        super().__init__(str(report))
        self.report = report


# --- argument checks --------------------------------------------------------------------------
def _check_tolerances(eps: Any, atol: Any, rtol: Any, max_checks: Any) -> None:
    for name, value, positive in (("eps", eps, True), ("atol", atol, False), ("rtol", rtol, False)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise TypeError(f"gradcheck: {name} must be a float, got {value!r}")
        if not np.isfinite(value) or value < 0 or (positive and value == 0):
            kind = "positive" if positive else "non-negative"
            raise ValueError(f"gradcheck: {name} must be a finite {kind} float, got {value}")
    if max_checks is not None:
        if isinstance(max_checks, bool) or not isinstance(max_checks, (int, np.integer)):
            raise TypeError(f"gradcheck: max_checks must be None or an int, got {max_checks!r}")
        if max_checks <= 0:
            raise ValueError(f"gradcheck: max_checks must be positive, got {max_checks}")


def _as_array(value: Any, name: str) -> np.ndarray:
    return as_numeric(value, name, "gradcheck")


def _as_float64_output(value: Any, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype != np.float64:
        raise TypeError(
            f"gradcheck: {what} returned dtype {array.dtype}; gradient checks need float64 "
            "(build the module or loss with dtype=np.float64)"
        )
    return array


def _upstream(dy: Any, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """``dy`` as float64 of ``shape``; random normal by default (all-ones would hide bugs whose
    gradients sum to zero, e.g. softmax)."""
    if dy is None:
        return np.random.default_rng(seed).standard_normal(shape)
    array = _as_array(dy, "dy").astype(np.float64)
    if array.shape != shape:
        raise ValueError(f"gradcheck: dy has shape {array.shape} but the output has shape {shape}")
    return array


# --- the finite-difference core ------------------------------------------------------------------
def _sampled(size: int, max_checks: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_checks is None or max_checks >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, max_checks, replace=False))


def _compare(
    name: str,
    array: np.ndarray,
    analytic: np.ndarray,
    evaluate: Callable[[], np.ndarray],
    dy: np.ndarray,
    indices: np.ndarray,
    eps: float,
    atol: float,
    rtol: float,
) -> TensorReport:
    """Perturb ``array.flat[k]`` for ``k`` in ``indices`` (restoring each exactly) and compare
    the central difference of ``sum(evaluate() * dy)`` with ``analytic``."""
    if analytic.shape != array.shape:
        raise ValueError(
            f"gradcheck: the analytic gradient of {name!r} has shape {analytic.shape}, "
            f"expected {array.shape}"
        )
    numeric = np.full(array.shape, np.nan)
    flat_numeric = numeric.reshape(-1)
    flat_dy = dy.reshape(-1)
    for k in indices:
        original = array.flat[k]
        array.flat[k] = original + eps
        plus = np.array(evaluate(), dtype=np.float64, copy=True)
        array.flat[k] = original - eps
        minus = np.asarray(evaluate(), dtype=np.float64)
        array.flat[k] = original
        # Differencing the outputs before weighting keeps the cancellation elementwise.
        flat_numeric[k] = np.dot((plus - minus).reshape(-1), flat_dy) / (2.0 * eps)
    a = analytic.reshape(-1)[indices]
    n = flat_numeric[indices]
    error = np.abs(a - n)
    if error.size == 0:
        return TensorReport(name, array.shape, 0, 0.0, 0.0, (), True, analytic, numeric)
    scale = np.maximum(np.abs(a), np.abs(n))
    relative = np.divide(error, scale, out=np.zeros_like(error), where=scale > 0)
    worst = int(np.argmax(np.where(np.isnan(error), np.inf, error)))
    worst_index = tuple(int(i) for i in np.unravel_index(indices[worst], array.shape))
    passed = bool(np.all(error <= atol + rtol * np.abs(n)))  # NaN compares False
    return TensorReport(
        name,
        tuple(array.shape),
        int(indices.size),
        float(np.max(error)),
        float(np.max(relative)),
        worst_index,
        passed,
        analytic,
        numeric,
    )


@contextmanager
def _restored_state(module: Module) -> Iterator[None]:
    """Restore every parameter, buffer and random-generator state of ``module`` on exit."""
    params = [(array, array.copy()) for _, array in module.named_parameters()]
    buffers = [(array, array.copy()) for _, array in module.named_buffers()]
    rng_state = module.rng_state()
    try:
        yield
    finally:
        for array, saved in params + buffers:
            np.copyto(array, saved)
        module.set_rng_state(rng_state)


def gradcheck(
    module: Module,
    x: Any,
    dy: Any = None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
    max_checks: int | None = None,
    raise_on_failure: bool = False,
) -> GradcheckReport:
    """Check ``module.backward`` against central finite differences.

    The checked function is :math:`f = \\sum_i y_i\\,dy_i` with ``y = module.forward(x)``. The
    analytic pass zeroes the module's gradients, runs ``forward(x)`` and ``backward(dy)``: the
    returned array is compared with :math:`\\partial f/\\partial x` and each gradient of
    ``named_gradients()`` (frozen parameters are skipped) with :math:`\\partial f/\\partial
    \\theta`. The numeric pass perturbs one element at a time by ``±eps`` **in place** and
    restores it exactly.

    Parameters
    ----------
    module : Module
        A float64 module (parameters and output must be float64, else ``TypeError``).
    x : array_like
        The input. Floating inputs are converted to float64 and checked; integer inputs (class
        indices, e.g. for an embedding) are passed unchanged and only parameters are checked.
        ``x`` itself is never modified.
    dy : array_like, optional
        The upstream gradient, shaped like the output. Default: standard normal drawn with
        ``seed`` (random rather than ones, which would hide errors that sum to zero).
    eps, atol, rtol : float
        Step and tolerances. An element passes when
        ``|analytic - numeric| <= atol + rtol * |numeric|``.
    seed : int
        Seeds ``dy`` and the element sample of ``max_checks``.
    max_checks : int, optional
        Perturb at most this many randomly chosen elements per tensor (default: all of them;
        the cost is two forward passes per element).
    raise_on_failure : bool
        Raise :class:`GradcheckError` (an ``AssertionError`` carrying the report) on failure.

    Returns
    -------
    GradcheckReport
        One :class:`TensorReport` per tensor: ``"input"`` first, then parameters by name.

    Notes
    -----
    ``module.training`` is left as the caller set it. Every random generator registered as
    ``module.rng`` is rewound before each forward pass, so dropout draws the same mask in every
    evaluation; a forward pass that still gives different outputs for the same input raises
    ``RuntimeError``. Parameters, buffers (e.g. batch-norm running statistics) and generator
    states are restored on return; the gradient arrays hold the analytic pass's values.
    """
    if not isinstance(module, Module):
        raise TypeError(f"gradcheck: module must be a Module, got {type(module).__name__}")
    _check_tolerances(eps, atol, rtol, max_checks)
    for name, array in module.named_parameters():
        if array.dtype != np.float64:
            raise TypeError(
                f"gradcheck: parameter {name!r} is {array.dtype}; gradient checks need float64 "
                "(build the module with dtype=np.float64)"
            )
    x_in = _as_array(x, "x")
    check_input = x_in.dtype.kind == "f"
    x_work = x_in.astype(np.float64) if check_input else x_in.copy()
    rng = np.random.default_rng(seed)

    with _restored_state(module):
        start_rng = module.rng_state()

        def evaluate() -> np.ndarray:
            module.set_rng_state(start_rng)
            return _as_float64_output(module.forward(x_work.copy()), "forward")

        y = evaluate()
        if not np.array_equal(evaluate(), y, equal_nan=True):
            raise RuntimeError(
                "gradcheck: forward gives different outputs for the same input (a random "
                "generator other than module.rng?); finite differences need a deterministic "
                "forward"
            )
        upstream = _upstream(dy, y.shape, seed)
        module.zero_grad()
        evaluate()
        dx = module.backward(upstream.copy())
        analytic = {
            name: np.array(grad, dtype=np.float64, copy=True)
            for name, grad in module.named_gradients()
            if grad is not None
        }
        tensors = []
        if check_input:
            if dx is None:
                raise TypeError("gradcheck: module.backward returned None instead of d/d input")
            dx = _as_float64_output(dx, "backward")
            indices = _sampled(x_work.size, max_checks, rng)
            tensors.append(
                _compare(INPUT, x_work, dx, evaluate, upstream, indices, eps, atol, rtol)
            )
        for name, param in module.named_parameters():
            if name not in analytic:
                continue
            indices = _sampled(param.size, max_checks, rng)
            tensors.append(
                _compare(name, param, analytic[name], evaluate, upstream, indices, eps, atol, rtol)
            )
        evaluate()  # leave the forward cache matching the unperturbed input

    report = GradcheckReport(tuple(tensors), float(eps), float(atol), float(rtol))
    return report.raise_if_failed() if raise_on_failure else report


def gradcheck_loss(
    loss_fn: Any,
    input: Any,
    target: Any,
    dy: Any = None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
    max_checks: int | None = None,
    raise_on_failure: bool = False,
) -> GradcheckReport:
    """Check a loss's ``backward()`` against central finite differences in ``input``.

    ``loss_fn(input, target)`` must return a float (or, with ``reduction="none"``, an array)
    and ``loss_fn.backward()`` d loss / d input. For a float loss the checked function is the
    loss itself; for an array loss it is ``sum(loss * dy)`` and ``backward(dy)`` is called with
    the upstream gradient ``dy`` (default standard normal drawn with ``seed``).

    ``input`` is converted to float64 (never modified); ``target`` is passed unchanged and not
    differentiated. Tolerances, ``max_checks`` and the report are as in :func:`gradcheck`; the
    report has one tensor, ``"input"``.
    """
    if not callable(loss_fn) or not callable(getattr(loss_fn, "backward", None)):
        raise TypeError(
            f"gradcheck_loss: loss_fn must be callable with a backward method, "
            f"got {type(loss_fn).__name__}"
        )
    _check_tolerances(eps, atol, rtol, max_checks)
    x_work = _as_array(input, "input").astype(np.float64)

    def evaluate() -> np.ndarray:
        return _as_float64_output(loss_fn(x_work.copy(), target), "the loss")

    value = evaluate()
    elementwise = value.ndim > 0
    upstream = _upstream(dy, value.shape, seed) if elementwise else np.ones(())
    evaluate()
    grad = loss_fn.backward(upstream.copy()) if elementwise else loss_fn.backward()
    grad = _as_float64_output(grad, "backward")
    indices = _sampled(x_work.size, max_checks, np.random.default_rng(seed))
    tensor = _compare(INPUT, x_work, grad, evaluate, upstream, indices, eps, atol, rtol)
    report = GradcheckReport((tensor,), float(eps), float(atol), float(rtol))
    return report.raise_if_failed() if raise_on_failure else report
