"""History: the per-epoch logs of a training run (Keras' ``History``) and their plot."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ferroptim.train.callbacks import Callback

if TYPE_CHECKING:
    from ferroptim.optim.swa_utils import AveragedModel


class History(Callback):
    """Per-epoch metrics recorded by :func:`~ferroptim.train.fit`.

    Attributes
    ----------
    history : dict of str to list of float
        One list per log name (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``,
        ``time``...), one entry per completed epoch.
    epoch : list of int
        The 0-based indices of the recorded epochs.
    params : dict
        ``epochs`` and ``steps`` (optimizer steps per epoch) of the run.
    ema_model : AveragedModel or None
        The exponential moving average of the weights kept with ``fit(..., ema_decay=...)``.
    """

    def __init__(self) -> None:
        #: False on the ranks other than 0 of a data-parallel fit: :meth:`plot` writes nothing
        self.rank_zero = True
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = {}
        self.ema_model: AveragedModel | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.state is not None:
            self.params = {"epochs": self.state.epochs, "steps": self.state.steps_per_epoch}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)

    def __len__(self) -> int:
        return len(self.epoch)

    def __getitem__(self, name: str) -> list[float]:
        return self.history[name]

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, metrics={list(self.history)})"

    def plot(self, path: str | os.PathLike, *, title: str | None = None) -> None:
        """Write a PNG of the training curves: loss (and val_loss) in one panel and every other
        metric with its ``val_`` twin in the next (``lr`` and ``time`` are not drawn).

        Uses matplotlib's Agg canvas directly (no pyplot, so the caller's backend is untouched).
        After a data-parallel fit only rank 0 writes the file (every rank may call this).

        Raises
        ------
        ImportError
            If matplotlib is not installed (``pip install matplotlib``).
        ValueError
            If nothing has been recorded yet.
        """
        if not self.rank_zero:
            return
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError(
                "History.plot needs matplotlib; install it with `pip install matplotlib` "
                "(or ferroptim[demo])"
            ) from exc
        if not self.epoch:
            raise ValueError("History.plot: no epochs recorded")
        panels = ["loss"] + [
            name
            for name in self.history
            if name not in ("loss", "lr", "time") and not name.startswith("val_")
        ]
        panels = [name for name in panels if name in self.history or f"val_{name}" in self.history]
        figure = Figure(figsize=(5.0 * len(panels), 3.8), layout="constrained")
        FigureCanvasAgg(figure)
        epochs = [e + 1 for e in self.epoch]
        for index, name in enumerate(panels):
            axes = figure.add_subplot(1, len(panels), index + 1)
            for key, label in ((name, "train"), (f"val_{name}", "validation")):
                if key in self.history:
                    axes.plot(epochs, self.history[key], marker=".", label=label)
            axes.set_xlabel("epoch")
            axes.set_ylabel(name)
            axes.grid(alpha=0.3)
            axes.legend()
        if title:
            figure.suptitle(title)
        figure.savefig(os.fspath(path), format="png", dpi=100)
