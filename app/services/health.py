"""Readiness, and the gauges of /metrics: written at each scrape and, with several workers, every second."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from app.core.logging import log_event
from app.db.changes import current_change_seq
from app.db.subjects import count_subjects
from app.schemas.system import ReadyStatus

if TYPE_CHECKING:
    # Only for annotations: the container imports this module to start the refresher.
    from app.services.container import Services

logger = logging.getLogger(__name__)

# The index counts as in step while its follower caught up this recently.
MIN_STALE_AFTER_S = 5.0
# In multiprocess mode a scrape shows another worker's gauges at most this old.
GAUGE_REFRESH_INTERVAL_S = 1.0


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


def refresh_gauges(services: Services, *, include_subjects: bool = True) -> None:
    """Write this worker's facts and the database's into the gauges of ``services.metrics``.

    ``include_subjects=False`` (the once-a-second refresher) skips counting
    the subjects, a full count on a large gallery; the change seq is one
    index lookup. When the database is unreachable its gauges keep their
    last values (/ready reports the outage) and this worker's lag is NaN:
    unknown, not 0.
    """
    metrics = services.metrics
    follower = services.index
    metrics.gallery_templates.set(follower.index.ntotal)
    metrics.index_applied_seq.set(follower.index.applied_seq)
    metrics.inference_workers.set(services.inference.workers)
    metrics.uptime_seconds.set(time.monotonic() - services.started_at)
    age = follower.seconds_since_sync()
    metrics.index_sync_age_seconds.set(math.nan if age is None else age)
    try:
        with services.session_factory() as session:
            database_seq = current_change_seq(session)
            subjects = count_subjects(session) if include_subjects else None
    except SQLAlchemyError:
        metrics.index_sync_lag_changes.set(math.nan)
        return
    metrics.database_change_seq.set(database_seq)
    metrics.index_sync_lag_changes.set(max(0, database_seq - follower.index.applied_seq))
    if subjects is not None:
        metrics.gallery_subjects.set(subjects)


def metrics_exposition(services: Services) -> bytes:
    """The /metrics text, with this worker's gauges refreshed now."""
    refresh_gauges(services)
    return services.metrics.exposition()


class GaugeRefresher:
    """A thread that rewrites this worker's gauges about once a second (multiprocess mode).

    A scrape is answered by one worker, which refreshes its own gauges and
    reads what every other worker last wrote; without this thread another
    worker's uptime, index size or lag would be as old as the last scrape it
    happened to answer.
    """

    def __init__(self, services: Services, interval_s: float = GAUGE_REFRESH_INTERVAL_S) -> None:
        self._services = services
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Written once before the first interval, so a scrape of another worker sees this one at once.
        refresh_gauges(self._services)
        self._thread = threading.Thread(target=self._run, name="metrics-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            refresh_gauges(self._services, include_subjects=False)
            self._services.metrics.forget_dead_workers()
