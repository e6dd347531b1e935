"""The change log: the database's change counter that keeps every FAISS index in step."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import ChangeLog, ChangeOp

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


def record_changes(session: Session, op: ChangeOp, faces: Sequence[tuple[int, int]]) -> None:
    """Log ``op`` for each ``(face_id, subject_id)``; call after ``lock_change_log``."""
    if not faces:
        return
    rows = [ChangeLog(op=op, face_id=face_id, subject_id=subject_id) for face_id, subject_id in faces]
    session.add_all(rows)
    session.flush()


def current_change_seq(session: Session) -> int:
    """The newest seq, 0 for an empty log; an index snapshot is valid iff it was taken at this seq."""
    return session.scalar(select(func.coalesce(func.max(ChangeLog.seq), 0))) or 0


def changes_since(session: Session, seq: int, limit: int | None = None) -> list[ChangeLog]:
    """Changes after ``seq``, oldest first: replay them in this order."""
    query = select(ChangeLog).where(ChangeLog.seq > seq).order_by(ChangeLog.seq)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
