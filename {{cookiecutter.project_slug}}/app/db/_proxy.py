"""The `db` proxy: `db.session` is the current unit of work's session, `db()` opens one."""

import sys
import warnings
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager, suppress
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ._errors import (
    CapacityError,
    MissingSessionError,
    ProxyBindingError,
    SessionNotInitialisedError,
)
from ._multi import MultiSessionUnitOfWork, close_unawaited
from ._pool import has_free_connection, pool_capacity
from ._unit_of_work import MAIN_UNIT, UnitOfWork

__all__ = ["SessionProxy", "db"]


class SessionProxy:
    """Gives code the session of the request or `db()` block it runs in.

    The proxy is inert until a middleware binds it to an engine. Each request carries
    its own middleware's session factory, so apps that share a proxy never share a
    session; the binding only decides where `async with db():` outside a request goes.
    `context` holds the unit of work of the code that runs; each proxy has its own,
    but for `db`, whose context the models' query helpers read too.
    """

    def __init__(
        self, name: str = "db", *, context: ContextVar[UnitOfWork | None] | None = None
    ) -> None:
        self._name = name
        self.context = context or ContextVar(f"{name}_unit_of_work", default=None)
        self._engine: AsyncEngine | None = None
        self._factory: async_sessionmaker[AsyncSession] | None = None

    def __repr__(self) -> str:
        bound = self._engine.url.render_as_string() if self._engine is not None else "unbound"
        return f"<SessionProxy {self._name} ({bound})>"

    # A proxy stands for whatever unit of work the calling code runs in, so a copy could
    # only be the proxy itself. FastAPI deep-copies parameter defaults such as `db=db`.
    def __copy__(self) -> "SessionProxy":
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> "SessionProxy":
        return self

    def __reduce__(self) -> str:
        # A module-level proxy pickles as a reference to itself, like a function.
        name = self._name
        if getattr(sys.modules.get(type(self).__module__), name, None) is self:
            return name
        raise TypeError(
            f"{self!r} cannot be pickled: it stands for the session of the code that uses "
            "it, which no other process can share. Pickle the data instead, and use the "
            "proxy where the data is read."
        )

    @property
    def session(self) -> AsyncSession:
        """The current `AsyncSession`, created on first use within the unit of work."""
        return self.current_unit().get()

    def __call__(
        self,
        session_args: dict[str, Any] | None = None,
        commit_on_exit: bool = False,
        multi_sessions: bool = False,
        max_concurrent: int | None = None,
    ) -> "SessionBlock":
        """An `async with` block with a session of its own (see `SessionBlock`)."""
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be 1 or more, not {max_concurrent}.")
        if max_concurrent is not None and not multi_sessions:
            # fastapi-async-sqlalchemy ignores it too; its users' code must keep working.
            warnings.warn(
                f"max_concurrent only applies with multi_sessions=True; db(max_concurrent="
                f"{max_concurrent}) is one session, so the limit is ignored. Pass "
                "multi_sessions=True to bound the block's connections, or drop max_concurrent.",
                UserWarning,
                stacklevel=2,
            )
            max_concurrent = None
        return SessionBlock(
            self, session_args or {}, commit_on_exit, multi_sessions, max_concurrent
        )

    def connection(self) -> AbstractAsyncContextManager[AsyncSession]:
        """The session of the current unit of work, as an `async with` block.

        Inside `db(multi_sessions=True)` it is a session of the calling task's own, which
        waits for a free `max_concurrent` slot and commits (with `commit_on_exit`) or
        rolls back and closes when the block ends. Elsewhere it is `db.session`, which the
        request or `db()` block still ends as usual.
        """
        return self.current_unit().connection()

    async def gather(self, *aws: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
        """`asyncio.gather` for `db(multi_sessions=True)`: each coroutine in its own session."""
        unit = self._multi_unit("db.gather()", *aws)
        return await unit.gather(*aws, return_exceptions=return_exceptions)

    def bind(self, engine: AsyncEngine, factory: async_sessionmaker[AsyncSession]) -> None:
        """Make `engine` the target of `db()` outside requests (middlewares call this)."""
        current = self._engine
        if current is not None and current is not engine and current.url != engine.url:
            raise ProxyBindingError(
                f"{self._name} already serves {current.url.render_as_string()} through a live "
                f"engine and cannot also serve {engine.url.render_as_string()}. Give each "
                "database its own pair from create_middleware_and_session_proxy(), or dispose "
                "the first middleware (await middleware.dispose()) before binding again."
            )
        self._engine, self._factory = engine, factory

    def unbind(self, engine: AsyncEngine) -> None:
        """Forget `engine` if it is the bound one (called when its middleware is disposed)."""
        if self._engine is engine:
            self._engine = self._factory = None

    def current_unit(self) -> UnitOfWork:
        """The unit of work of the request or `db()` block the calling code runs in."""
        unit = self.context.get()
        if unit is None:
            if self._factory is None:
                raise SessionNotInitialisedError()
            raise MissingSessionError()
        return unit

    def _multi_unit(self, what: str, *unused: Awaitable[Any]) -> MultiSessionUnitOfWork:
        unit = self.context.get()
        if not isinstance(unit, MultiSessionUnitOfWork):
            close_unawaited(unused)
            raise MissingSessionError(
                f"{what} gives each task its own session, so it needs an enclosing "
                "`async with db(multi_sessions=True):` block."
            )
        return unit


class SessionBlock:
    """`async with db(...)`: a unit of work of its own, for code outside a request or in one.

    It sets the proxy's context on entry and restores the enclosing one on exit, also
    when the block raises. On exit the session commits (with `commit_on_exit`, when the
    block raised nothing) or rolls back, and is closed.
    """

    def __init__(
        self,
        proxy: SessionProxy,
        session_args: dict[str, Any],
        commit_on_exit: bool,
        multi_sessions: bool,
        max_concurrent: int | None,
    ) -> None:
        self._proxy = proxy
        self._session_args = session_args
        self._commit_on_exit = commit_on_exit
        self._multi_sessions = multi_sessions
        self._max_concurrent = max_concurrent
        self._unit: UnitOfWork | None = None
        self._token: Token[UnitOfWork | None] | None = None

    async def __aenter__(self) -> SessionProxy:
        if self._token is not None:
            raise RuntimeError("This db() block is already open; call db() again for another.")
        outer = self._proxy.context.get()
        factory = outer.factory if outer is not None else self._proxy._factory
        if factory is None:
            raise SessionNotInitialisedError()
        held = outer is not None and outer.holds_connection()
        bind = factory.kw.get("bind")
        pool = bind.pool if isinstance(bind, AsyncEngine) else None
        if self._multi_sessions:
            capacity = pool_capacity(pool) if pool is not None else None
            slots = _slot_count(self._max_concurrent, capacity, held)
            self._unit = MultiSessionUnitOfWork(
                factory,
                self._session_args,
                commit_on_exit=self._commit_on_exit,
                slots=slots,
                strict=self._max_concurrent is not None,
            )
        else:
            if held and pool is not None and not has_free_connection(pool):
                # Waiting here could only end in the pool timeout when every request
                # holding a connection does the same, so fail at once instead.
                raise CapacityError(
                    "No free connection for a nested `async with db():` while the enclosing "
                    "session holds one and the pool is full. Use the enclosing `db.session`, "
                    "or give the pool more room (pool_size / max_overflow)."
                )
            self._unit = UnitOfWork(factory, self._session_args)
        self._token = self._proxy.context.set(self._unit)
        return self._proxy

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._unit is None or self._token is None:
            raise RuntimeError("This db() block was never entered.")
        try:
            if exc is None:
                await self._unit.finish(commit=self._commit_on_exit)
            else:
                await self._unit.discard()
        finally:
            # A block entered in one task and exited in another (a response body that
            # the server closes after its client left) cannot reset the first task's
            # context from here; that context ends with its task, and this one was
            # never changed.
            with suppress(ValueError):
                self._proxy.context.reset(self._token)
            self._token = None


def _slot_count(max_concurrent: int | None, capacity: int | None, held: bool) -> int | None:
    # The connection the enclosing session holds counts against both limits.
    limits = [limit for limit in (max_concurrent, capacity) if limit is not None]
    if not limits:
        return None
    slots = min(limits) - held
    if slots < 1:
        raise CapacityError(
            f"No connection is left for this multi_sessions block: the enclosing session "
            f"holds one of {min(limits)} (max_concurrent={max_concurrent}, pool capacity="
            f"{capacity}). Raise max_concurrent or the pool size, or open the block before "
            "the enclosing session runs a query."
        )
    return slots


db = SessionProxy("db", context=MAIN_UNIT)
