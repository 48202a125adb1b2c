"""The service's after-commit jobs start once a transaction commits, and never after a rollback."""

import asyncio
import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.after_commit import (
    AfterCommitJob,
    install_listeners,
    run_after_commit,
    wait_for_after_commit_jobs,
)
from tests.scratch import Member

pytestmark = pytest.mark.usefixtures("_listeners_installed")


@pytest.fixture(scope="module")
def _listeners_installed() -> None:
    install_listeners()


async def test_after_commit_starts_the_job_without_waiting_for_it(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    release = asyncio.Event()
    outcome: list[bool] = []

    async def job() -> None:
        # Runs after the commit, so another session sees the row.
        async with scratch_sessions() as other:
            outcome.append(await Member.get_by_pk(other, member.id) is not None)
        await release.wait()

    async with scratch_sessions() as session:
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
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    ran: list[str] = []

    def record(name: str) -> AfterCommitJob:
        async def job() -> None:
            ran.append(name)

        return job

    async with scratch_sessions() as session:
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
    scratch_sessions: async_sessionmaker[AsyncSession],
    handle: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def job() -> None:
        raise RuntimeError("mail server down")

    async with scratch_sessions() as session:
        session.add(Member(handle=handle))
        run_after_commit(session, job)
        await session.commit()

    with caplog.at_level(logging.ERROR, logger="app.jobs.after_commit"):
        await asyncio.wait_for(wait_for_after_commit_jobs(), timeout=5)
    assert "after-commit job" in caplog.text
    assert "mail server down" in caplog.text
