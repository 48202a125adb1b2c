"""Standalone reads: one statement that needs no transaction, without BEGIN and COMMIT.

`await db.read(statement)` runs a read on a pooled connection in autocommit, which goes
back to the pool before the call returns. That saves two round trips per request on
PostgreSQL, where a session's transaction sends BEGIN before its first statement and
COMMIT or ROLLBACK at its end. A single SELECT is consistent on its own: the database
runs it in a snapshot of its own.

It runs through the unit of work's session instead, with the same result, whenever a
transaction is needed for it to be right or a connection outside the session could do
harm:

- the engine does not allow them (see below);
- the session already exists: the read then sees the session's own writes, and a
  request never holds two connections at once;
- the statement is an ORM statement (`select(User)`): entities need the session, which
  also adds the soft-delete filter;
- the engine has `begin` listeners, which set something up per transaction (limits
  behind PgBouncer, a tenant, a role) that a read outside one would miss;
- the session factory or the block routes elsewhere: a replica (its reads are already
  in autocommit), other binds, or a connection (tests that roll each test back);
- inside `db(multi_sessions=True)`, whose connections `max_concurrent` counts;
- the database is not PostgreSQL: SQLite starts no transaction for a SELECT, and
  MySQL's drivers would spend the round trips saved on switching autocommit on and off.

Engines allow standalone reads with the execution option `standalone_reads=True`.
`create_engine()` sets it on PostgreSQL unless its arguments are those for PgBouncer
(`NullPool`, or asyncpg's statement cache turned off, as `app/pooler.py` gives them):
in transaction mode PgBouncer lends a server connection for one transaction, and
asyncpg prepares a statement and runs it in two exchanges, which without a transaction
around them can reach two server connections. An engine of your own opts in with
`create_async_engine(url, execution_options=STANDALONE_READS)`.

Like a statement run on `db.session.connection()`, a standalone read is not seen by
the session's events (`do_orm_execute`): write into the statement what such a listener
would add, as the example's fast path writes its own `deleted_at IS NULL`.
"""

from collections.abc import Mapping
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, Executable, Result
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from ._replica import reads_from_replica
from ._unit_of_work import UnitOfWork

__all__ = ["STANDALONE_READS", "read"]

# `create_async_engine(url, execution_options=STANDALONE_READS)`: the engine allows them.
STANDALONE_READS = {"standalone_reads": True}
(_ALLOWED,) = STANDALONE_READS

# The autocommit form of each engine that serves standalone reads. It shares the
# engine's pool; a connection gets its isolation level at checkout and the engine's
# default back at checkin, neither of which talks to the server on PostgreSQL.
_autocommit: WeakKeyDictionary[Engine, Engine] = WeakKeyDictionary()
# Execution options that read through a server-side cursor, which the session's own
# error explains: a result that streams is not held whole once the read returns.
_STREAMS = frozenset({"stream_results", "yield_per"})


async def read(
    unit: UnitOfWork, statement: Executable, params: Mapping[str, Any] | None
) -> Result[Any]:
    """`statement`'s buffered result, read standalone where that is safe (see above)."""
    engine = _standalone_engine(unit, statement)
    if engine is None:
        return await unit.get().execute(statement, params)
    # Checkout, statement and checkin in one greenlet: an AsyncConnection would switch
    # into one for each, a quarter of what the read costs the app.
    return await greenlet_spawn(_read_on, engine, statement, params)


def _read_on(
    engine: Engine, statement: Executable, params: Mapping[str, Any] | None
) -> Result[Any]:
    with engine.connect() as connection:
        # The asyncio drivers' cursors hold every row of a result that does not stream
        # (the sync Result is read without awaiting), so it stays readable after the
        # connection has gone back to the pool.
        return connection.execute(statement, params)


def _standalone_engine(unit: UnitOfWork, statement: Executable) -> Engine | None:
    if unit.session is not None or unit.finalized or type(unit) is not UnitOfWork:
        return None
    if statement._propagate_attrs.get("compile_state_plugin") == "orm":
        return None
    if _STREAMS.intersection(statement.get_execution_options()):
        return None  # a server-side cursor: the session refuses it, naming stream()
    options = unit.factory.kw
    bind = options.get("bind")
    if (
        not isinstance(bind, AsyncEngine)
        or options.get("binds")
        or reads_from_replica(options.get("info", {}))
        or "bind" in unit.session_args
        or "binds" in unit.session_args
    ):
        return None
    sync_engine = bind.sync_engine
    if (
        not sync_engine.get_execution_options().get(_ALLOWED)
        or sync_engine.dialect.name != "postgresql"
        or sync_engine.dispatch.begin
    ):
        return None
    engine = _autocommit.get(sync_engine)
    if engine is None:
        engine = _autocommit[sync_engine] = sync_engine.execution_options(
            isolation_level="AUTOCOMMIT"
        )
    return engine
