"""Data utilities: standardization, mini-batching, train/test splits and K-fold, image augmentation.

Everything random owns a seeded :class:`numpy.random.Generator` whose state ``state_dict()``
returns as JSON-compatible data, so an interrupted run resumes with the same shuffles and
augmentations. Image functions take NCHW float32/float64 batches, keep their dtype, work on the
whole batch at once and never modify their input.
"""

from ferroptim.data.augment import (
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
)
from ferroptim.data.batching import BatchLoader, iterate_minibatches
from ferroptim.data.distributed_sampler import DistributedSampler
from ferroptim.data.geometric import (
    random_crop,
    random_horizontal_flip,
    random_rot90,
    random_rotation,
    random_vertical_flip,
    rot90,
    rotate,
)
from ferroptim.data.photometric import (
    gaussian_blur,
    gaussian_noise,
    random_brightness,
    random_contrast,
)
from ferroptim.data.preprocessing import Standardizer
from ferroptim.data.splits import KFold, StratifiedKFold, train_test_split

__all__ = [
    "BatchLoader",
    "Compose",
    "DistributedSampler",
    "GaussianBlur",
    "GaussianNoise",
    "KFold",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomRot90",
    "RandomRotation",
    "RandomVerticalFlip",
    "Standardizer",
    "StratifiedKFold",
    "gaussian_blur",
    "gaussian_noise",
    "iterate_minibatches",
    "random_brightness",
    "random_contrast",
    "random_crop",
    "random_horizontal_flip",
    "random_rot90",
    "random_rotation",
    "random_vertical_flip",
    "rot90",
    "rotate",
    "train_test_split",
]
