"""Background jobs, and the progress fields jobs and evaluations share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.ids import new_id
from app.db.models import Evaluation, Job


def add_job(session: Session, kind: str, total: int, collection_id: int | None = None) -> Job:
    job = Job(
        id=new_id("job"), collection_id=collection_id, kind=kind, state="queued", progress=0, total=total
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def active_job(session: Session, kind: str, collection_id: int, updated_since: datetime) -> Job | None:
    """A queued or running job of ``kind`` on a collection that wrote since ``updated_since``, to join."""
    return session.scalar(
        select(Job)
        .where(
            Job.kind == kind,
            Job.collection_id == collection_id,
            Job.state.in_(("queued", "running")),
            Job.updated_at >= updated_since,
        )
        .order_by(Job.created_at.desc())
        .limit(1)
    )


def update_tracked(session: Session, model: type[Job] | type[Evaluation], row_id: str, **fields: Any) -> bool:
    """Set progress/state fields on a job or evaluation; False when the row is gone (deleted)."""
    row = session.get(model, row_id)
    if row is None:
        return False
    for name, value in fields.items():
        setattr(row, name, value)
    session.flush()
    return True
