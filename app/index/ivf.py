"""The ivf kind: an inverted file of 8-bit codes, re-ranked exactly, trained on the collection itself.

The index is FAISS's ``IndexRefineFlat`` around an ``IndexIVFScalarQuantizer``:
k-means centroids split the templates into ``nlist`` lists, each template
stored as 8 bits per dimension (a quarter of its float size, so a search
reads a quarter of the memory); a search scans the ``nprobe`` lists nearest
the query, keeps ``K_FACTOR`` times the asked-for number of candidates, and
scores those again on the exact vectors. Returned similarities are exact,
so thresholds read as with flat; only a neighbour in an unvisited list, or
ranked out by the codes' rounding, can be missed.

``nlist`` grows with the square root of the collection (about 2·sqrt(N), a
power of two: 2,048 lists at 1M). K-means runs on ``TRAIN_PER_LIST``
templates per list. ``nprobe`` is then the smallest (to an eighth of a power
of two) whose recall@10 against exact search reaches ``TARGET_RECALL`` on
``TUNING_QUERIES`` of the collection's templates, each searched for its
neighbours other than itself: what the collection's own data needs rather
than a fixed guess.

All vectors here are already prepared for the metric (``app.pipeline.similarity.prepare``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from app.core.arrays import FloatArray
from app.index.kinds import FAISS_METRIC
from app.pipeline.similarity import Metric

TRAIN_PER_LIST = 40
KMEANS_ITERATIONS = 12
K_FACTOR = 4
TUNING_QUERIES = 300
TUNING_K = 10
TARGET_RECALL = 0.995


@dataclass(frozen=True)
class IvfTuning:
    """How an ivf index was trained and what it searches with."""

    nlist: int
    nprobe: int
    trained_on: int  # templates in the collection when the centroids were trained
    recall_at_10: float  # measured at training, with nprobe


def list_count(templates: int) -> int:
    """About 2·sqrt(N) lists, as a power of two, between 16 and 16,384."""
    target = max(16.0, 2.0 * np.sqrt(max(templates, 1)))
    return int(min(16_384, 2 ** round(np.log2(target))))


def train_ivf(vectors: FloatArray, metric: Metric, seed: int = 1234) -> Any:
    """An empty index trained for these (N, D) vectors: centroids and code ranges."""
    n, dim = vectors.shape
    nlist = list_count(n)
    rng = np.random.default_rng(seed)
    sample = np.ascontiguousarray(
        vectors[np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False))], dtype=np.float32
    )
    kmeans = faiss.Kmeans(
        dim, nlist, niter=KMEANS_ITERATIONS, seed=seed, spherical=metric == "cosine", verbose=False
    )
    kmeans.train(sample)
    return empty_ivf(np.asarray(kmeans.centroids, dtype=np.float32), metric, sample)


def empty_ivf(centroids: FloatArray, metric: Metric, sample: FloatArray) -> Any:
    """An empty index with these (nlist, D) centroids, its 8-bit codes' ranges fitted to ``sample``."""
    nlist, dim = centroids.shape
    quantizer = faiss.IndexFlat(dim, FAISS_METRIC[metric])
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    coarse = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, FAISS_METRIC[metric]
    )
    coarse.own_fields = True
    quantizer.this.disown()  # type: ignore[attr-defined]  # the IVF index frees it
    coarse.train(np.ascontiguousarray(sample, dtype=np.float32))  # the code ranges; centroids stay
    index = faiss.IndexRefineFlat(coarse)
    index.own_fields = True
    coarse.this.disown()  # type: ignore[attr-defined]  # the refine index frees it
    index.k_factor = K_FACTOR
    return index


def inverted_file(index: Any) -> Any:
    """The IVF part of an ivf index (where ``nlist``, ``nprobe`` and the centroids live)."""
    return faiss.extract_index_ivf(index)


def set_nprobe(index: Any, nprobe: int) -> None:
    inverted_file(index).nprobe = nprobe


def centroids_of(index: Any) -> FloatArray:
    """The (nlist, D) centroids of an ivf index."""
    coarse = inverted_file(index)
    return np.asarray(coarse.quantizer.reconstruct_n(0, coarse.nlist), dtype=np.float32)


def tune_nprobe(index: Any, vectors: FloatArray, metric: Metric, seed: int = 1234) -> tuple[int, float]:
    """The smallest nprobe reaching ``TARGET_RECALL`` at 10, and the recall it reached; leaves it set.

    ``index`` holds ``vectors`` (N, D) in order (label i is row i). Queries
    are stored templates; each one's own label is left out of both lists.
    """
    nlist = inverted_file(index).nlist
    n = len(vectors)
    if n <= TUNING_K + 1:
        set_nprobe(index, nlist)
        return nlist, 1.0
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, TUNING_QUERIES), replace=False))
    queries = np.ascontiguousarray(vectors[rows])
    _, exact = faiss.knn(queries, vectors, TUNING_K + 1, metric=FAISS_METRIC[metric])  # (Q, k+1)
    truth = _without_self(exact, rows)

    def recall_at(nprobe: int) -> float:
        set_nprobe(index, nprobe)
        _, found = index.search(queries, TUNING_K + 1)
        return _recall(_without_self(found, rows), truth)

    # Doubling to the first power of two that reaches the target, then down in
    # eighths of it while the target still holds: a search costs what nprobe is.
    nprobe, recall = 1, recall_at(1)
    while recall < TARGET_RECALL and nprobe < nlist:
        nprobe = min(2 * nprobe, nlist)
        recall = recall_at(nprobe)
    step = max(1, nprobe // 8)
    while step < nprobe:
        lower = recall_at(nprobe - step)
        if lower < TARGET_RECALL:
            break
        nprobe, recall = nprobe - step, lower
    set_nprobe(index, nprobe)
    return nprobe, recall


def _without_self(labels: np.ndarray, rows: np.ndarray) -> list[set[int]]:
    """Each row's first ``TUNING_K`` labels other than the query's own."""
    return [
        set([label for label in row.tolist() if label != own and label >= 0][:TUNING_K])
        for row, own in zip(labels, rows.tolist(), strict=True)
    ]


def _recall(found: list[set[int]], truth: list[set[int]]) -> float:
    hits = sum(len(f & t) for f, t in zip(found, truth, strict=True))
    return hits / max(1, sum(len(t) for t in truth))
