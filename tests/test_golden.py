"""ferroptim against torch.optim (single-tensor path) and optax.lion, from a committed fixture.

``tests/data/golden.npz`` is written by ``tools/make_golden.py`` (run with a venv that has torch,
jax and optax; neither is needed here). For every case, dtype and backend, the recorded initial
params and 25 gradient steps are replayed through ``ferroptim.optim`` and the final params and
every state entry (torch's key names) are compared with the recorded reference values.

Bounds. Bit equality is not expected: the math is the same but the rounding is not. torch's
``addcdiv(p, m, denom, value=-step_size)`` rounds ``-step_size*m`` before dividing (ferroptim:
``step_size * (m/denom)``), its vectorised ``lerp_`` is a fused multiply-add (ferroptim rounds
the product, then the sum), and optax.lion decays as ``p - lr*(sign(c) + wd*p)``.

* float64: ``assert_allclose(rtol=1e-12, atol=1e-14 * max|ref|)`` per array. The atol term is a
  cancellation floor relative to the array's own scale (an element that ends near zero after
  25 updates of size ~max|ref| carries absolute errors of that scale).
* float32: elementwise ``|ours - ref| <= 25 * (4 * ulp(|ref|) + ulp(max|ref|))``: at most
  4 float32 ulps of the element per step, plus 1 ulp of the array's largest magnitude per step
  as the same cancellation floor.
* Observed with torch 2.15 / optax 0.2.8: at most 6% of the float32 bound (at most 7 ulps of
  the array's largest magnitude) and 1% of the float64 one (largest relative error 8e-14, on
  elements that end near zero after cancellation).
* ``step`` must be equal; NAdam's ``mu_product`` (a float32 scalar in both) within one float32
  ulp per step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _registry as registry

DATA = Path(__file__).resolve().parent / "data"
REGENERATE = {
    "golden.npz": "/work/torchenv/bin/python tools/make_golden.py",
}
#: the fixture of every optimizer (the registry names it), and each fixture's cases
FIXTURES = sorted({spec.golden for spec in registry.OPTIMIZERS})
DTYPES = ("float32", "float64")
BACKENDS = ("native", "reference")


def _load(fixture: str) -> dict[str, np.ndarray]:
    path = DATA / fixture
    if not path.is_file():
        how = REGENERATE.get(fixture, "tools/make_golden_optax.py")
        pytest.fail(f"{path} is missing; regenerate it with `{how}`")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _cases() -> list[tuple[str, str]]:
    out = []
    for fixture in FIXTURES:
        path = DATA / fixture
        if path.is_file():
            with np.load(path) as data:
                out += [(fixture, case) for case in json.loads(str(data["meta"]))["cases"]]
    return out


CASES = _cases()

F64_RTOL = 1e-12
F64_ATOL_SCALE = 1e-14  # times max|ref| of the array
F32_ULPS_PER_STEP = 4  # float32 ulps of the element, per step
F32_FLOOR_ULPS_PER_STEP = 1  # float32 ulps of the array's max magnitude, per step


_GOLDENS: dict[str, dict[str, np.ndarray]] = {}


def _golden(fixture: str) -> dict[str, np.ndarray]:
    if fixture not in _GOLDENS:
        _GOLDENS[fixture] = _load(fixture)
    return _GOLDENS[fixture]


def _json(golden: dict[str, np.ndarray], key: str) -> dict[str, Any]:
    assert key in golden, f"{key} missing from the fixture; regenerate it"
    return json.loads(str(golden[key]))


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_covers_its_optimizers(fixture: str) -> None:
    golden = _golden(fixture)
    meta = _json(golden, "meta")
    assert tuple(meta["dtypes"]) == DTYPES
    for package in ("optax", "jax"):
        assert meta[package], f"{package} version not recorded"
    covered = {_json(golden, f"{case}/float32/config")["optimizer"] for case in meta["cases"]}
    expected = {spec.name for spec in registry.OPTIMIZERS if spec.golden == fixture}
    assert covered == expected
    for name in expected:
        assert isinstance(getattr(fo.optim, name), type)


def _replay(golden: dict[str, np.ndarray], prefix: str, backend: str, config: dict[str, Any]):
    kwargs = dict(config["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    shapes = [tuple(s) for s in config["shapes"]]
    params = [golden[f"{prefix}/init/{i}"].copy() for i in range(len(shapes))]
    optimizer = getattr(fo.optim, config["optimizer"])(params, backend=backend, **kwargs)
    grads = golden[f"{prefix}/grads"]
    assert grads.shape == (config["steps"], sum(int(np.prod(s)) for s in shapes))
    bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    for row in grads:
        optimizer.step(
            [
                row[start:stop].reshape(shape).copy()
                for start, stop, shape in zip(bounds[:-1], bounds[1:], shapes, strict=True)
            ]
        )
    return params, optimizer.state_dict()["state"]


def _assert_close(ours: np.ndarray, ref: np.ndarray, steps: int, label: str) -> None:
    assert isinstance(ours, np.ndarray), f"{label}: got {type(ours).__name__}"
    assert ours.dtype == ref.dtype, f"{label}: dtype {ours.dtype} != {ref.dtype}"
    assert ours.shape == ref.shape, f"{label}: shape {ours.shape} != {ref.shape}"
    assert np.all(np.isfinite(ref)), f"{label}: non-finite reference values"
    assert np.all(np.isfinite(ours)), f"{label}: non-finite values {ours}"
    scale = float(np.max(np.abs(ref)))
    if ref.dtype == np.float64:
        np.testing.assert_allclose(
            ours, ref, rtol=F64_RTOL, atol=F64_ATOL_SCALE * scale, equal_nan=False, err_msg=label
        )
        return
    err = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    elem_ulp = np.spacing(np.abs(ref)).astype(np.float64)
    floor_ulp = float(np.spacing(np.float32(scale)))
    bound = steps * (F32_ULPS_PER_STEP * elem_ulp + F32_FLOOR_ULPS_PER_STEP * floor_ulp)
    bad = err > bound
    if bad.any():
        worst = int(np.argmax(err / bound))
        pytest.fail(
            f"{label}: {int(bad.sum())} of {bad.size} elements beyond the float32 bound; worst "
            f"at flat index {worst}: ours {ours.flat[worst]!r} ref {ref.flat[worst]!r} "
            f"(error {err.flat[worst] / elem_ulp.flat[worst]:.1f} ulps of the element, "
            f"bound {bound.flat[worst]:.3g})"
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("fixture", "case"), CASES, ids=[c for _, c in CASES])
def test_matches_reference(fixture: str, case: str, dtype: str, backend: str) -> None:
    golden = _golden(fixture)
    prefix = f"{case}/{dtype}"
    config = _json(golden, f"{prefix}/config")
    steps = config["steps"]
    params, state = _replay(golden, prefix, backend, config)
    array_keys = config["state_keys"]
    scalar_keys = config["scalar_state_keys"]
    for i, param in enumerate(params):
        assert param.dtype == np.dtype(dtype)
        init = golden[f"{prefix}/init/{i}"]
        ref = golden[f"{prefix}/final/param/{i}"]
        # The case must move the params far beyond the tolerance, or it tests nothing.
        assert np.max(np.abs(ref - init)) > 1e-3, f"{prefix} param {i} barely moved"
        _assert_close(param, ref, steps, f"{prefix} {backend} param[{i}]")

        entry = state.get(i, {})
        assert set(entry) == set(array_keys) | set(scalar_keys), (
            f"{prefix} {backend} state[{i}] keys {sorted(entry)} != reference "
            f"{sorted(array_keys + scalar_keys)}"
        )
        for key in array_keys:
            ref_state = golden[f"{prefix}/final/state/{key}/{i}"]
            _assert_close(entry[key], ref_state, steps, f"{prefix} {backend} state[{i}][{key!r}]")
        for key in scalar_keys:
            ref_value = float(golden[f"{prefix}/final/state/{key}/{i}"])
            value = entry[key]
            assert isinstance(value, float), f"{prefix} state[{i}][{key!r}] is {type(value)}"
            if key == "step":
                assert value == ref_value == steps
            else:
                assert key == "mu_product", key
                tol = steps * float(np.spacing(np.float32(ref_value)))
                assert abs(value - ref_value) <= tol, (
                    f"{prefix} {backend} state[{i}]['mu_product'] {value!r} != {ref_value!r}"
                )
