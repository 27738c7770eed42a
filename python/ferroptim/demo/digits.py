"""The digits task shared by the demo and the comparisons: data, split, standardization, models.

scikit-learn's bundled digits (1797 grey 8x8 images of 0-9, values 0-16) need no network. The
held-out test set (20%, stratified) is never seen during training or early stopping; a
validation set for early stopping is carved out of the training part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferroptim import data, nn, train


@dataclass(frozen=True)
class DigitsSplit:
    """Standardized NCHW images (float32) and integer labels of each part."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_nchw() -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: the 1797 digits as float64 ``(N, 1, 8, 8)`` in [0, 1] and int64 labels.

    Raises
    ------
    ImportError
        When scikit-learn (the ``demo`` extra) is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits demo needs scikit-learn: pip install 'ferroptim[demo]'"
        ) from exc
    bunch = load_digits()
    x = bunch.images.astype(np.float64)[:, None, :, :] / 16.0
    return x, bunch.target.astype(np.int64)


def split_digits(
    x: np.ndarray, y: np.ndarray, *, test_size: float = 0.2, val_size: float = 0.1, seed: int = 0
) -> DigitsSplit:
    """Stratified train/test split, then a stratified validation part of the training set;
    every part standardized with one mean and standard deviation fitted on training pixels only."""
    x_fit, x_test, y_fit, y_test = data.train_test_split(
        x, y, test_size=test_size, stratify=y, seed=seed
    )
    x_train, x_val, y_train, y_val = data.train_test_split(
        x_fit, y_fit, test_size=val_size, stratify=y_fit, seed=seed + 1
    )
    scaler = data.Standardizer(axis=(0, 2, 3)).fit(x_train)
    return DigitsSplit(
        scaler.transform(x_train),
        y_train,
        scaler.transform(x_val),
        y_val,
        scaler.transform(x_test),
        y_test,
    )


def small_cnn(
    *,
    batch_norm: bool = True,
    dropout: float = 0.25,
    activation: type[nn.Module] = nn.ReLU,
    init: str | None = None,
    seed: int = 0,
    conv_bias: bool = True,
) -> nn.Sequential:
    """Conv(1->16) [BN] act MaxPool -> Conv(16->32) [BN] act MaxPool -> Flatten -> Dropout ->
    Linear(128->10): about 6K parameters for 8x8 inputs. ``conv_bias=False``: convolutions
    without bias (see :func:`demo_cnn`)."""
    rng = np.random.default_rng(seed)

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=conv_bias, rng=rng, init=init)
        layers: list[nn.Module] = [conv]
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        return [*layers, activation(), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(1, 16),
        *block(16, 32),
        nn.Flatten(),
        nn.Dropout(dropout, seed=seed),
        nn.Linear(32 * 2 * 2, 10, rng=rng, init=init),
    )


def demo_cnn(seed: int = 0) -> nn.Sequential:
    """The demo's model: :func:`small_cnn` with BatchNorm and no bias in the convolutions before
    it (torch's ``bias=False`` practice). BatchNorm subtracts the batch mean, so such a bias has
    an exact gradient of zero: its computed gradient is rounding noise, which Adam-type
    optimizers normalize into steps of the learning rate's size. Two runs differing only in
    float rounding (one process against several ranks) would then walk apart."""
    return small_cnn(seed=seed, conv_bias=False)


def digits_augmenter(seed: int = 0) -> data.Compose:
    """Label-preserving augmentation for digits: small shifts and rotations, contrast and
    brightness jitter, pixel noise (no flips: a flipped digit is another symbol)."""
    return data.Compose(
        [
            data.RandomCrop(8, padding=1),
            data.RandomRotation(10.0),
            data.RandomBrightness(0.1),
            data.RandomContrast(0.1),
            data.GaussianNoise(0.05),
        ],
        seed=seed,
    )


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of correct argmax predictions (``ferroptim.train.predict``: eval mode, the
    caller's mode restored)."""
    return float(np.mean(np.argmax(train.predict(model, x), axis=1) == y))
