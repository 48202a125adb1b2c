"""Standalone reads: one statement on a pooled connection of its own, in autocommit.

`await standalone_read(db, statement)` runs `statement` on a connection of its own from
the proxy's engine, outside the request's session, and returns its buffered result; the
connection is back in the pool before the call returns. In autocommit a read sends no
BEGIN and no COMMIT: on PostgreSQL that is two round trips fewer than the same read
through the session, and one statement is consistent on its own, in a snapshot of its
own.

`StandaloneReader(db)` runs them for the page and count helpers, which take it where
they take a session: `fetch_keyset_page(StandaloneReader(db), ...)`.

An opt-in part of the layer: nothing else in `app/db` imports it, and a copy of the
folder that needs no standalone reads can delete it.

What it is not:

- a way around the session's listeners: it runs a Core statement on a connection, where
  no `do_orm_execute` listener sees it, so write into the statement what one would add
  (`~User.is_deleted` for the soft-delete filter) and select columns, not entities;
- a read of the request's own writes, which sit in a transaction it is not part of: it
  raises `StandaloneReadError` once the request's session has started one, which would
  also make the request hold two connections at once;
- autocommit everywhere. An engine allows it with the execution option
  `STANDALONE_READS` (`create_async_engine(url, execution_options=STANDALONE_READS)`);
  on any other engine the statement runs in a short transaction of its own, which is
  what it must do behind PgBouncer in transaction mode: asyncpg prepares a statement
  and runs it in two exchanges, which without a transaction around them PgBouncer may
  send to two different server connections.
"""

from collections.abc import Mapping
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import ClauseElement, Connection, Engine, Executable, Result
from sqlalchemy.ext.asyncio import AsyncEngine

from ._errors import SessionFinalizedError
from ._multi import MultiSessionUnitOfWork
from ._proxy import SessionProxy

__all__ = ["STANDALONE_READS", "StandaloneReadError", "StandaloneReader", "standalone_read"]

# `create_async_engine(url, execution_options=STANDALONE_READS)`: reads run in autocommit.
STANDALONE_READS = {"standalone_reads": True}
(_ALLOWED,) = STANDALONE_READS

# The autocommit form of each engine that allows it. It shares the engine's pool; on
# PostgreSQL a connection's isolation level is set at checkout and reset at checkin
# without a word to the server.
_autocommit: WeakKeyDictionary[AsyncEngine, AsyncEngine] = WeakKeyDictionary()


class StandaloneReadError(RuntimeError):
    """A standalone read was asked for where it could not see what the caller expects."""


async def standalone_read(
    proxy: SessionProxy, statement: Executable, params: Mapping[str, Any] | None = None
) -> Result[Any]:
    """Run `statement` on a pooled connection of its own, outside the current unit of
    work's session, and return its buffered result (see the module's docstring)."""
    engine = _engine_for(proxy)
    if not engine.get_execution_options().get(_ALLOWED, False):
        async with engine.begin() as connection:
            return await connection.execute(statement, params)
    autocommit = _autocommit.get(engine)
    if autocommit is None:
        autocommit = _autocommit[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as connection:
        return await connection.execute(statement, params)


class StandaloneReader:
    """Standalone reads through `proxy`, where the page and count helpers of `app.db` take a
    session: `fetch_keyset_page(StandaloneReader(db), ...)` reads each page standalone."""

    def __init__(self, proxy: SessionProxy) -> None:
        self.proxy = proxy

    async def execute(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Result[Any]:
        return await standalone_read(self.proxy, statement, params)

    def get_bind(self, *, clause: ClauseElement | None = None) -> Engine | Connection:
        return _engine_for(self.proxy).sync_engine


def _engine_for(proxy: SessionProxy) -> AsyncEngine:
    """The engine a standalone read borrows a connection from, where one may run now."""
    unit = proxy.current_unit()
    if unit.finalized:
        raise SessionFinalizedError()
    if isinstance(unit, MultiSessionUnitOfWork):
        raise StandaloneReadError(
            "standalone_read() takes a connection that a `db(multi_sessions=True)` block's "
            "max_concurrent would not count; read through `db.session` there."
        )
    if unit.holds_connection():
        raise StandaloneReadError(
            f"standalone_read() runs outside the session of {proxy!r}, which has a "
            "transaction open: it would not see that transaction's writes, and the unit of "
            "work would hold two connections. Read through the session instead "
            "(`await db.session.execute(statement)`), or read before the session's first "
            "statement."
        )
    engine = unit.session_args.get("bind", unit.factory.kw.get("bind"))
    if not isinstance(engine, AsyncEngine):
        raise StandaloneReadError(
            f"standalone_read() borrows a connection from an engine's pool, but the sessions "
            f"of {proxy!r} are bound to {engine!r}; read through `db.session` instead."
        )
    return engine
