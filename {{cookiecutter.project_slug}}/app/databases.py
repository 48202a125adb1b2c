"""The engines the settings describe: each one's pool, its server's time limits, PgBouncer,
and the main database's read replica.

Direct to PostgreSQL, the limits go to the server as settings of each connection, and
reads may run standalone, in autocommit (`app/db/standalone.py`).

Behind PgBouncer in transaction mode (DATABASE_POOLER=pgbouncer), PgBouncer lends one of
its server connections to a client for one transaction at a time, so nothing tied to a
server session lasts from one transaction of the app to the next: not a prepared
statement, and not a setting sent when connecting (which PgBouncer refuses anyway).
SQLAlchemy's asyncpg documentation gives the engine options for it; the limits are set
at the start of each transaction instead, and standalone reads run in a transaction of
their own.
"""

from collections.abc import Mapping
from typing import Any
from uuid import uuid4

from sqlalchemy import URL, Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from app.db import create_engine, to_async_url
from app.db.replica import Replica
from app.db.standalone import STANDALONE_READS
from app.settings import Settings

__all__ = ["create_database_engine", "create_replica", "pgbouncer_engine_args"]


def create_database_engine(url: str, settings: Settings) -> AsyncEngine:
    """The engine of the database at `url`, as the settings configure it; it connects on
    first use."""
    engine = create_engine(url, _engine_args(url, settings))
    if settings.database_pooler == "pgbouncer":
        _set_limits_per_transaction(engine, _limits(settings))
    return engine


def create_replica(settings: Settings) -> Replica | None:
    """The read replica of the main database, when DATABASE_REPLICA_URL names one."""
    url = settings.database_replica_url
    if url is None:
        return None
    args = _engine_args(url, settings)
    if to_async_url(url).get_driver_name() == "asyncpg":
        # A replica that cannot be reached must not hold a read for asyncpg's default
        # minute before the read falls back to the primary.
        connect_args = args.get("connect_args", {})
        args["connect_args"] = {"timeout": settings.health_check_timeout, **connect_args}
    return Replica(
        url,
        engine_args=args,
        max_lag=settings.database_replica_max_lag,
        check_timeout=settings.health_check_timeout,
    )


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


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid4()}__"


def _engine_args(url: str, settings: Settings) -> dict[str, Any]:
    parsed = to_async_url(url)  # names a bad URL clearly before anything else reads it
    # Errors and their log lines show a failed statement's SQL, never its values: users' data.
    hidden = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        return hidden  # an in-memory SQLite database has exactly one connection, no pool to size
    if settings.database_pooler == "pgbouncer":
        # PgBouncer pools the connections and refuses the limits as connect arguments;
        # they are set on each transaction instead.
        return {**hidden, **pgbouncer_engine_args()}
    args: dict[str, Any] = {
        **hidden,
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        "pool_timeout": settings.database_pool_timeout,
        "connect_args": _server_limits(parsed, settings),
    }
    if settings.database_pool_pre_ping is not None:
        args["pool_pre_ping"] = settings.database_pool_pre_ping
    if parsed.get_backend_name() == "postgresql":
        # A connection of its own, straight to the server: a read needs no transaction.
        args["execution_options"] = STANDALONE_READS
    return args


def _server_limits(url: URL, settings: Settings) -> dict[str, Any]:
    """Connect arguments that make a PostgreSQL server enforce the settings' time limits."""
    # MySQL and MariaDB name their limits differently (max_execution_time, which covers
    # only SELECT, against max_statement_time), MySQL has no idle-in-transaction limit,
    # and one mysql:// URL serves both: set those on the server (docs/deployment.md).
    if url.get_backend_name() != "postgresql":
        return {}
    limits = _limits(settings)
    if url.get_driver_name() == "asyncpg":
        return {"server_settings": limits}
    return {"options": " ".join(f"-c {name}={value}" for name, value in limits.items())}


def _limits(settings: Settings) -> dict[str, str]:
    """The PostgreSQL settings that carry the service's time limits, in milliseconds."""
    return {
        "statement_timeout": _milliseconds(settings.database_statement_timeout),
        "idle_in_transaction_session_timeout": _milliseconds(
            settings.database_idle_in_transaction_timeout
        ),
    }


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))  # 0 would turn the limit off


def _set_limits_per_transaction(engine: AsyncEngine, limits: Mapping[str, str]) -> None:
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
