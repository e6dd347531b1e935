"""Face templates: duplicates, embeddings read back bit for bit (one by one and in bulk), ids never reused.

Bulk writes log each new face once, in id order.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.bulk_faces import NewTemplate, add_faces_bulk
from app.db.changes import changes_since, current_change_seq
from app.db.faces import (
    count_faces,
    delete_face,
    get_face_by_public_id,
    iter_embedding_batches,
    iter_embeddings,
    list_faces,
    load_embeddings,
)
from app.db.models import Face
from app.db.subjects import get_or_create_subject, get_subject_by_external_id
from tests.db.factories import (
    MODEL,
    TEST_LANDMARKS,
    add_test_face,
    default_id,
    sha256,
    store_test_face,
    unit_vector,
)


def test_same_image_twice_for_a_subject_is_one_template(session: Session) -> None:
    alice, _ = get_or_create_subject(session, default_id(session), "alice")
    bob, _ = get_or_create_subject(session, default_id(session), "bob")
    first, added = store_test_face(session, alice, image=b"group-photo")
    assert added
    again, added = store_test_face(session, alice, seed=1, image=b"group-photo")
    assert (again.id, again.public_id, added) == (first.id, first.public_id, False)
    assert store_test_face(session, bob, image=b"group-photo")[1]
    assert store_test_face(session, alice, image=b"group-photo", model_name="other-model")[1]
    assert [face.id for face in list_faces(session, alice.id)] == [first.id, first.id + 2]
    assert count_faces(session, model_name=MODEL) == 2
    assert count_faces(session) == 3


def test_stored_face_reads_back_exactly(session: Session) -> None:
    subject, _ = get_or_create_subject(session, default_id(session), "carol")
    face = add_test_face(session, subject, seed=5, crop=b"\x89PNG fake crop")
    session.expunge_all()
    reread = get_face_by_public_id(session, default_id(session), face.public_id)
    assert reread is not None
    assert len(reread.public_id) == 32
    assert reread.embedding_dim == 128
    assert reread.embedding == unit_vector(5).astype("<f4").tobytes()
    assert (reread.box_x1, reread.box_y1, reread.box_x2, reread.box_y2) == (10.0, 20.0, 110.0, 140.0)
    assert reread.quality_json == {"sharpness": 0.7}
    assert reread.crop == b"\x89PNG fake crop"
    assert reread.crop_kind == "source"
    assert reread.crop_landmarks == TEST_LANDMARKS
    assert reread.crop_box == [10.0, 20.0, 110.0, 140.0]
    assert reread.subject.external_id == "carol"


def test_rebuild_reads_every_template_of_one_model(session: Session) -> None:
    subjects = [get_or_create_subject(session, default_id(session), f"s{number}")[0] for number in range(3)]
    expected = {}
    for seed in range(10):
        subject = subjects[seed % 3]
        face = add_test_face(session, subject, seed=seed, image=f"img{seed}".encode())
        expected[face.id] = (subject.id, unit_vector(seed))
    add_test_face(session, subjects[0], image=b"img0", model_name="another-model", dim=512)

    batches = list(iter_embedding_batches(session, default_id(session), MODEL, batch_size=4))
    assert [len(batch.face_ids) for batch in batches] == [4, 4, 2]
    ids = np.concatenate([batch.face_ids for batch in batches])
    assert ids.tolist() == sorted(expected)
    for batch in batches:
        assert batch.vectors.dtype == np.float32 and batch.vectors.shape[1] == 128
    rows = list(iter_embeddings(session, default_id(session), MODEL, batch_size=3))
    assert len(rows) == 10
    for face_id, subject_id, vector in rows:
        assert subject_id == expected[face_id][0]
        np.testing.assert_array_equal(vector, expected[face_id][1])


def test_followers_load_only_faces_that_still_exist(session: Session) -> None:
    subject, _ = get_or_create_subject(session, default_id(session), "dave")
    kept = add_test_face(session, subject, image=b"a")
    gone = add_test_face(session, subject, image=b"b")
    gone_id = gone.id
    delete_face(session, gone)
    batch = load_embeddings(session, [kept.id, gone_id], MODEL)
    assert batch is not None
    assert batch.face_ids.tolist() == [kept.id]
    assert load_embeddings(session, [gone_id], MODEL) is None


def test_a_deleted_face_id_is_never_handed_out_again(session: Session) -> None:
    subject, _ = get_or_create_subject(session, default_id(session), "erin")
    newest = add_test_face(session, subject, image=b"first")
    old_id = newest.id
    delete_face(session, newest)
    replacement = add_test_face(session, subject, image=b"second")
    assert replacement.id > old_id


def bulk_template(embedding: np.ndarray, image: bytes) -> NewTemplate:
    return NewTemplate("fay", embedding, (10.0, 20.0, 110.0, 140.0), 0.99, 0.8, sha256(image))


def test_a_bulk_write_stores_each_embedding_bit_for_bit_whatever_its_size(session: Session) -> None:
    embeddings = [unit_vector(1), unit_vector(2), unit_vector(3, dim=512)]
    templates = [bulk_template(e, f"size-{number}".encode()) for number, e in enumerate(embeddings)]
    result = add_faces_bulk(session, default_id(session), templates, model_name=MODEL, model_version="1")
    face_ids = [face_id for face_id in result.face_ids if face_id is not None]
    batches = [load_embeddings(session, [face_id], MODEL) for face_id in face_ids]
    assert [batch.vectors.shape[1] for batch in batches if batch is not None] == [128, 128, 512]
    for batch, embedding in zip(batches, embeddings, strict=True):
        assert batch is not None
        np.testing.assert_array_equal(batch.vectors[0], embedding)


def test_a_bulk_write_logs_each_new_face_once_in_id_order(session: Session) -> None:
    before = session.scalar(select(func.max(Face.id))) or 0
    seq = current_change_seq(session)
    templates = [  # subjects interleaved: id order is the templates' order, not the subjects'
        NewTemplate(f"s{n % 7}", unit_vector(n), (0.0, 0.0, 1.0, 1.0), 0.9, 0.5, sha256(b"%d" % n))
        for n in range(2_500)
    ]
    result = add_faces_bulk(session, default_id(session), templates, model_name=MODEL, model_version="1")
    faces = session.execute(select(Face.id, Face.subject_id).where(Face.id > before).order_by(Face.id)).all()
    assert [face_id for face_id, _ in faces] == result.face_ids
    changes = changes_since(session, seq)
    assert [(c.op, c.face_id, c.subject_id) for c in changes] == [("add", *face) for face in faces]


@pytest.mark.parametrize(
    "bad",
    [np.where(np.arange(128) == 7, np.nan, unit_vector(4)), np.zeros((1, 128)), np.zeros(0)],
    ids=["nan", "2-d", "empty"],
)
def test_a_bulk_write_with_one_bad_embedding_writes_nothing(session: Session, bad: np.ndarray) -> None:
    templates = [bulk_template(unit_vector(5), b"good"), bulk_template(bad, b"bad")]
    before = count_faces(session)
    with pytest.raises(ValueError, match="embedding"):
        add_faces_bulk(session, default_id(session), templates, model_name=MODEL, model_version="1")
    assert count_faces(session) == before
    assert get_subject_by_external_id(session, default_id(session), "fay") is None
