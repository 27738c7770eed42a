"""Two ``np.memmap`` objects of the same file bytes are two mappings at different addresses:
the overlap check compares the file bytes they map as well (issue 11, "also" item). See
``ferroptim/_file_spans.py`` for what is detected and what is not."""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import clip, functional

BACKENDS = ["native", "reference"]


@pytest.fixture
def two_maps(tmp_path):
    """Two read-write maps of one 800-byte file, the second starting 400 bytes in."""
    path = tmp_path / "weights.bin"
    np.zeros(100).tofile(path)
    whole = np.memmap(path, dtype=np.float64, mode="r+", shape=(100,))
    tail = np.memmap(path, dtype=np.float64, mode="r+", shape=(50,), offset=400)
    return whole, tail


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_maps_of_one_file_are_refused_as_params(two_maps, backend):
    whole, tail = two_maps
    with pytest.raises(ValueError, match="same file bytes"):
        fo.optim.SGD([whole, tail], lr=0.1, backend=backend)
    opt = fo.optim.SGD([whole], lr=0.1, backend=backend)
    with pytest.raises(ValueError, match="same file bytes"):
        opt.add_param_group({"params": [np.asarray(tail[10:])]})


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gradient_mapping_the_params_file_bytes_is_refused(two_maps, backend):
    whole, tail = two_maps
    param = whole[50:]
    before = param.copy()
    with pytest.raises(ValueError, match=r"grads\[0\] maps the same file bytes as params\[0\]"):
        functional.sgd_step([param], [np.asarray(tail)], lr=0.1, backend=backend)
    np.testing.assert_array_equal(param, before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_disjoint_parts_of_one_file_and_read_only_sharing_are_accepted(two_maps, backend):
    whole, tail = two_maps
    head = whole[:50]  # bytes 0..400, the tail map covers 400..800
    whole[...] = 1.0
    functional.sgd_step([head, tail], [np.ones(50), np.ones(50)], lr=0.5, backend=backend)
    np.testing.assert_array_equal(whole, np.full(100, 0.5))
    clip.global_norm([whole, tail], 2.0, backend=backend)  # gradients are only read
    with pytest.raises(ValueError, match="same file bytes"):
        clip.clip_grad_value_([whole, tail], 1.0, backend=backend)
