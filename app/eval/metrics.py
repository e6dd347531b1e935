"""Verification and identification metrics on similarity scores.

Scores are similarities: higher means more alike, and a comparison is accepted
when ``score >= threshold``. Genuine scores compare one person with themself,
impostor scores compare different people. The ``facerec eval`` CLI, the admin
FAR/FRR report and the training package all call these functions, so a number
means the same thing wherever it is printed.

Everything works on sorted copies of the scores (O(n log n), no Python loop over
scores), because impostor sets reach tens of millions of comparisons.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Rows of a similarity matrix handled at once, so identification on a big
# gallery never holds more than a few million extra floats.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class RocPoint:
    """FAR and FRR when accepting ``score >= threshold``."""

    threshold: float
    far: float
    frr: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold chosen for a target FAR, with what the data can and cannot claim about it.

    ``measurable`` is False when even zero false accepts among this many impostor
    comparisons could not show FAR <= target at 95% confidence (see
    ``min_comparisons``); the threshold is then only a guess.
    """

    target_far: float
    threshold: float
    far: float
    frr: float
    measurable: bool
    far_upper_95: float  # exact one-sided Clopper–Pearson bound on the observed FAR
    frr_ci95: tuple[float, float]  # Wilson interval on the observed FRR
    false_accepts: int
    impostor_comparisons: int
    false_rejects: int
    genuine_comparisons: int

    def describe(self) -> str:
        """One line for reports, stating the bound the data supports."""
        fa, n_imp = self.false_accepts, self.impostor_comparisons
        if self.target_far <= 0:
            return f"FAR 0 cannot be demonstrated; {fa} false accepts in {n_imp:,} comparisons"
        if not self.measurable:
            return (
                f"FAR {self.target_far:.0e} is not measurable: {fa} false accepts in {n_imp:,} impostor "
                f"comparisons only show FAR < {self.far_upper_95:.1e} (95%, one-sided); "
                f"at least {min_comparisons(self.target_far):,} comparisons are needed"
            )
        low, high = self.frr_ci95
        return (
            f"threshold {self.threshold:.4f} for FAR <= {self.target_far:.0e}: observed FAR {self.far:.1e} "
            f"({fa}/{n_imp:,}, FAR < {self.far_upper_95:.1e} at 95%), FRR {self.frr:.2%} "
            f"(95% CI {low:.2%}-{high:.2%}, {self.false_rejects}/{self.genuine_comparisons:,})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AccuracyResult:
    """Cross-validated pair accuracy: each fold tested at a threshold learnt on the others."""

    mean: float
    std: float  # population std over folds, as the LFW protocol reports it
    per_fold: tuple[float, ...]
    thresholds: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OpenSetPoint:
    """FNIR at the threshold that keeps the non-mated false-positive rate at or below ``fpir``."""

    fpir: float
    threshold: float
    fnir: float
    measurable: bool  # same rule as OperatingPoint, over non-mated probes
    observed_fpir: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LeaveOneOutCmc:
    """CMC with every template probed against all the others; ``cmc`` is empty when nothing was probed."""

    cmc: dict[int, float]
    probes: int
    skipped: int  # templates whose identity has no other template

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)  # arrays have no single truth value
class Histogram:
    """Bin edges (bins + 1) and counts (bins), for score-distribution plots."""

    edges: NDArray[np.float64]
    counts: NDArray[np.int64]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist()}


# --------------------------------------------------------------------------- intervals


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; sane at k = 0 or k = n, unlike Wald."""
    _check_counts(k, n)
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """Exact one-sided upper bound on a rate after k events in n trials.

    It is the p at which P(X <= k | n, p) = 1 - confidence: any larger rate
    would rarely produce so few events. Found by geometric bisection on the
    binomial lower tail, summed in log space, to ~1e-12 relative.
    """
    _check_counts(k, n)
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    if k == n:
        return 1.0
    log_alpha = math.log(1 - confidence)
    if k == 0:
        return -math.expm1(log_alpha / n)  # 1 - alpha**(1/n), without cancellation

    # Below the mean the terms fall off at least like exp(-d^2 / 2k) going down
    # from k, so 60 sqrt(k) of them hold the tail to far below double precision.
    window = min(k, math.ceil(60 * math.sqrt(k)) + 2)
    j = np.arange(k, k - window, -1, dtype=np.float64)  # (W,) steps j -> j - 1
    p_free_steps = np.concatenate([[0.0], np.cumsum(np.log(j / (n - j + 1)))])  # (W + 1,)
    steps = np.arange(window + 1, dtype=np.float64)  # (W + 1,)
    log_choose = _log_binomial_coefficient(n, k)

    def log_lower_tail(p: float) -> float:
        log_terms = p_free_steps + steps * (math.log1p(-p) - math.log(p))  # (W + 1,)
        top = float(log_terms.max())
        log_pmf_k = log_choose + k * math.log(p) + (n - k) * math.log1p(-p)
        return log_pmf_k + top + math.log(float(np.exp(log_terms - top).sum()))

    # At p = k/n the median is k, so the tail is >= 1/2 > alpha: a valid lower end.
    low, high = k / n, 1.0
    while high - low > 1e-13 * high:
        mid = math.sqrt(low * high)
        if log_lower_tail(mid) > log_alpha:
            low = mid
        else:
            high = mid
    return high


def min_comparisons(target_rate: float, confidence: float = 0.95) -> int:
    """Fewest trials in which zero errors would show the rate is below ``target_rate``.

    This is the measurability rule: with fewer, even a perfect result leaves a
    Clopper–Pearson upper bound above the target (about 3 / target at 95%).
    """
    if not 0 < target_rate <= 1:
        raise ValueError(f"target rate must be in (0, 1], got {target_rate}")
    n = max(1, math.ceil(math.log(1 - confidence) / math.log1p(-target_rate))) if target_rate < 1 else 1
    # The closed form is exact; these steps only absorb its rounding at the boundary.
    while n > 1 and clopper_pearson_upper(0, n - 1, confidence) <= target_rate:
        n -= 1
    while clopper_pearson_upper(0, n, confidence) > target_rate:
        n += 1
    return n


# --------------------------------------------------------------------------- verification


def far_frr_at(genuine: ArrayLike, impostor: ArrayLike, threshold: float) -> tuple[float, float]:
    """(FAR, FRR) at one threshold: impostors accepted, genuine pairs rejected."""
    genuine_scores, impostor_scores = _score_pair(genuine, impostor)
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
    scores = _SortedScores(genuine, impostor)
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
    scores = _SortedScores(genuine, impostor)
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
    scores = _SortedScores(genuine, impostor)
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
    return _SortedScores(genuine, impostor).operating_point(target_far)


def calibrate_thresholds(
    genuine: ArrayLike, impostor: ArrayLike, fars: Sequence[float] = (1e-2, 1e-3, 1e-4, 1e-5)
) -> list[OperatingPoint]:
    """``threshold_at_far`` for several targets, sorting the scores once."""
    scores = _SortedScores(genuine, impostor)
    return [scores.operating_point(far) for far in fars]


def tar_at_far(
    genuine: ArrayLike, impostor: ArrayLike, fars: Sequence[float] = (1e-1, 1e-2, 1e-3)
) -> dict[str, float | None]:
    """True accept rate at each FAR, keyed like ``"0.001"``.

    None where fewer than one false accept is expected (n_impostor * far < 1):
    the threshold would sit above every impostor and say nothing about the
    target. ``OperatingPoint.measurable`` is the stricter, 95%-confidence test.
    """
    scores = _SortedScores(genuine, impostor)
    result: dict[str, float | None] = {}
    for far in fars:
        if _allowed_errors(far, scores.impostor.size) == 0:
            result[f"{far:g}"] = None
        else:
            result[f"{far:g}"] = 1.0 - scores.operating_point(far).frr
    return result


def best_accuracy_threshold(genuine: ArrayLike, impostor: ArrayLike) -> tuple[float, float]:
    """(threshold, accuracy) maximising pair accuracy; the lowest such threshold wins ties.

    The threshold is placed halfway between the best operating point's score
    and the next lower score, so that it does not sit on a training score.
    """
    scores = _SortedScores(genuine, impostor)
    thresholds = scores.distinct_thresholds()
    best_index, best_correct = 0, -1
    for start in range(0, thresholds.size, _CHUNK_ELEMENTS):
        chunk = thresholds[start : start + _CHUNK_ELEMENTS]  # (C,)
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
    all_scores = _scores_1d(scores, "scores")
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


def histogram(scores: ArrayLike, bins: int = 50, range: tuple[float, float] | None = None) -> Histogram:
    """Score histogram for plots (``range`` as in ``numpy.histogram``)."""
    counts, edges = np.histogram(_scores_1d(scores, "scores"), bins=bins, range=range)
    return Histogram(edges.astype(np.float64), counts.astype(np.int64))


# --------------------------------------------------------------------------- identification


def cmc(
    similarity: ArrayLike,
    probe_labels: ArrayLike,
    gallery_labels: ArrayLike,
    ranks: Sequence[int] = (1, 5, 10, 20),
) -> dict[int, float]:
    """Cumulative match characteristic over distinct gallery identities.

    Each identity scores its best template; a probe's rank counts the
    identities scoring at least as high as its own (ties count against it, so
    a model that scores everything alike does not look perfect). Every probe's
    identity must be in the gallery.
    """
    matrix = _similarity_matrix(similarity)
    gallery = _Gallery(gallery_labels, matrix.shape[1])
    probe_ids = gallery.ids_of(probe_labels, matrix.shape[0])
    found, _ = gallery.true_ranks(matrix, np.arange(matrix.shape[0]), probe_ids)
    return {rank: float(np.mean(found <= rank)) for rank in ranks}


def leave_one_out_cmc(
    similarity: ArrayLike, labels: ArrayLike, ranks: Sequence[int] = (1, 5, 10, 20)
) -> LeaveOneOutCmc:
    """CMC of an enrolled set against itself: each template probes all the others.

    ``similarity`` is the (N, N) template-vs-template matrix. Templates whose
    identity has no other template cannot be found and are skipped.
    """
    matrix = _similarity_matrix(similarity)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"leave-one-out needs a square similarity matrix, got {matrix.shape}")
    gallery = _Gallery(labels, matrix.shape[1])
    templates_per_identity = np.bincount(gallery.ids, minlength=gallery.identities.size)  # (I,)
    probes = np.flatnonzero(templates_per_identity[gallery.ids] > 1)  # (P,)
    skipped = matrix.shape[0] - probes.size
    if probes.size == 0:
        return LeaveOneOutCmc({}, 0, skipped)
    found, _ = gallery.true_ranks(matrix, probes, gallery.ids[probes], exclude_self=True)
    return LeaveOneOutCmc({rank: float(np.mean(found <= rank)) for rank in ranks}, int(probes.size), skipped)


def open_set(
    mated_similarity: ArrayLike,
    mated_labels: ArrayLike,
    nonmated_similarity: ArrayLike,
    gallery_labels: ArrayLike,
    fpirs: Sequence[float] = (0.1, 0.01),
) -> dict[str, OpenSetPoint]:
    """FNIR at FPIR for open-set identification, keyed like ``"0.01"``.

    The threshold is the smallest that lets at most ``fpir`` of the non-mated
    probes' top scores through. A mated probe is a hit only when its own
    identity ranks first and scores at least the threshold; FNIR is the misses.
    """
    mated = _similarity_matrix(mated_similarity)
    nonmated = _similarity_matrix(nonmated_similarity)
    if mated.shape[0] == 0:
        raise ValueError("open-set evaluation needs at least one mated probe")
    if nonmated.shape[0] == 0 or nonmated.shape[1] != mated.shape[1]:
        raise ValueError(f"non-mated similarity {nonmated.shape} does not fit gallery of {mated.shape[1]}")
    gallery = _Gallery(gallery_labels, mated.shape[1])
    probe_ids = gallery.ids_of(mated_labels, mated.shape[0])
    found, true_scores = gallery.true_ranks(mated, np.arange(mated.shape[0]), probe_ids)
    nonmated_top = np.sort(nonmated.max(axis=1))  # (Pn,)
    lowest = min(float(nonmated_top[0]), float(true_scores.min()))
    points: dict[str, OpenSetPoint] = {}
    for fpir in fpirs:
        threshold = _threshold_allowing(nonmated_top, _allowed_errors(fpir, nonmated_top.size), lowest)
        t = nonmated_top.dtype.type(threshold)
        hits = np.count_nonzero((found == 1) & (true_scores >= t))
        observed = (nonmated_top.size - np.searchsorted(nonmated_top, t, side="left")) / nonmated_top.size
        points[f"{fpir:g}"] = OpenSetPoint(
            fpir=fpir,
            threshold=threshold,
            fnir=1.0 - hits / mated.shape[0],
            measurable=fpir > 0 and nonmated_top.size >= min_comparisons(fpir),
            observed_fpir=float(observed),
        )
    return points


def open_set_rates(
    mated_similarity: ArrayLike,
    mated_labels: ArrayLike,
    nonmated_similarity: ArrayLike,
    gallery_labels: ArrayLike,
    threshold: float,
) -> tuple[float, float]:
    """(FNIR, FPIR) at one threshold, with ``open_set``'s hit rule (own identity first and >= threshold)."""
    mated = _similarity_matrix(mated_similarity)
    nonmated = _similarity_matrix(nonmated_similarity)
    if mated.shape[0] == 0 or nonmated.shape[0] == 0:
        raise ValueError("open-set rates need at least one mated and one non-mated probe")
    gallery = _Gallery(gallery_labels, mated.shape[1])
    probe_ids = gallery.ids_of(mated_labels, mated.shape[0])
    found, true_scores = gallery.true_ranks(mated, np.arange(mated.shape[0]), probe_ids)
    t = true_scores.dtype.type(threshold)
    hits = np.count_nonzero((found == 1) & (true_scores >= t))
    false_positives = np.count_nonzero(nonmated.max(axis=1) >= nonmated.dtype.type(threshold))
    return 1.0 - hits / mated.shape[0], false_positives / nonmated.shape[0]


# --------------------------------------------------------------------------- internals


class _SortedScores:
    """Genuine and impostor scores sorted once, so each operating point is a binary search."""

    def __init__(self, genuine: ArrayLike, impostor: ArrayLike) -> None:
        genuine_scores, impostor_scores = _score_pair(genuine, impostor)
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
        threshold = _threshold_allowing(self.impostor, _allowed_errors(target_far, n_imp), float(self.lowest))
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


class _Gallery:
    """Gallery columns grouped by identity, so best-template scores are one ``reduceat``."""

    def __init__(self, labels: ArrayLike, columns: int) -> None:
        label_array = np.asarray(labels)
        if label_array.shape != (columns,):
            raise ValueError(f"{label_array.size} gallery labels for {columns} gallery columns")
        self.identities, self.ids = np.unique(label_array, return_inverse=True)  # (I,), (G,)
        self.order = np.argsort(self.ids, kind="stable")  # (G,) columns grouped by identity
        self.position = np.empty_like(self.order)  # (G,) where each column lands in that order
        self.position[self.order] = np.arange(self.order.size)
        grouped = self.ids[self.order]
        self.starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])  # (I,)

    def ids_of(self, labels: ArrayLike, rows: int) -> NDArray[np.intp]:
        label_array = np.asarray(labels)
        if label_array.shape != (rows,):
            raise ValueError(f"{label_array.size} probe labels for {rows} probe rows")
        ids = np.searchsorted(self.identities, label_array)  # (P,)
        known = ids < self.identities.size
        known[known] = self.identities[ids[known]] == label_array[known]
        if not known.all():
            missing = sorted({str(label) for label in label_array[~known]})
            raise ValueError(f"probe identities not in the gallery: {missing[:5]}")
        return ids

    def true_ranks(
        self,
        similarity: NDArray[np.floating[Any]],
        rows: NDArray[np.intp],
        true_ids: NDArray[np.intp],
        exclude_self: bool = False,
    ) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]:
        """Rank of each probe's identity and that identity's best score, chunked over rows."""
        ranks = np.empty(rows.size, dtype=np.int64)  # (P,)
        scores = np.empty(rows.size, dtype=similarity.dtype)  # (P,)
        step = max(1, _CHUNK_ELEMENTS // max(similarity.shape[1], 1))
        for start in range(0, rows.size, step):
            chunk = rows[start : start + step]  # (C,)
            block = similarity[np.ix_(chunk, self.order)]  # (C, G) copy, columns grouped by identity
            if exclude_self:
                block[np.arange(chunk.size), self.position[chunk]] = -np.inf
            best = np.maximum.reduceat(block, self.starts, axis=1)  # (C, I)
            own = best[np.arange(chunk.size), true_ids[start : start + step]]  # (C,)
            ranks[start : start + step] = np.count_nonzero(best >= own[:, None], axis=1)
            scores[start : start + step] = own
        return ranks, scores


def _scores_1d(values: ArrayLike, name: str) -> NDArray[np.floating[Any]]:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def _score_pair(
    genuine: ArrayLike, impostor: ArrayLike
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """Both score sets in one float dtype, copied only when the dtypes differ."""
    genuine_scores = _scores_1d(genuine, "genuine scores")
    impostor_scores = _scores_1d(impostor, "impostor scores")
    dtype = np.result_type(genuine_scores, impostor_scores)
    return genuine_scores.astype(dtype, copy=False), impostor_scores.astype(dtype, copy=False)


def _similarity_matrix(similarity: ArrayLike) -> NDArray[np.floating[Any]]:
    matrix = np.asarray(similarity)
    if matrix.ndim != 2:
        raise ValueError(f"similarity must be a (probes, gallery) matrix, got shape {matrix.shape}")
    return matrix if np.issubdtype(matrix.dtype, np.floating) else matrix.astype(np.float64)


def _allowed_errors(target_rate: float, n: int) -> int:
    """floor(target * n), forgiving float noise such as 0.29 * 100 = 28.999999999999996."""
    if not 0 <= target_rate <= 1:
        raise ValueError(f"target rate must be in [0, 1], got {target_rate}")
    return min(n, math.floor(target_rate * n * (1 + 1e-12)))


def _threshold_allowing(sorted_scores: NDArray[np.floating[Any]], k: int, lowest: float) -> float:
    """Smallest threshold letting at most k of the ascending ``sorted_scores`` reach it.

    Just above the (k+1)-th largest score: tied scores there all fall below it,
    so the rate may undershoot the target but never exceeds it.
    """
    if k >= sorted_scores.size:
        return lowest
    kth = sorted_scores[sorted_scores.size - 1 - k]
    return float(np.nextafter(kth, sorted_scores.dtype.type(np.inf)))


def _spread_indices(n: int, count: int, tail_at_top: bool) -> NDArray[np.int64]:
    """About ``count`` indices into n sorted scores: half even, half log-spaced from the tail."""
    even = np.linspace(0, n - 1, count - count // 2).round().astype(np.int64)
    from_tail = np.geomspace(1, n, count // 2).round().astype(np.int64)
    tail = n - from_tail if tail_at_top else from_tail - 1
    return np.unique(np.concatenate([even, tail]))


def _log_binomial_coefficient(n: int, k: int) -> float:
    """log C(n, k); a product of ratios when short, since lgamma(1e8) leaves ~1e-7 absolute error."""
    m = min(k, n - k)
    if m <= 1_000_000:
        i = np.arange(m, dtype=np.float64)  # (m,)
        return float(np.sum(np.log((n - i) / (i + 1))))
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _check_counts(k: int, n: int) -> None:
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def _deal_folds(same: NDArray[np.bool_], n_folds: int, seed: int) -> list[NDArray[np.int64]]:
    """Shuffle each class with ``seed`` and deal it round-robin into ``n_folds`` folds."""
    rng = np.random.default_rng(seed)
    dealt = [rng.permutation(np.flatnonzero(cls)) for cls in (same, ~same)]
    return [np.sort(np.concatenate([indices[f::n_folds] for indices in dealt])) for f in range(n_folds)]
