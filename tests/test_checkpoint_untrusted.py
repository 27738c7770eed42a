"""Checkpoint files as untrusted input, and ``fo.save``/``fo.load`` under interrupts, other
threads, symlinks and killed processes (issue 11, items 5, 8, 9, 10, 11, 12)."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _tree_codec, checkpoint
from ferroptim.optim.lr_scheduler import StepLR


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _skeleton_bytes(tree) -> bytes:
    document = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "tree": tree}
    return _npy(np.frombuffer(json.dumps(document).encode(), np.uint8))


def _tree_with_model_array(name: str) -> dict:
    """The skeleton of a checkpoint whose model state is ``{"weight": <array member name>}``."""
    part = {"kind": "object", "state_dict": {"weight": np.zeros(1)}, "rng_state": None}
    tree = {"model": part, "optimizer": None, "scheduler": None, "extra": {}}
    skeleton, arrays = _tree_codec.encode(tree)
    assert list(arrays) == ["a0"]
    return json.loads(json.dumps(skeleton).replace('"a0"', json.dumps(name)))


# ----------------------------------------------------------------------------- item 9


def test_a_huge_declared_shape_is_refused_before_reading(tmp_path):
    """A 100-byte member declaring 10**12 float64 elements: ValueError naming the file and the
    member, no MemoryError."""
    buffer = io.BytesIO()
    declared = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    np.lib.format.write_array_header_1_0(buffer, declared)
    member = (buffer.getvalue() + bytes(100))[:100]
    path = tmp_path / "huge.ckpt"
    skeleton = _skeleton_bytes(_tree_with_model_array("a0"))
    _write_zip(path, {f"{checkpoint.SKELETON}.npy": skeleton, "a0.npy": member})
    with pytest.raises(ValueError, match=r"a0\.npy") as info:
        fo.load(path)
    assert str(path) in str(info.value)


def test_a_decompression_bomb_is_refused_against_the_target_without_memory(tmp_path):
    """A deflated member of 25M zeros (200 MB declared, about 200 KB on disk) for a model with a
    (2, 3) weight: refused from its declared shape, before its data are decompressed."""
    path = tmp_path / "bomb.ckpt"
    members = {
        f"{checkpoint.SKELETON}.npy": _skeleton_bytes(_tree_with_model_array("a0")),
        "a0.npy": _npy(np.zeros(25_000_000)),
    }
    _write_zip(path, members, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1_000_000
    model = fo.nn.Linear(3, 2, bias=False, dtype=np.float64)
    before = model.weight.copy()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="weight") as info:
            fo.load(path, model=model)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value) or "shape" in str(info.value)
    assert peak < 20_000_000, f"{peak} bytes allocated to refuse the file"
    np.testing.assert_array_equal(model.weight, before)


# ----------------------------------------------------------------------------- item 10


def _valid(tmp_path) -> bytes:
    model = fo.nn.Linear(3, 2)
    opt = fo.optim.Adam(model.parameters())
    opt.step(model.gradients())
    path = tmp_path / "valid.ckpt"
    fo.save(path, model=model, optimizer=opt, epoch=1)
    return path.read_bytes()


def test_every_bit_flip_in_the_zip_directory_is_loaded_or_a_value_error(tmp_path):
    """Each single-bit flip in the central directory and end record: the file loads or raises
    ValueError naming the path (never AttributeError, RuntimeError, NotImplementedError)."""
    data = _valid(tmp_path)
    start = data.index(b"PK\x01\x02")  # the first central-directory header
    path = tmp_path / "flipped.ckpt"
    outcomes = {"loaded": 0, "ValueError": 0}
    for offset in range(start, len(data)):
        for bit in (0, 3, 7):
            flipped = bytearray(data)
            flipped[offset] ^= 1 << bit
            path.write_bytes(bytes(flipped))
            try:
                fo.load(path)
                outcomes["loaded"] += 1
            except ValueError as exc:
                assert str(path) in str(exc)
                outcomes["ValueError"] += 1
    assert outcomes["ValueError"] > 0


def test_a_skeleton_stored_raw_or_nested_deeply_is_a_value_error(tmp_path):
    path = tmp_path / "raw.ckpt"
    document = {"format": checkpoint.FORMAT, "version": 1, "tree": None}
    _write_zip(path, {f"{checkpoint.SKELETON}.npy": json.dumps(document).encode()})
    with pytest.raises(ValueError, match=r"raw\.ckpt"):
        fo.load(path)
    for depth in (600, 100_000):
        deep = "[" * depth + "]" * depth
        path = tmp_path / f"deep{depth}.ckpt"
        text = f'{{"format": "{checkpoint.FORMAT}", "version": 1, "tree": {deep}}}'
        member = _npy(np.frombuffer(text.encode(), np.uint8))
        _write_zip(path, {f"{checkpoint.SKELETON}.npy": member})
        with pytest.raises(ValueError, match=rf"deep{depth}\.ckpt"):
            fo.load(path)


def test_self_referential_or_too_deep_data_is_refused_by_save(tmp_path):
    cycle: list = []
    cycle.append(cycle)
    deep: list = []
    for _ in range(1000):
        deep = [deep]
    for value in (cycle, deep):
        with pytest.raises((TypeError, ValueError)):
            fo.save(tmp_path / "x.ckpt", value=value)
    assert not list(tmp_path.iterdir())


def test_whatever_save_writes_load_reads(tmp_path):
    """Data nested as deep as save accepts loads back."""
    depth = 0
    value: object = np.arange(3.0)
    while True:
        try:
            fo.save(tmp_path / "d.ckpt", value=[value])
        except ValueError:
            break
        value, depth = [value], depth + 1
    assert depth > 30
    loaded = fo.load(tmp_path / "d.ckpt").extra["value"]
    for _ in range(depth):  # the last save that worked wrote `value`: depth lists deep
        loaded = loaded[0]
    np.testing.assert_array_equal(loaded, np.arange(3.0))


# ----------------------------------------------------------------------------- item 11


def test_save_keeps_the_mode_and_writes_through_a_symlink(tmp_path):
    target = tmp_path / "real.ckpt"
    fo.save(target, epoch=0)
    target.chmod(0o600)
    fo.save(target, epoch=1)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    link = tmp_path / "latest.ckpt"
    link.symlink_to(target)
    fo.save(link, epoch=2)
    assert link.is_symlink()
    assert fo.load(target).extra["epoch"] == 2
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.ckpt", "real.ckpt"]


# ----------------------------------------------------------------------------- item 12

_KILLED_SAVE = """
import os, sys, numpy as np, ferroptim as fo
path = sys.argv[1]
big = np.zeros(20_000_000)
real = np.lib.format.write_array
def stall(fp, array, *args, **kwargs):
    real(fp, array, *args, **kwargs)
    print("writing", flush=True)
    import time; time.sleep(60)
np.lib.format.write_array = stall
fo.save(path, weights=big)
"""


def test_temp_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "c.ckpt"
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_SAVE, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGKILL)
        child.wait()
        # each save removed the temp file of the save killed before it: one is left
        left = [p.name for p in tmp_path.iterdir()]
        assert len(left) == 1 and left[0].endswith(".tmp"), left
    live = tmp_path / f".c.ckpt.{checkpoint._checkpoint_write._host()}-{os.getppid()}.ab.tmp"
    live.write_bytes(b"a save of a live process")
    fo.save(path, epoch=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.ckpt", live.name])


# ----------------------------------------------------------------------------- items 5 and 8


def _objects(seed: int):
    rng = np.random.default_rng(seed)
    model = fo.nn.Linear(4, 3, dtype=np.float64)
    model.weight[...] = rng.standard_normal(model.weight.shape)
    opt = fo.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = StepLR(opt, step_size=2)
    for _ in range(seed + 1):
        opt.step([rng.standard_normal(p.shape) for p in model.parameters()])
        sched.step()
    return model, opt, sched


def _state(model, opt, sched):
    return (
        [a.tobytes() for a in model.state_dict().values()],
        repr(opt.state_dict()),
        repr(sched.state_dict()),
    )


@pytest.mark.parametrize("where", ["optimizer", "scheduler"])
def test_keyboard_interrupt_inside_a_load_rolls_everything_back(tmp_path, monkeypatch, where):
    """A KeyboardInterrupt raised by a load (after it applied its state): every object already
    loaded is put back and the KeyboardInterrupt propagates."""
    path = tmp_path / "c.ckpt"
    fo.save(path, *_objects(3))
    objects = _objects(1)
    before = _state(*objects)
    cls = type(objects[1] if where == "optimizer" else objects[2])
    original = cls.load_state_dict
    calls = []

    def interrupted(self, state):
        original(self, state)
        calls.append(1)
        if len(calls) == 1:  # the load, not the put-back
            raise KeyboardInterrupt

    monkeypatch.setattr(cls, "load_state_dict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fo.load(path, *objects)
    assert _state(*objects) == before


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_at_random_moments_of_a_load_is_all_or_nothing(tmp_path):
    path = tmp_path / "c.ckpt"
    saved = _objects(3)
    fo.save(path, *saved)
    after = _state(*saved)
    main = threading.main_thread().ident
    rng = np.random.default_rng(0)
    outcomes = {"before": 0, "after": 0}
    for _ in range(60):
        objects = _objects(1)
        before = _state(*objects)
        timer = threading.Timer(
            float(rng.uniform(0, 0.003)), signal.pthread_kill, (main, signal.SIGINT)
        )
        try:
            timer.start()
            for _ in range(100):
                fo.load(path, *objects)
            timer.join()
        except KeyboardInterrupt:
            timer.join()
        state = _state(*objects)
        assert state in (before, after)
        outcomes["before" if state == before else "after"] += 1
    assert outcomes["after"] > 0


def test_save_beside_a_stepping_thread_holds_one_moment(tmp_path):
    """20 identical tensors stepped identically by another thread: in every saved file they
    (parameters and state) are still identical, and the step counts agree."""
    params = [np.zeros(50_000, np.float32) for _ in range(20)]
    opt = fo.optim.Adam(params, lr=1e-3)
    grads = [np.ones(50_000, np.float32) for _ in range(20)]
    stop = threading.Event()

    def stepper() -> None:
        while not stop.is_set():
            opt.step(grads)

    thread = threading.Thread(target=stepper)
    thread.start()
    torn = 0
    try:
        for k in range(15):
            path = tmp_path / f"c{k}.ckpt"
            fo.save(path, optimizer=opt, params=params)
            loaded = fo.load(path)
            arrays = loaded.extra["params"]
            state = loaded.optimizer.state_dict["state"]
            same = all(np.array_equal(a, arrays[0]) for a in arrays)
            same &= len({entry["step"] for entry in state.values()}) <= 1
            same &= all(
                np.array_equal(entry["exp_avg"], state[0]["exp_avg"]) for entry in state.values()
            )
            torn += not same
    finally:
        stop.set()
        thread.join()
    assert torn == 0, f"{torn} of 15 checkpoints mixed several steps"
