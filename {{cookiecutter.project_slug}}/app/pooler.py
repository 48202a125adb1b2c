"""PgBouncer in transaction mode: how the engines behave behind it.

PgBouncer lends one of its server connections to a client for one transaction at a
time, so nothing tied to a server session lasts from one transaction of the app to
the next: not a prepared statement, and not a setting sent when connecting (which
PgBouncer refuses anyway). SQLAlchemy's asyncpg documentation gives the engine
options for it; `set_limits_per_transaction` puts the server's time limits on each
transaction instead of on the session.
"""

from collections.abc import Mapping
from typing import Any
from uuid import uuid4

from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

__all__ = ["pgbouncer_engine_args", "set_limits_per_transaction"]


def pgbouncer_engine_args() -> dict[str, Any]:
    """Engine options for asyncpg behind PgBouncer in transaction mode."""
    return {
        # PgBouncer is the pool. SQLAlchemy recommends NullPool in front of it, so that
        # no connection of ours keeps the prepared statements of past transactions, and
        # the number of server connections is set in one place, pgbouncer.ini.
        "poolclass": NullPool,
        "connect_args": {
            # No statement is prepared once and run again later: the next transaction
            # may run on a server connection that never saw it.
            "statement_cache_size": 0,  # asyncpg's cache
            "prepared_statement_cache_size": 0,  # SQLAlchemy's
            # The statements still prepared within one transaction get names no other
            # client of the same server connection can have taken.
            "prepared_statement_name_func": _unique_statement_name,
        },
    }


def set_limits_per_transaction(engine: AsyncEngine, limits: Mapping[str, str]) -> None:
    """Have every transaction on `engine` start by setting the server `limits` for itself.

    `SET LOCAL` (here `set_config(..., true)`) lasts until the transaction ends, on
    whichever server connection PgBouncer lent for it. It costs one statement per
    transaction; settings on the role (`ALTER ROLE ... SET`) would cost none, but then
    the service's own settings would no longer decide them.
    """
    names = list(limits)
    statement = text(
        "SELECT " + ", ".join(f"set_config(:name_{i}, :value_{i}, true)" for i in range(len(names)))
    )
    parameters: dict[str, str] = {}
    for i, name in enumerate(names):
        parameters[f"name_{i}"] = name
        parameters[f"value_{i}"] = limits[name]

    @event.listens_for(engine.sync_engine, "begin")
    def _set_limits(connection: Connection) -> None:
        connection.execute(statement, parameters)


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid4()}__"
