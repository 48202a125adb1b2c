"""indexes for keyset pages and the export

Revision ID: 9c3f5e7a1b2d
Revises: 9c3f1a7e5b20
Create Date: 2026-12-01 13:45:00

`GET /users` pages by `(created_at, id)`: the index holds the live users in that order
(`WHERE deleted_at IS NULL`; a plain index on MySQL and MariaDB, which have no partial
ones), so a page reads its rows and no more, however many users there are.

The export (`GET /export/notes`) reads the deleted users once, to leave out their
notes: the index holds only them (all users on MySQL and MariaDB).

`GET /notes?user_id=` pages one user's notes by id: `(user_id, id)` replaces the index
on `user_id` alone, which it also serves (the foreign key's lookups and cascades). It
stays whole rather than partial: the cascade reaches deleted notes too, and those are
purged by the job in app/jobs/purge.py anyway.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c3f5e7a1b2d"
down_revision: str | Sequence[str] | None = "9c3f1a7e5b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")
DELETED = sa.text("deleted_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        op.f("ix_users_created_at_id"),
        "users",
        ["created_at", "id"],
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_index(
        op.f("ix_users_deleted_at"),
        "users",
        ["deleted_at"],
        postgresql_where=DELETED,
        sqlite_where=DELETED,
    )
    # The new index first: MySQL refuses to drop the only index its foreign key can use.
    op.create_index(op.f("ix_notes_user_id_id"), "notes", ["user_id", "id"])
    op.drop_index(op.f("ix_notes_user_id"), table_name="notes")


def downgrade() -> None:
    op.create_index(op.f("ix_notes_user_id"), "notes", ["user_id"])
    op.drop_index(op.f("ix_notes_user_id_id"), table_name="notes")
    op.drop_index(op.f("ix_users_deleted_at"), table_name="users")
    op.drop_index(op.f("ix_users_created_at_id"), table_name="users")
