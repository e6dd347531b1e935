"""``insert_many``: the rows ``session.execute(insert(table), rows)`` writes, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import String, Table, cast, insert, select
from sqlalchemy.orm import Session

from app.db.bulk_insert import insert_many
from app.db.models import Subject
from tests.db.factories import default_id

NAMES = ["Ann", None, "Bo\u00e9"]


def subjects_table() -> Table:
    table: Table = Subject.__table__  # type: ignore[assignment]
    return table


def stored(session: Session, prefix: str) -> list[tuple[Any, ...]]:
    """The subjects named ``prefix-N`` as the database holds them: JSON as text, times by shape."""
    rows = session.execute(
        select(
            Subject.external_id,
            Subject.name,
            Subject.name.is_(None),
            cast(Subject.metadata_json, String),
            cast(Subject.created_at, String),
            cast(Subject.updated_at, String),
            Subject.created_at,
        )
        .where(Subject.external_id.like(f"{prefix}-%"))
        .order_by(Subject.id)
    ).all()
    return [
        (external_id.removeprefix(prefix), name, no_name, metadata, shape(created), shape(updated), at.tzinfo)
        for external_id, name, no_name, metadata, created, updated, at in rows
    ]


def shape(text: str) -> str:
    return re.sub(r"\d+", "9", text)


def test_insert_many_writes_the_rows_insert_writes(session: Session) -> None:
    collection_id = default_id(session)
    external_ids = [f"-{number}" for number in range(len(NAMES))]
    session.execute(
        insert(subjects_table()),
        [
            {"collection_id": collection_id, "external_id": f"core{external_id}", "name": name}
            for external_id, name in zip(external_ids, NAMES, strict=True)
        ],
    )
    insert_many(
        session,
        subjects_table(),
        {"external_id": [f"many{external_id}" for external_id in external_ids], "name": NAMES},
        {"collection_id": collection_id},
    )
    many = stored(session, "many")
    assert len(many) == len(NAMES)
    assert many == stored(session, "core")  # the defaulted columns too: metadata_json, the times


def test_a_constant_is_stored_as_the_same_value_in_every_row(session: Session) -> None:
    collection_id = default_id(session)
    insert_many(
        session,
        subjects_table(),
        {"external_id": ["same-1", "same-2"]},
        {"collection_id": collection_id, "name": "Twin", "metadata_json": {"team": "blue"}},
    )
    rows = session.execute(
        select(Subject.name, Subject.metadata_json).where(Subject.external_id.like("same-%"))
    ).all()
    assert [tuple(row) for row in rows] == [("Twin", {"team": "blue"})] * 2


def test_columns_of_different_lengths_are_refused(session: Session) -> None:
    with pytest.raises(ValueError):
        insert_many(
            session,
            subjects_table(),
            {"external_id": ["short-1", "short-2"], "name": ["only one"]},
            {"collection_id": default_id(session)},
        )
    assert session.scalars(select(Subject.id).where(Subject.external_id.like("short-%"))).all() == []
