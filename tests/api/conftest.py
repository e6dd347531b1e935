"""The service in process (TestClient) on real models, real photos and a real database.

Each module gets a fresh database per backend (SQLite always, PostgreSQL when
reachable) and one app on it; every app shares the session's one pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.db.collections import get_collection
from app.db.models import DEFAULT_COLLECTION
from app.index import SearchIndex
from app.main import create_app
from app.pipeline.face_pipeline import FacePipeline
from app.services.container import Services
from tests.conftest import SHARED_DATA, require_data
from tests.db.conftest import BACKENDS, PostgresServer, fresh_database, postgres_server  # noqa: F401

ADMIN_KEY = "test-admin-key-of-the-api-suite"
IDENTITIES = SHARED_DATA / "identities"

# Photos chosen from ../shared/data/identities: an enrolment photo and a different probe photo per person.
ENROLL_PHOTO = {
    "obama": "obama/examples__knn_examples__train__obama__obama.jpg",
    "biden": "biden/examples__biden.jpg",
    "kit_harington": "kit_harington/examples__knn_examples__train__kit_harington__john1.jpeg",
    "rose_leslie": "rose_leslie/examples__knn_examples__train__rose_leslie__img1.jpg",
    "alex_lacamoire": "alex_lacamoire/examples__knn_examples__train__alex_lacamoire__img1.jpg",
}
PROBE_PHOTO = {
    "obama": "obama/examples__knn_examples__test__obama1.jpg",
    "biden": "biden/examples__knn_examples__train__biden__biden2.jpg",
    "kit_harington": "kit_harington/examples__knn_examples__test__johnsnow_test1.jpg",
    "rose_leslie": "rose_leslie/examples__knn_examples__train__rose_leslie__img2.jpg",
    "alex_lacamoire": "alex_lacamoire/examples__knn_examples__test__alex_lacamoire1.jpg",
}
STRANGER_PHOTO = "lin_manuel_miranda/examples__lin-manuel-miranda.png"


def photo(relative: str) -> bytes:
    """Bytes of a photo under identities/ (or any path under ../shared/data when it has a folder)."""
    path = IDENTITIES / relative
    if not path.exists():
        path = SHARED_DATA / relative
    return require_data(path).read_bytes()


@dataclass(frozen=True)
class ApiDatabase:
    backend: str
    url: str
    folder: Path
    engine: str = "faiss"  # or "milvus": Milvus Lite in the module's folder

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.folder / "data",
            "database_url": self.url,
            "admin_key": ADMIN_KEY,
            "index_sync_interval_s": 0.1,
        }
        if self.engine == "milvus":
            values["index_url"] = str(self.folder / "milvus.db")
        values.update(overrides)
        return Settings(**values)


@pytest.fixture(scope="module", params=BACKENDS)
def api_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,  # noqa: F811
) -> Iterator[ApiDatabase]:
    folder = tmp_path_factory.mktemp(f"api-{request.param}")
    with fresh_database(request.param, folder, postgres_server) as url:
        yield ApiDatabase(request.param, url, folder)


# The modules that run on both index engines: (database backend, engine).
ENGINES = [("sqlite", "faiss"), ("postgresql", "faiss"), ("sqlite", "milvus"), ("postgresql", "milvus")]


@pytest.fixture(scope="module", params=ENGINES, ids=["-".join(pair) for pair in ENGINES])
def engine_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,  # noqa: F811
) -> Iterator[ApiDatabase]:
    """``api_database`` on each index engine: a module opts in with ``api_database = engine_database``."""
    backend, engine = request.param
    if engine == "milvus":
        pytest.importorskip("milvus_lite", reason="the milvus extra is not installed")
    folder = tmp_path_factory.mktemp(f"api-{backend}-{engine}")
    with fresh_database(backend, folder, postgres_server) as url:
        yield ApiDatabase(backend, url, folder, engine)


def start_client(
    database: ApiDatabase, pipeline: FacePipeline, *, key: str | None = ADMIN_KEY, **overrides: Any
) -> TestClient:
    """A started app (lifespan run) on ``database``; close it with ``client.__exit__``."""
    app = create_app(database.settings(**overrides), pipeline=pipeline)
    client = TestClient(app, headers={"X-API-Key": key} if key else {})
    client.__enter__()
    return client


@pytest.fixture(scope="module")
def client(api_database: ApiDatabase, pipeline: FacePipeline) -> Iterator[TestClient]:
    """The app of this module's database, authenticated as admin."""
    client = start_client(api_database, pipeline)
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def collection_id_of(client: TestClient, name: str = DEFAULT_COLLECTION) -> int:
    """The row id of a collection of the client's database."""
    with services_of(client).session_factory() as session:
        collection = get_collection(session, name)
        assert collection is not None, name
        return collection.id


def index_of(client: TestClient, name: str = DEFAULT_COLLECTION) -> SearchIndex:
    """This worker's index of a collection (``default`` unless named)."""
    return services_of(client).index.index_of(collection_id_of(client, name))


def enroll(client: TestClient, subject_id: str, *images: bytes, **fields: str) -> Any:
    """Multipart enrolment; returns the response."""
    files = [("file", (f"image{i}.jpg", data, "application/octet-stream")) for i, data in enumerate(images)]
    return client.post("/enroll", data={"subject_id": subject_id, **fields}, files=files)


def identify(client: TestClient, image: bytes, **fields: Any) -> Any:
    return client.post(
        "/identify", data={k: str(v) for k, v in fields.items()}, files={"file": ("probe.jpg", image)}
    )


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The documented error: status, the one JSON shape and its stable code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error
