"""The change log: the database's change counter that keeps every FAISS index in step."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, func, insert, literal, select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ChangeLog, ChangeOp, Collection, Face

_CHANGE_LOCK_KEY = 0x66726563_63686E67  # "frecchng"
# session.info key: the transaction that holds the lock, so it is taken once per transaction.
_LOCKED_BY = "change_log_locked_by"


def lock_change_log(session: Session) -> None:
    """Serialise face writers until this transaction ends (PostgreSQL; SQLite already does).

    ``seq`` values are handed out at insert but become visible at commit; if
    two writers could commit out of order, a worker that has read seq 11
    would never see seq 10. Holding this lock from before the face write
    until commit makes commit order equal seq order. Taken once per
    transaction however many writes it makes.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    transaction = session.get_transaction()
    if transaction is not None and session.info.get(_LOCKED_BY) is transaction:
        return
    session.execute(select(func.pg_advisory_xact_lock(_CHANGE_LOCK_KEY)))
    session.info[_LOCKED_BY] = session.get_transaction()


def record_changes(
    session: Session, op: ChangeOp, collection_id: int, faces: Sequence[tuple[int, int]]
) -> None:
    """Log ``op`` for each ``(face_id, subject_id)`` of a collection; call after ``lock_change_log``."""
    if not faces:
        return
    rows = [
        ChangeLog(op=op, collection_id=collection_id, face_id=face_id, subject_id=subject_id)
        for face_id, subject_id in faces
    ]
    session.add_all(rows)
    session.flush()
    _advance(session, collection_id, rows[-1].seq)


def record_new_faces(session: Session, collection_id: int, model_name: str, after_face_id: int) -> None:
    """Log an "add" for each face of the collection and model above ``after_face_id``, in id order.

    What ``record_changes`` writes for the faces a bulk write has just
    inserted (one ``at`` for all), as one INSERT ... SELECT: the rows never
    pass through Python or the driver. Call after ``lock_change_log``, which
    keeps any other writer's faces out of the range.
    """
    faces: Table = Face.__table__  # type: ignore[assignment]
    changes: Table = ChangeLog.__table__  # type: ignore[assignment]
    new_faces = (
        select(
            literal("add", changes.c.op.type),
            faces.c.collection_id,
            faces.c.id,
            faces.c.subject_id,
            literal(utcnow(), changes.c.at.type),
        )
        .where(
            faces.c.collection_id == collection_id,
            faces.c.model_name == model_name,
            faces.c.id > after_face_id,
        )
        .order_by(faces.c.id)  # seq follows face id, as when each face is logged as it is added
    )
    session.execute(
        insert(changes).from_select(["op", "collection_id", "face_id", "subject_id", "at"], new_faces)
    )
    # Under the lock no other writer interleaves: the collection's newest change is the last row.
    newest = session.scalar(
        select(ChangeLog.seq)
        .where(ChangeLog.collection_id == collection_id)
        .order_by(ChangeLog.seq.desc())
        .limit(1)
    )
    assert newest is not None
    _advance(session, collection_id, newest)


def record_drop(session: Session, collection_id: int, op: ChangeOp = "drop") -> None:
    """Log that the collection is gone: every worker drops its index. Call after ``lock_change_log``.

    ``op="rebuild"``: its templates were all replaced (moved to another
    model), and every worker rebuilds its index from the database.
    """
    row = ChangeLog(op=op, collection_id=collection_id)
    session.add(row)
    session.flush()
    _advance(session, collection_id, row.seq)


def _advance(session: Session, collection_id: int, seq: int) -> None:
    """The collection's newest change: an index holding it is in step (see ``Collection.change_seq``)."""
    session.execute(update(Collection).where(Collection.id == collection_id).values(change_seq=seq))


def collection_change_seqs(session: Session) -> dict[int, int]:
    """Each collection's newest change-log seq (0 for one that has none)."""
    return {cid: seq for cid, seq in session.execute(select(Collection.id, Collection.change_seq))}


def current_change_seq(session: Session) -> int:
    """The newest seq, 0 for an empty log; an index snapshot is valid iff it was taken at this seq."""
    return session.scalar(select(func.coalesce(func.max(ChangeLog.seq), 0))) or 0


def changes_since(session: Session, seq: int, limit: int | None = None) -> list[ChangeLog]:
    """Changes after ``seq``, oldest first: replay them in this order."""
    query = select(ChangeLog).where(ChangeLog.seq > seq).order_by(ChangeLog.seq)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def faces_removed_since(session: Session, seq: int) -> set[int]:
    """Ids of the faces removed after ``seq``: one column of the few rows a search must know about."""
    query = select(ChangeLog.face_id).where(
        ChangeLog.seq > seq, ChangeLog.op == "remove", ChangeLog.face_id.is_not(None)
    )
    return {face_id for face_id in session.scalars(query) if face_id is not None}


def collection_changes_between(
    session: Session, collection_id: int, after: int, upto: int, limit: int | None = None
) -> list[ChangeLog]:
    """One collection's changes with ``after < seq <= upto``, oldest first.

    What a snapshot taken at ``after`` lacks, for a follower that has replayed up to ``upto``.
    """
    return list(
        session.scalars(
            select(ChangeLog)
            .where(ChangeLog.collection_id == collection_id, ChangeLog.seq > after, ChangeLog.seq <= upto)
            .order_by(ChangeLog.seq)
            .limit(limit)
        )
    )
