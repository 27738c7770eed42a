"""Transfer learning: freeze parts of a model by name prefix, load weights exported from torch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _matching(model: Any, prefixes: tuple[str, ...]) -> list[str]:
    """Full parameter names under any of ``prefixes`` (a prefix matches whole dotted parts:
    ``"0"`` matches ``"0.weight"`` but not ``"10.weight"``)."""
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not isinstance(prefix, str):
            raise TypeError(f"prefixes must be strings, got {prefix!r}")
    unknown = [p for p in prefixes if not any(_under(name, p) for name in names)]
    if unknown:
        raise KeyError(f"no parameter under prefix {unknown[0]!r}; parameters: {names}")
    return [name for name in names if any(_under(name, p) for p in prefixes)]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze_layers(model: Any, *prefixes: str) -> list[str]:
    """Freeze the parameters under the given name prefixes (every parameter when none are
    given) with ``Module.freeze``: their gradients read as ``None`` and optimizers skip them.

    Returns the full names frozen. ``KeyError`` names a prefix that matches nothing (and
    nothing is frozen then).
    """
    names = _matching(model, prefixes) if prefixes else [n for n, _ in model.named_parameters()]
    if names:
        model.freeze(*names)
    return names


def unfreeze_layers(model: Any, *prefixes: str) -> list[str]:
    """Undo :func:`freeze_layers` for the given prefixes (all parameters when none are given);
    returns the full names made trainable."""
    names = _matching(model, prefixes) if prefixes else [n for n, _ in model.named_parameters()]
    if names:
        model.unfreeze(*names)
    return names


def freeze_all_except(model: Any, *prefixes: str) -> list[str]:
    """Freeze everything but the parameters under ``prefixes`` (e.g. a new classifier head) and
    make those trainable: the usual first stage of fine-tuning a pretrained network. Returns the
    full names frozen."""
    if not prefixes:
        raise ValueError("freeze_all_except: name at least one prefix to keep trainable")
    keep = set(_matching(model, prefixes))
    frozen = [name for name, _ in model.named_parameters() if name not in keep]
    model.unfreeze(*keep)
    if frozen:
        model.freeze(*frozen)
    return frozen


def trainable_names(model: Any) -> list[str]:
    """Names of the parameters that are not frozen."""
    return [name for name, grad in model.named_gradients() if grad is not None]


@dataclass
class LoadReport:
    """What :func:`load_npz_state_dict` did.

    Attributes
    ----------
    loaded : list of str
        Keys copied into the model.
    missing : list of str
        Model keys absent from the file (left unchanged).
    unexpected : list of str
        File keys the model does not have (ignored).
    mismatched : list of (str, tuple, tuple)
        ``(key, file shape, model shape)`` skipped because of a shape difference.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            lines.append(f"missing (kept): {self.missing}")
        if self.unexpected:
            lines.append(f"unexpected (ignored): {self.unexpected}")
        if self.mismatched:
            lines.append(
                "shape mismatch (skipped): "
                + ", ".join(f"{k} {a} vs {b}" for k, a, b in self.mismatched)
            )
        return "\n".join(lines)


def load_npz_state_dict(
    model: Any,
    path: str | os.PathLike,
    *,
    strict: bool = True,
    skip_mismatched: bool = False,
    prefix: str = "",
) -> LoadReport:
    """Load a state_dict saved as ``.npz`` (e.g. exported from torch with
    ``np.savez(path, **{k: v.numpy() for k, v in net.state_dict().items()})``) into ``model``.

    Keys and layouts are torch's, so a torch model with the same structure loads directly. The
    file is read with ``np.load(path, allow_pickle=False)`` (no code execution).

    Parameters
    ----------
    model : ferroptim.nn.Module
    path : str or os.PathLike
    strict : bool
        Require the file and the model to have exactly the same keys (``KeyError`` naming the
        first missing or unexpected one). With ``False`` the common keys are loaded and the rest
        reported.
    skip_mismatched : bool
        Skip keys whose shapes differ (e.g. a new classifier head with another class count)
        instead of raising ``ValueError``; only with ``strict=False``.
    prefix : str
        Read only the file's keys that start with ``prefix``, with it removed (e.g.
        ``"module."`` for a ``DataParallel`` export); other keys are ignored.

    Returns
    -------
    LoadReport

    Raises
    ------
    KeyError, ValueError, TypeError
        As described; nothing is written when any check fails.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path, got {type(path).__name__}")
    if strict and skip_mismatched:
        raise ValueError("skip_mismatched=True needs strict=False")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {prefix!r}")
    with np.load(os.fspath(path), allow_pickle=False) as archive:
        saved = {
            key[len(prefix) :]: archive[key] for key in archive.files if key.startswith(prefix)
        }
    own = model.state_dict()
    report = LoadReport(
        missing=[key for key in own if key not in saved],
        unexpected=[key for key in saved if key not in own],
    )
    if strict and (report.missing or report.unexpected):
        model.load_state_dict(saved, strict=True)  # raises KeyError naming the first one
    selected = {}
    for key, value in saved.items():
        if key not in own:
            continue
        if value.shape != own[key].shape:
            if not skip_mismatched:
                raise ValueError(
                    f"{os.fspath(path)}: {key!r} has shape {value.shape}, the model expects "
                    f"{own[key].shape} (pass strict=False, skip_mismatched=True to skip it)"
                )
            report.mismatched.append((key, value.shape, own[key].shape))
            continue
        selected[key] = value
    model.load_state_dict(selected, strict=False)
    report.loaded = list(selected)
    return report
