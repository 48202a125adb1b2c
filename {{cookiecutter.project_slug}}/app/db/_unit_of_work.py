"""A unit of work (one request or one `db()` block) whose session is created on first use."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ._cleanup import end_session, quietly, shielded
from ._errors import MissingSessionError, SessionFinalizedError

__all__ = ["MAIN_UNIT", "UnitOfWork", "main_session"]


class UnitOfWork:
    """Holds the session of one request or `db()` block; cheap to make, so every request gets one.

    Nothing touches the database until `get()` is first called: a request that never
    reads `db.session` creates no session and checks out no connection.
    """

    __slots__ = ("factory", "finalized", "session", "session_args")

    def __init__(
        self, factory: async_sessionmaker[AsyncSession], session_args: dict[str, Any]
    ) -> None:
        self.factory = factory
        self.session_args = session_args
        self.session: AsyncSession | None = None
        self.finalized = False

    def get(self) -> AsyncSession:
        """The session of this unit of work, created now if this is the first use."""
        if self.finalized:
            raise SessionFinalizedError()
        session = self.session
        if session is None:
            session = self.session = self.factory(**self.session_args)
        return session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncSession]:
        """`async with db.connection()`: this unit's session, which the unit itself ends."""
        yield self.get()

    def holds_connection(self) -> bool:
        """Whether the calling task's session has a transaction, and so a connection, open."""
        return self.session is not None and self.session.in_transaction()

    async def finish(self, *, commit: bool) -> None:
        """End normally: commit if asked (else roll back) and close; errors propagate."""
        if self.finalized:
            return
        self.finalized = True
        session = self.session
        if session is None:
            return
        if session.in_transaction():
            await shielded(end_session(session, commit=commit))
        else:
            # Without a transaction (the app committed or rolled back itself) the session
            # holds no connection: ending it sends nothing to the database, so it needs
            # no task of its own. Should a commit listener query and be cancelled,
            # end_session's error path still closes the session through the shield.
            await end_session(session, commit=commit)

    async def discard(self) -> None:
        """End while an exception propagates: roll back and close, logging any failure."""
        if self.finalized:
            return
        self.finalized = True
        if self.session is not None:
            await quietly(self.session.close())


# The unit of work that the calling code runs in on the main database: `db` sets it for
# each request and `db()` block. It lives here, below the proxy, so that the models' query
# helpers can default to its session without the models' base importing the proxy.
MAIN_UNIT: ContextVar[UnitOfWork | None] = ContextVar("db_unit_of_work", default=None)


def main_session() -> AsyncSession:
    """The session of the main database's current unit of work, as `db.session` gives it."""
    unit = MAIN_UNIT.get()
    if unit is None:
        raise MissingSessionError()
    return unit.get()
