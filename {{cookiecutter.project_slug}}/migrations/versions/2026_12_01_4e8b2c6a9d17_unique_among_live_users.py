"""unique e-mail and username among live users

Revision ID: 4e8b2c6a9d17
Revises: 0d5a7c1e3b9f
Create Date: 2026-12-01 10:40:00

The unique constraints become unique indexes that leave deleted rows out (`WHERE
deleted_at IS NULL`), so a deleted user's e-mail and username can be registered
again. MySQL and MariaDB have no partial indexes: there the indexes are plain unique
ones, as strict as the constraints they replace.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from app.db import PortableJSON, UTCDateTime, UtcNow

revision: str = "4e8b2c6a9d17"
down_revision: str | Sequence[str] | None = "0d5a7c1e3b9f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("email", "username")
LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    _refuse_sqlite_foreign_keys()
    # SQLite cannot drop a constraint: batch mode rebuilds the table without them.
    constraints = [sa.UniqueConstraint(c, name=op.f(f"uq_users_{c}")) for c in COLUMNS]
    with op.batch_alter_table("users", copy_from=_users(*constraints)) as batch_op:
        for column in COLUMNS:
            batch_op.drop_constraint(op.f(f"uq_users_{column}"), type_="unique")
    for column in COLUMNS:
        op.create_index(
            op.f(f"ix_users_{column}"),
            "users",
            [column],
            unique=True,
            postgresql_where=LIVE,
            sqlite_where=LIVE,
        )


def downgrade() -> None:
    # Fails with a unique violation while a deleted user and a live one share an e-mail
    # or username: remove or rename one of them first.
    _refuse_sqlite_foreign_keys()
    for column in COLUMNS:
        op.drop_index(op.f(f"ix_users_{column}"), table_name="users")
    with op.batch_alter_table("users", copy_from=_users()) as batch_op:
        for column in COLUMNS:
            batch_op.create_unique_constraint(op.f(f"uq_users_{column}"), [column])


def _users(*constraints: sa.Constraint) -> sa.Table:
    """`users` as the first revision built it, for SQLite's rebuild: nothing to reflect
    offline (`--sql`), and the column types stay exactly as declared there."""
    return sa.Table(
        "users",
        sa.MetaData(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("preferences", PortableJSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=UtcNow(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=UtcNow(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        *constraints,
    )


def _refuse_sqlite_foreign_keys() -> None:
    # Rebuilding `users` drops the old table; with foreign keys on, SQLite would first
    # delete its rows and cascade the deletion to every note.
    if context.is_offline_mode():
        return
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "Run this migration with SQLite's foreign keys off (PRAGMA foreign_keys=OFF, "
            "the default): rebuilding the users table would delete every note."
        )
