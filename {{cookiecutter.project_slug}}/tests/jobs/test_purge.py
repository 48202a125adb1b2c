"""The periodic purge: what it removes, how it runs, and how shutdown stops it.

tests/test_workers.py of the template runs the job in three worker processes on one
database and counts the runs: one per interval, not one per process.
"""

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import INCLUDE_DELETED, db
from app.jobs.periodic import PeriodicJob, job_lock
from app.jobs.purge import (
    PURGE_AFTER,
    PURGE_JOB,
    purge_deleted_notes,
    purge_once_per_interval,
)
from app.models.job_run import JobRun
from app.models.note import Note
from tests.conftest import serve
from tests.factories import make_note, make_user


async def stored_titles(session: AsyncSession) -> list[str]:
    notes = await session.scalars(
        select(Note.title).order_by(Note.id).execution_options(**INCLUDE_DELETED)
    )
    return list(notes)


@pytest.mark.usefixtures("client")  # the running app binds `db`
async def test_purge_removes_only_notes_deleted_before_the_cutoff(session: AsyncSession) -> None:
    author = await make_user(session)
    await make_note(session, author, title="live")
    await make_note(session, author, title="recent", deleted_days_ago=PURGE_AFTER.days - 1)
    await make_note(session, author, title="old", deleted_days_ago=PURGE_AFTER.days + 1)

    assert await purge_deleted_notes() == 1
    assert await stored_titles(session) == ["live", "recent"]
    assert await purge_deleted_notes(older_than=timedelta(0)) == 1
    assert await stored_titles(session) == ["live"]


@pytest.mark.usefixtures("client")
async def test_the_periodic_purge_runs_once_per_interval(session: AsyncSession) -> None:
    author = await make_user(session)
    await make_note(session, author, title="old", deleted_days_ago=PURGE_AFTER.days + 1)
    interval = 1e9  # about 32 years, so that both runs fall in the same interval

    first = await purge_once_per_interval(interval)
    await make_note(session, author, title="old too", deleted_days_ago=PURGE_AFTER.days + 1)
    second = await purge_once_per_interval(interval)

    assert (first, second) == (True, False)
    assert await stored_titles(session) == ["old too"]
    [run] = await session.scalars(select(JobRun))
    assert run.name == PURGE_JOB
    assert run.interval_start.timestamp() == time.time() // interval * interval == 1e9


async def test_a_process_skips_the_purge_while_another_holds_its_lock(
    make_live_app: Callable[..., FastAPI], backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("no lock on SQLite: the claim's write locks the file for every process")
    holding = asyncio.Event()
    done = asyncio.Event()

    async def hold_the_lock() -> None:
        async with db(), job_lock(PURGE_JOB) as ours:
            assert ours
            holding.set()
            await done.wait()

    async with serve(make_live_app()):
        holder = asyncio.create_task(hold_the_lock())
        await holding.wait()
        try:
            skipped = await purge_once_per_interval(3600.0)
        finally:
            done.set()
            await holder
        ran = await purge_once_per_interval(3600.0)
        async with db(commit_on_exit=True):
            await db.session.execute(delete(JobRun))  # leave nothing behind

    assert (skipped, ran) == (False, True)


async def test_a_job_runs_every_interval_until_stopped() -> None:
    runs = 0
    three_runs = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            three_runs.set()

    job = PeriodicJob(work, interval=0.01, name="tick")
    job.start()
    await three_runs.wait()
    await job.stop()
    after_stop = runs
    await asyncio.sleep(0.05)

    assert not job.running
    assert runs == after_stop


async def test_a_failing_run_is_logged_and_the_next_one_still_comes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = 0
    second_run = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("first run fails")
        second_run.set()

    job = PeriodicJob(flaky, interval=0.01, name="flaky")
    job.start()
    await second_run.wait()
    await job.stop()

    assert "job flaky failed" in caplog.text


@pytest.mark.usefixtures("client")
async def test_stopping_mid_run_rolls_the_run_back(session: AsyncSession) -> None:
    author = await make_user(session)
    started = asyncio.Event()

    async def slow_write() -> None:
        async with db(commit_on_exit=True):
            db.session.add(Note(user_id=author.id, title="half-done"))
            await db.session.flush()
            started.set()
            await asyncio.Event().wait()  # shutdown comes before this ends

    job = PeriodicJob(slow_write, interval=0.001, name="slow")
    job.start()
    await started.wait()
    await job.stop()

    assert await stored_titles(session) == []


async def test_stopping_ends_the_job_even_when_the_run_turns_the_cancellation_into_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A run cancelled mid-statement can fail again in its cleanup (on MariaDB: releasing
    # the lock on a connection the cancellation broke raised PendingRollbackError), which
    # replaces the CancelledError. The job must still end, not run on and hold shutdown.
    started = asyncio.Event()
    runs = 0

    async def breaks_on_cancel() -> None:
        nonlocal runs
        runs += 1
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("Can't reconnect until invalid transaction is rolled back")

    job = PeriodicJob(breaks_on_cancel, interval=0.001, name="broken")
    job.start()
    await started.wait()
    async with asyncio.timeout(5):
        await job.stop()

    assert not job.running
    assert runs == 1
    assert "failed" not in caplog.text  # the stop's doing, not a failed run


async def test_the_lifespan_starts_the_purge_job_and_stops_it(app: FastAPI) -> None:
    async with serve(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        [job] = app.state.jobs
        assert job.name == "purge-deleted-notes"
        assert job.running

    assert not job.running


def test_an_interval_must_be_positive() -> None:
    async def work() -> None:
        return None

    with pytest.raises(ValueError, match="must be positive"):
        PeriodicJob(work, interval=0, name="never")
