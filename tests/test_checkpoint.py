"""Checkpoints: the tree codec (types and bits kept, nothing pickled), atomic writes that leave
the old file intact on failure, clear errors for foreign, corrupt or truncated files, verified
all-or-nothing restores, and an exact resume (model, dropout generators, optimizer, scheduler,
sampler)."""

from __future__ import annotations

import copy
import json
import math
import os
import stat
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import ferroptim as fo
from conftest import arrays_in, optimizer_configs
from ferroptim import _tree_codec, checkpoint
from ferroptim.nn.module import Module
from ferroptim.optim.optimizer import Optimizer

OPTIMIZERS = optimizer_configs()
IDS = [cls.__name__ for cls, _ in OPTIMIZERS]


# ----------------------------------------------------------------------------- comparisons


def assert_same_tree(a, b, path: str = "root") -> None:
    """Equal structure, types and bits (NaN equals NaN, -0.0 differs from 0.0)."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (
        f"{path}: {type(a).__name__} != {type(b).__name__}"
    )
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{a.shape}"
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), path
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), path
    elif isinstance(a, float):
        assert math.copysign(1, a) == math.copysign(1, b), path
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            assert type(key) is type(next(k for k in b if k == key)), f"{path} key {key!r}"
            assert_same_tree(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def full_state(*objects) -> list:
    """Deep copies of the state of ``objects`` (state_dict and rng_state where present)."""
    out = []
    for obj in objects:
        if isinstance(obj, np.random.Generator):
            out.append(copy.deepcopy(obj.bit_generator.state))
            continue
        out.append(copy.deepcopy(obj.state_dict()))
        if hasattr(obj, "rng_state"):
            out.append(copy.deepcopy(obj.rng_state()))
    return out


# ----------------------------------------------------------------------------- test objects


class NoisyLinear(Module):
    """``y = (x @ W.T + b) * mask / 0.7`` with a dropout-like mask from ``self.rng``."""

    def __init__(self, seed: int, n_in: int = 3, n_out: int = 2, dtype=np.float64) -> None:
        super().__init__(dtype)
        init = np.random.default_rng(seed)
        self.register_parameter("weight", init.standard_normal((n_out, n_in)))
        self.register_parameter("bias", np.zeros(n_out))
        self.register_buffer("calls", np.zeros((), np.int64))
        self.rng = np.random.default_rng(seed + 1)

    def forward(self, x):
        self.calls[...] += 1
        self._x = x
        self._mask = (self.rng.random((len(x), self.bias.size)) > 0.3) / 0.7
        return (x @ self.weight.T + self.bias) * self._mask

    def backward(self, dy):
        d = dy * self._mask
        self.grad("weight")[...] += d.T @ self._x
        self.grad("bias")[...] += d.sum(axis=0)
        return d @ self.weight


class Sampler:
    """Draws noisy regression batches from its own generator (a data-loader stand-in)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.drawn = 0

    def batch(self, n: int = 8):
        self.drawn += 1
        x = self.rng.standard_normal((n, 3))
        return x, x @ np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]]).T

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "drawn": self.drawn}

    def load_state_dict(self, state):
        if set(state) != {"rng", "drawn"}:
            raise KeyError(f"Sampler state keys {sorted(state)}")
        self.rng.bit_generator.state = state["rng"]
        self.drawn = int(state["drawn"])


class HalvingSchedule:
    """A scheduler stand-in: halves every group's lr every ``every`` steps."""

    def __init__(self, optimizer, every: int = 3) -> None:
        self.optimizer, self.every, self.count = optimizer, every, 0

    def step(self):
        self.count += 1
        if self.count % self.every == 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.5

    def state_dict(self):
        return {"count": self.count, "every": self.every}

    def load_state_dict(self, state):
        self.count, self.every = int(state["count"]), int(state["every"])


def build(cls, kw, seed: int):
    model = NoisyLinear(seed)
    opt = cls(model.parameters(), **kw, skip_nonfinite=True)
    return model, opt, HalvingSchedule(opt), Sampler(seed + 10), np.random.default_rng(seed + 20)


def train(model, opt, sched, sampler, noise, steps: range, nan_at: int = -1) -> None:
    for t in steps:
        x, y = sampler.batch()
        x = x + 0.01 * noise.standard_normal(x.shape)  # an "augmentation" generator
        model.zero_grad()
        out = model(x)
        model.backward(2.0 * (out - y) / len(x))
        grads = model.gradients()
        if t == nan_at:
            grads[0][0, 0] = np.nan
        opt.step(grads)
        sched.step()


# ----------------------------------------------------------------------------- tree codec

RICH = {
    "none": None,
    "flags": [True, False],
    "ints": [0, -1, 2**200, -(2**70)],
    "floats": [0.1, -0.0, 1e308, 5e-324, math.nan, math.inf, -math.inf],
    "text": ["", "ünïcode", '{"$": "array", "v": "a0"}'],
    "tuple": (1, (2.5, "x"), []),
    7: {"int": "key"},
    (1, "a"): "tuple key",
    None: "none key",
    2.5: "float key",
    "scalars": [
        np.float32(1.5),
        np.float16(-0.0),
        np.float64(np.nan),
        np.int8(-3),
        np.uint64(2**64 - 1),
        np.bool_(True),
        np.complex128(1 - 2j),
    ],
    "arrays": [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([np.nan, -0.0, np.inf], np.float64),
        np.array(3, np.int64),
        np.zeros((0, 3), np.float32),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.arange(10.0)[::3],
        np.arange(3, dtype=">f8"),
        np.array([True, False]),
        np.array([1 + 2j], np.complex64),
        np.array(["ab", "cde"]),
    ],
    "ordered": OrderedDict([("b", 1), ("a", 2)]),
}


def test_codec_round_trip_keeps_types_and_bits():
    skeleton, arrays = _tree_codec.encode(RICH)
    text = json.dumps(skeleton, allow_nan=False)  # plain JSON, no NaN literals
    decoded = _tree_codec.decode(json.loads(text), arrays)
    assert_same_tree(decoded, RICH)
    assert isinstance(decoded["ordered"], dict) and list(decoded["ordered"]) == ["b", "a"]


def test_checkpoint_round_trip_of_extra_values(tmp_path):
    path = tmp_path / "values.ckpt"
    checkpoint.save(path, **RICH["ordered"], rich=RICH)
    loaded = checkpoint.load(path)
    assert loaded.version == checkpoint.VERSION
    assert loaded.model is None and loaded.optimizer is None and loaded.scheduler is None
    assert_same_tree(loaded.extra, {"b": 1, "a": 2, "rich": RICH})
    assert not os.path.exists(str(path) + ".npz")  # the name is used as given


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({1, 2}, r"root\['x'\]"),
        ({"deep": [1, object()]}, r"root\['x'\]\['deep'\]\[1\]"),
        (np.array([{}], dtype=object), "objects"),
        (lambda: 0, "function"),
    ],
)
def test_unstorable_values_raise_and_write_nothing(tmp_path, value, where):
    with pytest.raises(TypeError, match=where):
        _tree_codec.encode({"x": value})
    path = tmp_path / "bad.ckpt"
    with pytest.raises(TypeError):
        checkpoint.save(path, x=value)
    assert list(tmp_path.iterdir()) == []


def test_objects_without_state_dict_are_refused(tmp_path):
    with pytest.raises(TypeError, match="model"):
        checkpoint.save(tmp_path / "c", model=object())
    assert list(tmp_path.iterdir()) == []


def test_file_is_a_plain_npz_without_pickles(tmp_path):
    model, opt, sched, sampler, noise = build(fo.optim.Adam, {}, 0)
    train(model, opt, sched, sampler, noise, range(2))
    path = tmp_path / "plain.ckpt"
    checkpoint.save(path, model, opt, sched, sampler=sampler, noise=noise, epoch=1)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert checkpoint.SKELETON + ".npy" in names
    with np.load(path, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    assert all(not a.dtype.hasobject for a in members.values())
    document = json.loads(members[checkpoint.SKELETON].tobytes())
    assert document["format"] == "ferroptim.checkpoint" and document["version"] == 1
    # the model's weights are members, referenced from the skeleton
    assert any(np.array_equal(a, model.weight) for a in members.values())


# ----------------------------------------------------------------------------- atomic writes


def _old_checkpoint(tmp_path):
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, epoch=1, weights=np.arange(5000.0))
    return path, path.read_bytes()


def _assert_only(tmp_path, path, content):
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "a temporary file was left"
    assert checkpoint.load(path).extra["epoch"] == 1


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch, exc):
    path, content = _old_checkpoint(tmp_path)
    real = np.lib.format.write_array
    calls = []

    def failing(fp, array, *args, **kwargs):
        calls.append(array.shape)
        if len(calls) == 3:  # two members already in the file, a third half written
            fp.write(b"\x93NUMPY partial")
            raise exc
        return real(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(type(exc)):
        checkpoint.save(path, epoch=2, weights=np.zeros(5000), more=np.ones(7), last=np.ones(3))
    assert len(calls) == 3
    monkeypatch.undo()
    _assert_only(tmp_path, path, content)


@pytest.mark.parametrize("target", ["fsync", "replace"])
def test_failure_in_fsync_or_rename_keeps_the_old_checkpoint(tmp_path, monkeypatch, target):
    path, content = _old_checkpoint(tmp_path)

    def failing(*args, **kwargs):
        raise OSError(f"injected {target} failure")

    monkeypatch.setattr(os, target, failing)
    with pytest.raises(OSError, match="injected"):
        checkpoint.save(path, epoch=2)
    monkeypatch.undo()
    _assert_only(tmp_path, path, content)


def test_failed_first_save_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        checkpoint.save(tmp_path / "new.ckpt", epoch=0)
    assert list(tmp_path.iterdir()) == []


def test_save_fsyncs_the_file_and_the_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    path = tmp_path / "c.ckpt"
    checkpoint.save(path, epoch=0)
    assert synced == [False, True]
    # ordinary permissions (umask applied), not mkstemp's 0o600
    reference = tmp_path / "plain"
    reference.write_bytes(b"")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


# ----------------------------------------------------------------------------- bad files


def test_truncated_and_corrupt_files_raise_value_error(tmp_path):
    good = tmp_path / "good.ckpt"
    checkpoint.save(good, epoch=3, weights=np.arange(1000.0))
    data = good.read_bytes()
    cases = {
        "empty": b"",
        "first bytes": data[:10],
        "half": data[: len(data) // 2],
        "last byte cut": data[:-1],
        "text": b"hello, not a checkpoint\n",
    }
    flipped = bytearray(data)
    flipped[data.index(np.arange(1000.0)[500:501].tobytes())] ^= 0xFF  # inside the array data
    cases["flipped array byte"] = bytes(flipped)
    flipped = bytearray(data)
    flipped[data.index(b'"epoch"') + 2] ^= 0x01  # inside the JSON skeleton
    cases["flipped skeleton byte"] = bytes(flipped)
    for name, content in cases.items():
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="checkpoint") as info:
            checkpoint.load(path)
        assert str(path) in str(info.value), name
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.ckpt")


def test_foreign_npz_and_npy_and_pickles_are_refused(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.arange(3))
    with pytest.raises(ValueError, match="not a ferroptim checkpoint"):
        checkpoint.load(plain)
    single = tmp_path / "single.npy"
    np.save(single, np.arange(3))
    with pytest.raises(ValueError, match="checkpoint"):
        checkpoint.load(single)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{checkpoint.SKELETON: np.array([{"evil": 1}], dtype=object)})
    with pytest.raises(ValueError, match="checkpoint"):
        checkpoint.load(pickled)


def _rewrite(path, edit_document=None, extra_members=None, drop=()):
    """Re-pack a checkpoint with its JSON document edited and members added or dropped."""
    with np.load(path, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files if name not in drop}
    document = json.loads(members[checkpoint.SKELETON].tobytes())
    if edit_document is not None:
        edit_document(document)
    members[checkpoint.SKELETON] = np.frombuffer(json.dumps(document).encode(), np.uint8)
    members.update(extra_members or {})
    np.savez(path, **members)
    os.replace(str(path) + ".npz", path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"edit_document": lambda d: d.update(version=2)}, "version 2 is not supported"),
        ({"edit_document": lambda d: d.pop("version")}, "version None"),
        ({"edit_document": lambda d: d.update(format="other")}, "not a ferroptim checkpoint"),
        ({"edit_document": lambda d: d.update(tree=[1])}, "corrupt"),
        ({"edit_document": lambda d: d["tree"].update({"$": "mystery"})}, "corrupt"),
        ({"drop": ("a0",)}, "missing array 'a0'"),
        ({"extra_members": {"a99": np.zeros(2)}}, "a99"),
    ],
)
def test_wrong_version_or_broken_skeleton(tmp_path, edit, match):
    path = tmp_path / "c.ckpt"
    checkpoint.save(path, weights=np.arange(3.0))
    _rewrite(path, **edit)
    with pytest.raises(ValueError, match=match):
        checkpoint.load(path)


# ----------------------------------------------------------------------------- restore checks


def _trained(seed=0, steps=3):
    objects = build(fo.optim.Adam, {"lr": 0.01}, seed)
    train(*objects, range(steps))
    return objects


def test_mismatches_are_all_named_and_nothing_is_modified(tmp_path):
    model, opt, sched, sampler, noise = _trained()
    path = tmp_path / "c.ckpt"
    checkpoint.save(path, model, opt, sched, sampler=sampler, noise=noise, epoch=4)

    other = NoisyLinear(5, n_in=4)  # weight (2, 4) instead of (2, 3)
    other.register_buffer("extra_buffer", np.zeros(2))
    del other._buffers["calls"]
    other.bias = other.bias.astype(np.float64)
    other_opt = fo.optim.Adam(
        [np.zeros((2, 4)), np.zeros(2, np.float32)], lr=0.5, skip_nonfinite=True
    )
    other_opt.step([np.ones((2, 4)), np.ones(2, np.float32)])
    other_sched, other_sampler = HalvingSchedule(other_opt), Sampler(99)
    objects = [other, other_opt, other_sched, other_sampler]
    before = full_state(*objects)
    saved_arrays = [(a, a.tobytes()) for a in arrays_in(other_opt.state_dict(), other.parameters())]
    with pytest.raises(checkpoint.CheckpointMismatchError) as info:
        checkpoint.load(
            path, other, other_opt, other_sched, sampler=other_sampler, epoch=other_sampler,
            missing=other_sampler,
        )  # fmt: skip
    message = str(info.value)
    for expected in [
        "model: missing keys ['extra_buffer']",
        "model: unexpected keys ['calls']",
        "model: 'weight' has shape (2, 3) in the checkpoint, (2, 4) here",
        "optimizer: state[0]['exp_avg'] has shape (2, 3) in the checkpoint, (2, 4)",
        "optimizer: state[1]['exp_avg'] has dtype float64 in the checkpoint, float32",
        "extra 'epoch': the checkpoint holds a plain value",
        "extra 'missing': not in the checkpoint",
    ]:
        assert expected in message, (expected, message)
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
    assert not message.startswith('"')  # a plain message, not KeyError's repr
    assert_same_tree(full_state(*objects), before)
    assert all(a.tobytes() == b for a, b in saved_arrays)


def test_dtype_and_generator_mismatches(tmp_path):
    model, _, _, _, noise = _trained()
    path = tmp_path / "c.ckpt"
    checkpoint.save(path, model, noise=noise)
    wrong = NoisyLinear(3, dtype=np.float32)
    wrong.rng = np.random.Generator(np.random.MT19937(1))
    mt = np.random.Generator(np.random.MT19937(2))
    with pytest.raises(ValueError) as info:
        checkpoint.load(path, model=wrong, noise=mt)
    message = str(info.value)
    assert "'weight' has dtype float64 in the checkpoint, float32 here" in message
    assert "'bias' has dtype float64 in the checkpoint, float32 here" in message
    assert "generator '' is 'PCG64' in the checkpoint, 'MT19937' here" in message
    assert "extra 'noise': bit generator 'PCG64' in the checkpoint, 'MT19937' here" in message
    no_rng = NoisyLinear(3)
    del no_rng.rng
    with pytest.raises(ValueError, match=r"no saved random state|unknown generators \[''\]"):
        checkpoint.load(path, model=no_rng)


def test_a_late_load_failure_rolls_everything_back(tmp_path):
    """Verification cannot see inside a scheduler: its load fails after the model and the
    optimizer were loaded, and they are put back."""
    model, opt, sched, sampler, _ = _trained(seed=1)
    path = tmp_path / "c.ckpt"
    checkpoint.save(path, model, opt, sched, sampler=sampler)

    class Fussy(HalvingSchedule):
        def load_state_dict(self, state):
            self.count = state["count"]  # half applied, then fails
            if state["every"] != self.every:
                raise ValueError("cannot take this state")

    fresh, fresh_opt, _, fresh_sampler, _ = _trained(seed=2, steps=2)
    fussy = Fussy(fresh_opt, every=4)
    fussy.count = 5
    objects = [fresh, fresh_opt, fussy, fresh_sampler]
    before = full_state(*objects)
    with pytest.raises(ValueError, match="scheduler: ValueError: cannot take this state"):
        checkpoint.load(path, fresh, fresh_opt, fussy, sampler=fresh_sampler)
    assert_same_tree(full_state(*objects), before)
    assert fussy.count == 5


def test_load_into_objects_without_load_state_dict(tmp_path):
    model, opt, *_ = _trained()
    path = tmp_path / "c.ckpt"
    checkpoint.save(path, model, opt)

    class ReadOnly:
        def state_dict(self):
            return {}

    with pytest.raises(ValueError, match="optimizer: ReadOnly has no state_dict"):
        checkpoint.load(path, optimizer=ReadOnly())
    with pytest.raises(ValueError, match="holds no scheduler"):
        checkpoint.load(path, scheduler=HalvingSchedule(opt))


# ----------------------------------------------------------------------------- load_state_dict


def test_module_load_state_dict_failures_change_nothing():
    model = NoisyLinear(0)
    good = model.state_dict()
    before = [(a, a.tobytes()) for a in [*model.parameters(), model.calls]]
    bad_cases = [
        ({**good, "weight": np.zeros((3, 3))}, ValueError),  # shape, after a valid key
        ({k: v for k, v in good.items() if k != "calls"}, KeyError),
        ({**good, "surprise": np.zeros(1)}, KeyError),
        ({**good, "calls": np.array("x")}, TypeError),
    ]
    for bad, error in bad_cases:
        bad = {**bad, "bias": np.full(2, 7.0)} if "bias" in bad else bad
        with pytest.raises(error):
            model.load_state_dict(bad)
        assert all(a.tobytes() == b for a, b in before)


@pytest.mark.parametrize(("cls", "kw"), OPTIMIZERS, ids=IDS)
def test_optimizer_load_state_dict_failure_changes_nothing(cls, kw):
    model, opt, sched, sampler, noise = build(cls, kw, 0)
    train(model, opt, sched, sampler, noise, range(3))
    snapshot = [(a, a.tobytes()) for s in opt._group_states for a in [s.steps, s.mu_products]]
    snapshot += [(a, a.tobytes()) for s in opt._group_states for v in s.arrays.values() for a in v]
    good = copy.deepcopy(opt.state_dict())
    for edit in [
        lambda sd: sd["param_groups"][0].update(lr=-1.0),
        lambda sd: sd["state"].update({1: {**sd["state"][0]}}),  # shapes of param 0 on param 1
        lambda sd: sd.update(skipped_steps=-2),
    ]:
        bad = copy.deepcopy(good)
        bad["state"][0] = {
            k: (np.full_like(v, 9.0) if isinstance(v, np.ndarray) else v)
            for k, v in bad["state"][0].items()
        }  # a valid entry first, so a half-applied load would show
        edit(bad)
        with pytest.raises(ValueError):
            opt.load_state_dict(bad)
        assert all(a.tobytes() == b for a, b in snapshot)
        assert opt.param_groups[0]["lr"] == good["param_groups"][0]["lr"]


# ----------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize(("cls", "kw"), OPTIMIZERS, ids=IDS)
def test_exact_resume(tmp_path, cls, kw):
    """N steps, save, load into freshly built (differently seeded) objects, M more steps: the
    same bits as N + M uninterrupted steps, including a skipped non-finite step before the
    save and the dropout, sampler and augmentation generators."""
    n, m = 5, 6
    straight = build(cls, kw, 0)
    train(*straight, range(n + m), nan_at=2)

    first = build(cls, kw, 0)
    train(*first, range(n), nan_at=2)
    path = tmp_path / "resume.ckpt"
    model, opt, sched, sampler, noise = first
    checkpoint.save(path, model, opt, sched, sampler=sampler, noise=noise, step=n)
    assert opt.skipped_steps == 1

    resumed = build(cls, kw, 123)
    model, opt, sched, sampler, noise = resumed
    loaded = checkpoint.load(path, model, opt, sched, sampler=sampler, noise=noise)
    assert loaded.extra["step"] == n and opt.skipped_steps == 1
    train(*resumed, range(n, n + m))

    assert_same_tree(full_state(*resumed), full_state(*straight))
    assert_same_tree(resumed[0].parameters(), straight[0].parameters())
    assert resumed[1].param_groups[0]["lr"] == straight[1].param_groups[0]["lr"]


def test_checkpoint_holds_the_parts(tmp_path):
    model, opt, sched, sampler, noise = _trained()
    path = tmp_path / "c.ckpt"
    checkpoint.save(path, model, opt, sched, sampler=sampler, noise=noise, note="hi")
    loaded = checkpoint.load(path)
    assert_same_tree(loaded.model.state_dict, dict(model.state_dict()))
    assert_same_tree(loaded.model.rng_state, model.rng_state())
    assert_same_tree(loaded.optimizer.state_dict, opt.state_dict())
    assert loaded.optimizer.rng_state is None
    assert loaded.scheduler.state_dict == sched.state_dict()
    assert_same_tree(loaded.extra["sampler"].state_dict, sampler.state_dict())
    assert loaded.extra["noise"] == checkpoint.ObjectState(None, noise.bit_generator.state)
    assert loaded.extra["note"] == "hi"
    assert isinstance(opt, Optimizer)


# ----------------------------------------------------------------------------- full resume


def build_full(seed: int):
    """Linear-ReLU-Dropout-Linear, Adam, cosine schedule, shuffling loader and augmenter."""
    from ferroptim.data import BatchLoader, Compose, GaussianNoise, RandomHorizontalFlip
    from ferroptim.nn.activation import ReLU
    from ferroptim.nn.container import Sequential
    from ferroptim.nn.dropout import Dropout
    from ferroptim.nn.linear import Linear
    from ferroptim.optim.lr_scheduler import CosineAnnealingLR

    model = Sequential(
        Linear(16, 8, rng=seed), ReLU(), Dropout(0.3, seed=seed + 1), Linear(8, 2, rng=seed + 2)
    )
    opt = fo.optim.Adam(model.parameters(), lr=0.01, skip_nonfinite=True)
    sched = CosineAnnealingLR(opt, T_max=7, eta_min=1e-4)
    data = np.random.default_rng(2024)  # the same data set for every run
    x = data.standard_normal((37, 1, 4, 4)).astype(np.float32)
    y = data.standard_normal((37, 2)).astype(np.float32)
    loader = BatchLoader(x, y, batch_size=5, seed=seed + 3)
    augment = Compose([RandomHorizontalFlip(), GaussianNoise(0.05)], seed=seed + 4)
    return model, opt, sched, loader, augment


def train_full(parts, steps: int) -> list[float]:
    """``steps`` optimizer steps across epochs (leaving the last epoch mid-way); the losses."""
    model, opt, sched, loader, augment = parts
    losses: list[float] = []
    while len(losses) < steps:
        for xb, yb in loader:
            xb = augment(xb).reshape(len(xb), -1)
            model.zero_grad()
            out = model(xb)
            losses.append(float(np.mean((out - yb) ** 2)))
            model.backward((2.0 / out.size) * (out - yb))
            opt.step(model.gradients())
            sched.step()
            if len(losses) == steps:
                break
    return losses


def test_exact_resume_with_layers_scheduler_loader_and_augmenter(tmp_path):
    n, m = 10, 13  # a save in the middle of the second epoch (8 batches per epoch)
    straight = build_full(0)
    expected = train_full(straight, n + m)

    first = build_full(0)
    assert train_full(first, n) == expected[:n]
    path = tmp_path / "full.ckpt"
    model, opt, sched, loader, augment = first
    checkpoint.save(path, model, opt, sched, loader=loader, augment=augment, losses=expected[:n])

    resumed = build_full(7)  # other initial weights, masks, shuffles and augmentations
    model, opt, sched, loader, augment = resumed
    loaded = checkpoint.load(path, model, opt, sched, loader=loader, augment=augment)
    assert loaded.extra["losses"] == expected[:n]
    assert loader.epoch == 1 and loader.batch == 2
    assert train_full(resumed, m) == expected[n:]
    assert_same_tree(full_state(*resumed), full_state(*straight))
