"""A `db(multi_sessions=True)` block: one session per task, at most N connections at once."""

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ._cleanup import end_session, quietly, shielded
from ._errors import CapacityError, SessionFinalizedError
from ._unit_of_work import UnitOfWork

__all__ = ["MultiSessionUnitOfWork", "close_unawaited"]

logger = logging.getLogger(__name__)


class MultiSessionUnitOfWork(UnitOfWork):
    """Gives every task its own session and ends each one when its work ends.

    A child task's session is committed (with `commit_on_exit`) or rolled back when the
    task finishes, or when its `connection()` block or `gather()` coroutine ends; the
    owning task's session when the block exits. Each is its own transaction: there is
    no all-or-nothing across children.
    """

    __slots__ = (
        "_cleanups",
        "_slots",
        "_slotted",
        "_strict",
        "commit_on_exit",
        "owner",
        "sessions",
    )

    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        session_args: dict[str, Any],
        *,
        commit_on_exit: bool,
        slots: int | None,
        strict: bool,
    ) -> None:
        super().__init__(factory, session_args)
        self.owner = _current_task()
        self.commit_on_exit = commit_on_exit
        self.sessions: dict[asyncio.Task[Any], AsyncSession] = {}
        self._slots = None if slots is None else _Slots(slots)
        # With an explicit max_concurrent even direct `db.session` use takes a slot (and
        # fails when none is free); otherwise only connection() and gather() are throttled.
        self._strict = strict
        self._slotted: set[AsyncSession] = set()
        self._cleanups: set[asyncio.Task[None]] = set()

    def get(self) -> AsyncSession:
        if self.finalized:
            raise SessionFinalizedError()
        task = _current_task()
        session = self.sessions.get(task)
        if session is None:
            slots = self._slots if self._strict else None
            if slots is not None and not slots.try_take():
                raise CapacityError(
                    "Every connection slot of this `db(multi_sessions=True)` block is in use; "
                    "run the work through `db.gather(...)` or `async with db.connection():`, "
                    "which wait for a free slot."
                )
            session = self.sessions[task] = self.factory(**self.session_args)
            if slots is not None:
                self._slotted.add(session)
            if task is not self.owner:
                task.add_done_callback(self._on_task_done)
        return session

    def holds_connection(self) -> bool:
        session = self.sessions.get(_current_task())
        return session is not None and session.in_transaction()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncSession]:
        """A session owned by the calling task for the block, once a slot is free."""
        task = _current_task()
        existing = self.sessions.get(task)
        if existing is not None:
            yield existing
            return
        if self.finalized:
            raise SessionFinalizedError()
        if self._slots is not None:
            await self._slots.take()
        session = self.sessions[task] = self.factory(**self.session_args)
        if self._slots is not None:
            self._slotted.add(session)
        try:
            yield session
        except BaseException:
            if self.sessions.pop(task, None) is session:
                await quietly(self._end(session, commit=False))
            raise
        if self.sessions.pop(task, None) is session:
            await shielded(self._end(session, commit=self.commit_on_exit))

    async def gather(self, *aws: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
        """Like `asyncio.gather`, but each awaitable runs in its own task and session."""
        for aw in aws:
            if isinstance(aw, asyncio.Future):
                close_unawaited(aws)
                raise TypeError(
                    "db.gather() takes coroutines, not tasks or futures: a task is already "
                    "running outside the block's sessions and slots. Pass the coroutine "
                    "itself, e.g. db.gather(load(1), load(2))."
                )
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._in_own_session(aw)) for aw in aws]
        try:
            return await asyncio.gather(*tasks, return_exceptions=return_exceptions)
        finally:
            # asyncio.gather leaves the other tasks running when one fails; stop them and
            # wait, so that every session is ended before the caller moves on.
            for task in tasks:
                task.cancel()
            if tasks:
                await shielded(asyncio.wait(tasks))

    async def finish(self, *, commit: bool) -> None:
        if not self.finalized:
            self.finalized = True
            await shielded(self._end_all(commit=commit))

    async def discard(self) -> None:
        if not self.finalized:
            self.finalized = True
            await quietly(self._end_all(commit=False))

    async def _in_own_session(self, aw: Awaitable[Any]) -> Any:
        try:
            async with self.connection():
                return await aw
        finally:
            # A child cancelled while it queued for a slot never started its coroutine;
            # close it so that it does not also warn "was never awaited".
            close_unawaited((aw,))

    async def _end(self, session: AsyncSession, *, commit: bool) -> None:
        try:
            await end_session(session, commit=commit)
        finally:
            if session in self._slotted and self._slots is not None:
                self._slotted.discard(session)
                self._slots.give_back()

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        session = self.sessions.pop(task, None)
        if session is None:  # already ended by connection() or by the block's exit
            return
        succeeded = not task.cancelled() and task.exception() is None
        cleanup = asyncio.get_running_loop().create_task(
            self._end(session, commit=self.commit_on_exit and succeeded)
        )
        self._cleanups.add(cleanup)

    async def _end_all(self, *, commit: bool) -> None:
        errors: list[BaseException] = []
        # Tasks still running own their sessions only until now: roll their work back.
        while self.sessions:
            task, session = self.sessions.popitem()
            try:
                await self._end(session, commit=commit and task is self.owner)
            except Exception as exc:
                errors.append(exc)
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                await cleanup
            except Exception as exc:
                errors.append(exc)
        for extra in errors[1:]:
            logger.error("another session of the block failed to end", exc_info=extra)
        if errors:
            raise errors[0]


class _Slots:
    """A counting semaphore that can also be taken without waiting."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # the slot was handed over just as we were cancelled
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next waiter
                return
        self._free += 1


def close_unawaited(aws: tuple[Awaitable[Any], ...]) -> None:
    """Close the coroutines among `aws`, which a refusing call will never await."""
    # Coroutines handed to a call that refuses them would warn "never awaited" on top
    # of the real error.
    for aw in aws:
        if isinstance(aw, Coroutine):
            aw.close()


def _current_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("The database session layer must be used from an asyncio task.")
    return task
