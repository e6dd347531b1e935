"""Kept FAR/FRR reports: the last gallery report, and each evaluation's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Report


def add_report(
    session: Session,
    report_id: str,
    kind: str,
    body: dict[str, Any],
    *,
    collection_id: int,
    model_name: str,
    gallery_seq: int | None = None,
    evaluation_id: str | None = None,
) -> Report:
    report = Report(
        id=report_id,
        collection_id=collection_id,
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


def latest_gallery_report(session: Session, collection_id: int, model_name: str) -> Report | None:
    return session.scalar(
        select(Report)
        .where(
            Report.kind == "gallery", Report.collection_id == collection_id, Report.model_name == model_name
        )
        .order_by(Report.created_at.desc(), Report.id.desc())
        .limit(1)
    )


def delete_gallery_reports_except(session: Session, collection_id: int, keep_id: str) -> None:
    """Only the last gallery report of each collection is kept."""
    query = select(Report).where(
        Report.kind == "gallery", Report.collection_id == collection_id, Report.id != keep_id
    )
    for report in session.scalars(query):
        session.delete(report)
    session.flush()


def delete_report(session: Session, report_id: str) -> None:
    report = session.get(Report, report_id)
    if report is not None:
        session.delete(report)
        session.flush()
