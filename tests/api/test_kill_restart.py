"""kill -9 right after enrolments are acknowledged: after a restart every one of them is found.

The real command, on both index engines: FAISS with two workers (one writes
the snapshots the other maps, and a kill leaves a snapshot older than the
database), and Milvus Lite (one process: an embedded Milvus cannot be
shared), where the kill can fall between a write to Milvus and the change
seq stored with it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.core.settings import Settings
from app.model_packs.build import build_default_pack
from tests.api.conftest import ENROLL_PHOTO, PROBE_PHOTO, photo
from tests.api.served import Server, start_server, wait_until_ready

ADMIN_KEY = "test-admin-key-of-the-kill-test"
HEADERS = {"X-API-Key": ADMIN_KEY}


def enrol(server: Server, subject: str, image: bytes) -> None:
    response = httpx.post(
        server.base_url + "/enroll",
        data={"subject_id": subject},
        files={"file": ("photo.jpg", image)},
        headers=HEADERS,
        timeout=120.0,
    )
    assert response.status_code == 201, response.text


def top_subject(server: Server, image: bytes) -> str | None:
    response = httpx.post(
        server.base_url + "/identify", files={"file": ("probe.jpg", image)}, headers=HEADERS, timeout=120.0
    )
    assert response.status_code == 200, response.text
    candidates = response.json()["faces"][0]["candidates"]
    return candidates[0]["subject_id"] if candidates else None


def index_templates(server: Server) -> int:
    return int(httpx.get(server.base_url + "/ready", timeout=30.0).json()["index_templates"])


@pytest.mark.parametrize(("engine", "workers"), [("faiss", 2), ("milvus", 1)])
def test_acknowledged_enrolments_survive_a_kill(
    engine: str, workers: int, tmp_path: Path, settings: Settings
) -> None:
    if engine == "milvus":
        pytest.importorskip("milvus_lite", reason="the milvus-lite extra is not installed")
    build_default_pack(settings.models_dir)  # a no-op when `make models` already built it
    values = {"FACEREC_ADMIN_KEY": ADMIN_KEY, "FACEREC_INDEX_SNAPSHOT_INTERVAL_S": "1"}
    if engine == "milvus":
        values["FACEREC_INDEX_URL"] = str(tmp_path / "milvus.db")
    people = list(ENROLL_PHOTO)
    first = start_server(tmp_path, settings.models_dir, workers, values)
    try:
        wait_until_ready(first)
        for person in people[:2]:
            enrol(first, person, photo(ENROLL_PHOTO[person]))
        if engine == "faiss":
            wait_until_ready(first, lambda: any((tmp_path / "data" / "index").rglob("*.faiss")))
        for person in people[2:]:  # after the snapshot: only the change log has them
            enrol(first, person, photo(ENROLL_PHOTO[person]))
    finally:
        first.kill()
    again = start_server(tmp_path, settings.models_dir, workers, values)
    try:
        wait_until_ready(again)
        assert index_templates(again) == len(people)
        for person in people:
            assert top_subject(again, photo(PROBE_PHOTO[person])) == person
    finally:
        again.stop()
