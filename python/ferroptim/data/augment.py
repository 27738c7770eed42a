"""Composable, seeded image augmentation: transform objects and :class:`Compose`.

A transform is a callable ``t(x, rng) -> new array`` on an NCHW float batch that draws its
random choices from the generator it is given. :class:`Compose` owns that generator, runs its
transforms in order, and saves the generator state for an exact resume::

    augment = Compose([RandomCrop(8, padding=1), RandomRotation(10), GaussianNoise(0.05)], seed=0)
    for epoch in range(epochs):
        x_aug = augment(x_train)          # new array; x_train is untouched, labels unchanged
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ferroptim._checks import CLOSED_UNIT, NON_NEGATIVE, Range, check_real
from ferroptim.data import geometric, photometric
from ferroptim.data._image_checks import (
    check_degrees,
    check_images,
    check_kernel_size,
    check_padding,
    check_range,
    check_size,
)
from ferroptim.data._random import as_generator, generator_state, set_generator_state

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class _Transform:
    """A transform whose repr shows the constructor arguments it keeps (``_shown``), as
    ``Name(arg=value, ...)``."""

    _shown: tuple[str, ...] = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown)
        return f"{type(self).__name__}({args})"


class _RandomFlip(_Transform):
    """Mirror each image with probability ``p`` (default 0.5) along the subclass's axis."""

    _shown = ("p",)
    #: ``flip(x, p, rng=rng)`` of :mod:`ferroptim.data.geometric`
    _flip: Callable[..., np.ndarray]

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_real("p", p, CLOSED_UNIT)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return type(self)._flip(x, self.p, rng=rng)


class RandomHorizontalFlip(_RandomFlip):
    """Mirror each image left-right with probability ``p`` (default 0.5)."""

    _flip = staticmethod(geometric.random_horizontal_flip)


class RandomVerticalFlip(_RandomFlip):
    """Mirror each image top-bottom with probability ``p`` (default 0.5)."""

    _flip = staticmethod(geometric.random_vertical_flip)


class RandomRot90(_Transform):
    """Turn each square image by 0, 1, 2 or 3 quarter turns (uniformly)."""

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return geometric.random_rot90(x, rng=rng)


class RandomRotation(_Transform):
    """Rotate by an angle ``~ U(-degrees, degrees)`` (or ``U(lo, hi)``), bilinear, ``fill``
    outside (see :func:`ferroptim.data.geometric.rotate`)."""

    _shown = ("degrees", "fill")

    def __init__(self, degrees: Any, fill: float = 0.0) -> None:
        self.degrees = check_degrees(degrees)
        self.fill = check_real("fill", fill)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return geometric.random_rotation(x, self.degrees, fill=self.fill, rng=rng)


class RandomCrop(_Transform):
    """Pad by ``padding`` (``"zeros"``, ``"reflect"`` or ``"replicate"``), then crop ``size`` at a
    random offset per image (see :func:`ferroptim.data.geometric.random_crop`)."""

    _shown = ("size", "padding", "padding_mode")

    def __init__(self, size: Any, padding: int = 0, padding_mode: str = "zeros") -> None:
        self.size = check_size("size", size)
        self.padding = check_padding(padding, padding_mode, geometric.PADDING_MODES)
        self.padding_mode = padding_mode

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return geometric.random_crop(
            x, self.size, padding=self.padding, padding_mode=self.padding_mode, rng=rng
        )


class RandomBrightness(_Transform):
    """Additive (``x + U(-delta, delta)``) or multiplicative (``x * U(1 - delta, 1 + delta)``)
    brightness jitter per image."""

    _shown = ("delta", "mode")

    def __init__(self, delta: float, mode: str = "additive") -> None:
        self.delta = check_real("delta", delta, NON_NEGATIVE)
        if mode not in photometric.BRIGHTNESS_MODES:
            raise ValueError(f"mode must be one of {photometric.BRIGHTNESS_MODES}, got {mode!r}")
        self.mode = mode

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return photometric.random_brightness(x, self.delta, mode=self.mode, rng=rng)


class RandomContrast(_Transform):
    """Contrast jitter about each image's mean, factor ``~ U(max(0, 1 - delta), 1 + delta)``."""

    _shown = ("delta",)

    def __init__(self, delta: float) -> None:
        self.delta = check_real("delta", delta, NON_NEGATIVE)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return photometric.random_contrast(x, self.delta, rng=rng)


class GaussianBlur(_Transform):
    """Separable Gaussian blur; ``sigma`` is fixed, or a ``(lo, hi)`` range drawn per image.

    ``kernel_size`` (odd) defaults to ``2 * ceil(3 * max sigma) + 1``.
    """

    _shown = ("sigma", "kernel_size")

    def __init__(self, sigma: Any, kernel_size: int | None = None) -> None:
        self.sigma = check_range("sigma", sigma, Range(1e-6))
        if kernel_size is None:
            kernel_size = photometric.gaussian_kernel_size(self.sigma[1])
        self.kernel_size = check_kernel_size(kernel_size)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lo, hi = self.sigma
        sigmas = lo if lo == hi else rng.uniform(lo, hi, size=len(check_images(x)))
        return photometric.gaussian_blur(x, sigmas, kernel_size=self.kernel_size)


class GaussianNoise(_Transform):
    """Add ``N(0, std^2)`` noise to every element."""

    _shown = ("std",)

    def __init__(self, std: float) -> None:
        self.std = check_real("std", std, NON_NEGATIVE)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return photometric.gaussian_noise(x, self.std, rng=rng)


class Compose:
    """Apply ``transforms`` in order, all drawing from one owned, seeded generator.

    ``compose(x)`` returns a new array (``x`` itself is never modified); ``compose(x, y)``
    returns ``(new_x, y)`` with the labels passed through unchanged. Two composes with the
    same seed produce the same outputs call for call; :meth:`state_dict` captures the
    generator so a resumed run continues the same sequence.

    Parameters
    ----------
    transforms : sequence of callables ``t(x, rng) -> array``
        E.g. :class:`RandomCrop`, :class:`RandomRotation`, :class:`GaussianNoise`.
    seed : None, int or numpy Generator
        Seed of the owned generator (a Generator is used as is).
    """

    def __init__(self, transforms: Sequence[Transform], seed: Any = None) -> None:
        if isinstance(transforms, (str, bytes)) or not isinstance(transforms, Sequence):
            raise TypeError(
                f"transforms must be a list of callables, got {type(transforms).__name__}"
            )
        for i, transform in enumerate(transforms):
            if not callable(transform):
                raise TypeError(f"transforms[{i}] must be callable, got {transform!r}")
        self.transforms = list(transforms)
        self.rng = as_generator(seed, owner=self)

    def __call__(self, x: Any, y: Any = None) -> np.ndarray | tuple[np.ndarray, Any]:
        images = check_images(x)
        out = images.copy() if not self.transforms else images
        for transform in self.transforms:
            out = transform(out, self.rng)
        return out if y is None else (out, y)

    def state_dict(self) -> dict[str, Any]:
        """``{"rng": bit-generator state}`` (JSON-compatible)."""
        return {"rng": generator_state(self.rng)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (``KeyError`` for missing or unexpected keys)."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if set(state) != {"rng"}:
            raise KeyError(f"Compose state must have exactly the key 'rng', got {sorted(state)}")
        set_generator_state(self.rng, state["rng"], "Compose rng")

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"
