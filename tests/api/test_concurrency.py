"""Concurrent enrol/identify/delete requests leave the database and the index identical."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.models import Face
from tests.api.conftest import (
    ENROLL_PHOTO,
    PROBE_PHOTO,
    ApiDatabase,
    enroll,
    identify,
    index_of,
    photo,
    services_of,
)


@pytest.fixture(scope="module")
def api_database(engine_database: ApiDatabase) -> ApiDatabase:
    """This module runs on FAISS and on Milvus (Lite), on SQLite and PostgreSQL."""
    return engine_database


def test_concurrent_writes_and_searches_keep_index_and_database_identical(client: TestClient) -> None:
    photos = [photo(path) for path in (*ENROLL_PHOTO.values(), *PROBE_PHOTO.values())]
    rng = random.Random(7)

    def request(i: int) -> tuple[str, int]:
        subject = f"busy-{i % 4}"  # several requests race on the same subjects
        kind = ("enroll", "enroll", "identify", "delete-subject", "delete-face")[i % 5]
        response: Any
        if kind == "enroll":
            response = enroll(client, subject, *rng.sample(photos, 2))
        elif kind == "identify":
            response = identify(client, rng.choice(photos), top_n=5)
        elif kind == "delete-subject":
            response = client.delete(f"/subjects/{subject}")
        else:
            faces = client.get(f"/subjects/{subject}").json().get("faces", [])
            response = client.delete(f"/faces/{faces[0]['face_id']}") if faces else client.get("/health")
        return kind, response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(request, range(50)))

    allowed = {"enroll": {201}, "identify": {200}, "delete-subject": {200, 404}, "delete-face": {200, 404}}
    assert all(status in allowed[kind] for kind, status in outcomes), outcomes
    services = services_of(client)
    with services.session_factory() as session:
        stored = set(session.scalars(select(Face.id).where(Face.model_name == services.model.name)))
    assert set(index_of(client).face_ids().tolist()) == stored
    # Every template identify can return still exists: a search over everything finds only stored faces.
    for image in photos[:3]:
        for candidate in identify(client, image, top_n=100).json()["faces"][0]["candidates"]:
            assert client.get(f"/faces/{candidate['face_id']}").status_code == 200
    assert services.metrics.unhandled_errors == 0
