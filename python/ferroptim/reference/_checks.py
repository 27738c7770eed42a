"""Argument checks of the reference kernels, the same rules as ``ferroptim._native``.

Every check runs before any array is written, so a refused call changes nothing. The order is the
native one: hyperparameter conversion (TypeError), hyperparameter ranges (ValueError), each
optional state list given exactly when the options use it (even with nothing to step), the lists,
then tensor by tensor its parameter, gradient and state arrays, then ``steps`` and other per-tensor
scalar arrays, then memory overlap, then step counts. Messages name the argument and, for
arrays, the list index (``grads[3] has shape (4,) but params[3] ...``).

Tensors whose gradient is ``None`` are skipped entirely: their arrays are neither checked nor
written, and their step count is left alone.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ferroptim._file_spans import file_span

__all__ = [
    "Batch",
    "StateArg",
    "Tensor",
    "check_closed_unit",
    "check_finite",
    "check_min",
    "check_unit",
    "flag",
    "gather",
    "real",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_STEP_LIMIT = np.iinfo(np.int64).max  # steps[i] + 1 must fit in an int64


# ----------------------------------------------------------------------------- hyperparameters


def real(name: str, value: object) -> float:
    """Convert a hyperparameter to a Python float as the native binding does (``__float__`` or
    ``__index__``; strings and None are refused with TypeError).

    A conversion that fails (an int too large for a float, a multi-element array) raises the same
    exception type with the argument named in the message."""
    if isinstance(value, float):
        return float(value)
    kind = type(value)
    try:
        if hasattr(kind, "__float__"):
            return float(value)  # type: ignore[arg-type]
        if hasattr(kind, "__index__"):
            return float(operator.index(value))  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError) as err:
        # the base class, not type(err): a subclass may take other constructor arguments
        base = next(c for c in (OverflowError, TypeError, ValueError) if isinstance(err, c))
        raise base(f"argument '{name}': {err}") from err
    raise TypeError(f"argument '{name}': must be real number, not {kind.__name__}")


def flag(name: str, value: object) -> bool:
    """A boolean option: ``bool`` or ``numpy.bool_`` only (an int is refused, as natively)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(
        f"argument '{name}': {type(value).__name__!r} object is not an instance of 'bool'"
    )


def _invalid(name: str, value: float, expected: str) -> ValueError:
    return ValueError(f"invalid {name}: {value} (expected {expected})")


def check_min(name: str, value: float, lo: float = 0.0) -> None:
    """``value`` must be finite and ``>= lo``."""
    if not (math.isfinite(value) and value >= lo):
        raise _invalid(name, value, f"{name} >= {lo:g}")


def clip_args(grad_scale: object, clip_value: object) -> tuple[float, float | None]:
    """The in-step clipping arguments: ``grad_scale`` any real number (NaN included, as a
    non-finite norm gives), ``clip_value`` None or finite and ``>= 0``."""
    scale = real("grad_scale", grad_scale)
    if clip_value is None:
        return scale, None
    bound = real("clip_value", clip_value)
    check_min("clip_value", bound)
    return scale, bound


def check_unit(name: str, value: float) -> None:
    """``0 <= value < 1`` (betas)."""
    if not 0.0 <= value < 1.0:
        raise _invalid(name, value, f"0 <= {name} < 1")


def check_closed_unit(name: str, value: float) -> None:
    """``0 <= value <= 1`` (Adadelta's rho)."""
    if not 0.0 <= value <= 1.0:
        raise _invalid(name, value, f"0 <= {name} <= 1")


def check_finite(name: str, value: float) -> None:
    """``value`` must be a finite number (SGD's dampening)."""
    if not math.isfinite(value):
        raise _invalid(name, value, "a finite number")


# ----------------------------------------------------------------------------- arrays


@dataclass(frozen=True)
class StateArg:
    """One state-list argument of a kernel.

    ``optional`` lists may be ``None`` (absent); ``needed`` says whether the chosen options use the
    list, which must then be given (and must be ``None`` otherwise).
    """

    name: str
    value: object
    optional: bool = False
    needed: bool = True


@dataclass
class Tensor:
    """One stepped tensor: its list index, arrays (plain ndarray views) and step ``t`` to use."""

    index: int
    param: np.ndarray
    grad: np.ndarray
    states: list[np.ndarray]
    step: int


@dataclass
class Batch:
    """Every checked tensor of one call, plus the per-tensor scalar arrays."""

    tensors: list[Tensor]
    steps: np.ndarray | None
    scalars: np.ndarray | None

    def count_steps(self) -> None:
        """Increment ``steps[i]`` of every stepped tensor (after a successful update)."""
        if self.steps is not None:
            for tensor in self.tensors:
                self.steps[tensor.index] += 1


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    written: bool
    arg: str
    index: int


def _items(arg: str, obj: object) -> list:
    """A list argument as a Python list (list, tuple or other non-array sequence)."""
    if isinstance(obj, list | tuple):
        return list(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, np.ndarray):
        return list(obj)
    raise TypeError(f"{arg} must be a list of numpy arrays, got {type(obj).__name__}")


def _shape_str(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


class ArrayChecker:
    """The native argument checks, in Python: per-array checks that name ``arg[index]``, and the
    overlap sweep over every recorded array. Also used by the optimizers to check several
    parameter groups before any is updated."""

    def __init__(self) -> None:
        self.spans: list[_Span] = []
        #: spans of file bytes of memory-mapped arrays, by (device, inode) (see _file_spans)
        self.file_spans: list[tuple[tuple[int, int], _Span]] = []

    def record(self, array: np.ndarray, written: bool, arg: str, index: int) -> None:
        if array.nbytes > 0:
            start = _address(array)
            self.spans.append(_Span(start, start + array.nbytes, written, arg, index))
            if array.base is not None:  # a view: maybe of a memory map
                mapped = file_span(array)
                if mapped is not None:
                    device, inode, first, end = mapped
                    span = _Span(first, end, written, arg, index)
                    self.file_spans.append(((device, inode), span))

    def array(
        self,
        obj: object,
        arg: str,
        index: int,
        written: bool,
        like: np.ndarray | None = None,
    ) -> np.ndarray:
        """Check one float array (against ``like``, its parameter, when given); return it as a
        plain ndarray view."""
        name = f"{arg}[{index}]"
        if not isinstance(obj, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
        if obj.dtype not in _FLOAT_DTYPES:
            raise TypeError(
                f"{name} has dtype {obj.dtype}; expected float32 or float64 in native byte order"
            )
        if like is not None:
            if obj.dtype != like.dtype:
                raise TypeError(
                    f"{name} has dtype {obj.dtype} but params[{index}] has dtype {like.dtype}"
                )
            if obj.shape != like.shape:
                raise ValueError(
                    f"{name} has shape {_shape_str(obj.shape)} but params[{index}] has shape "
                    f"{_shape_str(like.shape)}"
                )
        if not obj.flags.c_contiguous:
            raise ValueError(
                f"{name} is not C-contiguous; pass a contiguous array (np.ascontiguousarray makes "
                "a copy, which would not be updated in place)"
            )
        if obj.size > 0 and not obj.flags.aligned:
            raise ValueError(f"{name} is not aligned for its dtype")
        if written and not obj.flags.writeable:
            raise ValueError(f"{name} is read-only; it must be writeable to be updated in place")
        self.record(obj, written, arg, index)
        return np.asarray(obj)

    def scalars(self, obj: object, arg: str, n: int, dtype: type) -> np.ndarray:
        """A writeable 1-d array of ``n`` scalars (``steps``, ``mu_products``)."""
        if not isinstance(obj, np.ndarray):
            raise TypeError(f"{arg} must be a numpy.ndarray, got {type(obj).__name__}")
        if obj.dtype != np.dtype(dtype):
            raise TypeError(f"{arg} has dtype {obj.dtype}; expected {np.dtype(dtype)}")
        if obj.ndim != 1 or obj.size != n:
            raise ValueError(f"{arg} must have shape ({n},), got {_shape_str(obj.shape)}")
        flags = obj.flags
        if n > 0 and not (flags.c_contiguous and flags.aligned and flags.writeable):
            raise ValueError(f"{arg} must be a writeable, aligned, C-contiguous array")
        self.record(obj, True, arg, 0)
        return np.asarray(obj)

    def check_overlaps(self) -> None:
        """Refuse any overlap between a written array and any other array, in memory or in the
        bytes of a mapped file (the native sweep)."""
        clash = _first_clash(sorted(self.spans, key=lambda s: s.start))
        if clash is not None:
            other, cur = clash
            raise ValueError(
                f"{cur.arg}[{cur.index}] shares memory with {other.arg}[{other.index}]; "
                "every updated array must be distinct"
            )
        by_file: dict[tuple[int, int], list[_Span]] = {}
        for file, span in self.file_spans:
            by_file.setdefault(file, []).append(span)
        for spans in by_file.values():
            clash = _first_clash(sorted(spans, key=lambda s: s.start))
            if clash is not None:
                other, cur = clash
                raise ValueError(
                    f"{cur.arg}[{cur.index}] maps the same file bytes as {other.arg}"
                    f"[{other.index}] (two np.memmap of one file); every updated array must be "
                    "distinct"
                )


def _first_clash(spans: list[_Span]) -> tuple[_Span, _Span] | None:
    """The first ``(earlier, later)`` pair of spans (sorted by start) that overlap with one of
    them written."""
    furthest: _Span | None = None
    furthest_written: _Span | None = None
    for cur in spans:
        for other in (furthest, furthest_written):
            if other is not None and other.end > cur.start and (other.written or cur.written):
                return other, cur
        if furthest is None or furthest.end < cur.end:
            furthest = cur
        if cur.written and (furthest_written is None or furthest_written.end < cur.end):
            furthest_written = cur
    return None


def _check_slots(states: Sequence[StateArg]) -> None:
    """An optional list is given exactly when the options use it (checked first, before the
    lists, and whether or not any tensor is stepped, as natively)."""
    for state in states:
        if not state.optional:
            continue
        given = state.value is not None
        if state.needed and not given:
            raise ValueError(f"{state.name} is required by these options but is None")
        if given and not state.needed:
            raise ValueError(f"{state.name} must be None with these options")


def gather(
    params: object,
    grads: object,
    states: Sequence[StateArg],
    steps: object | None,
    scalars: tuple[str, object] | None = None,
    *,
    uses_steps: bool = True,
) -> Batch:
    """Check every argument of one call and return the tensors to step.

    ``steps`` is the int64 step-count array (``uses_steps=False`` for kernels without one);
    ``scalars`` is ``(name, array)`` of a float32 per-tensor scalar array (NAdam's mu_products).
    """
    _check_slots(states)
    param_list = _items("params", params)
    grad_list = _items("grads", grads)
    n = len(param_list)
    if len(grad_list) != n:
        raise ValueError(
            f"grads: got {len(grad_list)} grads for {n} params; pass one gradient (or None) per "
            "parameter"
        )
    lists: list[tuple[str, list]] = []
    for state in states:
        if state.optional and state.value is None:
            continue
        items = _items(state.name, state.value)
        if len(items) != n:
            raise ValueError(f"{state.name} has {len(items)} arrays for {n} params")
        lists.append((state.name, items))

    checker = ArrayChecker()
    stepped: list[tuple[int, np.ndarray, np.ndarray, list[np.ndarray]]] = []
    for i in range(n):
        if grad_list[i] is None:
            continue
        param = checker.array(param_list[i], "params", i, True)
        grad = checker.array(grad_list[i], "grads", i, False, like=param)
        arrays = [checker.array(items[i], name, i, True, like=param) for name, items in lists]
        stepped.append((i, param, grad, arrays))

    step_array = checker.scalars(steps, "steps", n, np.int64) if uses_steps else None
    scalar_array = None
    if scalars is not None:
        scalar_array = checker.scalars(scalars[1], scalars[0], n, np.float32)
    checker.check_overlaps()

    tensors = []
    for i, param, grad, arrays in stepped:
        step = 0
        if step_array is not None:
            step = int(step_array[i])
            if not 0 <= step < _STEP_LIMIT:
                raise ValueError(f"steps[{i}] is {step}; step counts must be non-negative")
        tensors.append(Tensor(i, param, grad, arrays, step + 1))

    return Batch(tensors, step_array, scalar_array)
