"""All-or-nothing calls: a failed set_rng_state or load_state_dict leaves every generator
state and array as it was; state_dict key errors name the shape."""

from __future__ import annotations

import numpy as np
import pytest

from ferroptim.nn.container import Sequential
from ferroptim.nn.dropout import Dropout
from ferroptim.nn.linear import Linear
from ferroptim.nn.normalization import BatchNorm1d


# --- set_rng_state -----------------------------------------------------------------------
def test_set_rng_state_validates_every_value_before_applying():
    model = Sequential(Dropout(0.5, seed=0), Dropout(0.5, seed=1))
    before = model.rng_state()
    good = Sequential(Dropout(0.5, seed=7), Dropout(0.5, seed=8)).rng_state()
    bad_values = [
        ("garbage", TypeError),
        ({"bit_generator": "MT19937", "state": {}}, ValueError),
        ({"bit_generator": "PCG64"}, ValueError),
        ({**good["1"], "state": {"state": -1, "inc": 1}}, ValueError),
        ({**good["1"], "state": {"state": "x", "inc": 1}}, TypeError),
    ]
    for bad, error in bad_values:
        with pytest.raises(error, match="'1'"):
            model.set_rng_state({"0": good["0"], "1": bad})
        assert model.rng_state() == before
    with pytest.raises(TypeError, match="mapping"):
        model.set_rng_state([("0", good["0"])])
    model.set_rng_state(good)
    assert model.rng_state() == good


# --- load_state_dict ---------------------------------------------------------------------
def test_missing_and_unexpected_keys_name_the_shape():
    model = Sequential(Linear(4, 3), BatchNorm1d(3))
    state = model.state_dict()
    del state["0.weight"]
    with pytest.raises(KeyError, match=r"'0\.weight'.*expected shape \(3, 4\)"):
        model.load_state_dict(state)
    state = model.state_dict()
    state["2.weight"] = np.zeros((5, 2))
    with pytest.raises(KeyError, match=r"'2\.weight'.*given shape \(5, 2\)"):
        model.load_state_dict(state)
    state["2.weight"] = [[1, 2], [3]]  # ragged: no shape, still a KeyError naming the key
    with pytest.raises(KeyError, match=r"'2\.weight'.*no shape"):
        model.load_state_dict(state)
