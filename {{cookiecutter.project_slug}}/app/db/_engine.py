"""Engines and session factories, with the layer's defaults, pool and session class."""

from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from ._listeners import LayerSession, install_session_listeners
from ._pool import name_unavailable_databases, pool_class_for, refuse_closed_connections
from ._replica import Replica, routing_session_class, session_info
from ._standalone import STANDALONE_READS
from ._urls import to_async_url

__all__ = ["SESSION_DEFAULTS", "create_engine", "create_session_factory"]

SESSION_DEFAULTS: dict[str, Any] = {
    # Objects stay readable after commit, so a response can be built from them
    # without another round trip (and without lazy loads outside the session).
    "expire_on_commit": False,
    # A closed session refuses further work instead of quietly opening a new
    # transaction, so a finished request session cannot be reused by accident.
    "close_resets_only": False,
}


def create_engine(db_url: str | URL, engine_args: dict[str, Any] | None = None) -> AsyncEngine:
    """An engine for `db_url` (sync driver names are translated to async ones).

    Unless `engine_args` choose another, its pool is the layer's: `LayerPool` where
    SQLAlchemy would use a queue pool, `LayerNullPool` where the arguments ask for
    NullPool. A checkout that waits out the pool's timeout raises `PoolTimeoutError`,
    and a connection that cannot be opened `DatabaseUnavailableError`, whatever the
    driver. The pool replaces a connection that the server closed while it sat idle, at
    no cost, instead of lending it. On PostgreSQL it allows `db.read()` to run without a
    transaction, unless the arguments are those for PgBouncer (`app/db/_standalone.py`).
    """
    url = to_async_url(db_url)
    args = dict(engine_args or {})
    if url.get_backend_name() == "postgresql" and not _for_a_pooler(args):
        args["execution_options"] = {**STANDALONE_READS, **args.get("execution_options", {})}
    if "pool" not in args:
        poolclass = pool_class_for(url, args.get("poolclass"))
        if poolclass is not None:
            args["poolclass"] = poolclass
    engine = create_async_engine(url, **args)
    refuse_closed_connections(engine)
    name_unavailable_databases(engine)
    return engine


def _for_a_pooler(args: dict[str, Any]) -> bool:
    """Whether `args` are an engine's behind PgBouncer: no pool of its own, or asyncpg
    told not to keep prepared statements."""
    connect_args = args.get("connect_args", {})
    return (
        args.get("poolclass") is NullPool
        or connect_args.get("statement_cache_size") == 0
        or "prepared_statement_name_func" in connect_args
    )


def create_session_factory(
    engine: AsyncEngine,
    session_args: dict[str, Any] | None = None,
    *,
    replica: Replica | None = None,
) -> async_sessionmaker[AsyncSession]:
    """A factory of sessions on `engine`; `session_args` override any default, `bind` too.

    A `sync_session_class` of the caller's gets the layer's soft-delete filter too. With
    a `replica`, the sessions send their safe reads to it (see `Replica`).
    """
    options = {**SESSION_DEFAULTS, **(session_args or {})}
    sync_session_class = options.setdefault("sync_session_class", LayerSession)
    install_session_listeners(sync_session_class)
    if replica is not None:
        options["sync_session_class"] = routing_session_class(sync_session_class)
        options["info"] = {**options.get("info", {}), **session_info(replica)}
    options.setdefault("bind", engine)
    return async_sessionmaker(**options)
