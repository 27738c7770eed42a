"""The memory spans of an optimizer's parameters, kept sorted so that a new parameter group is
checked for shared memory in O(log n) per array instead of re-checking every parameter (which
made ``add_param_group`` quadratic)."""

from __future__ import annotations

import bisect
from collections.abc import Callable

import numpy as np

from ferroptim._array_checks import ArrayChecker
from ferroptim._file_spans import file_span


def _span(array: np.ndarray) -> tuple[int, int]:
    start = int(array.__array_interface__["data"][0])
    return start, start + array.nbytes


class ParamSpans:
    """Disjoint ``[start, end)`` byte ranges of the parameters, sorted by start (zero-size
    arrays have none). Disjoint and sorted, so the ends are sorted too, and a range
    ``[s, e)`` overlaps some span iff the last span starting before ``e`` ends after ``s``."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._params: list[np.ndarray] = []
        #: how many parameters were recorded (zero-size ones included)
        self.count = 0
        #: (device, inode) -> [(start, end, param)]: file bytes of memory-mapped parameters
        self._files: dict[tuple[int, int], list[tuple[int, int, np.ndarray]]] = {}

    def check_new(
        self, params: list, first_index: int, all_params: Callable[[], list[np.ndarray]]
    ) -> None:
        """Check the parameters of a new group (indices from ``first_index``): each a valid
        parameter array, none sharing memory with another new one or an existing one
        (``all_params()``, the existing parameters in order, names the other in a message).

        Raises
        ------
        TypeError, ValueError
            Naming ``params[i]`` (and ``params[j]`` it shares memory with), as the kernels do.
        """
        checker = ArrayChecker()
        for i, p in enumerate(params, start=first_index):
            checker.array(p, "params", i, True)
        checker.check_overlaps()
        for i, p in enumerate(params, start=first_index):
            if p.nbytes == 0:
                continue
            start, end = _span(p)
            k = bisect.bisect_left(self._starts, end)
            if k > 0 and self._ends[k - 1] > start:
                other = self._params[k - 1]
                j = next(n for n, q in enumerate(all_params()) if q is other)
                raise ValueError(
                    f"params[{i}] shares memory with params[{j}]; every updated array must be "
                    "distinct"
                )
            mapped = file_span(p) if p.base is not None else None
            if mapped is not None:
                device, inode, first, last = mapped
                for s, e, other in self._files.get((device, inode), ()):
                    if s < last and first < e:
                        j = next(n for n, q in enumerate(all_params()) if q is other)
                        raise ValueError(
                            f"params[{i}] maps the same file bytes as params[{j}] (two np.memmap "
                            "of one file); every updated array must be distinct"
                        )

    def add(self, params: list) -> None:
        """Record checked parameters (see :meth:`check_new`)."""
        self.count += len(params)
        for p in params:
            if p.nbytes == 0:
                continue
            start, end = _span(p)
            k = bisect.bisect_left(self._starts, start)
            self._starts.insert(k, start)
            self._ends.insert(k, end)
            self._params.insert(k, p)
            mapped = file_span(p) if p.base is not None else None
            if mapped is not None:
                device, inode, first, last = mapped
                self._files.setdefault((device, inode), []).append((first, last, p))

    def rebuild(self, all_params: list) -> None:
        """Check every parameter again and record them (after a ``params`` list was edited)."""
        fresh = ParamSpans()
        fresh.check_new(all_params, 0, lambda: all_params)
        fresh.add(all_params)
        self.__dict__.update(fresh.__dict__)
