"""The service's own ORM listeners: jobs that start once a transaction commits.

The listeners behind the mixins and the column normalisers belong to the session layer,
which installs them itself (`app/db/_listeners.py`). These are registered on the sync
session class, because SQLAlchemy's asyncio extension runs the ORM on a plain `Session`:

- `after_commit`: starts the jobs queued with `run_after_commit()` as asyncio tasks; it
  must not await, because the commit is still in progress;
- `after_transaction_end`: drops the queued jobs of a transaction that rolled back.
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

__all__ = [
    "AfterCommitJob",
    "install_listeners",
    "run_after_commit",
    "wait_for_after_commit_jobs",
]

logger = logging.getLogger(__name__)

AfterCommitJob: TypeAlias = Callable[[], Coroutine[Any, Any, None]]

_JOBS_KEY = "after_commit_jobs"
# Tasks are referenced here until they finish: the event loop itself keeps only
# weak references, and an unreferenced task can be garbage-collected mid-flight.
_running_jobs: set[asyncio.Task[None]] = set()


def install_listeners(session_class: type[Session] = Session) -> None:
    """Register the listeners; calling it again changes nothing.

    `session_class` is the sync session class behind the app's AsyncSession (its
    `sync_session_class`); by default every Session in the process.
    """
    listeners: list[tuple[str, Callable[..., None]]] = [
        ("after_commit", _start_after_commit_jobs),
        ("after_transaction_end", _drop_unstarted_jobs),
    ]
    for name, listener in listeners:
        if not event.contains(session_class, name, listener):
            event.listen(session_class, name, listener)


def run_after_commit(session: AsyncSession | Session, job: AfterCommitJob) -> None:
    """Start `job()` as a task once the session's transaction commits.

    If the transaction rolls back instead, the job never runs: an e-mail about a row
    that was never written is worse than no e-mail.
    """
    session.info.setdefault(_JOBS_KEY, []).append(job)


async def wait_for_after_commit_jobs() -> None:
    """Wait for the jobs already started; the lifespan calls it at shutdown."""
    while _running_jobs:
        await asyncio.gather(*_running_jobs, return_exceptions=True)


def _start_after_commit_jobs(session: Session) -> None:
    if session.in_nested_transaction():
        # Releasing a SAVEPOINT fires after_commit too, but nothing is durable yet.
        return
    jobs: list[AfterCommitJob] = session.info.pop(_JOBS_KEY, [])
    if not jobs:
        return
    # Under AsyncSession this runs in a greenlet on the event loop's thread, so the
    # running loop is at hand; scheduling is all we may do here.
    loop = asyncio.get_running_loop()
    for job in jobs:
        task = loop.create_task(job())
        _running_jobs.add(task)
        task.add_done_callback(_job_finished)


def _drop_unstarted_jobs(session: Session, transaction: SessionTransaction) -> None:
    # Runs after after_commit on success; on a rollback the queued jobs are still
    # here and are dropped with the transaction. Savepoints ending changes nothing.
    if transaction.parent is None:
        session.info.pop(_JOBS_KEY, None)


def _job_finished(task: asyncio.Task[None]) -> None:
    _running_jobs.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("after-commit job %r failed", task.get_coro(), exc_info=exc)
