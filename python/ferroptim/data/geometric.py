"""Geometric augmentations of NCHW float batches: flips, 90-degree turns, rotations, crops.

Every function returns a new array of the input's shape (crops: the crop size) and dtype and
never writes into its input. Random choices are drawn once per image from ``rng`` (``None``:
fresh entropy, an int seed, or a Generator) and applied to the whole batch at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim._checks import CLOSED_UNIT, check_real
from ferroptim.data._image_checks import (
    check_degrees,
    check_images,
    check_padding,
    check_size,
    per_image_values,
    uniform_per_image,
)
from ferroptim.data._random import as_generator

PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}


def _random_flip(x: Any, p: float, axis: int, rng: Any) -> np.ndarray:
    images = check_images(x)
    p = check_real("p", p, CLOSED_UNIT)
    flip = as_generator(rng, "rng").random(len(images)) < p
    out = images.copy()
    out[flip] = np.flip(images[flip], axis=axis)
    return out


def random_horizontal_flip(x: Any, p: float = 0.5, *, rng: Any = None) -> np.ndarray:
    """Mirror each image left-right (``out[..., w] = x[..., W-1-w]``) with probability ``p``."""
    return _random_flip(x, p, 3, rng)


def random_vertical_flip(x: Any, p: float = 0.5, *, rng: Any = None) -> np.ndarray:
    """Mirror each image top-bottom (``out[..., h, :] = x[..., H-1-h, :]``) with probability
    ``p``."""
    return _random_flip(x, p, 2, rng)


def rot90(x: Any, k: Any) -> np.ndarray:
    """Turn image ``i`` by ``k[i]`` quarter turns counter-clockwise (``np.rot90`` on axes 2, 3).

    ``k`` is an int or one int per image; only 0 and 2 are allowed for non-square images.
    """
    images = check_images(x)
    if np.asarray(k).dtype.kind not in "iu":
        raise TypeError(f"k must hold ints, got {k!r}")
    turns = per_image_values(k, len(images), "k", np.intp) % 4
    if images.shape[2] != images.shape[3] and (turns % 2 == 1).any():
        raise ValueError(f"odd quarter turns need square images, got shape {images.shape}")
    out = images.copy()
    for quarter in (1, 2, 3):  # one vectorized turn per distinct k
        chosen = turns == quarter
        out[chosen] = np.rot90(images[chosen], quarter, axes=(2, 3))
    return out


def random_rot90(x: Any, *, rng: Any = None) -> np.ndarray:
    """Turn each (square) image by ``k ~ U{0, 1, 2, 3}`` quarter turns counter-clockwise."""
    images = check_images(x)
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"random_rot90 needs square images, got shape {images.shape}")
    return rot90(images, as_generator(rng, "rng").integers(0, 4, size=len(images)))


def rotate(x: Any, degrees: Any, *, fill: float = 0.0) -> np.ndarray:
    """Rotate image ``i`` by ``degrees[i]`` counter-clockwise about its centre, bilinearly.

    With centre ``(cy, cx) = ((H-1)/2, (W-1)/2)``, offsets ``u = w - cx`` (right) and
    ``v = cy - h`` (up), output pixel ``(h, w)`` samples the input at
    ``u' = cos(t) u + sin(t) v``, ``v' = -sin(t) u + cos(t) v``, i.e. row ``cy - v'``, column
    ``cx + u'``, interpolating its 4 neighbours; neighbours outside the image count as
    ``fill``. ``degrees=0`` is the identity and ``90`` matches :func:`rot90` with ``k=1``.
    """
    images = check_images(x)
    n, c, h, w = images.shape
    angles = per_image_values(degrees, n, "degrees")
    if not np.isfinite(angles).all():
        raise ValueError("degrees must be finite")
    fill = check_real("fill", fill)
    theta = np.deg2rad(angles)[:, None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    u, v = cols - cx, cy - rows
    src_col = cx + (cos * u + sin * v)  # (N, H, W)
    src_row = cy - (-sin * u + cos * v)
    row0, col0 = np.floor(src_row), np.floor(src_col)
    frac_row, frac_col = src_row - row0, src_col - col0
    flat = images.reshape(n, c, h * w)
    out = np.zeros((n, c, h * w), dtype=images.dtype)
    outside_weight = np.zeros((n, h, w))
    for d_row, d_col in ((0, 0), (0, 1), (1, 0), (1, 1)):  # the 4 bilinear neighbours
        r, q = (row0 + d_row).astype(np.intp), (col0 + d_col).astype(np.intp)
        weight = (frac_row if d_row else 1.0 - frac_row) * (frac_col if d_col else 1.0 - frac_col)
        inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        index = np.clip(r, 0, h - 1) * w + np.clip(q, 0, w - 1)
        neighbour = np.take_along_axis(flat, index.reshape(n, 1, h * w), axis=2)
        inside_weight = np.where(inside, weight, 0.0).astype(images.dtype)
        out += neighbour * inside_weight.reshape(n, 1, h * w)
        outside_weight += np.where(inside, 0.0, weight)
    if fill != 0.0:
        out += (fill * outside_weight).astype(images.dtype).reshape(n, 1, h * w)
    return out.reshape(n, c, h, w)


def random_rotation(x: Any, degrees: Any, *, fill: float = 0.0, rng: Any = None) -> np.ndarray:
    """Rotate each image by an angle ``~ U(-degrees, degrees)`` (or ``U(lo, hi)`` for a pair);
    see :func:`rotate`."""
    images = check_images(x)
    lo, hi = check_degrees(degrees)
    return rotate(
        images, uniform_per_image(as_generator(rng, "rng"), (lo, hi), len(images)), fill=fill
    )


def random_crop(
    x: Any,
    size: Any,
    *,
    padding: int = 0,
    padding_mode: str = "zeros",
    rng: Any = None,
) -> np.ndarray:
    """Pad each side by ``padding`` pixels, then cut an ``(h, w)`` window at a uniformly random
    offset per image.

    ``padding_mode`` is ``"zeros"``, ``"reflect"`` (mirror without repeating the edge) or
    ``"replicate"`` (repeat the edge), as torch's ``Conv2d``. ``padding=0`` with the full image
    size is the identity. Raises ``ValueError`` when the window exceeds the padded image.
    """
    images = check_images(x)
    crop_h, crop_w = check_size("size", size)
    padding = check_padding(padding, padding_mode, PADDING_MODES)
    n, _, h, w = images.shape
    if crop_h > h + 2 * padding or crop_w > w + 2 * padding:
        raise ValueError(
            f"size {(crop_h, crop_w)} exceeds the padded image size "
            f"{(h + 2 * padding, w + 2 * padding)}"
        )
    generator = as_generator(rng, "rng")
    padded = images
    if padding:
        pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
        mode: Any = PADDING_MODES[padding_mode]  # a valid numpy.pad mode name
        padded = np.pad(images, pad, mode=mode)
    top = generator.integers(0, padded.shape[2] - crop_h + 1, size=n)
    left = generator.integers(0, padded.shape[3] - crop_w + 1, size=n)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (crop_h, crop_w), axis=(2, 3))
    # advanced indices split by a slice: their axis (N) comes first -> (N, C, crop_h, crop_w)
    return np.ascontiguousarray(windows[np.arange(n), :, top, left])
