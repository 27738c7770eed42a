"""nn layers: torch golden values, finite-difference gradients, float32 vs float64, state_dict,
train/eval behaviour, dropout statistics and input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ferroptim as fo
from conftest import load_golden
from ferroptim import enable_grad
from ferroptim.nn.container import Sequential
from ferroptim.nn.conv import Conv2d
from ferroptim.nn.dropout import Dropout
from ferroptim.nn.gradcheck import gradcheck
from ferroptim.nn.linear import Linear
from ferroptim.nn.module import Module
from ferroptim.nn.normalization import BatchNorm1d, BatchNorm2d
from ferroptim.nn.pooling import AvgPool2d, MaxPool2d
from ferroptim.nn.residual import Residual
from ferroptim.nn.shape import Flatten, Identity

LAYERS = {
    cls.__name__: cls
    for cls in (
        Linear,
        Conv2d,
        MaxPool2d,
        AvgPool2d,
        Flatten,
        Identity,
        BatchNorm1d,
        BatchNorm2d,
        Dropout,
    )
}


DATA = load_golden("golden_nn_layers.npz")
CASES = json.loads(str(DATA["meta"]))["cases"]


def _case(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    prefix = f"{name}/"
    arrays = {k[len(prefix) :]: v for k, v in DATA.items() if k.startswith(prefix)}
    return json.loads(str(arrays.pop("config"))), arrays


def _section(arrays: dict[str, np.ndarray], section: str) -> dict[str, np.ndarray]:
    prefix = f"{section}/"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def assert_close(actual, expected, tol=1e-9, label=""):
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, err_msg=label)


# --- (1) torch golden values in float64 ---------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_matches_torch(name):
    config, arrays = _case(name)
    layer = LAYERS[config["layer"]](**config["kwargs"], dtype=np.float64)
    state = _section(arrays, "state")
    assert list(layer.state_dict()) == list(state), "state_dict keys and order must be torch's"
    layer.load_state_dict(state)
    layer.train(config["training"])
    x_before = arrays["x"].copy()
    with enable_grad():  # torch's eval-mode forward builds the graph too
        y = layer(arrays["x"])
    assert y.dtype == np.float64 and y.shape == arrays["y"].shape
    assert_close(y, arrays["y"], label=f"{name} y")
    dx = layer.backward(arrays["dy"])
    assert_close(dx, arrays["dx"], label=f"{name} dx")
    np.testing.assert_array_equal(arrays["x"], x_before)
    grads = _section(arrays, "grad")
    assert [n for n, _ in layer.named_parameters()] == list(grads)
    for pname, grad in layer.named_gradients():
        assert_close(grad, grads[pname], label=f"{name} grad {pname}")
    after = _section(arrays, "after")
    assert [n for n, _ in layer.named_buffers()] == list(after)
    for bname, buffer in layer.named_buffers():
        if bname == "num_batches_tracked":
            assert buffer.dtype == np.int64 and buffer.shape == ()
            assert int(buffer) == int(after[bname])
        else:
            assert_close(buffer, after[bname], label=f"{name} {bname}")


def test_golden_covers_the_required_layers():
    kinds = {_case(name)[0]["layer"] for name in CASES}
    assert kinds >= {"Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten"}
    assert kinds >= {"BatchNorm1d", "BatchNorm2d", "Dropout"}
    assert DATA["maxpool_ties/x"].size > len(np.unique(DATA["maxpool_ties/x"])) * 5  # many ties


# --- (2) finite-difference gradients (float64) -------------------------------------------------
def _gradcheck_cases():
    d = np.float64
    return [
        ("linear", lambda: Linear(4, 3, dtype=d, rng=0), (2, 3, 4)),
        ("linear_nobias_1d", lambda: Linear(4, 2, bias=False, dtype=d, rng=0), (4,)),
        ("conv", lambda: Conv2d(2, 3, (3, 2), stride=2, padding=1, dtype=d, rng=0), (2, 2, 6, 5)),
        ("conv_pairs", lambda: Conv2d(2, 2, (2, 3), (1, 2), (0, 1), dtype=d, rng=1), (2, 2, 4, 7)),
        ("conv_1x1", lambda: Conv2d(3, 2, 1, bias=False, dtype=d, rng=2), (2, 3, 3, 3)),
        ("maxpool", lambda: MaxPool2d(3, 2, 1, dtype=d), (2, 2, 7, 6)),
        ("maxpool_overlap", lambda: MaxPool2d((2, 3), (1, 1), dtype=d), (1, 2, 4, 5)),
        ("avgpool", lambda: AvgPool2d(3, 2, 1, dtype=d), (2, 2, 7, 6)),
        (
            "avgpool_excl",
            lambda: AvgPool2d(3, 2, 1, count_include_pad=False, dtype=d),
            (1, 2, 5, 6),
        ),
        ("flatten", lambda: Flatten(1, 2, dtype=d), (2, 3, 4, 2)),
        ("identity", lambda: Identity(dtype=d), (3, 2)),
        ("bn1d", lambda: BatchNorm1d(3, dtype=d), (5, 3)),
        ("bn1d_3d", lambda: BatchNorm1d(3, momentum=None, dtype=d), (4, 3, 2)),
        ("bn2d", lambda: BatchNorm2d(2, dtype=d), (3, 2, 3, 2)),
        ("bn2d_eval", lambda: BatchNorm2d(2, dtype=d).eval(), (3, 2, 3, 2)),
        ("bn_no_affine", lambda: BatchNorm1d(3, affine=False, dtype=d), (4, 3)),
        ("dropout_train", lambda: Dropout(0.4, seed=3, dtype=d), (4, 5)),
        (
            "residual",
            lambda: Residual(Sequential(Linear(4, 4, dtype=d, rng=1), BatchNorm1d(4, dtype=d))),
            (6, 4),
        ),
    ]


@pytest.mark.parametrize("name, build, shape", _gradcheck_cases(), ids=lambda v: str(v))
def test_gradcheck(name, build, shape):
    layer = build()
    x = np.random.default_rng(7).standard_normal(shape)
    report = gradcheck(layer, x, eps=1e-6, atol=1e-7, rtol=1e-6)
    assert report.passed, str(report)
    assert report["input"].checked == x.size


def test_gradcheck_catches_a_wrong_backward():
    """The finite-difference check is able to fail on these layers."""

    class BrokenConv(Conv2d):
        def backward(self, dy):
            return 1.01 * super().backward(dy)

    layer = BrokenConv(1, 2, 3, padding=1, dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4))
    assert not gradcheck(layer, x).passed


# --- (3) float32 follows float64 ----------------------------------------------------------------
def _dtype_pairs():
    return [
        (lambda d: Linear(6, 5, dtype=d, rng=0), (4, 6)),
        (lambda d: Conv2d(3, 4, 3, stride=2, padding=1, dtype=d, rng=0), (2, 3, 8, 8)),
        (lambda d: MaxPool2d(2, dtype=d), (2, 3, 6, 6)),
        (lambda d: AvgPool2d(3, 1, 1, count_include_pad=False, dtype=d), (2, 3, 5, 5)),
        (lambda d: BatchNorm2d(3, dtype=d), (4, 3, 5, 5)),
        (lambda d: BatchNorm1d(3, dtype=d), (8, 3, 4)),
        (lambda d: Dropout(0.3, seed=5, dtype=d), (4, 7)),
        (lambda d: Flatten(dtype=d), (2, 3, 2, 2)),
    ]


@pytest.mark.parametrize("build, shape", _dtype_pairs())
def test_float32_close_to_float64(build, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    wide, narrow = build(np.float64), build(np.float32)
    narrow.load_state_dict(wide.state_dict())
    y64, y32 = wide(x), narrow(x)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    dy = rng.standard_normal(y64.shape)
    dx64, dx32 = wide.backward(dy), narrow.backward(dy)
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-4, atol=1e-5)
    for (name, g64), (_, g32) in zip(wide.named_gradients(), narrow.named_gradients(), strict=True):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4, err_msg=name)
    for (name, b64), (_, b32) in zip(wide.named_buffers(), narrow.named_buffers(), strict=True):
        np.testing.assert_allclose(b32, b64, rtol=1e-5, atol=1e-6, err_msg=name)


# --- layer specifics -----------------------------------------------------------------------------
def test_linear_shapes_accumulation_and_layout():
    layer = Linear(3, 2, dtype=np.float64, rng=0)
    assert layer.weight.shape == (2, 3) and layer.bias.shape == (2,)
    x = np.arange(3.0)
    np.testing.assert_allclose(layer(x), layer.weight @ x + layer.bias)
    dy = np.array([1.0, -2.0])
    layer.backward(dy)
    layer(x)
    layer.backward(dy)  # gradients accumulate until zero_grad
    np.testing.assert_allclose(layer.grad("weight"), 2 * np.outer(dy, x))
    layer.zero_grad()
    assert not layer.grad("weight").any()
    assert "bias" not in Linear(3, 2, bias=False).state_dict()


def test_conv_output_shape_and_reference_loop():
    layer = Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 5))
    y = layer(x)
    assert y.shape == (2, 3, (7 + 2 - 3) // 2 + 1, 5 - 2 + 1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    p, q = 2, 3  # one output position by the definition
    patch = xp[:, :, 2 * p : 2 * p + 3, q : q + 2]
    expected = np.einsum("ncij,ocij->no", patch, layer.weight) + layer.bias
    np.testing.assert_allclose(y[:, :, p, q], expected, rtol=1e-12)


def test_maxpool_ties_go_to_the_first_maximum():
    layer = MaxPool2d(2, dtype=np.float64)
    x = np.ones((1, 1, 2, 2))
    layer(x)
    dx = layer.backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(dx, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_maxpool_padding_never_wins():
    layer = MaxPool2d(3, stride=1, padding=1, dtype=np.float64)
    x = -np.ones((1, 1, 2, 2)) * np.arange(1, 5).reshape(1, 1, 2, 2)
    y = layer(x)
    assert (y < 0).all()


def test_avgpool_count_include_pad():
    x = np.ones((1, 1, 2, 2))
    included = AvgPool2d(3, stride=1, padding=1, dtype=np.float64)(x)
    excluded = AvgPool2d(3, stride=1, padding=1, count_include_pad=False, dtype=np.float64)(x)
    np.testing.assert_allclose(included, np.full((1, 1, 2, 2), 4 / 9))
    np.testing.assert_allclose(excluded, np.ones((1, 1, 2, 2)))


def test_flatten_and_identity():
    x = np.arange(24.0).reshape(2, 3, 4)
    flatten = Flatten(dtype=np.float64)
    assert flatten(x).shape == (2, 12)
    assert flatten.backward(np.ones((2, 12))).shape == (2, 3, 4)
    assert Flatten(0, 1, dtype=np.float64)(x).shape == (6, 4)
    assert Flatten(-2, -1, dtype=np.float64)(x).shape == (2, 12)
    with pytest.raises(ValueError, match="start_dim"):
        Flatten(2, 1)(x)
    with pytest.raises(ValueError, match="out of range"):
        Flatten(3)(x)
    identity = Identity(dtype=np.float64)
    np.testing.assert_array_equal(identity(x), x)
    np.testing.assert_array_equal(identity.backward(x), x)


def test_residual_adds_the_skip_and_names_the_block():
    block = Sequential(Linear(3, 3, dtype=np.float64, rng=0), Identity(dtype=np.float64))
    residual = Residual(block)
    assert residual.dtype == np.float64
    assert [n for n, _ in residual.named_parameters()] == ["block.0.weight", "block.0.bias"]
    x = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_allclose(residual(x), x + block(x))
    dy = np.ones((2, 3))
    np.testing.assert_allclose(residual.backward(dy), dy + dy @ block[0].weight)
    with pytest.raises(ValueError, match="same shape"):
        Residual(Linear(3, 2, dtype=np.float64))(x)
    with pytest.raises(TypeError, match="block"):
        Residual(lambda v: v)


# --- train / eval --------------------------------------------------------------------------------
def test_batchnorm_train_updates_running_stats_eval_uses_them():
    layer = BatchNorm2d(2, dtype=np.float64)
    x = 3.0 + 2.0 * np.random.default_rng(0).standard_normal((8, 2, 4, 4))
    layer(x)
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(layer.running_mean, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * var, rtol=1e-12)
    assert int(layer.num_batches_tracked) == 1
    layer.eval()
    saved = layer.state_dict()
    y = layer(x)
    expected = (x - layer.running_mean[:, None, None]) / np.sqrt(
        layer.running_var[:, None, None] + 1e-5
    )
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, saved[key], err_msg=f"eval changed {key}")


def test_batchnorm_without_running_stats_has_no_buffers():
    layer = BatchNorm1d(3, track_running_stats=False, dtype=np.float64).eval()
    assert list(layer.state_dict()) == ["weight", "bias"]
    x = np.random.default_rng(0).standard_normal((10, 3))
    np.testing.assert_allclose(layer(x).mean(axis=0), 0.0, atol=1e-12)


def test_dropout_eval_is_identity_and_train_is_inverted():
    layer = Dropout(0.25, seed=0, dtype=np.float64)
    x = np.ones((400, 500))
    y = layer(x)
    dropped = np.mean(y == 0)
    assert abs(dropped - 0.25) < 0.005
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75])
    assert abs(y.mean() - 1.0) < 0.01  # the expectation is preserved
    dx = layer.backward(np.full(x.shape, 2.0))
    np.testing.assert_array_equal(dx, 2.0 * y)
    layer.eval()
    with enable_grad():
        np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)


def test_dropout_seeding_and_rng_state():
    x = np.ones((20, 30))
    a, b = Dropout(0.5, seed=42), Dropout(0.5, seed=42)
    np.testing.assert_array_equal(a(x), b(x))
    state = a.rng_state()
    first = a(x)
    assert not np.array_equal(first, a(x)), "a new mask every call"
    a.set_rng_state(state)
    np.testing.assert_array_equal(a(x), first)
    model = Sequential(Linear(30, 30), Dropout(0.5, seed=1))
    assert list(model.rng_state()) == ["1"]


def test_dropout_extremes_and_bad_p():
    x = np.ones((3, 4))
    np.testing.assert_array_equal(Dropout(1.0)(x), np.zeros((3, 4)))
    np.testing.assert_array_equal(Dropout(0.0)(x), x)
    for bad in (-0.1, 1.5):
        with pytest.raises(
            ValueError, match=r"invalid Dropout: p: .* \(expected 0 <= Dropout: p <= 1\)"
        ):
            Dropout(bad)
    with pytest.raises(TypeError, match="p must be"):
        Dropout("0.5")
    with pytest.raises(TypeError, match="seed"):
        Dropout(0.5, seed=1.5)


# --- state_dict -----------------------------------------------------------------------------------
def _cnn(rng: int) -> Sequential:
    return Sequential(
        Conv2d(1, 4, 3, padding=1, rng=rng, dtype=np.float64),
        BatchNorm2d(4, dtype=np.float64),
        MaxPool2d(2, dtype=np.float64),
        Flatten(dtype=np.float64),
        Dropout(0.2, seed=rng, dtype=np.float64),
        Linear(16, 3, rng=rng, dtype=np.float64),
    )


def test_state_dict_round_trip():
    source, target = _cnn(0), _cnn(1)
    x = np.random.default_rng(0).standard_normal((5, 1, 4, 4))
    source(x)  # move the running statistics away from their initial values
    keys = list(source.state_dict())
    assert keys == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "5.weight",
        "5.bias",
    ]
    target.load_state_dict(source.state_dict())
    source.eval()
    target.eval()
    np.testing.assert_array_equal(target(x), source(x))
    assert target.state_dict()["1.num_batches_tracked"].shape == ()


@pytest.mark.parametrize(
    "edit, error, match",
    [
        (lambda s: s.pop("5.bias"), KeyError, "missing key '5.bias'"),
        (lambda s: s.update({"6.weight": np.zeros(3)}), KeyError, "unexpected key '6.weight'"),
        (lambda s: s.update({"0.weight": np.zeros((4, 1, 2, 3))}), ValueError, "0.weight"),
        (lambda s: s.update({"1.running_var": np.zeros(5)}), ValueError, "1.running_var"),
    ],
)
def test_load_state_dict_errors_change_nothing(edit, error, match):
    model = _cnn(0)
    before = model.state_dict()
    state = _cnn(1).state_dict()
    edit(state)
    with pytest.raises(error, match=match):
        model.load_state_dict(state)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layer, x, match",
    [
        (Linear(3, 2), np.zeros((4, 5)), r"Linear: input must have shape \(\.\.\., 3\)"),
        (Linear(3, 2), np.zeros(()), "Linear"),
        (Conv2d(2, 3, 3), np.zeros((1, 3, 5, 5)), r"Conv2d: input must have 2 channels.*\(1, 3"),
        (Conv2d(2, 3, 3), np.zeros((2, 5, 5)), "Conv2d: input must have 4 dimensions"),
        (Conv2d(2, 3, 5), np.zeros((1, 2, 3, 6)), "smaller than the kernel"),
        (MaxPool2d(2), np.zeros((2, 5, 5)), "MaxPool2d: input must have 4 dimensions"),
        (AvgPool2d(4), np.zeros((1, 1, 3, 3)), "AvgPool2d.*smaller than the kernel"),
        (BatchNorm1d(3), np.zeros((4, 2)), r"BatchNorm1d: input must have 3 channels.*\(4, 2\)"),
        (BatchNorm1d(3), np.zeros((4, 3, 2, 2)), "BatchNorm1d: input must have 2 or 3 dim"),
        (BatchNorm2d(3), np.zeros((4, 3, 2)), "BatchNorm2d: input must have 4 dim"),
        (BatchNorm2d(3), np.zeros((4, 2, 2, 2)), "BatchNorm2d: input must have 3 channels"),
        (BatchNorm1d(3), np.zeros((1, 3)), "more than 1 value per channel"),
    ],
)
def test_bad_input_raises_and_changes_nothing(layer, x, match):
    before = layer.state_dict()
    grads = [g.copy() for g in layer.gradients()]
    with pytest.raises(ValueError, match=match):
        layer(x)
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    for grad, saved in zip(layer.gradients(), grads, strict=True):
        np.testing.assert_array_equal(grad, saved)


def test_wrong_dy_raises_and_leaves_gradients():
    layer = Conv2d(1, 2, 3, dtype=np.float64, rng=0)
    layer(np.ones((2, 1, 5, 5)))
    with pytest.raises(ValueError, match=r"Conv2d: dy must have the output shape \(2, 2, 3, 3\)"):
        layer.backward(np.ones((2, 2, 3, 4)))
    assert not layer.grad("weight").any() and not layer.grad("bias").any()
    layer.backward(np.ones((2, 2, 3, 3)))  # the cache survived the failed call
    assert layer.grad("bias")[0] == 18.0


@pytest.mark.parametrize(
    "layer, x",
    [
        (Linear(2, 2), np.ones((1, 2))),
        (Conv2d(1, 1, 1), np.ones((1, 1, 2, 2))),
        (MaxPool2d(2), np.ones((1, 1, 2, 2))),
        (AvgPool2d(2), np.ones((1, 1, 2, 2))),
        (Flatten(), np.ones((1, 2, 2))),
        (Identity(), np.ones(2)),
        (Dropout(), np.ones(2)),
        (BatchNorm1d(2), np.ones((3, 2))),
        (Residual(Identity()), np.ones(2)),
    ],
)
def test_backward_needs_a_forward(layer: Module, x):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones(2))
    y = layer(x)
    layer.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones_like(y))


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: Linear(0, 2), ValueError, "in_features"),
        (lambda: Linear(2, 2, bias=1), TypeError, "bias"),
        (lambda: Linear(2, 2, dtype=np.int32), TypeError, "dtype"),
        (lambda: Conv2d(1, 1, (3, 0)), ValueError, "kernel_size"),
        (lambda: Conv2d(1, 1, (3, 3, 3)), ValueError, "kernel_size"),
        (lambda: Conv2d(1, 1, 3, stride=0), ValueError, "stride"),
        (lambda: Conv2d(1, 1, 3, padding=-1), ValueError, "padding"),
        (lambda: Conv2d(1, 1, 2.5), TypeError, "kernel_size"),
        (lambda: MaxPool2d(2, padding=2), ValueError, "at most half"),
        (lambda: AvgPool2d(3, count_include_pad=None), TypeError, "count_include_pad"),
        (lambda: BatchNorm2d(3, momentum=1.5), ValueError, "momentum"),
        (lambda: BatchNorm2d(3, eps=-1.0), ValueError, "eps"),
        (lambda: BatchNorm2d(0), ValueError, "num_features"),
        (lambda: Flatten(1.0), TypeError, "start_dim"),
    ],
)
def test_constructor_errors(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_parameter_free_layers_follow_the_models_dtype():
    """Activations, pooling, dropout and Flatten built without dtype compute in the input's
    float dtype, so a float64 model stays float64 end to end (forward and backward)."""
    rng = np.random.default_rng(0)
    model = fo.nn.Sequential(
        fo.nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64, rng=rng),
        fo.nn.ReLU(),
        fo.nn.MaxPool2d(2),
        fo.nn.AvgPool2d(1),
        fo.nn.Dropout(0.5, seed=0),
        fo.nn.Flatten(),
        fo.nn.Identity(),
        fo.nn.Tanh(),
        fo.nn.Linear(8, 3, dtype=np.float64, rng=rng),
    )
    x = rng.standard_normal((4, 1, 4, 4))
    y = model(x)
    assert y.dtype == np.float64
    assert all(m.dtype == np.float64 for m in model)
    assert model.backward(np.ones_like(y)).dtype == np.float64
    assert fo.nn.ReLU()(x.astype(np.float32)).dtype == np.float32
    assert fo.nn.ReLU()(np.arange(3)).dtype == np.float32
    assert fo.nn.ReLU(dtype=np.float64)(x.astype(np.float32)).dtype == np.float64
