"""Pair accuracy as the LFW protocol measures it: one threshold per fold, learnt on the other folds.

Scores and the acceptance rule (``score >= threshold``) are those of
``app.eval.verification``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.eval.results import AccuracyResult
from app.eval.sorted_scores import SortedScores, score_array

# Thresholds scored at once: each needs a few counts, and a large impostor set
# has tens of millions of distinct thresholds.
_THRESHOLD_CHUNK = 1 << 22


def best_accuracy_threshold(genuine: ArrayLike, impostor: ArrayLike) -> tuple[float, float]:
    """(threshold, accuracy) maximising pair accuracy; the lowest such threshold wins ties.

    The threshold is placed halfway between the best operating point's score
    and the next lower score, so that it does not sit on a training score.
    """
    scores = SortedScores(genuine, impostor)
    thresholds = scores.distinct_thresholds()
    best_index, best_correct = 0, -1
    for start in range(0, thresholds.size, _THRESHOLD_CHUNK):
        chunk = thresholds[start : start + _THRESHOLD_CHUNK]  # (C,)
        correct = scores.impostor.size - scores.false_accepts(chunk)  # (C,) impostors rejected
        correct += scores.genuine.size - scores.false_rejects(chunk)  # (C,) + genuine accepted
        index = int(np.argmax(correct))
        if correct[index] > best_correct:
            best_index, best_correct = start + index, int(correct[index])
    accuracy = best_correct / (scores.genuine.size + scores.impostor.size)
    if best_index == 0:
        return float(thresholds[0]), accuracy
    low, high = thresholds[best_index - 1], thresholds[best_index]
    middle = low + (high - low) / 2
    return float(middle if middle > low else high), accuracy


def kfold_accuracy(
    scores: ArrayLike,
    labels: ArrayLike,
    folds: Sequence[NDArray[np.integer[Any]]] | int = 10,
    seed: int = 0,
) -> AccuracyResult:
    """The LFW protocol: each fold is scored at the best threshold of the other folds.

    ``labels`` is True for genuine pairs. An int ``folds`` shuffles each class
    with ``seed`` and deals it round-robin, so every fold gets both classes.
    """
    all_scores = score_array(scores, "scores")
    same = np.asarray(labels, dtype=bool)  # (N,)
    if same.shape != all_scores.shape:
        raise ValueError(f"{same.size} labels for {all_scores.size} scores")
    if isinstance(folds, int):
        fold_indices = _deal_folds(same, folds, seed)
    else:
        fold_indices = [np.asarray(f, dtype=np.int64) for f in folds]
    if len(fold_indices) < 2:
        raise ValueError("k-fold accuracy needs at least 2 folds")
    per_fold: list[float] = []
    thresholds: list[float] = []
    for held_out in range(len(fold_indices)):
        train = np.concatenate([f for i, f in enumerate(fold_indices) if i != held_out])
        test = fold_indices[held_out]
        if test.size == 0:
            raise ValueError(f"fold {held_out} is empty")
        train_scores, train_same = all_scores[train], same[train]
        threshold, _ = best_accuracy_threshold(train_scores[train_same], train_scores[~train_same])
        accepted = all_scores[test] >= all_scores.dtype.type(threshold)  # (T,)
        per_fold.append(float(np.mean(accepted == same[test])))
        thresholds.append(threshold)
    return AccuracyResult(
        float(np.mean(per_fold)), float(np.std(per_fold)), tuple(per_fold), tuple(thresholds)
    )


def _deal_folds(same: NDArray[np.bool_], n_folds: int, seed: int) -> list[NDArray[np.int64]]:
    """Shuffle each class with ``seed`` and deal it round-robin into ``n_folds`` folds."""
    rng = np.random.default_rng(seed)
    dealt = [rng.permutation(np.flatnonzero(cls)) for cls in (same, ~same)]
    return [np.sort(np.concatenate([indices[f::n_folds] for indices in dealt])) for f in range(n_folds)]
