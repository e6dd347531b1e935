"""Score sets shared by the eval tests; every figure on the small ones was worked out by hand."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

GENUINE = [0.6, 0.7, 0.8, 0.9]
IMPOSTOR = [0.1, 0.2, 0.65, 0.3]
TENTHS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]

# Five templates scored against each other, 1.0 against themselves: 0 a, 1 a, 2 b, 3 b, 4 c.
TEMPLATE_LABELS = ["a", "a", "b", "b", "c"]
TEMPLATE_SIMILARITY = np.array(
    [
        [1.0, 0.3, 0.6, 0.2, 0.1],
        [0.3, 1.0, 0.1, 0.2, 0.25],
        [0.6, 0.1, 1.0, 0.8, 0.3],
        [0.2, 0.2, 0.8, 1.0, 0.9],
        [0.1, 0.25, 0.3, 0.9, 1.0],
    ]
)  # (5, 5)


def random_scores(rng: np.random.Generator, dtype: type[np.floating], ties: bool) -> tuple[NDArray, NDArray]:
    """A few dozen genuine and up to 200 impostor scores, overlapping; rounded to tenths for ``ties``."""
    genuine = rng.normal(0.6, 0.2, int(rng.integers(1, 60))).astype(dtype)
    impostor = rng.normal(0.3, 0.2, int(rng.integers(1, 200))).astype(dtype)
    if ties:
        genuine, impostor = np.round(genuine, 1), np.round(impostor, 1)
    return genuine, impostor
