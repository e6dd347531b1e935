"""0003 → 0004: faces keep their crops (marked as the old model's aligned crops); jobs gain details."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Face, Job, StagedTemplate
from app.db.session import create_engine_for, upgrade_database
from app.db.subjects import get_or_create_subject
from tests.db.factories import add_test_face, default_id


def test_stored_crops_become_aligned_crops_and_staging_is_added(empty_db_url: str) -> None:
    upgrade_database(empty_db_url, revision="0003")
    engine = create_engine_for(empty_db_url)
    with engine.begin() as connection:
        collection_id = connection.execute(  # 0003 made the one gallery "default"
            sa.text("SELECT id FROM collections WHERE external_id = 'default'")
        ).scalar_one()
        subject_id = connection.execute(
            sa.text(
                "INSERT INTO subjects (collection_id, external_id, metadata_json, created_at, updated_at) "
                "VALUES (:c, 'ann', '{}', :now, :now) RETURNING id"
            ),
            {"c": collection_id, "now": "2026-12-01 00:00:00"},
        ).scalar_one()
        for number, crop in enumerate((b"\x89PNG an aligned crop", None)):
            connection.execute(
                sa.text(
                    "INSERT INTO faces (public_id, collection_id, subject_id, embedding, embedding_dim, "
                    "model_name, model_version, box_x1, box_y1, box_x2, box_y2, det_score, quality, "
                    "quality_json, image_sha256, crop, created_at) VALUES (:pid, :c, :s, :e, 1, "
                    "'dlib-resnet-v1', '1', 1, 2, 3, 4, 0.99, 0.9, '{}', :sha, :crop, :now)"
                ),
                {
                    "pid": f"face-{number}",
                    "c": collection_id,
                    "s": subject_id,
                    "e": b"\x00\x00\x80\x3f",
                    "sha": f"{number:064d}",
                    "crop": crop,
                    "now": "2026-12-01 00:00:00",
                },
            )
    engine.dispose()

    upgrade_database(empty_db_url)
    engine = create_engine_for(empty_db_url)
    with Session(engine) as session:
        kinds = dict(session.execute(sa.select(Face.public_id, Face.crop_kind)).all())
        assert kinds == {"face-0": "aligned", "face-1": None}
        face = session.scalars(sa.select(Face).where(Face.public_id == "face-0")).one()
        assert face.crop == b"\x89PNG an aligned crop" and face.crop_landmarks is None
        job = Job(id="job_new", kind="reembed", state="queued", details={"model": "other"})
        session.add(job)
        session.flush()
        session.add(StagedTemplate(job_id=job.id, face_id=face.id, embedding=b"\x00" * 8, embedding_dim=2))
        session.commit()
        session.delete(session.get(Job, "job_new"))
        session.commit()
        assert session.scalar(sa.select(sa.func.count()).select_from(StagedTemplate)) == 0  # cascades
        subject, _ = get_or_create_subject(session, default_id(session), "bob")
        added = add_test_face(session, subject, crop=b"\x89PNG a region")
        assert added.crop_kind == "source" and added.crop_box is not None
    engine.dispose()
