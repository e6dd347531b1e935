"""Genuine and impostor scores from labelled templates (an enrolled gallery or a folder-per-identity set).

Genuine pairs are every pair of one identity's templates. Impostor pairs are
every cross-identity pair while there are at most ``max_impostor`` of them;
beyond that, a uniform random sample (with replacement) of that size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.pipeline.similarity import Metric, paired_similarity, pairwise_similarity

# Similarities computed per block, so memory stays at a few million floats.
_BLOCK_ELEMENTS = 1 << 22

ProgressFn = Callable[[int], None]


@dataclass(frozen=True, eq=False)
class PairScores:
    genuine: NDArray[np.float64]  # (Ng,)
    impostor: NDArray[np.float64]  # (Ni,)
    impostor_total: int  # cross-identity pairs that exist
    impostor_sampled: bool

    @property
    def comparisons(self) -> int:
        return int(self.genuine.size + self.impostor.size)


def count_pairs(labels: NDArray[Any]) -> tuple[int, int]:
    """(genuine pairs, impostor pairs) that ``labels`` allow, without computing any score."""
    _, per_identity = np.unique(labels, return_counts=True)
    n = int(labels.size)
    genuine = int(sum(int(k) * (int(k) - 1) // 2 for k in per_identity))
    return genuine, n * (n - 1) // 2 - genuine


def template_pair_scores(
    vectors: NDArray[np.float32],
    labels: NDArray[Any],
    metric: Metric,
    *,
    max_impostor: int,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> PairScores:
    """Scores of ``vectors`` (N, D) labelled by ``labels`` (N,); ``progress`` gets comparisons done."""
    genuine_total, impostor_total = count_pairs(labels)
    if impostor_total <= max_impostor:
        genuine, impostor = _all_pairs(vectors, labels, metric, progress)
        return PairScores(genuine, impostor, impostor_total, impostor_sampled=False)
    genuine = _genuine_pairs(vectors, labels, metric)
    if progress is not None:
        progress(genuine.size)
    impostor = _sampled_impostors(vectors, labels, metric, max_impostor, seed, genuine.size, progress)
    return PairScores(genuine, impostor, impostor_total, impostor_sampled=True)


def _all_pairs(
    vectors: NDArray[np.float32], labels: NDArray[Any], metric: Metric, progress: ProgressFn | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    n = vectors.shape[0]
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    genuine: list[NDArray[np.float64]] = []
    impostor: list[NDArray[np.float64]] = []
    done = 0
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        block = pairwise_similarity(vectors[start:stop], vectors, metric).astype(np.float64)  # (R, N)
        upper = np.arange(n)[None, :] > np.arange(start, stop)[:, None]  # (R, N) each pair once
        same = labels[start:stop, None] == labels[None, :]  # (R, N)
        genuine.append(block[upper & same])
        impostor.append(block[upper & ~same])
        done += int(np.count_nonzero(upper))
        if progress is not None:
            progress(done)
    return np.concatenate(genuine), np.concatenate(impostor)


def _genuine_pairs(vectors: NDArray[np.float32], labels: NDArray[Any], metric: Metric) -> NDArray[np.float64]:
    scores: list[NDArray[np.float64]] = []
    _, ids = np.unique(labels, return_inverse=True)
    order = np.argsort(ids, kind="stable")
    bounds = np.flatnonzero(np.r_[True, ids[order][1:] != ids[order][:-1], True])
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        members = vectors[order[begin:end]]  # (K, D)
        if members.shape[0] < 2:
            continue
        block = pairwise_similarity(members, members, metric).astype(np.float64)  # (K, K)
        scores.append(block[np.triu_indices(members.shape[0], k=1)])
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float64)


def _sampled_impostors(
    vectors: NDArray[np.float32],
    labels: NDArray[Any],
    metric: Metric,
    count: int,
    seed: int,
    done_before: int,
    progress: ProgressFn | None,
) -> NDArray[np.float64]:
    """``count`` cross-identity pairs drawn uniformly: uniform ordered pairs, keeping the cross ones."""
    rng = np.random.default_rng(seed)
    n = vectors.shape[0]
    scores = np.empty(count, dtype=np.float64)  # (count,)
    filled = 0
    while filled < count:
        want = min(count - filled, _BLOCK_ELEMENTS // 8)
        a = rng.integers(0, n, size=2 * want)
        b = rng.integers(0, n, size=2 * want)
        keep = np.flatnonzero(labels[a] != labels[b])[:want]
        taken = keep.size
        scores[filled : filled + taken] = paired_similarity(vectors[a[keep]], vectors[b[keep]], metric)
        filled += taken
        if progress is not None:
            progress(done_before + filled)
    return scores
