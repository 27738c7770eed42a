"""The error for a :class:`ferroptim.Checkpoint` passed where a ``state_dict`` is expected."""

from __future__ import annotations

from typing import Any


def refuse_checkpoint(value: Any, owner: str) -> None:
    """Raise ``TypeError`` explaining how to restore a checkpoint when ``value`` is one (what
    ``ferroptim.load(path)`` returns) rather than a ``state_dict``; return otherwise."""
    if type(value).__name__ != "Checkpoint" or not hasattr(value, "restore"):
        return
    part = "optimizer" if owner == "optimizer" else "model"
    raise TypeError(
        f"{owner}.load_state_dict got a ferroptim.Checkpoint (what ferroptim.load(path) "
        f"returns), not a state_dict: restore it with ferroptim.load(path, {part}=...) or "
        f"checkpoint.restore({part}=...), or pass checkpoint['{part}'] (its saved state_dict)"
    )
