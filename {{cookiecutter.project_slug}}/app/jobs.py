"""A periodic job run by the lifespan: purging notes that were soft-deleted long ago.

`PeriodicJob` runs its work every `interval` seconds from startup to shutdown, each run
in a unit of work of its own (`async with db(commit_on_exit=True)`), exactly like a
background task. A failing run is logged and the next one comes on schedule; shutdown
cancels the job and waits for it, so no run is cut off holding a connection.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import delete

from app.db import db, utc_now
from app.models.note import Note

__all__ = [
    "PURGE_AFTER",
    "PURGE_INTERVAL_SECONDS",
    "PeriodicJob",
    "purge_deleted_notes",
    "running_jobs",
]

logger = logging.getLogger(__name__)

# Deleted notes can be restored for this long; after that the job removes them for good.
PURGE_AFTER = timedelta(days=30)
PURGE_INTERVAL_SECONDS = 3600.0


async def purge_deleted_notes(older_than: timedelta = PURGE_AFTER) -> int:
    """Remove notes soft-deleted more than `older_than` ago; returns how many."""
    cutoff = utc_now() - older_than
    async with db(commit_on_exit=True):
        result = await db.session.execute(
            delete(Note)
            .where(Note.deleted_at.is_not(None), Note.deleted_at < cutoff)
            .execution_options(synchronize_session=False)
        )
    purged: int = result.rowcount  # type: ignore[attr-defined]
    if purged:
        logger.info("purged %d notes deleted before %s", purged, cutoff.isoformat())
    return purged


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
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.work()
            except Exception:
                logger.exception("job %s failed; it runs again in %g s", self.name, self.interval)


@asynccontextmanager
async def running_jobs(app: FastAPI) -> AsyncIterator[None]:
    """Run the service's periodic jobs while the block is open; `app.state.jobs` lists them."""
    purge = PeriodicJob(
        purge_deleted_notes, interval=PURGE_INTERVAL_SECONDS, name="purge-deleted-notes"
    )
    app.state.jobs = [purge]
    purge.start()
    try:
        yield
    finally:
        await purge.stop()
