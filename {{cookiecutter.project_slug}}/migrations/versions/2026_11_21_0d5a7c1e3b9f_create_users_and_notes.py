"""create users and notes

Revision ID: 0d5a7c1e3b9f
Revises:
Create Date: 2026-11-21 22:31:10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import PortableJSON, UTCDateTime, UtcNow

revision: str = "0d5a7c1e3b9f"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("preferences", PortableJSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=UtcNow(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=UtcNow(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=UtcNow(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=UtcNow(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    op.create_index(op.f("ix_notes_user_id"), "notes", ["user_id"])


def downgrade() -> None:
    # Dropping the table drops its index; MySQL refuses to drop the index first
    # because the foreign key needs it.
    op.drop_table("notes")
    op.drop_table("users")
