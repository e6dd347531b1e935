"""The admin page's headline figures: gallery size, model, index and the thresholds in force."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.faces import count_faces
from app.db.reports import latest_gallery_report
from app.db.subjects import count_subjects
from app.schemas.admin import AdminStats, ReportRef, ThresholdPair
from app.services.container import Services
from app.services.thresholds import operating_thresholds


def admin_stats(services: Services, session: Session) -> AdminStats:
    thresholds = operating_thresholds(session, services.default_thresholds)
    latest = latest_gallery_report(session, services.model.name)
    return AdminStats(
        subjects=count_subjects(session),
        faces=count_faces(session, services.model.name),
        model=services.model.name,
        metric=services.pipeline.metric,
        embedding_size=services.model.embedding_size or 0,
        index_size=services.index.index.ntotal,
        thresholds=ThresholdPair(verify=thresholds.verify, identify=thresholds.identify),
        last_report=ReportRef(id=latest.id, created_at=latest.created_at) if latest is not None else None,
    )
