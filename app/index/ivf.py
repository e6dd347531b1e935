"""The ivf kind: an inverted file of 4-bit codes, re-ranked exactly, trained on the collection itself.

The index is FAISS's ``IndexRefineFlat`` around an ``IndexIVFPQFastScan``:
k-means centroids split the templates into ``nlist`` lists, and each
template's residual from its centroid is stored as product-quantiser codes,
4 bits per pair of dimensions (a sixteenth of its float size), which FAISS
scans from SIMD registers (fast scan); a search scans the ``nprobe`` lists
nearest the query, keeps ``K_FACTOR`` times the asked-for number of
candidates (at least ``RERANK_MIN``), and scores those again on the exact
vectors. Returned similarities are exact, so thresholds read as with flat;
only a neighbour in an unvisited list, or ranked out by the codes' rounding,
can be missed.

``nlist`` grows with the square root of the collection (about 2·sqrt(N), a
power of two: 2,048 lists at 1M). K-means runs on ``TRAIN_PER_LIST``
templates per list. ``nprobe`` is then the smallest (to an eighth of a power
of two) whose recall@10 against exact search reaches ``TARGET_RECALL`` on
``TUNING_QUERIES`` of the collection's templates, each searched for its
neighbours other than itself: what the collection's own data needs rather
than a fixed guess.

Why these codes: on 1M of the default model's templates (``bench/scale_bench.py``'s
gallery), 8-bit scalar codes (the kind before) and these reach the same
recall@10 at each ``nprobe`` (what is missed lies in unvisited lists), and
the scan is what costs. One query, one thread, nprobe 320 of 2,048, on an
AVX2 EPYC: 8-bit codes with 4× re-ranking p50 8.2 / p99 12.7 ms, these with
8× re-ranking 2.3 / 2.9 ms, recall@10 on the probes 0.9955 for both (6×
re-ranking: 0.9942). The 4-bit codes blur near neighbours more: the
collection's stored templates as queries (k = 11, at nprobe 320) reached
recall 0.949 with 88 candidates re-ranked, 0.993 with 256, 0.996 with 512
and 0.9967 with 1,024 (all there is in those lists), hence ``RERANK_MIN``.

Why ``TARGET_RECALL`` is 0.998: what a user loses is an enrolled person a
search does not return. In that gallery, with every other LFW image of an
enrolled person as a probe (7,484; exact search has the person in its top
10 subjects for 6,261), the lists at nprobe 320 (what 0.995 tuned) lost 10
of those 6,261 (0.16 %; 4 of them rank-1 mates), 384 lost 3, 448 lost 1 and
512 none. 0.998, on ``TUNING_QUERIES`` = 1,000 (its standard error about
0.0005), tuned 448 there.

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
CODE_BITS = 4  # per product-quantiser sub-vector: what FAISS's fast scan reads
KMEANS_ITERATIONS = 12
K_FACTOR = 8
RERANK_MIN = 512  # candidates re-ranked per query at least: a small k gets as deep a look
TUNING_QUERIES = 1000
TUNING_K = 10
TARGET_RECALL = 0.998


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


def code_pairs(dim: int) -> int:
    """Product-quantiser sub-vectors for ``dim`` dimensions: one per pair (per dimension when odd)."""
    return dim // 2 if dim % 2 == 0 else dim


def empty_ivf(centroids: FloatArray, metric: Metric, sample: FloatArray) -> Any:
    """An empty index with these (nlist, D) centroids, its codebooks trained on ``sample``'s residuals."""
    nlist, dim = centroids.shape
    quantizer = faiss.IndexFlat(dim, FAISS_METRIC[metric])
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    coarse = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, code_pairs(dim), CODE_BITS, FAISS_METRIC[metric])
    coarse.own_fields = True
    quantizer.this.disown()  # type: ignore[attr-defined]  # the IVF index frees it
    coarse.train(np.ascontiguousarray(sample, dtype=np.float32))  # the codebooks; centroids stay
    index = faiss.IndexRefineFlat(coarse)
    index.own_fields = True
    coarse.this.disown()  # type: ignore[attr-defined]  # the refine index frees it
    index.k_factor = K_FACTOR
    return index


def search_parameters(k: int) -> Any:
    """Per-call parameters for a search of k: ``K_FACTOR``·k candidates re-ranked, at least ``RERANK_MIN``."""
    params = faiss.IndexRefineSearchParameters()
    params.k_factor = max(float(K_FACTOR), RERANK_MIN / max(k, 1))
    return params


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
        _, found = index.search(queries, TUNING_K + 1, params=search_parameters(TUNING_K + 1))
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
