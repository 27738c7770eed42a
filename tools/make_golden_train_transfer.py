"""Generate tests/data/golden_train_transfer.npz: a torch model's state_dict exported to .npz
the usual way, plus an input and the model's eval-mode output, for the transfer-learning tests.

Run it with the fixture venv (torch), never from the tests::

    path/to/fixture-venv/bin/python tools/make_golden_train_transfer.py

The model is ``Sequential(Linear(4, 8), BatchNorm1d(8), ReLU(), Linear(8, 3))`` in float64 with
seeded weights and running statistics (a few training-mode forwards). Layout of the npz:

* ``state/<key>``: ``net.state_dict()`` with torch's keys (``num_batches_tracked`` int64 0-d);
* ``x``: input ``(5, 4)``; ``y``: ``net.eval()(x)``.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "golden_train_transfer.npz"


def main() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).double()
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 4, dtype=torch.float64) * 2 + 1)
    net.eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
    arrays = {f"state/{k}": v.detach().numpy() for k, v in net.state_dict().items()}
    arrays["x"] = x.numpy()
    arrays["y"] = y.numpy()
    np.savez(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, torch {torch.__version__})")


if __name__ == "__main__":
    main()
