"""The toy data both versions train on: 4 classes in 20 features (NumPy only)."""

import numpy as np


def make_data(seed: int = 0, n: int = 2000) -> tuple[np.ndarray, ...]:
    """(X_train, y_train, X_val, y_val): float32 features, int64 labels, an 80/20 split."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20)).astype(np.float32)
    y = (X[:, :10].sum(1) > X[:, 10:].sum(1)).astype(np.int64) + 2 * (X[:, 0] > 0)
    cut = n * 4 // 5
    return X[:cut], y[:cut], X[cut:], y[cut:]
