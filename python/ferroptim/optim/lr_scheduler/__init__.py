"""Learning-rate schedulers with torch.optim.lr_scheduler's names, defaults and numbers.

Build a scheduler after the optimizer and call ``scheduler.step()`` after every
``optimizer.step(grads)`` (``scheduler.step(metric)`` for :class:`ReduceLROnPlateau`). Schedulers
read and write ``optimizer.param_groups[i]["lr"]`` (and the momentum for the cyclic ones), and
their ``state_dict()`` is plain JSON-serializable data.
"""

from ferroptim.optim.lr_scheduler.base import LRScheduler
from ferroptim.optim.lr_scheduler.composite import ChainedScheduler, SequentialLR
from ferroptim.optim.lr_scheduler.cosine import CosineAnnealingLR, CosineAnnealingWarmRestarts
from ferroptim.optim.lr_scheduler.cyclic import CyclicLR, OneCycleLR
from ferroptim.optim.lr_scheduler.lambda_lr import LambdaLR, MultiplicativeLR
from ferroptim.optim.lr_scheduler.plateau import ReduceLROnPlateau
from ferroptim.optim.lr_scheduler.step import (
    ConstantLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    PolynomialLR,
    StepLR,
)
from ferroptim.optim.lr_scheduler.warmup import warmup_cosine

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
    "warmup_cosine",
]
