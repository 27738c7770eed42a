"""Generate tests/data/golden_nn_layers.npz: torch.nn layer outputs and gradients in float64.

Run it with the fixture venv (torch), never from the tests::

    path/to/fixture-venv/bin/python tools/make_golden_nn_layers.py

Every case builds one ``torch.nn`` layer in float64, sets its parameters and buffers to seeded
random values (batch-norm weights near 1, positive running variances), draws a random input
``x`` and upstream gradient ``dy``, runs ``y = layer(x)`` in train or eval mode and
``y.backward(dy)``.

Layout of the npz (``<case>/...``):

* ``meta``: JSON string (versions, cases);
* ``<case>/config``: JSON string ``{"layer": ferroptim/torch class name, "kwargs": ...,
  "training": bool}``;
* ``<case>/state/<key>``: the layer's ``state_dict()`` before the forward (torch's keys and
  layouts; ``num_batches_tracked`` int64 0-d);
* ``<case>/x``, ``<case>/dy``, ``<case>/y``, ``<case>/dx``;
* ``<case>/grad/<name>``: each parameter's gradient;
* ``<case>/after/<key>``: the buffers after the forward (batch-norm running statistics);
* ``init/gain/<nonlinearity>`` (and ``init/gain/leaky_relu_<param>``): ``calculate_gain``;
* ``init/fans/<k>``: int64 ``[*shape, fan_in, fan_out]`` from ``_calculate_fan_in_and_fan_out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from make_golden import save_fixture

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden_nn_layers.npz"

# (case name, class name, kwargs, input shape, training, input kind)
CASES: list[tuple[str, str, dict[str, Any], tuple[int, ...], bool, str]] = [
    ("linear_2d", "Linear", dict(in_features=5, out_features=4), (3, 5), True, "normal"),
    ("linear_3d", "Linear", dict(in_features=5, out_features=4), (2, 3, 5), True, "normal"),
    (
        "linear_nobias",
        "Linear",
        dict(in_features=3, out_features=6, bias=False),
        (4, 3),
        True,
        "normal",
    ),
    (
        "conv_stride2_pad1_rect",
        "Conv2d",
        dict(in_channels=3, out_channels=4, kernel_size=[3, 2], stride=2, padding=1),
        (2, 3, 7, 6),
        True,
        "normal",
    ),
    (
        "conv_nobias_pairs",
        "Conv2d",
        dict(
            in_channels=2,
            out_channels=3,
            kernel_size=[2, 3],
            stride=[1, 2],
            padding=[0, 1],
            bias=False,
        ),
        (2, 2, 5, 7),
        True,
        "normal",
    ),
    (
        "conv_default",
        "Conv2d",
        dict(in_channels=1, out_channels=5, kernel_size=3, padding=1),
        (3, 1, 8, 8),
        True,
        "normal",
    ),
    (
        "maxpool_k3_s2_p1",
        "MaxPool2d",
        dict(kernel_size=3, stride=2, padding=1),
        (2, 3, 7, 8),
        True,
        "normal",
    ),
    (
        "maxpool_ties",
        "MaxPool2d",
        dict(kernel_size=[2, 3], stride=[1, 2], padding=[1, 1]),
        (2, 2, 5, 7),
        True,
        "ties",
    ),
    ("maxpool_default_stride", "MaxPool2d", dict(kernel_size=2), (2, 3, 6, 7), True, "normal"),
    (
        "avgpool_k3_s2_p1",
        "AvgPool2d",
        dict(kernel_size=3, stride=2, padding=1),
        (2, 3, 7, 8),
        True,
        "normal",
    ),
    (
        "avgpool_exclude_pad",
        "AvgPool2d",
        dict(kernel_size=[3, 2], stride=[2, 1], padding=1, count_include_pad=False),
        (2, 2, 6, 5),
        True,
        "normal",
    ),
    ("flatten_default", "Flatten", dict(), (2, 3, 4, 5), True, "normal"),
    ("flatten_middle", "Flatten", dict(start_dim=1, end_dim=2), (2, 3, 4, 5), True, "normal"),
    ("batchnorm1d_2d_train", "BatchNorm1d", dict(num_features=4), (6, 4), True, "shifted"),
    ("batchnorm1d_2d_eval", "BatchNorm1d", dict(num_features=4), (6, 4), False, "shifted"),
    ("batchnorm1d_3d_train", "BatchNorm1d", dict(num_features=3), (4, 3, 5), True, "shifted"),
    ("batchnorm1d_3d_eval", "BatchNorm1d", dict(num_features=3), (4, 3, 5), False, "shifted"),
    ("batchnorm2d_train", "BatchNorm2d", dict(num_features=3), (4, 3, 5, 6), True, "shifted"),
    ("batchnorm2d_eval", "BatchNorm2d", dict(num_features=3), (4, 3, 5, 6), False, "shifted"),
    (
        "batchnorm2d_cumulative",
        "BatchNorm2d",
        dict(num_features=2, momentum=None, eps=1e-3),
        (3, 2, 4, 4),
        True,
        "shifted",
    ),
    (
        "batchnorm2d_no_affine",
        "BatchNorm2d",
        dict(num_features=3, affine=False, momentum=0.3),
        (2, 3, 4, 3),
        True,
        "shifted",
    ),
    (
        "batchnorm1d_no_running_eval",
        "BatchNorm1d",
        dict(num_features=3, track_running_stats=False),
        (5, 3),
        False,
        "shifted",
    ),
    ("dropout_eval", "Dropout", dict(p=0.5), (4, 6), False, "normal"),
]


def draw_input(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "ties":
        return rng.integers(0, 3, shape).astype(np.float64)  # many equal maxima
    if kind == "shifted":
        return 2.0 + 1.5 * rng.standard_normal(shape)
    return rng.standard_normal(shape)


def randomize_state(layer: Any, rng: np.random.Generator, torch: Any) -> None:
    """Seeded values for every parameter and buffer (valid for batch norm)."""
    with torch.no_grad():
        for name, tensor in layer.named_parameters():
            if name == "weight" and "BatchNorm" in type(layer).__name__:
                values = 1.0 + 0.3 * rng.standard_normal(tuple(tensor.shape))
            else:
                values = 0.5 * rng.standard_normal(tuple(tensor.shape))
            tensor.copy_(torch.from_numpy(values))
        for name, tensor in layer.named_buffers():
            if name == "running_mean":
                tensor.copy_(torch.from_numpy(0.5 * rng.standard_normal(tuple(tensor.shape))))
            elif name == "running_var":
                tensor.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, tuple(tensor.shape))))
            elif name == "num_batches_tracked":
                tensor.fill_(3)


def run_case(case: tuple, torch: Any) -> dict[str, np.ndarray]:
    name, cls_name, kwargs, shape, training, kind = case
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    layer = getattr(torch.nn, cls_name)(**kwargs).to(torch.float64)
    randomize_state(layer, rng, torch)
    layer.train(training)
    out: dict[str, np.ndarray] = {}
    for key, value in layer.state_dict().items():
        out[f"state/{key}"] = value.detach().numpy().copy()
    x_np = draw_input(rng, shape, kind)
    x = torch.from_numpy(x_np.copy()).requires_grad_(True)
    y = layer(x)
    dy_np = rng.standard_normal(tuple(y.shape))
    y.backward(torch.from_numpy(dy_np.copy()))
    out["x"] = x_np
    out["dy"] = dy_np
    out["y"] = y.detach().numpy().copy()
    out["dx"] = x.grad.numpy().copy()
    for pname, param in layer.named_parameters():
        out[f"grad/{pname}"] = param.grad.numpy().copy()
    for bname, buffer in layer.named_buffers():
        out[f"after/{bname}"] = buffer.detach().numpy().copy()
    config = {"layer": cls_name, "kwargs": kwargs, "training": training}
    out["config"] = np.array(json.dumps(config))
    return out


GAIN_NONLINEARITIES = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
)
LEAKY_SLOPES = (0.2, 0, 3)
FAN_SHAPES = ((4, 3), (5, 3, 2), (6, 2, 3, 4), (2, 7, 1, 1, 3))


def init_values(torch: Any) -> dict[str, np.ndarray]:
    out = {}
    for name in GAIN_NONLINEARITIES:
        out[f"init/gain/{name}"] = np.array(torch.nn.init.calculate_gain(name), np.float64)
    for slope in LEAKY_SLOPES:
        gain = torch.nn.init.calculate_gain("leaky_relu", slope)
        out[f"init/gain/leaky_relu_{slope}"] = np.array(gain, np.float64)
    for k, shape in enumerate(FAN_SHAPES):
        fans = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        out[f"init/fans/{k}"] = np.array([*shape, *fans], np.int64)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    data: dict[str, np.ndarray] = {}
    for case in CASES:
        for key, value in run_case(case, torch).items():
            data[f"{case[0]}/{key}"] = value
    data.update(init_values(torch))
    meta = {
        "generator": "tools/make_golden_nn_layers.py",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cases": [case[0] for case in CASES],
    }
    save_fixture(args.out, data, meta, f"{len(CASES)} cases")


if __name__ == "__main__":
    main()
