"""Neural-network building blocks on NumPy arrays, with torch's names, layouts and defaults.

A model is a :class:`Module`; ``model(x)`` runs forward, ``model.backward(dy)`` accumulates
parameter gradients and returns d loss / d x, and ``parameters()`` / ``gradients()`` feed any
``ferroptim.optim`` optimizer. ``state_dict()`` uses torch's keys, so weights move between the two.
"""

from ferroptim.nn import init
from ferroptim.nn._grad_mode import enable_grad, no_grad
from ferroptim.nn._rng import manual_seed
from ferroptim.nn.activation import (
    ELU,
    GELU,
    LeakyReLU,
    LogSoftmax,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from ferroptim.nn.container import Sequential
from ferroptim.nn.conv import Conv2d
from ferroptim.nn.dropout import Dropout
from ferroptim.nn.embedding import Embedding
from ferroptim.nn.gradcheck import GradcheckError, GradcheckReport, gradcheck, gradcheck_loss
from ferroptim.nn.linear import Linear
from ferroptim.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss
from ferroptim.nn.lstm import LSTM
from ferroptim.nn.module import Gradients, Module
from ferroptim.nn.normalization import BatchNorm1d, BatchNorm2d
from ferroptim.nn.pooling import AvgPool2d, MaxPool2d
from ferroptim.nn.residual import Residual
from ferroptim.nn.shape import Flatten, Identity

__all__ = [
    "ELU",
    "GELU",
    "LSTM",
    "AvgPool2d",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Flatten",
    "GradcheckError",
    "GradcheckReport",
    "Gradients",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "PReLU",
    "ReLU",
    "Residual",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "enable_grad",
    "gradcheck",
    "gradcheck_loss",
    "init",
    "manual_seed",
    "no_grad",
]
