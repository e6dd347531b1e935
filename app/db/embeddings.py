"""Embeddings on disk: little-endian float32 bytes, the same on every platform."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_STORED = np.dtype("<f4")


def embedding_to_bytes(embedding: npt.ArrayLike) -> bytes:
    """Encode a 1-D embedding; refuses NaN/inf, which would poison every later search."""
    vector = np.asarray(embedding, dtype=_STORED)
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"an embedding is a non-empty 1-D vector, got shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise ValueError("embedding has NaN or infinite values")
    return vector.tobytes()


def bytes_to_embedding(data: bytes, dim: int) -> npt.NDArray[np.float32]:
    """Decode ``dim`` float32 values into a writable native-order array."""
    if len(data) != dim * _STORED.itemsize:
        raise ValueError(f"expected {dim * _STORED.itemsize} bytes for {dim} floats, got {len(data)}")
    return np.frombuffer(data, dtype=_STORED).astype(np.float32)
