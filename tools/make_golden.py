"""Generate tests/data/golden.npz: torch.optim / optax.lion trajectories that ferroptim must match.

Run it with the fixture venv (torch, jax, optax), never from the tests::

    path/to/fixture-venv/bin/python tools/make_golden.py

For every case and for float32 and float64 it draws seeded initial params for three tensors of odd
sizes and 25 seeded gradient steps, runs the reference optimizer and records the final params and
every state tensor. The references are

* ``torch.optim.<Name>(..., foreach=False)`` (``fused=False`` where torch has the option): torch's
  single-tensor path, with ``torch.set_default_dtype`` left at float32 (so ``step`` and NAdam's
  ``mu_product`` are float32 scalar tensors, as in a default torch program);
* ``optax.lion`` for Lion (jax with x64 enabled so float64 stays float64). optax has no
  ``maximize``: the maximize case feeds it the negated gradients.

Layout of the npz (``<case>/<dtype>/...``, dtype "float32" or "float64"):

* ``meta``: JSON string (versions, cases, dtypes, steps, shapes);
* ``<case>/<dtype>/config``: JSON string ``{"optimizer": ferroptim class name, "kwargs": ...,
  "reference": ..., "steps": ..., "shapes": ..., "state_keys": [...], "scalar_state_keys": [...]}``;
* ``<case>/<dtype>/init/<i>``: initial params;
* ``<case>/<dtype>/grads``: shape (steps, total size), the gradients of step k concatenated in
  parameter order (flattened C order);
* ``<case>/<dtype>/final/param/<i>``: params after the last step;
* ``<case>/<dtype>/final/state/<key>/<i>``: torch's state tensors (optax's ``mu`` as
  ``exp_avg``) and the scalar states (``step``, ``mu_product``) as float64 0-d arrays.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

STEPS = 25
SHAPES: tuple[tuple[int, ...], ...] = ((7,), (3, 5), (17,))
# Per-tensor gradient scales: moderate, small (sqrt(v) still >> eps) and large.
GRAD_SCALES = (1.0, 0.01, 5.0)
ZERO_FRACTION = 0.05  # exact zeros in the gradients (sign(0) for Lion, zero updates elsewhere)
DTYPES = ("float32", "float64")
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden.npz"

# (case name, ferroptim/torch class name, kwargs). kwargs use torch's (= ferroptim's) names.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("sgd_plain", "SGD", dict(lr=0.05)),
    ("sgd_momentum", "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd_dampening", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("sgd_nesterov", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd_weight_decay", "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.05)),
    ("sgd_maximize", "SGD", dict(lr=0.05, weight_decay=0.05, maximize=True)),
    ("adagrad_plain", "Adagrad", dict(lr=0.05)),
    (
        "adagrad_full",
        "Adagrad",
        dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.05),
    ),
    ("adagrad_maximize", "Adagrad", dict(lr=0.05, maximize=True)),
    ("adadelta_plain", "Adadelta", dict(lr=1.0, rho=0.9, eps=1e-6)),
    ("adadelta_weight_decay", "Adadelta", dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.05)),
    ("adadelta_maximize", "Adadelta", dict(lr=1.0, maximize=True)),
    ("rmsprop_plain", "RMSprop", dict(lr=0.01)),
    ("rmsprop_centered", "RMSprop", dict(lr=0.01, centered=True)),
    ("rmsprop_momentum", "RMSprop", dict(lr=0.01, momentum=0.9)),
    (
        "rmsprop_centered_momentum_wd",
        "RMSprop",
        dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.05),
    ),
    ("rmsprop_maximize", "RMSprop", dict(lr=0.01, maximize=True)),
    ("adam_plain", "Adam", dict(lr=0.01)),
    ("adam_amsgrad", "Adam", dict(lr=0.01, amsgrad=True)),
    ("adam_weight_decay", "Adam", dict(lr=0.01, weight_decay=0.05)),
    ("adam_maximize", "Adam", dict(lr=0.01, maximize=True)),
    ("adam_decoupled", "Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    # beta1 < 0.5: lerp weight 1 - beta1 >= 0.5 takes torch's other lerp branch.
    ("adam_low_beta1", "Adam", dict(lr=0.01, betas=(0.3, 0.95))),
    ("adamw_plain", "AdamW", dict(lr=0.01, weight_decay=0.1)),
    (
        "adamw_amsgrad_maximize",
        "AdamW",
        dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True),
    ),
    ("adamax_plain", "Adamax", dict(lr=0.01)),
    ("adamax_weight_decay", "Adamax", dict(lr=0.01, weight_decay=0.05)),
    ("adamax_maximize", "Adamax", dict(lr=0.01, maximize=True)),
    ("nadam_plain", "NAdam", dict(lr=0.01)),
    ("nadam_weight_decay", "NAdam", dict(lr=0.01, weight_decay=0.05)),
    ("nadam_decoupled", "NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("nadam_maximize", "NAdam", dict(lr=0.01, maximize=True)),
    # beta2 = 0.999: rho_t <= 5 for t <= 5 (un-rectified branch), > 5 from t = 6 on.
    ("radam_plain", "RAdam", dict(lr=0.01)),
    ("radam_weight_decay", "RAdam", dict(lr=0.01, weight_decay=0.05)),
    ("radam_decoupled", "RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("radam_maximize", "RAdam", dict(lr=0.01, maximize=True)),
    ("lion_plain", "Lion", dict(lr=0.01, betas=(0.9, 0.99))),
    ("lion_weight_decay", "Lion", dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)),
    ("lion_maximize", "Lion", dict(lr=0.01, betas=(0.9, 0.99), maximize=True)),
]


def case_seed(name: str) -> int:
    """A stable per-case seed (the same for both dtypes: float32 data is float64 data rounded)."""
    return zlib.crc32(name.encode())


def draw(name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """float64 initial params and the (steps, total) gradient matrix of case ``name``."""
    rng = np.random.default_rng(case_seed(name))
    init = [rng.standard_normal(s) for s in SHAPES]
    cols = []
    for shape, scale in zip(SHAPES, GRAD_SCALES, strict=True):
        size = int(np.prod(shape))
        g = rng.standard_normal((STEPS, size)) * scale
        g[rng.random((STEPS, size)) < ZERO_FRACTION] = 0.0
        cols.append(g)
    return init, np.concatenate(cols, axis=1)


def split(row: np.ndarray) -> list[np.ndarray]:
    """One gradient row cut into arrays shaped like the params."""
    out, start = [], 0
    for shape in SHAPES:
        size = int(np.prod(shape))
        out.append(row[start : start + size].reshape(shape))
        start += size
    return out


def run_torch(cls_name: str, kwargs: dict[str, Any], init, grads) -> tuple[list, dict, list]:
    import inspect

    import torch

    cls = getattr(torch.optim, cls_name)
    extra: dict[str, Any] = {"foreach": False}
    if "fused" in inspect.signature(cls.__init__).parameters:
        extra["fused"] = False
    params = [torch.from_numpy(p.copy()).requires_grad_(True) for p in init]
    opt = cls(params, **kwargs, **extra)
    for row in grads:
        for p, g in zip(params, split(row), strict=True):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
    final = [p.detach().numpy().copy() for p in params]
    states: dict[str, list] = {}
    keys: list[str] = []
    for i, p in enumerate(params):
        for key, value in opt.state[p].items():
            if value is None:  # SGD without momentum keeps momentum_buffer = None
                continue
            if i == 0:
                keys.append(key)
            if value.ndim == 0:
                value = np.float64(value.item())
            else:
                assert value.dtype == p.dtype, (cls_name, key, value.dtype)
                value = value.detach().numpy().copy()
            states.setdefault(key, []).append(value)
    return final, states, keys


def optax_trajectory(tx: Any, kwargs: dict[str, Any], init, grads) -> tuple[list, Any]:
    """Run the optax transformation ``tx`` from ``init`` over every row of ``grads`` (negated
    with ``maximize``); the final parameters (dtypes checked unchanged) and optax's state."""
    import jax.numpy as jnp
    import optax

    sign = -1.0 if kwargs.get("maximize", False) else 1.0
    params = [jnp.asarray(p) for p in init]
    state = tx.init(params)
    for row in grads:
        g = [jnp.asarray(sign * x) for x in split(row)]
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    final = [np.asarray(p).copy() for p in params]
    for p, f in zip(init, final, strict=True):
        assert f.dtype == p.dtype, (p.dtype, f.dtype)
    return final, state


def run_optax(kwargs: dict[str, Any], init, grads) -> tuple[list, dict, list]:
    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    b1, b2 = kwargs.get("betas", (0.9, 0.99))
    tx = optax.lion(
        learning_rate=kwargs["lr"], b1=b1, b2=b2, weight_decay=kwargs.get("weight_decay", 0.0)
    )
    final, state = optax_trajectory(tx, kwargs, init, grads)
    lion_state = state[0]  # chain(scale_by_lion, add_decayed_weights, scale_by_learning_rate)
    mu = [np.asarray(m).copy() for m in lion_state.mu]
    count = float(lion_state.count)
    states = {"step": [np.float64(count)] * len(init), "exp_avg": mu}
    return final, states, ["step", "exp_avg"]


def save_fixture(out: Path, data: dict[str, np.ndarray], meta: dict[str, Any], what: str) -> None:
    """Write ``data`` and ``meta`` (as JSON under ``"meta"``) to the compressed npz ``out``."""
    data["meta"] = np.array(json.dumps(meta))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **data)
    print(f"wrote {out} ({out.stat().st_size} bytes, {what})")


def store_case(
    data: dict[str, np.ndarray],
    prefix: str,
    optimizer: str,
    kwargs: dict[str, Any],
    reference: str,
    init: list[np.ndarray],
    grads: np.ndarray,
    result: tuple[list, dict, list],
) -> None:
    """One case's arrays under ``prefix``: its config (JSON), the gradients, the initial and
    final parameters and every final state (per-element and scalar); ``result`` is what
    :func:`run_torch` or :func:`run_optax` returns."""
    final, states, keys = result
    config = {
        "optimizer": optimizer,
        "kwargs": kwargs,
        "reference": reference,
        "steps": STEPS,
        "shapes": SHAPES,
        "state_keys": [k for k in keys if states[k][0].ndim > 0],
        "scalar_state_keys": [k for k in keys if states[k][0].ndim == 0],
    }
    data[f"{prefix}/config"] = np.array(json.dumps(config))
    data[f"{prefix}/grads"] = grads
    for i, p in enumerate(init):
        data[f"{prefix}/init/{i}"] = p
    for i, p in enumerate(final):
        data[f"{prefix}/final/param/{i}"] = p
    for key, values in states.items():
        for i, v in enumerate(values):
            data[f"{prefix}/final/state/{key}/{i}"] = np.asarray(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import jax
    import optax
    import torch

    assert torch.get_default_dtype() == torch.float32
    torch.set_num_threads(1)

    data: dict[str, np.ndarray] = {}
    for name, cls_name, kwargs in CASES:
        init64, grads64 = draw(name)
        for dtype in DTYPES:
            init = [p.astype(dtype) for p in init64]
            grads = grads64.astype(dtype)
            if cls_name == "Lion":
                result = run_optax(kwargs, init, grads)
                reference = f"optax.lion (optax {optax.__version__}, jax {jax.__version__})"
            else:
                result = run_torch(cls_name, kwargs, init, grads)
                reference = f"torch.optim.{cls_name}(foreach=False) (torch {torch.__version__})"
            store_case(data, f"{name}/{dtype}", cls_name, kwargs, reference, init, grads, result)
    meta = {
        "generator": "tools/make_golden.py",
        "torch": torch.__version__,
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "torch_default_dtype": str(torch.get_default_dtype()),
        "cases": [name for name, _, _ in CASES],
        "dtypes": list(DTYPES),
        "steps": STEPS,
        "shapes": SHAPES,
        "grad_scales": GRAD_SCALES,
    }
    save_fixture(args.out, data, meta, f"{len(CASES)} cases x {DTYPES}")


if __name__ == "__main__":
    main()
