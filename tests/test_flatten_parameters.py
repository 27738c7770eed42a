"""``Module.flatten_parameters``: every parameter of a tree in one buffer per dtype, every
gradient in another, with nothing observable changed but the arrays' memory (issue 15)."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import nn
from ferroptim._flat_layout import ALIGN_BYTES, aligned_offsets, flat_views
from ferroptim.demo.digits import demo_cnn
from ferroptim.nn import _live
from ferroptim.nn._flatten import RECORD, is_flat, zero_flat_gradients

VOCAB, DIM = 11, 6


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def _mlp() -> nn.Module:
    rng = np.random.default_rng(0)
    return nn.Sequential(
        nn.Linear(13, 17, rng=rng), nn.ReLU(), nn.Linear(17, 9, rng=rng), nn.ReLU(),
        nn.Linear(9, 5, rng=rng),
    )  # fmt: skip


def _cnn() -> nn.Module:
    return demo_cnn(seed=3)


def _tied() -> nn.Module:
    """Embedding -> LSTM -> Linear back to the vocabulary, the Linear's weight the
    Embedding's (its shape (VOCAB, DIM) is an embedding's)."""
    rng = np.random.default_rng(1)
    emb = nn.Embedding(VOCAB, DIM, rng=rng)
    head = nn.Linear(DIM, VOCAB, bias=False, rng=rng)
    head.weight = emb.weight
    return nn.Sequential(emb, nn.LSTM(DIM, DIM, rng=rng), head)


def _frozen() -> nn.Module:
    model = _mlp()
    model.freeze("2.weight", "2.bias")
    return model


class _Mixed(nn.Module):
    """A float64 head on a float32 body (one tree, two dtypes)."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(2)
        self.body = nn.Sequential(nn.Linear(13, 8, rng=rng), nn.Tanh())
        self.head = nn.Linear(8, 5, dtype=np.float64, rng=rng)
        self.scale = nn.Linear(5, 5, dtype=np.float32, rng=rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = self.head(self.body(x).astype(np.float64))
        return self.scale(h.astype(np.float32))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dh = self.head.backward(self.scale.backward(dy).astype(np.float64))
        return self.body.backward(dh.astype(np.float32))


MODELS: dict[str, Callable[[], nn.Module]] = {
    "mlp": _mlp,
    "cnn": _cnn,
    "tied": _tied,
    "frozen": _frozen,
    "mixed": _Mixed,
}


def _batch(name: str, step: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + step)
    if name == "cnn":
        return rng.standard_normal((8, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 8)
    if name == "tied":
        return rng.integers(0, VOCAB, (5, 3)), rng.integers(0, VOCAB, (5, 3))
    return rng.standard_normal((8, 13), dtype=np.float32), rng.integers(0, 5, 8)


OPTIMIZERS: dict[str, Callable[[list[np.ndarray]], fo.optim.Optimizer]] = {
    "adam": lambda p: fo.optim.Adam(p, lr=1e-2),
    "sgd_momentum": lambda p: fo.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam_max_grad_norm": lambda p: fo.optim.Adam(p, lr=1e-2, max_grad_norm=0.05),
}


def _train(model: nn.Module, name: str, make_opt: Callable, steps: int = 4) -> list[float]:
    opt = make_opt(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for step in range(steps):
        x, y = _batch(name, step)
        model.zero_grad()
        out = model(x)
        shape = out.shape
        losses.append(float(loss_fn(out.reshape(-1, shape[-1]), y.reshape(-1))))
        model.backward(loss_fn.backward().reshape(shape))
        opt.step(model)
    return losses


def _bits(arrays: list[np.ndarray | None]) -> list[bytes | None]:
    return [None if a is None else a.tobytes() for a in arrays]


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_training_flat_gives_the_same_bits(model_name: str, opt_name: str) -> None:
    plain, flat = MODELS[model_name](), MODELS[model_name]().flatten_parameters()
    assert is_flat(flat) and not is_flat(plain)
    make_opt = OPTIMIZERS[opt_name]
    assert _train(plain, model_name, make_opt) == _train(flat, model_name, make_opt)
    assert _bits(plain.parameters()) == _bits(flat.parameters())
    assert _bits(list(plain.gradients())) == _bits(list(flat.gradients()))
    for (k1, v1), (k2, v2) in zip(
        plain.state_dict().items(), flat.state_dict().items(), strict=True
    ):
        assert k1 == k2 and v1.dtype == v2.dtype and v1.tobytes() == v2.tobytes()
    assert is_flat(flat)  # training kept the layout


def _with_gradients(model_name: str) -> nn.Module:
    """A model after one forward and backward (non-zero gradients)."""
    model = MODELS[model_name]()
    _train(model, model_name, lambda p: fo.optim.SGD(p, lr=0.0), steps=1)
    return model


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_layout_one_buffer_per_dtype_contiguous_aligned_in_order(model_name: str) -> None:
    model = _with_gradients(model_name)
    names = [n for n, _ in model.named_parameters()]
    values = [(p.copy(), g.copy()) for p, g in zip(model.parameters(), _grads(model), strict=True)]
    frozen = [g is None for g in model.gradients()]
    assert model.flatten_parameters() is model
    assert [n for n, _ in model.named_parameters()] == names
    assert [g is None for g in model.gradients()] == frozen
    bases: dict[np.dtype, set[int]] = {}
    for kind, arrays in (("p", model.parameters()), ("g", _grads(model))):
        by_dtype: dict[np.dtype, list[np.ndarray]] = {}
        for a in arrays:
            by_dtype.setdefault(a.dtype, []).append(a)
        for dtype, group in by_dtype.items():
            assert len({id(a.base) for a in group}) == 1  # one buffer
            bases.setdefault(dtype, set()).add(id(group[0].base))
            offsets, _ = aligned_offsets([a.shape for a in group], dtype.itemsize)
            for a, start in zip(group, offsets, strict=True):
                assert a.flags.c_contiguous and a.flags.writeable and a.base is not None
                assert _address(a) % ALIGN_BYTES == 0
                assert _address(a) - _address(group[0]) == start * dtype.itemsize, kind
    assert all(len(ids) == 2 for ids in bases.values())  # params and grads apart
    assert len(set.union(*bases.values())) == 2 * len(bases)  # one pair per dtype
    pairs = zip(model.parameters(), _grads(model), strict=True)
    for (p, g), (p0, g0) in zip(pairs, values, strict=True):
        assert p.dtype == p0.dtype and p.shape == p0.shape and p.tobytes() == p0.tobytes()
        assert g.tobytes() == g0.tobytes()


def _grads(model: nn.Module) -> list[np.ndarray]:
    """Every gradient array (frozen parameters' too), in ``named_parameters`` order."""
    return [m._gradients[n] for _, m, n in model._unique_parameters()]


def test_every_holder_sees_the_views_and_old_arrays_are_read_only() -> None:
    model = _tied()
    emb, lstm, head = model[0], model[1], model[2]
    old_params, old_grads = model.parameters(), _grads(model)
    model.flatten_parameters()
    assert emb.weight is head.weight is emb._parameters["weight"] is head._parameters["weight"]
    assert emb._gradients["weight"] is head._gradients["weight"]
    assert lstm.weight_ih_l0 is lstm._parameters["weight_ih_l0"]
    assert {(id(m), n) for m, n in _live.owners(emb.weight)} == {
        (id(emb), "weight"),
        (id(head), "weight"),
    }
    for old in old_params + old_grads:
        assert not old.flags.writeable
        assert not _live.is_parameter(old)
    assert all(p.flags.writeable for p in model.parameters())


def test_buffers_are_left_alone() -> None:
    model = _cnn()
    buffers = model.named_buffers()
    model.flatten_parameters()
    assert all(a is b for (_, a), (_, b) in zip(buffers, model.named_buffers(), strict=True))
    assert all(a.flags.writeable for _, a in buffers)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("how", ["model", "gradients", "live", "list"])
def test_an_optimizer_built_before_flattening_raises(opt_name: str, how: str) -> None:
    model = _with_gradients("mlp")
    opt = OPTIMIZERS[opt_name](model.parameters())
    opt.step(model)  # prepared for the old arrays
    model.flatten_parameters()
    before = [p.copy() for p in model.parameters()]
    # model / gradients / live: the old arrays are no parameters of the model any more; a
    # plain list of gradients: the kernels refuse the read-only old arrays
    arg = {"model": model, "gradients": model.gradients(), "live": None}.get(how)
    match = r"params\[0\] is read-only" if how == "list" else "parameter"
    with pytest.raises(ValueError, match=match):
        opt.step(list(model.gradients()) if how == "list" else arg)
    assert _bits(model.parameters()) == _bits(before)


def test_an_optimizer_built_after_flattening_steps_the_views() -> None:
    model = _with_gradients("mlp").flatten_parameters()
    params = model.parameters()
    before = [p.copy() for p in params]
    fo.optim.SGD(params, lr=0.1).step()  # gradients found through the live registry
    assert all(not np.array_equal(p, b) for p, b in zip(params, before, strict=True))
    assert model.parameters()[0] is params[0] and is_flat(model)


def test_second_call_is_a_no_op() -> None:
    model = _Mixed().flatten_parameters()
    params, grads = model.parameters(), _grads(model)
    model.flatten_parameters()
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    assert all(a is b for a, b in zip(grads, _grads(model), strict=True))
    assert all(p.flags.writeable for p in params + grads)


def test_a_changed_parameter_is_flattened_again() -> None:
    model = _mlp().flatten_parameters()
    model[2].weight = model[2].weight.copy()  # a new array: the tree is no longer flat
    assert not is_flat(model)
    model.flatten_parameters()
    assert is_flat(model)


def test_a_flat_child_inside_a_parent_is_laid_out_again() -> None:
    child = _mlp().flatten_parameters()
    parent = nn.Sequential(nn.Linear(4, 13), child)
    parent.flatten_parameters()
    assert is_flat(parent) and child[0].weight.base is parent[0].weight.base
    params = child.parameters()
    child.flatten_parameters()  # a part of a flat tree is laid out as flat: kept
    assert all(a is b for a, b in zip(params, child.parameters(), strict=True))
    assert is_flat(parent)


def test_a_parameter_shared_outside_the_tree_is_refused_unchanged() -> None:
    first, second = nn.Linear(3, 4), nn.Linear(3, 4)
    second.weight = first.weight
    params = first.parameters()
    with pytest.raises(ValueError, match="outside this module tree"):
        first.flatten_parameters()
    assert all(a is b for a, b in zip(params, first.parameters(), strict=True))
    assert all(p.flags.writeable for p in params)


def test_state_dict_round_trip_copies_into_the_views() -> None:
    model = _with_gradients("cnn")
    state = model.state_dict()
    model.flatten_parameters()
    flat_state = model.state_dict()
    assert list(state) == list(flat_state)
    assert all(state[k].tobytes() == flat_state[k].tobytes() for k in state)
    params = model.parameters()
    other = _cnn()
    for p in other.parameters():
        p += 1.0
    model.load_state_dict(other.state_dict())
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True)) and is_flat(model)
    assert _bits(model.parameters()) == _bits(other.parameters())


def test_save_and_load_keep_the_flat_arrays(tmp_path) -> None:
    model = _with_gradients("tied").flatten_parameters()
    fo.save(tmp_path / "ckpt", model=model)
    restored = _tied().flatten_parameters()
    params = restored.parameters()
    fo.load(tmp_path / "ckpt", model=restored)
    assert all(a is b for a, b in zip(params, restored.parameters(), strict=True))
    assert _bits(params) == _bits(model.parameters()) and is_flat(restored)


@pytest.mark.parametrize(
    "clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))], ids=["deepcopy", "pickle"]
)
def test_a_copy_has_the_same_values_in_separate_arrays(clone: Callable) -> None:
    model = _with_gradients("tied").flatten_parameters()
    twin = clone(model)
    assert not is_flat(twin)  # separately allocated arrays, the same values
    assert _bits(twin.parameters()) == _bits(model.parameters())
    assert _bits(_grads(twin)) == _bits(_grads(model))
    assert twin[0].weight is twin[2].weight  # still tied
    assert all(p.flags.writeable for p in twin.parameters() + _grads(twin))
    assert RECORD not in twin.__dict__  # not carried over: zero_grad clears each array
    _nonzero_gradients(twin)
    twin.zero_grad()
    assert _all_zero(twin) and not _all_zero(model)
    assert is_flat(twin.flatten_parameters()) and is_flat(model)
    assert _train(twin, "tied", OPTIMIZERS["adam"]) == _train(model, "tied", OPTIMIZERS["adam"])


def test_flat_views_layout() -> None:
    shapes = [(3, 5), (), (7,), (0,), (2, 2, 2)]
    for dtype in (np.float32, np.float64):
        raw, views = flat_views(shapes, np.dtype(dtype))
        itemsize = np.dtype(dtype).itemsize
        offsets, total = aligned_offsets(shapes, itemsize)
        assert raw.dtype == np.uint8 and raw.nbytes >= total * itemsize and not raw.any()
        origin = _address(views[0])
        assert origin % ALIGN_BYTES == 0 and offsets[0] == 0
        for view, shape, start in zip(views, shapes, offsets, strict=True):
            assert view.shape == shape and view.dtype == dtype and view.flags.c_contiguous
            assert view.base is raw
            assert view.size == 0 or _address(view) == origin + start * itemsize
            assert start * itemsize % ALIGN_BYTES == 0
        assert _address(views[-1]) + views[-1].nbytes <= _address(raw) + raw.nbytes


def _nonzero_gradients(model: nn.Module) -> None:
    for g in _grads(model):
        g[...] = 1.0


def _all_zero(model: nn.Module) -> bool:
    return all(not g.any() for g in _grads(model))


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_zero_grad_of_a_flat_model_clears_every_gradient_in_one_fill_per_buffer(
    model_name: str,
) -> None:
    model = _with_gradients(model_name).flatten_parameters()
    assert zero_flat_gradients(model)  # the one-fill path applies
    _nonzero_gradients(model)
    model.zero_grad()
    assert _all_zero(model) and is_flat(model)


def test_zero_grad_after_the_tree_changed_clears_each_gradient() -> None:
    model = _mlp().flatten_parameters()
    model[2].weight = model[2].weight.copy()  # a new array (and a new gradient)
    model.append(nn.Linear(5, 3))  # a module whose gradients are in no buffer
    _nonzero_gradients(model)
    assert not zero_flat_gradients(model) and not _all_zero(model)  # nothing written
    model.zero_grad()
    assert _all_zero(model)


def test_zero_grad_of_a_part_of_a_flat_tree_clears_only_its_gradients() -> None:
    child = _mlp().flatten_parameters()
    parent = nn.Sequential(nn.Linear(4, 13), child).flatten_parameters()
    assert RECORD not in child.__dict__  # its old buffers are gone
    _nonzero_gradients(parent)
    child.zero_grad()
    assert _all_zero(child) and parent[0].grad("weight").all() and parent[0].grad("bias").all()
    parent.zero_grad()
    assert _all_zero(parent)


def test_an_empty_parameter_is_flattened_and_kept_on_a_second_call() -> None:
    model = nn.Module()
    model.register_parameter("empty", np.zeros((0, 3)))
    model.register_parameter("weight", np.arange(5.0))
    model.flatten_parameters()
    assert is_flat(model) and model.empty.shape == (0, 3)
    assert model.weight.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    params = model.parameters()
    model.flatten_parameters()
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))


def test_a_gradients_list_taken_before_flattening_is_refused() -> None:
    model = _with_gradients("mlp")
    stale = model.gradients()
    model.flatten_parameters()
    opt = fo.optim.SGD(model.parameters(), lr=0.1)
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match="not one of the parameters"):
        opt.step(stale)
    assert _bits(model.parameters()) == _bits(before)
    opt.step(model.gradients())  # taken again: steps
    assert _bits(model.parameters()) != _bits(before)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_a_forward_before_the_call_and_its_backward_after_give_the_same_bits(
    model_name: str,
) -> None:
    plain, flat = MODELS[model_name](), MODELS[model_name]()
    x, y = _batch(model_name, 0)
    loss_fn = nn.CrossEntropyLoss()
    grads = []
    for model in (plain, flat):
        out = model(x)
        if model is flat:
            model.flatten_parameters()  # between the forward and its backward
        loss_fn(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        model.backward(loss_fn.backward().reshape(out.shape))
        grads.append(_bits(list(model.gradients())))
    assert grads[0] == grads[1]


def test_a_failed_allocation_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from ferroptim.nn import _flatten

    model = _Mixed()  # two dtypes: four buffers
    params, grads = model.parameters(), _grads(model)
    calls = []

    def failing(shapes, dtype):  # the last buffer cannot be allocated
        calls.append(dtype)
        if len(calls) == 4:
            raise MemoryError("no room")
        return flat_views(shapes, dtype)

    monkeypatch.setattr(_flatten, "flat_views", failing)
    with pytest.raises(MemoryError):
        model.flatten_parameters()
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    assert all(a is b for a, b in zip(grads, _grads(model), strict=True))
    assert all(a.flags.writeable for a in params + grads) and RECORD not in model.__dict__


@pytest.mark.parametrize("kind", ["zero", "distributed"])
def test_a_distributed_optimizer_built_before_flattening_raises(kind: str) -> None:
    """ZeRO's shard optimizer writes through views of the arrays taken at construction (which
    stay writeable): the step refuses read-only parameters before it writes anything."""
    from ferroptim import distributed as dist

    model = _with_gradients("mlp")
    if kind == "zero":
        opt: object = dist.ZeroRedundancyOptimizer(model.parameters(), lr=0.1)
    else:
        opt = dist.DistributedOptimizer(fo.optim.AdamW(model.parameters(), lr=0.1))
    old = model.parameters()
    model.flatten_parameters()
    values = [p.copy() for p in old + model.parameters()]
    with pytest.raises(ValueError, match=r"params\[0\] is read-only"):
        opt.step(list(model.gradients()))  # type: ignore[attr-defined]
    assert _bits(old + model.parameters()) == _bits(values)
