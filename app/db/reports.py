"""Kept FAR/FRR reports and background jobs."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Evaluation, Job, Report


def new_id(prefix: str) -> str:
    """``rpt_…``, ``job_…``, ``ev_…``: unguessable, and the prefix says what it names."""
    return f"{prefix}_{secrets.token_hex(8)}"


def add_report(
    session: Session,
    report_id: str,
    kind: str,
    body: dict[str, Any],
    *,
    model_name: str,
    gallery_seq: int | None = None,
    evaluation_id: str | None = None,
) -> Report:
    report = Report(
        id=report_id,
        kind=kind,
        body=body,
        model_name=model_name,
        gallery_seq=gallery_seq,
        evaluation_id=evaluation_id,
    )
    session.add(report)
    session.flush()
    return report


def get_report(session: Session, report_id: str) -> Report | None:
    return session.get(Report, report_id)


def latest_gallery_report(session: Session, model_name: str) -> Report | None:
    return session.scalar(
        select(Report)
        .where(Report.kind == "gallery", Report.model_name == model_name)
        .order_by(Report.created_at.desc(), Report.id.desc())
        .limit(1)
    )


def delete_gallery_reports_except(session: Session, keep_id: str) -> None:
    """Only the last gallery report is kept."""
    for report in session.scalars(select(Report).where(Report.kind == "gallery", Report.id != keep_id)):
        session.delete(report)
    session.flush()


def delete_report(session: Session, report_id: str) -> None:
    report = session.get(Report, report_id)
    if report is not None:
        session.delete(report)
        session.flush()


def add_job(session: Session, kind: str, total: int) -> Job:
    job = Job(id=new_id("job"), kind=kind, state="queued", progress=0, total=total)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def active_job(session: Session, kind: str, updated_since: datetime) -> Job | None:
    """A queued or running job of ``kind`` that wrote since ``updated_since``, for a request to join."""
    return session.scalar(
        select(Job)
        .where(Job.kind == kind, Job.state.in_(("queued", "running")), Job.updated_at >= updated_since)
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
