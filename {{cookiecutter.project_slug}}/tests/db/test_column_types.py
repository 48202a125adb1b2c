"""UUID, JSON and timezone-aware datetimes come back as they went in, on every backend."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Uuid, bindparam, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import PortableJSON
from tests.scratch import Member


async def test_uuid_json_and_aware_datetime_round_trip(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    # Microseconds and a non-UTC offset: both are where naive storage goes wrong.
    seen = datetime(2024, 2, 29, 23, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5)))
    profile = {"name": "Zoë", "tags": ["a", "b"], "nested": {"on": True, "none": None}, "n": 1.5}
    async with scratch_sessions() as session:
        member = Member(handle=handle, profile=profile, last_seen=seen)
        session.add(member)
        await session.commit()
        member_id = member.id

    async with scratch_sessions() as session:
        loaded = (await session.execute(select(Member).filter_by(id=member_id))).scalar_one()

    assert isinstance(loaded.id, uuid.UUID)
    assert loaded.id == member_id
    assert loaded.profile == profile
    assert loaded.last_seen == seen
    assert loaded.last_seen is not None
    assert loaded.last_seen.tzinfo == UTC
    assert loaded.last_seen.hour == 18


async def test_naive_datetime_is_refused(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        session.add(Member(handle=handle, last_seen=datetime(2024, 1, 1, 12, 0)))
        with pytest.raises(StatementError, match="naive datetime"):
            await session.flush()


async def test_server_default_timestamps_are_utc(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    # Plain SQL, so neither the ORM nor Core fills in created_at: the database's own
    # default (UtcNow) does.
    insert_by_hand = text(
        "INSERT INTO scratch_members (id, handle, team, score, profile) "
        "VALUES (:id, :handle, '', 0, :profile)"
    ).bindparams(bindparam("id", type_=Uuid()), bindparam("profile", type_=PortableJSON))
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    async with scratch_sessions() as session:
        await session.execute(insert_by_hand, {"id": uuid.uuid4(), "handle": handle, "profile": {}})
        await session.commit()
        created = (
            await session.execute(select(Member.created_at).filter_by(handle=handle))
        ).scalar_one()
    after = datetime.now(UTC) + timedelta(seconds=1)

    assert created.tzinfo == UTC
    assert before <= created <= after
