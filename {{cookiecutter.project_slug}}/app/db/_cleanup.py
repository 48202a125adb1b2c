"""Ending sessions: commit or roll back, then close, and finish even when cancelled."""

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

__all__ = ["end_session", "quietly", "shielded"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


async def end_session(session: AsyncSession, *, commit: bool) -> None:
    """Commit `session` if asked (else roll it back) and close it; errors propagate.

    Closing rolls back whatever was not committed and returns the connection to the pool.
    """
    if commit:
        try:
            # One switch into SQLAlchemy's greenlet for both, where `await session.commit()`
            # and `await session.close()` would make two.
            await session.run_sync(_commit_and_close)
        except BaseException:
            # The commit error is the one that matters; a failing close must not replace it.
            await quietly(session.close())
            raise
        return
    await session.close()


def _commit_and_close(session: Session) -> None:
    session.commit()
    session.close()


async def shielded(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to the end in a task of its own, however often the caller is cancelled.

    The caller's CancelledError is re-raised unchanged once the work is done. anyio cancel
    scopes re-deliver cancellation at every await, so a single `asyncio.shield` would hand
    control back (and end the request) while the connection is still being released.
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(coroutine)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        # A bare future woken by the task's done-callback: awaiting it cannot cancel the
        # task, and it is cheaper than `asyncio.wait` or `asyncio.shield`.
        waiter = loop.create_future()
        wake = functools.partial(_wake, waiter)
        task.add_done_callback(wake)
        try:
            await waiter
        except asyncio.CancelledError as exc:
            cancelled = exc
            task.remove_done_callback(wake)
    if cancelled is not None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("database cleanup failed during cancellation", exc_info=task.exception())
        raise cancelled
    return task.result()


def _wake(waiter: asyncio.Future[None], _task: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def quietly(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run cleanup while another exception propagates: shielded, and never raising.

    The caller re-raises its own exception, so a cleanup failure is logged rather than
    allowed to mask it, and a cancellation arriving meanwhile is left to that exception.
    """
    try:
        await shielded(coroutine)
    except asyncio.CancelledError:
        pass
    except Exception:
        logger.exception("database cleanup failed while handling another exception")
