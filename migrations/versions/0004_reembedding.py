"""Re-embedding: what each template was cut from, and the templates a move to another model stages.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A face's ``crop`` now holds the region of the photo around it (``crop_kind``
"source"), with its landmarks and box in that region's pixels, so another
model's template can be computed from it. Faces stored before keep their
aligned crop ("aligned", no landmarks). ``staged_templates`` holds a
re-embedding job's templates until it switches the collection; a job's
``details`` say what it moves and what it could not. The change log gains
``rebuild``: a collection's templates were all replaced, and every worker
rebuilds its index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("faces", sa.Column("crop_kind", sa.String(16), nullable=True))
    op.add_column("faces", sa.Column("crop_landmarks", sa.JSON(), nullable=True))
    op.add_column("faces", sa.Column("crop_box", sa.JSON(), nullable=True))
    op.execute("UPDATE faces SET crop_kind = 'aligned' WHERE crop IS NOT NULL")
    op.add_column("jobs", sa.Column("details", sa.JSON(), nullable=True))
    _change_ops("op IN ('add', 'remove', 'drop', 'rebuild')")
    op.create_table(
        "staged_templates",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("face_id", sa.Integer(), sa.ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("embedding_dim", sa.Integer(), nullable=False),
    )


def _change_ops(check: str) -> None:
    """The change log's allowed ops (SQLite rebuilds the table, keeping AUTOINCREMENT: seqs never repeat)."""
    with op.batch_alter_table("change_log", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_constraint(op.f("ck_change_log_op"), type_="check")
        batch.create_check_constraint(op.f("ck_change_log_op"), check)


def downgrade() -> None:
    op.execute("DELETE FROM change_log WHERE op = 'rebuild'")
    _change_ops("op IN ('add', 'remove', 'drop')")
    op.drop_table("staged_templates")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("details")
    with op.batch_alter_table("faces", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("crop_box")
        batch.drop_column("crop_landmarks")
        batch.drop_column("crop_kind")
