"""`facerec serve --workers 2` as real processes: any worker's /metrics reports the whole service.

One server for the module, on SQLite in a fresh data folder. Every request
opens a fresh connection, so the two workers take turns answering.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from app.core.settings import Settings
from app.model_packs.build import build_default_pack
from tests.api.conftest import ENROLL_PHOTO, photo
from tests.api.served import Server, start_server, wait_until_ready

ADMIN_KEY = "test-admin-key-of-the-workers-test"
WORKERS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[Server]:
    """The real command, ready, with both workers reporting; always stopped at the end."""
    build_default_pack(settings.models_dir)  # a no-op when `make models` already built it
    folder = tmp_path_factory.mktemp("serve-workers")
    running = start_server(folder, settings.models_dir, WORKERS, {"FACEREC_ADMIN_KEY": ADMIN_KEY})
    try:
        wait_until_ready(running, lambda: len(worker_values(running, "uptime_seconds")) == WORKERS)
        yield running
    finally:
        running.stop()


def get(server: Server, path: str) -> httpx.Response:
    """One request on a connection of its own, so either worker may answer."""
    return httpx.get(server.base_url + path, timeout=30.0)


def scrape(server: Server) -> dict[str, Metric]:
    response = get(server, "/metrics")
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def worker_values(
    server: Server, gauge: str, families: dict[str, Metric] | None = None, **labels: str
) -> dict[int, float]:
    """A per-worker gauge (``facerec_<gauge>``) by worker pid, of the samples with these other labels."""
    family = (families or scrape(server))[f"facerec_{gauge}"]
    return {
        int(sample.labels["pid"]): sample.value
        for sample in family.samples
        if {key: value for key, value in sample.labels.items() if key != "pid"} == labels
    }


def requests_counted(families: dict[str, Metric], route: str | None = None) -> float:
    family = families["facerec_http_requests"]
    return sum(
        sample.value
        for sample in family.samples
        if sample.name == "facerec_http_requests_total" and route in (None, sample.labels["route"])
    )


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past "(name)"


def test_every_scrape_counts_the_requests_of_both_workers(server: Server) -> None:
    for _ in range(40):
        assert get(server, "/health").status_code == 200
    # A worker counts a request just after sending its response: let the last one land.
    deadline = time.monotonic() + 10.0
    while requests_counted(scrape(server), "/health") < 40 and time.monotonic() < deadline:
        time.sleep(0.1)

    totals = []
    for _ in range(10):
        families = scrape(server)
        assert requests_counted(families, "/health") == 40  # every worker's, whichever answers
        assert len(worker_values(server, "uptime_seconds", families)) == WORKERS  # both report
        latency = families["facerec_http_request_duration_seconds"]
        health_count = [
            s.value
            for s in latency.samples
            if s.name == "facerec_http_request_duration_seconds_count" and s.labels["route"] == "/health"
        ]
        assert health_count == [40.0]  # one histogram summed over the workers, not one per worker
        totals.append(requests_counted(families))
    assert totals == sorted(totals) and totals[-1] > totals[0]  # the scrapes themselves count up


def test_each_live_worker_reports_its_own_gauges(server: Server) -> None:
    response = httpx.post(
        server.base_url + "/enroll",
        headers={"X-API-Key": ADMIN_KEY},
        data={"subject_id": "workers-subject"},
        files={"file": ("obama.jpg", photo(ENROLL_PHOTO["obama"]))},
        timeout=120.0,
    )
    assert response.status_code == 201, response.text
    # The worker that did not enrol follows the change log; its refresher writes what it holds.
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        families = scrape(server)
        templates = worker_values(server, "gallery_templates", families, collection="default")
        if list(templates.values()) == [1.0] * WORKERS:
            break
        time.sleep(0.2)

    first = last = scrape(server)
    for _ in range(10):
        time.sleep(0.3)  # the scrapes span a few of the workers' once-a-second refreshes
        last = scrape(server)
        slots = worker_values(server, "inference_workers", last)
        assert len(slots) == WORKERS
        for pid in slots:
            assert parent_pid(pid) == server.process.pid  # a live worker of this server
        # The default split of the cores between the two processes.
        assert set(slots.values()) == {max(1, (os.cpu_count() or 1) // WORKERS)}
        assert set(worker_values(server, "gallery_templates", last, collection="default").values()) == {1.0}
        assert set(worker_values(server, "index_sync_lag_changes", last).values()) == {0.0}
        applied = worker_values(server, "index_applied_seq", last)
        # Facts about the database are one sample, not one per worker.
        database_seq = last["facerec_database_change_seq"].samples
        assert [(s.labels, s.value) for s in database_seq] == [({}, max(applied.values()))]
        subjects = last["facerec_gallery_subjects"].samples
        assert [(s.labels, s.value) for s in subjects] == [({"collection": "default"}, 1.0)]
    # Each worker's own figures move on between scrapes, whichever worker answers them.
    started = worker_values(server, "uptime_seconds", first)
    ended = worker_values(server, "uptime_seconds", last)
    assert started.keys() == ended.keys() and all(ended[pid] > started[pid] for pid in started)
    # One process's collectors would pass for the service's: multiprocess mode leaves them out.
    assert not any(name.startswith(("process_", "python_gc")) for name in last)


def test_a_stopped_worker_leaves_the_live_gauges_and_its_counts_stay(server: Server) -> None:
    metrics_dir = server.data_dir / "prometheus-multiproc"
    assert list(metrics_dir.glob("gauge_liveall_*.db"))
    server.stop()
    assert server.process.returncode == 0, server.log_tail()
    assert list(metrics_dir.glob("gauge_liveall_*.db")) == []  # each lifespan end marked its worker dead
    # Counts stay: a worker that exits (or is replaced) never takes its requests out of the sums.
    assert len(list(metrics_dir.glob("counter_*.db"))) >= WORKERS
