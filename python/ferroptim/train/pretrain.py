"""Greedy layer-wise pretraining: each weight layer trained as an autoencoder on the outputs of
the layers below it, before the whole network is fine-tuned (the guide's "pretraining + fine
tuning", as for deep belief nets / stacked autoencoders)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ferroptim.nn.container import Sequential
from ferroptim.nn.module import Module
from ferroptim.train._data import as_array, batch_size_arg, model_dtype
from ferroptim.train.evaluate import predict
from ferroptim.train.fit import fit
from ferroptim.train.history import History


def layer_blocks(layers: Iterable[Module]) -> tuple[list[Module], list[list[Module]]]:
    """Split a stack into ``(prefix, blocks)``: a block starts at each module owning a 2-D
    ``weight`` (a Linear layer, torch layout ``(out, in)``) and takes the parameter-free or
    normalization modules after it (activation, dropout, batch norm); ``prefix`` holds the
    modules before the first weight layer (e.g. a flatten)."""
    prefix: list[Module] = []
    blocks: list[list[Module]] = []
    for module in layers:
        if not isinstance(module, Module):
            raise TypeError(f"layers must be Modules, got {type(module).__name__}")
        weight = module._parameters.get("weight")
        if weight is not None and weight.ndim == 2:
            blocks.append([module])
        elif blocks:
            blocks[-1].append(module)
        else:
            prefix.append(module)
    return prefix, blocks


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
    """Greedy, unsupervised, layer-by-layer pretraining of a stack of Linear blocks.

    Block ``i`` (a Linear layer with the activation etc. that follow it, see
    :func:`layer_blocks`) is trained as the encoder of an autoencoder
    ``decoder_i(block_i(h_{i-1}))`` that reconstructs its input ``h_{i-1}`` under ``loss_fn``
    (mean squared error by default), where ``h_0`` is ``X`` after any leading parameter-free
    modules and ``h_i = block_i(h_{i-1})`` is computed in eval mode with the trained block. The
    decoder is thrown away; afterwards fine-tune the whole network with
    :func:`~ferroptim.train.fit`.

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
    """
    stack = list(layers)
    prefix, blocks = layer_blocks(stack)
    if not blocks:
        raise ValueError("pretrain_layerwise: layers contain no Linear (2-D weight) layer")
    epochs = batch_size_arg(epochs, "epochs")
    batch_size = batch_size_arg(batch_size)
    trained = blocks if pretrain_last else blocks[:-1]
    if not trained:
        raise ValueError("pretrain_layerwise: one weight layer only; pass pretrain_last=True")
    first = blocks[0][0]
    hidden = as_array(X, "X", model_dtype(first))
    if prefix:
        hidden = predict(Sequential(*prefix), hidden, batch_size=max(batch_size, 256))
    loss_fn = loss_fn if loss_fn is not None else _default_loss()
    histories = []
    for i, block in enumerate(trained):
        layer = block[0]
        decoder = (make_decoder or _default_decoder(seed, i))(layer)
        autoencoder = Sequential(*block, decoder)
        params = [p for m in [*block, decoder] for p in m.parameters()]
        optimizer = (make_optimizer or _default_optimizer)(params)
        history = fit(
            autoencoder,
            loss_fn,
            optimizer,
            hidden,
            hidden,
            epochs=epochs,
            batch_size=batch_size,
            seed=None if seed is None else seed + i,
            progress=progress,
            **fit_kwargs,
        )
        histories.append(history)
        hidden = predict(Sequential(*block), hidden, batch_size=max(batch_size, 256))
    return histories


def _default_decoder(seed: int | None, index: int) -> Callable[[Module], Module]:
    def build(layer: Module) -> Module:
        from ferroptim.nn.linear import Linear

        out_features, in_features = layer._parameters["weight"].shape
        rng = None if seed is None else np.random.default_rng([seed, index])
        return Linear(out_features, in_features, dtype=layer.dtype, rng=rng)

    return build


def _default_optimizer(params: list[np.ndarray]) -> Any:
    from ferroptim.optim import Adam

    return Adam(params, lr=1e-3)


def _default_loss() -> Any:
    from ferroptim.nn.loss import MSELoss

    return MSELoss()
