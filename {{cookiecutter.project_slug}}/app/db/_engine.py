"""Engines and session factories, with the layer's defaults, pool and session class."""

from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ._listeners import LayerSession, install_session_listeners
from ._pool import name_unavailable_databases, pool_class_for, refuse_closed_connections
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
    driver. The pool replaces a connection that the server closed while it sat idle
    instead of lending it: at no cost on PostgreSQL, whose driver sees the socket close,
    and with pre-ping on MySQL, unless `engine_args` set `pool_pre_ping` themselves.
    """
    url = to_async_url(db_url)
    args = dict(engine_args or {})
    if url.get_backend_name() in ("mysql", "mariadb"):
        args.setdefault("pool_pre_ping", True)
    if "pool" not in args:
        poolclass = pool_class_for(url, args.get("poolclass"))
        if poolclass is not None:
            args["poolclass"] = poolclass
    engine = create_async_engine(url, **args)
    refuse_closed_connections(engine)
    name_unavailable_databases(engine)
    return engine


def create_session_factory(
    engine: AsyncEngine, session_args: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """A factory of sessions on `engine`; `session_args` override any default, `bind` too.

    A `sync_session_class` of the caller's gets the layer's soft-delete filter too.
    """
    options = {**SESSION_DEFAULTS, **(session_args or {})}
    install_session_listeners(options.setdefault("sync_session_class", LayerSession))
    options.setdefault("bind", engine)
    return async_sessionmaker(**options)
