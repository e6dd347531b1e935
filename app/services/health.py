"""Readiness, and the gauges of /metrics: written at each scrape and, with several workers, every second."""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from app.core.logging import log_event
from app.core.periodic import Periodic
from app.db.changes import current_change_seq
from app.db.collections import all_collections, collection_labels, subjects_by_collection
from app.db.models import Collection
from app.pipeline.runtime import providers_in_use
from app.schemas.system import CollectionReadiness, ReadyStatus

if TYPE_CHECKING:
    # Only for annotations: the container imports this module to start the refresher.
    from app.services.container import Services

logger = logging.getLogger(__name__)

# The index counts as in step while its follower caught up this recently.
MIN_STALE_AFTER_S = 5.0
# The label of the gallery gauges summed over the collections past ``metrics_max_collections``.
OTHER_COLLECTIONS = "_other"
# In multiprocess mode a scrape shows another worker's gauges at most this old.
GAUGE_REFRESH_INTERVAL_S = 1.0


def readiness(services: Services) -> ReadyStatus:
    """Ready: the database answers and the indexes caught up recently; each collection's state beside it."""
    database_seq: int | None = None
    collections: list[Collection] = []
    try:
        with services.session_factory() as session:
            database_seq = current_change_seq(session)
            collections = all_collections(session)
    except SQLAlchemyError as error:
        log_event(logger, "ready.database_unreachable", logging.WARNING, error=type(error).__name__)
    follower = services.index
    age = follower.seconds_since_sync()
    stale_after = max(MIN_STALE_AFTER_S, 10 * services.settings.index_sync_interval_s)
    fresh = database_seq is not None and age is not None and age <= stale_after
    templates = follower.templates_by_collection()
    states = [
        CollectionReadiness(
            collection_id=collection.external_id,
            model=collection.model_name,
            indexed=follower.space_of(collection.model_name) is not None,
            templates=templates.get(collection.id, 0),
            change_seq=collection.change_seq,
            in_step=fresh and collection.change_seq <= follower.applied_seq,
        )
        for collection in collections
    ]
    # Ready while the follower keeps up; a collection whose newest change this worker has not
    # replayed yet (written a moment ago by another worker) is shown, not a reason to leave rotation.
    return ReadyStatus(
        ready=database_seq is not None and fresh,
        models_loaded=True,
        database=database_seq is not None,
        index_in_step=fresh,
        index_templates=sum(templates.values()),
        index_applied_seq=follower.applied_seq,
        database_seq=database_seq,
        seconds_since_sync=None if age is None else round(age, 3),
        inference_providers=providers_in_use(),
        collections=states,
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
    metrics.index_applied_seq.set(follower.applied_seq)
    metrics.inference_workers.set(services.inference.workers)
    metrics.uptime_seconds.set(time.monotonic() - services.started_at)
    age = follower.seconds_since_sync()
    metrics.index_sync_age_seconds.set(math.nan if age is None else age)
    try:
        with services.session_factory() as session:
            database_seq = current_change_seq(session)
            labels = collection_labels(session, services.settings.metrics_max_collections)
            subjects = subjects_by_collection(session) if include_subjects else None
    except SQLAlchemyError:
        metrics.index_sync_lag_changes.set(math.nan)
        return
    metrics.database_change_seq.set(database_seq)
    metrics.index_sync_lag_changes.set(max(0, database_seq - follower.applied_seq))
    metrics.set_by_collection(
        metrics.gallery_templates, _labelled(follower.templates_by_collection(), labels)
    )
    if subjects is not None:
        metrics.set_by_collection(metrics.gallery_subjects, _labelled(subjects, labels))


def _labelled(per_collection: dict[int, int], labels: dict[int, str]) -> dict[str, float]:
    """Values by collection id → by label, the collections past the labelled ones summed as ``_other``."""
    out: dict[str, float] = dict.fromkeys(labels.values(), 0.0)
    for collection_id, value in per_collection.items():
        label = labels.get(collection_id, OTHER_COLLECTIONS)
        out[label] = out.get(label, 0.0) + value
    return out


def metrics_exposition(services: Services) -> bytes:
    """The /metrics text, with this worker's gauges refreshed now."""
    refresh_gauges(services)
    return services.metrics.exposition()


class GaugeRefresher(Periodic):
    """A thread that rewrites this worker's gauges about once a second (multiprocess mode).

    A scrape is answered by one worker, which refreshes its own gauges and
    reads what every other worker last wrote; without this thread another
    worker's uptime, index size or lag would be as old as the last scrape it
    happened to answer.
    """

    name = "metrics-refresh"

    def __init__(self, services: Services, interval_s: float = GAUGE_REFRESH_INTERVAL_S) -> None:
        super().__init__(interval_s)
        self._services = services

    def start(self) -> None:
        # Written once before the first interval, so a scrape of another worker sees this one at once.
        refresh_gauges(self._services)
        super().start()

    def tick(self) -> None:
        refresh_gauges(self._services, include_subjects=False)
        self._services.metrics.forget_dead_workers()
