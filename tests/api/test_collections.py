"""Collections over HTTP: separate galleries in one service, real photos, SQLite and PostgreSQL.

Each test creates collections of its own (ids carry the test's name), so the
module's shared database can hold them side by side with ``default``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.cli import main
from app.db.models import Face
from app.pipeline.face_pipeline import FacePipeline
from tests.api.conftest import (
    ENROLL_PHOTO,
    PROBE_PHOTO,
    ApiDatabase,
    assert_error,
    collection_id_of,
    index_of,
    photo,
    services_of,
    start_client,
)


@pytest.fixture(scope="module")
def api_database(engine_database: ApiDatabase) -> ApiDatabase:
    """This module runs on FAISS and on Milvus (Lite), on SQLite and PostgreSQL."""
    return engine_database


OBAMA = (
    "obama/examples__knn_examples__train__obama__obama.jpg",
    "obama/examples__knn_examples__train__obama__obama2.jpg",
    "obama/tests__test_images__obama3.jpg",
)
BIDEN = ("biden/examples__biden.jpg", "biden/examples__knn_examples__train__biden__biden2.jpg")


def create(client: TestClient, collection_id: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/collections", json={"collection_id": collection_id, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def enroll_in(client: TestClient, collection: str, subject_id: str, *paths: str, **headers: str) -> Any:
    files = [
        ("file", (f"image{i}.jpg", photo(path), "application/octet-stream")) for i, path in enumerate(paths)
    ]
    return client.post(
        f"/collections/{collection}/enroll", data={"subject_id": subject_id}, files=files, headers=headers
    )


def identify_in(client: TestClient, collection: str, path: str, **headers: str) -> Any:
    return client.post(
        f"/collections/{collection}/identify",
        data={"top_n": "10"},
        files={"file": ("probe.jpg", photo(path))},
        headers=headers,
    )


def face_ids(client: TestClient, collection: str) -> set[str]:
    subjects = client.get(f"/collections/{collection}/subjects", params={"limit": 500}).json()["items"]
    found: set[str] = set()
    for subject in subjects:
        detail = client.get(f"/collections/{collection}/subjects/{subject['subject_id']}").json()
        found |= {face["face_id"] for face in detail["faces"]}
    return found


@pytest.fixture(scope="module")
def two_shops(client: TestClient) -> Iterator[tuple[str, str]]:
    """Collections A and B, the same subject id ``p1`` in each for Obama (other photos), Biden in A only."""
    a, b = "shop-a", "shop-b"
    create(client, a, name="Shop A", metadata={"city": "Oslo"})
    create(client, b)
    assert enroll_in(client, a, "p1", OBAMA[0]).status_code == 201
    assert enroll_in(client, b, "p1", OBAMA[1]).status_code == 201
    assert enroll_in(client, a, "p2", *BIDEN[:1]).status_code == 201
    yield a, b


def test_create_read_list_and_patch(client: TestClient, two_shops: tuple[str, str]) -> None:
    a, b = two_shops
    shop = client.get(f"/collections/{a}").json()
    model = services_of(client).model.name
    assert shop == {
        **shop,
        "collection_id": a,
        "name": "Shop A",
        "metadata": {"city": "Oslo"},
        "model": model,
    }
    assert (shop["subjects"], shop["templates"]) == (2, 2)
    listed = client.get("/collections", params={"limit": 2}).json()
    assert listed["total"] >= 3 and len(listed["items"]) == 2 and listed["next_cursor"]
    rest = client.get("/collections", params={"limit": 500, "cursor": listed["next_cursor"]}).json()
    names = [c["collection_id"] for c in listed["items"] + rest["items"]]
    assert names[0] == "default" and {a, b} <= set(names) and len(names) == len(set(names))
    patched = client.patch(f"/collections/{b}", json={"name": "Shop B", "metadata": {"floor": 2}})
    assert patched.status_code == 200 and patched.json()["name"] == "Shop B"
    assert client.patch(f"/collections/{b}", json={"name": None}).json()["metadata"] == {"floor": 2}


def test_bad_ids_existing_ids_unknown_models_and_the_default(client: TestClient) -> None:
    for bad in ("", "has space", "slash/es", "x" * 65, "ümlaut"):
        error = assert_error(
            client.post("/collections", json={"collection_id": bad}), 422, "invalid_collection_id"
        )
        assert "pattern" in error["details"]
    create(client, "once")
    assert_error(client.post("/collections", json={"collection_id": "once"}), 409, "collection_exists")
    error = assert_error(
        client.post("/collections", json={"collection_id": "other-model", "model": "buffalo_l"}),
        422,
        "model_not_found",
    )
    assert error["details"]["model"] == "buffalo_l"
    assert_error(client.delete("/collections/default"), 409, "collection_protected")
    assert_error(client.get("/collections/never-made"), 404, "collection_not_found")
    assert_error(
        client.post("/collections", json={"collection_id": "x", "extra": 1}), 422, "validation_error"
    )


def test_the_same_subject_id_in_two_collections_is_two_people(
    client: TestClient, two_shops: tuple[str, str]
) -> None:
    a, b = two_shops
    in_a, in_b = face_ids(client, a), face_ids(client, b)
    assert in_a and in_b and not in_a & in_b
    probe = OBAMA[2]  # neither collection's photo
    found_a = identify_in(client, a, probe).json()
    found_b = identify_in(client, b, probe).json()
    assert found_a["collection"] == a and found_b["collection"] == b
    top_a, top_b = found_a["faces"][0]["candidates"][0], found_b["faces"][0]["candidates"][0]
    assert top_a["subject_id"] == top_b["subject_id"] == "p1"
    assert top_a["face_id"] in in_a and top_b["face_id"] in in_b
    assert found_a["faces"][0]["match"]["subject_id"] == "p1"

    # Biden is enrolled in A only: identified in B he is nobody, and no face of A is a candidate there.
    biden_in_b = identify_in(client, b, BIDEN[1]).json()["faces"][0]
    assert biden_in_b["match"] is None
    assert all(candidate["face_id"] in in_b for candidate in biden_in_b["candidates"])
    assert identify_in(client, a, BIDEN[1]).json()["faces"][0]["match"]["subject_id"] == "p2"
    # The unprefixed routes are the default collection, which holds none of them.
    unprefixed = client.post(
        "/identify", data={"top_n": "100"}, files={"file": ("p.jpg", photo(probe))}
    ).json()
    assert not {c["face_id"] for c in unprefixed["faces"][0]["candidates"]} & (in_a | in_b)
    assert unprefixed["collection"] == "default"


def test_a_scoped_key_reaches_its_collections_only(client: TestClient, two_shops: tuple[str, str]) -> None:
    a, b = two_shops
    created = client.post("/admin/keys", json={"role": "client", "name": "shop a", "collections": [a]})
    assert created.status_code == 201, created.text
    assert created.json()["collections"] == [a]
    scoped = {"X-API-Key": created.json()["key"]}
    assert [c["collection_id"] for c in client.get("/collections", headers=scoped).json()["items"]] == [a]
    assert client.get("/collections", headers=scoped).json()["total"] == 1
    assert identify_in(client, a, OBAMA[2], **scoped).status_code == 200

    face_of_b = next(iter(face_ids(client, b)))
    image = ("i.jpg", photo(OBAMA[2]))
    for collection in (b, "no-such-shop", "default"):
        prefix = f"/collections/{collection}"
        requests = [
            ("get", prefix, {}),
            ("post", f"{prefix}/enroll", {"data": {"subject_id": "intruder"}, "files": {"file": image}}),
            ("post", f"{prefix}/identify", {"files": {"file": image}}),
            ("post", f"{prefix}/verify", {"data": {"subject_id": "p1"}, "files": {"file": image}}),
            ("post", f"{prefix}/verify", {"files": {"file_a": image, "file_b": image}}),
            ("get", f"{prefix}/subjects", {}),
            ("get", f"{prefix}/subjects/p1", {}),
            ("patch", f"{prefix}/subjects/p1", {"json": {"name": "x"}}),
            ("delete", f"{prefix}/subjects/p1", {}),
            ("get", f"{prefix}/faces/{face_of_b}", {}),
            ("delete", f"{prefix}/faces/{face_of_b}", {}),
        ]
        for method, path, options in requests:
            response = client.request(method, path, headers=scoped, **options)
            error = assert_error(response, 404, "collection_not_found")
            assert error["details"] == {"collection_id": collection}, (method, path)
    # The unprefixed routes are default's: out of this key's reach too.
    assert_error(client.get("/subjects", headers=scoped), 404, "collection_not_found")
    # Nothing was changed in B by any of it.
    assert client.get(f"/collections/{b}/subjects/p1").status_code == 200
    assert client.get(f"/collections/{b}/subjects/intruder").status_code == 404
    listing = client.get("/admin/keys").json()["items"]
    assert {item["prefix"]: item["collections"] for item in listing}[created.json()["prefix"]] == [a]
    assert_error(
        client.post("/admin/keys", json={"role": "client", "collections": ["nope"]}),
        404,
        "collection_not_found",
    )
    assert_error(
        client.post("/admin/keys", json={"role": "admin", "collections": [a]}), 422, "validation_error"
    )


def test_the_command_line_makes_scoped_keys_too(
    client: TestClient,
    two_shops: tuple[str, str],
    api_database: ApiDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = two_shops
    monkeypatch.setenv("FACEREC_DATABASE_URL", api_database.url)
    monkeypatch.setenv("FACEREC_DATA_DIR", str(api_database.folder / "data"))
    assert main(["keys", "create", "--role", "client", "--name", "cli", "--collection", b]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"for {b}" in printed[0]
    key = {"X-API-Key": printed[-1]}
    assert [c["collection_id"] for c in client.get("/collections", headers=key).json()["items"]] == [b]
    assert_error(identify_in(client, a, OBAMA[2], **key), 404, "collection_not_found")
    assert main(["keys", "list"]) == 0
    assert any(
        line.startswith(printed[-1][:12]) and f" {b} " in line
        for line in capsys.readouterr().out.splitlines()
    )


def test_two_workers_creating_one_id_at_once_make_one_collection(
    client: TestClient, api_database: ApiDatabase, pipeline: FacePipeline
) -> None:
    other = start_client(api_database, pipeline)
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            statuses = list(
                pool.map(
                    lambda worker: worker.post("/collections", json={"collection_id": "raced"}).status_code,
                    [client, other] * 3,
                )
            )
        assert sorted(statuses) == [201, 409, 409, 409, 409, 409]
        listed = client.get("/collections", params={"limit": 500}).json()["items"]
        assert [c["collection_id"] for c in listed].count("raced") == 1
    finally:
        other.__exit__(None, None, None)


def test_thresholds_and_reports_belong_to_their_collection(
    client: TestClient, two_shops: tuple[str, str]
) -> None:
    a, b = two_shops
    before_b = client.get(f"/admin/collections/{b}/threshold").json()
    before_default = client.get("/admin/threshold").json()
    put = client.put(
        f"/admin/collections/{a}/threshold", json={"verify_threshold": 0.999, "identify_threshold": 0.999}
    )
    assert put.status_code == 200 and put.json()["collection"] == a
    assert client.get(f"/admin/collections/{b}/threshold").json() == before_b
    assert client.get("/admin/threshold").json()["verify_threshold"] == before_default["verify_threshold"]
    # The same probe and template: refused in A at its new threshold, matched in B at its own.
    files = {"file": ("probe.jpg", photo(OBAMA[2]))}
    in_a = client.post(f"/collections/{a}/verify", data={"subject_id": "p1"}, files=files).json()
    in_b = client.post(f"/collections/{b}/verify", data={"subject_id": "p1"}, files=files).json()
    assert (in_a["collection"], in_a["threshold"], in_a["match"]) == (a, 0.999, False)
    assert (in_b["collection"], in_b["threshold"], in_b["match"]) == (b, before_b["verify_threshold"], True)
    assert identify_in(client, a, OBAMA[2]).json()["faces"][0]["match"] is None
    assert identify_in(client, b, OBAMA[2]).json()["faces"][0]["match"]["subject_id"] == "p1"
    history = client.get(f"/admin/collections/{a}/threshold").json()["history"]
    assert {change["key"] for change in history} == {"verify_threshold", "identify_threshold"}
    assert client.get(f"/admin/collections/{b}/threshold").json()["history"] == before_b["history"]

    # A's report holds A's templates only; B has too few for one.
    assert enroll_in(client, a, "p1", OBAMA[2]).status_code == 201
    report = client.get(f"/admin/collections/{a}/report").json()
    assert (
        report["collection"] == a and report["counts"]["subjects"] == 2 and report["counts"]["templates"] == 3
    )
    assert report["operating"]["verify_threshold"] == 0.999
    assert_error(client.get(f"/admin/collections/{b}/report"), 409, "not_enough_data")
    stats = client.get(f"/admin/collections/{a}/stats").json()
    assert (stats["collection"], stats["subjects"], stats["faces"], stats["index_size"]) == (a, 2, 3, 3)


def test_deleting_a_collection_stops_it_everywhere_at_once_and_after_a_restart(
    client: TestClient, api_database: ApiDatabase, pipeline: FacePipeline
) -> None:
    doomed, kept = "doomed", "kept"
    create(client, doomed)
    create(client, kept)
    assert enroll_in(client, doomed, "p1", *ENROLL_PHOTO.values()).status_code == 201
    assert enroll_in(client, kept, "p1", OBAMA[0]).status_code == 201
    doomed_id = collection_id_of(client, doomed)
    other = start_client(api_database, pipeline, index_sync_interval_s=0.3)  # a second worker process
    try:
        expected_kept = identify_in(other, kept, OBAMA[2]).json()["faces"][0]["candidates"]
        assert services_of(other).index.templates_by_collection()[doomed_id] == len(ENROLL_PHOTO)
        follower, model = services_of(client).index, services_of(client).model.name
        snapshots = follower.snapshots(model)
        follower.save_snapshots()
        assert follower.engine.stored(doomed_id, model)  # a snapshot (FAISS), a Milvus collection

        deleted = client.delete(f"/collections/{doomed}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {
            "collection_id": doomed,
            "deleted_subjects": 1,
            "deleted_templates": len(ENROLL_PHOTO),
        }
        assert_error(identify_in(other, doomed, OBAMA[2]), 404, "collection_not_found")
        deadline = time.monotonic() + 1.0
        while doomed_id in services_of(other).index.templates_by_collection() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert doomed_id not in services_of(other).index.templates_by_collection()
        assert not follower.engine.stored(doomed_id, model)  # its embeddings are gone from disk too
        assert identify_in(other, kept, OBAMA[2]).json()["faces"][0]["candidates"] == expected_kept
    finally:
        other.__exit__(None, None, None)
    # The one-gallery snapshot an earlier version left beside the folder holds embeddings too.
    legacy = snapshots.folder.parent / f"{snapshots.folder.name}.npz"
    if api_database.engine == "faiss":
        legacy.write_bytes(b"an old snapshot")
    restarted = start_client(api_database, pipeline)
    try:
        assert not legacy.exists()
        assert_error(restarted.get(f"/collections/{doomed}"), 404, "collection_not_found")
        assert doomed_id not in services_of(restarted).index.templates_by_collection()
        assert identify_in(restarted, kept, OBAMA[2]).json()["faces"][0]["candidates"] == expected_kept
        with services_of(restarted).session_factory() as session:
            assert not session.scalars(select(Face.id).where(Face.collection_id == doomed_id)).all()
    finally:
        restarted.__exit__(None, None, None)
    assert_error(client.delete(f"/collections/{doomed}"), 404, "collection_not_found")


def test_concurrent_requests_over_three_collections_keep_every_index_identical_to_the_database(
    client: TestClient,
) -> None:
    shops = ["busy-1", "busy-2", "busy-3"]
    for shop in shops:
        create(client, shop)
    photos = [*ENROLL_PHOTO.values(), *PROBE_PHOTO.values()]

    def request(i: int) -> tuple[str, int]:
        shop, subject = shops[i % 3], f"s{i % 4}"
        kind = ("enroll", "enroll", "identify", "delete-subject", "delete-face")[i % 5]
        prefix = f"/collections/{shop}"
        if kind == "enroll":
            response = enroll_in(
                client, shop, subject, photos[i % len(photos)], photos[(i + 3) % len(photos)]
            )
        elif kind == "identify":
            response = identify_in(client, shop, photos[i % len(photos)])
        elif kind == "delete-subject":
            response = client.delete(f"{prefix}/subjects/{subject}")
        else:
            faces = client.get(f"{prefix}/subjects/{subject}").json().get("faces", [])
            response = (
                client.delete(f"{prefix}/faces/{faces[0]['face_id']}") if faces else client.get("/health")
            )
        return kind, response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(request, range(50)))
    allowed = {"enroll": {201}, "identify": {200}, "delete-subject": {200, 404}, "delete-face": {200, 404}}
    assert all(status in allowed[kind] for kind, status in outcomes), outcomes
    services = services_of(client)
    for shop in shops:
        with services.session_factory() as session:
            stored = set(
                session.scalars(select(Face.id).where(Face.collection_id == collection_id_of(client, shop)))
            )
        assert set(index_of(client, shop).face_ids().tolist()) == stored, shop
    assert services.metrics.unhandled_errors == 0


def test_ready_and_metrics_speak_of_each_collection(client: TestClient, two_shops: tuple[str, str]) -> None:
    a, _ = two_shops
    ready = client.get("/ready").json()
    states = {state["collection_id"]: state for state in ready["collections"]}
    assert ready["ready"] and states[a]["in_step"] and states[a]["indexed"]
    assert states[a]["templates"] == index_of(client, a).ntotal
    text = client.get("/metrics").text
    assert f'facerec_gallery_templates{{collection="{a}"}} {float(index_of(client, a).ntotal)}' in text
    assert f'facerec_gallery_subjects{{collection="{a}"}}' in text


def test_collections_past_the_labelled_ones_are_summed_as_other(
    client: TestClient, two_shops: tuple[str, str], api_database: ApiDatabase, pipeline: FacePipeline
) -> None:
    bounded = start_client(api_database, pipeline, metrics_max_collections=1)
    try:
        samples = [
            line
            for line in bounded.get("/metrics").text.splitlines()
            if line.startswith("facerec_gallery_templates{")
        ]
        labels = {
            line.split('collection="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1]) for line in samples
        }
        assert set(labels) == {"default", "_other"}  # the oldest collection keeps its label
        assert sum(labels.values()) == services_of(bounded).index.ntotal
        assert labels["_other"] >= index_of(bounded, two_shops[0]).ntotal
    finally:
        bounded.__exit__(None, None, None)


def test_a_limit_on_collections(api_database: ApiDatabase, pipeline: FacePipeline) -> None:
    limited = start_client(api_database, pipeline, max_collections=1)
    try:
        # The module's database already holds more than one: no further one may be made.
        error = assert_error(
            limited.post("/collections", json={"collection_id": "one-too-many"}), 409, "too_many_collections"
        )
        assert error["details"] == {"max_collections": 1}
    finally:
        limited.__exit__(None, None, None)


def test_openapi_lists_the_collection_routes_and_their_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/collections",
        "/collections/{collection_id}",
        "/collections/{collection_id}/enroll",
        "/collections/{collection_id}/verify",
        "/collections/{collection_id}/identify",
        "/collections/{collection_id}/subjects",
        "/collections/{collection_id}/subjects/{subject_id}",
        "/collections/{collection_id}/faces/{face_id}",
        "/admin/collections/{collection_id}/report",
        "/admin/collections/{collection_id}/threshold",
        "/admin/collections/{collection_id}/evaluations",
    ):
        assert path in paths, path
    create_doc = paths["/collections"]["post"]["responses"]
    assert "invalid_collection_id" in create_doc["422"]["description"]
    assert "model_not_found" in create_doc["422"]["description"]
    assert "collection_exists" in create_doc["409"]["description"]
    identify_doc = paths["/collections/{collection_id}/identify"]["post"]
    assert "collection_not_found" in identify_doc["responses"]["404"]["description"]
    assert any(p["name"] == "collection_id" and p["in"] == "path" for p in identify_doc["parameters"])
    assert (
        "collection_protected"
        in paths["/collections/{collection_id}"]["delete"]["responses"]["409"]["description"]
    )
