"""Greedy layer-wise pretraining: each Linear layer trained as an autoencoder on the outputs of
the layers below it, before the whole network is fine-tuned (the guide's "pretraining + fine
tuning", as for deep belief nets / stacked autoencoders). Nested Sequentials are expanded;
Conv2d and other non-Linear weight layers are not pretrained (a warning lists them)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferroptim.nn.container import Sequential
from ferroptim.nn.linear import Linear
from ferroptim.nn.module import Module
from ferroptim.train._data import as_array, batch_size_arg, model_dtype
from ferroptim.train.evaluate import predict
from ferroptim.train.fit import fit
from ferroptim.train.history import History


@dataclass
class Segment:
    """Consecutive modules of the flattened stack: a Linear block (``linear``: a Linear layer
    and the activation / dropout / normalization modules after it) or a fixed part (modules
    before the first Linear, or a non-Linear weight layer and what follows it)."""

    linear: bool
    modules: list[Module] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def flatten_layers(layers: Iterable[Module]) -> list[tuple[str, Module]]:
    """``(name, module)`` for every module of ``layers`` with nested ``Sequential`` containers
    expanded, depth first. Names follow ``named_modules`` for a ``Sequential`` (``"1.0"``) and
    read ``"layers[1].0"`` for a list."""
    if isinstance(layers, Sequential):
        top = list(layers.named_children())
    else:
        top = [(f"layers[{i}]", module) for i, module in enumerate(layers)]
    flat: list[tuple[str, Module]] = []
    for name, module in top:
        if not isinstance(module, Module):
            raise TypeError(f"layers must be Modules, got {type(module).__name__} at {name}")
        if isinstance(module, Sequential):
            flat.extend((f"{name}.{sub}", m) for sub, m in flatten_layers(module))
        else:
            flat.append((name, module))
    return flat


def _is_weight_layer(module: Module) -> bool:
    """Holds a parameter with two or more axes (Linear, Conv2d, Embedding, LSTM, a residual
    block around them...), as opposed
    to parameter-free modules and per-feature normalization scales and shifts."""
    return any(p.ndim >= 2 for p in module.parameters())


def split_segments(layers: Iterable[Module]) -> list[Segment]:
    """The flattened stack (see :func:`flatten_layers`) cut into :class:`Segment` s: a Linear
    block starts at every ``Linear``; a fixed segment at the start of the stack and at every
    other weight layer (``Conv2d``, ``Embedding``, ``LSTM``, a residual block...), which are
    not pretrained."""
    segments: list[Segment] = []
    for name, module in flatten_layers(layers):
        if isinstance(module, Linear):
            segments.append(Segment(True))
        elif _is_weight_layer(module) or not segments:
            if not segments or segments[-1].linear:
                segments.append(Segment(False))
        segments[-1].modules.append(module)
        segments[-1].names.append(name)
    return segments


def _not_pretrained(segments: list[Segment]) -> list[str]:
    """``"name (Type)"`` of every module with parameters in a fixed segment."""
    return [
        f"{name} ({type(module).__name__})"
        for segment in segments
        if not segment.linear
        for name, module in zip(segment.names, segment.modules, strict=True)
        if module.parameters()
    ]


def pretrain_layerwise(
    layers: Iterable[Module],
    X: Any,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    pretrain_last: bool = False,
    make_decoder: Callable[[Module], Module] | None = None,
    make_optimizer: Callable[[list[np.ndarray]], Any] | None = None,
    loss_fn: Any = None,
    seed: int | None = 0,
    progress: bool = False,
    **fit_kwargs: Any,
) -> list[History]:
    """Greedy, unsupervised, layer-by-layer pretraining of the Linear blocks of a stack.

    Block ``i`` (a Linear layer with the activation etc. that follow it, see
    :func:`split_segments`) is trained as the encoder of an autoencoder
    ``decoder_i(block_i(h_{i-1}))`` that reconstructs its input ``h_{i-1}`` under ``loss_fn``
    (mean squared error by default), where ``h_0`` is ``X`` after any leading fixed modules and
    ``h_i`` is computed in eval mode through the trained block (and any fixed modules between
    it and the next block). The decoder is thrown away; afterwards fine-tune the whole network
    with :func:`~ferroptim.train.fit`.

    Only ``Linear`` layers are pretrained. Nested ``Sequential`` containers are expanded, so
    ``[Sequential(Linear, ReLU), Sequential(Linear, ReLU), Linear]`` has three blocks. Other
    weight layers (``Conv2d``, ``Embedding``, ``LSTM``, residual blocks...) and the modules
    up to the next Linear keep their weights: they act as fixed transforms of the data the
    blocks after them see. A ``UserWarning`` lists them (by name, e.g. ``"0 (Conv2d)"``).

    Parameters
    ----------
    layers : Sequential or iterable of Module
        The network, in order; its blocks are trained in place.
    X : array_like
        Unlabelled inputs.
    epochs, batch_size : int
        Per block, as for :func:`~ferroptim.train.fit`.
    pretrain_last : bool
        Also pretrain the last block (usually the output layer, left to fine-tuning).
    make_decoder : callable, optional
        ``make_decoder(linear) -> Module`` mapping the block's output back to its input size.
        Default: ``Linear(out_features, in_features)`` in the layer's dtype.
    make_optimizer : callable, optional
        ``make_optimizer(params) -> optimizer`` for the encoder + decoder parameters.
        Default: ``Adam(params, lr=1e-3)``.
    loss_fn : object, optional
        Reconstruction loss (default ``ferroptim.nn.loss.MSELoss()``).
    seed : int, optional
        Seeds the default decoders' initialization and the shuffling (``seed + i``).
    progress : bool
    **fit_kwargs
        Passed to :func:`~ferroptim.train.fit` (``l1``, ``l2``, ``callbacks``...).

    Returns
    -------
    list of History
        One per pretrained block (``history.history["loss"]`` is its reconstruction loss).

    Raises
    ------
    ValueError
        Nothing to pretrain: no Linear layer, or a single one without ``pretrain_last`` (the
        message says which, and lists the weight layers that are not pretrained).
    TypeError
        An item of ``layers`` that is not a Module.
    """
    segments = split_segments(layers)
    epochs = batch_size_arg(epochs, "epochs")
    batch_size = batch_size_arg(batch_size)
    blocks = [i for i, segment in enumerate(segments) if segment.linear]
    trained = blocks if pretrain_last else blocks[:-1]
    skipped = _not_pretrained(segments)
    note = f"; not pretrained (not Linear): {', '.join(skipped)}" if skipped else ""
    if not blocks:
        raise ValueError(
            "pretrain_layerwise: nothing to pretrain: layers contain no Linear layer (only "
            f"Linear layers are pretrained){note}"
        )
    if not trained:
        raise ValueError(
            f"pretrain_layerwise: nothing to pretrain: the only Linear layer, "
            f"{segments[blocks[0]].names[0]}, is the last one (the output layer, left to "
            f"fine-tuning); pass pretrain_last=True to pretrain it{note}"
        )
    if skipped:
        warnings.warn(
            f"pretrain_layerwise: only Linear layers are pretrained; {', '.join(skipped)} keep "
            "their weights (fixed transforms of the data the later blocks see)",
            UserWarning,
            stacklevel=2,
        )
    first = next(m for s in segments for m in s.modules if m.parameters())
    hidden = as_array(X, "X", model_dtype(first))
    loss_fn = loss_fn if loss_fn is not None else _default_loss()
    eval_batch = max(batch_size, 256)
    histories: list[Any] = []
    for position, segment in enumerate(segments[: trained[-1] + 1]):
        if position in trained:
            histories.append(
                _pretrain_block(
                    segment.modules,
                    hidden,
                    loss_fn,
                    make_decoder or _default_decoder(seed, len(histories)),
                    make_optimizer or _default_optimizer,
                    epochs=epochs,
                    batch_size=batch_size,
                    seed=None if seed is None else seed + len(histories),
                    progress=progress,
                    **fit_kwargs,
                )
            )
        if position < trained[-1]:
            hidden = predict(Sequential(*segment.modules), hidden, batch_size=eval_batch)
    return histories


def _pretrain_block(
    block: list[Module],
    hidden: np.ndarray,
    loss_fn: Any,
    make_decoder: Callable[[Module], Module],
    make_optimizer: Callable[[list[np.ndarray]], Any],
    **fit_kwargs: Any,
) -> History:
    """Train ``block`` (a Linear layer first) as the encoder of an autoencoder of ``hidden``."""
    decoder = make_decoder(block[0])
    autoencoder = Sequential(*block, decoder)
    params = [p for m in [*block, decoder] for p in m.parameters()]
    return fit(autoencoder, loss_fn, make_optimizer(params), hidden, hidden, **fit_kwargs)


def _default_decoder(seed: int | None, index: int) -> Callable[[Module], Module]:
    def build(layer: Module) -> Module:
        from ferroptim.nn.linear import Linear

        out_features, in_features = layer._parameters["weight"].shape
        rng = None if seed is None else np.random.default_rng([seed, index])
        return Linear(out_features, in_features, dtype=layer.dtype, rng=rng)

    return build


def _default_optimizer(params: list[np.ndarray]) -> Any:
    from ferroptim.optim import OPTIMIZER_CLASSES

    return OPTIMIZER_CLASSES["Adam"](params, lr=1e-3)


def _default_loss() -> Any:
    from ferroptim.nn.loss import MSELoss

    return MSELoss()
