"""Enrolment (multipart and base64), the quality gate, duplicates, and the subject/face resources."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.models import Face
from app.pipeline.face_pipeline import FacePipeline
from tests.api.conftest import (
    ENROLL_PHOTO,
    PROBE_PHOTO,
    ApiDatabase,
    assert_error,
    enroll,
    photo,
    services_of,
    start_client,
)
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def api_database(engine_database: ApiDatabase) -> ApiDatabase:
    """This module runs on FAISS and on Milvus (Lite), on SQLite and PostgreSQL."""
    return engine_database


NEGATIVE = SHARED_DATA / "negatives" / "brick.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_multipart_enrolment_keeps_good_images_and_reports_the_rest(client: TestClient) -> None:
    images = [
        photo(ENROLL_PHOTO["obama"]),
        NEGATIVE.read_bytes(),
        b"not an image at all",
        photo(PROBE_PHOTO["obama"]),
    ]
    response = enroll(client, "enr-obama", *images, name="Barack Obama", metadata='{"team": "blue"}')

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    assert body["subject"] == body["subject"] | {
        "subject_id": "enr-obama",
        "name": "Barack Obama",
        "metadata": {"team": "blue"},
        "face_count": 2,
    }
    assert [face["index"] for face in body["faces"]] == [0, 3]
    for face in body["faces"]:
        box = face["box"]
        assert box["x_max"] > box["x_min"] >= 0 and box["y_max"] > box["y_min"] >= 0
        assert 0.9 <= face["det_score"] <= 1.0 and 0.0 < face["quality"]["score"] <= 1.0
    assert [(item["index"], item["code"]) for item in body["rejected"]] == [
        (1, "no_face"),
        (2, "invalid_image"),
    ]
    assert body["duplicates"] == []

    # The aligned crops are kept (PNG) unless FACEREC_STORE_CROPS=false.
    with services_of(client).session_factory() as session:
        crops = session.scalars(
            select(Face.crop).where(Face.public_id.in_([f["face_id"] for f in body["faces"]]))
        )
        assert all(crop is not None and crop.startswith(PNG_SIGNATURE) for crop in crops)


def test_the_same_image_twice_is_one_template(client: TestClient) -> None:
    image = photo(ENROLL_PHOTO["biden"])
    first = enroll(client, "enr-biden", image).json()
    again = enroll(client, "enr-biden", image, image)

    assert again.status_code == 201
    body = again.json()
    assert body["created"] is False and body["faces"] == []
    face_id = first["faces"][0]["face_id"]
    assert body["duplicates"] == [{"index": 0, "face_id": face_id}, {"index": 1, "face_id": face_id}]
    assert body["subject"]["face_count"] == 1
    assert len(client.get("/subjects/enr-biden").json()["faces"]) == 1


def test_base64_json_enrolment_and_the_subject_resource(client: TestClient) -> None:
    images = [base64.b64encode(photo(ENROLL_PHOTO[name])).decode() for name in ("kit_harington",)]
    images.append("data:image/jpeg;base64," + base64.b64encode(photo(PROBE_PHOTO["kit_harington"])).decode())
    response = client.post(
        "/enroll",
        json={"subject_id": "enr-kit", "name": "Kit", "metadata": {"role": "Jon"}, "images": images},
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["faces"]) == 2

    subject = client.get("/subjects/enr-kit").json()
    assert subject["name"] == "Kit" and subject["metadata"] == {"role": "Jon"} and subject["face_count"] == 2
    face_id = subject["faces"][0]["face_id"]
    face = client.get(f"/faces/{face_id}").json()
    assert face["subject_id"] == "enr-kit" and face["model"] == services_of(client).model.name

    patched = client.patch("/subjects/enr-kit", json={"name": "Kit Harington"})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Kit Harington" and patched.json()["metadata"] == {"role": "Jon"}
    cleared = client.patch("/subjects/enr-kit", json={"metadata": {}, "name": None}).json()
    assert cleared["name"] is None and cleared["metadata"] == {}

    deleted = client.delete(f"/faces/{face_id}")
    assert deleted.status_code == 200 and deleted.json() == {"face_id": face_id, "subject_id": "enr-kit"}
    assert_error(client.get(f"/faces/{face_id}"), 404, "face_not_found")
    assert_error(client.delete(f"/faces/{face_id}"), 404, "face_not_found")
    assert client.get("/subjects/enr-kit").json()["face_count"] == 1

    removed = client.delete("/subjects/enr-kit")
    assert removed.status_code == 200 and removed.json() == {"subject_id": "enr-kit", "deleted_faces": 1}
    assert_error(client.get("/subjects/enr-kit"), 404, "subject_not_found")
    assert_error(client.patch("/subjects/enr-kit", json={"name": "x"}), 404, "subject_not_found")
    assert_error(client.delete("/subjects/enr-kit"), 404, "subject_not_found")


def test_listing_pages_through_every_subject_once(client: TestClient) -> None:
    image = photo(ENROLL_PHOTO["rose_leslie"])
    for i in range(3):
        assert enroll(client, f"enr-page-{i}", image).status_code == 201
    total = client.get("/subjects", params={"limit": 1}).json()["total"]

    seen: list[str] = []
    cursor = None
    while True:
        page = client.get("/subjects", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert page["total"] == total and len(page["items"]) <= 2
        seen += [item["subject_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == total
    assert {f"enr-page-{i}" for i in range(3)} <= set(seen)
    assert_error(client.get("/subjects", params={"cursor": "abc"}), 422, "validation_error")
    assert_error(client.get("/subjects", params={"limit": 0}), 422, "validation_error")


def test_an_enrolment_without_a_usable_face_stores_nothing(client: TestClient) -> None:
    error = assert_error(enroll(client, "enr-nobody", NEGATIVE.read_bytes()), 422, "no_face")
    assert error["details"]["rejected"][0]["code"] == "no_face"
    assert_error(enroll(client, "enr-nobody", b"\xff\xd8\xff garbage"), 400, "invalid_image")
    assert_error(client.get("/subjects/enr-nobody"), 404, "subject_not_found")

    # An existing subject keeps its name when a failed enrolment tries to rename it.
    enroll(client, "enr-existing", photo(ENROLL_PHOTO["alex_lacamoire"]), name="Alex")
    assert_error(enroll(client, "enr-existing", NEGATIVE.read_bytes(), name="Other"), 422, "no_face")
    assert client.get("/subjects/enr-existing").json()["name"] == "Alex"


def test_the_quality_gate_rejects_small_faces(api_database: ApiDatabase, pipeline: FacePipeline) -> None:
    strict = start_client(api_database, pipeline, enroll_min_face_size=250, store_crops=False)
    try:
        # obama.jpg's face is about 230 px, the probe photo's about 355 px.
        response = enroll(strict, "enr-strict", photo(ENROLL_PHOTO["obama"]), photo(PROBE_PHOTO["obama"]))
        assert response.status_code == 201, response.text
        body = response.json()
        assert [face["index"] for face in body["faces"]] == [1]
        assert [(item["index"], item["code"]) for item in body["rejected"]] == [(0, "low_quality_face")]
        with services_of(strict).session_factory() as session:
            assert (
                session.scalar(select(Face.crop).where(Face.public_id == body["faces"][0]["face_id"])) is None
            )
        assert_error(enroll(strict, "enr-strict-2", photo(ENROLL_PHOTO["obama"])), 422, "low_quality_face")
    finally:
        strict.__exit__(None, None, None)
