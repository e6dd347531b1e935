"""The service's Prometheus metrics, on prometheus_client: one process, or summed over workers.

Single process (the default, ``facerec serve --workers 1``, every in-process
test app): each ``Metrics`` has a registry of its own, so several apps in one
process each count from zero, and the registry also carries the Python
process, platform and GC collectors.

Multiprocess (``facerec serve --workers N``, N > 1): ``PROMETHEUS_MULTIPROC_DIR``
names a folder where each worker writes its values to memory-mapped files,
and a scrape of any worker reads every worker's files: counters and
histograms are summed over the workers, those that have exited included, so
totals never go back; each gauge is aggregated as it declares below. The
process, platform and GC collectors are not available in this mode:
prometheus_client cannot aggregate them, and one worker's figures would pass
for the service's.

prometheus_client chooses where values live when it is first imported, from
that variable; ``cmd_serve`` sets it before uvicorn spawns the workers, and
``Metrics`` refuses to start when the variable and the import disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The exposition format generate_latest writes.
EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Seconds; covers /health (sub-millisecond) to a large enrolment.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def multiprocess_dir() -> Path | None:
    """The folder of multiprocess mode, or None when this process reports alone."""
    configured = os.environ.get(MULTIPROC_DIR_ENV)
    imported_multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
    if bool(configured) != imported_multiprocess:
        # Values would go to one place and scrapes read another: every counter would stay at 0.
        raise RuntimeError(
            f"{MULTIPROC_DIR_ENV} was set or removed after prometheus_client was imported; "
            "set it before the process starts"
        )
    return Path(configured) if configured else None


class Metrics:
    """The counters and histograms the middleware and use cases update, and the gauges.

    Gauges are written by ``app.services.health`` (at each scrape, and about
    once a second in multiprocess mode, since a scrape sees only what each
    worker last wrote). Their multiprocess aggregation: facts about one
    worker (its index, inference slots, uptime, lag) are ``liveall``, one
    sample per live worker with a ``pid`` label; the database's change seq
    only grows, so ``max``; the subject count is ``mostrecent``, the value of
    the latest scrape.
    """

    def __init__(self) -> None:
        # Process-wide and idempotent: the exposition keeps no ``*_created`` series (it never had any).
        disable_created_metrics()
        self.multiprocess_dir = multiprocess_dir()
        self._registry = CollectorRegistry()
        # In multiprocess mode values live in the workers' files; scrapes read those, not a registry.
        registry = None if self.multiprocess_dir else self._registry
        self._requests = Counter(
            "facerec_http_requests_total",
            "HTTP requests by route and status",
            ("method", "route", "status"),
            registry=registry,
        )
        self._latency = Histogram(
            "facerec_http_request_duration_seconds",
            "HTTP request latency by route",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._faces_detected = Counter(
            "facerec_faces_detected_total",
            "faces detected in uploaded images",
            ("endpoint",),
            registry=registry,
        )
        self._unhandled_errors = Counter(
            "facerec_unhandled_errors_total", "requests that ended in a 500", registry=registry
        )

        def worker_gauge(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, help_text, labels, multiprocess_mode="liveall", registry=registry)

        self.gallery_templates = worker_gauge(
            "facerec_gallery_templates", "face templates in this worker's index", ("collection",)
        )
        self.index_applied_seq = worker_gauge(
            "facerec_index_applied_seq", "change-log seq this worker's index reflects"
        )
        self.inference_workers = worker_gauge(
            "facerec_inference_workers", "inferences this process runs at once"
        )
        self.uptime_seconds = worker_gauge("facerec_uptime_seconds", "seconds since this process started")
        self.index_sync_age_seconds = worker_gauge(
            "facerec_index_sync_age_seconds", "seconds since the index last caught up"
        )
        self.gallery_subjects = Gauge(
            "facerec_gallery_subjects",
            "subjects in the database",
            ("collection",),
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self._collection_labels: dict[Gauge, set[str]] = {}  # the labels each gauge was last given
        self.database_change_seq = Gauge(
            "facerec_database_change_seq",
            "newest change-log seq in the database",
            multiprocess_mode="max",
            registry=registry,
        )
        self.index_sync_lag_changes = worker_gauge(
            "facerec_index_sync_lag_changes", "changes committed but not yet in this worker's index"
        )
        if self.multiprocess_dir is None:
            ProcessCollector(registry=self._registry)
            PlatformCollector(registry=self._registry)
            GCCollector(registry=self._registry)

    @property
    def multiprocess(self) -> bool:
        return self.multiprocess_dir is not None

    def set_by_collection(self, gauge: Gauge, values: dict[str, float]) -> None:
        """Set ``gauge`` per collection label; a label no longer given is removed (multiprocess: 0).

        A worker's files cannot forget a label, so there a deleted
        collection's series stays at 0 until the next start.
        """
        for label in self._collection_labels.get(gauge, set()) - values.keys():
            if self.multiprocess_dir is None:
                gauge.remove(label)
            else:
                gauge.labels(label).set(0)
        for label, value in values.items():
            gauge.labels(label).set(value)
        self._collection_labels[gauge] = set(values)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(method, route).observe(seconds)

    def faces_detected(self, endpoint: str, count: int) -> None:
        self._faces_detected.labels(endpoint).inc(count)

    def unhandled_error(self) -> None:
        self._unhandled_errors.inc()

    @property
    def unhandled_errors(self) -> int:
        """Requests of this process that ended in a 500 (its own count, in either mode)."""
        return int(
            sum(
                sample.value
                for family in self._unhandled_errors.collect()
                for sample in family.samples
                if sample.name == "facerec_unhandled_errors_total"
            )
        )

    def exposition(self) -> bytes:
        """The text exposition: this process's registry, or every worker's files."""
        if self.multiprocess_dir is None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        return generate_latest(registry)

    def forget_dead_workers(self) -> None:
        """Drop the per-worker gauges of workers that died without ending their lifespan.

        uvicorn kills a worker that stops answering its health checks (SIGKILL,
        no lifespan end) and starts another; without this the dead one would be
        reported as live, its lag frozen, until the next ``facerec serve``.
        """
        if self.multiprocess_dir is None:
            return
        for path in self.multiprocess_dir.glob("gauge_live*_*.db"):
            pid = int(path.stem.rsplit("_", 1)[1])
            if not _process_exists(pid):
                mark_process_dead(pid, str(self.multiprocess_dir))

    def close(self) -> None:
        """This process stops serving: its per-worker gauges leave the scrapes, its counts stay summed."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), str(self.multiprocess_dir))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
