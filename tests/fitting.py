"""``train.fit`` as the training tests call it: no progress bar, cross-entropy unless told."""

from __future__ import annotations

from typing import Any

from ferroptim import train
from ferroptim.nn.loss import CrossEntropyLoss


def quiet_fit(model: Any, optimizer: Any, X: Any, y: Any, *, loss: Any = None, **kwargs: Any):
    """``train.fit(model, loss, optimizer, X, y, progress=False, **kwargs)``, with
    ``CrossEntropyLoss()`` when ``loss`` is None."""
    loss = CrossEntropyLoss() if loss is None else loss
    return train.fit(model, loss, optimizer, X, y, progress=False, **kwargs)
