"""Weight averaging with ``torch.optim.swa_utils``' names, semantics and state_dict keys.

:class:`AveragedModel` keeps a running average of a model's weights: an equal-weight average
(stochastic weight averaging, the default) or an exponential moving average
(``multi_avg_fn=get_ema_multi_avg_fn(decay)``). :class:`SWALR` anneals the learning rate to a
constant for the averaging phase, and :func:`update_bn` recomputes the batch-norm statistics of
the averaged weights. :class:`~ferroptim.train.ModelAveraging` updates an averaged model from
``fit`` (an EMA of the weights during training, or SWA from some epoch on).
"""

from ferroptim.optim.swa_utils.averaged import (
    AveragedModel,
    get_ema_avg_fn,
    get_ema_multi_avg_fn,
    get_swa_avg_fn,
    get_swa_multi_avg_fn,
)
from ferroptim.optim.swa_utils.swalr import SWALR
from ferroptim.optim.swa_utils.update_bn import update_bn

__all__ = [
    "SWALR",
    "AveragedModel",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
    "update_bn",
]
