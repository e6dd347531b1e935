"""Verification on similarity scores: FAR/FRR, the ROC/DET curve, AUC, EER and thresholds at a FAR.

Scores are similarities: higher means more alike, and a comparison is accepted
when ``score >= threshold``. Genuine scores compare one person with themself,
impostor scores compare different people. The ``facerec eval`` CLI, the admin
FAR/FRR report and the training package all call these functions, so a number
means the same thing wherever it is printed.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.eval.results import Histogram, OperatingPoint, RocPoint
from app.eval.sorted_scores import SortedScores, allowed_errors, score_array, score_pair


def far_frr_at(genuine: ArrayLike, impostor: ArrayLike, threshold: float) -> tuple[float, float]:
    """(FAR, FRR) at one threshold: impostors accepted, genuine pairs rejected."""
    genuine_scores, impostor_scores = score_pair(genuine, impostor)
    t = genuine_scores.dtype.type(threshold)  # compare in the scores' own precision
    far = np.count_nonzero(impostor_scores >= t) / impostor_scores.size
    frr = np.count_nonzero(genuine_scores < t) / genuine_scores.size
    return float(far), float(frr)


def roc_points(genuine: ArrayLike, impostor: ArrayLike, max_points: int | None = None) -> list[RocPoint]:
    """Every distinct operating point, thresholds ascending (FAR falls, FRR rises).

    The first point accepts everything (FAR 1, FRR 0), the last rejects
    everything. ``max_points`` keeps both ends and samples the rest both evenly
    and log-spaced towards the low-FAR and low-FRR tails, so a log-axis DET plot
    stays resolved; every kept point lies exactly on the full curve.
    """
    scores = SortedScores(genuine, impostor)
    if max_points is not None and max_points < 2:
        raise ValueError("max_points must be at least 2 (the two ends of the curve)")
    if max_points is None or max_points > scores.genuine.size + scores.impostor.size:
        thresholds = scores.distinct_thresholds()
    else:
        per_side = (max_points - 2) // 2
        picks = [
            scores.impostor[_spread_indices(scores.impostor.size, per_side, tail_at_top=True)],
            scores.genuine[_spread_indices(scores.genuine.size, per_side, tail_at_top=False)],
            np.array([scores.lowest, scores.above_all], dtype=scores.dtype),
        ]
        thresholds = np.unique(np.concatenate(picks))  # (<= max_points,)
    far = scores.false_accepts(thresholds) / scores.impostor.size
    frr = scores.false_rejects(thresholds) / scores.genuine.size
    return [
        RocPoint(t, a, r) for t, a, r in zip(thresholds.tolist(), far.tolist(), frr.tolist(), strict=True)
    ]


def auc(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """P(random genuine > random impostor), ties counting half (Mann–Whitney U / (Ng * Ni))."""
    scores = SortedScores(genuine, impostor)
    below = np.searchsorted(scores.impostor, scores.genuine, side="left")  # (Ng,) impostors < g
    at_or_below = np.searchsorted(scores.impostor, scores.genuine, side="right")  # (Ng,) impostors <= g
    twice_u = int(below.sum(dtype=np.int64)) + int(at_or_below.sum(dtype=np.int64))
    return twice_u / (2 * scores.genuine.size * scores.impostor.size)


def eer(genuine: ArrayLike, impostor: ArrayLike) -> tuple[float, float]:
    """Equal error rate and its threshold.

    FAR and FRR are step functions, so they rarely meet exactly. Between the
    last operating point with FAR > FRR and the first with FAR <= FRR, the ROC
    is interpolated linearly (the rates reachable by mixing the two thresholds)
    and the EER is where that segment crosses FAR = FRR; the threshold is
    interpolated by the same fraction, which is a display value for the crossing.
    """
    scores = SortedScores(genuine, impostor)
    thresholds = scores.distinct_thresholds()

    def gap(index: int) -> float:  # FAR - FRR, non-increasing in the threshold
        far, frr = scores.rates(float(thresholds[index]))
        return far - frr

    # gap(0) = 1 (accept all) and gap(-1) = -1 (reject all), so a crossing exists.
    j = bisect.bisect_left(range(thresholds.size), True, key=lambda index: gap(index) <= 0)
    before, after = gap(j - 1), gap(j)
    fraction = before / (before - after)  # in (0, 1]
    far_before, _ = scores.rates(float(thresholds[j - 1]))
    far_after, _ = scores.rates(float(thresholds[j]))
    value = far_before + fraction * (far_after - far_before)
    low_t, high_t = float(thresholds[j - 1]), float(thresholds[j])
    return value, low_t + fraction * (high_t - low_t)


def threshold_at_far(genuine: ArrayLike, impostor: ArrayLike, target_far: float) -> OperatingPoint:
    """The smallest threshold whose FAR does not exceed ``target_far``, with confidence bounds."""
    return SortedScores(genuine, impostor).operating_point(target_far)


def calibrate_thresholds(
    genuine: ArrayLike, impostor: ArrayLike, fars: Sequence[float] = (1e-2, 1e-3, 1e-4, 1e-5)
) -> list[OperatingPoint]:
    """``threshold_at_far`` for several targets, sorting the scores once."""
    scores = SortedScores(genuine, impostor)
    return [scores.operating_point(far) for far in fars]


def tar_at_far(
    genuine: ArrayLike, impostor: ArrayLike, fars: Sequence[float] = (1e-1, 1e-2, 1e-3)
) -> dict[str, float | None]:
    """True accept rate at each FAR, keyed like ``"0.001"``.

    None where fewer than one false accept is expected (n_impostor * far < 1):
    the threshold would sit above every impostor and say nothing about the
    target. ``OperatingPoint.measurable`` is the stricter, 95%-confidence test.
    """
    scores = SortedScores(genuine, impostor)
    result: dict[str, float | None] = {}
    for far in fars:
        if allowed_errors(far, scores.impostor.size) == 0:
            result[f"{far:g}"] = None
        else:
            result[f"{far:g}"] = 1.0 - scores.operating_point(far).frr
    return result


def histogram(scores: ArrayLike, bins: int = 50, range: tuple[float, float] | None = None) -> Histogram:
    """Score histogram for plots (``range`` as in ``numpy.histogram``)."""
    counts, edges = np.histogram(score_array(scores, "scores"), bins=bins, range=range)
    return Histogram(edges.astype(np.float64), counts.astype(np.int64))


def _spread_indices(n: int, count: int, tail_at_top: bool) -> NDArray[np.int64]:
    """About ``count`` indices into n sorted scores: half even, half log-spaced from the tail."""
    even = np.linspace(0, n - 1, count - count // 2).round().astype(np.int64)
    from_tail = np.geomspace(1, n, count // 2).round().astype(np.int64)
    tail = n - from_tail if tail_at_top else from_tail - 1
    return np.unique(np.concatenate([even, tail]))
