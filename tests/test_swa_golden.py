"""fo.optim.swa_utils against torch.optim.swa_utils' own numbers.

``tests/data/golden_swa.npz`` is written by ``tools/make_golden_swa.py`` (run it with
/work/torchvenv/bin/python); the case tables and builders come from that script, so the tests
replay exactly the calls torch made: AveragedModel (every averaging function, use_buffers on and
off, float64 and float32) state_dicts after each update, update_bn's running statistics, SWALR's
learning rates and state_dict keys.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from conftest import load_tool
from ferroptim import nn
from ferroptim.optim import swa_utils

ROOT = Path(__file__).resolve().parent.parent
gen = load_tool("make_golden_swa")

GOLDEN = np.load(ROOT / "tests" / "data" / "golden_swa.npz", allow_pickle=False)
META = json.loads(str(GOLDEN["meta"]))
#: relative tolerance, of each element and of the array's largest magnitude (a difference of
#: nearly equal values, p + w (q - p), keeps the operands' absolute error): float64 1e-12, float32
#: 4 ulps (torch's vectorized CPU lerp fuses multiply-adds)
RTOL = {"float64": 1e-12, "float32": 4 * float(np.finfo(np.float32).eps)}


def config(group: str, name: str) -> dict[str, Any]:
    return json.loads(str(GOLDEN[f"{group}/{name}/config"]))


def stored(prefix: str) -> dict[str, np.ndarray]:
    """The arrays stored under ``prefix/``, by the rest of their key."""
    start = len(prefix) + 1
    return {k[start:]: GOLDEN[k] for k in GOLDEN.files if k.startswith(prefix + "/")}


def snapshot(dtype: str, k: int) -> dict[str, np.ndarray]:
    return stored(f"snapshot/{dtype}/{k}")


def assert_state_equal(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], rtol: float):
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].shape == value.shape, key
        assert got[key].dtype == value.dtype, key
        if value.dtype.kind == "f":
            scale = float(np.abs(value).max(initial=0.0))
            np.testing.assert_allclose(got[key], value, rtol=rtol, atol=rtol * scale, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize("name", META["averaged"])
def test_averaged_model_matches_torch_after_every_update(name: str) -> None:
    cfg = config("averaged", name)
    dtype = cfg["dtype"]
    source = gen.build_model(nn, gen.ARCH, dtype, ferroptim=True)
    source.load_state_dict(snapshot(dtype, 0))
    averaged = swa_utils.AveragedModel(
        source, use_buffers=cfg["use_buffers"], **gen.averaging_kwargs(cfg["avg"], swa_utils)
    )
    assert list(averaged.state_dict()) == cfg["keys"]
    for i in range(gen.SNAPSHOTS):
        source.load_state_dict(snapshot(dtype, i))
        averaged.update_parameters(source)
        expected = stored(f"averaged/{name}/{i}")
        got = {k: np.asarray(v) for k, v in averaged.state_dict().items()}
        # the state_dict is ordered as torch's; compare in the fixture's (sorted) order
        assert list(got) == cfg["keys"]
        assert_state_equal({k: got[k] for k in expected}, expected, RTOL[dtype])
    averaged.eval()
    np.testing.assert_allclose(
        averaged(GOLDEN[f"averaged/{name}/x"]),
        GOLDEN[f"averaged/{name}/y"],
        rtol=RTOL[dtype] * 10,
        atol=0,
    )


@pytest.mark.parametrize("name", META["averaged"])
def test_averaged_state_dict_loads_into_a_fresh_averaged_model(name: str) -> None:
    """torch's saved AveragedModel state (n_averaged, module.*) restores ours and vice versa."""
    cfg = config("averaged", name)
    dtype = cfg["dtype"]
    last = stored(f"averaged/{name}/{gen.SNAPSHOTS - 1}")
    fresh = swa_utils.AveragedModel(gen.build_model(nn, gen.ARCH, dtype, ferroptim=True))
    fresh.load_state_dict(last)
    assert int(fresh.n_averaged) == gen.SNAPSHOTS
    assert_state_equal(
        {k: np.asarray(v) for k, v in fresh.state_dict().items() if k in last}, last, 0.0
    )


@pytest.mark.parametrize("name", META["update_bn"])
def test_update_bn_matches_torch(name: str) -> None:
    cfg = config("update_bn", name)
    model = gen.build_model(nn, cfg["arch"], "float64", ferroptim=True)
    if cfg["averaged"]:
        model = swa_utils.AveragedModel(model)
    before = stored(f"update_bn/{name}/before")
    model.load_state_dict(before)
    model.eval()
    data = [GOLDEN[f"update_bn/{name}/batch/{i}"] for i in range(len(cfg["sizes"]))]
    loader = [(b, np.zeros(len(b))) for b in data] if cfg["tuples"] else data
    swa_utils.update_bn(loader, model)
    expected = stored(f"update_bn/{name}/after")
    got = {k: np.asarray(v) for k, v in model.state_dict().items()}
    assert_state_equal({k: got[k] for k in expected}, expected, 1e-12)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    momenta = [math.nan if m.momentum is None else m.momentum for m in norms]
    np.testing.assert_array_equal(momenta, GOLDEN[f"update_bn/{name}/momentum"])
    assert model.training == bool(GOLDEN[f"update_bn/{name}/training"])


@pytest.mark.parametrize("name", META["swalr"])
def test_swalr_matches_torch(name: str) -> None:
    cfg = config("swalr", name)
    params = [np.zeros(2) for _ in gen.LRS]
    opt = fo.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, gen.LRS, strict=True)])
    grads = [np.zeros(2) for _ in gen.LRS]
    cosine = fo.optim.lr_scheduler.CosineAnnealingLR
    lrs = gen.run_swalr(cfg, opt, cosine, swa_utils.SWALR, step=lambda: opt.step(grads))
    np.testing.assert_allclose(lrs, GOLDEN[f"swalr/{name}/lr"], rtol=1e-12, atol=1e-15)
    sched = swa_utils.SWALR(opt, swa_lr=cfg["swa_lr"], **cfg["kwargs"])
    assert sorted(sched.state_dict()) == cfg["state_keys"]
