"""Uploaded evaluation sets: their progress, counts and report id (never their images)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Evaluation


def add_evaluation(
    session: Session,
    evaluation_id: str,
    name: str,
    *,
    collection_id: int,
    total: int,
    identities: int,
    pairs_source: str,
    actor: str,
) -> Evaluation:
    evaluation = Evaluation(
        id=evaluation_id,
        collection_id=collection_id,
        name=name,
        state="queued",
        progress=0,
        total=total,
        images=total,
        no_face=0,
        identities=identities,
        pairs_source=pairs_source,
        actor=actor,
    )
    session.add(evaluation)
    session.flush()
    return evaluation


def get_evaluation(session: Session, collection_id: int, evaluation_id: str) -> Evaluation | None:
    """The collection's evaluation with this id; another collection's is not found."""
    evaluation = session.get(Evaluation, evaluation_id)
    return evaluation if evaluation is not None and evaluation.collection_id == collection_id else None


def list_evaluations(session: Session, collection_id: int, limit: int = 100) -> list[Evaluation]:
    """The collection's evaluations, newest first."""
    query = (
        select(Evaluation)
        .where(Evaluation.collection_id == collection_id)
        .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def delete_evaluation(session: Session, evaluation: Evaluation) -> None:
    session.delete(evaluation)
    session.flush()
