"""A torch user's habits never give a silently wrong model: clipping refuses parameters,
``step(model)`` matches gradients by identity, eval / no_grad forwards keep the training cache,
a foreign gradient is refused, and one ``manual_seed`` makes runs repeat."""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import nn


def mlp(seed: int = 0, dropout: float = 0.0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    layers: list[nn.Module] = [nn.Linear(4, 8, rng=rng), nn.BatchNorm1d(8), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(8, 3, rng=rng))
    return nn.Sequential(*layers)


def data(n: int = 16, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n)


def train_step(model: nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())


# --- clipping -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "clip",
    [
        lambda g: fo.clip.clip_grad_norm_(g, 1.0),
        lambda g: fo.clip.clip_grad_value_(g, 0.1),
        lambda g: fo.clip.clip_grad_norm_per_tensor_(g, 1.0),
    ],
)
def test_clipping_refuses_parameters_and_leaves_weights(clip) -> None:
    model = mlp()
    x, y = data()
    train_step(model, x, y)
    before = model.state_dict()
    with pytest.raises(TypeError, match=r"not a gradient; pass the model"):
        clip(model.parameters())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_clip_grad_norm_of_a_module_clips_its_gradients() -> None:
    model, twin = mlp(), mlp()
    x, y = data()
    train_step(model, x, y)
    train_step(twin, x, y)
    weights = model.state_dict()
    norm = fo.clip.clip_grad_norm_(model, 0.5)
    assert norm == fo.clip.clip_grad_norm_(twin.gradients(), 0.5)
    for a, b in zip(model.gradients(), twin.gradients(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert fo.clip.global_norm(model) == pytest.approx(0.5, rel=1e-4)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, weights[key], err_msg=key)


def test_read_only_norms_still_measure_parameters() -> None:
    model = mlp()
    params = model.parameters()
    expected = np.sqrt(sum(float((p.astype(np.float64) ** 2).sum()) for p in params))
    assert fo.clip.global_norm(params) == pytest.approx(expected, rel=1e-6)


def test_dead_module_parameters_are_plain_arrays_again() -> None:
    model = mlp()
    params = [p.copy() for p in model.parameters()]
    grads = [np.ones_like(p) for p in params]
    fo.clip.clip_grad_value_(grads, 0.5)  # copies are not parameters
    assert all((g == 0.5).all() for g in grads)


# --- step(model) ------------------------------------------------------------------------------
def test_step_model_matches_by_identity_whatever_the_group_order() -> None:
    x, y = data()
    results = []
    for reverse in (False, True):
        model = mlp()
        groups = fo.optim.param_groups(model, weight_decay=0.1)
        if reverse:
            groups = [{**g, "params": g["params"][::-1]} for g in groups[::-1]]
        opt = fo.optim.AdamW(groups, lr=0.01)
        for _ in range(3):
            train_step(model, x, y)
            opt.step(model)
        results.append(model.state_dict())
    # the same updates as a single-group optimizer given the aligned gradient list
    model = mlp()
    decay = {id(p) for p in fo.optim.param_groups(model)[0]["params"]}
    groups = [
        {"params": [p], "weight_decay": 0.1 if id(p) in decay else 0.0} for p in model.parameters()
    ]
    ref = fo.optim.AdamW(groups, lr=0.01)
    for _ in range(3):
        train_step(model, x, y)
        ref.step(model.gradients())
    for state in results:
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(state[key], value, err_msg=key)


def test_step_without_arguments_uses_the_live_modules() -> None:
    x, y = data()
    a, b = mlp(), mlp()
    opt_a = fo.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = fo.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        train_step(a, x, y)
        train_step(b, x, y)
        opt_a.step()
        opt_b.step(b)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key], err_msg=key)


def test_step_and_zero_grad_on_plain_arrays_say_what_to_pass() -> None:
    params = [np.ones(3, np.float32)]
    opt = fo.optim.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match=r"opt.step\(model\) or opt.step\(model.gradients"):
        opt.step()
    with pytest.raises(ValueError, match=r"model.zero_grad\(\)"):
        opt.zero_grad()
    np.testing.assert_array_equal(params[0], 1.0)


def test_step_model_refuses_a_model_without_the_parameters() -> None:
    model, other = mlp(), mlp()
    opt = fo.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\] .*not a parameter"):
        opt.step(other)


def twin_layers(seed: int = 0) -> nn.Sequential:
    """Two layers whose parameters have the same shapes: a position mix-up would go unseen."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(8, 8, rng=rng), nn.Tanh(), nn.Linear(8, 8, rng=rng))


def twin_step(model: nn.Module) -> None:
    x = np.random.default_rng(3).normal(size=(16, 8)).astype(np.float32)
    model.zero_grad()
    out = model(x)
    model.backward(out - 1.0)


@pytest.mark.parametrize("opt_class", [fo.optim.SGD, fo.optim.AdamW, fo.optim.Adam8bit])
def test_step_gradients_list_matches_by_identity_with_reordered_groups(opt_class) -> None:
    """``opt.step(model.gradients())`` with groups in another order than ``parameters()``
    (same shapes everywhere) gives each array its own gradient, as ``opt.step(model)`` does."""
    results = []
    for how in ("model", "list"):
        model = twin_layers()
        params = model.parameters()
        opt = opt_class([{"params": params[2:]}, {"params": params[:2]}], lr=0.01)
        for _ in range(3):
            twin_step(model)
            opt.step(model if how == "model" else model.gradients())
        results.append(model.state_dict())
    for key, value in results[0].items():
        np.testing.assert_array_equal(results[1][key], value, err_msg=key)
    # and differs from giving the second layer the first layer's gradients
    model = twin_layers()
    params = model.parameters()
    opt = opt_class([{"params": params[2:]}, {"params": params[:2]}], lr=0.01)
    twin_step(model)
    opt.step(list(model.gradients()))  # a plain list: by position
    assert not np.array_equal(model.state_dict()["2.weight"], results[0]["2.weight"])


def test_step_gradients_list_of_part_of_the_model() -> None:
    """An optimizer over one layer takes that layer's gradients out of the whole list."""
    model, ref = twin_layers(), twin_layers()
    opt = fo.optim.SGD(model[2].parameters(), lr=0.1)
    opt_ref = fo.optim.SGD(ref[2].parameters(), lr=0.1)
    for _ in range(2):
        twin_step(model)
        twin_step(ref)
        opt.step(model.gradients())
        opt_ref.step(ref[2].gradients())
    for key, value in ref.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)


def test_step_gradients_list_of_another_model_is_refused() -> None:
    model, other = twin_layers(), twin_layers(1)
    opt = fo.optim.SGD(model.parameters(), lr=0.1)
    twin_step(other)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"grads: param_groups\[0\]\['params'\]\[0\].*opt.step"):
        opt.step(other.gradients())
    for key, value in before.items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)


def test_gradients_list_is_a_list_and_pickles() -> None:
    import pickle

    model = twin_layers()
    twin_step(model)
    grads = model.gradients()
    assert isinstance(grads, list) and len(grads) == 4
    again = pickle.loads(pickle.dumps(grads))
    assert [g.shape for g in again] == [g.shape for g in grads]
    assert [p.shape for p in again.params] == [p.shape for p in model.parameters()]


def test_step_closure_says_what_to_do() -> None:
    model = twin_layers()
    opt = fo.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"step\(closure\) is not supported.*opt.step\(model\)"):
        opt.step(lambda: 0.0)


def test_optimizer_zero_grad_zeroes_the_model_gradients() -> None:
    model = mlp()
    x, y = data()
    train_step(model, x, y)
    opt = fo.optim.Adam(model.parameters(), lr=0.01)
    opt.zero_grad(set_to_none=True)
    assert all(not g.any() for g in model.gradients())


def test_tied_weights_get_the_sum_of_their_gradients() -> None:
    first, second = nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False)
    second.weight = first.weight  # tie
    model = nn.Sequential(first, nn.Tanh(), second)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    model.zero_grad()
    model.backward(np.ones_like(model(x)))
    expected = first.weight - 0.1 * (first.grad("weight") + second.grad("weight"))
    opt = fo.optim.SGD(fo.optim.param_groups(model, 0.0), lr=0.1)
    assert len(opt.param_groups[0]["params"]) == 1
    opt.step(model)
    np.testing.assert_allclose(first.weight, expected, rtol=1e-6)
    assert second.weight is first.weight


def test_param_groups_split() -> None:
    model = mlp()
    decay, rest = fo.optim.param_groups(model, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "3.weight"]
    excluded = sorted(names[id(p)] for p in rest["params"])
    assert excluded == ["0.bias", "1.bias", "1.weight", "3.bias"]
    assert decay["weight_decay"] == 0.05 and rest["weight_decay"] == 0.0
    with pytest.raises(TypeError, match="no_decay"):
        fo.optim.param_groups(model, no_decay="bias")
    with pytest.raises(TypeError, match="model"):
        fo.optim.param_groups(model.parameters())


def test_fit_steps_by_identity_with_reordered_groups() -> None:
    x, y = data(32)
    states = []
    for reverse in (False, True):
        model = mlp()
        groups = fo.optim.param_groups(model, 0.01)
        opt = fo.optim.AdamW(groups[::-1] if reverse else groups, lr=0.01)
        fo.train.fit(
            model, nn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=8, seed=0, progress=False
        )
        states.append(model.state_dict())
    for key, value in states[0].items():
        np.testing.assert_array_equal(value, states[1][key], err_msg=key)


# --- forward caches ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["eval", "no_grad", "no_grad_train"])
def test_a_forward_between_loss_and_backward_leaves_the_training_cache(mode) -> None:
    x, y = data()
    x_val, _ = data(5, seed=7)
    clean, disturbed = mlp(dropout=0.3), mlp(dropout=0.3)
    for model in (clean, disturbed):
        model[3].rng = np.random.default_rng(3)
    loss_fn = nn.CrossEntropyLoss()
    for model in (clean, disturbed):
        model.zero_grad()
        loss_fn(model(x), y)
        dy = loss_fn.backward()
        if model is disturbed:
            if mode == "eval":
                model.eval()
                model(x_val)
                model.train()
            else:
                with fo.no_grad():
                    if mode == "no_grad":
                        model.eval()
                    model(x_val)
                    model.train()
        model.backward(dy)
    for a, b in zip(clean.gradients(), disturbed.gradients(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_backward_of_an_eval_forward_output_raises_naming_shapes() -> None:
    model = mlp()
    x, y = data()
    x_val, y_val = data(5, seed=7)
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), y)
    model.eval()
    loss_fn(model(x_val), y_val)
    model.train()
    grads = [g.copy() for g in model.gradients()]
    with pytest.raises(RuntimeError, match=r"\(5, 3\).*eval-mode or no_grad.*\(16, 3\)"):
        model.backward(loss_fn.backward())
    for a, b in zip(grads, model.gradients(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_backward_of_an_earlier_training_output_raises() -> None:
    model = mlp()
    x, y = data()
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), y)
    dy = loss_fn.backward()
    model(x)  # a second training forward: dy belongs to the first
    with pytest.raises(RuntimeError, match="earlier training forward"):
        model.backward(dy)


def test_enable_grad_keeps_a_cache_in_eval_mode() -> None:
    model = mlp().eval()
    x, _ = data()
    with fo.enable_grad():
        out = model(x)
    dx = model.backward(np.ones_like(out))
    assert dx.shape == x.shape
    with pytest.raises(RuntimeError, match="backward called before forward"):
        model(x)
        model.backward(np.ones_like(out))


def test_grad_mode_is_restored_after_errors() -> None:
    assert fo.is_grad_enabled()
    with pytest.raises(ZeroDivisionError), fo.no_grad():
        assert not fo.is_grad_enabled()
        _ = 1 / 0
    assert fo.is_grad_enabled()


# --- one seed -------------------------------------------------------------------------------
def _seeded_run(seed_first: bool) -> dict[str, np.ndarray]:
    if seed_first:
        fo.manual_seed(123)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    loader = fo.data.BatchLoader(*data(32), batch_size=8)
    if not seed_first:
        fo.manual_seed(123)
        # weights drawn before the seed differ: load a fixed starting point
        model.load_state_dict(_START)
    opt = fo.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for xb, yb in loader:
        model.zero_grad()
        loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())
        opt.step(model)
    x, y = data(32)
    fo.train.fit(model, loss_fn, opt, x, y, epochs=2, batch_size=8, progress=False)
    return model.state_dict()


fo.manual_seed(5)
_START = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).state_dict()


@pytest.mark.parametrize("seed_first", [True, False])
def test_manual_seed_repeats_a_run(seed_first) -> None:
    first, second = _seeded_run(seed_first), _seeded_run(seed_first)
    for key, value in first.items():
        np.testing.assert_array_equal(value, second[key], err_msg=key)


def test_manual_seed_reseeds_a_live_dropout() -> None:
    drop = nn.Dropout(0.5)
    fo.manual_seed(1)
    mask_1 = drop(np.ones(64, np.float32))
    fo.manual_seed(2)
    mask_2 = drop(np.ones(64, np.float32))
    assert not np.array_equal(mask_1, mask_2)
    fo.manual_seed(1)
    np.testing.assert_array_equal(drop(np.ones(64, np.float32)), mask_1)


def _seed_build_run() -> tuple[nn.Sequential, np.ndarray]:
    fo.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    loader = fo.data.BatchLoader(*data(32), batch_size=8, shuffle=True)
    return model, np.concatenate([model(xb) for xb, _ in loader])


def test_manual_seed_rerun_with_the_old_model_alive_repeats_the_run() -> None:
    """The torch habit of re-running a "seed, build, train" cell: the previous model (its
    dropout) and loader are still referenced when the seed is set again."""
    first_model, first = _seed_build_run()
    second_model, second = _seed_build_run()  # first_model is alive during the second seeding
    assert first_model is not second_model
    np.testing.assert_array_equal(first, second)


def test_manual_seed_checks_its_argument() -> None:
    with pytest.raises(TypeError, match="seed"):
        fo.manual_seed(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        fo.manual_seed(-1)
