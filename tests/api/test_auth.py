"""API keys: 401 without a valid key, 403 without the role, the first admin key, revocation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.core.settings import Settings
from app.pipeline.face_pipeline import FacePipeline
from tests.api.conftest import ENROLL_PHOTO, ApiDatabase, assert_error, enroll, photo, start_client
from tests.db.conftest import BACKENDS, PostgresServer, fresh_database


def test_requests_without_a_valid_key_are_refused(client: TestClient) -> None:
    anonymous = {"X-API-Key": ""}
    for method, path in [
        ("get", "/subjects"),
        ("post", "/identify"),
        ("get", "/faces/x"),
        ("get", "/admin/keys"),
    ]:
        error = assert_error(client.request(method, path, headers=anonymous), 401, "unauthorized")
        assert "X-API-Key" in error["message"]
    assert_error(client.get("/subjects", headers={"X-API-Key": "frk_made-up"}), 401, "unauthorized")
    assert_error(client.get("/subjects", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
    # Refused before the body is looked at: a bad upload without a key is still a 401.
    assert_error(client.post("/enroll", headers=anonymous, files={"file": b"junk"}), 401, "unauthorized")
    # Probes stay open for load balancers and Prometheus.
    for path in ("/health", "/ready", "/metrics"):
        assert client.get(path, headers=anonymous).status_code == 200


def test_roles_and_revocation(client: TestClient) -> None:
    created = client.post("/admin/keys", json={"role": "client", "name": "kiosk"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    prefix = created.json()["prefix"]
    assert key.startswith(prefix) and created.json()["role"] == "client"
    as_client = {"X-API-Key": key}

    assert enroll(client, "auth-subject", photo(ENROLL_PHOTO["biden"])).status_code == 201
    assert client.get("/subjects/auth-subject", headers=as_client).status_code == 200
    error = assert_error(client.get("/admin/keys", headers=as_client), 403, "forbidden")
    assert error["details"] == {"role": "client", "required": "admin"}
    assert_error(client.post("/admin/keys", headers=as_client, json={"role": "admin"}), 403, "forbidden")

    listed = client.get("/admin/keys").json()["items"]
    assert prefix in {item["prefix"] for item in listed}
    assert all("key" not in item for item in listed)  # never shown again

    assert client.delete(f"/admin/keys/{prefix}").json()["revoked_at"] is not None
    assert_error(client.get("/subjects", headers=as_client), 401, "unauthorized")
    assert_error(client.delete(f"/admin/keys/{prefix}"), 404, "api_key_not_found")


def test_an_empty_or_short_admin_key_is_refused() -> None:
    for bad in ("", "   ", "short"):
        with pytest.raises(ValidationError, match="FACEREC_ADMIN_KEY"):
            Settings(admin_key=bad)
    assert Settings().auth_enabled is True  # on unless switched off explicitly


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_first_start_prints_one_admin_key(
    backend: str,
    tmp_path: Path,
    postgres_server: PostgresServer,
    pipeline: FacePipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with fresh_database(backend, tmp_path, postgres_server) as url:
        database = ApiDatabase(backend, url, tmp_path)
        with caplog.at_level(logging.WARNING, logger="app.services.container"):
            first = start_client(database, pipeline, key=None, admin_key=None)
        try:
            (announcement,) = [r.getMessage() for r in caplog.records if "first_admin_key" in r.getMessage()]
            key = announcement.split("key=")[1].split()[0]
            assert first.get("/admin/keys", headers={"X-API-Key": key}).status_code == 200
            assert_error(
                first.get("/admin/keys", headers={"X-API-Key": "test-admin-key-of-the-api-suite"}),
                401,
                "unauthorized",
            )
        finally:
            first.__exit__(None, None, None)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="app.services.container"):
            second = start_client(database, pipeline, key=key, admin_key=None)
        try:
            assert not [r for r in caplog.records if "first_admin_key" in r.getMessage()]
            assert len(second.get("/admin/keys").json()["items"]) == 1
        finally:
            second.__exit__(None, None, None)

        # Auth off, explicitly: no key needed, none created.
        open_app = start_client(database, pipeline, key=None, admin_key=None, auth_enabled=False)
        try:
            assert open_app.get("/subjects").status_code == 200
        finally:
            open_app.__exit__(None, None, None)
