"""The admin page's headline figures of a collection: its size, model, index and thresholds in force."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.faces import count_faces
from app.db.reports import latest_gallery_report
from app.db.subjects import count_subjects
from app.schemas.admin import AdminStats, ReportRef, ThresholdPair
from app.services.collections import Target, find_collection
from app.services.container import Services
from app.services.thresholds import operating_thresholds


def admin_stats(services: Services, session: Session, target: Target) -> AdminStats:
    """The collection's figures; its model's metric and size when that model is installed."""
    collection = find_collection(session, target)
    thresholds = operating_thresholds(session, collection.id, services.thresholds_of(collection.model_name))
    latest = latest_gallery_report(session, collection.id, collection.model_name)
    space = services.index.space_of(collection.model_name)
    return AdminStats(
        collection=collection.external_id,
        subjects=count_subjects(session, collection.id),
        faces=count_faces(session, collection.id, collection.model_name),
        model=collection.model_name,
        metric=space.metric if space is not None else "unknown",
        embedding_size=space.dim if space is not None else 0,
        index_size=services.index.index_of(collection.id).ntotal if space is not None else 0,
        thresholds=ThresholdPair(
            verify=thresholds.verify,
            identify=thresholds.identify,
            identify_statistic=thresholds.identify_statistic,
        ),
        last_report=ReportRef(id=latest.id, created_at=latest.created_at) if latest is not None else None,
    )
