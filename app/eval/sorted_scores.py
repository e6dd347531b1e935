"""Score arrays checked and sorted once, and the rule that turns a target rate into a threshold.

Verification (``app.eval.verification``, ``app.eval.pair_accuracy``) and
open-set identification (``app.eval.identification``) share these, so a
threshold "for FAR 1e-3" and one "for FPIR 1e-2" are placed the same way.
Everything works on sorted copies (O(n log n), no Python loop over scores),
because impostor sets reach tens of millions of comparisons.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.eval.intervals import clopper_pearson_upper, min_comparisons, wilson_interval
from app.eval.results import OperatingPoint


class SortedScores:
    """Genuine and impostor scores sorted once, so each operating point is a binary search."""

    def __init__(self, genuine: ArrayLike, impostor: ArrayLike) -> None:
        genuine_scores, impostor_scores = score_pair(genuine, impostor)
        self.genuine = np.sort(genuine_scores)  # (Ng,)
        self.impostor = np.sort(impostor_scores)  # (Ni,)
        self.dtype = self.genuine.dtype
        self.lowest = min(self.genuine[0], self.impostor[0])
        self.above_all = np.nextafter(max(self.genuine[-1], self.impostor[-1]), self.dtype.type(np.inf))
        self._distinct: NDArray[np.floating[Any]] | None = None

    def false_accepts(self, thresholds: NDArray[np.floating[Any]]) -> NDArray[np.int64]:
        return self.impostor.size - np.searchsorted(self.impostor, thresholds, side="left")

    def false_rejects(self, thresholds: NDArray[np.floating[Any]]) -> NDArray[np.int64]:
        return np.searchsorted(self.genuine, thresholds, side="left")

    def rates(self, threshold: float) -> tuple[float, float]:
        t = np.array([threshold], dtype=self.dtype)  # (1,)
        return (
            int(self.false_accepts(t)[0]) / self.impostor.size,
            int(self.false_rejects(t)[0]) / self.genuine.size,
        )

    def distinct_thresholds(self) -> NDArray[np.floating[Any]]:
        """Every score value once, ascending, plus one above all: each is a distinct operating point."""
        if self._distinct is None:
            # The stable sort is a timsort: it merges the two sorted runs in linear time.
            merged = np.sort(np.concatenate([self.genuine, self.impostor]), kind="stable")  # (Ng + Ni,)
            new = np.empty(merged.size, dtype=bool)
            new[0] = True
            np.not_equal(merged[1:], merged[:-1], out=new[1:])
            self._distinct = np.append(merged[new], self.above_all)  # (M + 1,)
        return self._distinct

    def operating_point(self, target_far: float) -> OperatingPoint:
        n_imp, n_gen = self.impostor.size, self.genuine.size
        threshold = threshold_allowing(self.impostor, allowed_errors(target_far, n_imp), float(self.lowest))
        t = np.array([threshold], dtype=self.dtype)  # (1,)
        false_accepts = int(self.false_accepts(t)[0])
        false_rejects = int(self.false_rejects(t)[0])
        return OperatingPoint(
            target_far=target_far,
            threshold=threshold,
            far=false_accepts / n_imp,
            frr=false_rejects / n_gen,
            measurable=target_far > 0 and n_imp >= min_comparisons(target_far),
            far_upper_95=clopper_pearson_upper(false_accepts, n_imp),
            frr_ci95=wilson_interval(false_rejects, n_gen),
            false_accepts=false_accepts,
            impostor_comparisons=n_imp,
            false_rejects=false_rejects,
            genuine_comparisons=n_gen,
        )


def score_array(values: ArrayLike, name: str) -> NDArray[np.floating[Any]]:
    """A non-empty 1-D float array without NaN (a NaN would sort last and pass as the best score)."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def score_pair(
    genuine: ArrayLike, impostor: ArrayLike
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """Both score sets in one float dtype, copied only when the dtypes differ."""
    genuine_scores = score_array(genuine, "genuine scores")
    impostor_scores = score_array(impostor, "impostor scores")
    dtype = np.result_type(genuine_scores, impostor_scores)
    return genuine_scores.astype(dtype, copy=False), impostor_scores.astype(dtype, copy=False)


def allowed_errors(target_rate: float, n: int) -> int:
    """floor(target * n), forgiving float noise such as 0.29 * 100 = 28.999999999999996."""
    if not 0 <= target_rate <= 1:
        raise ValueError(f"target rate must be in [0, 1], got {target_rate}")
    return min(n, math.floor(target_rate * n * (1 + 1e-12)))


def threshold_allowing(sorted_scores: NDArray[np.floating[Any]], k: int, lowest: float) -> float:
    """Smallest threshold letting at most k of the ascending ``sorted_scores`` reach it.

    Just above the (k+1)-th largest score: tied scores there all fall below it,
    so the rate may undershoot the target but never exceeds it.
    """
    if k >= sorted_scores.size:
        return lowest
    kth = sorted_scores[sorted_scores.size - 1 - k]
    return float(np.nextafter(kth, sorted_scores.dtype.type(np.inf)))
