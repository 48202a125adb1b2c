"""The example models work on the schema that the migrations build (not create_all)."""

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import create_session_factory
from app.jobs.after_commit import install_listeners
from app.models.note import Note
from app.models.user import User
from app.ops.migrate import downgrade, upgrade
from tests.migrations.conftest import NewDatabase


async def test_users_and_notes_on_the_migrated_schema(new_database: NewDatabase) -> None:
    install_listeners()
    engine = await new_database()
    await upgrade(engine)
    sessions = create_session_factory(engine)

    async with sessions() as session:
        ann = User(
            email=" Ann@Example.COM ",
            username="Ann",
            preferences={"theme": "dark"},
            notes=[Note(title="kept"), Note(title="gone")],
        )
        session.add(ann)
        await session.commit()
        ann.notes[1].soft_delete()
        await session.commit()

        # Normalised before insert, so the unique index ignores case and spaces.
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                session.add(User(email="ann@example.com ", username="someone-else"))

    async with sessions() as session:
        stored = await User.get_one(session, email="ann@example.com")
        notes = await stored.awaitable_attrs.notes

    assert (stored.username, stored.preferences) == ("ann", {"theme": "dark"})
    assert [note.title for note in notes] == ["kept"]
    assert stored.created_at.tzinfo is not None


# The revision that made e-mail and username unique among live users only.
LIVE_UNIQUE = "4e8b2c6a9d17"


async def test_live_unique_indexes_keep_every_row_and_free_a_deleted_users_email(
    new_database: NewDatabase, backend: str
) -> None:
    engine = await new_database()
    await upgrade(engine, "0d5a7c1e3b9f")
    user_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO users (id, email, username, full_name, preferences, deleted_at) "
                "VALUES (:id, 'old@example.com', 'old', '', '{}', CURRENT_TIMESTAMP)"
            ),
            {"id": _uuid_value(engine, user_id)},
        )
        await connection.execute(
            text("INSERT INTO notes (user_id, title, body) VALUES (:id, 'kept', '')"),
            {"id": _uuid_value(engine, user_id)},
        )

    await upgrade(engine, LIVE_UNIQUE)

    async with engine.begin() as connection:
        # SQLite rebuilds the users table for this revision; nothing may be lost.
        assert (await connection.execute(text("SELECT count(*) FROM users"))).scalar() == 1
        assert (await connection.execute(text("SELECT title FROM notes"))).scalar() == "kept"
    reuse = text(
        "INSERT INTO users (id, email, username, full_name, preferences) "
        "VALUES (:id, 'old@example.com', 'old', '', '{}')"
    )
    if backend == "mysql":
        # No partial indexes: the deleted row keeps its values.
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(reuse, {"id": _uuid_value(engine, uuid.uuid4())})
        return
    async with engine.begin() as connection:
        await connection.execute(reuse, {"id": _uuid_value(engine, uuid.uuid4())})
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(reuse, {"id": _uuid_value(engine, uuid.uuid4())})

    # Down again, the constraint is back and refuses the duplicate the index allowed.
    with pytest.raises(IntegrityError):
        await downgrade(engine, "0d5a7c1e3b9f")


def _uuid_value(engine: AsyncEngine, value: uuid.UUID) -> str:
    # sa.Uuid stores 32 hex digits where the backend has no UUID type.
    return str(value) if engine.dialect.name == "postgresql" else value.hex
