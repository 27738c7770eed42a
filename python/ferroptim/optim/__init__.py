"""Optimizers with torch.optim's names, defaults and update rules, on NumPy arrays."""

from ferroptim.optim import lr_scheduler, swa_utils
from ferroptim.optim.adadelta import Adadelta
from ferroptim.optim.adagrad import Adagrad
from ferroptim.optim.adam import Adam, AdamW
from ferroptim.optim.adamax import Adamax
from ferroptim.optim.groups import param_groups
from ferroptim.optim.lion import Lion
from ferroptim.optim.nadam import NAdam
from ferroptim.optim.optimizer import Optimizer
from ferroptim.optim.radam import RAdam
from ferroptim.optim.rmsprop import RMSprop
from ferroptim.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "lr_scheduler",
    "param_groups",
    "swa_utils",
]
