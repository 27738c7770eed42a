"""Generate tests/data/golden_swa.npz: torch.optim.swa_utils results ferroptim must match.

Run it with the fixture venv (torch), never from the tests::

    path/to/fixture-venv/bin/python tools/make_golden_swa.py

Three groups of cases, each replayed by ``tests/test_swa_golden.py`` with ferroptim's classes (the
case tables, :func:`build_model`, :func:`averaging_kwargs` and :func:`run_swalr` are shared; this
module imports torch only inside :func:`main`):

* ``averaged/<case>``: an ``AveragedModel`` of a small MLP with batch norm (``ARCH``) built from
  snapshot 0, then ``update_parameters`` with each of the ``SNAPSHOTS`` seeded snapshots in turn
  (SWA by default, ``get_swa_multi_avg_fn``, ``get_swa_avg_fn``, ``get_ema_multi_avg_fn`` and
  ``get_ema_avg_fn`` with several decays, ``use_buffers`` on and off, float64 and float32);
* ``update_bn/<case>``: ``update_bn`` over a fixed list of batches on a model in eval mode whose
  batch norms have stale statistics (1-d, 3-d and 4-d inputs, tuple or bare batches, on a plain
  model and on an ``AveragedModel``);
* ``swalr/<case>``: ``SWALR`` learning rates on an SGD with two groups (cos and linear,
  ``anneal_epochs`` 0, 1, 5, 10, one ``swa_lr`` or one per group, SWALR after a cosine phase).

Layout of the npz:

* ``meta``: JSON string (versions, case names per group);
* ``snapshot/<dtype>/<k>/<key>``: the snapshots' state_dicts (torch keys);
* ``averaged/<case>/config``: JSON (the case plus ``keys``, torch's ``state_dict()`` key order);
* ``averaged/<case>/<i>/<key>``: the averaged model's state_dict after update ``i``;
* ``averaged/<case>/x`` and ``/y``: an input and the averaged model's eval-mode output at the end;
* ``update_bn/<case>/config``; ``/batch/<i>``; ``/before/<key>`` (the model's state_dict before
  ``update_bn``); ``/after/<key>``; ``/momentum`` (each batch norm's momentum afterwards, NaN for
  None); ``/training`` (the model's mode afterwards);
* ``swalr/<case>/config`` (the case plus ``state_keys``); ``swalr/<case>/lr``: (steps + 1, groups).
"""

from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden_swa.npz"

#: the averaged model: (class name, positional arguments)
ARCH: list[tuple[str, list[Any]]] = [
    ("Linear", [4, 6]),
    ("BatchNorm1d", [6]),
    ("ReLU", []),
    ("Linear", [6, 3]),
]
SNAPSHOTS = 5
DTYPES = ("float64", "float32")


def averaged_case(avg: list[Any] | None, use_buffers: bool, dtype: str = "float64") -> dict:
    """``avg``: None (the default SWA), ``["swa"]``, ``["swa_multi"]``, ``["ema", decay]`` or
    ``["ema_multi", decay]`` (``None`` decay: the factory's default)."""
    return {"avg": avg, "use_buffers": use_buffers, "dtype": dtype}


AVERAGED: dict[str, dict[str, Any]] = {
    "swa": averaged_case(None, False),
    "swa_buffers": averaged_case(None, True),
    "swa_float32": averaged_case(None, False, "float32"),
    "swa_buffers_float32": averaged_case(None, True, "float32"),
    "swa_avg_fn": averaged_case(["swa"], False),
    # torch's get_swa_multi_avg_fn refuses integer buffers (addcdiv): use_buffers=False only
    "swa_multi": averaged_case(["swa_multi"], False),
    "swa_multi_float32": averaged_case(["swa_multi"], False, "float32"),
    "ema_multi_default": averaged_case(["ema_multi", None], False),
    "ema_multi_0.9": averaged_case(["ema_multi", 0.9], False),
    "ema_multi_0.9_buffers": averaged_case(["ema_multi", 0.9], True),
    "ema_multi_0.3_buffers": averaged_case(["ema_multi", 0.3], True),  # lerp's other branch
    "ema_multi_0.9_buffers_float32": averaged_case(["ema_multi", 0.9], True, "float32"),
    "ema_avg_fn_0.8": averaged_case(["ema", 0.8], False),
    "ema_avg_fn_0.8_buffers": averaged_case(["ema", 0.8], True),
    "ema_avg_fn_default_buffers": averaged_case(["ema", None], True),
}

#: update_bn cases: model layers (as ARCH), input shape per batch, batch sizes, tuple batches
#: or bare arrays, run on an AveragedModel of the model (after averaging the snapshots)
UPDATE_BN: dict[str, dict[str, Any]] = {
    "mlp_tuples": {
        "arch": [
            ("Linear", [4, 6]),
            ("BatchNorm1d", [6], {"momentum": 0.3}),
            ("ReLU", []),
            ("Linear", [6, 5]),
            ("BatchNorm1d", [5]),
        ],
        "shape": [4],
        "sizes": [8, 5, 11],
        "tuples": True,
        "averaged": False,
    },
    "mlp_bare_momentum_none": {
        "arch": [("Linear", [4, 6]), ("BatchNorm1d", [6], {"momentum": None}), ("ReLU", [])],
        "shape": [4],
        "sizes": [3, 9],
        "tuples": False,
        "averaged": False,
    },
    "bn1d_sequence": {
        "arch": [("BatchNorm1d", [3])],
        "shape": [3, 7],
        "sizes": [4, 2, 6],
        "tuples": True,
        "averaged": False,
    },
    "bn2d": {
        "arch": [("BatchNorm2d", [3], {"eps": 1e-3})],
        "shape": [3, 4, 5],
        "sizes": [2, 3],
        "tuples": False,
        "averaged": False,
    },
    "averaged_swa": {
        "arch": ARCH,
        "shape": [4],
        "sizes": [10, 7, 12, 4],
        "tuples": True,
        "averaged": True,
    },
}


def swalr_case(swa_lr: float | list[float], steps: int = 20, before: int = 0, **kwargs: Any):
    """SGD with groups of lr 0.1 and 0.03; ``before`` steps of CosineAnnealingLR(T_max=30) (built
    before the SWALR, as in torch's example) then SWALR steps."""
    return {"swa_lr": swa_lr, "kwargs": kwargs, "steps": steps, "before": before}


SWALR: dict[str, dict[str, Any]] = {
    "cos_default": swalr_case(0.05),
    "linear_5_per_group": swalr_case([0.01, 0.002], anneal_epochs=5, anneal_strategy="linear"),
    "cos_0": swalr_case(0.05, anneal_epochs=0),
    "linear_0": swalr_case(0.02, anneal_epochs=0, anneal_strategy="linear"),
    "linear_1": swalr_case(0.02, anneal_epochs=1, anneal_strategy="linear"),
    "cos_7_per_group_upward": swalr_case([0.5, 0.04], anneal_epochs=7),
    "cos_after_cosine": swalr_case(0.01, steps=18, before=12, anneal_epochs=6),
}
LRS = [0.1, 0.03]


def layer_kwargs(layer: tuple[Any, ...]) -> dict[str, Any]:
    return dict(layer[2]) if len(layer) > 2 else {}


def build_model(nn: Any, arch: list[Any], dtype: str, ferroptim: bool) -> Any:
    """``nn.Sequential`` of ``arch`` from ``nn`` (``torch.nn`` or ``ferroptim.nn``) in ``dtype``."""
    if ferroptim:
        layers = [
            getattr(nn, layer[0])(*layer[1], **layer_kwargs(layer), dtype=getattr(np, dtype))
            if layer[0] != "ReLU"
            else nn.ReLU()
            for layer in arch
        ]
        return nn.Sequential(*layers)
    import torch

    layers = [getattr(nn, layer[0])(*layer[1], **layer_kwargs(layer)) for layer in arch]
    return nn.Sequential(*layers).to(getattr(torch, dtype))


def averaging_kwargs(avg: list[Any] | None, swa_utils: Any) -> dict[str, Any]:
    """The ``avg_fn`` / ``multi_avg_fn`` keyword ``avg`` names, from ``swa_utils`` (torch's or
    ferroptim's)."""
    if avg is None:
        return {}
    kind, *args = avg
    args = [a for a in args if a is not None]
    multi = kind.endswith("_multi")
    factory = getattr(
        swa_utils, f"get_{kind.removesuffix('_multi')}_{'multi_' if multi else ''}avg_fn"
    )
    return {"multi_avg_fn" if multi else "avg_fn": factory(*args)}


def snapshot_states(dtype: str) -> list[dict[str, np.ndarray]]:
    """SNAPSHOTS seeded state_dicts of ARCH (torch keys): normal weights, batch-norm weights near 1,
    positive running variances, num_batches_tracked counts of different sizes."""
    shapes = {
        "0.weight": (6, 4),
        "0.bias": (6,),
        "1.weight": (6,),
        "1.bias": (6,),
        "1.running_mean": (6,),
        "1.running_var": (6,),
        "3.weight": (3, 6),
        "3.bias": (3,),
    }
    counts = [0, 7, 3, 12, 5]
    out = []
    for k in range(SNAPSHOTS):
        rng = np.random.default_rng(100 + k)
        state: dict[str, np.ndarray] = {}
        for key, shape in shapes.items():
            value = rng.normal(size=shape)
            if key == "1.weight":
                value = 1 + 0.2 * value
            if key == "1.running_var":
                value = 0.2 + np.abs(value)
            state[key] = value.astype(dtype)
        state["1.num_batches_tracked"] = np.array(counts[k], np.int64)
        out.append(state)
    return out


def stale_state(model_state: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Seeded values for every entry of a state_dict (given as ``{key: numpy array}``): the
    running statistics are stale, so update_bn visibly resets them."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in model_state.items():
        if key.endswith("num_batches_tracked"):
            out[key] = np.array(41, np.int64)
        elif key.endswith("running_var"):
            out[key] = (3 + np.abs(rng.normal(size=value.shape))).astype(value.dtype)
        else:
            out[key] = rng.normal(size=value.shape).astype(value.dtype)
    return out


def batches(cfg: dict[str, Any], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(2 + 1.5 * rng.normal(size=(n, *cfg["shape"]))) for n in cfg["sizes"]]


def run_swalr(
    cfg: dict[str, Any], optimizer: Any, cosine: Any, swalr: Any, step: Any = None
) -> np.ndarray:
    """Both schedulers built (cosine first), ``before`` cosine steps then SWALR steps (an
    optimizer step, ``step()`` or ``optimizer.step()``, before each); the group lrs after
    construction and after every step."""
    first = cosine(optimizer, T_max=30)
    second = swalr(optimizer, swa_lr=cfg["swa_lr"], **cfg["kwargs"])
    rows = [[float(g["lr"]) for g in optimizer.param_groups]]
    for i in range(cfg["before"] + cfg["steps"]):
        (step or optimizer.step)()
        (first if i < cfg["before"] else second).step()
        rows.append([float(g["lr"]) for g in optimizer.param_groups])
    return np.array(rows, np.float64)


def main() -> None:
    import warnings

    import torch
    from torch import nn
    from torch.optim import swa_utils

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    arrays: dict[str, np.ndarray] = {}

    def to_numpy(state: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in state.items()}

    def load(model: Any, state: dict[str, np.ndarray]) -> None:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})

    snaps = {dtype: snapshot_states(dtype) for dtype in DTYPES}
    for dtype, states in snaps.items():
        for k, state in enumerate(states):
            for key, value in state.items():
                arrays[f"snapshot/{dtype}/{k}/{key}"] = value

    x = np.random.default_rng(7).normal(size=(5, 4))
    for name, cfg in AVERAGED.items():
        source = build_model(nn, ARCH, cfg["dtype"], ferroptim=False)
        load(source, snaps[cfg["dtype"]][0])
        averaged = swa_utils.AveragedModel(
            source, use_buffers=cfg["use_buffers"], **averaging_kwargs(cfg["avg"], swa_utils)
        )
        keys = list(averaged.state_dict())
        for i, state in enumerate(snaps[cfg["dtype"]]):
            load(source, state)
            averaged.update_parameters(source)
            for key, value in to_numpy(averaged.state_dict()).items():
                arrays[f"averaged/{name}/{i}/{key}"] = value
        averaged.eval()
        xt = torch.from_numpy(x.astype(cfg["dtype"]))
        arrays[f"averaged/{name}/x"] = xt.numpy()
        with torch.no_grad():
            arrays[f"averaged/{name}/y"] = averaged(xt).numpy()
        arrays[f"averaged/{name}/config"] = np.array(json.dumps({**cfg, "keys": keys}))

    for seed, (name, cfg) in enumerate(UPDATE_BN.items()):
        model = build_model(nn, cfg["arch"], "float64", ferroptim=False)
        load(model, stale_state(to_numpy(model.state_dict()), seed))
        if cfg["averaged"]:
            averaged = swa_utils.AveragedModel(model)
            for state in snaps["float64"]:
                load(model, state)
                averaged.update_parameters(model)
            model = averaged
        model.eval()
        for key, value in to_numpy(model.state_dict()).items():
            arrays[f"update_bn/{name}/before/{key}"] = value
        data = batches(cfg, 50 + seed)
        for i, batch in enumerate(data):
            arrays[f"update_bn/{name}/batch/{i}"] = batch
        tensors = [torch.from_numpy(b) for b in data]
        loader = [(t, torch.zeros(len(t))) for t in tensors] if cfg["tuples"] else tensors
        swa_utils.update_bn(loader, model)
        for key, value in to_numpy(model.state_dict()).items():
            arrays[f"update_bn/{name}/after/{key}"] = value
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        arrays[f"update_bn/{name}/momentum"] = np.array(
            [math.nan if m.momentum is None else m.momentum for m in norms], np.float64
        )
        arrays[f"update_bn/{name}/training"] = np.array(model.training)
        arrays[f"update_bn/{name}/config"] = np.array(json.dumps(cfg))

    for name, cfg in SWALR.items():
        params = [torch.zeros(2, requires_grad=True) for _ in LRS]
        optimizer = torch.optim.SGD(
            [{"params": [p], "lr": lr} for p, lr in zip(params, LRS, strict=True)]
        )
        lrs = run_swalr(cfg, optimizer, torch.optim.lr_scheduler.CosineAnnealingLR, swa_utils.SWALR)
        sched = swa_utils.SWALR(optimizer, swa_lr=cfg["swa_lr"], **cfg["kwargs"])
        keys = sorted(set(sched.state_dict()) - {"_get_lr_called_within_step"})
        arrays[f"swalr/{name}/lr"] = lrs
        arrays[f"swalr/{name}/config"] = np.array(json.dumps({**cfg, "state_keys": keys}))

    meta = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "averaged": list(AVERAGED),
        "update_bn": list(UPDATE_BN),
        "swalr": list(SWALR),
    }
    from make_golden import save_fixture  # run as a script: tools/ is on the path

    save_fixture(OUT, arrays, meta, f"{len(arrays) + 1} arrays")  # + the meta entry


if __name__ == "__main__":
    main()
