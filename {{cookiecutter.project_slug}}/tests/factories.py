"""Factories for the example's rows: readable test data, unique unless told otherwise."""

import itertools
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utc_now
from app.models.note import Note
from app.models.user import User

_numbers = itertools.count(1)


async def make_user(session: AsyncSession, **fields: Any) -> User:
    """A saved user; `email` and `username` are unique unless given."""
    n = next(_numbers)
    fields.setdefault("email", f"user{n}@example.com")
    fields.setdefault("username", f"user{n}")
    user = User(**fields)
    session.add(user)
    await session.commit()
    return user


async def make_note(session: AsyncSession, author: User, **fields: Any) -> Note:
    """A saved note by `author`; pass `deleted_days_ago=N` for one soft-deleted N days ago."""
    deleted_days_ago = fields.pop("deleted_days_ago", None)
    fields.setdefault("title", f"note {next(_numbers)}")
    note = Note(user_id=author.id, **fields)
    if deleted_days_ago is not None:
        note.deleted_at = utc_now() - timedelta(days=deleted_days_ago)
    session.add(note)
    await session.commit()
    return note
