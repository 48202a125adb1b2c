"""create audit entries

Revision ID: 6f2e8a4d0c1b
Revises:
Create Date: 2026-11-21 22:31:10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import PortableJSON, UTCDateTime, UtcNow

revision: str = "6f2e8a4d0c1b"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("details", PortableJSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=UtcNow(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    op.create_index(op.f("ix_audit_entries_action"), "audit_entries", ["action"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_entries_action"), table_name="audit_entries")
    op.drop_table("audit_entries")
