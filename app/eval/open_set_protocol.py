"""Open-set protocols drawn from a labelled image set such as LFW, and a score's reference figures on them.

Drawn like the LFW open-set protocol of the open-set issue: every person
with two or more images puts one (drawn by the seed) in the gallery and the
rest are mated probes; people with a single image are dealt, by the seed,
half into the gallery (distractors: enrolled people no probe looks for) and
half into the non-mated probes (strangers). With ``gallery_templates=k``,
people with more than k images enrol k of them, so best-template and
fused subject scores can be compared.

``calibrate_open_set`` measures a decision score's thresholds by target
FPIR over several seeds; its result is what a model manifest's
``open_set`` block records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.eval.decision_score import statistic_name
from app.eval.identification import open_set, top_subject_similarities
from app.eval.intervals import min_comparisons
from app.pipeline.manifest import DecisionScore, OpenSetCalibration, OpenSetThreshold
from app.pipeline.similarity import Metric, pairwise_similarity

# Quantile of strangers' cohort means taken as the prior: their median.
PRIOR_QUANTILE = 0.5
# What a model's calibration records. The cohort was chosen on the default pack
# (tools/open_set_study.py, 5 seeds): cohorts of 5 to 20 are alike within the seeds'
# spread; 10 sits in the middle and keeps each search short. FPIR 0.001 would need
# 3,000+ strangers, and LFW gives about 2,000 per protocol.
DEFAULT_COHORT = 10
CALIBRATION_FPIRS = (0.1, 0.01)
DEFAULT_FPIR = 0.01
CALIBRATION_SEEDS = (1, 2, 3, 4, 5)


@dataclass(frozen=True, eq=False)
class OpenSetSplit:
    """Row indices into the labelled set, per role."""

    gallery: NDArray[np.intp]
    mated: NDArray[np.intp]
    nonmated: NDArray[np.intp]


def draw_open_set(
    labels: Sequence[str] | NDArray[np.str_], seed: int, gallery_templates: int = 1
) -> OpenSetSplit:
    """One protocol over ``labels`` (one per image); see the module docstring."""
    label_array = np.asarray(labels)
    rng = np.random.default_rng(seed)
    identities, ids = np.unique(label_array, return_inverse=True)
    members = [np.flatnonzero(ids == i) for i in range(identities.size)]
    gallery: list[int] = []
    mated: list[int] = []
    singles: list[int] = []
    for rows in members:
        if rows.size == 1:
            singles.append(int(rows[0]))
            continue
        shuffled = rng.permutation(rows)
        enrolled = min(gallery_templates, rows.size - 1)
        gallery.extend(int(row) for row in shuffled[:enrolled])
        mated.extend(int(row) for row in shuffled[enrolled:])
    dealt = rng.permutation(np.asarray(singles, dtype=np.intp))
    half = dealt.size // 2
    gallery.extend(int(row) for row in dealt[:half])
    return OpenSetSplit(
        gallery=np.asarray(sorted(gallery), dtype=np.intp),
        mated=np.asarray(sorted(mated), dtype=np.intp),
        nonmated=np.sort(dealt[half:]),
    )


@dataclass(frozen=True, eq=False)
class ProtocolScores:
    """Similarities of one drawn protocol: mated (Pm, G), non-mated (Pn, G), and the labels."""

    mated: NDArray[np.float32]
    mated_labels: NDArray[np.str_]
    nonmated: NDArray[np.float32]
    gallery_labels: NDArray[np.str_]

    @classmethod
    def of(
        cls, vectors: NDArray[np.float32], labels: NDArray[np.str_], split: OpenSetSplit, metric: Metric
    ) -> ProtocolScores:
        gallery = vectors[split.gallery]
        return cls(
            mated=pairwise_similarity(vectors[split.mated], gallery, metric),
            mated_labels=labels[split.mated],
            nonmated=pairwise_similarity(vectors[split.nonmated], gallery, metric),
            gallery_labels=labels[split.gallery],
        )


def stranger_prior(protocol: ProtocolScores, cohort: int) -> float:
    """The median over strangers of their cohort's mean similarity (ranks 2 .. cohort + 1)."""
    top = top_subject_similarities(protocol.nonmated, protocol.gallery_labels, 1 + cohort)  # (Pn, 1+c)
    return float(np.quantile(top[:, 1:].mean(axis=1), PRIOR_QUANTILE))


def calibrate_open_set(
    vectors: NDArray[np.float32],
    labels: NDArray[np.str_],
    metric: Metric,
    score: DecisionScore,
    *,
    fpirs: Sequence[float],
    default_fpir: float,
    seeds: Sequence[int],
    protocol_name: str,
) -> OpenSetCalibration:
    """Thresholds by target FPIR, the median over ``seeds`` of each drawn protocol's.

    A ``cohort_gap`` score's prior is measured first, on the first seed's
    protocol, so the thresholds are of the score as the service computes it.
    """
    protocols = [ProtocolScores.of(vectors, labels, draw_open_set(labels, seed), metric) for seed in seeds]
    strangers = min(p.nonmated.shape[0] for p in protocols)
    if strangers < min_comparisons(default_fpir) or min(p.mated.shape[0] for p in protocols) == 0:
        raise ValueError(
            f"an open-set calibration at FPIR {default_fpir:g} needs {min_comparisons(default_fpir)} "
            f"strangers (half the one-image identities) and some people with 2+ images; this set gives "
            f"{strangers}"
        )
    fpirs = [fpir for fpir in fpirs if strangers >= min_comparisons(fpir)]
    if score.kind == "cohort_gap":
        score = score.model_copy(update={"prior": round(stranger_prior(protocols[0], score.cohort), 6)})
    per_seed = [
        open_set(p.mated, p.mated_labels, p.nonmated, p.gallery_labels, fpirs, score) for p in protocols
    ]
    subjects = int(np.median([np.unique(p.gallery_labels).size for p in protocols]))
    points = []
    for fpir in fpirs:
        key = f"{fpir:g}"
        points.append(
            OpenSetThreshold(
                target_fpir=fpir,
                threshold=round(float(np.median([result[key].threshold for result in per_seed])), 6),
                gallery_subjects=subjects,
                fnir=round(float(np.median([result[key].fnir for result in per_seed])), 6),
                nonmated=int(np.median([result[key].nonmated for result in per_seed])),
            )
        )
    return OpenSetCalibration(
        score=score,
        default_fpir=default_fpir,
        points=points,
        protocol=f"{protocol_name}; seeds {', '.join(map(str, seeds))}; score {statistic_name(score)}",
    )


def fused_subjects(
    similarity: NDArray[np.floating], gallery_labels: NDArray[np.str_], fuse: int
) -> tuple[NDArray[np.float64], NDArray[np.str_]]:
    """(P, I) subject scores as the mean of each subject's ``fuse`` best templates, and the (I,) subjects.

    A subject with fewer templates averages what it has; ``fuse=1`` is the best template.
    """
    identities, ids = np.unique(gallery_labels, return_inverse=True)
    fused = np.full((similarity.shape[0], identities.size), -np.inf)  # (P, I)
    for identity in range(identities.size):
        columns = similarity[:, ids == identity]  # (P, T)
        take = min(fuse, columns.shape[1])
        fused[:, identity] = (-np.sort(-columns, axis=1)[:, :take]).mean(axis=1)
    return fused, identities
