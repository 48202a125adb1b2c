"""Periodic jobs: a run every interval, from startup to shutdown, and a lock across processes.

`PeriodicJob` runs its work every `interval` seconds, the first time one interval after
start. A failing run is logged and the next one comes on schedule; `stop()` cancels the
job and waits for it, so no run is cut off holding a connection.

Every worker of every machine runs the same jobs. `job_lock()` lets one process at a time
run a job's work, with a lock that is the database's own:

- PostgreSQL: `pg_try_advisory_xact_lock`, released when the transaction ends, however
  it ends (commit, rollback, a crash that closes the connection); it works behind
  PgBouncer in transaction mode too;
- MySQL and MariaDB: `GET_LOCK(name, 0)`, released with `RELEASE_LOCK` on the same
  connection whatever happens to the run; its name is server-wide, so it carries the
  database's name;
- SQLite: none; a write locks the file, which serialises every process.
"""

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import db

__all__ = ["PeriodicJob", "job_lock"]

logger = logging.getLogger(__name__)


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
