"""0002 → 0003: a one-gallery database becomes the collection ``default`` with nothing lost.

The 0002 database is filled the way the 0002 service filled it (raw rows:
the models now describe 0003), with real templates of real photos.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db.audit import list_audit_by_action
from app.db.collections import create_collection, get_collection
from app.db.embeddings import embedding_to_bytes
from app.db.faces import add_face, iter_embedding_batches
from app.db.keys import key_collection_ids, lookup_api_key
from app.db.models import (
    DEFAULT_COLLECTION,
    ApiKey,
    AuditLog,
    ChangeLog,
    Evaluation,
    Job,
    Report,
    Subject,
)
from app.db.session import create_engine_for, upgrade_database
from app.db.stored_settings import get_setting
from app.db.subjects import get_or_create_subject, get_subject_by_external_id, list_subjects
from app.pipeline.face_pipeline import FacePipeline
from tests.conftest import LFW_ROOT, load

PEOPLE = ("Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody")
MODEL = "dlib-resnet-v1"
KEY_PLAINTEXT = "frk_an-old-client-key-from-0002"


def _now(engine: Engine) -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(tzinfo=None) if engine.dialect.name == "sqlite" else now


@pytest.fixture
def embeddings(pipeline: FacePipeline) -> dict[str, list[np.ndarray]]:
    """Two real templates per person: the largest face of their first two LFW photos."""
    out: dict[str, list[np.ndarray]] = {}
    for person in PEOPLE:
        photos = sorted((LFW_ROOT / person).glob("*.jpg"))[:2] or [LFW_ROOT / person / f"{person}_0001.jpg"]
        out[person] = [pipeline.analyze(load(photo), max_faces=1)[0].embedding for photo in photos]
    return out


@pytest.fixture
def database_0002(empty_db_url: str, embeddings: dict[str, list[np.ndarray]]) -> Iterator[str]:
    """A database at 0002 holding subjects, templates, changes, thresholds, a report, jobs, keys, audit."""
    upgrade_database(empty_db_url, revision="0002")
    engine = create_engine_for(empty_db_url)
    now = _now(engine)
    seq = 0
    with engine.begin() as connection:
        for number, (person, vectors) in enumerate(embeddings.items()):
            subject_id = connection.execute(
                sa.text(
                    "INSERT INTO subjects (external_id, name, metadata_json, created_at, updated_at) "
                    "VALUES (:external_id, :name, :meta, :now, :now) RETURNING id"
                ),
                {
                    "external_id": person,
                    "name": person.replace("_", " "),
                    "meta": json.dumps({"n": number}),
                    "now": now,
                },
            ).scalar_one()
            for index, vector in enumerate(vectors):
                face_id = connection.execute(
                    sa.text(
                        "INSERT INTO faces (public_id, subject_id, embedding, embedding_dim, model_name, "
                        "model_version, box_x1, box_y1, box_x2, box_y2, det_score, quality, quality_json, "
                        "image_sha256, crop, created_at) VALUES (:public_id, :subject_id, :embedding, "
                        ":dim, :model, '1', 1, 2, 3, 4, 0.99, 0.9, '{}', :sha, :crop, :now) RETURNING id"
                    ),
                    {
                        "public_id": f"{person[:20]}-{index}".lower(),
                        "subject_id": subject_id,
                        "embedding": embedding_to_bytes(vector),
                        "dim": vector.size,
                        "model": MODEL,
                        "sha": f"{number:02d}{index:062d}",
                        "crop": b"\x89PNG a crop",
                        "now": now,
                    },
                ).scalar_one()
                seq = connection.execute(
                    sa.text(
                        "INSERT INTO change_log (op, face_id, subject_id, at) "
                        "VALUES ('add', :face_id, :subject_id, :now) RETURNING seq"
                    ),
                    {"face_id": face_id, "subject_id": subject_id, "now": now},
                ).scalar_one()
        for key, value in (("verify_threshold", "0.9"), ("identify_threshold", "0.93")):
            connection.execute(
                sa.text("INSERT INTO settings (key, value, updated_at) VALUES (:key, :value, :now)"),
                {"key": key, "value": value, "now": now},
            )
        for action, target in (("threshold.set", "verify_threshold"), ("api_key.create", "frk_old")):
            connection.execute(
                sa.text(
                    "INSERT INTO audit_log (at, actor, action, target, details) "
                    "VALUES (:now, 'env-admin-key', :action, :target, '{\"value\": 0.9}')"
                ),
                {"now": now, "action": action, "target": target},
            )
        connection.execute(
            sa.text(
                "INSERT INTO api_keys (prefix, key_hash, role, name, created_at) "
                "VALUES (:prefix, :hash, 'client', 'kiosk', :now)"
            ),
            {"prefix": KEY_PLAINTEXT[:12], "hash": _sha256(KEY_PLAINTEXT), "now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO reports (id, kind, gallery_seq, model_name, body, created_at) "
                "VALUES ('rpt_old', 'gallery', :seq, :model, '{}', :now)"
            ),
            {"seq": seq, "model": MODEL, "now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO jobs (id, kind, state, progress, total, created_at, updated_at) "
                "VALUES ('job_old', 'gallery_report', 'done', 1, 1, :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO evaluations (id, name, state, progress, total, images, no_face, identities, "
                "pairs_source, actor, created_at, updated_at) VALUES ('ev_old', 'old set', 'done', 4, 4, 4, "
                "0, 2, 'all', 'env-admin-key', :now, :now)"
            ),
            {"now": now},
        )
    engine.dispose()
    yield empty_db_url


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_every_subject_and_template_lands_in_default(
    database_0002: str, embeddings: dict[str, list[np.ndarray]]
) -> None:
    upgrade_database(database_0002)
    engine = create_engine_for(database_0002)
    try:
        with Session(engine) as session:
            default = get_collection(session, DEFAULT_COLLECTION)
            assert default is not None and default.model_name == MODEL
            subjects, total = list_subjects(session, default.id, limit=10)
            assert total == len(PEOPLE) and [s.external_id for s in subjects] == list(PEOPLE)
            assert subjects[1].metadata_json == {"n": 1} and subjects[1].name == "Abdullah Gul"
            batches = list(iter_embedding_batches(session, default.id, MODEL))
            vectors = np.concatenate([batch.vectors for batch in batches])
            expected = np.stack([v for person in PEOPLE for v in embeddings[person]]).astype(np.float32)
            np.testing.assert_array_equal(vectors, expected)  # every template, bit for bit, in id order
            changes = list(session.scalars(sa.select(ChangeLog).order_by(ChangeLog.seq)))
            assert len(changes) == len(expected) and {c.collection_id for c in changes} == {default.id}
            assert default.change_seq == changes[-1].seq
            assert get_setting(session, default.id, "verify_threshold") == 0.9
            assert get_setting(session, default.id, "identify_threshold") == 0.93
            history = list_audit_by_action(session, "threshold.set", default.id)
            assert [entry.target for entry in history] == ["verify_threshold"]
            key_audit = sa.select(AuditLog.collection_id).where(AuditLog.action == "api_key.create")
            assert list(session.scalars(key_audit)) == [None]  # service-wide, not the gallery's
            for model in (Report, Evaluation, Job):
                assert session.scalar(sa.select(model.collection_id)) == default.id
            key = lookup_api_key(session, KEY_PLAINTEXT)
            assert key is not None and not key.scoped and key_collection_ids(session, key.id) == frozenset()
    finally:
        engine.dispose()


def test_the_upgraded_database_takes_new_collections_and_never_reuses_ids(database_0002: str) -> None:
    upgrade_database(database_0002)
    engine = create_engine_for(database_0002)
    try:
        with Session(engine) as session, session.begin():
            default = get_collection(session, DEFAULT_COLLECTION)
            assert default is not None
            default_id = default.id
            newest = session.scalar(sa.select(sa.func.max(Subject.id))) or 0
            last = get_subject_by_external_id(session, default_id, PEOPLE[-1])
            assert last is not None and last.id == newest
            session.delete(last)
        with Session(engine) as session, session.begin():
            # The same subject id in another collection is another person; ids keep climbing.
            other = create_collection(session, "shop-a", model_name=MODEL)
            assert other is not None
            twin, created = get_or_create_subject(session, other.id, PEOPLE[0])
            again, _ = get_or_create_subject(session, default_id, PEOPLE[-1])
            assert created and twin.id > newest and again.id > twin.id
            face, added = add_face(
                session,
                twin,
                np.ones(128, np.float32),
                model_name=MODEL,
                model_version="1",
                box=(0.0, 0.0, 1.0, 1.0),
                det_score=0.99,
                quality=0.9,
                image_sha256="f" * 64,
            )
            assert added and face.collection_id == other.id
            assert session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 1
    finally:
        engine.dispose()
