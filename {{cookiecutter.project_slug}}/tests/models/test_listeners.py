"""Each listener in app.events fires through an AsyncSession."""

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.mixins import INCLUDE_DELETED
from app.events import AfterCommitJob, run_after_commit, wait_for_after_commit_jobs
from tests.models.scratch import Member, Post


async def _reload(sessions: async_sessionmaker[AsyncSession], member: Member) -> Member:
    async with sessions() as session:
        statement = select(Member).filter_by(id=member.id).execution_options(**INCLUDE_DELETED)
        return (await session.execute(statement)).scalar_one()


async def test_before_insert_normalises_marked_columns_only(
    sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with sessions() as session:
        member = Member(handle=f"  {handle.upper()} ", team="  Blue Team ")
        session.add(member)
        await session.commit()

    stored = await _reload(sessions, member)
    assert stored.handle == handle
    assert stored.team == "  Blue Team "


async def test_before_update_normalises_and_moves_updated_at(
    sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()
        inserted_at = member.updated_at

        member.handle = f" {handle.upper()}-Renamed"
        await session.commit()

    stored = await _reload(sessions, member)
    assert stored.handle == f"{handle}-renamed"
    assert stored.updated_at > inserted_at
    assert stored.created_at == member.created_at


async def test_updated_at_stays_when_only_a_collection_changes(
    sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()
        inserted_at = member.updated_at

        (await member.awaitable_attrs.posts).append(Post(title="first"))
        await session.commit()

    assert (await _reload(sessions, member)).updated_at == inserted_at


async def test_an_explicit_updated_at_wins(
    sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    chosen = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()

        member.score = 5
        member.updated_at = chosen
        await session.commit()

    assert (await _reload(sessions, member)).updated_at == chosen


async def test_soft_deleted_rows_are_hidden_unless_asked_for(
    sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with sessions() as session:
        member = Member(handle=handle, posts=[Post(title="kept"), Post(title="deleted")])
        session.add(member)
        await session.commit()
        member.posts[1].soft_delete()
        await session.commit()
        deleted_id = member.posts[1].id

    async with sessions() as session:
        posts = select(Post).filter_by(member_id=member.id)
        visible = (await session.execute(posts)).scalars().all()
        everything = (await session.execute(posts.execution_options(**INCLUDE_DELETED))).scalars()
        assert [post.title for post in visible] == ["kept"]
        assert sorted(post.title for post in everything) == ["deleted", "kept"]
        assert await Post.get_by_pk(session, deleted_id) is None
        with pytest.raises(NoResultFound):
            await Post.get_one(session, id=deleted_id)

    # Lazy loads follow the statement that loaded the parent.
    async with sessions() as session:
        loaded = await Member.get_one(session, id=member.id)
        assert [post.title for post in await loaded.awaitable_attrs.posts] == ["kept"]
    async with sessions() as session:
        statement = select(Member).filter_by(id=member.id).execution_options(**INCLUDE_DELETED)
        loaded = (await session.execute(statement)).scalar_one()
        assert len(await loaded.awaitable_attrs.posts) == 2


async def test_a_soft_deleted_row_disappears_in_its_own_session(
    sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()

        member.soft_delete()
        # Autoflush writes deleted_at before the query runs.
        assert await Member.get_by_pk(session, member.id) is None
        await session.commit()

    assert (await _reload(sessions, member)).is_deleted


async def test_after_commit_starts_the_job_without_waiting_for_it(
    sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    release = asyncio.Event()
    outcome: list[bool] = []

    async def job() -> None:
        # Runs after the commit, so another session sees the row.
        async with sessions() as other:
            outcome.append(await Member.get_by_pk(other, member.id) is not None)
        await release.wait()

    async with sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        run_after_commit(session, job)
        await session.flush()
        await asyncio.sleep(0)
        assert outcome == []
        # If the listener awaited the job, this commit would wait for `release`.
        await asyncio.wait_for(session.commit(), timeout=5)

    release.set()
    await asyncio.wait_for(wait_for_after_commit_jobs(), timeout=5)
    assert outcome == [True]


async def test_after_commit_jobs_are_dropped_on_rollback_and_wait_for_savepoints(
    sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    ran: list[str] = []

    def record(name: str) -> AfterCommitJob:
        async def job() -> None:
            ran.append(name)

        return job

    async with sessions() as session:
        session.add(Member(handle=handle))
        run_after_commit(session, record("rolled back"))
        await session.rollback()

        async with session.begin_nested():
            session.add(Member(handle=handle))
            run_after_commit(session, record("committed"))
        await asyncio.sleep(0)
        assert ran == []
        await session.commit()

    await asyncio.wait_for(wait_for_after_commit_jobs(), timeout=5)
    assert ran == ["committed"]


async def test_a_failing_after_commit_job_is_logged(
    sessions: async_sessionmaker[AsyncSession], handle: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def job() -> None:
        raise RuntimeError("mail server down")

    async with sessions() as session:
        session.add(Member(handle=handle))
        run_after_commit(session, job)
        await session.commit()

    with caplog.at_level(logging.ERROR, logger="app.events"):
        await asyncio.wait_for(wait_for_after_commit_jobs(), timeout=5)
    assert "after-commit job" in caplog.text
    assert "mail server down" in caplog.text
