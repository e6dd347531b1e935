"""A model per collection, and moving a collection to another model, over HTTP with real models.

The second model is a MobileFaceNet trained by our training package, laid
out as an InsightFace pack (the ONNX file alone) and imported with
``import_pack``, beside the default pack, in a models folder of this module.
The gallery is ``identities/``: the first usable photo of each person enrolled,
the others held out as probes.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.cli import main as facerec
from app.core.settings import Settings
from app.db.collections import get_collection
from app.db.models import Face, StagedTemplate
from app.model_packs.insightface_pack import import_pack
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.runner import encode_crop
from app.schemas.reembed import ReembedRequest
from app.services import reembedding
from app.services.collections import Target
from app.services.keys import Principal
from tests.api.conftest import (
    ADMIN_KEY,
    IDENTITIES,
    ApiDatabase,
    assert_error,
    services_of,
    start_client,
)
from tests.conftest import LFW_ROOT, REPO_ROOT, require_data
from tests.trained_pack import TrainedPack

MODEL = "mfn-pack"
DEFAULT_MODEL = Settings().embedder
DETECTOR = Settings().detector
# The imported pack is uncalibrated: collections of it are given thresholds on its scale.
GIVEN = {"verify": 0.45, "identify": 0.5}
MOVE_GIVEN = {"verify": 0.4, "identify": 0.55}


@dataclass(frozen=True)
class Photos:
    gallery: dict[str, bytes]  # person → the photo enrolled
    probes: list[tuple[str, str, bytes]]  # (path, person, bytes) held out
    late: tuple[str, bytes]  # (person, photo) enrolled while a move runs


@pytest.fixture(scope="module")
def models_dir(
    tmp_path_factory: pytest.TempPathFactory, trained_pack: TrainedPack, pipeline: FacePipeline
) -> Path:
    """The default pack (linked) and the trained pack, imported as an InsightFace pack would be."""
    folder = tmp_path_factory.mktemp("models")
    for name in (DEFAULT_MODEL, DETECTOR):
        (folder / name).symlink_to(REPO_ROOT / "models" / name, target_is_directory=True)
    settings = services_settings(folder)
    result = import_pack(trained_pack.pack_dir, folder, name=MODEL, settings=settings)
    assert [m.name for m in result.installed] == [MODEL] and result.uncalibrated == [MODEL]
    return folder


def services_settings(models_dir: Path) -> Settings:
    return Settings(models_dir=models_dir)


@pytest.fixture(scope="module")
def client(api_database: ApiDatabase, pipeline: FacePipeline, models_dir: Path) -> Iterator[TestClient]:
    client = start_client(api_database, pipeline, models_dir=models_dir)
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def photos(client: TestClient) -> Photos:
    """identities/ split as the tests use it: photos with exactly one face the enrolment gate passes."""
    rows = list(csv.DictReader((require_data(IDENTITIES) / "labels.csv").open()))
    services = services_of(client)
    gallery: dict[str, bytes] = {}
    probes: list[tuple[str, str, bytes]] = []
    for row in rows:
        data = (IDENTITIES / row["path"]).read_bytes()
        faces = services.inference.analyze(data, max_faces=None).faces
        if len(faces) != 1 or faces[0].quality.face_size < 40 or faces[0].det_score < 0.9:
            continue  # several faces, or none the gate lets in: the eval and the service could differ
        if row["identity"] not in gallery:
            gallery[row["identity"]] = data
        else:
            probes.append((row["path"], row["identity"], data))
    _, late_person, late_photo = next(p for p in probes if p[1] in gallery)
    probes = [p for p in probes if p[2] != late_photo]
    assert len(gallery) >= 15 and len(probes) >= 40
    return Photos(gallery, probes, (late_person, late_photo))


def create(client: TestClient, collection_id: str, **fields: Any) -> Any:
    return client.post("/collections", json={"collection_id": collection_id, **fields})


def enroll_in(client: TestClient, collection_id: str, subject_id: str, data: bytes) -> Any:
    response = client.post(
        f"/collections/{collection_id}/enroll",
        data={"subject_id": subject_id},
        files=[("file", ("photo.jpg", data, "application/octet-stream"))],
    )
    assert response.status_code == 201, response.text
    return response.json()


def identify_in(client: TestClient, collection_id: str, data: bytes) -> dict[str, Any]:
    response = client.post(
        f"/collections/{collection_id}/identify", data={"top_n": "5"}, files={"file": ("p.jpg", data)}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def enroll_gallery(client: TestClient, collection_id: str, photos: Photos) -> None:
    for person, data in photos.gallery.items():
        enroll_in(client, collection_id, person, data)


def top_candidates(client: TestClient, collection_id: str, photos: Photos) -> list[dict[str, Any]]:
    return [
        identify_in(client, collection_id, data)["faces"][0]["candidates"][0] for _, _, data in photos.probes
    ]


def test_models_lists_every_model_with_its_licence(client: TestClient) -> None:
    listing = client.get("/models")
    assert listing.status_code == 200, listing.text
    models = {item["name"]: item for item in listing.json()["items"]}
    assert listing.json()["default"] == DEFAULT_MODEL
    assert set(models) == {DEFAULT_MODEL, DETECTOR, MODEL}
    assert models[DEFAULT_MODEL]["licence"].startswith("CC0") and models[DEFAULT_MODEL]["commercial_use"]
    assert models[DEFAULT_MODEL]["calibrated"] and models[DEFAULT_MODEL]["thresholds"]
    assert "default" in models[DEFAULT_MODEL]["collections"]
    imported = models[MODEL]
    assert imported["kind"] == "embedder" and imported["source_format"] == "insightface"
    assert imported["input"]["width"] == 112 and imported["embedding_size"] == 128
    assert imported["metric"] == "cosine" and imported["calibrated"] is False
    assert imported["commercial_use"] is False and imported["licence_status"] == "default_non_commercial"
    client_key = client.post("/admin/keys", json={"role": "client", "name": "models"}).json()["key"]
    assert client.get("/models", headers={"X-API-Key": client_key}).status_code == 403


def test_a_collection_pins_an_installed_model_and_needs_thresholds_for_an_uncalibrated_one(
    client: TestClient,
) -> None:
    assert_error(create(client, "nowhere", model="no-such-model"), 422, "model_not_found")
    assert_error(create(client, "uncalibrated", model=MODEL), 422, "model_uncalibrated")
    assert_error(create(client, "detector", model=DETECTOR), 422, "model_not_found")
    created = create(client, "pinned", model=MODEL, thresholds=GIVEN)
    assert created.status_code == 201, created.text
    assert created.json()["model"] == MODEL
    thresholds = client.get("/admin/collections/pinned/threshold").json()
    assert (thresholds["verify_threshold"], thresholds["identify_threshold"]) == (0.45, 0.5)
    listing = {item["name"]: item for item in client.get("/models").json()["items"]}
    assert "pinned" in listing[MODEL]["collections"]


def test_a_collection_of_the_imported_model_identifies_as_facerec_eval_does(
    client: TestClient, photos: Photos, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert create(client, "fresh", model=MODEL, thresholds=GIVEN).status_code == 201
    enroll_gallery(client, "fresh", photos)
    answers = [identify_in(client, "fresh", data) for _, _, data in photos.probes]
    assert {answer["model"]["name"] for answer in answers} == {MODEL}
    tops = [answer["faces"][0]["candidates"][0]["subject_id"] for answer in answers]
    hits = sum(top == person for top, (_, person, _) in zip(tops, photos.probes, strict=True))

    protocol = tmp_path / "protocol.csv"
    gallery_paths = {}
    for row in csv.DictReader((IDENTITIES / "labels.csv").open()):
        if (IDENTITIES / row["path"]).read_bytes() == photos.gallery.get(row["identity"]):
            gallery_paths[row["identity"]] = row["path"]
    with protocol.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity", "role"])
        writer.writerows([path, person, "gallery"] for person, path in gallery_paths.items())
        writer.writerows([path, person, "mated_probe"] for path, person, _ in photos.probes)
    env = {"FACEREC_MODELS_DIR": str(models_dir), "FACEREC_EMBEDDER": MODEL}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert facerec(["eval", "identify", "--root", str(IDENTITIES), "--protocol", str(protocol)]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["mated_probes"] == len(photos.probes)
    assert summary["rank_1"] == pytest.approx(hits / len(photos.probes), abs=1e-5)  # printed to 5 places
    assert hits / len(photos.probes) > 2 / len(photos.gallery)  # a trained model: well above chance


def _last_json(text: str) -> dict[str, Any]:
    """The JSON summary a `facerec eval` command printed."""
    parsed: dict[str, Any] = json.loads(text[text.index("{") :])
    return parsed


def test_moving_a_collection_gives_what_a_fresh_enrolment_gives(client: TestClient, photos: Photos) -> None:
    """Re-embedding ``moving`` (default model) equals enrolling its photos into ``fresh`` (the pack)."""
    services = services_of(client)
    assert create(client, "moving").status_code == 201
    enroll_gallery(client, "moving", photos)

    # The job exists before it runs: a move is under way, as while a background job works.
    context = reembedding.MoveContext.of(services)
    request = ReembedRequest(model=MODEL, thresholds=MOVE_GIVEN)
    with services.session_factory() as session:
        job = reembedding.prepare(context, session, Target("moving", Principal("admin", "test")), request)
        job_id = job.id
        session.commit()
    person, late = photos.late
    late_face = enroll_in(client, "moving", person, late)["faces"][0]["face_id"]
    enroll_in(client, "fresh", person, late)
    with services.session_factory() as session:  # the enrolment was embedded for the next model too
        staged = session.scalars(select(StagedTemplate.face_id).where(StagedTemplate.job_id == job_id)).all()
        assert [session.get(Face, face_id).public_id for face_id in staged] == [late_face]  # type: ignore[union-attr]
    during = identify_in(client, "moving", photos.probes[0][2])
    assert during["model"]["name"] == DEFAULT_MODEL  # until the switch, the old model answers
    assert client.get(f"/admin/jobs/{job_id}").json()["details"]["model"] == MODEL

    progress: list[int] = []
    reembedding.run_foreground(context, job_id, progress.append)
    job_view = client.get(f"/admin/jobs/{job_id}").json()
    assert job_view["state"] == "done", job_view
    assert job_view["details"]["moved"] == len(photos.gallery) + 1 and job_view["details"]["deleted"] == []
    assert progress[-1] == len(photos.gallery) == job_view["total"]  # the late face came staged
    assert client.get("/collections/moving").json()["model"] == MODEL
    thresholds = client.get("/admin/collections/moving/threshold").json()
    assert (thresholds["verify_threshold"], thresholds["identify_threshold"]) == (0.4, 0.55)

    moved, fresh = top_candidates(client, "moving", photos), top_candidates(client, "fresh", photos)
    assert [c["subject_id"] for c in moved] == [c["subject_id"] for c in fresh]
    assert [c["similarity"] for c in moved] == pytest.approx([c["similarity"] for c in fresh], abs=1e-3)
    with services.session_factory() as session:
        collection = get_collection(session, "moving")
        assert collection is not None
        models = session.scalars(select(Face.model_name).where(Face.collection_id == collection.id)).all()
        assert set(models) == {MODEL}  # the old templates are gone
        assert session.scalar(select(func.count()).select_from(StagedTemplate)) == 0


def test_a_move_over_http_runs_in_the_background_and_refuses_what_it_cannot_do(
    client: TestClient, photos: Photos, api_database: ApiDatabase, pipeline: FacePipeline, models_dir: Path
) -> None:
    assert create(client, "http-move").status_code == 201
    for person, data in list(photos.gallery.items())[:3]:
        enroll_in(client, "http-move", person, data)
    assert_error(
        client.post("/admin/collections/http-move/reembed", json={"model": MODEL}), 422, "model_uncalibrated"
    )
    assert_error(
        client.post("/admin/collections/http-move/reembed", json={"model": DEFAULT_MODEL}),
        422,
        "validation_error",
    )
    assert_error(
        client.post("/admin/collections/nowhere/reembed", json={"model": MODEL}), 404, "collection_not_found"
    )
    no_crops = start_client(api_database, pipeline, models_dir=models_dir, store_crops=False)
    try:
        refused = no_crops.post(
            "/admin/collections/http-move/reembed", json={"model": MODEL, "thresholds": GIVEN}
        )
        assert "FACEREC_STORE_CROPS" in assert_error(refused, 409, "reembed_refused")["message"]
    finally:
        no_crops.__exit__(None, None, None)

    accepted = client.post("/admin/collections/http-move/reembed", json={"model": MODEL, "thresholds": GIVEN})
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(client, accepted.json()["job"]["id"])
    assert job["state"] == "done" and job["details"]["moved"] == 3
    assert identify_in(client, "http-move", photos.probes[0][2])["model"]["name"] == MODEL


def test_faces_kept_as_an_old_aligned_crop_are_listed_not_dropped(client: TestClient, photos: Photos) -> None:
    """Before regions were kept, a face's crop was the old model's own: too tight for an ArcFace crop."""
    services = services_of(client)
    assert create(client, "legacy").status_code == 201
    people = list(photos.gallery.items())[:3]
    for person, data in people:
        enroll_in(client, "legacy", person, data)
    old_face = enroll_in(client, "legacy", "old-one", photos.probes[-1][2])["faces"][0]["face_id"]
    aligned = services.inference.analyze(photos.probes[-1][2], max_faces=1).faces[0].crop
    with services.session_factory() as session:
        session.execute(
            update(Face)
            .where(Face.public_id == old_face)
            .values(crop=encode_crop(aligned), crop_kind="aligned", crop_landmarks=None, crop_box=None)
        )
        session.commit()

    failed = wait_for_job(client, start_move(client, "legacy", "fail"))
    assert failed["state"] == "failed" and "nothing changed" in failed["error"]
    (listed,) = failed["details"]["not_movable"]
    assert listed["face_id"] == old_face and "holds only" in listed["reason"]
    assert client.get("/collections/legacy").json()["model"] == DEFAULT_MODEL
    assert client.get("/collections/legacy").json()["templates"] == len(people) + 1

    done = wait_for_job(client, start_move(client, "legacy", "delete"))
    assert done["state"] == "done" and [f["face_id"] for f in done["details"]["deleted"]] == [old_face]
    assert client.get("/collections/legacy").json()["templates"] == len(people)
    assert client.get("/collections/legacy").json()["model"] == MODEL


def start_move(client: TestClient, collection_id: str, unmovable: str) -> str:
    body = {"model": MODEL, "thresholds": GIVEN, "unmovable": unmovable}
    accepted = client.post(f"/admin/collections/{collection_id}/reembed", json=body)
    assert accepted.status_code == 202, accepted.text
    job_id: str = accepted.json()["job"]["id"]
    return job_id


def wait_for_job(client: TestClient, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/admin/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


def test_a_move_killed_halfway_leaves_the_collection_whole(
    client: TestClient, photos: Photos, api_database: ApiDatabase, models_dir: Path
) -> None:
    """`facerec collections reembed` killed mid-job: the old model and every template still answer."""
    services = services_of(client)
    assert create(client, "killed").status_code == 201
    lfw = sorted(p for p in require_data(LFW_ROOT).iterdir() if p.is_dir())[:160]
    for folder in lfw:
        enroll_in(client, "killed", folder.name, sorted(folder.iterdir())[0].read_bytes())
    templates = client.get("/collections/killed").json()["templates"]
    before = [
        identify_in(client, "killed", data)["faces"][0]["candidates"] for _, _, data in photos.probes[:5]
    ]
    with services.session_factory() as session:
        collection = get_collection(session, "killed")
        assert collection is not None
        collection_id = collection.id

    env = {
        **os.environ,
        "FACEREC_DATABASE_URL": api_database.url,
        "FACEREC_DATA_DIR": str(api_database.folder / "data"),
        "FACEREC_MODELS_DIR": str(models_dir),
        "FACEREC_ADMIN_KEY": ADMIN_KEY,
    }
    command = [sys.executable, "-m", "app.cli", "collections", "reembed", "killed", "--model", MODEL]
    command += ["--verify-threshold", "0.45", "--identify-threshold", "0.5"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        staged = wait_for_staged(services, collection_id, process)
    finally:
        process.send_signal(signal.SIGKILL)
        output = process.communicate()[0].decode(errors="replace")
    assert staged > 0, output
    assert process.returncode == -signal.SIGKILL
    with services.session_factory() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Face)
                .where(Face.collection_id == collection_id, Face.model_name == MODEL)
            )
            == 0
        )
    assert client.get("/collections/killed").json()["model"] == DEFAULT_MODEL
    assert client.get("/collections/killed").json()["templates"] == templates
    after = [
        identify_in(client, "killed", data)["faces"][0]["candidates"] for _, _, data in photos.probes[:5]
    ]
    assert after == before

    # The killed job's row still reads "running" until it goes stale; an admin cancels it, and moves again.
    running = client.post("/admin/collections/killed/reembed", json={"model": MODEL, "thresholds": GIVEN})
    job_id = assert_error(running, 409, "reembed_refused")["details"]["job"]
    cancelled = client.post(f"/admin/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "failed"
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(StagedTemplate)) == 0
    assert wait_for_job(client, start_move(client, "killed", "fail"))["state"] == "done"
    assert client.get("/collections/killed").json()["templates"] == templates


def wait_for_staged(services: Any, collection_id: int, process: subprocess.Popen[bytes]) -> int:
    """Templates the job has staged, once there are some (and before it can have finished them all)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        with services.session_factory() as session:
            staged = session.scalar(
                select(func.count())
                .select_from(StagedTemplate)
                .join(Face, Face.id == StagedTemplate.face_id)
                .where(Face.collection_id == collection_id)
            )
        if staged:
            return int(staged)
        time.sleep(0.01)
    return 0


def test_models_list_shows_each_licence(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert facerec(["--models-dir", str(models_dir), "models", "list"]) == 0
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines() if ":" in line}
    assert "CC0" in lines[DEFAULT_MODEL] and "MIT" in lines[DETECTOR]
    assert "non-commercial" in lines[MODEL]
