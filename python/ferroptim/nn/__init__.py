"""Neural-network building blocks on NumPy arrays, with torch's names, layouts and defaults.

A model is a :class:`Module`; ``model(x)`` runs forward, ``model.backward(dy)`` accumulates
parameter gradients and returns d loss / d x, and ``parameters()`` / ``gradients()`` feed any
``ferroptim.optim`` optimizer. ``state_dict()`` uses torch's keys, so weights move between the two.
"""

from ferroptim.nn._rng import manual_seed
from ferroptim.nn.container import Sequential
from ferroptim.nn.embedding import Embedding
from ferroptim.nn.lstm import LSTM
from ferroptim.nn.module import Module

__all__ = ["LSTM", "Embedding", "Module", "Sequential", "manual_seed"]
