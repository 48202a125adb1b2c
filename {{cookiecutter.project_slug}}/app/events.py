"""The ORM event listeners of the service, and `install_listeners()`, which registers them.

SQLAlchemy's asyncio extension runs the ORM in a greenlet on top of a plain `Session`,
so listeners are ordinary synchronous functions registered on the mapper or on the
sync session class, never on `AsyncSession`:

- `before_insert` / `before_update` (mapper, every model): run each column's
  normaliser, named in the column's `info={NORMALIZE: function}`;
- `before_update`: moves `updated_at` forward on a changed row;
- `do_orm_execute` (session): hides soft-deleted rows from SELECTs unless the
  statement opts in with `execution_options(include_deleted=True)`;
- `after_commit` (session): starts the jobs queued with `run_after_commit()` as
  asyncio tasks; it must not await, because the commit is still in progress.
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias

from sqlalchemy import Connection, event, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    Mapper,
    ORMExecuteState,
    Session,
    SessionTransaction,
    with_loader_criteria,
)

from app.db.base import Base
from app.db.mixins import SoftDeleteMixin, TimestampMixin, utc_now

__all__ = [
    "NORMALIZE",
    "AfterCommitJob",
    "install_listeners",
    "run_after_commit",
    "wait_for_after_commit_jobs",
]

logger = logging.getLogger(__name__)

# The key in a column's `info` that names its normaliser, a function str -> str.
NORMALIZE = "normalize"

AfterCommitJob: TypeAlias = Callable[[], Coroutine[Any, Any, None]]

_JOBS_KEY = "after_commit_jobs"
# Tasks are referenced here until they finish: the event loop itself keeps only
# weak references, and an unreferenced task can be garbage-collected mid-flight.
_running_jobs: set[asyncio.Task[None]] = set()


def install_listeners(session_class: type[Session] = Session) -> None:
    """Register every listener; calling it again changes nothing.

    `session_class` is the sync session class behind the app's AsyncSession (its
    `sync_session_class`); by default every Session in the process.
    """
    mapper_listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_insert", _normalize),
        ("before_update", _normalize_and_touch),
    ]
    for name, listener in mapper_listeners:
        # propagate=True reaches every model, including ones declared later.
        if not event.contains(Base, name, listener):
            event.listen(Base, name, listener, propagate=True)
    session_listeners: list[tuple[str, Callable[..., None]]] = [
        ("do_orm_execute", _hide_soft_deleted),
        ("after_commit", _start_after_commit_jobs),
        ("after_transaction_end", _drop_unstarted_jobs),
    ]
    for name, listener in session_listeners:
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


def _normalize(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    loaded = inspect(target).dict
    for attribute in mapper.column_attrs:
        normalize = attribute.columns[0].info.get(NORMALIZE)
        value = loaded.get(attribute.key)
        if normalize is not None and isinstance(value, str):
            setattr(target, attribute.key, normalize(value))


def _normalize_and_touch(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    _normalize(mapper, connection, target)
    if not isinstance(target, TimestampMixin):
        return
    state = inspect(target)
    # before_update also fires for rows whose only change is to a collection; those
    # write nothing, and an explicitly assigned updated_at wins.
    session = state.session
    changed = session is not None and session.is_modified(target, include_collections=False)
    if changed and not state.attrs.updated_at.history.has_changes():
        target.updated_at = utc_now()


def _hide_soft_deleted(state: ORMExecuteState) -> None:
    if (
        state.is_select
        # Column and relationship loads inherit the criteria from the statement that
        # loaded the parent, along with its include_deleted choice.
        and not state.is_column_load
        and not state.is_relationship_load
        and not state.execution_options.get("include_deleted", False)
    ):
        state.statement = state.statement.options(
            with_loader_criteria(
                SoftDeleteMixin,
                lambda cls: cls.deleted_at.is_(None),
                include_aliases=True,
            )
        )


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
