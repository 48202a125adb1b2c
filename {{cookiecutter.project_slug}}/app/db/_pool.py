"""Pools: the layer's pools with typed errors (a timeout, a database that cannot be
reached), the free check of a pooled connection at checkout, and how many connections a
pool hands out."""

import logging
from typing import Any

import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.engine.interfaces import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import (
    AsyncAdaptedQueuePool,
    ConnectionPoolEntry,
    NullPool,
    Pool,
    PoolProxiedConnection,
    QueuePool,
)

from ._errors import DatabaseUnavailableError, PoolTimeoutError

__all__ = [
    "LayerNullPool",
    "LayerPool",
    "has_free_connection",
    "name_unavailable_databases",
    "pool_capacity",
    "pool_class_for",
    "refuse_closed_connections",
]


class _TypedErrors(Pool):
    """A checkout that raises the layer's errors: `PoolTimeoutError` when no connection
    became free in time, `DatabaseUnavailableError` when a new one could not be opened."""

    def connect(self) -> PoolProxiedConnection:
        # Engine.raw_connection() checks out through here, ORM flushes included.
        try:
            return super().connect()
        except PoolTimeoutError:
            raise
        except sqlalchemy.exc.TimeoutError as exc:
            raise PoolTimeoutError(
                f"No database connection became free in time ({exc.args[0]}). The pool is "
                "exhausted: retry later, or raise pool_size / max_overflow / pool_timeout."
            ) from exc
        except (OSError, TimeoutError) as exc:
            # The driver's own connect failed before any DB-API error was made: asyncpg
            # raises the socket's error (refused, no route, no such host) or a timeout.
            # DB-API errors of a failed connect are typed by name_unavailable_databases().
            raise DatabaseUnavailableError(exc) from exc


class LayerPool(_TypedErrors, AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, with the layer's typed checkout errors.

    Engines made by `create_engine()` use it where SQLAlchemy would use a queue pool, so
    the typed errors need no wrapper around the engine: a session's bind stays the
    engine itself. A caller's own engine keeps SQLAlchemy's `TimeoutError` and the
    driver's errors. It remembers its `max_overflow`, which a queue pool keeps to itself,
    so that `pool_capacity()` can say how many connections it lends at most.
    """

    def __init__(self, creator: Any, *, max_overflow: int = 10, **kwargs: Any) -> None:
        super().__init__(creator, max_overflow=max_overflow, **kwargs)
        self.max_overflow = max_overflow


class LayerNullPool(_TypedErrors, NullPool):
    """SQLAlchemy's NullPool (a connection per checkout, as behind PgBouncer), with the
    layer's typed errors; `create_engine()` uses it where `engine_args` ask for NullPool."""


# A pool logs under its class's name. SQLAlchemy holds its own pools' loggers at WARNING
# unless an engine asks for `echo_pool`; these follow suit, rather than log "Pool
# disposed" at the app's INFO.
for _pool_class in (LayerPool, LayerNullPool):
    _logger = logging.getLogger(f"{_pool_class.__module__}.{_pool_class.__name__}")
    if _logger.level == logging.NOTSET:
        _logger.setLevel(logging.WARNING)


def name_unavailable_databases(engine: AsyncEngine) -> None:
    """Have `engine` raise `DatabaseUnavailableError` for a connection it fails to open,
    in place of the driver's DB-API error; calling it again changes nothing."""
    if not event.contains(engine.sync_engine, "handle_error", _unavailable):
        event.listen(engine.sync_engine, "handle_error", _unavailable)


def _unavailable(context: ExceptionContext) -> BaseException | None:
    # Without a connection, the error is the connect's; a failed pre-ping is the pool's
    # to handle (it reconnects), and a failed commit has a connection.
    original = context.original_exception
    if context.connection is None and not context.is_pre_ping and isinstance(original, Exception):
        return DatabaseUnavailableError(original)
    return None


def refuse_closed_connections(engine: AsyncEngine) -> None:
    """Have `engine`'s pool replace, at checkout, a connection the server has closed.

    A restart, a failover or an operator ending backends closes the pool's idle
    connections from the server's side, and asyncpg sees each socket close as it happens
    (`is_closed()`). This reads what the driver saw, with no round trip, where pool
    pre-ping would send one on every checkout. aiomysql tells no such thing, so on MySQL
    `create_engine()` turns pre-ping on instead. A connection that died silently (a host
    that vanished, a firewall that dropped it) is only ever found by pre-ping.
    """
    if not event.contains(engine.sync_engine, "checkout", _refuse_if_closed):
        event.listen(engine.sync_engine, "checkout", _refuse_if_closed)


def _refuse_if_closed(
    dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    driver_connection = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver_connection, "is_closed", None)  # asyncpg's
    if callable(is_closed) and is_closed():
        # The pool discards this connection alone and checks out a fresh one.
        raise sqlalchemy.exc.DisconnectionError("the server closed this pooled connection")


def pool_class_for(url: URL, chosen: type[Pool] | None = None) -> type[Pool] | None:
    """The layer's pool for `url`: `LayerPool` where SQLAlchemy would pool it in a queue,
    `LayerNullPool` where `chosen` (the caller's `poolclass`) is NullPool; None to keep
    SQLAlchemy's or the caller's choice."""
    if chosen is not None:
        return LayerNullPool if chosen is NullPool else None
    dialect = url.get_dialect()
    if not issubclass(dialect, DefaultDialect):
        return None
    return LayerPool if issubclass(dialect.get_pool_class(url), QueuePool) else None


def pool_capacity(pool: Pool) -> int | None:
    """How many connections `pool` lends at most; None when it has no limit, or does not
    say (a queue pool of the caller's own keeps its `max_overflow` to itself)."""
    if isinstance(pool, LayerPool) and pool.max_overflow >= 0 and pool.size() > 0:
        return pool.size() + pool.max_overflow
    return None


def has_free_connection(pool: Pool) -> bool:
    """Whether a checkout from `pool` would succeed right now without waiting."""
    capacity = pool_capacity(pool)
    return capacity is None or (isinstance(pool, QueuePool) and pool.checkedout() < capacity)
