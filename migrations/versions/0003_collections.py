"""Collections: every subject, template, change, threshold, report, evaluation and job belongs to one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

An existing gallery becomes the collection ``default``, pinned to the model
most of its templates come from (``dlib-resnet-v1``, the default embedder,
when there are none; the service re-pins an empty default to the configured
embedder at start). Subject ids become unique per collection. API keys gain
an optional list of collections they may reach.

SQLite cannot add a NOT NULL column to a filled table or change a primary
key in place: each table gets its column nullable, is filled, then rebuilt
(batch mode) with the constraint. Downgrading would merge or lose other
collections, so it refuses while there is more than ``default``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT = "default"
DEFAULT_EMBEDDER = "dlib-resnet-v1"
# Tables whose every existing row belongs to the default collection, and whether
# the column is required there (a job may one day work on no collection).
OWNED = {"subjects": True, "faces": True, "reports": True, "evaluations": True, "jobs": False}
# Tables whose ids must never be reused; SQLite's batch rebuild drops AUTOINCREMENT unless told.
AUTOINCREMENT = frozenset({"subjects", "faces", "change_log"})


def _batch(table: str) -> AbstractContextManager[BatchOperations]:
    """Alter ``table`` (SQLite: rebuild it), keeping AUTOINCREMENT where the table has it."""
    return op.batch_alter_table(table, table_kwargs={"sqlite_autoincrement": table in AUTOINCREMENT})


def _now() -> datetime:
    """Now, as UtcDateTime stores it: aware on PostgreSQL, naive UTC on SQLite."""
    now = datetime.now(timezone.utc)
    return now.replace(tzinfo=None) if op.get_bind().dialect.name == "sqlite" else now


def _create_default_collection() -> int:
    bind = op.get_bind()
    model = bind.execute(
        sa.text("SELECT model_name FROM faces GROUP BY model_name ORDER BY count(*) DESC, model_name LIMIT 1")
    ).scalar()
    change_seq = bind.execute(sa.text("SELECT coalesce(max(seq), 0) FROM change_log")).scalar() or 0
    collections = sa.table(
        "collections",
        sa.column("external_id", sa.String),
        sa.column("name", sa.String),
        sa.column("metadata_json", sa.JSON),
        sa.column("model_name", sa.String),
        sa.column("change_seq", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    now = _now()
    op.bulk_insert(
        collections,
        [
            {
                "external_id": DEFAULT,
                "name": None,
                "metadata_json": {},
                "model_name": model or DEFAULT_EMBEDDER,
                "change_seq": int(change_seq),
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    found = bind.execute(sa.text("SELECT id FROM collections WHERE external_id = :name"), {"name": DEFAULT})
    return int(found.scalar_one())


def _add_filled_column(table: str, default_id: int, where: str = "") -> None:
    """A nullable ``collection_id`` on ``table``, set to the default collection's id."""
    with _batch(table) as batch:
        batch.add_column(sa.Column("collection_id", sa.Integer(), nullable=True))
    op.execute(sa.text(f"UPDATE {table} SET collection_id = :id {where}").bindparams(id=default_id))


def _owned_by_collection(table: str, required: bool) -> None:
    with _batch(table) as batch:
        batch.alter_column("collection_id", existing_type=sa.Integer(), nullable=not required)
        batch.create_foreign_key(
            op.f(f"fk_{table}_collection_id_collections"),
            "collections",
            ["collection_id"],
            ["id"],
            ondelete="CASCADE",
        )


def _settings_table(*, by_collection: bool) -> sa.TableClause:
    columns = [sa.column("key", sa.String), sa.column("value", sa.JSON), sa.column("updated_at", sa.DateTime)]
    if by_collection:
        columns.append(sa.column("collection_id", sa.Integer))
    return sa.table("settings", *columns)


def _settings_rows() -> list[dict[str, object]]:
    query = sa.select(_settings_table(by_collection=False))
    return [dict(row._mapping) for row in op.get_bind().execute(query)]


def _create_settings(*, by_collection: bool) -> None:
    owner: list[sa.Column[int] | sa.ForeignKeyConstraint] = []
    if by_collection:
        owner = [
            sa.Column("collection_id", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(
                ["collection_id"],
                ["collections.id"],
                name=op.f("fk_settings_collection_id_collections"),
                ondelete="CASCADE",
            ),
        ]
    op.create_table(
        "settings",
        *owner,
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            *(["collection_id"] if by_collection else []), "key", name=op.f("pk_settings")
        ),
    )


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("metadata_json", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("change_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collections")),
        sa.UniqueConstraint("external_id", name=op.f("uq_collections_external_id")),
        sqlite_autoincrement=True,
    )
    default_id = _create_default_collection()

    for table, required in OWNED.items():
        _add_filled_column(table, default_id)
        _owned_by_collection(table, required)
    with _batch("subjects") as batch:
        batch.drop_constraint("uq_subjects_external_id", type_="unique")
        batch.create_unique_constraint(
            op.f("uq_subjects_collection_id_external_id"), ["collection_id", "external_id"]
        )
        batch.create_index(op.f("ix_subjects_collection_id"), ["collection_id"])
    with _batch("faces") as batch:
        batch.drop_index("ix_faces_model_name_id")
        batch.create_index("ix_faces_collection_id_model_name_id", ["collection_id", "model_name", "id"])
    for table in ("reports", "evaluations"):
        with _batch(table) as batch:
            batch.create_index(op.f(f"ix_{table}_collection_id"), ["collection_id"])

    _add_filled_column("change_log", default_id)
    with _batch("change_log") as batch:
        batch.alter_column("collection_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("face_id", existing_type=sa.Integer(), nullable=True)
        batch.alter_column("subject_id", existing_type=sa.Integer(), nullable=True)
        batch.drop_constraint(op.f("ck_change_log_op"), type_="check")
        batch.create_check_constraint(op.f("ck_change_log_op"), "op IN ('add', 'remove', 'drop')")

    # Every audited act so far was on the one gallery, but for API keys.
    _add_filled_column("audit_log", default_id, "WHERE action NOT LIKE 'api_key.%'")

    # Thresholds are per collection: (collection_id, key) is the new primary key. The
    # table holds a few rows, so it is rebuilt through Python rather than altered.
    rows = _settings_rows()
    op.drop_table("settings")
    _create_settings(by_collection=True)
    op.bulk_insert(
        _settings_table(by_collection=True), [{**row, "collection_id": default_id} for row in rows]
    )

    with _batch("api_keys") as batch:
        batch.add_column(sa.Column("scoped", sa.Boolean(), nullable=False, server_default=sa.false()))
    with _batch("api_keys") as batch:
        batch.alter_column("scoped", existing_type=sa.Boolean(), server_default=None)
    op.create_table(
        "api_key_collections",
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_api_key_collections_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_api_key_collections_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_key_id", "collection_id", name=op.f("pk_api_key_collections")),
    )
    op.create_index(op.f("ix_api_key_collections_collection_id"), "api_key_collections", ["collection_id"])


def downgrade() -> None:
    bind = op.get_bind()
    others = bind.execute(sa.text("SELECT count(*) FROM collections WHERE external_id != :d"), {"d": DEFAULT})
    if others.scalar_one():
        raise RuntimeError("refusing to downgrade below 0003 while collections other than 'default' exist")
    op.drop_index(op.f("ix_api_key_collections_collection_id"), table_name="api_key_collections")
    op.drop_table("api_key_collections")
    with _batch("api_keys") as batch:
        batch.drop_column("scoped")

    rows = _settings_rows()
    op.drop_table("settings")
    _create_settings(by_collection=False)
    op.bulk_insert(_settings_table(by_collection=False), rows)

    with _batch("audit_log") as batch:
        batch.drop_column("collection_id")
    op.execute(sa.text("DELETE FROM change_log WHERE op = 'drop'"))
    with _batch("change_log") as batch:
        batch.drop_constraint(op.f("ck_change_log_op"), type_="check")
        batch.create_check_constraint(op.f("ck_change_log_op"), "op IN ('add', 'remove')")
        batch.alter_column("face_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("subject_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("collection_id")

    for table in ("reports", "evaluations"):
        with _batch(table) as batch:
            batch.drop_index(op.f(f"ix_{table}_collection_id"))
    with _batch("faces") as batch:
        batch.drop_index("ix_faces_collection_id_model_name_id")
        batch.create_index("ix_faces_model_name_id", ["model_name", "id"])
    with _batch("subjects") as batch:
        batch.drop_index(op.f("ix_subjects_collection_id"))
        batch.drop_constraint(op.f("uq_subjects_collection_id_external_id"), type_="unique")
        batch.create_unique_constraint("uq_subjects_external_id", ["external_id"])
    for table in OWNED:
        with _batch(table) as batch:
            batch.drop_constraint(op.f(f"fk_{table}_collection_id_collections"), type_="foreignkey")
            batch.drop_column("collection_id")
    op.drop_table("collections")
