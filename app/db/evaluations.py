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
    total: int,
    identities: int,
    pairs_source: str,
    actor: str,
) -> Evaluation:
    evaluation = Evaluation(
        id=evaluation_id,
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


def get_evaluation(session: Session, evaluation_id: str) -> Evaluation | None:
    return session.get(Evaluation, evaluation_id)


def list_evaluations(session: Session, limit: int = 100) -> list[Evaluation]:
    """Newest first."""
    query = select(Evaluation).order_by(Evaluation.created_at.desc(), Evaluation.id.desc()).limit(limit)
    return list(session.scalars(query))


def delete_evaluation(session: Session, evaluation: Evaluation) -> None:
    session.delete(evaluation)
    session.flush()
