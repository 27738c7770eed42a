"""Generate tests/data/golden_nn_functions.npz: torch activations and losses in float64.

Run it with the fixture venv (torch), never from the tests::

    path/to/fixture-venv/bin/python tools/make_golden_nn_functions.py

Activations: each case builds one ``torch.nn`` activation in float64, feeds a seeded input ``x``
(normal values plus fixed extremes such as ±50, ±1e-8 and both sides of Softplus's threshold;
never exactly 0, where ReLU-type kinks have no derivative) and a seeded upstream gradient ``dy``,
and records ``y = act(x)`` and ``dx`` from ``y.backward(dy)`` (PReLU also its weight and weight
gradient).

Losses: each case builds one ``torch.nn`` loss in float64 and records its output for a seeded
input/target pair and the input gradient: of the loss itself for ``"mean"``/``"sum"``, of
``sum(loss * upstream)`` for ``"none"``.

Layout of the npz:

* ``meta``: JSON string (versions, case names);
* ``act/<case>/config``: JSON ``{"class": name, "kwargs": ...}`` (torch's = ferroptim's names);
* ``act/<case>/x``, ``dy``, ``y``, ``dx`` (PReLU: ``weight``, ``dweight``);
* ``loss/<case>/config``: JSON ``{"class": name, "kwargs": ...}`` without array arguments;
* ``loss/<case>/weight``, ``pos_weight`` (when used), ``input``, ``target`` (int64 for
  CrossEntropyLoss), ``output`` (0-d for reduced losses), ``upstream`` (``"none"`` only),
  ``grad``.
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

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden_nn_functions.npz"

ACT_SHAPE = (4, 3, 6)
EXTREMES = (-50.0, -20.0, -5.0, -1e-3, -1e-8, 1e-8, 1e-3, 5.0, 20.0, 50.0, 4.999, 5.001)

# (case name, class name, kwargs)
ACTIVATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("sigmoid", "Sigmoid", {}),
    ("tanh", "Tanh", {}),
    ("relu", "ReLU", {}),
    ("leaky_relu", "LeakyReLU", {}),
    ("leaky_relu_0.2", "LeakyReLU", dict(negative_slope=0.2)),
    ("prelu", "PReLU", {}),
    ("prelu_channels", "PReLU", dict(num_parameters=3, init=0.1)),
    ("elu", "ELU", {}),
    ("elu_0.5", "ELU", dict(alpha=0.5)),
    ("gelu", "GELU", {}),
    ("gelu_tanh", "GELU", dict(approximate="tanh")),
    ("silu", "SiLU", {}),
    ("softplus", "Softplus", {}),
    ("softplus_beta2", "Softplus", dict(beta=2.0, threshold=10.0)),
    ("softmax", "Softmax", dict(dim=-1)),
    ("softmax_dim1", "Softmax", dict(dim=1)),
    ("log_softmax", "LogSoftmax", dict(dim=-1)),
    ("log_softmax_dim0", "LogSoftmax", dict(dim=0)),
]

REDUCTIONS = ("mean", "sum", "none")


def _ce_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, kwargs incl. array weight, data spec) for CrossEntropyLoss."""
    weight = [0.5, 1.0, 2.0, 0.25, 1.5]
    cases = []
    for reduction in REDUCTIONS:
        cases += [
            (f"ce_plain_{reduction}", dict(reduction=reduction), dict(ignored=0)),
            (f"ce_weight_{reduction}", dict(weight=weight, reduction=reduction), dict(ignored=2)),
            (
                f"ce_smooth_{reduction}",
                dict(label_smoothing=0.1, reduction=reduction),
                dict(ignored=2),
            ),
            (
                f"ce_weight_smooth_ignore2_{reduction}",
                dict(weight=weight, label_smoothing=0.25, ignore_index=2, reduction=reduction),
                dict(ignored=0),
            ),
            (
                f"ce_3d_{reduction}",
                dict(weight=weight, label_smoothing=0.2, reduction=reduction),
                dict(ignored=3, shape=(3, 5, 2, 3)),
            ),
        ]
    cases += [
        ("ce_unbatched_mean", dict(label_smoothing=0.3), dict(ignored=0, shape=(5,))),
        ("ce_unbatched_none", dict(reduction="none"), dict(ignored=0, shape=(5,))),
        ("ce_all_ignored_mean", dict(weight=weight), dict(ignored="all")),
        ("ce_all_ignored_smooth_mean", dict(label_smoothing=0.1), dict(ignored="all")),
    ]
    return cases


def _elementwise_cases() -> list[tuple[str, str, dict[str, Any]]]:
    cases = []
    for reduction in REDUCTIONS:
        cases += [
            (f"mse_{reduction}", "MSELoss", dict(reduction=reduction)),
            (f"l1_{reduction}", "L1Loss", dict(reduction=reduction)),
            (f"huber_{reduction}", "HuberLoss", dict(reduction=reduction)),
            (f"huber_0.5_{reduction}", "HuberLoss", dict(reduction=reduction, delta=0.5)),
            (f"bce_{reduction}", "BCEWithLogitsLoss", dict(reduction=reduction)),
            (
                f"bce_weight_pos_{reduction}",
                "BCEWithLogitsLoss",
                dict(reduction=reduction, weight=[0.5, 1.0, 2.0, 1.5], pos_weight=[3.0, 0.5, 1, 2]),
            ),
            (
                f"bce_row_weight_{reduction}",
                "BCEWithLogitsLoss",
                dict(reduction=reduction, weight=[[0.5], [1.0], [2.0], [0.0], [1.0], [3.0]]),
            ),
        ]
    return cases


def activation_case(torch: Any, name: str, cls: str, kwargs: dict[str, Any]) -> dict:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal(ACT_SHAPE) * 3.0
    x.reshape(-1)[: len(EXTREMES)] = EXTREMES
    x.reshape(-1)[len(EXTREMES) : 2 * len(EXTREMES)] = np.array(EXTREMES) / 2
    x[x == 0] = 0.5
    dy = rng.standard_normal(ACT_SHAPE)
    module = getattr(torch.nn, cls)(**kwargs).double()
    if cls == "PReLU":
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, module.weight.shape)))
    out = {"x": x, "dy": dy}
    if cls == "PReLU":
        out["weight"] = module.weight.detach().numpy().copy()
    xt = torch.tensor(x, requires_grad=True)
    y = module(xt)
    y.backward(torch.from_numpy(dy))
    out["y"] = y.detach().numpy()
    out["dx"] = xt.grad.numpy()
    if cls == "PReLU":
        out["dweight"] = module.weight.grad.numpy()
    return out


def ce_data(rng: np.random.Generator, spec: dict[str, Any], ignore_index: int) -> tuple:
    shape = spec.get("shape", (8, 5))
    x = rng.standard_normal(shape) * 2.0
    if len(shape) == 2:
        x[0] = [50.0, -50.0, 0.5, 1000.0, -1000.0]  # extreme logits stay finite
    classes = shape[0] if len(shape) == 1 else shape[1]
    target_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    target = rng.integers(0, classes, target_shape).astype(np.int64)
    flat = target.reshape(-1)
    if spec["ignored"] == "all":
        flat[:] = ignore_index
    else:
        flat[1 : 1 + spec["ignored"]] = ignore_index
        if ignore_index == 2:
            flat[3] = 2  # the custom ignore_index is also a valid class
    return x, target


def elementwise_data(rng: np.random.Generator, cls: str) -> tuple:
    x = rng.standard_normal((6, 4)) * 2.0
    if cls == "BCEWithLogitsLoss":
        x.reshape(-1)[:6] = [50.0, -50.0, 1000.0, -1000.0, 1e-9, -30.0]
        target = rng.uniform(0.0, 1.0, x.shape)
        target.reshape(-1)[:4] = [0.0, 1.0, 0.0, 1.0]
        return x, target
    target = rng.standard_normal(x.shape)
    x.reshape(-1)[:3] = target.reshape(-1)[:3]  # exact ties: L1's subgradient sign(0) = 0
    target.reshape(-1)[3:5] = [0.25, 0.25]
    x.reshape(-1)[3:5] = [0.75, 1.25]  # |d| exactly 0.5 and 1.0: Huber's branch boundaries
    return x, target


def loss_case(torch: Any, name: str, cls: str, kwargs: dict[str, Any], spec: dict) -> dict:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out: dict[str, np.ndarray] = {}
    torch_kwargs = dict(kwargs)
    for key in ("weight", "pos_weight"):
        if key in kwargs:
            out[key] = np.asarray(kwargs[key], np.float64)
            torch_kwargs[key] = torch.from_numpy(out[key])
    if cls == "CrossEntropyLoss":
        x, target = ce_data(rng, spec, kwargs.get("ignore_index", -100))
        target_t = torch.from_numpy(target)
    else:
        x, target = elementwise_data(rng, cls)
        target_t = torch.from_numpy(target)
    loss_fn = getattr(torch.nn, cls)(**torch_kwargs)
    xt = torch.tensor(x, requires_grad=True)
    value = loss_fn(xt, target_t)
    if kwargs.get("reduction", "mean") == "none":
        upstream = rng.standard_normal(tuple(value.shape))
        value.backward(torch.from_numpy(upstream))
        out["upstream"] = upstream
    else:
        value.backward()
    out.update(input=x, target=target, output=value.detach().numpy(), grad=xt.grad.numpy())
    return out


def build(torch: Any) -> dict[str, np.ndarray]:
    torch.set_default_dtype(torch.float64)
    arrays: dict[str, np.ndarray] = {}
    act_names, loss_names = [], []
    for name, cls, kwargs in ACTIVATIONS:
        act_names.append(name)
        arrays[f"act/{name}/config"] = np.array(json.dumps({"class": cls, "kwargs": kwargs}))
        for key, value in activation_case(torch, name, cls, kwargs).items():
            arrays[f"act/{name}/{key}"] = value
    losses = [(n, "CrossEntropyLoss", k, s) for n, k, s in _ce_cases()]
    losses += [(n, c, k, {}) for n, c, k in _elementwise_cases()]
    for name, cls, kwargs, spec in losses:
        loss_names.append(name)
        scalars = {k: v for k, v in kwargs.items() if k not in ("weight", "pos_weight")}
        arrays[f"loss/{name}/config"] = np.array(json.dumps({"class": cls, "kwargs": scalars}))
        for key, value in loss_case(torch, name, cls, kwargs, spec).items():
            arrays[f"loss/{name}/{key}"] = value
    meta = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "activations": act_names,
        "losses": loss_names,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    import torch

    arrays = build(torch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(arrays)} arrays)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
