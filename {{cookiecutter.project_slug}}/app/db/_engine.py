"""Engines and session factories: the layer's defaults, its session class, typed pool timeouts."""

from typing import Any

import sqlalchemy.exc
from sqlalchemy.engine import URL
from sqlalchemy.engine.base import OptionEngine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolProxiedConnection

from ._errors import PoolTimeoutError
from ._listeners import LayerSession, install_session_listeners
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
    """An engine for `db_url` (sync driver names are translated to async ones)."""
    return create_async_engine(to_async_url(db_url), **(engine_args or {}))


def create_session_factory(
    engine: AsyncEngine, session_args: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """A factory of sessions on `engine`; `session_args` override any default, `bind` too.

    A `sync_session_class` of the caller's gets the layer's soft-delete filter too.
    """
    options = {**SESSION_DEFAULTS, **(session_args or {})}
    sync_session_class = options.setdefault("sync_session_class", LayerSession)
    install_session_listeners(sync_session_class)
    bind = options.pop("bind", engine)
    if isinstance(bind, AsyncEngine):
        # Sessions check connections out through a thin view of the engine that turns
        # the pool's timeout into PoolTimeoutError. It shares the pool, dialect and
        # events, so it works the same for our engines and for a caller's custom one.
        bind = AsyncEngine(_CheckoutDeadlineEngine(bind.sync_engine, {}))
    return async_sessionmaker(bind=bind, **options)


class _CheckoutDeadlineEngine(OptionEngine):
    # Connection() calls raw_connection() for every checkout, ORM flushes included.
    def raw_connection(self) -> PoolProxiedConnection:
        try:
            return super().raw_connection()
        except sqlalchemy.exc.TimeoutError as exc:
            raise PoolTimeoutError(
                f"No database connection became free in time ({exc.args[0]}). The pool is "
                "exhausted: retry later, or raise pool_size / max_overflow / pool_timeout."
            ) from exc
