"""Identification candidates: distinct subjects ranked by their best template."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.arrays import FloatArray, IntArray


@dataclass(frozen=True)
class Candidate:
    """One subject for a query, represented by its most similar template."""

    subject_id: int
    face_id: int
    similarity: float


def rank_subjects(
    similarities: FloatArray, face_ids: IntArray, subject_ids: IntArray, top_n: int
) -> list[Candidate]:
    """The first ``top_n`` distinct subjects of one result row.

    The row is (k,) arrays sorted by descending similarity with -1 face ids
    where nothing valid was found, so a subject's first hit is its best.
    """
    candidates: list[Candidate] = []
    seen: set[int] = set()
    for similarity, face_id, subject_id in zip(
        similarities.tolist(), face_ids.tolist(), subject_ids.tolist(), strict=True
    ):
        if face_id < 0 or subject_id in seen:
            continue
        seen.add(subject_id)
        candidates.append(Candidate(subject_id=subject_id, face_id=face_id, similarity=similarity))
        if len(candidates) == top_n:
            break
    return candidates


def distinct_subjects(face_ids: IntArray, subject_ids: IntArray) -> int:
    """How many distinct subjects the valid entries of a (k,) result row hold."""
    return int(np.unique(subject_ids[face_ids >= 0]).size)
