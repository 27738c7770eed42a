"""ferroptim.data image augmentation: invariants, reference results, seeding, state, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from ferroptim.data import (
    Compose,
    GaussianBlur,
    GaussianNoise,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRot90,
    RandomRotation,
    RandomVerticalFlip,
    gaussian_blur,
    gaussian_noise,
    random_brightness,
    random_contrast,
    random_crop,
    random_horizontal_flip,
    random_rot90,
    random_rotation,
    random_vertical_flip,
    rot90,
    rotate,
)

DTYPES = (np.float32, np.float64)

# every random augmentation as f(x, rng) with non-trivial parameters
RANDOM_OPS: dict[str, Callable[..., np.ndarray]] = {
    "hflip": lambda x, rng: random_horizontal_flip(x, 0.5, rng=rng),
    "vflip": lambda x, rng: random_vertical_flip(x, 0.5, rng=rng),
    "rot90": lambda x, rng: random_rot90(x, rng=rng),
    "rotation": lambda x, rng: random_rotation(x, 15.0, rng=rng),
    "crop": lambda x, rng: random_crop(x, (6, 6), padding=2, padding_mode="reflect", rng=rng),
    "brightness_add": lambda x, rng: random_brightness(x, 0.3, rng=rng),
    "brightness_mul": lambda x, rng: random_brightness(x, 0.3, mode="multiplicative", rng=rng),
    "contrast": lambda x, rng: random_contrast(x, 0.5, rng=rng),
    "noise": lambda x, rng: gaussian_noise(x, 0.1, rng=rng),
}


def _images(n: int = 16, c: int = 2, h: int = 6, w: int = 6, dtype=np.float64, seed: int = 0):
    return np.random.default_rng(seed).normal(size=(n, c, h, w)).astype(dtype)


# --- invariants shared by every op --------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_shape_dtype_input_untouched_and_seeding(name, dtype):
    op = RANDOM_OPS[name]
    x = _images(dtype=dtype)
    x.flags.writeable = False  # any write into the input would raise
    out = op(x, 0)
    assert out.shape == x.shape and out.dtype == dtype
    assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(out, op(x, 0))
    assert not np.array_equal(out, op(x, 1))
    gen = np.random.default_rng(3)  # a Generator advances: two calls differ
    assert not np.array_equal(op(x, gen), op(x, gen))


def test_gaussian_blur_dtype_and_input_untouched():
    for dtype in DTYPES:
        x = _images(dtype=dtype)
        x.flags.writeable = False
        out = gaussian_blur(x, 1.0)
        assert out.dtype == dtype and out.shape == x.shape
        assert not np.shares_memory(out, x)


# --- flips and quarter turns --------------------------------------------------------------------
def test_flips():
    x = _images()
    np.testing.assert_array_equal(random_horizontal_flip(x, 1.0, rng=0), x[..., ::-1])
    np.testing.assert_array_equal(random_vertical_flip(x, 1.0, rng=0), x[..., ::-1, :])
    np.testing.assert_array_equal(random_horizontal_flip(x, 0.0, rng=0), x)
    twice = random_horizontal_flip(random_horizontal_flip(x, 1.0, rng=0), 1.0, rng=1)
    np.testing.assert_array_equal(twice, x)
    out = random_horizontal_flip(x, 0.5, rng=5)
    flipped = np.all(out == x[..., ::-1], axis=(1, 2, 3))
    kept = np.all(out == x, axis=(1, 2, 3))
    assert (flipped | kept).all() and flipped.any() and kept.any()


def test_flip_probability():
    x = np.arange(4.0).reshape(1, 1, 1, 4).repeat(4000, axis=0)
    flipped = random_horizontal_flip(x, 0.3, rng=0)[:, 0, 0, 0] == 3.0
    assert abs(flipped.mean() - 0.3) < 0.03


def test_rot90_four_times_and_against_numpy():
    x = _images(n=8, h=5, w=5)
    k = np.array([0, 1, 2, 3, 1, 2, 3, 0])
    out = rot90(x, k)
    for i in range(len(x)):
        np.testing.assert_array_equal(out[i], np.rot90(x[i], k[i], axes=(1, 2)))
    once = x
    for _ in range(4):
        once = rot90(once, 1)
    np.testing.assert_array_equal(once, x)
    turned = random_rot90(x, rng=0)
    matches = [np.all(turned == rot90(x, q), axis=(1, 2, 3)) for q in range(4)]
    assert np.logical_or.reduce(matches).all()


# --- rotation -----------------------------------------------------------------------------------
def test_rotate_identity_and_quarter_turns():
    x = _images(h=7, w=7)
    np.testing.assert_array_equal(rotate(x, 0.0), x)
    np.testing.assert_array_equal(random_rotation(x, 0.0, rng=0), x)
    for k in (1, 2, 3):
        np.testing.assert_allclose(rotate(x, 90.0 * k), rot90(x, k), atol=1e-12)
    np.testing.assert_allclose(rotate(x, 360.0), x, atol=1e-12)


def test_rotate_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _images(n=4, h=7, w=9)
    angles = np.array([25.0, -10.0, 3.5, 170.0])
    out = rotate(x, angles)
    for i, angle in enumerate(angles):
        expected = ndimage.rotate(
            x[i], angle, axes=(1, 2), reshape=False, order=1, mode="grid-constant", cval=0.0
        )
        np.testing.assert_allclose(out[i], expected, atol=1e-12)


def test_rotate_fill_and_angle_range():
    ones = np.ones((5, 1, 6, 6))
    np.testing.assert_allclose(rotate(ones, 33.0, fill=1.0), 1.0, atol=1e-12)  # weights sum to 1
    corner = rotate(ones, 45.0)[:, 0, 0, 0]
    assert (corner < 1.0).all()  # corners rotate in from outside
    # angles stay within +-degrees: the centre of a dot image moves by at most that angle
    x = np.zeros((200, 1, 21, 21))
    x[:, 0, 10, 18] = 1.0  # a dot 8 pixels right of the centre
    out = random_rotation(x, 20.0, rng=0)
    rows, cols = np.meshgrid(np.arange(21) - 10.0, np.arange(21) - 10.0, indexing="ij")
    angle = np.degrees(np.arctan2(-(out[:, 0] * rows).sum((1, 2)), (out[:, 0] * cols).sum((1, 2))))
    assert np.abs(angle).max() <= 20.5 and np.abs(angle).max() > 15.0


# --- crop ---------------------------------------------------------------------------------------
def test_crop_identity_without_padding():
    x = _images(h=5, w=7)
    np.testing.assert_array_equal(random_crop(x, (5, 7), rng=0), x)


@pytest.mark.parametrize(
    ("mode", "numpy_mode"), [("zeros", "constant"), ("reflect", "reflect"), ("replicate", "edge")]
)
def test_crop_is_a_window_of_the_padded_image(mode, numpy_mode):
    x = _images(n=6, h=5, w=5)
    out = random_crop(x, (4, 5), padding=2, padding_mode=mode, rng=1)
    assert out.shape == (6, 2, 4, 5)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), mode=numpy_mode)
    offsets = []
    for i in range(len(x)):
        found = [
            (top, left)
            for top in range(padded.shape[2] - 3)
            for left in range(padded.shape[3] - 4)
            if np.array_equal(out[i], padded[i, :, top : top + 4, left : left + 5])
        ]
        assert found, f"crop {i} is no window of its padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # offsets differ per image


# --- photometric --------------------------------------------------------------------------------
def test_brightness():
    x = _images(n=100)
    shift = random_brightness(x, 0.3, rng=0) - x
    per_image = shift[:, 0, 0, 0]
    np.testing.assert_allclose(shift, per_image[:, None, None, None] * np.ones_like(x))
    assert np.abs(per_image).max() <= 0.3 and per_image.std() > 0.1
    ratio = random_brightness(np.abs(x) + 1.0, 0.3, mode="multiplicative", rng=0) / (np.abs(x) + 1)
    assert np.allclose(ratio, ratio[:, :1, :1, :1])
    assert ratio.min() >= 0.7 - 1e-12 and ratio.max() <= 1.3 + 1e-12


def test_contrast_keeps_image_mean():
    x = _images(n=50)
    out = random_contrast(x, 0.5, rng=0)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3), keepdims=True), mean, atol=1e-12)
    factor = (out - mean) / (x - mean)
    np.testing.assert_allclose(factor, np.broadcast_to(factor[:, :1, :1, :1], x.shape))
    assert factor.min() >= 0.5 - 1e-9 and factor.max() <= 1.5 + 1e-9
    flat = random_contrast(x, 1.0, rng=0)
    assert flat.shape == x.shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_blur_constant_image_and_mean(dtype):
    x = np.full((3, 2, 6, 5), 2.5, dtype=dtype)
    for sigma in (0.5, 1.0, 3.0):  # radius up to 9, beyond the image size
        np.testing.assert_allclose(gaussian_blur(x, sigma), 2.5, rtol=1e-6)
    np.testing.assert_allclose(
        gaussian_blur(np.ones((2, 1, 1, 1), dtype=dtype), 2.0), 1.0, rtol=1e-6
    )


def test_blur_matches_scipy_and_per_image_sigma():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _images(n=3, h=7, w=9)
    for sigma in (1.0, 2.0):  # scipy's radius int(3 sigma + 0.5) equals ours for these
        expected = ndimage.gaussian_filter(x, (0, 0, sigma, sigma), mode="mirror", truncate=3.0)
        np.testing.assert_allclose(gaussian_blur(x, sigma), expected, atol=1e-12)
    sigmas = np.array([1.0, 2.0, 1.0])
    mixed = gaussian_blur(x, sigmas, kernel_size=13)
    np.testing.assert_allclose(mixed[1], gaussian_blur(x[1:2], 2.0)[0], atol=1e-12)
    blurred = gaussian_blur(x, 1.0)
    assert blurred.std() < x.std()  # smoother
    op = GaussianBlur((0.5, 2.0))
    assert op.kernel_size == 13
    a, b = op(x, np.random.default_rng(0)), op(x, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_noise_statistics(dtype):
    x = np.zeros((64, 3, 16, 16), dtype=dtype)
    noise = gaussian_noise(x, 0.2, rng=0)
    assert noise.dtype == dtype
    assert abs(noise.std() - 0.2) < 0.005 and abs(noise.mean()) < 0.005
    np.testing.assert_array_equal(gaussian_noise(x, 0.0, rng=0), x)


# --- Compose ------------------------------------------------------------------------------------
def _pipeline(seed):
    return Compose(
        [
            RandomCrop(8, padding=1, padding_mode="reflect"),
            RandomRotation(10.0),
            RandomHorizontalFlip(0.5),
            RandomVerticalFlip(0.2),
            RandomRot90(),
            GaussianBlur((0.3, 1.0)),
            RandomBrightness(0.1),
            RandomContrast(0.2),
            GaussianNoise(0.05),
        ],
        seed=seed,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_compose_seeded_and_untouched(dtype):
    x = _images(n=32, c=1, h=8, w=8, dtype=dtype)
    x.flags.writeable = False
    out = _pipeline(0)(x)
    assert out.shape == x.shape and out.dtype == dtype
    np.testing.assert_array_equal(out, _pipeline(0)(x))
    assert not np.array_equal(out, _pipeline(1)(x))
    augment = _pipeline(0)
    assert not np.array_equal(augment(x), augment(x))  # a new draw every call
    labels = np.arange(32)
    x_aug, y_aug = _pipeline(0)(x, labels)
    assert y_aug is labels
    np.testing.assert_array_equal(x_aug, out)
    copy = Compose([], seed=0)(x)
    np.testing.assert_array_equal(copy, x)
    assert not np.shares_memory(copy, x)


def test_compose_state_resume_is_exact():
    x = _images(n=10, c=1, h=8, w=8)
    augment = _pipeline(7)
    augment(x)
    state = json.loads(json.dumps(augment.state_dict()))
    expected = [augment(x) for _ in range(3)]
    resumed = _pipeline(123)
    resumed.load_state_dict(state)
    for want in expected:
        np.testing.assert_array_equal(resumed(x), want)


def test_compose_plain_function_transforms():
    x = _images(n=4)
    out = Compose([lambda images, rng: images * 2.0], seed=0)(x)
    np.testing.assert_array_equal(out, 2.0 * x)


# --- bad input ----------------------------------------------------------------------------------
def test_bad_images():
    with pytest.raises(TypeError, match="float32 or float64"):
        random_horizontal_flip(np.zeros((2, 1, 3, 3), dtype=np.int64), rng=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        gaussian_noise(np.zeros((2, 3, 3)), 0.1, rng=0)
    with pytest.raises(TypeError, match="numpy array"):
        Compose([GaussianNoise(0.1)], seed=0)([[[[1.0]]]])
    with pytest.raises(ValueError, match="square"):
        random_rot90(np.zeros((2, 1, 3, 4)), rng=0)
    with pytest.raises(ValueError, match="square"):
        rot90(np.zeros((2, 1, 3, 4)), 1)


def test_bad_parameters():
    x = _images(n=2)
    with pytest.raises(ValueError, match="p"):
        random_horizontal_flip(x, 1.5, rng=0)
    with pytest.raises(ValueError, match="p"):
        RandomVerticalFlip(-0.1)
    with pytest.raises(ValueError, match="degrees"):
        RandomRotation(-5.0)
    with pytest.raises(ValueError, match="degrees"):
        random_rotation(x, (10.0, -10.0), rng=0)
    with pytest.raises(ValueError, match="one per image"):
        rotate(x, [10.0, 20.0, 30.0])
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(x, [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="k must hold ints"):
        rot90(x, 1.0)
    with pytest.raises(ValueError, match="exceeds"):
        random_crop(x, 9, padding=1, rng=0)
    with pytest.raises(ValueError, match="padding_mode"):
        RandomCrop(4, padding=1, padding_mode="circular")
    with pytest.raises(ValueError, match="padding"):
        random_crop(x, 4, padding=-1, rng=0)
    with pytest.raises(TypeError, match="size"):
        RandomCrop(4.5)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(x, 0.0)
    with pytest.raises(ValueError, match="kernel_size"):
        gaussian_blur(x, 1.0, kernel_size=4)
    with pytest.raises(ValueError, match="kernel_size"):
        GaussianBlur(1.0, kernel_size=0)
    with pytest.raises(ValueError, match="std"):
        GaussianNoise(-1.0)
    with pytest.raises(ValueError, match="mode"):
        RandomBrightness(0.1, mode="gamma")
    with pytest.raises(TypeError, match="delta"):
        random_contrast(x, "0.2", rng=0)
    with pytest.raises(TypeError, match="rng"):
        gaussian_noise(x, 0.1, rng="seed")
    with pytest.raises(TypeError, match="transforms"):
        Compose([GaussianNoise(0.1), 3])
    augment = Compose([GaussianNoise(0.1)], seed=0)
    good = augment.state_dict()
    with pytest.raises(KeyError, match="rng"):
        augment.load_state_dict({"generator": good["rng"]})
    with pytest.raises(ValueError, match="bit generator"):
        augment.load_state_dict({"rng": {**good["rng"], "bit_generator": "Philox"}})
    with pytest.raises(ValueError, match="malformed"):
        augment.load_state_dict({"rng": {"bit_generator": "PCG64", "state": 5}})
    assert augment.state_dict() == good
