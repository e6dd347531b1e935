"""Readiness and the scrape-time gauges of /metrics."""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import SQLAlchemyError

from app.core.logging import log_event
from app.db.changes import current_change_seq
from app.db.subjects import count_subjects
from app.schemas.system import ReadyStatus
from app.services.container import Services

logger = logging.getLogger(__name__)

# The index counts as in step while its follower caught up this recently.
MIN_STALE_AFTER_S = 5.0


def readiness(services: Services) -> ReadyStatus:
    database_seq: int | None = None
    try:
        with services.session_factory() as session:
            database_seq = current_change_seq(session)
    except SQLAlchemyError as error:
        log_event(logger, "ready.database_unreachable", logging.WARNING, error=type(error).__name__)
    follower = services.index
    age = follower.seconds_since_sync()
    stale_after = max(MIN_STALE_AFTER_S, 10 * services.settings.index_sync_interval_s)
    in_step = database_seq is not None and age is not None and age <= stale_after
    return ReadyStatus(
        ready=database_seq is not None and in_step,
        models_loaded=True,
        database=database_seq is not None,
        index_in_step=in_step,
        index_templates=follower.index.ntotal,
        index_applied_seq=follower.index.applied_seq,
        database_seq=database_seq,
        seconds_since_sync=None if age is None else round(age, 3),
    )


def metrics_text(services: Services) -> str:
    follower = services.index
    gauges: list[tuple[str, str, float]] = [
        ("facerec_gallery_templates", "face templates in this worker's index", follower.index.ntotal),
        (
            "facerec_index_applied_seq",
            "change-log seq this worker's index reflects",
            follower.index.applied_seq,
        ),
        ("facerec_inference_workers", "inferences this process runs at once", services.inference.workers),
        (
            "facerec_uptime_seconds",
            "seconds since this process started",
            time.monotonic() - services.started_at,
        ),
    ]
    age = follower.seconds_since_sync()
    if age is not None:
        gauges.append(("facerec_index_sync_age_seconds", "seconds since the index last caught up", age))
    try:
        with services.session_factory() as session:
            database_seq = current_change_seq(session)
            subjects = count_subjects(session)
    except SQLAlchemyError:
        pass  # the database gauges are left out; /ready reports the outage
    else:
        lag = max(0, database_seq - follower.index.applied_seq)
        gauges += [
            ("facerec_gallery_subjects", "subjects in the database", subjects),
            ("facerec_database_change_seq", "newest change-log seq in the database", database_seq),
            ("facerec_index_sync_lag_changes", "changes committed but not yet in this worker's index", lag),
        ]
    return services.metrics.render(gauges)
