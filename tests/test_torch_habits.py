"""torch habits either work or say what to do: named_parameters, foreach/fused, loss.item() and
loss.backward(), load_state_dict of a Checkpoint and checkpoint["model"], torch.save's dict,
Module.apply and requires_grad_, torch.utils.data names, the demo without its extras."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import __main__ as cli
from ferroptim import nn


def small() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1))


def test_named_parameters_are_accepted_as_params() -> None:
    model = small()
    opt = fo.optim.Adam(model.named_parameters(), lr=0.1)
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
    opt.add_param_group({"params": nn.Linear(2, 2).named_parameters(), "lr": 0.01})
    assert len(opt.param_groups[1]["params"]) == 2


def test_a_module_as_params_says_what_to_pass() -> None:
    with pytest.raises(TypeError, match=r"model.parameters\(\)"):
        fo.optim.SGD(small(), lr=0.1)


@pytest.mark.parametrize("flag", ["foreach", "fused"])
def test_foreach_and_fused_are_accepted_no_ops(flag) -> None:
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    results = []
    for value in (None, True, False):
        model = small()
        opt = fo.optim.AdamW(model.parameters(), lr=0.1, **{flag: value})
        model.backward(np.ones((4, 2), np.float32) + 0 * model(x))
        opt.step(model)
        results.append(model.state_dict())
    for state in results[1:]:
        for key, value in state.items():
            np.testing.assert_array_equal(value, results[0][key])
    with pytest.raises(TypeError, match=flag):
        fo.optim.SGD(small().parameters(), lr=0.1, **{flag: "yes"})


@pytest.mark.parametrize(
    "loss, target",
    [
        (nn.CrossEntropyLoss(), np.array([0, 1, 1])),
        (nn.CrossEntropyLoss(reduction="sum"), np.array([0, 1, 1])),
        (nn.MSELoss(), np.zeros((3, 2))),
        (nn.L1Loss(reduction="sum"), np.zeros((3, 2))),
    ],
)
def test_losses_support_item(loss, target) -> None:
    out = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
    value = loss(out, target)
    assert isinstance(value, float)
    assert isinstance(value.item(), float) and value.item() == float(value)
    assert isinstance(value, np.float64)
    # loss.backward(), the torch spelling, says what to call instead of an AttributeError
    with pytest.raises(RuntimeError, match=r"model\.backward\(loss_fn\.backward\(\)\)"):
        value.backward()
    assert type(value + 1.0) is np.float64  # arithmetic gives plain numbers


def test_load_state_dict_of_a_checkpoint_explains(tmp_path) -> None:
    model = small()
    opt = fo.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "ckpt.npz"
    fo.save(path, model=model, optimizer=opt)
    checkpoint = fo.load(path)
    with pytest.raises(TypeError, match=r"ferroptim\.load\(path, model=\.\.\.\)"):
        model.load_state_dict(checkpoint)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"load\(path, optimizer=\.\.\.\)"):
        opt.load_state_dict(checkpoint)  # type: ignore[arg-type]
    model.load_state_dict(checkpoint["model"])  # what the message suggests works
    opt.load_state_dict(checkpoint["optimizer"])


def test_checkpoint_subscript_gives_the_saved_state_dicts(tmp_path) -> None:
    model = small()
    opt = fo.optim.Adam(model.parameters(), lr=0.1)
    model.backward(np.ones((2, 2), np.float32) + 0 * model(np.ones((2, 3), np.float32)))
    opt.step(model)
    path = tmp_path / "ckpt.npz"
    fo.save(path, model=model, optimizer=opt, epoch=3)
    checkpoint = fo.load(path)
    other = nn.Sequential(nn.Linear(3, 4, rng=5), nn.ReLU(), nn.Linear(4, 2, rng=6))
    other.load_state_dict(checkpoint["model"])  # torch: model.load_state_dict(ckpt["model"])
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
    assert checkpoint["optimizer"]["state"].keys() == opt.state_dict()["state"].keys()
    assert checkpoint["epoch"] == 3
    with pytest.raises(KeyError, match=r"no 'opt'; it holds \['model', 'optimizer', 'epoch'\]"):
        checkpoint["opt"]


def test_saving_torchs_dict_of_state_dicts_says_what_to_pass(tmp_path) -> None:
    model = small()
    opt = fo.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "ckpt.npz"
    with pytest.raises(TypeError, match=r"ferroptim\.save\(path, model=model, optimizer=opt\)"):
        fo.save(path, {"model": model.state_dict(), "opt": opt.state_dict()})
    assert not path.exists()


def test_apply_visits_children_then_parent() -> None:
    model = small()
    seen: list[str] = []

    def init(module: nn.Module) -> None:
        seen.append(type(module).__name__)
        if isinstance(module, nn.Linear):
            fo.nn.init.zeros_(module.bias)

    assert model.apply(init) is model
    assert seen == ["Linear", "ReLU", "Linear", "Sequential"]
    assert not model[0].bias.any() and not model[2].bias.any()
    with pytest.raises(TypeError, match="callable"):
        model.apply(3)  # type: ignore[arg-type]


def test_requires_grad_freezes_and_unfreezes() -> None:
    model = small()
    assert model[0].requires_grad_(False) is model[0]
    assert model.gradients()[:2] == [None, None] and model.gradients()[2] is not None
    model[0].requires_grad_()
    assert all(g is not None for g in model.gradients())
    with pytest.raises(TypeError, match="bool"):
        model.requires_grad_("no")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["DataLoader", "TensorDataset", "Dataset", "random_split"])
def test_torch_data_names_point_at_ferroptims(name) -> None:
    with pytest.raises(AttributeError, match=r"torch\.utils\.data's\): .*fo\.data\."):
        getattr(fo.data, name)
    with pytest.raises(AttributeError, match=r"no attribute 'Nonsense'$"):
        fo.data.Nonsense  # noqa: B018


def test_demo_without_extras_prints_one_line(monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name)
    )
    assert cli.main(["demo", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scikit-learn" in err[0] and "ferroptim[demo]" in err[0]
