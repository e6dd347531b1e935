"""Collections in the database: unique ids, subjects apart, and a delete that leaves nothing behind."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.changes import changes_since, collection_change_seqs, current_change_seq
from app.db.collections import (
    collection_counts,
    count_collections,
    create_collection,
    delete_collection,
    get_collection,
    list_collections,
    update_collection,
)
from app.db.evaluations import add_evaluation
from app.db.jobs import add_job
from app.db.keys import create_api_key, key_collection_ids, key_collection_names
from app.db.models import (
    DEFAULT_COLLECTION,
    ApiKeyCollection,
    Evaluation,
    Face,
    Job,
    Report,
    Setting,
    Subject,
)
from app.db.reports import add_report
from app.db.stored_settings import get_setting, set_setting
from app.db.subjects import get_or_create_subject, get_subject_by_external_id
from tests.db.factories import MODEL, add_test_face, default_id


def test_the_migration_creates_default_and_ids_are_unique(session: Session) -> None:
    default = get_collection(session, DEFAULT_COLLECTION)
    assert default is not None and default.model_name == MODEL
    shop = create_collection(session, "shop-a", model_name=MODEL, name="Shop A", metadata={"city": "Oslo"})
    assert shop is not None and shop.id > default.id
    assert create_collection(session, "shop-a", model_name=MODEL) is None  # the transaction stays usable
    assert get_collection(session, "shop-a") is shop
    assert get_collection(session, "nowhere") is None
    assert count_collections(session) == 2


def test_the_same_subject_id_in_two_collections_is_two_people(session: Session) -> None:
    a = create_collection(session, "a", model_name=MODEL)
    b = create_collection(session, "b", model_name=MODEL)
    assert a is not None and b is not None
    in_a, created_a = get_or_create_subject(session, a.id, "p1", "In A")
    in_b, created_b = get_or_create_subject(session, b.id, "p1", "In B")
    assert created_a and created_b and in_a.id != in_b.id
    assert get_subject_by_external_id(session, a.id, "p1") is in_a
    assert get_subject_by_external_id(session, b.id, "p1") is in_b
    face = add_test_face(session, in_b, image=b"b-photo")
    assert face.collection_id == b.id
    assert collection_counts(session, [a.id, b.id]) == {a.id: (1, 0), b.id: (1, 1)}


def test_pages_and_the_only_filter(session: Session) -> None:
    created = [create_collection(session, f"c{number}", model_name=MODEL) for number in range(5)]
    ids = [c.id for c in created if c is not None]
    page, total = list_collections(session, limit=2)
    assert total == 6 and [c.external_id for c in page] == [DEFAULT_COLLECTION, "c0"]
    page, _ = list_collections(session, limit=10, after_id=page[-1].id)
    assert [c.external_id for c in page] == ["c1", "c2", "c3", "c4"]
    page, total = list_collections(session, limit=10, only={ids[1], ids[3]})
    assert total == 2 and [c.external_id for c in page] == ["c1", "c3"]
    assert created[0] is not None
    shop = update_collection(session, created[0], name="renamed", metadata={"k": 1})
    assert (shop.name, shop.metadata_json, shop.model_name) == ("renamed", {"k": 1}, MODEL)


def test_changes_carry_their_collection_and_advance_its_seq(session: Session) -> None:
    a = create_collection(session, "seq-a", model_name=MODEL)
    assert a is not None
    start = current_change_seq(session)
    subject, _ = get_or_create_subject(session, a.id, "someone")
    add_test_face(session, subject, image=b"1")
    add_test_face(session, subject, image=b"2")
    changes = changes_since(session, start)
    assert [(c.op, c.collection_id) for c in changes] == [("add", a.id), ("add", a.id)]
    seqs = collection_change_seqs(session)
    assert seqs[a.id] == changes[-1].seq and seqs[default_id(session)] <= start


def test_deleting_a_collection_removes_everything_it_holds(session: Session) -> None:
    doomed = create_collection(session, "doomed", model_name=MODEL)
    kept = get_collection(session, DEFAULT_COLLECTION)
    assert doomed is not None and kept is not None
    for number in range(3):
        subject, _ = get_or_create_subject(session, doomed.id, f"p{number}")
        add_test_face(session, subject, image=f"photo-{number}".encode(), crop=b"\x89PNG crop")
    survivor, _ = get_or_create_subject(session, kept.id, "p0")
    kept_face = add_test_face(session, survivor, image=b"kept")
    set_setting(session, doomed.id, "verify_threshold", 0.91)
    set_setting(session, kept.id, "verify_threshold", 0.88)
    add_report(session, "rpt_doomed", "gallery", {}, collection_id=doomed.id, model_name=MODEL)
    add_evaluation(
        session,
        "ev_doomed",
        "set",
        collection_id=doomed.id,
        total=1,
        identities=1,
        pairs_source="all",
        actor="x",
    )
    add_job(session, "gallery_report", 1, collection_id=doomed.id)
    key, _ = create_api_key(session, "client", "shop key", collection_ids=[doomed.id])
    seq = current_change_seq(session)

    assert delete_collection(session, doomed) == 3

    assert get_collection(session, "doomed") is None
    for table in (Face, Subject, Setting, Report, Evaluation, Job, ApiKeyCollection):
        count = session.scalar(
            select(func.count()).select_from(table).where(table.collection_id == doomed.id)
        )
        assert count == 0, table.__tablename__
    drop = changes_since(session, seq)
    assert [(c.op, c.collection_id, c.face_id) for c in drop] == [("drop", doomed.id, None)]
    assert get_subject_by_external_id(session, kept.id, "p0") is survivor
    assert session.get(Face, kept_face.id) is not None
    assert get_setting(session, kept.id, "verify_threshold") == 0.88
    # A key scoped to the deleted collection reaches nothing now, not everything.
    assert key.scoped and key_collection_ids(session, key.id) == frozenset()


def test_a_scoped_key_lists_its_collections(session: Session) -> None:
    a = create_collection(session, "key-a", model_name=MODEL)
    b = create_collection(session, "key-b", model_name=MODEL)
    assert a is not None and b is not None
    scoped, _ = create_api_key(session, "client", "two shops", collection_ids=[b.id, a.id])
    everywhere, _ = create_api_key(session, "client", "all shops")
    assert scoped.scoped and not everywhere.scoped
    assert key_collection_ids(session, scoped.id) == {a.id, b.id}
    assert key_collection_ids(session, everywhere.id) == frozenset()
    assert key_collection_names(session, [scoped.id, everywhere.id]) == {scoped.id: ["key-a", "key-b"]}
