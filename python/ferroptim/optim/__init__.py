"""Optimizers with torch.optim's names, defaults and update rules, on NumPy arrays."""

from ferroptim.optim import lr_scheduler, swa_utils
from ferroptim.optim._state_format import bf16_to_float32, float32_to_bf16
from ferroptim.optim.adadelta import Adadelta
from ferroptim.optim.adagrad import Adagrad
from ferroptim.optim.adam import Adam, AdamW
from ferroptim.optim.adamax import Adamax
from ferroptim.optim.eightbit import Adam8bit, AdamW8bit, Lion8bit
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
    "Adam8bit",
    "AdamW",
    "AdamW8bit",
    "Adamax",
    "Lion",
    "Lion8bit",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "bf16_to_float32",
    "float32_to_bf16",
    "lr_scheduler",
    "param_groups",
    "swa_utils",
]
