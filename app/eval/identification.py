"""Identification on probe-vs-gallery similarity matrices: CMC, leave-one-out CMC and open-set FNIR at FPIR.

A gallery identity scores its best template, so an identity enrolled with
many templates is ranked once. Thresholds follow ``app.eval.verification``'s
rule: a probe reaches a gallery entry when ``score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.eval.decision_score import RAW_SIMILARITY, decision_scores, subjects_needed
from app.eval.intervals import min_comparisons, wilson_interval
from app.eval.results import LeaveOneOutCmc, OpenSetPoint
from app.eval.sorted_scores import allowed_errors, threshold_allowing
from app.pipeline.manifest import DecisionScore

# Elements of a similarity block handled at once, so identification on a big
# gallery never holds more than a few million extra floats.
_CHUNK_ELEMENTS = 1 << 22


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
    found, _, _ = gallery.true_ranks(matrix, np.arange(matrix.shape[0]), probe_ids)
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
    found, _, _ = gallery.true_ranks(matrix, probes, gallery.ids[probes], exclude_self=True)
    return LeaveOneOutCmc({rank: float(np.mean(found <= rank)) for rank in ranks}, int(probes.size), skipped)


def open_set(
    mated_similarity: ArrayLike,
    mated_labels: ArrayLike,
    nonmated_similarity: ArrayLike,
    gallery_labels: ArrayLike,
    fpirs: Sequence[float] = (0.1, 0.01),
    score: DecisionScore = RAW_SIMILARITY,
) -> dict[str, OpenSetPoint]:
    """FNIR at FPIR for open-set identification with decision ``score``, keyed like ``"0.01"``.

    The threshold is the smallest that lets at most ``fpir`` of the non-mated
    probes' decision scores through. A mated probe is a hit only when its own
    identity ranks first and its decision score reaches the threshold; FNIR
    is the misses. Gallery entries at -inf are absent (a held-out identity).
    """
    searches = open_set_searches(mated_similarity, mated_labels, nonmated_similarity, gallery_labels, score)
    return searches.at_fpirs(fpirs)


def open_set_rates(
    mated_similarity: ArrayLike,
    mated_labels: ArrayLike,
    nonmated_similarity: ArrayLike,
    gallery_labels: ArrayLike,
    threshold: float,
    score: DecisionScore = RAW_SIMILARITY,
) -> tuple[float, float]:
    """(FNIR, FPIR) at one threshold, with ``open_set``'s hit rule (own identity first, score >= it)."""
    searches = open_set_searches(mated_similarity, mated_labels, nonmated_similarity, gallery_labels, score)
    return searches.rates(threshold)


@dataclass(frozen=True, eq=False)
class OpenSetSearches:
    """Every search of an open-set protocol reduced to what a threshold acts on."""

    rank_one: NDArray[np.bool_]  # (Pm,) the mated probe's own identity ranks first
    mated_scores: NDArray[np.float64]  # (Pm,) decision score of each mated probe's top subject
    nonmated_scores: NDArray[np.float64]  # (Pn,) ascending

    def rates(self, threshold: float) -> tuple[float, float]:
        hits = np.count_nonzero(self.rank_one & (self.mated_scores >= threshold))
        false_positives = self.nonmated_scores.size - np.searchsorted(self.nonmated_scores, threshold, "left")
        return 1.0 - hits / self.mated_scores.size, false_positives / self.nonmated_scores.size

    def at_fpirs(self, fpirs: Sequence[float]) -> dict[str, OpenSetPoint]:
        finite = np.concatenate([self.nonmated_scores, self.mated_scores])
        finite = finite[np.isfinite(finite)]
        lowest = float(finite.min()) if finite.size else 0.0
        mated, nonmated = self.mated_scores.size, self.nonmated_scores.size
        points: dict[str, OpenSetPoint] = {}
        for fpir in fpirs:
            threshold = fpir_threshold(self.nonmated_scores, fpir, lowest)
            fnir, observed = self.rates(threshold)
            misses, false_positives = round(fnir * mated), round(observed * nonmated)
            points[f"{fpir:g}"] = OpenSetPoint(
                fpir=fpir,
                threshold=threshold,
                fnir=fnir,
                measurable=fpir > 0 and nonmated >= min_comparisons(fpir),
                observed_fpir=observed,
                fnir_ci=wilson_interval(misses, mated),
                fpir_ci=wilson_interval(false_positives, nonmated),
                mated=mated,
                nonmated=nonmated,
            )
        return points


def fpir_threshold(
    sorted_nonmated: NDArray[np.floating[Any]], fpir: float, lowest: float | None = None
) -> float:
    """Smallest threshold letting at most ``fpir`` of the ascending non-mated scores through.

    ``lowest`` (default: the smallest finite score) is the answer when the target allows them all.
    """
    if lowest is None:
        finite = sorted_nonmated[np.isfinite(sorted_nonmated)]
        lowest = float(finite[0]) if finite.size else 0.0
    return threshold_allowing(sorted_nonmated, allowed_errors(fpir, sorted_nonmated.size), lowest)


def open_set_searches(
    mated_similarity: ArrayLike,
    mated_labels: ArrayLike,
    nonmated_similarity: ArrayLike,
    gallery_labels: ArrayLike,
    score: DecisionScore = RAW_SIMILARITY,
) -> OpenSetSearches:
    mated = _similarity_matrix(mated_similarity)
    nonmated = _similarity_matrix(nonmated_similarity)
    if mated.shape[0] == 0:
        raise ValueError("open-set evaluation needs at least one mated probe")
    if nonmated.shape[0] == 0 or nonmated.shape[1] != mated.shape[1]:
        raise ValueError(f"non-mated similarity {nonmated.shape} does not fit gallery of {mated.shape[1]}")
    gallery = _Gallery(gallery_labels, mated.shape[1])
    probe_ids = gallery.ids_of(mated_labels, mated.shape[0])
    depth = subjects_needed(score)
    found, _, mated_top = gallery.true_ranks(mated, np.arange(mated.shape[0]), probe_ids, depth=depth)
    nonmated_top = gallery.top_subjects(nonmated, depth)
    return OpenSetSearches(
        rank_one=found == 1,
        mated_scores=decision_scores(mated_top, score),
        nonmated_scores=np.sort(decision_scores(nonmated_top, score)),
    )


def top_subject_similarities(
    similarity: ArrayLike, gallery_labels: ArrayLike, depth: int
) -> NDArray[np.floating[Any]]:
    """(P, depth) best similarity of each probe's top ``depth`` identities, descending, -inf padded."""
    matrix = _similarity_matrix(similarity)
    return _Gallery(gallery_labels, matrix.shape[1]).top_subjects(matrix, depth)


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
        depth: int = 0,
    ) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
        """Rank of each probe's identity, that identity's best score and the top ``depth`` identity scores."""
        ranks = np.empty(rows.size, dtype=np.int64)  # (P,)
        scores = np.empty(rows.size, dtype=similarity.dtype)  # (P,)
        top = np.empty((rows.size, depth), dtype=similarity.dtype)  # (P, depth)
        for start, best in self._identity_blocks(similarity, rows, exclude_self):
            stop = start + best.shape[0]
            own = best[np.arange(best.shape[0]), true_ids[start:stop]]  # (C,)
            ranks[start:stop] = np.count_nonzero(best >= own[:, None], axis=1)
            scores[start:stop] = own
            top[start:stop] = _descending_top(best, depth)
        return ranks, scores, top

    def top_subjects(self, similarity: NDArray[np.floating[Any]], depth: int) -> NDArray[np.floating[Any]]:
        """(P, depth) best identity scores of every row, descending, -inf padded."""
        rows = np.arange(similarity.shape[0])
        top = np.empty((rows.size, depth), dtype=similarity.dtype)  # (P, depth)
        for start, best in self._identity_blocks(similarity, rows, exclude_self=False):
            top[start : start + best.shape[0]] = _descending_top(best, depth)
        return top

    def _identity_blocks(
        self, similarity: NDArray[np.floating[Any]], rows: NDArray[np.intp], exclude_self: bool
    ) -> Iterator[tuple[int, NDArray[np.floating[Any]]]]:
        """(first row, (C, I) best score per identity) for chunks of ``rows``."""
        step = max(1, _CHUNK_ELEMENTS // max(similarity.shape[1], 1))
        for start in range(0, rows.size, step):
            chunk = rows[start : start + step]  # (C,)
            block = similarity[np.ix_(chunk, self.order)]  # (C, G) copy, columns grouped by identity
            if exclude_self:
                block[np.arange(chunk.size), self.position[chunk]] = -np.inf
            yield start, np.maximum.reduceat(block, self.starts, axis=1)  # (C, I)


def _descending_top(best: NDArray[np.floating[Any]], depth: int) -> NDArray[np.floating[Any]]:
    """(C, I) → (C, depth): each row's largest values, descending, -inf where I < depth."""
    out = np.full((best.shape[0], depth), -np.inf, dtype=best.dtype)
    take = min(depth, best.shape[1])
    if take == 0:
        return out
    if take < best.shape[1]:
        part = np.partition(best, best.shape[1] - take, axis=1)[:, best.shape[1] - take :]  # (C, take)
    else:
        part = best
    out[:, :take] = -np.sort(-part, axis=1)
    return out


def _similarity_matrix(similarity: ArrayLike) -> NDArray[np.floating[Any]]:
    matrix = np.asarray(similarity)
    if matrix.ndim != 2:
        raise ValueError(f"similarity must be a (probes, gallery) matrix, got shape {matrix.shape}")
    return matrix if np.issubdtype(matrix.dtype, np.floating) else matrix.astype(np.float64)
