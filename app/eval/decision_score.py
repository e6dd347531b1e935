"""The open-set decision score: how far a probe's top subject stands above its own competition.

A stranger's best match in a gallery is the largest of many impostor
similarities, so at a fixed similarity threshold the share of strangers
matched (FPIR) grows with the gallery. Some probes also score high against
everyone (a blurred or very frontal photo). ``cohort_gap`` takes that out:
the top subject's similarity s1 minus the mean of the probe's next
``cohort`` best subjects in the same gallery, each counted at no less than
the model's ``prior``::

    score = s1 - mean(max(s2, prior), ..., max(s(c+1), prior))

``prior`` is the median cohort mean of strangers measured when the model was
calibrated on a large gallery. The floor is what keeps the score's meaning
across gallery sizes: in a small gallery the next-best subjects are ordinary
impostors, far below a large gallery's, and an unfloored gap (s1 minus
their mean) matched 99% of strangers at 50 subjects with a threshold that
matched 1% at 3,714 (LFW, default model; tools/open_set_study.py). Floored,
a small gallery's score falls back to s1 - prior, raw similarity against a
fixed bar, whose FPIR only shrinks as the gallery does. A missing cohort
member (fewer than ``cohort + 1`` subjects) counts at ``prior`` too, so a
one-subject collection scores s1 - prior. An empty gallery has no top
subject: its score is -inf, never a match.

Inputs are each probe's best similarities per distinct subject, sorted
descending, with -inf where the gallery has no further subject.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.pipeline.manifest import DecisionScore

RAW_SIMILARITY = DecisionScore(kind="similarity")


def subjects_needed(score: DecisionScore) -> int:
    """How many top subjects per probe the score reads: the top one and its cohort."""
    return 1 + score.cohort if score.kind == "cohort_gap" else 1


def statistic_name(score: DecisionScore) -> str:
    """The name a response or report gives the statistic, e.g. ``cohort_gap(50)``."""
    return f"cohort_gap({score.cohort})" if score.kind == "cohort_gap" else "similarity"


def decision_scores(top_subjects: ArrayLike, score: DecisionScore) -> NDArray[np.float64]:
    """(P, K) best similarity per subject, descending, -inf padded → (P,) decision scores.

    K may exceed what the score reads; columns past ``subjects_needed`` are ignored.
    """
    top = np.asarray(top_subjects, dtype=np.float64)
    if top.ndim != 2:
        raise ValueError(f"top subjects must be a (probes, subjects) matrix, got shape {top.shape}")
    first = top[:, 0] if top.shape[1] else np.full(top.shape[0], -np.inf)  # (P,)
    if score.kind == "similarity":
        return first
    assert score.prior is not None  # DecisionScore's validator
    cohort = np.full((top.shape[0], score.cohort), score.prior)  # (P, c) missing members at the prior
    present = top[:, 1 : 1 + score.cohort]  # (P, <=c)
    cohort[:, : present.shape[1]] = np.maximum(present, score.prior)  # -inf (absent) becomes the prior
    return np.where(np.isfinite(first), first - cohort.mean(axis=1), -np.inf)


def decision_score_of(ranked_similarities: list[float], score: DecisionScore) -> float:
    """One probe's score from its candidates' similarities, best first (the service's case)."""
    row = np.full((1, subjects_needed(score)), -np.inf)
    values = ranked_similarities[: row.shape[1]]
    row[0, : len(values)] = values
    return float(decision_scores(row, score)[0])
