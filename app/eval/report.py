"""The FAR/FRR report as JSON-ready dicts, from score arrays or labelled templates.

The admin report (gallery or uploaded evaluation set) and ``facerec eval``
build on these, so a number in the admin page means what the CLI prints.
Rates are ``app.eval.verification``'s: a comparison is accepted when
``score >= threshold``. ``build_report`` assembles the whole report (its
shape is ``app.schemas.admin.ReportPublic``); storing and reusing it is the
service's (``app.services.gallery_report``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.core.errors import NotEnoughData
from app.core.ids import new_id
from app.eval.decision_score import RAW_SIMILARITY, decision_scores, statistic_name, subjects_needed
from app.eval.identification import (
    fpir_threshold,
    leave_one_out_cmc,
    open_set,
    open_set_searches,
    top_subject_similarities,
)
from app.eval.intervals import min_comparisons, wilson_interval
from app.eval.pair_accuracy import best_accuracy_threshold
from app.eval.results import OperatingPoint
from app.eval.template_pairs import ProgressFn, count_pairs, template_pair_scores
from app.eval.verification import auc, calibrate_thresholds, eer, far_frr_at, histogram, roc_points
from app.pipeline.manifest import DecisionScore
from app.pipeline.similarity import Metric, pairwise_similarity

AT_FAR_TARGETS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
FPIR_TARGETS: tuple[float, ...] = (0.1, 0.01, 0.001)
# Threshold by gallery size: identity subsets from this size, doubling, each the median of this many draws.
GALLERY_SIZE_START = 25
GALLERY_SIZE_DRAWS = 5
CMC_RANKS: tuple[int, ...] = tuple(range(1, 21))
CURVE_POINTS = 1000
HISTOGRAM_BINS = 50

# A pair with a faceless image scores below every real similarity, so it is
# counted as "different" at any threshold: a miss for same-person pairs.
NO_FACE_SCORE = -1e6
# Identification holds an (N, N) similarity matrix a few times over; beyond this
# many templates it runs on a random subset of whole identities.
IDENTIFICATION_MAX_TEMPLATES = 4_000


@dataclass(frozen=True)
class ReportContext:
    """What a report records about how it was made: the model, its metric and the thresholds in force."""

    model_name: str
    metric: Metric
    verify_threshold: float
    identify_threshold: float
    collection: str | None = None  # the gallery's collection, when it is one
    identify_score: DecisionScore = RAW_SIMILARITY  # the statistic the identify threshold is on


def verification_report(genuine: ArrayLike, impostor: ArrayLike) -> dict[str, Any]:
    """Histograms, the ROC/DET curve, EER, AUC, best accuracy and the threshold for each target FAR."""
    genuine_scores = np.asarray(genuine, dtype=np.float64)  # (Ng,)
    impostor_scores = np.asarray(impostor, dtype=np.float64)  # (Ni,)
    eer_value, eer_threshold = eer(genuine_scores, impostor_scores)
    best_threshold, best_accuracy = best_accuracy_threshold(genuine_scores, impostor_scores)
    points = calibrate_thresholds(genuine_scores, impostor_scores, AT_FAR_TARGETS)
    return {
        "histograms": score_histograms(genuine_scores, impostor_scores),
        "curve": [
            point.to_dict() for point in roc_points(genuine_scores, impostor_scores, max_points=CURVE_POINTS)
        ],
        "eer": {"value": eer_value, "threshold": eer_threshold},
        "auc": auc(genuine_scores, impostor_scores),
        "best_accuracy": {"threshold": best_threshold, "accuracy": best_accuracy},
        "at_far": [at_far_entry(point) for point in points],
    }


def at_far_entry(point: OperatingPoint) -> dict[str, Any]:
    """One target FAR; an unmeasurable target carries no threshold, only the bound the data shows."""
    low, high = wilson_interval(point.false_accepts, point.impostor_comparisons)
    return {
        "target_far": point.target_far,
        "measurable": point.measurable,
        "threshold": point.threshold if point.measurable else None,
        "far": point.far,
        "far_ci": [low, high],
        "far_upper_95": point.far_upper_95,
        "frr": point.frr if point.measurable else None,
        "frr_ci": list(point.frr_ci95) if point.measurable else None,
        "false_accepts": point.false_accepts,
        "impostor": point.impostor_comparisons,
        "note": point.describe(),
    }


def verification_rates(genuine: ArrayLike, impostor: ArrayLike, threshold: float) -> dict[str, Any]:
    """FAR and FRR at ``threshold`` with 95% Wilson intervals."""
    genuine_scores = np.asarray(genuine, dtype=np.float64)
    impostor_scores = np.asarray(impostor, dtype=np.float64)
    far, frr = far_frr_at(genuine_scores, impostor_scores, threshold)
    false_accepts = round(far * impostor_scores.size)
    false_rejects = round(frr * genuine_scores.size)
    return {
        "far": far,
        "far_ci": list(wilson_interval(false_accepts, impostor_scores.size)),
        "frr": frr,
        "frr_ci": list(wilson_interval(false_rejects, genuine_scores.size)),
    }


def score_histograms(genuine: NDArray[np.float64], impostor: NDArray[np.float64]) -> dict[str, Any]:
    """Both histograms on shared edges over the real scores; faceless pairs land in the lowest bin.

    Every score is counted, so each histogram's total equals its comparison count.
    """
    both = np.concatenate([genuine, impostor])  # (Ng + Ni,)
    real = both[both > NO_FACE_SCORE]
    low, high = (float(real.min()), float(real.max())) if real.size else (-1.0, 1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return {
        name: histogram(np.clip(scores, low, high), bins=HISTOGRAM_BINS, range=(low, high)).to_dict()
        for name, scores in (("genuine", genuine), ("impostor", impostor))
    }


def identification_report(
    similarity: NDArray[np.floating[Any]],
    labels: Sequence[Any] | NDArray[Any],
    identify_threshold: float | None = None,
    score: DecisionScore = RAW_SIMILARITY,
) -> dict[str, Any]:
    """CMC by leave-one-out, and FNIR at FPIR by holding out each identity in turn.

    ``similarity`` is the (N, N) template-vs-template matrix. Mated probes are
    the templates whose identity has another template (their own column is left
    out); every template is also a non-mated probe once its identity's columns
    are removed from the gallery, which is the gallery without that person.
    ``fnir_at_fpir`` is for the decision ``score``, ``fnir_at_fpir_raw`` for raw
    similarity; ``by_gallery_size`` repeats the decision score's thresholds on
    random subsets of the identities, so an operator sees how they move as
    the gallery grows.
    """
    label_array = np.asarray(labels)
    identities = np.unique(label_array)
    loo = leave_one_out_cmc(similarity, label_array, CMC_RANKS)
    if loo.probes == 0 or identities.size < 2:
        return {
            "cmc": None,
            "statistic": statistic_name(score),
            "fnir_at_fpir": None,
            "fnir_at_fpir_raw": None,
            "by_gallery_size": [],
            "probes": loo.probes,
            "fnir": None,
            "fpir": None,
            "note": "identification needs at least 2 identities and one with 2 or more templates",
        }
    counts = {
        identity: int(n) for identity, n in zip(*np.unique(label_array, return_counts=True), strict=True)
    }
    mated_rows = np.flatnonzero([counts[label] > 1 for label in label_array])  # (Pm,)
    mated = similarity[mated_rows].astype(np.float64)  # (Pm, N)
    mated[np.arange(mated_rows.size), mated_rows] = -np.inf  # a template never finds itself
    nonmated = similarity.astype(np.float64)  # (N, N)
    nonmated[label_array[:, None] == label_array[None, :]] = -np.inf  # the probe's identity is held out
    mated_labels = label_array[mated_rows]
    searches = open_set_searches(mated, mated_labels, nonmated, label_array, score)
    raw = open_set(mated, mated_labels, nonmated, label_array, FPIR_TARGETS)
    report: dict[str, Any] = {
        "cmc": {str(rank): value for rank, value in loo.cmc.items()},
        "statistic": statistic_name(score),
        "fnir_at_fpir": {key: point.to_dict() for key, point in searches.at_fpirs(FPIR_TARGETS).items()},
        "fnir_at_fpir_raw": {key: point.to_dict() for key, point in raw.items()},
        "by_gallery_size": thresholds_by_gallery_size(nonmated, label_array, score),
        "probes": loo.probes,
        "fnir": None,
        "fpir": None,
        "note": (
            f"CMC: leave-one-out over {loo.probes} templates of identities with 2+ templates "
            f"({loo.skipped} single templates only serve as gallery); FNIR at FPIR: each of "
            f"{identities.size} identities held out in turn, its templates probing the rest"
        ),
    }
    if identify_threshold is not None:
        report["fnir"], report["fpir"] = searches.rates(identify_threshold)
    return report


def thresholds_by_gallery_size(
    nonmated: NDArray[np.float64], labels: NDArray[Any], score: DecisionScore, seed: int = 0
) -> list[dict[str, Any]]:
    """The decision score's threshold at each target FPIR on random identity subsets of growing size.

    Sizes double from ``GALLERY_SIZE_START`` identities up to the whole
    gallery; each is the median over ``GALLERY_SIZE_DRAWS`` subsets. Every
    template probes each subset (its own identity's columns stay held out),
    so a subset's strangers are all the templates.
    """
    identities, ids = np.unique(labels, return_inverse=True)
    sizes = [size for size in _doubling(GALLERY_SIZE_START, identities.size) if size >= 2]
    rng = np.random.default_rng(seed)
    depth = subjects_needed(score)
    rows = []
    for size in sizes:
        draws = 1 if size == identities.size else GALLERY_SIZE_DRAWS
        thresholds: dict[str, list[float]] = {f"{fpir:g}": [] for fpir in FPIR_TARGETS}
        for _ in range(draws):
            chosen = rng.choice(identities.size, size=size, replace=False)
            columns = np.isin(ids, chosen)  # (N,)
            top = top_subject_similarities(nonmated[:, columns], ids[columns], depth)
            sorted_scores = np.sort(decision_scores(top, score))
            for fpir in FPIR_TARGETS:
                thresholds[f"{fpir:g}"].append(fpir_threshold(sorted_scores, fpir))
        rows.append(
            {
                "subjects": int(size),
                "draws": draws,
                "thresholds": {key: float(np.median(values)) for key, values in thresholds.items()},
                "measurable": {f"{fpir:g}": labels.size >= min_comparisons(fpir) for fpir in FPIR_TARGETS},
            }
        )
    return rows


def _doubling(start: int, stop: int) -> list[int]:
    sizes, size = [], start
    while size < stop:
        sizes.append(size)
        size *= 2
    return [*sizes, stop]


def rates_from_curve(curve: Sequence[dict[str, float]], threshold: float) -> tuple[float, float]:
    """(FAR, FRR) read off a stored curve: the first point at or above ``threshold``.

    Exact at the curve's own thresholds; between them FAR is an upper bound
    on the kept point's side, good enough to place a marker on a plot.
    """
    for point in curve:
        if point["threshold"] >= threshold:
            return point["far"], point["frr"]
    return curve[-1]["far"], curve[-1]["frr"]


def build_report(
    context: ReportContext,
    genuine: NDArray[np.float64],
    impostor: NDArray[np.float64],
    identification: dict[str, Any],
    *,
    source: dict[str, Any],
    counts: dict[str, int],
) -> dict[str, Any]:
    """The report JSON from verification scores and an ``identification_report``."""
    if genuine.size == 0 or impostor.size == 0:
        raise NotEnoughData(
            "a report needs genuine and impostor comparisons",
            {"genuine": int(genuine.size), "impostor": int(impostor.size)},
        )
    identification = dict(identification)
    operating = {
        "verify_threshold": context.verify_threshold,
        "identify_threshold": context.identify_threshold,
        "identify_statistic": statistic_name(context.identify_score),
        **verification_rates(genuine, impostor, context.verify_threshold),
        "fnir": identification.pop("fnir", None),
        "fpir": identification.pop("fpir", None),
    }
    return {
        "id": new_id("rpt"),
        "created_at": datetime.now(timezone.utc).isoformat(),
        "collection": context.collection,
        "model": context.model_name,
        "metric": context.metric,
        "source": source,
        "counts": {**counts, "genuine": int(genuine.size), "impostor": int(impostor.size)},
        **verification_report(genuine, impostor),
        "identification": identification,
        "operating": operating,
    }


def templates_report(
    context: ReportContext,
    vectors: NDArray[np.float32],
    labels: NDArray[Any],
    *,
    max_impostor: int,
    source: dict[str, Any],
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The report over labelled templates: all genuine pairs, impostors all or sampled, identification."""
    check_enough_templates(labels)
    pairs = template_pair_scores(
        vectors, labels, context.metric, max_impostor=max_impostor, progress=progress
    )
    identification = _templates_identification(context, vectors, labels)
    return build_report(
        context,
        pairs.genuine,
        pairs.impostor,
        identification,
        source={**source, "impostor_sampled": pairs.impostor_sampled, "impostor_total": pairs.impostor_total},
        counts={"subjects": int(np.unique(labels).size), "templates": int(labels.size)},
    )


def check_enough_templates(labels: NDArray[Any]) -> None:
    genuine, impostor = count_pairs(labels)
    if genuine == 0 or impostor == 0:
        raise NotEnoughData(
            "a report needs at least 2 subjects, one of them with 2 or more templates",
            {"templates": int(labels.size), "subjects": int(np.unique(labels).size)},
        )


def _templates_identification(
    context: ReportContext, vectors: NDArray[np.float32], labels: NDArray[Any]
) -> dict[str, Any]:
    note = ""
    if labels.size > IDENTIFICATION_MAX_TEMPLATES:
        rng = np.random.default_rng(0)
        keep = np.zeros(labels.size, dtype=bool)
        for identity in rng.permutation(np.unique(labels)):
            members = labels == identity
            if np.count_nonzero(keep) + np.count_nonzero(members) > IDENTIFICATION_MAX_TEMPLATES:
                continue
            keep |= members
        note = f"; on a random subset of whole identities ({int(keep.sum())} of {labels.size} templates)"
        vectors, labels = vectors[keep], labels[keep]
    similarity = pairwise_similarity(vectors, vectors, context.metric)  # (N, N)
    report = identification_report(similarity, labels, context.identify_threshold, context.identify_score)
    report["note"] += note
    return report
