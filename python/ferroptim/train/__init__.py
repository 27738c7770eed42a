"""Training workflow: ``fit`` with validation, callbacks, schedulers and regularization, plus the
guide's practices (early stopping, L1/L2, cross-validation, overfitting a small subset first,
greedy layer-wise pretraining, transfer learning).

::

    import ferroptim as fo
    stop = fo.train.EarlyStopping(patience=5, restore_best_weights=True)
    history = fo.train.fit(model, loss_fn, opt, X, y, epochs=50, batch_size=64,
                           validation_data=(Xv, yv), callbacks=[stop])
    history.plot("curves.png")
"""

from ferroptim.train.averaging import ModelAveraging
from ferroptim.train.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    FitState,
    ModelCheckpoint,
    TerminateOnNaN,
)
from ferroptim.train.crossval import cross_validate
from ferroptim.train.evaluate import evaluate, predict
from ferroptim.train.fit import fit
from ferroptim.train.history import History
from ferroptim.train.metrics import (
    binary_accuracy,
    categorical_accuracy,
    mean_absolute_error,
    mean_squared_error,
)
from ferroptim.train.pretrain import pretrain_layerwise
from ferroptim.train.regularization import add_penalty_gradients, penalty
from ferroptim.train.sanity import OverfitReport, overfit_check
from ferroptim.train.transfer import (
    LoadReport,
    freeze_all_except,
    freeze_layers,
    load_npz_state_dict,
    trainable_names,
    unfreeze_layers,
)

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "FitState",
    "History",
    "LoadReport",
    "ModelAveraging",
    "ModelCheckpoint",
    "OverfitReport",
    "TerminateOnNaN",
    "add_penalty_gradients",
    "binary_accuracy",
    "categorical_accuracy",
    "cross_validate",
    "evaluate",
    "fit",
    "freeze_all_except",
    "freeze_layers",
    "load_npz_state_dict",
    "mean_absolute_error",
    "mean_squared_error",
    "overfit_check",
    "penalty",
    "predict",
    "pretrain_layerwise",
    "trainable_names",
    "unfreeze_layers",
]
