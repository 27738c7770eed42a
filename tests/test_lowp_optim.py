"""Optimizers with low-precision state: ``state_dtype="bfloat16"`` (every optimizer class of the
registry, with every state list on) and Adam8bit / AdamW8bit / Lion8bit. Native == reference
backend bit for bit with several groups and skipped parameters; state_dict / load_state_dict /
fo.save / fo.load carry the state exactly (a run interrupted every 10 steps ends with the same
bits as an uninterrupted one); bfloat16 and float32 state convert on load; bad options and
parameters are refused naming them."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ferroptim as fo
from conftest import CLASS_CASES
from ferroptim.reference.lowp_formats import bf16_narrow, bf16_widen, dynamic_map

SHAPES = [(70, 90), (33,), (5000,), (3, 4)]  # 6300 and 5000 elements: 8-bit; the others float32


def make_params(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def grads_at(step: int) -> list[np.ndarray | None]:
    rng = np.random.default_rng(1000 + step)
    grads = [rng.standard_normal(s).astype(np.float32) * np.float32(0.1) for s in SHAPES]
    if step % 3 == 1:
        grads[1] = None
    return grads


FACTORIES = {
    "adam_bf16": lambda p, **k: fo.optim.Adam(p, lr=1e-2, state_dtype="bfloat16", **k),
    "adamw_bf16_rne": lambda p, **k: fo.optim.AdamW(
        p, lr=1e-2, state_dtype="bfloat16", stochastic_rounding=False, **k
    ),
    "amsgrad_bf16": lambda p, **k: fo.optim.Adam(
        p, lr=1e-2, amsgrad=True, state_dtype="bfloat16", seed=5, **k
    ),
    "lion_bf16": lambda p, **k: fo.optim.Lion(
        p, lr=1e-3, weight_decay=0.1, state_dtype="bf16", **k
    ),
    "adam8bit": lambda p, **k: fo.optim.Adam8bit(p, lr=1e-2, **k),
    "adamw8bit": lambda p, **k: fo.optim.AdamW8bit(p, lr=1e-2, **k),
    "lion8bit": lambda p, **k: fo.optim.Lion8bit(p, lr=1e-3, **k),
}


def _bf16_factory(cls: type, options: dict):
    return lambda p, **k: cls(p, state_dtype="bfloat16", seed=7, **options, **k)


# Every optimizer class with bfloat16 state and every state list on (from the registry).
FACTORIES.update(
    {f"{cls.__name__}_bf16_all": _bf16_factory(cls, options) for cls, options in CLASS_CASES}
)


def two_groups(params: list[np.ndarray]) -> list[dict]:
    return [{"params": params[:2]}, {"params": params[2:], "lr": 5e-3}]


def all_arrays(opt) -> list[np.ndarray]:
    out = [p for g in opt.param_groups for p in g["params"]]
    for entry in opt.state_dict()["state"].values():
        out += [v for v in entry.values() if isinstance(v, np.ndarray)]
    return out


def assert_same_bits(a, b) -> None:
    xs, ys = all_arrays(a), all_arrays(b)
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("name", FACTORIES)
def test_native_equals_reference_backend(name):
    native = FACTORIES[name](two_groups(make_params()))
    reference = FACTORIES[name](two_groups(make_params()), backend="reference")
    for t in range(4):
        native.step(grads_at(t))
        reference.step(grads_at(t))
    assert_same_bits(native, reference)


@pytest.mark.parametrize("name", FACTORIES)
def test_interrupted_every_10_steps_equals_uninterrupted(name, tmp_path):
    straight = FACTORIES[name](two_groups(make_params()))
    params = make_params()
    resumed = FACTORIES[name](two_groups(params))
    for t in range(25):
        straight.step(grads_at(t))
        resumed.step(grads_at(t))
        if t % 10 == 9:
            path = tmp_path / f"ckpt{t}.npz"
            fo.save(path, optimizer=resumed, params=params)
            saved = copy.deepcopy(resumed.state_dict())
            params = make_params(seed=99)  # fresh arrays, restored from the checkpoint
            resumed = FACTORIES[name](two_groups(params))
            ckpt = fo.load(path)
            for p, q in zip(params, ckpt.extra["params"], strict=True):
                np.copyto(p, q)
            ckpt.restore(optimizer=resumed)
            for k, entry in saved["state"].items():
                for key, value in entry.items():
                    got = resumed.state_dict()["state"][k][key]
                    assert (
                        np.array_equal(got, value)
                        and np.asarray(got).dtype == np.asarray(value).dtype
                    )
    assert_same_bits(straight, resumed)


def test_bf16_state_layout_and_group_streams():
    params = make_params()
    opt = fo.optim.Adam(two_groups(params), state_dtype="bfloat16", seed=3)
    opt.step(grads_at(0))
    state = opt.state_dict()["state"]
    assert state[0]["exp_avg"].dtype == np.uint16 and state[0]["exp_avg"].shape == SHAPES[0]
    # The same step as one kernel call over all parameters: streams are global positions.
    ref = make_params()
    m = [np.zeros(s, np.uint16) for s in SHAPES]
    v = [np.zeros(s, np.uint16) for s in SHAPES]
    steps = np.zeros(len(SHAPES), np.int64)
    hyper = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False, decoupled_weight_decay=False, stochastic_rounding=True, seed=3,
                 stream_offset=0)  # fmt: skip
    g = grads_at(0)
    fo._native.adam_step_bf16(ref[:2], g[:2], m[:2], v[:2], None, steps[:2], lr=1e-3, **hyper)
    hyper["stream_offset"] = 2
    fo._native.adam_step_bf16(ref[2:], g[2:], m[2:], v[2:], None, steps[2:], lr=5e-3, **hyper)
    for i in range(len(SHAPES)):
        assert state[i]["exp_avg_sq"].tobytes() == v[i].tobytes()
        assert params[i].tobytes() == ref[i].tobytes()


def test_bf16_and_float32_state_convert_on_load():
    low = fo.optim.Adam(make_params(), state_dtype="bfloat16")
    low.step(grads_at(0))
    full = fo.optim.Adam(make_params())
    full.load_state_dict(low.state_dict())
    for i, entry in full.state_dict()["state"].items():
        bits = low.state_dict()["state"][i]["exp_avg"]
        assert entry["exp_avg"].dtype == np.float32
        assert np.array_equal(entry["exp_avg"], bf16_widen(bits))
    back = fo.optim.Adam(make_params(), state_dtype="bfloat16")
    full.step(grads_at(1))
    back.load_state_dict(full.state_dict())
    for i, entry in back.state_dict()["state"].items():
        f32 = full.state_dict()["state"][i]["exp_avg_sq"]
        assert entry["exp_avg_sq"].tobytes() == bf16_narrow(f32, None).tobytes()


def test_8bit_state_layout():
    params = make_params()
    opt = fo.optim.Adam8bit(params)
    opt.step(grads_at(0))
    state = opt.state_dict()["state"]
    big, small = state[0], state[1]
    assert set(big) == {"step", "state1", "absmax1", "qmap1", "state2", "absmax2", "qmap2"}
    assert big["state1"].dtype == np.uint8 and big["state1"].shape == SHAPES[0]
    assert big["absmax1"].shape == (-(-6300 // 256),) and big["absmax1"].dtype == np.float32
    assert np.array_equal(big["qmap1"], dynamic_map(True))
    assert np.array_equal(big["qmap2"], dynamic_map(False))
    assert small["state1"].dtype == np.float32 and small["absmax1"].shape == (0,)
    # The documented value: qmap[code] * absmax of the code's block, close to float32 Adam's m.
    f32 = fo.optim.Adam(make_params())
    f32.step(grads_at(0))
    m = big["qmap1"][big["state1"].reshape(-1)] * np.repeat(big["absmax1"], 256)[:6300]
    np.testing.assert_allclose(m, f32.state_dict()["state"][0]["exp_avg"].reshape(-1), atol=2e-3)


def test_float64_parameters_keep_float64_state():
    opt = fo.optim.Adam8bit([np.ones(5000), np.ones(5000, np.float32)])
    opt.step([np.ones(5000), np.ones(5000, np.float32)])
    state = opt.state_dict()["state"]
    assert state[0]["state1"].dtype == np.float64 and state[0]["absmax1"].shape == (0,)
    assert state[1]["state1"].dtype == np.uint8


def test_refusals_name_the_problem():
    with pytest.raises(ValueError, match=r"params\[0\] is float64"):
        fo.optim.SGD([np.zeros(3)], lr=0.1, momentum=0.9, state_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"params\[0\] is float64"):
        fo.optim.Adam([np.zeros(3)], state_dtype="bfloat16")
    with pytest.raises(ValueError, match="state_dtype"):
        fo.optim.Adam(make_params(), state_dtype="int8")
    with pytest.raises(TypeError, match="stochastic_rounding"):
        fo.optim.Adam(make_params(), state_dtype="bfloat16", stochastic_rounding="yes")
    with pytest.raises(ValueError, match="seed"):
        fo.optim.Adam(make_params(), state_dtype="bfloat16", seed=-1)
    with pytest.raises(ValueError, match="8-bit state"):
        fo.optim.Adam8bit(make_params(), state_dtype="bfloat16")
    with pytest.raises(ValueError, match="amsgrad"):
        fo.optim.Adam8bit(make_params(), amsgrad=True)
    with pytest.raises(ValueError, match="block_size"):
        fo.optim.Lion8bit(make_params(), block_size=512)
    opt = fo.optim.Adam8bit(make_params())
    opt.step(grads_at(0))
    saved = opt.state_dict()
    bad = copy.deepcopy(saved)
    bad["state"][0]["qmap1"] = bad["state"][0]["qmap1"][::-1].copy()
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match="qmap1"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(saved)
    bad["state"][2]["absmax2"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="absmax2"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    for k, entry in before["state"].items():
        for key, value in entry.items():
            assert np.array_equal(after["state"][k][key], value)
    # A bad gradient is refused before either kernel call: nothing moves.
    params = opt.param_groups[0]["params"]
    snapshot = [p.copy() for p in params]
    grads = grads_at(1)
    grads[3] = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"grads\[3\]"):
        opt.step(grads)
    assert all(np.array_equal(p, q) for p, q in zip(params, snapshot, strict=True))


def test_sgd_bf16_state_keeps_its_step_and_loads_into_float32_and_back():
    """SGD saves no step (as torch) unless its state is bfloat16, whose random streams need it;
    either state dict loads into the other kind of optimizer."""
    params = make_params()
    low = fo.optim.SGD(params, lr=0.1, momentum=0.9, state_dtype="bfloat16")
    for t in range(3):
        low.step(grads_at(t))
    saved = low.state_dict()
    assert saved["state"][0]["step"] == 3.0
    plain = fo.optim.SGD(make_params(), lr=0.1, momentum=0.9)
    plain.load_state_dict(saved)
    assert plain.state_dict()["state"][0]["momentum_buffer"].dtype == np.float32
    assert "step" not in plain.state_dict()["state"][0]
    again = fo.optim.SGD(make_params(), lr=0.1, momentum=0.9, state_dtype="bfloat16")
    again.load_state_dict(plain.state_dict())
    assert again.state_dict()["state"][0]["step"] == 1.0  # a saved buffer: past the first step
