"""Generate tests/data/golden_schedulers.npz: torch lr_scheduler sequences ferroptim must match.

Run it with the fixture venv (torch), never from the tests::

    path/to/fixture-venv/bin/python tools/make_golden_schedulers.py

Every case builds a torch optimizer with two parameter groups of different learning rates, builds
the scheduler(s) described by the case's spec, then takes ``steps`` steps (``optimizer.step()``
then ``scheduler.step(...)``), recording every group's ``lr`` (and momentum: ``momentum`` or
``betas[0]``) after construction and after each step. The tests replay the same calls with
ferroptim's optimizers and schedulers; the case table, the named lambdas and :func:`build` are
shared with them (this module imports torch only inside :func:`main`).

Layout of the npz:

* ``meta``: JSON string (torch version, case names);
* ``<case>/config``: JSON string of the case (optimizer, groups, scheduler spec, step arguments)
  plus ``state_keys``, the sorted keys of torch's ``state_dict()`` at the end;
* ``<case>/lr``: shape (steps + 1, groups), float64;
* ``<case>/momentum``: same shape, for cases that cycle momentum.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden_schedulers.npz"
STEPS = 60

#: functions referenced by name from the specs (``"lr_lambda"`` / ``"scale_fn"``)
FUNCTIONS: dict[str, Any] = {
    "warmup10": lambda e: min(1.0, (e + 1) / 10),
    "exp097": lambda e: 0.97**e,
    "halve_every7": lambda e: 0.5 ** (e // 7),
    "times095": lambda e: 0.95,
    "zigzag": lambda e: 0.9 if e % 3 == 0 else 1.02,
    "inverse_sqrt": lambda x: 1.0 / math.sqrt(1.0 + x),
}

#: a fixed, noisy, slowly improving metric for ReduceLROnPlateau
METRICS = [
    round(1.0 / (1 + 0.2 * i) + 0.05 * math.sin(1.7 * i) + (0.3 if i > 35 else 0.0), 6)
    for i in range(STEPS)
]


def spec(cls: str, **kwargs: Any) -> dict[str, Any]:
    """A scheduler spec; ``children`` (a list of specs) for the composite schedulers."""
    children = kwargs.pop("children", None)
    out: dict[str, Any] = {"cls": cls, "kwargs": kwargs}
    if children is not None:
        out["children"] = children
    return out


def case(scheduler: dict[str, Any], optimizer: str = "SGD", **extra: Any) -> dict[str, Any]:
    """A case: optimizer class and kwargs, group lrs, scheduler spec, what to step with."""
    out = {
        "optimizer": optimizer,
        "optimizer_kwargs": extra.pop("optimizer_kwargs", {}),
        "lrs": extra.pop("lrs", [0.1, 0.03]),
        "scheduler": scheduler,
        "steps": STEPS,
        "momentum": extra.pop("momentum", False),
        "metrics": extra.pop("metrics", None),
        "epochs": extra.pop("epochs", None),
    }
    assert not extra, extra
    return out


SGD_MOMENTUM = {"momentum": 0.9}
CASES: dict[str, dict[str, Any]] = {
    "step": case(spec("StepLR", step_size=7, gamma=0.5)),
    "step_default_gamma": case(spec("StepLR", step_size=10)),
    "multistep": case(spec("MultiStepLR", milestones=[5, 12, 30], gamma=0.3)),
    "multistep_default": case(spec("MultiStepLR", milestones=[0, 20, 21])),
    "exponential": case(spec("ExponentialLR", gamma=0.95), "Adam"),
    "constant": case(spec("ConstantLR", factor=0.25, total_iters=8)),
    "constant_default": case(spec("ConstantLR")),
    "linear": case(spec("LinearLR", start_factor=0.1, end_factor=1.0, total_iters=20)),
    "linear_down": case(spec("LinearLR", start_factor=1.0, end_factor=0.05, total_iters=30)),
    "linear_default": case(spec("LinearLR"), "RMSprop"),
    "polynomial": case(spec("PolynomialLR", total_iters=40, power=2.0)),
    "polynomial_sqrt": case(spec("PolynomialLR", total_iters=25, power=0.5)),
    "polynomial_default": case(spec("PolynomialLR")),
    "lambda": case(spec("LambdaLR", lr_lambda=["warmup10", "exp097"])),
    "lambda_single": case(spec("LambdaLR", lr_lambda="halve_every7")),
    "multiplicative": case(spec("MultiplicativeLR", lr_lambda="times095")),
    "multiplicative_list": case(spec("MultiplicativeLR", lr_lambda=["times095", "zigzag"])),
    "cosine": case(spec("CosineAnnealingLR", T_max=20, eta_min=0.001)),
    "cosine_default": case(spec("CosineAnnealingLR", T_max=60), "AdamW"),
    "warm_restarts": case(spec("CosineAnnealingWarmRestarts", T_0=10)),
    "warm_restarts_mult": case(spec("CosineAnnealingWarmRestarts", T_0=5, T_mult=2, eta_min=0.01)),
    "warm_restarts_epochs": case(
        spec("CosineAnnealingWarmRestarts", T_0=4, T_mult=3, eta_min=0.002),
        epochs=[round(0.37 * (i + 1), 2) for i in range(STEPS)],
    ),
    "onecycle_sgd": case(
        spec("OneCycleLR", max_lr=[1.0, 0.5], total_steps=STEPS),
        optimizer_kwargs=SGD_MOMENTUM,
        momentum=True,
    ),
    "onecycle_adam_three_phase_linear": case(
        spec(
            "OneCycleLR",
            max_lr=0.01,
            total_steps=STEPS,
            three_phase=True,
            anneal_strategy="linear",
            base_momentum=[0.8, 0.85],
            max_momentum=0.95,
        ),
        "Adam",
        momentum=True,
    ),
    "onecycle_epochs_no_momentum": case(
        spec(
            "OneCycleLR",
            max_lr=0.2,
            epochs=6,
            steps_per_epoch=10,
            pct_start=0.25,
            div_factor=10.0,
            final_div_factor=100.0,
            cycle_momentum=False,
        ),
        "Adagrad",
    ),
    "onecycle_rmsprop": case(
        spec("OneCycleLR", max_lr=[0.05, 0.02], total_steps=STEPS, pct_start=0.5),
        "RMSprop",
        optimizer_kwargs={"momentum": 0.5},
        momentum=True,
    ),
    "cyclic_triangular_sgd": case(
        spec("CyclicLR", base_lr=[0.01, 0.005], max_lr=[0.1, 0.05], step_size_up=7),
        optimizer_kwargs=SGD_MOMENTUM,
        momentum=True,
    ),
    "cyclic_triangular2_adam": case(
        spec(
            "CyclicLR",
            base_lr=0.001,
            max_lr=0.01,
            step_size_up=4,
            step_size_down=9,
            mode="triangular2",
            base_momentum=0.85,
            max_momentum=[0.95, 0.9],
        ),
        "Adam",
        momentum=True,
    ),
    "cyclic_exp_range_rmsprop": case(
        spec("CyclicLR", base_lr=0.002, max_lr=0.02, step_size_up=5, mode="exp_range", gamma=0.97),
        "RMSprop",
        optimizer_kwargs={"momentum": 0.5},
        momentum=True,
    ),
    "cyclic_custom_scale": case(
        spec(
            "CyclicLR",
            base_lr=0.01,
            max_lr=0.1,
            step_size_up=6,
            scale_fn="inverse_sqrt",
            scale_mode="iterations",
            cycle_momentum=False,
        )
    ),
    "plateau_default": case(spec("ReduceLROnPlateau"), metrics=METRICS),
    "plateau_min_rel": case(
        spec("ReduceLROnPlateau", factor=0.5, patience=2, cooldown=1), metrics=METRICS
    ),
    "plateau_max_abs": case(
        spec(
            "ReduceLROnPlateau",
            mode="max",
            factor=0.3,
            patience=1,
            threshold=0.01,
            threshold_mode="abs",
            cooldown=3,
            min_lr=[0.01, 0.001],
        ),
        metrics=[-m for m in METRICS],
    ),
    "sequential_warmup_cosine": case(
        spec(
            "SequentialLR",
            milestones=[8],
            children=[
                spec("LinearLR", start_factor=1 / 8, end_factor=1.0, total_iters=8),
                spec("CosineAnnealingLR", T_max=52, eta_min=1e-4),
            ],
        ),
        "AdamW",
    ),
    "sequential_three": case(
        spec(
            "SequentialLR",
            milestones=[4, 20],
            children=[
                spec("ConstantLR", factor=0.5, total_iters=4),
                spec("ExponentialLR", gamma=0.9),
                spec("StepLR", step_size=5, gamma=0.5),
            ],
        )
    ),
    "chained": case(
        spec(
            "ChainedScheduler",
            children=[
                spec("ConstantLR", factor=0.1, total_iters=5),
                spec("ExponentialLR", gamma=0.9),
            ],
        )
    ),
    "chained_cosine": case(
        spec(
            "ChainedScheduler",
            children=[
                spec("LinearLR", start_factor=0.5, total_iters=10),
                spec("CosineAnnealingLR", T_max=25, eta_min=0.001),
                spec("MultiStepLR", milestones=[15, 40], gamma=0.5),
            ],
        )
    ),
    "chained_of_sequential": case(
        spec(
            "ChainedScheduler",
            children=[
                spec(
                    "SequentialLR",
                    milestones=[6],
                    children=[
                        spec("LinearLR", start_factor=0.25, total_iters=6),
                        spec("PolynomialLR", total_iters=50, power=1.5),
                    ],
                ),
                spec("StepLR", step_size=9, gamma=0.8),
            ],
        )
    ),
}


def build(spec: dict[str, Any], optimizer: Any, module: Any) -> Any:
    """Build the scheduler ``spec`` describes on ``optimizer`` with the classes of ``module``
    (``torch.optim.lr_scheduler`` or ``ferroptim.optim.lr_scheduler``); children first, in order."""
    kwargs = dict(spec["kwargs"])
    for key in ("lr_lambda", "scale_fn"):
        if key in kwargs:
            names = kwargs[key]
            kwargs[key] = (
                [FUNCTIONS[n] for n in names] if isinstance(names, list) else FUNCTIONS[names]
            )
    cls = getattr(module, spec["cls"])
    if "children" in spec:
        children = [build(child, optimizer, module) for child in spec["children"]]
        if spec["cls"] == "ChainedScheduler":
            return cls(children, **kwargs)
        return cls(optimizer, children, **kwargs)
    return cls(optimizer, **kwargs)


def momentum_of(group: dict[str, Any]) -> float:
    """The value a cyclic scheduler moves: ``betas[0]`` or ``momentum``."""
    return float(group["betas"][0]) if "betas" in group else float(group["momentum"])


def record(optimizer: Any) -> tuple[list[float], list[float]]:
    groups = optimizer.param_groups
    return [float(g["lr"]) for g in groups], [
        momentum_of(g) if ("betas" in g or "momentum" in g) else math.nan for g in groups
    ]


def run(cfg: dict[str, Any], optimizer: Any, scheduler: Any, step_optimizer: Any) -> dict[str, Any]:
    """Take the case's steps; return the lr (and momentum) sequences as float64 arrays."""
    lrs, moms = [], []
    lr, mom = record(optimizer)
    lrs.append(lr)
    moms.append(mom)
    for i in range(cfg["steps"]):
        step_optimizer()
        if cfg["metrics"] is not None:
            scheduler.step(cfg["metrics"][i])
        elif cfg["epochs"] is not None:
            scheduler.step(cfg["epochs"][i])
        else:
            scheduler.step()
        lr, mom = record(optimizer)
        lrs.append(lr)
        moms.append(mom)
    out = {"lr": np.array(lrs, dtype=np.float64)}
    if cfg["momentum"]:
        out["momentum"] = np.array(moms, dtype=np.float64)
    return out


def main() -> None:
    import warnings

    import torch
    from torch.optim import lr_scheduler

    warnings.simplefilter("ignore")  # torch's epoch-argument deprecation warning
    arrays: dict[str, np.ndarray] = {}
    for name, cfg in CASES.items():
        params = [torch.zeros(3, requires_grad=True) for _ in cfg["lrs"]]
        groups = [{"params": [p], "lr": lr} for p, lr in zip(params, cfg["lrs"], strict=True)]
        optimizer = getattr(torch.optim, cfg["optimizer"])(groups, **cfg["optimizer_kwargs"])
        scheduler = build(cfg["scheduler"], optimizer, lr_scheduler)
        result = run(cfg, optimizer, scheduler, optimizer.step)
        keys = sorted(set(scheduler.state_dict()) - {"_get_lr_called_within_step"})
        arrays[f"{name}/config"] = np.array(json.dumps({**cfg, "state_keys": keys}))
        for key, value in result.items():
            arrays[f"{name}/{key}"] = value
    meta = {"torch": torch.__version__, "python": sys.version.split()[0], "cases": list(CASES)}
    from make_golden import save_fixture  # run as a script: tools/ is on the path

    save_fixture(OUT, arrays, meta, f"{len(CASES)} cases")


if __name__ == "__main__":
    main()
