"""Training an inverted-file index on a collection's own templates, and tuning it for recall.

``nlist`` grows with the square root of the collection (about 2·sqrt(N),
a power of two): at 1M templates 2,048 lists of about 500. K-means runs on
a sample of ``TRAIN_PER_LIST`` templates per list. ``nprobe`` is then the
smallest power of two whose recall@10 against exact search reaches
``TARGET_RECALL`` on ``TUNING_QUERIES`` of the collection's templates
(each searched for its neighbours other than itself), so the index keeps
what the collection's own data needs rather than a fixed guess.

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
    """An empty, trained ``IndexIVFFlat`` for these (N, D) vectors."""
    n, dim = vectors.shape
    nlist = list_count(n)
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False))]
    kmeans = faiss.Kmeans(
        dim, nlist, niter=KMEANS_ITERATIONS, seed=seed, spherical=metric == "cosine", verbose=False
    )
    kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
    return empty_ivf(np.asarray(kmeans.centroids, dtype=np.float32), metric)


def empty_ivf(centroids: FloatArray, metric: Metric) -> Any:
    """An ``IndexIVFFlat`` with these (nlist, D) centroids and no templates."""
    nlist, dim = centroids.shape
    quantizer = faiss.IndexFlat(dim, FAISS_METRIC[metric])
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, FAISS_METRIC[metric])
    index.own_fields = True
    quantizer.this.disown()  # type: ignore[attr-defined]  # the IVF index frees it
    # Templates are reconstructed by slot when the index is compacted or merged.
    index.make_direct_map()
    return index


def centroids_of(index: Any) -> FloatArray:
    """The (nlist, D) centroids of an ivf index."""
    return np.asarray(index.quantizer.reconstruct_n(0, index.nlist), dtype=np.float32)


def tune_nprobe(index: Any, vectors: FloatArray, metric: Metric, seed: int = 1234) -> tuple[int, float]:
    """The smallest power-of-two nprobe reaching ``TARGET_RECALL`` at 10, and the recall it reached.

    ``index`` holds ``vectors`` (N, D) in order (label i is row i). Queries
    are stored templates; each one's own label is left out of both lists.
    """
    n = len(vectors)
    if n <= TUNING_K + 1:
        return index.nlist, 1.0
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, TUNING_QUERIES), replace=False))
    queries = np.ascontiguousarray(vectors[rows])
    _, exact = faiss.knn(queries, vectors, TUNING_K + 1, metric=FAISS_METRIC[metric])  # (Q, k+1)
    truth = _without_self(exact, rows)
    nprobe, recall = 1, 0.0
    while True:
        params = faiss.SearchParametersIVF(nprobe=nprobe)  # type: ignore[call-arg]
        _, found = index.search(queries, TUNING_K + 1, params=params)
        recall = _recall(_without_self(found, rows), truth)
        if recall >= TARGET_RECALL or nprobe >= index.nlist:
            return min(nprobe, index.nlist), recall
        nprobe *= 2


def _without_self(labels: np.ndarray, rows: np.ndarray) -> list[set[int]]:
    """Each row's first ``TUNING_K`` labels other than the query's own."""
    return [
        set([label for label in row.tolist() if label != own and label >= 0][:TUNING_K])
        for row, own in zip(labels, rows.tolist(), strict=True)
    ]


def _recall(found: list[set[int]], truth: list[set[int]]) -> float:
    hits = sum(len(f & t) for f, t in zip(found, truth, strict=True))
    return hits / max(1, sum(len(t) for t in truth))
