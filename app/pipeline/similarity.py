"""Similarity between embeddings, in the metric a model's manifest declares.

Whatever the metric, a similarity is "higher means more alike":

- ``cosine``: the cosine of the angle between the two embeddings, in [-1, 1].
- ``euclidean``: ``1 - d² / 2`` where ``d`` is the Euclidean distance between
  the raw (unnormalised) embeddings. For unit-length embeddings this equals
  the cosine, so thresholds of the two metrics read alike; for raw
  embeddings it keeps the information carried by their length.
- ``damped_euclidean``: the same on embeddings whose length is damped to
  its square root (``e / sqrt(|e|)``): halfway, on a log scale, between raw
  and unit length. For dlib's network, whose raw lengths carry some
  information but also noise, it beats both (see its manifest).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from app.core.arrays import FloatArray

Metric = Literal["cosine", "euclidean", "damped_euclidean"]


def l2_normalise(embeddings: FloatArray) -> FloatArray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def prepare(embeddings: FloatArray, metric: Metric) -> FloatArray:
    """The vectors an index stores for ``metric``: unit length, raw, or length damped to its square root.

    Every metric is then an inner product (cosine) or a squared L2 distance
    (both Euclidean kinds) between prepared vectors.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if metric == "cosine":
        return l2_normalise(x)
    if metric == "damped_euclidean":
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return (x / np.sqrt(np.maximum(norms, 1e-12))).astype(np.float32)
    return x


def pairwise_similarity(a: FloatArray, b: FloatArray, metric: Metric) -> FloatArray:
    """(N, D) × (M, D) → (N, M) similarities."""
    x = prepare(np.atleast_2d(a), metric)
    y = prepare(np.atleast_2d(b), metric)
    if metric == "cosine":
        return (x @ y.T).astype(np.float32)
    squared = (x**2).sum(axis=1)[:, None] + (y**2).sum(axis=1)[None, :] - 2.0 * (x @ y.T)  # (N, M)
    return (1.0 - np.maximum(squared, 0.0) / 2.0).astype(np.float32)


def paired_similarity(a: FloatArray, b: FloatArray, metric: Metric) -> FloatArray:
    """Row-by-row similarity of two (N, D) arrays → (N,)."""
    x = prepare(np.atleast_2d(a), metric)
    y = prepare(np.atleast_2d(b), metric)
    if metric == "cosine":
        return (x * y).sum(axis=1).astype(np.float32)
    return (1.0 - ((x - y) ** 2).sum(axis=1) / 2.0).astype(np.float32)


def l2_squared_to_similarity(distances: FloatArray) -> FloatArray:
    """Squared L2 distances (as FAISS returns them) → Euclidean-metric similarities."""
    return (1.0 - np.asarray(distances, dtype=np.float32) / 2.0).astype(np.float32)
