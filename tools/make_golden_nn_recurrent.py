"""Generate tests/data/golden_nn_recurrent.npz: torch.nn.Embedding / torch.nn.LSTM forward and
backward results that ferroptim.nn.Embedding / LSTM must match (float64).

Run it with the fixture venv (torch), never from the tests::

    path/to/fixture-venv/bin/python tools/make_golden_nn_recurrent.py

Each case builds the torch module in float64 from a fixed seed, draws an input and upstream
gradients, and computes ``loss = sum(y * dy) (+ sum(h_n * dh_n) + sum(c_n * dc_n))`` so that the
gradients torch returns are exactly the vector-Jacobian products ferroptim's ``backward`` computes.

Layout of the npz (numbers and plain strings only, loadable with ``allow_pickle=False``):

* ``meta``: JSON string (torch version, case names);
* ``<case>/config``: JSON string ``{"module": "Embedding" | "LSTM", "kwargs": {...}}``;
* ``<case>/state/<key>``: the torch ``state_dict`` (torch's keys);
* ``<case>/x``, ``<case>/dy``, ``<case>/y``: input, upstream gradient, output;
* ``<case>/grad/<key>``: the parameter gradients, by state_dict key;
* ``<case>/dx`` (LSTM only): the input gradient;
* LSTM: ``<case>/h_n``, ``<case>/c_n``; with initial states also ``<case>/h0``, ``<case>/c0``,
  ``<case>/dh0``, ``<case>/dc0``; with state gradients ``<case>/dh_n``, ``<case>/dc_n``.
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden_nn_recurrent.npz"

EMBEDDING_CASES: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    # (name, kwargs, index shape); indices include repeats and (where set) the padding row.
    ("embedding_plain", dict(num_embeddings=7, embedding_dim=3), (4, 5)),
    ("embedding_padding", dict(num_embeddings=6, embedding_dim=4, padding_idx=2), (3, 6)),
    ("embedding_padding_negative", dict(num_embeddings=5, embedding_dim=2, padding_idx=-1), (9,)),
]

LSTM_CASES: list[tuple[str, dict[str, Any], tuple[int, ...], bool, bool]] = [
    # (name, kwargs, input shape, pass initial states, pass d h_n / d c_n)
    ("lstm_1layer", dict(input_size=4, hidden_size=3), (5, 2, 4), False, False),
    ("lstm_1layer_batch_first", dict(input_size=3, hidden_size=5, batch_first=True), (3, 4, 3),
     False, False),
    ("lstm_2layer", dict(input_size=4, hidden_size=3, num_layers=2), (6, 3, 4), False, False),
    ("lstm_2layer_batch_first",
     dict(input_size=2, hidden_size=4, num_layers=2, batch_first=True), (2, 5, 2), False, False),
    ("lstm_no_bias", dict(input_size=3, hidden_size=3, num_layers=2, bias=False), (4, 2, 3),
     False, False),
    ("lstm_unbatched", dict(input_size=3, hidden_size=2, num_layers=2), (5, 3), False, False),
    ("lstm_states", dict(input_size=3, hidden_size=4, num_layers=2), (4, 3, 3), True, True),
    ("lstm_states_batch_first",
     dict(input_size=2, hidden_size=3, num_layers=3, batch_first=True), (2, 4, 2), True, True),
    ("lstm_unbatched_states", dict(input_size=4, hidden_size=3), (3, 4), True, True),
]  # fmt: skip


def case_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def tensor(array: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(array, dtype=torch.float64, requires_grad=grad)


def state_and_grads(module: torch.nn.Module, name: str) -> dict[str, np.ndarray]:
    out = {}
    for key, value in module.state_dict().items():
        out[f"{name}/state/{key}"] = value.detach().numpy().copy()
    for key, param in module.named_parameters():
        out[f"{name}/grad/{key}"] = param.grad.detach().numpy().copy()
    return out


def embedding_case(name: str, kwargs: dict[str, Any], shape: tuple[int, ...]) -> dict:
    torch.manual_seed(case_seed(name))
    rng = np.random.default_rng(case_seed(name))
    module = torch.nn.Embedding(**kwargs, dtype=torch.float64)
    indices = rng.integers(0, kwargs["num_embeddings"], shape)
    indices.flat[:3] = indices.flat[0]  # a guaranteed repeat
    if "padding_idx" in kwargs:
        indices.flat[-2:] = kwargs["padding_idx"] % kwargs["num_embeddings"]
    y = module(torch.tensor(indices))
    dy = rng.standard_normal(y.shape)
    (y * tensor(dy)).sum().backward()
    out = {
        f"{name}/config": json.dumps({"module": "Embedding", "kwargs": kwargs}),
        f"{name}/x": indices.astype(np.int64),
        f"{name}/dy": dy,
        f"{name}/y": y.detach().numpy().copy(),
    }
    out.update(state_and_grads(module, name))
    return out


def lstm_case(
    name: str, kwargs: dict[str, Any], shape: tuple[int, ...], states: bool, state_grads: bool
) -> dict:
    torch.manual_seed(case_seed(name))
    rng = np.random.default_rng(case_seed(name))
    module = torch.nn.LSTM(**kwargs, dtype=torch.float64)
    x_np = rng.standard_normal(shape)
    x = tensor(x_np, grad=True)
    layers = kwargs.get("num_layers", 1)
    hidden = kwargs["hidden_size"]
    if len(shape) == 3:  # states are (layers, N, H) whatever batch_first says
        state_shape = (layers, shape[0] if kwargs.get("batch_first") else shape[1], hidden)
    else:
        state_shape = (layers, hidden)
    out: dict[str, Any] = {}
    hx = None
    if states:
        h0, c0 = (rng.standard_normal(state_shape) * 0.5 for _ in range(2))
        hx = (tensor(h0, grad=True), tensor(c0, grad=True))
        out.update({f"{name}/h0": h0, f"{name}/c0": c0})
    y, (h_n, c_n) = module(x, hx)
    dy = rng.standard_normal(y.shape)
    loss = (y * tensor(dy)).sum()
    if state_grads:
        dh_n, dc_n = rng.standard_normal(state_shape), rng.standard_normal(state_shape)
        loss = loss + (h_n * tensor(dh_n)).sum() + (c_n * tensor(dc_n)).sum()
        out.update({f"{name}/dh_n": dh_n, f"{name}/dc_n": dc_n})
    loss.backward()
    out.update(
        {
            f"{name}/config": json.dumps({"module": "LSTM", "kwargs": kwargs}),
            f"{name}/x": x_np,
            f"{name}/dy": dy,
            f"{name}/y": y.detach().numpy().copy(),
            f"{name}/dx": x.grad.numpy().copy(),
            f"{name}/h_n": h_n.detach().numpy().copy(),
            f"{name}/c_n": c_n.detach().numpy().copy(),
        }
    )
    if states:
        out.update({f"{name}/dh0": hx[0].grad.numpy().copy(), f"{name}/dc0": hx[1].grad.numpy()})
    out.update(state_and_grads(module, name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    arrays: dict[str, Any] = {}
    for name, kwargs, shape in EMBEDDING_CASES:
        arrays.update(embedding_case(name, kwargs, shape))
    for name, kwargs, shape, states, state_grads in LSTM_CASES:
        arrays.update(lstm_case(name, kwargs, shape, states, state_grads))
    cases = [c[0] for c in EMBEDDING_CASES] + [c[0] for c in LSTM_CASES]
    arrays["meta"] = json.dumps({"torch": torch.__version__, "cases": cases})
    np.savez_compressed(args.out, **{k: np.asarray(v) for k, v in arrays.items()})
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
