"""Replaying the database's change log onto an index.

Pure logic, no database access: the polling loop reads the changes after
``index.applied_seq`` and hands them here. Operations are idempotent (an add
replaces, a remove of an absent id does nothing), so replaying a change twice
or loading a snapshot that already holds some of the changes is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Literal, NamedTuple, cast

import numpy as np

from app.core.arrays import FloatArray
from app.index.interface import SearchIndex

ChangeOp = Literal["add", "remove"]


class IndexChange(NamedTuple):
    """One row of the change log; ``embedding`` is None once the face has been deleted."""

    seq: int
    op: ChangeOp
    face_id: int
    subject_id: int | None
    embedding: FloatArray | None


def apply_changes(
    index: SearchIndex, changes: Iterable[tuple[int, str, int, int | None, FloatArray | None]]
) -> int:
    """Apply changes in order, skipping those at or below ``index.applied_seq``; returns the new seq.

    Runs of the same operation are applied as one batch, which preserves the
    order's meaning: within a run of adds the last add of an id wins, as it
    would one by one. An add without an embedding is skipped: the face was
    deleted later and the log's later remove covers it. ``index.applied_seq``
    is set only after the content is updated, so a snapshot taken meanwhile
    may hold changes newer than its seq, never miss older ones.
    """
    pending: list[IndexChange] = []
    for seq, op, face_id, subject_id, embedding in changes:
        if seq <= index.applied_seq:
            continue
        if op not in ("add", "remove"):
            raise ValueError(f"unknown index change {op!r} at seq {seq}")
        pending.append(IndexChange(seq, cast(ChangeOp, op), face_id, subject_id, embedding))
    for op, run in groupby(pending, key=lambda change: change.op):
        batch = list(run)
        if op == "remove":
            index.remove([change.face_id for change in batch])
            continue
        adds = [change for change in batch if change.embedding is not None]
        if adds:
            index.add(
                [change.face_id for change in adds],
                [-1 if change.subject_id is None else change.subject_id for change in adds],
                np.stack([np.asarray(change.embedding, dtype=np.float32) for change in adds]),  # (N, D)
            )
    if pending:
        index.applied_seq = max(change.seq for change in pending)
    return index.applied_seq
