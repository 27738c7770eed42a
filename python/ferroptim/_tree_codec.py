"""Nested Python data as a JSON skeleton plus named arrays: how checkpoints store state without
pickle.

:func:`encode` turns a tree of dicts, lists, tuples, strings, ints (any size), floats, bools,
``None``, NumPy scalars and NumPy arrays into a JSON-compatible skeleton and a dict of arrays that
the skeleton refers to by name; :func:`decode` rebuilds an equal tree (same types, same bits) from
the parsed skeleton. Node forms:

* ``null``, ``true``/``false``, integers, finite floats, strings: themselves (JSON keeps ints
  exact at any size and floats by their shortest round-trip repr, ``-0.0`` included);
* ``{"$": "float", "v": "nan" | "inf" | "-inf"}``: the non-finite floats, which JSON lacks;
* lists: JSON arrays of nodes; ``{"$": "tuple", "v": [...]}`` for tuples;
* ``{"$": "dict", "v": [[key, value], ...]}``: any dict (keys of any storable hashable kind,
  such as the integer parameter indices of an optimizer state, in insertion order);
* ``{"$": "array", "v": name}``: an array stored under ``name``;
* ``{"$": "scalar", "dtype": "<f4", "hex": "0000c03f"}``: a NumPy scalar, bit for bit.

Arrays of Python objects are refused: nothing is ever pickled. Containers nest at most
:data:`MAX_DEPTH` levels, on writing (data that refers to itself is refused too) as on reading,
so whatever :func:`encode` accepts, :func:`decode` reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: deepest nesting of lists, tuples and dicts stored or read (state dicts nest a few levels)
MAX_DEPTH = 64


def encode(tree: Any, *, prefix: str = "a") -> tuple[Any, dict[str, np.ndarray]]:
    """The skeleton of ``tree`` (for ``json.dumps(..., allow_nan=False)``) and the arrays it
    refers to (named ``prefix`` + a number).

    Raises
    ------
    TypeError
        Naming the path of the first value that cannot be stored (e.g. ``root["x"][2]``).
    """
    arrays: dict[str, np.ndarray] = {}
    open_containers: set[int] = set()

    def node(value: Any, path: str) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, list | tuple | Mapping):
            if id(value) in open_containers:
                raise ValueError(f"{path}: the data refers to itself (cannot store a cycle)")
            if len(open_containers) >= MAX_DEPTH:
                raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels")
            open_containers.add(id(value))
            try:
                return container(value, path)
            finally:
                open_containers.discard(id(value))
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError(f"{path}: arrays of Python objects cannot be stored (no pickle)")
            name = f"{prefix}{len(arrays)}"
            arrays[name] = value
            return {"$": "array", "v": name}
        if isinstance(value, np.generic):  # before int/float: np.float64 is a float
            if value.dtype.hasobject:
                raise TypeError(f"{path}: NumPy object scalars cannot be stored")
            return {"$": "scalar", "dtype": value.dtype.str, "hex": value.tobytes().hex()}
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return {"$": "float", "v": "nan" if value != value else repr(float(value))}
        raise TypeError(
            f"{path}: cannot store a {type(value).__name__} (supported: dict, list, tuple, str, "
            "int, float, bool, None, NumPy scalars and arrays)"
        )

    def container(value: Any, path: str) -> Any:
        if isinstance(value, list):
            return [node(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, tuple):
            return {"$": "tuple", "v": [node(item, f"{path}[{i}]") for i, item in enumerate(value)]}
        return {
            "$": "dict",
            "v": [
                [node(k, f"{path} key {k!r}"), node(v, f"{path}[{k!r}]")] for k, v in value.items()
            ],
        }

    return node(tree, "root"), arrays


def decode(skeleton: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Rebuild the tree :func:`encode` described from its parsed skeleton; every array must be
    referred to exactly once.

    Raises
    ------
    ValueError
        If the skeleton is not made of the node forms above, refers to a missing array, or
        leaves an array unused (a corrupt or foreign file).
    """
    used: set[str] = set()
    depth = [0]

    def bad(path: str, what: str) -> ValueError:
        return ValueError(f"the skeleton is corrupt at {path}: {what}")

    def node(value: Any, path: str) -> Any:
        if not isinstance(value, list | dict):
            return leaf(value, path)
        if depth[0] > MAX_DEPTH:  # containers, plus the array or scalar node inside the last
            raise bad(path, f"nested deeper than {MAX_DEPTH} levels")
        depth[0] += 1
        try:
            return leaf(value, path)
        finally:
            depth[0] -= 1

    def leaf(value: Any, path: str) -> Any:
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise bad(path, f"non-finite float {value} outside a float node")
            return value
        if isinstance(value, list):
            return [node(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if not isinstance(value, dict) or "$" not in value:
            raise bad(path, f"unexpected {type(value).__name__}")
        tag = value["$"]
        fields = set(value) - {"$"}
        expected = {"scalar": {"dtype", "hex"}}.get(tag, {"v"})
        if fields != expected:
            raise bad(path, f"node {tag!r} has fields {sorted(fields)}")
        body = value.get("v")
        if tag == "float" and body in _NONFINITE:
            return _NONFINITE[body]
        if tag == "tuple" and isinstance(body, list):
            return tuple(node(item, f"{path}[{i}]") for i, item in enumerate(body))
        if tag == "dict" and isinstance(body, list):
            return _decode_dict(body, path, node, bad)
        if tag == "array" and isinstance(body, str):
            if body not in arrays:
                raise bad(path, f"refers to a missing array {body!r}")
            if body in used:
                raise bad(path, f"refers to array {body!r} twice")
            used.add(body)
            return arrays[body]
        if tag == "scalar":
            return _decode_scalar(value, path, bad)
        raise bad(path, f"unknown node {tag!r}")

    tree = node(skeleton, "root")
    unused = sorted(set(arrays) - used)
    if unused:
        raise ValueError(f"the file holds arrays the skeleton does not refer to: {unused}")
    return tree


def _decode_dict(body: list, path: str, node: Any, bad: Any) -> dict:
    out: dict = {}
    for i, pair in enumerate(body):
        if not isinstance(pair, list) or len(pair) != 2:
            raise bad(f"{path} item {i}", "a dict item must be a [key, value] pair")
        key = node(pair[0], f"{path} key {i}")
        try:
            hash(key)
        except TypeError:
            raise bad(f"{path} key {i}", f"unhashable key {key!r}") from None
        if key in out:
            raise bad(f"{path} key {i}", f"duplicate key {key!r}")
        out[key] = node(pair[1], f"{path}[{key!r}]")
    return out


def _decode_scalar(value: dict, path: str, bad: Any) -> np.generic:
    try:
        dtype = np.dtype(value["dtype"])
        data = bytes.fromhex(value["hex"])
    except (TypeError, ValueError) as exc:
        raise bad(path, f"bad scalar ({exc})") from None
    if dtype.hasobject or len(data) != dtype.itemsize:
        raise bad(path, f"bad scalar of dtype {dtype} with {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype)[0]
