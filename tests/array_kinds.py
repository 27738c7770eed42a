"""The kinds of NumPy array a user may hand to ferroptim, and what each API does with them.

Each :class:`Kind` builds, from a C-contiguous array of values, an array of that kind holding the
same values (or ``None`` when the kind does not exist for that shape). ``read`` and ``written``
give the documented outcome for an argument that is only read (gradients, batch-norm inputs) or
updated in place (parameters, optimizer state, gradients being clipped): ``"works"`` (the result
equals the contiguous case and lands in the caller's array) or the exception type raised.

The table in the README's robustness section is this module's :data:`KINDS`; the tests in
``test_array_kinds.py`` check every entry against every API.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORKS = "works"


@dataclass(frozen=True)
class Kind:
    """How to build one kind of array and the documented outcome for it."""

    name: str
    make: Callable[[np.ndarray], np.ndarray | list | None]
    read: str | type[Exception]
    written: str | type[Exception]
    #: shape the kind is tested with instead of the default (zero-size, 0-d)
    shape: tuple[int, ...] | None = None


def _fill(view: np.ndarray, values: np.ndarray) -> np.ndarray:
    view[...] = values
    return view


def _sliced(values: np.ndarray) -> np.ndarray:
    """Every other element of a larger buffer (strided, not contiguous)."""
    base = np.zeros((*values.shape[:-1], 2 * values.shape[-1]), values.dtype)
    return _fill(base[..., ::2], values)


def _transposed(values: np.ndarray) -> np.ndarray | None:
    if values.ndim < 2:
        return None
    return _fill(np.zeros(values.shape[::-1], values.dtype).T, values)


def _negative_strides(values: np.ndarray) -> np.ndarray:
    view = np.zeros(values.shape, values.dtype)[..., ::-1]
    return _fill(view, values)


def misaligned(values: np.ndarray, *, writeable: bool = True) -> np.ndarray:
    """The values in an array whose data starts one byte past an aligned address."""
    item = values.dtype.itemsize
    buffer = bytearray(item * values.size + 1)
    view = np.ndarray(values.shape, values.dtype, buffer=buffer, offset=1)
    assert not view.flags.aligned
    view[...] = values
    view.flags.writeable = writeable
    return view


def _read_only(values: np.ndarray) -> np.ndarray:
    copy = values.copy()
    copy.flags.writeable = False
    return copy


def _big_endian(values: np.ndarray) -> np.ndarray:
    return values.astype(values.dtype.newbyteorder(">"))


_TMP = Path(tempfile.mkdtemp(prefix="ferroptim-memmap-"))


def memmap(values: np.ndarray, mode: str = "w+") -> np.memmap:
    """The values in a memory-mapped temporary file (``mode="r"``: read-only)."""
    path = _TMP / f"m{len(list(_TMP.iterdir()))}.bin"
    mapped = np.memmap(path, dtype=values.dtype, mode="w+", shape=values.shape)
    mapped[...] = values
    mapped.flush()
    if mode == "w+":
        return mapped
    del mapped
    return np.memmap(path, dtype=values.dtype, mode=mode, shape=values.shape)


def _fortran(values: np.ndarray) -> np.ndarray | None:
    return np.asfortranarray(values) if values.ndim >= 2 else None


def _matrix(values: np.ndarray) -> np.ndarray | None:
    return np.asmatrix(values.copy()) if values.ndim == 2 else None


def _masked(values: np.ndarray) -> np.ndarray:
    return np.ma.masked_array(values.copy(), mask=np.zeros(values.shape, bool))


def _broadcast(values: np.ndarray) -> np.ndarray:
    """One value repeated through a zero stride (read-only, not contiguous)."""
    return np.broadcast_to(values.reshape(-1)[:1].reshape((1,) * values.ndim), values.shape)


KINDS: tuple[Kind, ...] = (
    Kind("C-contiguous", np.copy, WORKS, WORKS),
    Kind("sliced (a[..., ::2])", _sliced, ValueError, ValueError),
    Kind("transposed (a.T)", _transposed, ValueError, ValueError),
    Kind("negative strides (a[..., ::-1])", _negative_strides, ValueError, ValueError),
    Kind("Fortran order", _fortran, ValueError, ValueError),
    Kind("broadcast (zero stride)", _broadcast, ValueError, ValueError),
    Kind("misaligned (odd byte offset)", misaligned, ValueError, ValueError),
    Kind("read-only", _read_only, WORKS, ValueError),
    Kind("zero-size", np.copy, WORKS, WORKS, shape=(0, 4)),
    Kind("0-d", np.copy, WORKS, WORKS, shape=()),
    Kind("other byte order (>f4, >f8)", _big_endian, TypeError, TypeError),
    Kind("np.memmap (w+)", memmap, WORKS, WORKS),
    Kind("np.memmap (r)", lambda v: memmap(v, "r"), WORKS, ValueError),
    Kind("integer dtype (int32)", lambda v: v.astype(np.int32), TypeError, TypeError),
    Kind("float16", lambda v: v.astype(np.float16), TypeError, TypeError),
    Kind("object dtype", lambda v: v.astype(object), TypeError, TypeError),
    Kind("np.matrix", _matrix, WORKS, WORKS),
    Kind("np.ma.MaskedArray (mask ignored)", _masked, WORKS, WORKS),
    Kind("nested list", lambda v: v.tolist(), TypeError, TypeError),
)

KIND_NAMES = [k.name for k in KINDS]


def kind(name: str) -> Kind:
    """The kind called ``name``."""
    for k in KINDS:
        if k.name == name:
            return k
    raise KeyError(name)


def build(k: Kind, values: np.ndarray) -> np.ndarray | list | None:
    """An array of kind ``k`` with ``values`` (``None`` if the kind has no such shape)."""
    return k.make(values)


def raw_bytes(obj: object) -> bytes | None:
    """The bytes of an ndarray's data (mask ignored), ``None`` for anything else."""
    if isinstance(obj, np.ndarray):
        return np.asarray(obj).tobytes()
    return None


def same_bits(actual: object, expected: np.ndarray) -> bool:
    """``actual`` holds exactly ``expected``'s values (NaN-aware, -0 and +0 distinct)."""
    got = np.asarray(actual)
    if got.shape != expected.shape:
        return False
    got = got.astype(expected.dtype)  # big-endian or subclass views, same values
    bits = np.dtype(f"u{expected.dtype.itemsize}")
    return bool(np.array_equal(got.view(bits), expected.view(bits)))
