"""Checks that a saved state fits the object it is about to be loaded into, listing every
mismatch (names, shapes, dtypes, generator kinds) so that a checkpoint load can refuse before
anything is written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ferroptim.optim.optimizer import Optimizer


def mismatches(saved: Any, obj: Any, current: Any) -> list[str]:
    """Every reason why ``saved`` (an ``ObjectState``) cannot be loaded into ``obj``, whose own
    state is ``current`` (an ``ObjectState`` copy taken just before)."""
    if isinstance(obj, np.random.Generator):
        return _generator(saved, obj)
    problems = []
    if saved.state_dict is not None:
        if not (callable(getattr(obj, "load_state_dict", None)) and current.state_dict is not None):
            problems.append(f"{type(obj).__name__} has no state_dict()/load_state_dict()")
        elif isinstance(obj, Optimizer):
            problems += _optimizer(saved.state_dict, obj)
        elif _is_array_mapping(saved.state_dict) and _is_array_mapping(current.state_dict):
            problems += _arrays(saved.state_dict, current.state_dict)
    elif saved.rng_state is not None and not callable(getattr(obj, "set_rng_state", None)):
        problems.append(f"the checkpoint holds a generator state, not {type(obj).__name__}'s")
        return problems
    if saved.rng_state is not None:
        if not (callable(getattr(obj, "set_rng_state", None)) and current.rng_state is not None):
            problems.append(f"{type(obj).__name__} has no rng_state()/set_rng_state()")
        elif isinstance(saved.rng_state, Mapping) and isinstance(current.rng_state, Mapping):
            problems += _rng_states(saved.rng_state, current.rng_state)
    return problems


def _generator(saved: Any, generator: np.random.Generator) -> list[str]:
    if saved.state_dict is not None or not isinstance(saved.rng_state, Mapping):
        return ["the checkpoint holds an object's state, not a numpy Generator's"]
    want = generator.bit_generator.state["bit_generator"]
    got = saved.rng_state.get("bit_generator")
    return [] if got == want else [f"bit generator {got!r} in the checkpoint, {want!r} here"]


def _is_array_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(v, np.ndarray) for v in value.values())


def _key_problems(
    saved: Mapping[str, Any], current: Mapping[str, Any], missing: str, unexpected: str
) -> list[str]:
    """``"<missing> [keys]"`` for the keys of ``current`` not in ``saved``, and
    ``"<unexpected> [keys]"`` for the keys of ``saved`` not in ``current``."""
    problems = []
    absent = [k for k in current if k not in saved]
    extra = [k for k in saved if k not in current]
    if absent:
        problems.append(f"{missing} {absent}")
    if extra:
        problems.append(f"{unexpected} {extra}")
    return problems


def _arrays(saved: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray]) -> list[str]:
    """Names, shapes and dtypes of two flat array mappings (a module's state_dict)."""
    problems = _key_problems(saved, current, "missing keys", "unexpected keys")
    for key, target in current.items():
        if key in saved:
            problems += _same_layout(repr(key), saved[key], target, "here")
    return problems


def _same_layout(
    name: str,
    value: np.ndarray,
    target: np.ndarray,
    where: str,
    layout: tuple[tuple[int, ...] | None, tuple[np.dtype, ...]] | None = None,
) -> list[str]:
    """Shape and dtype of ``value`` against ``target``'s, or against ``layout`` (a shape, None
    for any, and the accepted dtypes) when given."""
    shape, dtypes = layout if layout is not None else (target.shape, (target.dtype,))
    problems = []
    if shape is not None and value.shape != shape:
        problems.append(f"{name} has shape {value.shape} in the checkpoint, {shape} {where}")
    if value.dtype not in dtypes:
        want = " or ".join(str(d) for d in dtypes)
        problems.append(f"{name} has dtype {value.dtype} in the checkpoint, {want} {where}")
    return problems


def _rng_states(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Generator names (module paths) and bit-generator kinds."""
    problems = _key_problems(
        saved,
        current,
        "no saved random state for generators",
        "random states for unknown generators",
    )
    for key, state in current.items():
        if key in saved and isinstance(state, Mapping):
            got = saved[key].get("bit_generator") if isinstance(saved[key], Mapping) else None
            if got != state.get("bit_generator"):
                problems.append(
                    f"generator {key!r} is {got!r} in the checkpoint, "
                    f"{state.get('bit_generator')!r} here"
                )
    return problems


def _optimizer(saved: Any, optimizer: Optimizer) -> list[str]:
    """Group count, parameters per group, and every saved state array against its parameter
    (hyperparameters and state names are checked by the optimizer's own load)."""
    if not isinstance(saved, Mapping) or not isinstance(saved.get("param_groups"), list):
        return ["the saved optimizer state has no 'param_groups' list"]
    problems = []
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        problems.append(
            f"{len(groups)} param groups in the checkpoint, {len(optimizer.param_groups)} here"
        )
    for i, (group, mine) in enumerate(zip(groups, optimizer.param_groups, strict=False)):
        n_saved = len(group.get("params", ())) if isinstance(group, Mapping) else -1
        if n_saved != len(mine["params"]):
            problems.append(
                f"param_groups[{i}] has {n_saved} params in the checkpoint, "
                f"{len(mine['params'])} here"
            )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = saved.get("state", {})
    if not isinstance(state, Mapping):
        return [*problems, "the saved optimizer 'state' is not a dict"]
    unknown = [k for k in state if not (isinstance(k, int) and 0 <= k < len(params))]
    if unknown:
        problems.append(f"state for unknown parameter indices {unknown}")
    for index, entry in state.items():
        if index in unknown or not isinstance(entry, Mapping):
            continue
        for name, value in entry.items():
            if isinstance(value, np.ndarray):
                problems += _same_layout(
                    f"state[{index}][{name!r}]",
                    value,
                    params[index],
                    f"for params[{index}]",
                    optimizer.saved_state_layout(name, params[index]),
                )
    return problems
