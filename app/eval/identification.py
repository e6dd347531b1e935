"""Identification on probe-vs-gallery similarity matrices: CMC, leave-one-out CMC and open-set FNIR at FPIR.

A gallery identity scores its best template, so an identity enrolled with
many templates is ranked once. Thresholds follow ``app.eval.verification``'s
rule: a probe reaches a gallery entry when ``score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.eval.intervals import min_comparisons
from app.eval.results import LeaveOneOutCmc, OpenSetPoint
from app.eval.sorted_scores import allowed_errors, threshold_allowing

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
        threshold = threshold_allowing(nonmated_top, allowed_errors(fpir, nonmated_top.size), lowest)
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


def _similarity_matrix(similarity: ArrayLike) -> NDArray[np.floating[Any]]:
    matrix = np.asarray(similarity)
    if matrix.ndim != 2:
        raise ValueError(f"similarity must be a (probes, gallery) matrix, got shape {matrix.shape}")
    return matrix if np.issubdtype(matrix.dtype, np.floating) else matrix.astype(np.float64)
