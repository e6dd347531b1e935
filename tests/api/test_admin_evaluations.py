"""POST /admin/evaluations: uploaded sets are embedded in the background, reported on, then deleted.

SQLite only: the LFW DevTest upload embeds ~1,700 images, once is enough.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterator
from math import comb
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.eval.protocols import read_lfw_pairs
from app.eval.run import evaluate_pairs
from app.pipeline.face_pipeline import FacePipeline
from tests.api.conftest import IDENTITIES, ApiDatabase, assert_error, start_client
from tests.api.test_admin_report import PNG_SIGNATURE, wait_for
from tests.conftest import LFW_ROOT, SHARED_DATA, require_data
from tests.db.conftest import PostgresServer, fresh_database

DEV_TEST = SHARED_DATA / "lfw" / "pairsDevTest.txt"


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline, postgres_server: PostgresServer
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("api-evaluations")
    with fresh_database("sqlite", folder, postgres_server) as url:
        client = start_client(ApiDatabase("sqlite", url, folder), pipeline)
        try:
            yield client
        finally:
            client.__exit__(None, None, None)


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(client: TestClient, archive: bytes, name: str = "set") -> httpx.Response:
    return client.post("/admin/evaluations", files={"file": ("set.zip", archive)}, data={"name": name})


def dev_test_images() -> list[Path]:
    """Every image pairsDevTest.txt names, once."""
    pairs = read_lfw_pairs(LFW_ROOT, require_data(DEV_TEST)).pairs
    return list(dict.fromkeys(path for pair in pairs for path in (pair.path_a, pair.path_b)))


def eval_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("facerec-eval-*"))


def test_lfw_devtest_upload_matches_facerec_eval(client: TestClient, pipeline: FacePipeline) -> None:
    images = dev_test_images()
    files = {f"lfw/{path.parent.name}/{path.name}": require_data(path).read_bytes() for path in images}
    files["lfw/pairs.txt"] = DEV_TEST.read_bytes()
    folders_before = eval_folders()

    accepted = upload(client, zip_of(files), name="LFW DevTest")
    assert accepted.status_code == 202, accepted.text
    created = accepted.json()
    assert created["id"].startswith("ev_") and created["name"] == "LFW DevTest"
    assert created["total"] == created["images"] == len(images)
    assert created["pairs_source"] == "pairs.txt"

    # facerec eval on the same pairs, here, while the service embeds the upload in its own thread.
    reference = evaluate_pairs(pipeline, LFW_ROOT, DEV_TEST, progress=False)

    evaluation = wait_for(client, f"/admin/evaluations/{created['id']}")
    assert evaluation["state"] == "done", evaluation
    assert evaluation["progress"] == evaluation["total"] == len(images)
    assert evaluation["no_face"] == reference["no_face"]["count"]
    report = evaluation["report"]
    assert report["source"]["kind"] == "evaluation" and report["source"]["evaluation_id"] == created["id"]
    assert report["counts"]["genuine"] == 500 and report["counts"]["impostor"] == 500
    assert abs(report["best_accuracy"]["accuracy"] - reference["best_accuracy"]) <= 0.005
    assert report["best_accuracy"]["accuracy"] >= 0.9
    assert report["auc"] == pytest.approx(reference["auc"], abs=0.005)
    assert report["eer"]["value"] == pytest.approx(reference["eer"], abs=0.005)
    assert report["identification"]["cmc"] is not None  # LFW people with 2+ images probe the rest
    assert eval_folders() <= folders_before, "the uploaded images were not deleted"

    listed = client.get("/admin/evaluations").json()
    assert listed["count"] >= 1 and created["id"] in [item["id"] for item in listed["items"]]
    picture = client.get("/admin/report.png", params={"evaluation_id": created["id"]})
    assert picture.status_code == 200 and picture.content.startswith(PNG_SIGNATURE)

    assert client.delete(f"/admin/evaluations/{created['id']}").status_code == 204
    assert_error(client.get(f"/admin/evaluations/{created['id']}"), 404, "evaluation_not_found")
    assert_error(client.delete(f"/admin/evaluations/{created['id']}"), 404, "evaluation_not_found")


def test_folder_per_identity_upload_compares_every_pair(client: TestClient) -> None:
    files = {
        f"people/{path.parent.name}/{path.name}": path.read_bytes()
        for path in sorted(require_data(IDENTITIES).glob("*/*"))
        if path.is_file()
    }
    files["people/readme.txt"] = b"not an image: ignored"
    created = upload(client, zip_of(files)).json()
    assert created["pairs_source"] == "all" and created["identities"] == 19
    evaluation = wait_for(client, f"/admin/evaluations/{created['id']}")
    assert evaluation["state"] == "done", evaluation
    report = evaluation["report"]
    templates = report["counts"]["templates"]
    assert templates == len(files) - 1 - evaluation["no_face"]
    assert report["counts"]["genuine"] + report["counts"]["impostor"] == comb(templates, 2)
    assert report["source"]["impostor_sampled"] is False
    assert list(report["identification"]["cmc"]) == [str(rank) for rank in range(1, 21)]


def test_a_set_without_faces_fails_with_a_reason_and_leaves_no_images(client: TestClient) -> None:
    negatives = sorted(require_data(SHARED_DATA / "negatives").iterdir())[:4]
    files = {f"{'ab'[i % 2]}/{path.name}": path.read_bytes() for i, path in enumerate(negatives)}
    folders_before = eval_folders()
    created = upload(client, zip_of(files), name="no faces").json()
    evaluation = wait_for(client, f"/admin/evaluations/{created['id']}")
    assert evaluation["state"] == "failed" and evaluation["report"] is None
    assert "at least 2 subjects" in evaluation["error"]
    assert evaluation["no_face"] >= 2  # what went wrong is kept: these photos hold no face
    assert eval_folders() <= folders_before
    not_ready = client.get("/admin/report.png", params={"evaluation_id": created["id"]})
    assert_error(not_ready, 409, "evaluation_not_ready")


def test_bad_uploads_are_refused(client: TestClient) -> None:
    photo = next(p for p in sorted(require_data(IDENTITIES).glob("*/*")) if p.suffix == ".jpg").read_bytes()
    assert_error(upload(client, b"PK\x03\x04 this is not a zip"), 400, "invalid_archive")
    assert_error(upload(client, zip_of({"notes/readme.txt": b"hello"})), 400, "empty_evaluation")
    assert_error(upload(client, zip_of({"../escape/a.jpg": photo})), 400, "invalid_archive")
    pairs = b"1\nSomeone\t1\t2\nA\t1\tB\t1\n"
    missing = zip_of({"lfw/Someone/Someone_0001.jpg": photo, "lfw/pairs.txt": pairs})
    error = assert_error(upload(client, missing), 400, "invalid_archive")
    assert "Someone/Someone_0002.jpg" in error["details"]["missing"]
    garbled = zip_of({"lfw/Someone/Someone_0001.jpg": photo, "lfw/pairs.txt": b"ten\n"})
    assert_error(upload(client, garbled), 400, "invalid_archive")
    assert_error(client.post("/admin/evaluations", json={"file": "x"}), 422, "validation_error")
    assert_error(client.get("/admin/evaluations/ev_unknown"), 404, "evaluation_not_found")
    assert not any(item["name"] == "set" and item["state"] == "failed" for item in _items(client))


def _items(client: TestClient) -> list[dict[str, object]]:
    items: list[dict[str, object]] = client.get("/admin/evaluations").json()["items"]
    return items
