"""The example models work on the schema that the migrations build (not create_all)."""

import pytest
from sqlalchemy.exc import IntegrityError

from app.db import create_session_factory
from app.events import install_listeners
from app.migrate import upgrade
from app.models.note import Note
from app.models.user import User
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

        # Normalised before insert, so the unique constraint ignores case and spaces.
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                session.add(User(email="ann@example.com ", username="someone-else"))

    async with sessions() as session:
        stored = await User.get_one(session, email="ann@example.com")
        notes = await stored.awaitable_attrs.notes

    assert (stored.username, stored.preferences) == ("ann", {"theme": "dark"})
    assert [note.title for note in notes] == ["kept"]
    assert stored.created_at.tzinfo is not None
