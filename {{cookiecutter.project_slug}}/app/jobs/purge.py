"""The example's periodic job: purging notes that were soft-deleted long ago.

The lifespan runs it (`running_jobs()`) in every worker, but the purge runs once per
interval of the wall clock (the hour from 10:00 to 11:00, ...) across all of them,
whichever wakes up first in it: `purge_once_per_interval` takes the job's lock
(`job_lock()`, app/jobs/periodic.py), then claims the interval in the `job_runs` table,
in the same transaction as the purge. A process that finds the lock taken (another one
is running the job) or the interval already claimed skips it.
"""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy import delete, update

from app.db import db, utc_now
from app.jobs.periodic import PeriodicJob, job_lock
from app.models.job_run import JobRun
from app.models.note import Note

__all__ = [
    "PURGE_AFTER",
    "PURGE_JOB",
    "purge_deleted_notes",
    "purge_once_per_interval",
    "running_jobs",
]

logger = logging.getLogger(__name__)

# Deleted notes can be restored for this long; after that the job removes them for good.
PURGE_AFTER = timedelta(days=30)
PURGE_JOB = "purge-deleted-notes"


async def purge_deleted_notes(older_than: timedelta = PURGE_AFTER) -> int:
    """Remove notes soft-deleted more than `older_than` ago, now; returns how many."""
    async with db(commit_on_exit=True):
        return await _purge(older_than)


async def purge_once_per_interval(interval: float, older_than: timedelta = PURGE_AFTER) -> bool:
    """Purge, unless another process runs or ran this interval's purge; True if this one did."""
    start = _interval_start(interval)
    async with db(commit_on_exit=True), job_lock(PURGE_JOB) as ours:
        if not ours:
            logger.debug("job %s: another process is running it; skipped", PURGE_JOB)
            return False
        if not await _claim(PURGE_JOB, start):
            logger.debug("job %s: the interval from %s ran already", PURGE_JOB, start)
            return False
        await _purge(older_than)
    logger.info("job %s ran for the interval from %s", PURGE_JOB, start.isoformat())
    return True


async def _purge(older_than: timedelta) -> int:
    cutoff = utc_now() - older_than
    result = await db.session.execute(
        delete(Note)
        .where(Note.deleted_at.is_not(None), Note.deleted_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    purged: int = result.rowcount  # type: ignore[attr-defined]
    if purged:
        logger.info("purged %d notes deleted before %s", purged, cutoff.isoformat())
    return purged


def _interval_start(interval: float) -> datetime:
    """The start of the wall-clock interval it is now, the same on every synchronised machine."""
    return datetime.fromtimestamp(time.time() // interval * interval, UTC)


async def _claim(name: str, start: datetime) -> bool:
    """Record in the run's transaction that `name` ran for the interval from `start`.

    False when that interval is claimed already. The update is conditional, so that a
    process that reads an old row never claims an interval twice: a competing update
    waits for the first one's commit and then finds nothing to change.
    """
    claimed = await db.session.execute(
        update(JobRun)
        .where(JobRun.name == name, JobRun.interval_start < start)
        .values(interval_start=start)
    )
    if claimed.rowcount == 1:  # type: ignore[attr-defined]
        return True
    if await db.session.get(JobRun, name) is not None:
        return False
    try:  # the job's first run ever
        async with db.session.begin_nested():
            db.session.add(JobRun(name=name, interval_start=start))
    except sqlalchemy.exc.IntegrityError:
        return False  # another process's first run came first
    return True


@asynccontextmanager
async def running_jobs(app: FastAPI) -> AsyncIterator[None]:
    """Run the service's periodic jobs while the block is open; `app.state.jobs` lists them."""
    interval = app.state.settings.purge_interval
    purge = PeriodicJob(
        lambda: purge_once_per_interval(interval), interval=interval, name=PURGE_JOB
    )
    app.state.jobs = [purge]
    purge.start()
    try:
        yield
    finally:
        await purge.stop()
