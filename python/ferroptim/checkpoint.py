"""Checkpoints: a model, optimizer, scheduler and any extra state in one ``.npz`` file, written
atomically and restored with verification, for an exact resume.

File layout (format version 1): an ordinary NumPy ``.npz`` archive, readable with
``np.load(path, allow_pickle=False)``. Member ``__ferroptim_checkpoint__`` holds UTF-8 JSON as a
uint8 array: ``{"format": "ferroptim.checkpoint", "version": 1, "tree": ...}``, where the tree is
the skeleton of :mod:`ferroptim._tree_codec` and members ``a0``, ``a1``, ... are the arrays it
refers to. Nothing is pickled. The decoded tree is::

    {"model": part, "optimizer": part, "scheduler": part, "extra": {name: entry}}

with ``part`` ``None`` or ``{"kind": "object", "state_dict": ..., "rng_state": ...}`` (the
object's ``state_dict()``, and ``rng_state()`` when it has one, else ``None``), and extra
entries either such parts, ``{"kind": "generator", "rng_state": ...}`` for a
``numpy.random.Generator``, or ``{"kind": "value", "value": ...}`` for plain data.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ferroptim import _checkpoint_read, _checkpoint_write, _tree_codec
from ferroptim._checkpoint_verify import mismatches
from ferroptim._interrupts import deferred_interrupts
from ferroptim.optim.optimizer import Optimizer

FORMAT = "ferroptim.checkpoint"
VERSION = 1
SKELETON = "__ferroptim_checkpoint__"
PARTS = ("model", "optimizer", "scheduler")


class ObjectState(NamedTuple):
    """The saved state of one object: its ``state_dict()`` and its ``rng_state()`` (``None``
    when it has none; for a ``numpy.random.Generator``, ``state_dict`` is ``None`` and
    ``rng_state`` is ``bit_generator.state``)."""

    state_dict: Any
    rng_state: Any


class CheckpointMismatchError(ValueError, KeyError):
    """A checkpoint does not fit the objects it should be loaded into (caught by ``except
    ValueError`` and ``except KeyError``); the message names every mismatch."""

    __str__ = Exception.__str__  # a plain message, not KeyError's repr of it


@dataclass(frozen=True)
class Checkpoint:
    """A decoded checkpoint (see :func:`load`).

    Attributes
    ----------
    version : int
        Format version of the file.
    model, optimizer, scheduler : ObjectState or None
        What :func:`save` was given (``model.state_dict`` is torch-keyed; ``model.rng_state``
        holds the dropout generators).
    extra : dict
        ``name -> value`` for plain data, ``name -> ObjectState`` for objects and generators.
    """

    version: int
    model: ObjectState | None = None
    optimizer: ObjectState | None = None
    scheduler: ObjectState | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def restore(self, model=None, optimizer=None, scheduler=None, **extra: Any) -> None:
        """Load this checkpoint into the given objects, all or nothing.

        Everything is verified first: each object given has a saved state; a model's names,
        shapes and dtypes (and its random generators' names and kinds) match; an optimizer's
        groups, parameter counts and state arrays match its parameters. Then each object's
        ``load_state_dict`` (and ``set_rng_state``) runs; if one raises, the objects already
        loaded are put back from copies taken before.

        Raises
        ------
        CheckpointMismatchError
            A ``ValueError`` and ``KeyError`` whose message names every mismatch found (or the
            error of the load that failed); no object is modified.
        """
        targets, backups = self._check(model, optimizer, scheduler, extra, copies=True)
        _apply_all(targets, backups)

    def __getitem__(self, key: str) -> Any:
        """torch's ``torch.load(path)["model"]`` habit: the saved ``state_dict`` of ``"model"``,
        ``"optimizer"`` or ``"scheduler"`` (for ``model.load_state_dict(checkpoint["model"])``,
        which checks every key and shape before writing), or an ``extra`` entry (an object's
        ``state_dict``, or the plain value). :meth:`restore` loads everything at once, random
        generators included, all or nothing.

        Raises
        ------
        KeyError
            Naming what the checkpoint holds.
        """
        part = getattr(self, key, None) if key in PARTS else None
        if part is not None:
            return part.state_dict
        if key in self.extra:
            value = self.extra[key]
            return value.state_dict if isinstance(value, ObjectState) else value
        held = [name for name in PARTS if getattr(self, name) is not None] + list(self.extra)
        raise KeyError(
            f"checkpoint has no {key!r}; it holds {held} (the names given to ferroptim.save: "
            "model=, optimizer=, scheduler= and extra keywords)"
        )

    def verify(self, model=None, optimizer=None, scheduler=None, **extra: Any) -> None:
        """Check, as :meth:`restore` does first, that this checkpoint fits the given objects,
        without loading it (and without copying their state).

        Raises
        ------
        CheckpointMismatchError
            Naming every mismatch found.
        """
        self._check(model, optimizer, scheduler, extra, copies=False)

    def _check(
        self, model: Any, optimizer: Any, scheduler: Any, extra: dict[str, Any], *, copies: bool
    ) -> tuple[list[tuple[str, ObjectState, Any]], list[ObjectState]]:
        """The (label, saved state, object) to load and each object's current state (deep
        copies when ``copies``, for putting it back), once every object fits."""
        targets: list[tuple[str, ObjectState, Any]] = []
        problems: list[str] = []
        for label, obj in zip(PARTS, (model, optimizer, scheduler), strict=True):
            saved = getattr(self, label)
            if obj is None:
                continue
            if saved is None:
                problems.append(f"{label}: the checkpoint holds no {label}")
            else:
                targets.append((label, saved, obj))
        for name, obj in extra.items():
            saved = self.extra.get(name)
            if name not in self.extra:
                problems.append(
                    f"extra {name!r}: not in the checkpoint (it holds {sorted(self.extra)})"
                )
            elif not isinstance(saved, ObjectState):
                problems.append(
                    f"extra {name!r}: the checkpoint holds a plain value, not an object's state"
                )
            else:
                targets.append((f"extra {name!r}", saved, obj))
        currents = [_current(saved, obj, copies) for _, saved, obj in targets]
        for (label, saved, obj), current in zip(targets, currents, strict=True):
            problems += [f"{label}: {p}" for p in mismatches(saved, obj, current)]
        if problems:
            raise CheckpointMismatchError(
                f"checkpoint does not match ({len(problems)} problem(s)): " + "; ".join(problems)
            )
        return targets, currents


def save(path: str | os.PathLike, model=None, optimizer=None, scheduler=None, **extra: Any) -> None:
    """Write a checkpoint to ``path`` atomically (the name is used as given; ``.npz`` is not
    appended).

    Parameters
    ----------
    path : str or os.PathLike
    model, optimizer, scheduler : object, optional
        Anything with ``state_dict()``; ``rng_state()`` is saved too when the object has it
        (a :class:`~ferroptim.nn.Module` saves its dropout generators that way).
    **extra
        Plain data (arrays, numbers, strings, nested dicts/lists/tuples of them), objects with
        ``state_dict()`` (and ``rng_state()``), or ``numpy.random.Generator`` instances.

    Notes
    -----
    The file is written to a temporary file in the same directory, flushed and ``fsync``-ed,
    then renamed over ``path`` (``os.replace``) and the directory is ``fsync``-ed: a reader sees
    the old checkpoint or the new one, never a partial file. On any error the temporary file is
    removed and the old checkpoint stays as it was; temporary files left by saves to the same
    path whose process died (killed mid-save) are removed by the next save. A symlink ``path``
    is written through (the file it points to is replaced); an existing file keeps its
    permission bits.

    Every optimizer given (directly, as a scheduler's optimizer or in ``extra``) is locked for
    the whole save, so a step in another thread waits: the file holds the parameters and state
    of one moment, never arrays from different steps.

    Raises
    ------
    TypeError
        Naming the value that cannot be stored (before anything is written).
    ValueError
        If the data refers to itself or is nested deeper than the checkpoint format allows.
    """
    path = os.fspath(path)
    objects = [model, optimizer, scheduler, *extra.values()]
    with _stepping_paused(objects):
        parts = zip(PARTS, (model, optimizer, scheduler), strict=True)
        tree: dict[str, Any] = {label: _part(label, obj) for label, obj in parts}
        tree["extra"] = {name: _extra_entry(name, value) for name, value in extra.items()}
        skeleton, arrays = _tree_codec.encode(tree)
        document = {"format": FORMAT, "version": VERSION, "tree": skeleton}
        text = json.dumps(document, allow_nan=False, separators=(",", ":")).encode()
        members = {SKELETON: np.frombuffer(text, dtype=np.uint8), **arrays}
        _checkpoint_write.write_atomic(path, members)


@contextlib.contextmanager
def _stepping_paused(objects: list[Any]) -> Iterator[None]:
    """Hold the lock of every optimizer among ``objects`` (in a fixed order), so that no step
    changes a parameter or state array between the first array written and the last: the file
    holds one moment of training. A step in another thread waits for the save."""
    with contextlib.ExitStack() as stack:
        candidates = [*objects, *(getattr(obj, "optimizer", None) for obj in objects)]
        optimizers = {id(obj): obj for obj in candidates if isinstance(obj, Optimizer)}
        for key in sorted(optimizers):
            stack.enter_context(optimizers[key]._lock)
        yield


def load(
    path: str | os.PathLike, model=None, optimizer=None, scheduler=None, **extra: Any
) -> Checkpoint:
    """Read a checkpoint written by :func:`save`; with objects given, also restore it into them
    (as :meth:`Checkpoint.restore`: verified first, all or nothing).

    Returns
    -------
    Checkpoint

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is corrupt or truncated, is not a ferroptim checkpoint, or has another
        format version; :class:`CheckpointMismatchError` if it does not fit the objects.
    """
    path = os.fspath(path)
    targets = (model, optimizer, scheduler, extra)
    restoring = any(obj is not None for obj in targets[:3]) or bool(extra)
    with open(path, "rb") as file:  # a missing or unreadable file raises its OSError
        checkpoint = _read(path, file, targets if restoring else None)
    if restoring:
        checkpoint.restore(model, optimizer, scheduler, **extra)
    return checkpoint


# ----------------------------------------------------------------------------- encoding


def _part(label: str, obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        raise TypeError(
            f"{label}: got a {type(obj).__name__}; ferroptim.save takes the objects themselves "
            "(torch.save({'model': model.state_dict(), 'opt': opt.state_dict()}, path) is "
            "ferroptim.save(path, model=model, optimizer=opt))"
        )
    if not callable(getattr(obj, "state_dict", None)):
        raise TypeError(f"{label}: {type(obj).__name__} has no state_dict() to save")
    rng = getattr(obj, "rng_state", None)
    return {
        "kind": "object",
        "state_dict": obj.state_dict(),
        "rng_state": rng() if callable(rng) else None,
    }


def _extra_entry(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, np.random.Generator):
        return {"kind": "generator", "rng_state": value.bit_generator.state}
    if callable(getattr(value, "state_dict", None)):
        return _part(f"extra {name!r}", value)  # type: ignore[return-value]
    return {"kind": "value", "value": value}


# ----------------------------------------------------------------------------- decoding


def _read(path: str, file: Any, targets: tuple | None) -> Checkpoint:
    """Decode the checkpoint in ``file``: layouts first, then (once they fit ``targets``, the
    objects to restore into, when given) the data. Any malformed content is a ValueError naming
    ``path``."""
    try:
        with zipfile.ZipFile(file) as archive:
            members = _checkpoint_read.read_headers(archive)
            skeleton = members.pop(SKELETON, None)
            if skeleton is None:
                raise ValueError(f"not a ferroptim checkpoint (no {SKELETON!r} member)")
            document = _document(_checkpoint_read.read_data(archive, skeleton))
            if targets is not None:
                # Declared shapes and dtypes against the objects, before any data is read.
                layout = {name: m.placeholder() for name, m in members.items()}
                model, optimizer, scheduler, extra = targets
                _checkpoint(document, layout).verify(model, optimizer, scheduler, **extra)
            arrays = {name: _checkpoint_read.read_data(archive, m) for name, m in members.items()}
            return _checkpoint(document, arrays)
    except CheckpointMismatchError:
        raise
    except UnsupportedVersionError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except (RecursionError, MemoryError) as exc:
        raise ValueError(f"{path}: corrupt checkpoint ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # zipfile and NumPy raise many kinds on corrupt input
        raise ValueError(
            f"{path}: not a readable ferroptim checkpoint (corrupt, truncated or another kind of "
            f"file): {type(exc).__name__}: {exc}"
        ) from exc


class UnsupportedVersionError(ValueError):
    """A ferroptim checkpoint of a format version this code does not read."""


def _document(raw: np.ndarray) -> dict[str, Any]:
    """The parsed JSON header of the skeleton member."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{SKELETON!r} is not a uint8 vector")
    document = json.loads(raw.tobytes().decode(), parse_constant=_refuse_constant)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"not a ferroptim checkpoint (the header names no {FORMAT!r} format)")
    version = document.get("version")
    if version != VERSION:
        raise UnsupportedVersionError(
            f"checkpoint format version {version!r} is not supported (this ferroptim reads "
            f"version {VERSION})"
        )
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"the skeleton holds the non-JSON constant {name}")


def _checkpoint(document: dict[str, Any], arrays: dict[str, np.ndarray]) -> Checkpoint:
    """The decoded tree as a :class:`Checkpoint`, its layout checked."""
    version = document["version"]
    tree = _tree_codec.decode(document.get("tree"), arrays)
    if not isinstance(tree, dict) or set(tree) != {*PARTS, "extra"}:
        raise ValueError(f"the tree must hold {[*PARTS, 'extra']}")
    parts = {label: _object_state(label, tree[label], allow_none=True) for label in PARTS}
    extra = tree["extra"]
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise ValueError("'extra' must be a dict with string keys")
    decoded: dict[str, Any] = {}
    for name, entry in extra.items():
        if (
            isinstance(entry, dict)
            and entry.get("kind") == "value"
            and set(entry) == {"kind", "value"}
        ):
            decoded[name] = entry["value"]
        else:
            decoded[name] = _object_state(f"extra {name!r}", entry, allow_none=False)
    return Checkpoint(version, **parts, extra=decoded)


def _object_state(label: str, entry: Any, *, allow_none: bool) -> ObjectState | None:
    if entry is None and allow_none:
        return None
    if isinstance(entry, dict):
        if entry.get("kind") == "object" and set(entry) == {"kind", "state_dict", "rng_state"}:
            return ObjectState(entry["state_dict"], entry["rng_state"])
        if entry.get("kind") == "generator" and set(entry) == {"kind", "rng_state"}:
            return ObjectState(None, entry["rng_state"])
    raise ValueError(f"{label}: unexpected entry {entry!r:.80}")


# ----------------------------------------------------------------------------- restoring


def _apply_all(targets: list[tuple[str, ObjectState, Any]], backups: list[ObjectState]) -> None:
    """Load every target; if one fails, put back the ones already touched (that one included,
    in case its load is not all-or-nothing) and raise. A Ctrl-C arriving meanwhile is delivered
    once every target is loaded (or put back), and anything else raised (a ``BaseException``
    too) puts the targets back and is re-raised."""
    with deferred_interrupts():
        for k, (label, saved, obj) in enumerate(targets):
            try:
                _apply(saved, obj)
            except BaseException as exc:
                message = f"{label}: {type(exc).__name__}: {exc}"
                for j in range(k, -1, -1):
                    try:
                        _apply(backups[j], targets[j][2])
                    except BaseException as again:  # reported; the others are still restored
                        message += f" (and {targets[j][0]} could not be put back: {again})"
                if not isinstance(exc, Exception):
                    raise
                raise CheckpointMismatchError(message) from exc


def _current(saved: ObjectState, obj: Any, copies: bool) -> ObjectState:
    """What loading ``saved`` into ``obj`` would overwrite, deep-copied when ``copies`` (a
    backup) (``None`` where ``obj`` cannot provide it; verification reports that)."""
    if isinstance(obj, np.random.Generator):
        return ObjectState(None, obj.bit_generator.state)
    state = rng = None
    if saved.state_dict is not None and callable(getattr(obj, "state_dict", None)):
        state = obj.state_dict()
        if copies:
            state = copy.deepcopy(state)
    if saved.rng_state is not None and callable(getattr(obj, "rng_state", None)):
        rng = obj.rng_state()
    return ObjectState(state, rng)


def _apply(saved: ObjectState, obj: Any) -> None:
    if isinstance(obj, np.random.Generator):
        obj.bit_generator.state = saved.rng_state
        return
    if saved.state_dict is not None:
        obj.load_state_dict(saved.state_dict)
    if saved.rng_state is not None:
        obj.set_rng_state(saved.rng_state)
