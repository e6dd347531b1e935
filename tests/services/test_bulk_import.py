"""Bulk enrolment of real LFW photos into a collection, on SQLite and PostgreSQL.

What a user notices: an imported photo gives the template POST /enroll
stores for it, identify finds an imported person straight away, a second
run (or one resumed after an interrupt) analyses nothing already stored, and
every refused photo says why. ``add_faces_bulk``, the batched write both the
import and its benchmark use, writes the rows ``add_face`` writes.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import ColumnElement, String, cast, func, select
from sqlalchemy.orm import Session, undefer

from app.cli import main
from app.core.errors import CollectionMoving
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.bulk_faces import NewTemplate, add_faces_bulk
from app.db.changes import changes_since
from app.db.collections import create_collection, get_collection
from app.db.faces import StoredCrop, add_face
from app.db.models import ChangeLog, Collection, Face, Subject
from app.db.subjects import get_or_create_subject
from app.pipeline.runner import AnalyzedImage, InferenceRunner
from app.schemas.reembed import ReembedRequest
from app.services import reembedding
from app.services.bulk_import import (
    BulkImport,
    ImportContext,
    ImportSummary,
    list_csv,
    list_folder,
)
from tests.api.conftest import ApiDatabase, api_database, client, services_of  # noqa: F401
from tests.conftest import LFW_ROOT, SHARED_DATA, require_data
from tests.db.factories import MODEL, TEST_LANDMARKS, default_id, sha256, unit_vector

PEOPLE = (
    "Ariel_Sharon",
    "Colin_Powell",
    "Donald_Rumsfeld",
    "George_W_Bush",
    "Gerhard_Schroeder",
    "Tony_Blair",
)
PER_PERSON = 4  # images 1-4 are imported, image 5 is the probe
IMPORTED = len(PEOPLE) * PER_PERSON
# Each refused, with the reason a user is told.
REFUSED = {
    "Tony_Blair/brick.png": "no_face",  # a photo without a face (../shared/data/negatives)
    "Tony_Blair/scan.tif": "invalid_image",  # a TIFF Pillow cannot open (../shared/data/awkward)
    "Tony_Blair/garbage.jpg": "invalid_image",
    "Tony_Blair/small.jpg": "low_quality_face",  # a real photo scaled down: a 30 px face
    "bad\x01id/photo.jpg": "invalid_subject_id",  # subject ids are URL path segments
}
ANALYSED_REFUSALS = 4  # all but the bad subject id go through inference
IDS_AND_TIMES = {"id", "public_id", "collection_id", "subject_id", "created_at"}


def lfw(person: str, number: int) -> Path:
    return require_data(LFW_ROOT / person / f"{person}_{number:04d}.jpg")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sub-folder per person, with the awkward files a real folder holds too."""
    root = tmp_path_factory.mktemp("photos")
    for person in PEOPLE:
        (root / person).mkdir()
        for number in range(1, PER_PERSON + 1):
            shutil.copy(lfw(person, number), root / person)
    blair = root / "Tony_Blair"
    shutil.copy(lfw("Tony_Blair", 1), blair / "copy.jpg")  # the same bytes again: one template
    (blair / "notes.txt").write_text("not a photo")
    shutil.copy(require_data(SHARED_DATA / "negatives" / "brick.png"), blair / "brick.png")
    shutil.copy(require_data(SHARED_DATA / "awkward" / "multipage_rgb.tif"), blair / "scan.tif")
    (blair / "garbage.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 8)
    small = io.BytesIO()
    Image.open(lfw("Tony_Blair", 6)).resize((80, 80)).save(small, format="JPEG")
    (blair / "small.jpg").write_bytes(small.getvalue())
    (root / "bad\x01id").mkdir()
    shutil.copy(lfw("Hugo_Chavez", 1), root / "bad\x01id" / "photo.jpg")
    return root


def new_collection(service: TestClient, collection_id: str) -> str:
    response = service.post("/collections", json={"collection_id": collection_id})
    assert response.status_code == 201, response.text
    return collection_id


def run_import(service: TestClient, collection_id: str, folder: Path, **options: Any) -> ImportSummary:
    importer = BulkImport(ImportContext.of(services_of(service), actor="test"), collection_id, **options)
    return importer.run(list_folder(folder))


def codes_by_path(summary: ImportSummary, root: Path) -> dict[str, str]:
    return {Path(r.path).relative_to(root).as_posix(): r.code for r in summary.rejected}


@dataclass(frozen=True)
class FirstImport:
    collection_id: str
    summary: ImportSummary


@pytest.fixture(scope="module")
def first_import(client: TestClient, photo_folder: Path) -> FirstImport:  # noqa: F811
    collection_id = new_collection(client, "imported")
    return FirstImport(collection_id, run_import(client, collection_id, photo_folder, batch_size=10))


def face_rows(service: TestClient, collection_id: str) -> list[Face]:
    """The collection's templates, every column loaded."""
    with services_of(service).session_factory() as session:
        collection = get_collection(session, collection_id)
        assert collection is not None
        query = (
            select(Face).where(Face.collection_id == collection.id).order_by(Face.id).options(undefer("*"))
        )
        return list(session.scalars(query))


def test_a_folder_is_imported_with_every_refusal_explained(
    first_import: FirstImport,
    photo_folder: Path,
    client: TestClient,  # noqa: F811
) -> None:
    summary = first_import.summary
    assert summary.listed == summary.done == IMPORTED + 1 + len(REFUSED)  # notes.txt is not listed
    assert (summary.enrolled, summary.subjects_created, summary.duplicates) == (IMPORTED, len(PEOPLE), 1)
    assert summary.skipped_stored == 0
    assert summary.analysed == IMPORTED + ANALYSED_REFUSALS
    assert codes_by_path(summary, photo_folder) == REFUSED
    subjects = client.get(f"/collections/{first_import.collection_id}/subjects", params={"limit": 50}).json()
    assert {s["subject_id"]: s["face_count"] for s in subjects["items"]} == dict.fromkeys(PEOPLE, PER_PERSON)


def test_an_imported_template_is_the_one_enrolment_stores(
    first_import: FirstImport,
    client: TestClient,  # noqa: F811
) -> None:
    enrolled_in = new_collection(client, "enrolled")
    data = lfw("Colin_Powell", 2).read_bytes()
    response = client.post(
        f"/collections/{enrolled_in}/enroll",
        data={"subject_id": "Colin_Powell"},
        files=[("file", ("p.jpg", data, "image/jpeg"))],
    )
    assert response.status_code == 201, response.text
    (enrolled,) = face_rows(client, enrolled_in)
    (imported,) = [f for f in face_rows(client, first_import.collection_id) if f.image_sha256 == sha256(data)]
    stored = [c.name for c in Face.__table__.columns if c.name not in IDS_AND_TIMES]
    assert {c: getattr(imported, c) for c in stored} == {c: getattr(enrolled, c) for c in stored}
    assert imported.crop is not None and imported.crop_kind == "source"

    # The same photo sent to /enroll afterwards is the imported template, not a second one.
    again = client.post(
        f"/collections/{first_import.collection_id}/enroll",
        data={"subject_id": "Colin_Powell"},
        files=[("file", ("p.jpg", data, "image/jpeg"))],
    )
    assert again.status_code == 201, again.text
    assert again.json()["faces"] == []
    assert [d["face_id"] for d in again.json()["duplicates"]] == [imported.public_id]


def test_identify_finds_an_imported_person_through_the_change_log(
    first_import: FirstImport,
    client: TestClient,  # noqa: F811
) -> None:
    services = services_of(client)
    with services.session_factory() as session:
        collection = get_collection(session, first_import.collection_id)
        assert collection is not None
        changes = [c for c in changes_since(session, 0) if c.collection_id == collection.id]
        faces = session.execute(select(Face.id, Face.subject_id).where(Face.collection_id == collection.id))
        assert [(c.op, c.face_id, c.subject_id) for c in changes] == [("add", *row) for row in faces]
        assert collection.change_seq == changes[-1].seq
    services.index.catch_up()
    assert services.index.index_of(collection.id).ntotal == IMPORTED
    for person in ("Gerhard_Schroeder", "Ariel_Sharon"):
        response = client.post(
            f"/collections/{first_import.collection_id}/identify",
            files={"file": ("probe.jpg", lfw(person, 5).read_bytes())},
        )
        assert response.status_code == 200, response.text
        (face,) = response.json()["faces"]
        assert face["candidates"][0]["subject_id"] == person
        assert face["match"] is not None and face["match"]["subject_id"] == person


@pytest.fixture
def analysed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The sha256 of every image the pipeline analyses (the real pipeline still runs)."""
    seen: list[str] = []
    real = InferenceRunner.analyze

    def counting(self: InferenceRunner, data: bytes, *, max_faces: int | None) -> AnalyzedImage:
        seen.append(sha256(data))
        return real(self, data, max_faces=max_faces)

    monkeypatch.setattr(InferenceRunner, "analyze", counting)
    yield seen


def test_a_second_run_enrols_nothing_and_analyses_nothing_stored(
    first_import: FirstImport,
    photo_folder: Path,
    client: TestClient,  # noqa: F811
    analysed: list[str],
) -> None:
    again = run_import(client, first_import.collection_id, photo_folder)
    assert (again.enrolled, again.subjects_created, again.skipped_stored) == (0, 0, IMPORTED + 1)
    assert codes_by_path(again, photo_folder) == REFUSED
    stored = {face.image_sha256 for face in face_rows(client, first_import.collection_id)}
    assert len(analysed) == again.analysed == ANALYSED_REFUSALS
    assert not stored & set(analysed)


def test_an_interrupted_import_loses_at_most_its_batch_and_resumes(
    photo_folder: Path,
    client: TestClient,  # noqa: F811
    analysed: list[str],
) -> None:
    collection_id = new_collection(client, "interrupted")
    listing = list_folder(photo_folder)
    done = 0

    def interrupt_at_the_tenth(count: int) -> None:
        nonlocal done
        done += count
        if done == 10:
            raise KeyboardInterrupt

    importer = BulkImport(
        ImportContext.of(services_of(client)), collection_id, batch_size=4, progress=interrupt_at_the_tenth
    )
    with pytest.raises(KeyboardInterrupt):
        importer.run(listing)
    kept = face_rows(client, collection_id)
    assert len(kept) == importer.summary.enrolled > 0  # what was committed is there, nothing else
    assert len(analysed) <= 12  # the first three batches at most, nothing queued after the interrupt
    analysed.clear()

    resumed = BulkImport(ImportContext.of(services_of(client)), collection_id).run(listing)
    assert resumed.skipped_stored == len(kept)
    assert len(face_rows(client, collection_id)) == IMPORTED
    assert not {face.image_sha256 for face in kept} & set(analysed)


def test_the_command_reads_a_csv_and_writes_what_it_refused(
    tmp_path: Path,
    client: TestClient,  # noqa: F811
    api_database: ApiDatabase,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    collection_id = new_collection(client, "from-csv")
    for number in (1, 2):
        shutil.copy(lfw("Hugo_Chavez", number), tmp_path / f"chavez{number}.jpg")
    shutil.copy(require_data(SHARED_DATA / "awkward" / "large_2112x2816.jpg"), tmp_path / "large.jpg")
    rows = [
        ["path", "subject_id", "name"],
        ["chavez1.jpg", "hugo", "Hugo Chávez"],
        ["chavez2.jpg", "hugo"],
        ["chavez2.jpg", "a/b"],
        ["missing.jpg", "hugo"],
        ["large.jpg", "hugo"],
        ["only-a-path.jpg"],
    ]
    listing = tmp_path / "photos.csv"
    with listing.open("w", newline="") as stream:
        csv.writer(stream).writerows(rows)
    monkeypatch.setenv("FACEREC_DATABASE_URL", api_database.url)
    monkeypatch.setenv("FACEREC_DATA_DIR", str(api_database.folder / "data"))
    monkeypatch.setenv("FACEREC_MAX_IMAGE_BYTES", "500000")  # large.jpg is 1 MB
    refused = tmp_path / "refused.csv"
    command = ["collections", "import-folder", "--csv", str(listing), "--collection", collection_id]

    assert main([*command, "--rejected", str(refused)]) == 0
    printed = capsys.readouterr().out
    # The command made the collection, on the configured embedder.
    assert f"collection {collection_id} ({Settings().embedder}): 2 enrolled (1 new subjects)" in printed
    with refused.open(newline="") as stream:
        written = {(Path(r["path"]).name, r["code"]) for r in csv.DictReader(stream)}
    assert written == {
        ("chavez2.jpg", "invalid_subject_id"),
        ("missing.jpg", "unreadable_file"),
        ("large.jpg", "image_too_large"),
        ("photos.csv:7", "invalid_row"),
    }
    subject = client.get(f"/collections/{collection_id}/subjects/hugo").json()
    assert (subject["name"], subject["face_count"]) == ("Hugo Chávez", 2)
    assert list_csv(listing).items[0].name == "Hugo Chávez"

    with pytest.raises(SystemExit):  # usage errors: both sources, or a list that is not there
        main([*command, str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["collections", "import-folder", "--csv", str(tmp_path / "nothing.csv")])


def test_a_collection_being_moved_is_refused(
    photo_folder: Path,
    client: TestClient,  # noqa: F811
    api_database: ApiDatabase,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    collection_id = new_collection(client, "moving")
    with services_of(client).session_factory() as session:
        collection = get_collection(session, collection_id)
        assert collection is not None
        reembedding.create_job(session, collection, ReembedRequest(model="another-model"), "test")
        session.commit()
    with pytest.raises(CollectionMoving):
        BulkImport(ImportContext.of(services_of(client)), collection_id)
    monkeypatch.setenv("FACEREC_DATABASE_URL", api_database.url)
    monkeypatch.setenv("FACEREC_DATA_DIR", str(api_database.folder / "data"))
    assert main(["collections", "import-folder", str(photo_folder), "--collection", collection_id]) == 2
    assert "is being moved to model another-model" in capsys.readouterr().err


def test_add_faces_bulk_writes_the_rows_add_face_writes(session: Session) -> None:
    one_by_one = default_id(session)
    created = create_collection(session, "bulk-parity", model_name=MODEL)
    assert created is not None
    bulk = created.id
    crop = StoredCrop(b"\x89PNG region", TEST_LANDMARKS, [10.0, 20.0, 110.0, 140.0])
    templates = [
        NewTemplate(
            "ann", unit_vector(1), (1.0, 2.0, 3.0, 4.0), 0.99, 0.8, sha256(b"a1"), {"score": 0.8}, crop
        ),
        NewTemplate("ann", unit_vector(2), (5.0, 6.0, 7.0, 8.0), 0.98, 0.7, sha256(b"a2")),
        NewTemplate("bob", unit_vector(3), (1.5, 2.5, 3.5, 4.5), 0.97, 0.6, sha256(b"a1")),  # bob's own
        NewTemplate("ann", unit_vector(4), (0.0, 0.0, 9.0, 9.0), 0.96, 0.5, sha256(b"a1")),  # again: dup
        NewTemplate("cat", unit_vector(5), (2.0, 2.0, 8.0, 8.0), 0.95, 0.4, sha256(b"stored")),  # dup
    ]
    names = {"bob": "Bob"}
    started = utcnow()
    for collection_id in (one_by_one, bulk):  # each already holds cat's photo
        cat, _ = get_or_create_subject(session, collection_id, "cat")
        add_face(session, cat, unit_vector(9), model_name=MODEL, model_version="1", box=(0, 0, 1, 1),
                 det_score=0.9, quality=0.5, image_sha256=sha256(b"stored"))  # fmt: skip
    seqs = {cid: session.get_one(Collection, cid).change_seq for cid in (one_by_one, bulk)}

    added_flags = []
    for t in templates:
        subject, _ = get_or_create_subject(session, one_by_one, t.subject_id, names.get(t.subject_id))
        _, added = add_face(
            session, subject, t.embedding, model_name=MODEL, model_version="1", box=t.box,
            det_score=t.det_score, quality=t.quality, image_sha256=t.image_sha256,
            quality_json=t.quality_json, crop=t.crop,
        )  # fmt: skip
        added_flags.append(added)
    result = add_faces_bulk(
        session, bulk, templates, model_name=MODEL, model_version="1", subject_names=names
    )
    assert [face_id is not None for face_id in result.face_ids] == added_flags == [True] * 3 + [False] * 2
    assert (result.subjects_created, result.added) == (["ann", "bob"], 3)

    finished = utcnow()
    session.expire_all()
    assert written(session, bulk) == written(session, one_by_one)
    assert stored_form(session, bulk) == stored_form(session, one_by_one)
    rows = session.execute(select(Face.id, Face.public_id).where(Face.collection_id == bulk)).all()
    assert [face_id for face_id, _ in rows[1:]] == [f for f in result.face_ids if f is not None]
    public_ids = session.scalars(select(Face.public_id).where(Face.collection_id.in_([one_by_one, bulk])))
    # Time-ordered ids; the uuid4().hex ids stored before have this shape too.
    assert all(re.fullmatch("[0-9a-f]{32}", public_id) for public_id in public_ids)
    for collection_id in (one_by_one, bulk):
        times = write_times(session, collection_id, seqs[collection_id])
        assert len(times) == 3 + 2 + 3  # the new faces, subjects and changes
        assert all(started <= at <= finished and at.tzinfo == timezone.utc for at in times)
    for collection_id in (one_by_one, bulk):
        log = session.scalars(
            select(ChangeLog).where(ChangeLog.collection_id == collection_id).order_by(ChangeLog.seq)
        ).all()
        new = [c for c in log if c.seq > seqs[collection_id]]
        faces = session.execute(
            select(Face.id, Face.subject_id).where(Face.collection_id == collection_id).order_by(Face.id)
        ).all()
        assert [(c.op, c.face_id, c.subject_id) for c in new] == [("add", *f) for f in faces[1:]]
        assert session.get_one(Collection, collection_id).change_seq == log[-1].seq


def written(session: Session, collection_id: int) -> dict[str, Any]:
    """What a collection's subjects and faces hold, without ids and times (JSON null told from SQL NULL)."""
    face_columns = [c for c in Face.__table__.columns if c.name not in IDS_AND_TIMES]
    faces = session.execute(
        select(Subject.external_id, *face_columns, Face.crop_landmarks.is_(None), Face.crop_box.is_(None))
        .join(Subject, Subject.id == Face.subject_id)
        .where(Face.collection_id == collection_id)
        .order_by(Face.id)
    ).all()
    subjects = session.execute(
        select(Subject.external_id, Subject.name, Subject.metadata_json)
        .where(Subject.collection_id == collection_id)
        .order_by(Subject.id)
    ).all()
    count = session.scalar(select(func.count()).select_from(Face).where(Face.collection_id == collection_id))
    return {
        "faces": [tuple(row) for row in faces],
        "subjects": [tuple(row) for row in subjects],
        "count": count,
    }


def stored_form(session: Session, collection_id: int) -> dict[str, Any]:
    """How the database holds a collection's JSON (its text) and times (their shape, digits aside)."""
    faces = session.execute(
        select(
            _text(Face.quality_json),
            _text(Face.crop_landmarks),
            _text(Face.crop_box),
            _text(Face.created_at),
        )
        .where(Face.collection_id == collection_id)
        .order_by(Face.id)
    ).all()
    subjects = session.execute(
        select(_text(Subject.metadata_json), _text(Subject.created_at), _text(Subject.updated_at))
        .where(Subject.collection_id == collection_id)
        .order_by(Subject.id)
    ).all()
    changes = session.scalars(select(_text(ChangeLog.at)).where(ChangeLog.collection_id == collection_id))
    return {
        "faces": [(*json, _shape(created)) for *json, created in faces],
        "subjects": [(metadata, _shape(created), _shape(updated)) for metadata, created, updated in subjects],
        "changes": [_shape(at) for at in changes],
    }


def write_times(session: Session, collection_id: int, after_seq: int) -> list[datetime]:
    """When the test's new subjects, their faces and the changes after ``after_seq`` say they were written."""
    new_subjects = select(Subject.id).where(
        Subject.collection_id == collection_id, Subject.external_id != "cat"
    )
    queries = (
        select(Face.created_at).where(Face.subject_id.in_(new_subjects)),
        select(Subject.created_at).where(Subject.id.in_(new_subjects)),
        select(ChangeLog.at).where(ChangeLog.collection_id == collection_id, ChangeLog.seq > after_seq),
    )
    return [at for query in queries for at in session.scalars(query)]


def _text(column: Any) -> ColumnElement[str]:
    return cast(column, String)


def _shape(stored: str) -> str:
    return re.sub(r"\d+", "9", stored)
