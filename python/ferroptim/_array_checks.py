"""Checks of the float arrays every kernel updates, the native binding's rules in Python: each
array is a float32/float64, C-contiguous, aligned ndarray (writeable when it is updated) with its
parameter's dtype and shape, and no updated array shares memory (or, for memory maps, file bytes)
with any other array of the call. Messages name ``arg[index]``. Used by the reference kernels and
by the optimizers, which check every parameter group before updating any."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferroptim._file_spans import file_span

__all__ = ["FLOAT_DTYPES", "ArrayChecker", "check_params"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    written: bool
    arg: str
    index: int


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
        name = _ndarray_name(obj, arg, index)
        assert isinstance(obj, np.ndarray)
        if obj.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{name} has dtype {obj.dtype}; expected float32 or float64 in native byte order"
            )
        if like is not None:
            if obj.dtype != like.dtype:
                raise TypeError(
                    f"{name} has dtype {obj.dtype} but params[{index}] has dtype {like.dtype}"
                )
            _check_shape_like(obj, name, index, like)
        return self._accepted(obj, name, written, arg, index)

    def _accepted(
        self, obj: np.ndarray, name: str, written: bool, arg: str, index: int
    ) -> np.ndarray:
        """The checks every state or parameter array shares: layout, then the overlap record."""
        self._layout(obj, name, written)
        self.record(obj, written, arg, index)
        return np.asarray(obj)

    @staticmethod
    def _layout(obj: np.ndarray, name: str, written: bool) -> None:
        """C-contiguous, aligned, and writeable if ``written``."""
        if not obj.flags.c_contiguous:
            raise ValueError(
                f"{name} is not C-contiguous; pass a contiguous array (np.ascontiguousarray makes "
                "a copy, which would not be updated in place)"
            )
        if obj.size > 0 and not obj.flags.aligned:
            raise ValueError(f"{name} is not aligned for its dtype")
        if written and not obj.flags.writeable:
            raise ValueError(f"{name} is read-only; it must be writeable to be updated in place")

    def array_like(self, obj: object, arg: str, index: int, like: np.ndarray) -> np.ndarray:
        """Check one float state array of parameter ``like``, written in place."""
        return self.array(obj, arg, index, True, like=like)

    def bf16_array(self, obj: object, arg: str, index: int, like: np.ndarray) -> np.ndarray:
        """Check one bfloat16 state array: uint16 bit patterns shaped like ``like`` (its float32
        parameter), written in place."""
        name = _ndarray_name(obj, arg, index)
        assert isinstance(obj, np.ndarray)
        if obj.dtype != np.uint16:
            raise TypeError(
                f"{name} has dtype {obj.dtype}; bfloat16 state is uint16 (bit patterns)"
            )
        _check_shape_like(obj, name, index, like)
        return self._accepted(obj, name, True, arg, index)

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


def check_params(params: list) -> None:
    """Check parameters are distinct, writeable, aligned, C-contiguous float32/float64 arrays,
    with the native kernels' checks and messages."""
    checker = ArrayChecker()
    for i, p in enumerate(params):
        checker.array(p, "params", i, True)
    checker.check_overlaps()


def _ndarray_name(obj: object, arg: str, index: int) -> str:
    """``arg[index]``, the name errors use for ``obj``; ``TypeError`` unless it is an ndarray."""
    name = f"{arg}[{index}]"
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
    return name


def _check_shape_like(obj: np.ndarray, name: str, index: int, like: np.ndarray) -> None:
    """``ValueError`` unless ``obj`` has the shape of ``like``, the parameter ``params[index]``."""
    if obj.shape != like.shape:
        raise ValueError(
            f"{name} has shape {_shape_str(obj.shape)} but params[{index}] has shape "
            f"{_shape_str(like.shape)}"
        )
