"""The array types every layer shares, so a shape comment and a type mean the same everywhere."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]
ImageArray = NDArray[np.uint8]  # (H, W, 3) RGB unless a name says otherwise
