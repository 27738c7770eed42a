"""Embedding and LSTM: torch's results (fixture from tools/make_golden_nn_recurrent.py), finite
differences, dtypes, layouts, errors and state_dict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ferroptim.nn.container import Sequential
from ferroptim.nn.embedding import Embedding
from ferroptim.nn.functional import sigmoid
from ferroptim.nn.gradcheck import gradcheck
from ferroptim.nn.lstm import LSTM

GOLDEN = np.load(Path(__file__).parent / "data" / "golden_nn_recurrent.npz", allow_pickle=False)
CASES = json.loads(str(GOLDEN["meta"]))["cases"]
MODULES = {"Embedding": Embedding, "LSTM": LSTM}


def golden(case: str, key: str) -> np.ndarray | None:
    name = f"{case}/{key}"
    return GOLDEN[name] if name in GOLDEN.files else None


def golden_group(case: str, group: str) -> dict[str, np.ndarray]:
    prefix = f"{case}/{group}/"
    return {k[len(prefix) :]: GOLDEN[k] for k in GOLDEN.files if k.startswith(prefix)}


def close(actual, expected, label=""):
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12, err_msg=label)


def random_lstm(seed=0, dtype=np.float64, **kwargs):
    kwargs = {"input_size": 3, "hidden_size": 4, **kwargs}
    return LSTM(**kwargs, dtype=dtype, rng=seed)


# --- torch fixture ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_matches_torch(case):
    config = json.loads(str(golden(case, "config")))
    module = MODULES[config["module"]](**config["kwargs"], dtype=np.float64, rng=1)
    state = golden_group(case, "state")
    assert list(module.state_dict()) == list(state)  # torch's keys, in torch's order
    module.load_state_dict(state)
    hx = None if golden(case, "h0") is None else (golden(case, "h0"), golden(case, "c0"))
    y = module(golden(case, "x")) if hx is None else module(golden(case, "x"), hx)
    close(y, golden(case, "y"), "output")
    if config["module"] == "LSTM":
        dx = module.backward(
            golden(case, "dy"), dh_n=golden(case, "dh_n"), dc_n=golden(case, "dc_n")
        )
        close(dx, golden(case, "dx"), "dx")
        close(module.h_n, golden(case, "h_n"), "h_n")
        close(module.c_n, golden(case, "c_n"), "c_n")
        if hx is not None:
            close(module.dh_0, golden(case, "dh0"), "dh_0")
            close(module.dc_0, golden(case, "dc0"), "dc_0")
    else:
        assert module.backward(golden(case, "dy")) is None
    grads = golden_group(case, "grad")
    assert [name for name, _ in module.named_gradients()] == list(grads)
    for name, grad in module.named_gradients():
        close(grad, grads[name], f"grad {name}")


# --- Embedding -------------------------------------------------------------------------------
def test_embedding_init_padding_and_shape():
    emb = Embedding(400, 50, padding_idx=-3, rng=0)
    assert emb.padding_idx == 397 and emb.weight.dtype == np.float32
    assert emb.weight.shape == (400, 50)
    assert not emb.weight[397].any()
    others = np.delete(emb.weight, 397, axis=0)
    assert abs(others.mean()) < 0.02 and abs(others.std() - 1.0) < 0.02  # N(0, 1)
    np.testing.assert_array_equal(Embedding(400, 50, padding_idx=-3, rng=0).weight, emb.weight)
    assert repr(emb) == "Embedding(400, 50, padding_idx=397)"


def test_embedding_lookup_any_shape_and_list_input():
    emb = Embedding(5, 3, dtype=np.float64, rng=0)
    idx = np.array([[[0, 4], [2, 2]], [[1, 3], [4, 0]]], dtype=np.int32)
    y = emb(idx)
    assert y.shape == (2, 2, 2, 3) and y.dtype == np.float64
    np.testing.assert_array_equal(y[1, 0, 1], emb.weight[3])
    np.testing.assert_array_equal(emb([1, 2]), emb.weight[[1, 2]])
    np.testing.assert_array_equal(emb(np.uint8(4)), emb.weight[4])


def test_embedding_backward_scatter_adds_skips_padding_and_accumulates():
    emb = Embedding(6, 2, padding_idx=1, dtype=np.float64, rng=0)
    rng = np.random.default_rng(1)
    idx = np.array([[1, 3, 3, 0], [5, 3, 1, 0]])
    dy = rng.standard_normal((2, 4, 2))
    expected = np.zeros((6, 2))
    np.add.at(expected, idx.reshape(-1), dy.reshape(-1, 2))
    expected[1] = 0.0
    emb(idx)
    assert emb.backward(dy) is None
    np.testing.assert_allclose(emb.grad("weight"), expected, rtol=1e-15)
    emb(idx)
    emb.backward(dy)
    np.testing.assert_allclose(emb.grad("weight"), 2 * expected, rtol=1e-15)


def test_embedding_gradcheck_and_padding_row_excluded():
    idx = np.array([[0, 2, 2], [4, 1, 2]])
    report = gradcheck(Embedding(5, 3, dtype=np.float64, rng=0), idx, seed=3)
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["weight"]
    padded = gradcheck(Embedding(5, 3, padding_idx=2, dtype=np.float64, rng=0), idx, seed=3)
    weight = padded["weight"]
    assert not weight.analytic[2].any() and np.abs(weight.numeric[2]).max() > 0.1
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(weight.analytic[keep], weight.numeric[keep], atol=1e-8)


def test_embedding_float32_matches_float64():
    e64 = Embedding(7, 4, dtype=np.float64, rng=2)
    e32 = Embedding(7, 4, rng=2)
    idx = np.array([3, 6, 3, 0])
    dy = np.random.default_rng(0).standard_normal((4, 4))
    y32, y64 = e32(idx), e64(idx)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-6)
    e32.backward(dy)
    e64.backward(dy)
    assert e32.grad("weight").dtype == np.float32
    np.testing.assert_allclose(e32.grad("weight"), e64.grad("weight"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("indices", "error", "match"),
    [
        (np.array([0.0, 1.0]), TypeError, "integer indices"),
        (np.array([True, False]), TypeError, "integer indices"),
        ("12", TypeError, "integer array"),
        (None, TypeError, "integer array"),
        (np.array([[1, 7], [2, 9]]), ValueError, r"index 7 is out of range \[0, 7\)"),
        ([3, -1], ValueError, "index -1 is out of range"),
    ],
)
def test_embedding_bad_indices(indices, error, match):
    emb = Embedding(7, 2, rng=0)
    before = emb.state_dict()
    with pytest.raises(error, match=match):
        emb(indices)
    with pytest.raises(RuntimeError, match="before forward"):
        emb.backward(np.zeros((2, 2), np.float32))  # the failed forward cached nothing
    for key, value in emb.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(num_embeddings=0, embedding_dim=2), ValueError, "num_embeddings"),
        (dict(num_embeddings=3, embedding_dim=2.0), TypeError, "embedding_dim"),
        (dict(num_embeddings=3, embedding_dim=2, padding_idx=3), ValueError, "padding_idx"),
        (dict(num_embeddings=3, embedding_dim=2, padding_idx=-4), ValueError, "padding_idx"),
        (dict(num_embeddings=3, embedding_dim=2, padding_idx=1.0), TypeError, "padding_idx"),
        (dict(num_embeddings=3, embedding_dim=2, dtype=np.int32), TypeError, "dtype"),
    ],
)
def test_embedding_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Embedding(**kwargs)


def test_embedding_backward_errors_leave_gradient_untouched():
    emb = Embedding(4, 3, rng=0)
    with pytest.raises(RuntimeError, match="Embedding: backward called before forward"):
        emb.backward(np.zeros((2, 3), np.float32))
    emb(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\)"):
        emb.backward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="dy must have 2 dimensions"):
        emb.backward(np.ones((2, 3, 1), np.float32))
    assert not emb.grad("weight").any()
    emb.backward(np.ones((2, 3), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        emb.backward(np.ones((2, 3), np.float32))


def test_embedding_state_dict_round_trip():
    src = Embedding(5, 3, padding_idx=0, rng=1)
    dst = Embedding(5, 3, padding_idx=0, rng=2)
    assert list(src.state_dict()) == ["weight"]
    dst.load_state_dict(src.state_dict())
    np.testing.assert_array_equal(dst(np.array([4, 1])), src(np.array([4, 1])))


# --- LSTM ------------------------------------------------------------------------------------
def test_lstm_parameters_layout_and_init():
    lstm = LSTM(5, 4, num_layers=2, rng=0)
    assert [(n, p.shape) for n, p in lstm.named_parameters()] == [
        ("weight_ih_l0", (16, 5)),
        ("weight_hh_l0", (16, 4)),
        ("bias_ih_l0", (16,)),
        ("bias_hh_l0", (16,)),
        ("weight_ih_l1", (16, 4)),
        ("weight_hh_l1", (16, 4)),
        ("bias_ih_l1", (16,)),
        ("bias_hh_l1", (16,)),
    ]
    values = np.concatenate([p.ravel() for p in lstm.parameters()])
    assert values.dtype == np.float32
    assert np.abs(values).max() <= 0.5 and np.abs(values).max() > 0.45  # U(-1/sqrt(4), +)
    assert abs(values.mean()) < 0.05
    assert [n for n, _ in LSTM(3, 2, bias=False).named_parameters()] == [
        "weight_ih_l0",
        "weight_hh_l0",
    ]
    assert (
        repr(LSTM(3, 2, 2, False, True)) == "LSTM(3, 2, num_layers=2, bias=False, batch_first=True)"
    )


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        (dict(), (4, 2, 3)),
        (dict(num_layers=2), (3, 2, 3)),
        (dict(num_layers=2, batch_first=True), (2, 3, 3)),
        (dict(num_layers=2, bias=False), (3, 2, 3)),
        (dict(num_layers=2), (4, 3)),  # unbatched
    ],
)
def test_lstm_gradcheck(kwargs, shape):
    lstm = random_lstm(seed=4, **kwargs)
    x = np.random.default_rng(5).standard_normal(shape)
    report = gradcheck(lstm, x, seed=6, atol=1e-8, rtol=1e-6)
    assert report.passed, str(report)
    assert report["input"].checked == x.size


def numeric_gradient(f, array, eps=1e-6):
    grad = np.zeros_like(array)
    for k in range(array.size):
        original = array.flat[k]
        array.flat[k] = original + eps
        plus = f()
        array.flat[k] = original - eps
        minus = f()
        array.flat[k] = original
        grad.flat[k] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("shape", [(3, 2, 3), (3, 3)])
def test_lstm_state_gradients_match_finite_differences(shape):
    lstm = random_lstm(seed=7, num_layers=2)
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape)
    state_shape = (2, shape[1], 4) if len(shape) == 3 else (2, 4)
    h0, c0, dh_n, dc_n = (rng.standard_normal(state_shape) for _ in range(4))
    dy = rng.standard_normal((*shape[:-1], 4))

    def loss():
        y = lstm(x, (h0, c0))
        return np.sum(y * dy) + np.sum(lstm.h_n * dh_n) + np.sum(lstm.c_n * dc_n)

    expected_dx = numeric_gradient(loss, x)
    expected_dh0, expected_dc0 = numeric_gradient(loss, h0), numeric_gradient(loss, c0)
    lstm(x, (h0, c0))
    dx = lstm.backward(dy, dh_n=dh_n, dc_n=dc_n)
    assert lstm.h_n.shape == lstm.dh_0.shape == lstm.dc_0.shape == state_shape
    np.testing.assert_allclose(dx, expected_dx, atol=1e-8)
    np.testing.assert_allclose(lstm.dh_0, expected_dh0, atol=1e-8)
    np.testing.assert_allclose(lstm.dc_0, expected_dc0, atol=1e-8)


def test_lstm_backward_from_final_state_only():
    lstm = random_lstm(seed=9)
    x = np.random.default_rng(10).standard_normal((5, 2, 3))
    dh_n = np.random.default_rng(11).standard_normal((1, 2, 4))

    def loss():
        lstm(x)
        return np.sum(lstm.h_n * dh_n)

    expected = numeric_gradient(loss, x)
    lstm(x)
    np.testing.assert_allclose(lstm.backward(None, dh_n=dh_n), expected, atol=1e-8)


def test_lstm_layouts_agree_and_final_state_is_last_output():
    rng = np.random.default_rng(12)
    seq_major = random_lstm(seed=13, num_layers=2)
    batch_major = random_lstm(seed=14, num_layers=2, batch_first=True)
    batch_major.load_state_dict(seq_major.state_dict())
    x = rng.standard_normal((5, 3, 3))
    dy = rng.standard_normal((5, 3, 4))
    y = seq_major(x)
    np.testing.assert_allclose(batch_major(x.transpose(1, 0, 2)), y.transpose(1, 0, 2), 1e-14)
    np.testing.assert_array_equal(seq_major.h_n, batch_major.h_n)
    np.testing.assert_array_equal(seq_major.h_n[-1], y[-1])
    dx = seq_major.backward(dy)
    np.testing.assert_allclose(batch_major.backward(dy.transpose(1, 0, 2)), dx.transpose(1, 0, 2))
    single = seq_major(x[:, 1])  # unbatched (L, I) is batch 1 with the batch axis dropped
    assert single.shape == (5, 4) and seq_major.h_n.shape == (2, 4)
    np.testing.assert_allclose(single, y[:, 1], rtol=1e-13)


def test_lstm_float32_matches_float64():
    l64 = random_lstm(seed=15, num_layers=2)
    l32 = random_lstm(seed=15, num_layers=2, dtype=np.float32)
    x = np.random.default_rng(16).standard_normal((6, 2, 3))
    dy = np.random.default_rng(17).standard_normal((6, 2, 4))
    y32, y64 = l32(x), l64(x)
    assert y32.dtype == l32.h_n.dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=1e-5)
    dx32 = l32.backward(dy)
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, l64.backward(dy), atol=1e-5)
    for (name, g32), (_, g64) in zip(l32.named_gradients(), l64.named_gradients(), strict=True):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, atol=1e-4, err_msg=name)


def test_lstm_gradients_accumulate_and_saturation_is_stable():
    lstm = random_lstm(seed=18)
    x = np.random.default_rng(19).standard_normal((4, 2, 3))
    dy = np.ones((4, 2, 4))
    lstm(x)
    lstm.backward(dy)
    once = [g.copy() for g in lstm.gradients()]
    lstm(x)
    lstm.backward(dy)
    for g, g1 in zip(lstm.gradients(), once, strict=True):
        np.testing.assert_allclose(g, 2 * g1, rtol=1e-14)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        y = lstm(x * 1e6)
        dx = lstm.backward(dy)
        s = sigmoid(np.array([-1e4, -40.0, 0.0, 40.0, 1e4]))
    assert np.isfinite(y).all() and np.isfinite(dx).all() and np.abs(y).max() <= 1.0
    np.testing.assert_allclose(s, [0.0, 4.248354255291589e-18, 0.5, 1.0, 1.0], rtol=1e-15)


def test_lstm_in_sequential_after_embedding():
    model = Sequential(
        Embedding(6, 3, padding_idx=0, dtype=np.float64, rng=20),
        LSTM(3, 2, num_layers=2, batch_first=True, dtype=np.float64, rng=21),
    )
    tokens = np.array([[1, 5, 5, 0], [2, 3, 0, 0]])
    assert model(tokens).shape == (2, 4, 2)
    report = gradcheck(model, tokens, seed=22, atol=1e-8, rtol=1e-6)
    # Every tensor passes except the padding row, which by design gets no gradient.
    assert [t.name for t in report.failures] == ["0.weight"], str(report)
    table = report["0.weight"]
    assert not table.analytic[0].any() and np.abs(table.numeric[0]).max() > 1e-3
    np.testing.assert_allclose(table.analytic[1:], table.numeric[1:], atol=1e-8)


@pytest.mark.parametrize(
    ("x", "hx", "error", "match"),
    [
        (np.zeros(3), None, ValueError, "input must have 2 or 3 dimensions"),
        (np.zeros((1, 2, 3, 3)), None, ValueError, "input must have 2 or 3 dimensions"),
        (np.zeros((4, 2, 5)), None, ValueError, "input must have 3 features"),
        (np.zeros((0, 2, 3)), None, ValueError, "at least one time step"),
        ("abc", None, TypeError, "input must be a numeric array"),
        (np.zeros((4, 2, 3)), np.zeros((1, 2, 4)), TypeError, r"hx must be a pair"),
        (np.zeros((4, 2, 3)), (np.zeros((1, 2, 4)),), TypeError, r"hx must be a pair"),
        (np.zeros((4, 2, 3)), (np.zeros((1, 3, 4)), np.zeros((1, 2, 4))), ValueError, "h_0"),
        (np.zeros((4, 2, 3)), (np.zeros((1, 2, 4)), np.zeros((2, 4))), ValueError, "c_0"),
        (np.zeros((4, 3)), (np.zeros((1, 1, 4)), np.zeros((1, 1, 4))), ValueError, "h_0"),
    ],
)
def test_lstm_bad_input(x, hx, error, match):
    lstm = random_lstm(seed=23)
    with pytest.raises(error, match=match):
        lstm(x, hx)
    assert lstm.h_n is None
    with pytest.raises(RuntimeError, match="LSTM: backward called before forward"):
        lstm.backward(np.zeros((4, 2, 4)))


def test_lstm_backward_errors_leave_gradients_untouched():
    lstm = random_lstm(seed=24, num_layers=2)
    lstm(np.ones((3, 2, 3)))
    for dy, kwargs, match in [
        (np.ones((3, 2, 3)), {}, r"dy must have shape \(3, 2, 4\)"),
        (np.ones((3, 2, 4)), dict(dh_n=np.ones((1, 2, 4))), "dh_n must have shape"),
        (np.ones((3, 2, 4)), dict(dc_n=np.ones((2, 4))), "dc_n must have 3 dimensions"),
        ("x", {}, TypeError),
    ]:
        error = TypeError if match is TypeError else ValueError
        with pytest.raises(error, match=None if match is TypeError else match):
            lstm.backward(dy, **kwargs)
    assert not any(g.any() for g in lstm.gradients())
    lstm.backward(np.ones((3, 2, 4)))
    assert all(g.any() for g in lstm.gradients())
    with pytest.raises(RuntimeError, match="before forward"):
        lstm.backward(np.ones((3, 2, 4)))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(input_size=0, hidden_size=2), ValueError, "input_size"),
        (dict(input_size=2, hidden_size=-1), ValueError, "hidden_size"),
        (dict(input_size=2, hidden_size=2, num_layers=0), ValueError, "num_layers"),
        (dict(input_size=2, hidden_size=2, bias=1), TypeError, "bias"),
        (dict(input_size=2, hidden_size=2, batch_first="yes"), TypeError, "batch_first"),
        (dict(input_size=2, hidden_size=2, dtype=np.float16), TypeError, "dtype"),
        (dict(input_size=2, hidden_size=2, rng="seed"), TypeError, "rng"),
    ],
)
def test_lstm_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        LSTM(**kwargs)


def test_lstm_state_dict_round_trip_and_key_errors():
    src = random_lstm(seed=25, num_layers=2, dtype=np.float32)
    dst = random_lstm(seed=26, num_layers=2, dtype=np.float32)
    x = np.random.default_rng(27).standard_normal((3, 2, 3))
    assert not np.array_equal(src(x), dst(x))
    dst.load_state_dict(src.state_dict())
    np.testing.assert_array_equal(dst(x), src(x))
    np.testing.assert_array_equal(dst.c_n, src.c_n)
    with pytest.raises(KeyError, match="bias_hh_l1"):
        random_lstm(num_layers=2, bias=False).load_state_dict(src.state_dict())
    with pytest.raises(ValueError, match="weight_ih_l0"):
        random_lstm(input_size=5, num_layers=2).load_state_dict(src.state_dict())


# --- init= (issue 4: layers accept an init choice) -----------------------------------------
def test_lstm_default_init_is_unchanged_by_the_init_argument():
    default = LSTM(3, 4, num_layers=2, rng=5)
    explicit = LSTM(3, 4, num_layers=2, init=None, rng=5)
    bound = 1.0 / np.sqrt(4)
    for (name, a), (_, b) in zip(
        default.named_parameters(), explicit.named_parameters(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert np.all(np.abs(a) <= bound) and np.any(a != 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_named_init_sets_weights_and_zeroes_biases(dtype):
    lstm = LSTM(3, 4, num_layers=2, init="orthogonal", dtype=dtype, rng=0)
    for name, array in lstm.named_parameters():
        assert array.dtype == dtype
        if name.startswith("bias"):
            np.testing.assert_array_equal(array, 0)
        else:  # (4H, in) with 4H >= in: orthonormal columns
            np.testing.assert_allclose(array.T @ array, np.eye(array.shape[1]), atol=1e-5)
    y = lstm(np.ones((5, 2, 3), dtype))
    assert y.shape == (5, 2, 4) and np.all(np.isfinite(y))


def test_lstm_callable_init_gets_each_weight_and_the_generator():
    seen = []

    def fill(weight, rng):
        assert isinstance(rng, np.random.Generator)
        seen.append(weight.shape)
        weight[...] = 0.5

    lstm = LSTM(3, 2, num_layers=2, bias=False, init=fill, rng=0)
    assert seen == [(8, 3), (8, 2), (8, 2), (8, 2)]
    for _, array in lstm.named_parameters():
        np.testing.assert_array_equal(array, 0.5)


def test_lstm_and_embedding_refuse_an_unknown_init():
    with pytest.raises(ValueError, match="LSTM: init"):
        LSTM(3, 2, init="glorot")
    with pytest.raises(ValueError, match="Embedding: init"):
        Embedding(5, 2, init=3)


def test_embedding_init_fills_the_weight_and_rezeroes_the_padding_row():
    default = Embedding(6, 4, padding_idx=2, rng=1)
    again = Embedding(6, 4, padding_idx=2, init=None, rng=1)
    np.testing.assert_array_equal(default.weight, again.weight)
    emb = Embedding(6, 4, padding_idx=2, init=lambda w, rng: w.fill(3.0), dtype=np.float64)
    expected = np.full((6, 4), 3.0)
    expected[2] = 0.0
    np.testing.assert_array_equal(emb.weight, expected)
    xavier = Embedding(50, 8, padding_idx=-1, init="xavier_uniform", rng=0)
    bound = np.sqrt(6.0 / (50 + 8))
    assert np.all(np.abs(xavier.weight) <= bound) and xavier.weight.std() > bound / 3
    np.testing.assert_array_equal(xavier.weight[49], 0.0)
