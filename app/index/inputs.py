"""Checking what callers hand an index, the same way for every engine."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from app.core.arrays import FloatArray, IntArray
from app.pipeline.similarity import Metric, prepare


def checked_templates(
    face_ids: ArrayLike, subject_ids: ArrayLike, embeddings: ArrayLike, dim: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """(N,) face ids, (N,) subject ids and (N, dim) finite embeddings, or ValueError."""
    ids = np.asarray(face_ids, dtype=np.int64).reshape(-1)
    subjects = np.asarray(subject_ids, dtype=np.int64).reshape(-1)
    vectors = np.asarray(embeddings, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape != (len(ids), dim) or len(subjects) != len(ids):
        raise ValueError(
            f"expected N ids, N subjects and (N, {dim}) embeddings; got {len(ids)}, "
            f"{len(subjects)} and {vectors.shape}"
        )
    if (ids < 0).any():
        raise ValueError("face ids must be non-negative")
    if not np.isfinite(vectors).all():
        raise ValueError("embeddings must be finite")
    return ids, subjects, vectors


def last_occurrences(ids: IntArray) -> IntArray:
    """Positions of the last occurrence of each id, in input order (the last add wins)."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    return np.sort(len(ids) - 1 - first_in_reversed)


def prepared_queries(queries: ArrayLike, dim: int, metric: Metric) -> FloatArray:
    """(Q, dim) finite queries prepared for ``metric``, C-contiguous, or ValueError."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must be (Q, {dim}), got {q.shape}")
    if not np.isfinite(q).all():
        raise ValueError("queries must be finite")
    return np.ascontiguousarray(prepare(q, metric))  # (Q, D)
