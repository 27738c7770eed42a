"""Generate ``tests/data/<fixture>`` for every optimizer the registry says follows optax.

Run it with a venv that has jax and optax (and numpy), never from the tests::

    python -m venv /tmp/optax && /tmp/optax/bin/pip install numpy jax optax
    /tmp/optax/bin/python tools/make_golden_optax.py

It reads the registry from the source tree without importing the compiled extension.

An optimizer follows optax when its registry entry (``ferroptim._registry``) names a fixture other
than ``golden.npz`` (torch's, written by ``tools/make_golden.py``); its reference is
``optax.<kernel>`` (``optax.adabelief`` for ``kernel="adabelief"``), called with
``learning_rate``, ``b1``/``b2`` for ``betas`` and the other hyperparameters by name. optax has no
weight decay or maximize in these aliases, so the cases build them around it:

* L2 decay: ``chain(add_decayed_weights(wd), optax.<kernel>(lr))`` (the gradient plus ``wd*p``);
* decoupled decay: ``chain(optax.<kernel>(1.0), add_decayed_weights(-wd), scale(lr))``, that is
  ``p -= lr * (u + wd*p)``;
* maximize: optax is fed the negated gradients.

Cases, params, gradients (same seeds, shapes and 25 steps as ``tools/make_golden.py``) and the
npz layout are those of ``tools/make_golden.py``; optax's first and second moments (``mu``,
``nu``) are recorded under the registry's first two state names, its ``count`` as ``step``.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
from make_golden import DTYPES, SHAPES, STEPS, draw, optax_trajectory, save_fixture, store_case

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def _registry_module() -> Any:
    """``ferroptim._registry`` from the source tree, without running the package's ``__init__``
    (which loads the compiled extension)."""
    package = types.ModuleType("ferroptim")
    package.__path__ = [str(ROOT / "python" / "ferroptim")]
    sys.modules.setdefault("ferroptim", package)
    return importlib.import_module("ferroptim._registry")


registry = _registry_module()


def cases(spec: Any) -> list[tuple[str, dict[str, Any]]]:
    """Plain, a lerp-branch beta1, L2 decay, decoupled decay (when the spec has the option) and
    maximize, each with lr 0.01."""
    out = [(f"{spec.kernel}_plain", {"lr": 0.01})]
    if "betas" in spec.defaults:
        beta2 = spec.defaults["betas"][1]
        out.append((f"{spec.kernel}_low_beta1", {"lr": 0.01, "betas": (0.3, beta2)}))
    out.append((f"{spec.kernel}_weight_decay", {"lr": 0.01, "weight_decay": 0.05}))
    if spec.decay == "option":
        decoupled = {"lr": 0.01, "weight_decay": 0.05, "decoupled_weight_decay": True}
        out.append((f"{spec.kernel}_decoupled", decoupled))
    out.append((f"{spec.kernel}_maximize", {"lr": 0.01, "maximize": True}))
    return out


def transformation(spec: Any, kwargs: dict[str, Any]):
    import optax

    group = {**spec.defaults, **kwargs}
    options: dict[str, Any] = {}
    for h in spec.hypers:
        if h.kind == "betas":
            options["b1"], options["b2"] = group[h.name]
        elif h.name not in ("lr", "weight_decay", "maximize", "decoupled_weight_decay"):
            options[h.name] = group[h.name]
    alias = getattr(optax, spec.kernel)
    lr, wd = group["lr"], group.get("weight_decay", 0.0)
    if wd and group.get("decoupled_weight_decay", spec.decay == "decoupled"):
        return optax.chain(
            alias(learning_rate=1.0, **options), optax.add_decayed_weights(-wd), optax.scale(lr)
        )
    if wd:
        return optax.chain(optax.add_decayed_weights(wd), alias(learning_rate=lr, **options))
    return alias(learning_rate=lr, **options)


def moments_state(state: Any) -> Any:
    """The (count, mu, nu) state inside optax's (possibly chained) state."""
    if hasattr(state, "mu") and hasattr(state, "count"):
        return state
    if isinstance(state, tuple):
        for inner in state:
            found = moments_state(inner)
            if found is not None:
                return found
    return None


def run(spec: Any, kwargs: dict[str, Any], init, grads):
    final, state = optax_trajectory(transformation(spec, kwargs), kwargs, init, grads)
    moments = moments_state(state)
    names = [s.name for s in spec.states]
    states: dict[str, list] = {"step": [np.float64(float(moments.count))] * len(init)}
    states[names[0]] = [np.asarray(m).copy() for m in moments.mu]
    if len(names) > 1:
        states[names[1]] = [np.asarray(v).copy() for v in moments.nu]
    return final, states, list(states)


def write(spec_list: list[Any], out: Path) -> None:
    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    data: dict[str, np.ndarray] = {}
    names = []
    for spec in spec_list:
        for name, kwargs in cases(spec):
            names.append(name)
            init64, grads64 = draw(name)
            for dtype in DTYPES:
                init = [p.astype(dtype) for p in init64]
                grads = grads64.astype(dtype)
                result = run(spec, kwargs, init, grads)
                reference = (
                    f"optax.{spec.kernel} (optax {optax.__version__}, jax {jax.__version__})"
                )
                store_case(
                    data, f"{name}/{dtype}", spec.name, kwargs, reference, init, grads, result
                )
    meta = {
        "generator": "tools/make_golden_optax.py",
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cases": names,
        "dtypes": list(DTYPES),
        "steps": STEPS,
        "shapes": SHAPES,
    }
    save_fixture(out, data, meta, f"{len(names)} cases x {DTYPES}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    fixtures: dict[str, list[Any]] = {}
    for spec in registry.OPTIMIZERS:
        if spec.golden != "golden.npz":
            fixtures.setdefault(spec.golden, []).append(spec)
    for fixture, spec_list in fixtures.items():
        write(spec_list, args.data / fixture)


if __name__ == "__main__":
    main()
