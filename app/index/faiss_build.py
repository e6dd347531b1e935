"""Building a FAISS base of a given kind, and searching a base together with its delta.

Pure functions over FAISS objects: ``FaceIndex`` decides when to build and
holds the locks; everything here works on prepared vectors
(``app.pipeline.similarity.prepare``) and FAISS labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core.arrays import FloatArray, IntArray
from app.index import ivf
from app.index.kinds import IndexKind, new_flat, new_hnsw
from app.pipeline.similarity import Metric, l2_squared_to_similarity


@dataclass(frozen=True)
class BuildOptions:
    metric: Metric
    hnsw_m: int
    ef_construction: int


def build_base(
    kind: IndexKind,
    prepared: FloatArray,
    options: BuildOptions,
    centroids: FloatArray | None = None,
    tuning: ivf.IvfTuning | None = None,
) -> tuple[Any, ivf.IvfTuning | None]:
    """A CPU index of ``kind`` holding the (N, D) ``prepared`` vectors as labels 0..N-1.

    For ivf: with ``centroids`` and ``tuning`` of the index it replaces, those
    are kept (a merge or compaction); without, centroids are trained on these
    vectors and ``nprobe`` tuned for recall (``app.index.ivf``).
    """
    vectors = np.ascontiguousarray(prepared, dtype=np.float32)
    dim = vectors.shape[1]
    if kind == "ivf":
        if centroids is not None and tuning is not None:
            index = ivf.empty_ivf(centroids, options.metric, vectors[: ivf.TRAIN_PER_LIST * len(centroids)])
            index.add(vectors)
            ivf.set_nprobe(index, tuning.nprobe)
            return index, tuning
        index = ivf.train_ivf(vectors, options.metric)
        index.add(vectors)
        nprobe, recall = ivf.tune_nprobe(index, vectors, options.metric)
        nlist = ivf.inverted_file(index).nlist
        return index, ivf.IvfTuning(nlist, nprobe, len(vectors), round(recall, 4))
    if kind == "hnsw":
        index = new_hnsw(dim, options.metric, options.hnsw_m, options.ef_construction)
    else:
        index = new_flat(dim, options.metric)
    if len(vectors):
        index.add(vectors)
    return index, None


def search_parts(
    base: Any, delta: Any | None, base_slots: int, queries: FloatArray, k: int, metric: Metric, params: Any
) -> tuple[FloatArray, IntArray]:
    """The best k of base and delta together: similarities and slots (Q, k), fewer columns when both
    hold fewer than k; the delta's labels follow the base's ``base_slots``."""
    similarities, labels = _similarities(base, queries, min(k, base_slots), metric, params)
    if delta is not None and delta.ntotal:
        delta_sims, delta_labels = _similarities(delta, queries, min(k, delta.ntotal), metric)
        delta_labels = np.where(delta_labels >= 0, delta_labels + base_slots, -1)
        similarities = np.concatenate([similarities, delta_sims], axis=1)
        labels = np.concatenate([labels, delta_labels], axis=1)
        order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
        similarities = np.take_along_axis(similarities, order, axis=1)
        labels = np.take_along_axis(labels, order, axis=1)
    return similarities, labels


def _similarities(
    index: Any, queries: FloatArray, k: int, metric: Metric, params: Any = None
) -> tuple[FloatArray, IntArray]:
    if k <= 0:
        empty = (len(queries), 0)
        return np.full(empty, -np.inf, dtype=np.float32), np.full(empty, -1, dtype=np.int64)
    distances, labels = index.search(queries, k, params=params)  # (Q, k) each
    if metric == "cosine":
        similarities = np.asarray(distances, dtype=np.float32)
    else:
        similarities = l2_squared_to_similarity(distances)
    return similarities, np.asarray(labels, dtype=np.int64)
