"""A periodic job run by the lifespan: purging notes that were soft-deleted long ago.

`PeriodicJob` runs its work every `interval` seconds from startup to shutdown, the
first time one interval after start. A failing run is logged and the next one comes
on schedule; shutdown cancels the job and waits for it, so no run is cut off holding
a connection.

Every worker runs the job loop, but the purge runs once per interval of the wall
clock (the hour from 10:00 to 11:00, ...) across all of them, whichever wakes up
first in it: `purge_once_per_interval` takes a lock that no two processes hold at
once (`job_lock`), then claims the interval in the `job_runs` table, in the same
transaction as the purge. A process that finds the lock taken (another one is running
the job) or the interval already claimed skips it. The lock is the database's own:

- PostgreSQL: `pg_try_advisory_xact_lock`, released when the transaction ends, however
  it ends (commit, rollback, a crash that closes the connection); it works behind
  PgBouncer in transaction mode too;
- MySQL and MariaDB: `GET_LOCK(name, 0)`, released with `RELEASE_LOCK` on the same
  connection whatever happens to the run; its name is server-wide, so it carries the
  database's name;
- SQLite: none; the claim's write locks the file, which serialises every process.
"""

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import db, utc_now
from app.models.job_run import JobRun
from app.models.note import Note

__all__ = [
    "PURGE_AFTER",
    "PURGE_JOB",
    "PeriodicJob",
    "job_lock",
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
async def job_lock(name: str) -> AsyncIterator[bool]:
    """Try to take the lock `name` for the unit of work open in `db`; yields whether it did.

    Never waits: a lock another process holds yields False at once.
    """
    connection = await db.session.connection()
    backend = connection.dialect.name
    if backend == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        taken = text("SELECT pg_try_advisory_xact_lock(:key)")
        yield bool((await connection.execute(taken, {"key": key})).scalar_one())
    elif backend in ("mysql", "mariadb"):
        async with _server_wide_lock(connection, name) as ours:
            yield ours
    else:
        yield True


@asynccontextmanager
async def _server_wide_lock(connection: AsyncConnection, name: str) -> AsyncIterator[bool]:
    lock = {"name": name}
    get = text("SELECT GET_LOCK(CONCAT(DATABASE(), '.', :name), 0)")
    ours = (await connection.execute(get, lock)).scalar_one() == 1
    try:
        yield ours
    finally:
        if ours:
            try:
                await connection.execute(
                    text("SELECT RELEASE_LOCK(CONCAT(DATABASE(), '.', :name))"), lock
                )
            except BaseException:
                # A lock left on a pooled connection would stop the job everywhere:
                # closing the connection releases it.
                await connection.invalidate()
                raise


class PeriodicJob:
    """Runs `work()` every `interval` seconds, the first time one interval after start."""

    def __init__(
        self, work: Callable[[], Awaitable[object]], *, interval: float, name: str
    ) -> None:
        if interval <= 0:
            raise ValueError(f"The interval of job {name!r} must be positive, not {interval}.")
        self.work = work
        self.interval = interval
        self.name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"Job {self.name!r} is already running; stop() it first.")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Cancel the job and wait until it has ended; a run in progress is rolled back."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled too, not only the job

    async def _loop(self) -> None:
        task = asyncio.current_task()
        assert task is not None  # start() runs this loop as a task
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.work()
            except Exception:
                if not task.cancelling():
                    logger.exception(
                        "job %s failed; it runs again in %g s", self.name, self.interval
                    )
            if task.cancelling():
                # stop() cancelled the run, and the run's cleanup raised an error of its
                # own in the CancelledError's place (a statement on the connection the
                # cancellation broke): no failure of the job's, and the end that stop()
                # asked for, instead of running on.
                raise asyncio.CancelledError


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
