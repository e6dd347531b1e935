"""Templates a re-embedding job computes for a collection's next model, and the switch to them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, undefer

from app.db.embeddings import bytes_to_embedding, embedding_to_bytes
from app.db.models import Face, StagedTemplate


def faces_to_stage(
    session: Session, collection_id: int, job_id: str, *, after_id: int = 0, limit: int = 64
) -> list[Face]:
    """The collection's faces, in id order after ``after_id``, that the job has no template for yet."""
    staged = select(StagedTemplate.face_id).where(StagedTemplate.job_id == job_id)
    query = (
        select(Face)
        .options(undefer(Face.crop), undefer(Face.crop_landmarks), undefer(Face.crop_box))
        .where(Face.collection_id == collection_id, Face.id > after_id, Face.id.not_in(staged))
        .order_by(Face.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def add_staged(session: Session, job_id: str, templates: Sequence[tuple[int, npt.ArrayLike]]) -> None:
    """Keep ``(face_id, embedding)`` for the switch; a face staged already keeps its first template."""
    for face_id, embedding in templates:
        if session.get(StagedTemplate, (job_id, face_id)) is None:
            data = embedding_to_bytes(embedding)
            session.add(
                StagedTemplate(job_id=job_id, face_id=face_id, embedding=data, embedding_dim=len(data) // 4)
            )
    session.flush()


def count_staged(session: Session, job_id: str) -> int:
    return session.scalar(select(func.count()).where(StagedTemplate.job_id == job_id)) or 0


def staged_embeddings(session: Session, job_id: str) -> dict[int, npt.NDArray[np.float32]]:
    rows = session.execute(
        select(StagedTemplate.face_id, StagedTemplate.embedding, StagedTemplate.embedding_dim).where(
            StagedTemplate.job_id == job_id
        )
    )
    return {face_id: bytes_to_embedding(data, dim) for face_id, data, dim in rows}


def switch_to_staged(session: Session, job_id: str, model_name: str, model_version: str) -> int:
    """Replace each staged face's template by the job's, in this transaction; returns how many."""
    switched = 0
    for face_id, data, dim in session.execute(
        select(StagedTemplate.face_id, StagedTemplate.embedding, StagedTemplate.embedding_dim).where(
            StagedTemplate.job_id == job_id
        )
    ).all():
        session.execute(
            update(Face)
            .where(Face.id == face_id)
            .values(embedding=data, embedding_dim=dim, model_name=model_name, model_version=model_version)
        )
        switched += 1
    delete_staged(session, job_id)
    return switched


def delete_staged(session: Session, job_id: str) -> None:
    session.execute(delete(StagedTemplate).where(StagedTemplate.job_id == job_id))
    session.flush()
