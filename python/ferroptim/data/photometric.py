"""Photometric augmentations of NCHW float batches: brightness, contrast, blur, noise.

Every function returns a new array of the input's shape and dtype (computed in that dtype) and
never writes into its input. Values are not clipped: inputs are floats of any range. Random
factors are drawn once per image from ``rng`` (``None``, an int seed or a Generator).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferroptim._checks import NON_NEGATIVE, check_real
from ferroptim.data._image_checks import (
    check_images,
    check_kernel_size,
    per_image,
    per_image_values,
    uniform_per_image,
)
from ferroptim.data._random import as_generator

BRIGHTNESS_MODES = ("additive", "multiplicative")


def _factor_bounds(delta: float) -> tuple[float, float]:
    """``(max(0, 1 - delta), 1 + delta)``: the range of a multiplicative jitter."""
    return max(0.0, 1.0 - delta), 1.0 + delta


def random_brightness(
    x: Any, delta: float, *, mode: str = "additive", rng: Any = None
) -> np.ndarray:
    """Shift or scale each image's brightness by a random amount.

    ``"additive"``: ``out = x + b`` with ``b ~ U(-delta, delta)``;
    ``"multiplicative"``: ``out = x * f`` with ``f ~ U(max(0, 1 - delta), 1 + delta)``.
    """
    images = check_images(x)
    delta = check_real("delta", delta, NON_NEGATIVE)
    if mode not in BRIGHTNESS_MODES:
        raise ValueError(f"mode must be one of {BRIGHTNESS_MODES}, got {mode!r}")
    generator = as_generator(rng, "rng")
    if mode == "additive":
        shift = uniform_per_image(generator, (-delta, delta), len(images))
        return images + per_image(shift, images.dtype)
    factor = uniform_per_image(generator, _factor_bounds(delta), len(images))
    return images * per_image(factor, images.dtype)


def random_contrast(x: Any, delta: float, *, rng: Any = None) -> np.ndarray:
    """Scale each image's contrast about its mean: ``out = m + f * (x - m)``, where ``m`` is the
    image's mean over channels and pixels and ``f ~ U(max(0, 1 - delta), 1 + delta)``.

    The per-image mean is unchanged (up to rounding); ``f = 0`` gives a flat image.
    """
    images = check_images(x)
    delta = check_real("delta", delta, NON_NEGATIVE)
    factor = uniform_per_image(as_generator(rng, "rng"), _factor_bounds(delta), len(images))
    mean = images.mean(axis=(1, 2, 3), dtype=np.float64)
    mean = per_image(mean, images.dtype)
    return mean + per_image(factor, images.dtype) * (images - mean)


def gaussian_kernel_size(sigma: float) -> int:
    """The default odd kernel size, ``2 * ceil(3 * sigma) + 1`` (covers +-3 sigma)."""
    return 2 * math.ceil(3.0 * sigma) + 1


def _gaussian_weights(sigmas: np.ndarray, radius: int) -> np.ndarray:
    """Normalized 1-D Gaussian taps ``exp(-t^2 / (2 sigma^2)) / sum``, ``t = -radius..radius``,
    one row per sigma: shape ``(len(sigmas), 2 * radius + 1)``."""
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-(taps[None, :] ** 2) / (2.0 * sigmas[:, None] ** 2))
    return weights / weights.sum(axis=1, keepdims=True)


def _convolve_axis(images: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Correlate every image along ``axis`` (2 or 3) with its own row of ``weights``, using
    reflect padding (mirror without repeating the edge), so the size is kept."""
    radius = (weights.shape[1] - 1) // 2
    pad = [(0, 0)] * 4
    pad[axis] = (radius, radius)
    padded = np.pad(images, pad, mode="reflect" if images.shape[axis] > 1 else "edge")
    length = images.shape[axis]
    out = np.zeros_like(images)
    for tap in range(weights.shape[1]):  # one shifted, weighted copy per kernel tap
        window = [slice(None)] * 4
        window[axis] = slice(tap, tap + length)
        out += per_image(weights[:, tap], images.dtype) * padded[tuple(window)]
    return out


def gaussian_blur(x: Any, sigma: Any, *, kernel_size: int | None = None) -> np.ndarray:
    """Blur with a separable Gaussian: rows, then columns, with reflect padding.

    ``out = K_sigma (*) x`` with the 1-D kernel ``k[t] ~ exp(-t^2 / (2 sigma^2))`` normalized to
    sum 1, so a constant image is unchanged. ``sigma`` is a positive float or one per image;
    ``kernel_size`` (odd) defaults to ``2 * ceil(3 * max(sigma)) + 1``.
    """
    images = check_images(x)
    sigmas = per_image_values(sigma, len(images), "sigma")
    if not (np.isfinite(sigmas).all() and (sigmas > 0).all()):
        raise ValueError(f"sigma must be positive and finite, got {sigma!r}")
    if kernel_size is None:
        kernel_size = gaussian_kernel_size(float(sigmas.max(initial=1.0)))
    weights = _gaussian_weights(sigmas, check_kernel_size(kernel_size) // 2)
    return _convolve_axis(_convolve_axis(images, weights, 2), weights, 3)


def gaussian_noise(x: Any, std: float, *, rng: Any = None) -> np.ndarray:
    """Add independent noise to every element: ``out = x + std * e``, ``e ~ N(0, 1)``, drawn in
    the input's dtype."""
    images = check_images(x)
    std = check_real("std", std, NON_NEGATIVE)
    noise = as_generator(rng, "rng").standard_normal(images.shape, dtype=images.dtype)
    noise *= images.dtype.type(std)
    return images + noise
