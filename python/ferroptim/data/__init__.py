"""Data utilities: standardization, mini-batching, train/test splits and K-fold, image augmentation.

Everything random owns a seeded :class:`numpy.random.Generator` whose state ``state_dict()``
returns as JSON-compatible data, so an interrupted run resumes with the same shuffles and
augmentations. Image functions take NCHW float32/float64 batches, keep their dtype, work on the
whole batch at once and never modify their input.
"""

from typing import TYPE_CHECKING

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

_LOADER_HINT = (
    "ferroptim has no dataset objects: pass the arrays to "
    "fo.data.BatchLoader(X, y, batch_size=64, shuffle=True), which yields (xb, yb) mini-batches"
)
#: torch.utils.data names a port reaches for, and what to use instead
_TORCH_NAMES = {
    "DataLoader": _LOADER_HINT,
    "Dataset": _LOADER_HINT,
    "TensorDataset": _LOADER_HINT,
    "random_split": "use fo.data.train_test_split(X, y, test_size=0.2)",
}


if not TYPE_CHECKING:  # hidden from type checkers, which keep reporting unknown names

    def __getattr__(name: str) -> object:
        hint = _TORCH_NAMES.get(name)
        if hint is not None:
            raise AttributeError(
                f"module 'ferroptim.data' has no attribute {name!r} (torch.utils.data's): {hint}"
            )
        raise AttributeError(f"module 'ferroptim.data' has no attribute {name!r}")
